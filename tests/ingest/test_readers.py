"""The wave-file readers on one real-shaped export per format (see fixtures/make_fixtures.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackii_eval.errors import IngestError
from trackii_eval.ingest.readers import RawTable, detect_format, read_table

FIXTURES = Path(__file__).parent / "fixtures"
QUALTRICS = FIXTURES / "qualtrics_wave1.csv"
QUALTRICS_LEGACY = FIXTURES / "qualtrics_legacy.csv"
KOBO_CSV = FIXTURES / "kobo_wave1.csv"
KOBO_XLSX = FIXTURES / "kobo_labels.xlsx"
CP1252 = FIXTURES / "csv_semicolon_cp1252.csv"
EXCEL = FIXTURES / "excel_header_row3.xlsx"
SPSS = FIXTURES / "spss_wave2.sav"
STATA = FIXTURES / "stata_wave3.dta"

# (file, read_table options, expected format)
ALL_FIXTURES = [
    (QUALTRICS, {}, "qualtrics"),
    (QUALTRICS_LEGACY, {}, "qualtrics"),
    (KOBO_CSV, {}, "kobo"),
    (KOBO_XLSX, {}, "kobo"),
    (CP1252, {}, "csv"),
    (EXCEL, {"sheet": "Responses", "header_row": 3}, "excel"),
    (SPSS, {}, "spss"),
    (STATA, {}, "stata"),
]


def _ids(params: list[tuple[Path, dict[str, object], str]]) -> list[str]:
    return [p[0].name for p in params]


# --- the contract every reader keeps -------------------------------------------------------


@pytest.mark.parametrize(("path", "options", "fmt"), ALL_FIXTURES, ids=_ids(ALL_FIXTURES))
def test_every_reader_returns_the_same_shape(
    path: Path, options: dict[str, object], fmt: str
) -> None:
    """Whatever the format, the RawTable has the shape the validator relies on."""
    assert detect_format(path) == fmt
    raw = read_table(path, **options)  # type: ignore[arg-type]
    assert isinstance(raw, RawTable)
    assert raw.format == fmt
    assert raw.path == path
    assert raw.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert raw.n_rows == len(raw.data) == len(raw.row_numbers) > 0
    assert all(raw.data[c].dtype == object for c in raw.data.columns)
    assert raw.data.index.equals(pd.RangeIndex(raw.n_rows))
    assert raw.missing_codes.shape == raw.data.shape
    assert raw.missing_codes.index.equals(raw.data.index)
    assert list(raw.missing_codes.columns) == list(raw.data.columns)
    assert raw.row_numbers.dtype == np.int64
    assert np.all(np.diff(raw.row_numbers) > 0)
    assert set(raw.source_columns) == set(raw.data.columns)
    assert list(raw.row_meta.columns) == [
        "response_id",
        "submitted_at",
        "finished",
        "is_test",
        "test_reason",
    ]
    assert raw.row_meta.index.equals(raw.data.index)
    assert str(raw.row_meta["submitted_at"].dtype).startswith("datetime64")
    assert str(raw.row_meta["finished"].dtype) == "boolean"
    assert raw.row_meta["is_test"].dtype == bool
    # A reason exactly where a row is flagged as a test.
    assert (raw.row_meta["test_reason"].notna() == raw.row_meta["is_test"]).all()
    assert raw.metadata_columns <= set(raw.data.columns)
    assert raw.identifier_columns <= set(raw.data.columns)
    # Empty cells are None, never "" or NaN.
    for value in raw.data.to_numpy().ravel():
        assert value != ""
        assert not (isinstance(value, float) and np.isnan(value))


# --- Qualtrics -------------------------------------------------------------------------------


def test_qualtrics_export_skips_its_three_header_rows() -> None:
    raw = read_table(QUALTRICS)
    # Rows 1-3 are names, question text and ImportIds. Row 4's open answer spans two physical
    # lines but is one row, as a spreadsheet shows it, so the next response is row 5.
    assert raw.row_numbers.tolist() == [4, 5, 6, 7]
    assert raw.data["trust_1"].tolist() == ["4", "2", "5", "3"]  # text, not coerced
    assert raw.data.loc[0, "open_change"] == (
        'I listened more than I expected.\nThe "other side" has names now, not just flags.'
    )
    assert raw.data.loc[1, "trust_2"] is None
    assert raw.column_labels["trust_1"] == (
        "How much do you trust members of the other delegation? - Political leaders"
    )
    assert raw.column_labels["ResponseId"] == "Response ID"
    assert "pid" not in raw.column_labels  # embedded data repeats its name: not a label
    assert raw.missing_codes.isna().all().all()


def test_qualtrics_metadata_identifiers_and_row_meta() -> None:
    raw = read_table(QUALTRICS)
    assert raw.metadata_columns == {
        "StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
        "Finished", "RecordedDate", "ResponseId", "RecipientLastName", "RecipientFirstName",
        "RecipientEmail", "ExternalReference", "LocationLatitude", "LocationLongitude",
        "DistributionChannel", "UserLanguage",
    }  # fmt: skip
    assert raw.identifier_columns == {
        "IPAddress", "RecipientEmail", "RecipientFirstName", "RecipientLastName",
        "LocationLatitude", "LocationLongitude", "ExternalReference",
    }  # fmt: skip
    meta = raw.row_meta
    assert meta["response_id"].tolist() == [
        "R_3kX9pQw2LmZ8aB1",
        "R_1aB2cD3eF4gH5iJ",
        "R_9zY8xW7vU6tS5rQ",
        "R_7mN6bV5cX4zL3kJ",
    ]
    assert meta["finished"].tolist() == [True, False, True, True]
    assert meta["is_test"].tolist() == [False, False, True, False]
    assert "preview" in meta.loc[2, "test_reason"]
    assert "Survey Preview" in meta.loc[2, "test_reason"]
    # EndDate is in America/Denver per the ImportId row (MST, UTC-7 on 1 March).
    assert meta.loc[0, "submitted_at"] == pd.Timestamp("2024-03-01 16:12:30")


def test_qualtrics_legacy_two_row_export() -> None:
    raw = read_table(QUALTRICS_LEGACY)
    assert raw.format == "qualtrics"
    assert raw.row_numbers.tolist() == [3, 4]
    # V1..V10 are renamed to the names in the label row; the original is kept.
    assert raw.source_columns["ResponseID"] == "V1"
    assert raw.source_columns["EmailAddress"] == "V5"
    assert raw.column_labels["Q1"] == "I agree to take part in this study."
    assert {"Name", "EmailAddress", "IPAddress", "ExternalDataReference"} <= (
        raw.identifier_columns
    )
    assert raw.row_meta["response_id"].tolist() == ["R_2bC3dE4fG5hI6jK", "R_5eF6gH7iJ8kL9mN"]
    assert raw.row_meta["is_test"].tolist() == [False, True]  # Status 1 = Survey Preview
    assert raw.row_meta.loc[0, "submitted_at"] == pd.Timestamp("2024-03-04 09:14")


def test_forcing_csv_on_a_qualtrics_export_reads_header_rows_as_data() -> None:
    raw = read_table(QUALTRICS, format="csv")
    assert raw.format == "csv"
    assert raw.row_numbers.tolist() == [2, 3, 4, 5, 6, 7]
    assert raw.data.loc[0, "ResponseId"] == "Response ID"
    assert raw.row_meta["response_id"].isna().all()
    # IPAddress is an identifier whatever the reader.
    assert "IPAddress" in raw.identifier_columns


def test_qualtrics_export_with_no_responses_is_an_empty_table(tmp_path: Path) -> None:
    head = b"".join(QUALTRICS.read_bytes().splitlines(keepends=True)[:3])
    path = tmp_path / "no_responses.csv"
    path.write_bytes(head)
    raw = read_table(path)
    assert raw.format == "qualtrics"
    assert raw.n_rows == 0
    assert "trust_1" in raw.data.columns
    assert raw.row_meta.shape == (0, 5)


def test_qualtrics_xlsx_export_reads_like_its_csv(tmp_path: Path) -> None:
    import openpyxl

    records = read_table(QUALTRICS, format="csv", header_row=1)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(records.data.columns))
    for row in records.data.itertuples(index=False):
        sheet.append(list(row))
    # The ImportId row is read from the CSV again, because the csv reader above kept row 3
    # as data: check that it did.
    assert str(records.data.loc[1, "ResponseId"]).startswith('{"ImportId"')
    path = tmp_path / "qualtrics_wave1.xlsx"
    book.save(path)
    assert detect_format(path) == "qualtrics"
    from_xlsx = read_table(path)
    from_csv = read_table(QUALTRICS)
    pd.testing.assert_frame_equal(from_xlsx.data, from_csv.data)
    assert from_xlsx.row_numbers.tolist() == from_csv.row_numbers.tolist()
    pd.testing.assert_frame_equal(from_xlsx.row_meta, from_csv.row_meta)


def test_qualtrics_conventions_apply_to_a_qualtrics_spss_export(tmp_path: Path) -> None:
    import pyreadstat

    frame = pd.DataFrame(
        {
            "StartDate": pd.to_datetime(["2024-03-01 09:00", "2024-03-01 10:00"]),
            "EndDate": pd.to_datetime(["2024-03-01 09:10", "2024-03-01 10:02"]),
            "Status": [0.0, 1.0],
            "IPAddress": ["203.0.113.9", ""],
            "Finished": [1.0, 0.0],
            "ResponseId": ["R_a1", "R_b2"],
            "DistributionChannel": ["anonymous", "preview"],
            "Q1": [4.0, 2.0],
        }
    )
    path = tmp_path / "qualtrics_export.sav"
    pyreadstat.write_sav(
        frame, path, variable_value_labels={"Status": {0.0: "IP Address", 1.0: "Survey Preview"}}
    )
    raw = read_table(path)
    assert raw.format == "spss"
    assert raw.row_meta["response_id"].tolist() == ["R_a1", "R_b2"]
    assert raw.row_meta["finished"].tolist() == [True, False]
    assert raw.row_meta["is_test"].tolist() == [False, True]
    assert raw.row_meta.loc[0, "submitted_at"] == pd.Timestamp("2024-03-01 09:10")
    assert "IPAddress" in raw.identifier_columns
    assert {"StartDate", "ResponseId", "Finished"} <= raw.metadata_columns
    assert "Q1" not in raw.metadata_columns


# --- SPSS and Stata --------------------------------------------------------------------------


def test_spss_user_missing_values_become_codes_not_numbers() -> None:
    raw = read_table(SPSS)
    assert raw.row_numbers.tolist() == [1, 2, 3, 4, 5]  # case numbers
    values = raw.data.to_numpy().ravel().tolist()
    assert not {-99.0, -98.0, -9.0, -8.0} & {v for v in values if isinstance(v, float)}
    assert raw.data["trust_1"].tolist() == [4.0, None, 3.0, None, 5.0]
    assert raw.missing_codes["trust_1"].tolist() == [None, "Refused", None, "Don't know", None]
    # trust_2 row 3 is system-missing: empty, but not a declared missing value.
    assert raw.data.loc[2, "trust_2"] is None
    assert raw.missing_codes.loc[2, "trust_2"] is None
    assert raw.missing_codes.loc[4, "trust_2"] == "Refused"
    # A missing range -9..-7: -8 is labelled, -9 is not.
    assert raw.missing_codes["contact_freq"].tolist() == [
        None,
        "Not asked",
        None,
        None,
        "missing:-9",
    ]
    assert raw.data.loc[3, "contact_freq"] == 0.0
    # A string variable's user-missing value; an empty string is just empty.
    assert raw.missing_codes["comment"].tolist() == [None, "missing:NA", None, None, "missing:NA"]
    assert raw.data["comment"].tolist() == ["More hopeful", None, None, "Same as before", None]
    assert isinstance(raw.data.loc[0, "trust_1"], float)
    assert raw.data.loc[3, "interview_date"] is None
    assert pd.Timestamp(raw.data.loc[0, "interview_date"]) == pd.Timestamp("2024-06-01 10:00")
    assert raw.column_labels["trust_1"] == "Trust in political leaders of the other side"
    assert raw.value_labels["trust_1"][-99.0] == "Refused"
    assert raw.value_labels["wave"][2.0] == "Endline"
    assert raw.metadata_columns == frozenset()
    assert raw.row_meta["response_id"].isna().all()


def test_stata_extended_missing_values_become_codes() -> None:
    raw = read_table(STATA)
    assert raw.row_numbers.tolist() == [1, 2, 3, 4, 5]  # observation numbers
    assert raw.data["trust_1"].tolist() == [4.0, None, 3.0, None, None]
    assert raw.missing_codes["trust_1"].tolist() == [None, "Refused", None, "Don't know", None]
    # .c has no label; row 5's trust_1 is system missing "." and has no code.
    assert raw.missing_codes["empathy"].tolist() == [None, None, "missing:.c", None, None]
    assert raw.data["empathy"].tolist() == [5.0, 4.0, None, 2.0, 1.0]
    for value in raw.data.to_numpy().ravel():
        assert not (isinstance(value, str) and len(value) == 1)
    assert raw.data["pid"].tolist() == ["P-001", "P-002", "P-003", "P-004", "P-005"]
    assert raw.data.loc[0, "interview_date"] == dt.date(2024, 9, 1) or pd.Timestamp(
        raw.data.loc[0, "interview_date"]
    ) == pd.Timestamp("2024-09-01")
    assert raw.column_labels["empathy"] == "Understands why the other side feels as it does"
    assert raw.value_labels["trust_1"]["a"] == "Refused"
    assert raw.value_labels["wave"][3] == "Follow-up"


# --- KoboToolbox -----------------------------------------------------------------------------


def test_kobo_csv_strips_group_paths_and_keeps_them() -> None:
    raw = read_table(KOBO_CSV)
    assert raw.row_numbers.tolist() == [2, 3, 4]
    columns = set(raw.data.columns)
    assert {"age", "gender", "trust_other", "languages", "languages/ar"} <= columns
    assert raw.source_columns["age"] == "group_demo/age"
    assert raw.source_columns["languages/ar"] == "group_demo/languages/ar"
    # The same name in two groups: both keep their path rather than collide.
    assert {"group_attitudes/comments", "group_followup/comments"} <= columns
    assert raw.data.loc[0, "group_attitudes/comments"] == "Good facilitation; long days"
    assert raw.data["age"].tolist() == ["34", "51", "99"]
    assert {"_uuid", "_submission_time", "_tags", "start", "end", "deviceid", "instanceID"} <= (
        raw.metadata_columns
    )
    assert "_gps_latitude" in raw.metadata_columns
    assert "age" not in raw.metadata_columns
    assert {"deviceid", "_submitted_by", "gps", "_gps_latitude", "_gps_longitude"} <= (
        raw.identifier_columns
    )
    meta = raw.row_meta
    assert meta["response_id"].tolist() == [
        "6f1c2d3e-0a1b-4c5d-8e9f-001122334455",
        "7a2b3c4d-1e2f-4a5b-9c8d-112233445566",
        "8b3c4d5e-2f3a-4b6c-0d9e-223344556677",
    ]
    assert meta.loc[0, "submitted_at"] == pd.Timestamp("2024-03-02 08:15:30")
    assert meta["finished"].isna().all()
    # "pilot" and "pre-launch" are not test tags; "test" is.
    assert meta["is_test"].tolist() == [False, False, True]
    assert "_tags" in meta.loc[2, "test_reason"]


def test_kobo_xlsx_with_label_headers() -> None:
    raw = read_table(KOBO_XLSX)
    assert raw.row_numbers.tolist() == [2, 3]
    label = "How much do you trust people from the other side?"
    assert raw.source_columns[label] == f"Attitudes/{label}"
    assert raw.column_labels[label] == label
    # A "/" inside a label is not a group separator.
    assert "Agree/disagree: dialogue can change minds" in raw.data.columns
    assert "Which languages do you speak?/Arabic" in raw.data.columns
    assert raw.data.loc[0, "Age in years"] == "29"  # typed cell, rendered as text
    assert raw.row_meta.loc[0, "submitted_at"] == pd.Timestamp("2024-06-10 06:07:30")
    assert raw.row_meta["is_test"].tolist() == [False, True]


# --- plain CSV and Excel ---------------------------------------------------------------------


def test_semicolon_cp1252_csv() -> None:
    raw = read_table(CP1252)
    assert raw.format == "csv"
    # The trailing ';' adds no column; the all-empty row 4 is skipped but still counted.
    assert list(raw.data.columns) == ["pid", "wave", "trust_1", "trust_2", "comment", "date"]
    assert raw.row_numbers.tolist() == [2, 3, 5]
    assert raw.data.loc[0, "comment"] == "Très utile – merci"
    assert raw.data.loc[1, "comment"] == "“Trop court” ; à refaire"
    assert raw.data.loc[2, "comment"] == "Coût: 20 €"
    assert raw.data.loc[0, "trust_2"] == "3,5"  # a decimal comma stays as written
    assert raw.data.loc[1, "trust_2"] is None
    assert raw.row_meta.loc[2, "submitted_at"] == pd.Timestamp("2024-03-02")
    assert raw.identifier_columns == frozenset()


def test_forced_encoding_that_does_not_fit_names_the_file() -> None:
    with pytest.raises(IngestError, match=r"csv_semicolon_cp1252\.csv.*utf-8"):
        read_table(CP1252, encoding="utf-8")
    assert read_table(CP1252, encoding="cp1252").data.equals(read_table(CP1252).data)


def test_excel_named_sheet_with_header_on_row_3() -> None:
    raw = read_table(EXCEL, sheet="Responses", header_row=3)
    assert raw.row_numbers.tolist() == [4, 6, 7]  # sheet rows; row 5 is blank
    assert list(raw.data.columns) == [
        "pid",
        "wave",
        "trust_1",
        "trust_2",
        "interview_date",
        "notes",
    ]
    assert raw.data["trust_1"].tolist() == ["4", "5", "2"]
    assert raw.data["trust_2"].tolist() == ["3.5", None, "2"]
    assert raw.data["interview_date"].tolist() == [
        "2024-03-01",
        "2024-03-02 14:30:00",
        "2024-03-02",
    ]
    assert raw.data.loc[0, "notes"] == "spoke at length"
    by_index = read_table(EXCEL, sheet=1, header_row=3)
    pd.testing.assert_frame_equal(by_index.data, raw.data)


def test_excel_default_sheet_is_the_first() -> None:
    raw = read_table(EXCEL)
    assert list(raw.data.columns) == ["variable", "question"]


def test_excel_unknown_sheet_lists_the_sheets() -> None:
    with pytest.raises(IngestError, match=r"no sheet named 'Wave 1'.*Codebook.*Responses"):
        read_table(EXCEL, sheet="Wave 1")
    with pytest.raises(IngestError, match="no sheet at index 5"):
        read_table(EXCEL, sheet=5)


# --- detection -------------------------------------------------------------------------------


def test_detection_trusts_content_over_suffix(tmp_path: Path) -> None:
    for source, name, fmt in [
        (QUALTRICS, "export.txt", "qualtrics"),
        (KOBO_CSV, "data.tsv", "kobo"),
        (EXCEL, "really_a_workbook.csv", "excel"),
        (SPSS, "wave.bin", "spss"),
        (STATA, "wave.data", "stata"),
    ]:
        copy = tmp_path / name
        shutil.copyfile(source, copy)
        assert detect_format(copy) == fmt, name


def test_format_can_be_forced() -> None:
    raw = read_table(KOBO_CSV, format="csv")
    assert "group_demo/age" in raw.data.columns
    assert raw.format == "csv"


# --- file-level errors -----------------------------------------------------------------------


def test_file_level_problems_raise_ingest_error(tmp_path: Path) -> None:
    cases: dict[str, bytes] = {
        "empty.csv": b"",
        "blank.csv": b"\r\n  \r\n,,\r\n",
        "binary.csv": b"id,q1\n\x00\x01\x02\n",
        "dup.csv": b"pid,q1,q1\nP1,1,2\n",
        "no_header.csv": b"pid,,q2\nP1,5,3\n",
        "broken.sav": b"$FL2 this is not really SPSS",
        "broken.dta": b"<stata_dta> nor Stata",
        "broken.xlsx": b"PK\x03\x04 nor a workbook",
        "legacy.xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64,
        "undecodable.csv": b"pid,q1\nP1,\x81\x8d\xff\n",
        # The lenient csv module would swallow rows 3-4 into one cell.
        "unclosed.csv": b'pid,q1\nP1,4\n"P2,5\nP3,2\n',
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(IngestError, match=name.replace(".", r"\.")):
            read_table(path)
    with pytest.raises(IngestError, match="does not exist"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(IngestError, match="is a directory"):
        read_table(tmp_path)


def test_options_that_do_not_apply_are_refused() -> None:
    with pytest.raises(IngestError, match="sheet"):
        read_table(CP1252, sheet="Responses")
    with pytest.raises(IngestError, match="header_row"):
        read_table(SPSS, header_row=2)
    with pytest.raises(IngestError, match="encoding"):
        read_table(EXCEL, encoding="utf-8")
    with pytest.raises(IngestError, match="no header on row 40"):
        read_table(CP1252, header_row=40)
    with pytest.raises(ValueError, match="format"):
        read_table(CP1252, format="sas")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="header_row"):
        read_table(CP1252, header_row=0)


def test_error_messages_never_contain_cell_values(tmp_path: Path) -> None:
    secret = "rana.haddad@example.org"
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(f"pid,email\nP1,{secret}\nP2,{secret},203.0.113.5\n", encoding="utf-8")
    with pytest.raises(IngestError) as info:
        read_table(ragged)
    message = str(info.value)
    assert "row 3 has 3 fields" in message and "header on row 1 has 2" in message
    assert secret not in message and "203.0.113.5" not in message

    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text(f"pid,,q1\nP1,{secret},4\n", encoding="utf-8")
    with pytest.raises(IngestError) as info:
        read_table(unnamed)
    assert "column 2" in str(info.value) and secret not in str(info.value)


def test_utf16_tab_separated_export(tmp_path: Path) -> None:
    """Qualtrics' TSV export is UTF-16 with a byte-order mark."""
    text = QUALTRICS.read_bytes().decode("utf-8-sig")
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text, newline="")))
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t", lineterminator="\r\n").writerows(rows)
    path = tmp_path / "qualtrics_wave1.tsv"
    path.write_bytes(buffer.getvalue().encode("utf-16"))
    raw = read_table(path)
    assert raw.format == "qualtrics"
    pd.testing.assert_frame_equal(raw.data, read_table(QUALTRICS).data)


# --- the fixtures are what the script writes -------------------------------------------------


def test_make_fixtures_reproduces_the_committed_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.main(tmp_path)
    assert {p.name for p in written} == {p.name for p, _, _ in ALL_FIXTURES}
    for committed, options, _ in ALL_FIXTURES:
        fresh = tmp_path / committed.name
        if committed.suffix == ".csv":
            assert fresh.read_bytes() == committed.read_bytes(), committed.name
        else:
            # Binary formats embed a creation time, so compare what they hold.
            a, b = read_table(fresh, **options), read_table(committed, **options)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(a.data, b.data)
            pd.testing.assert_frame_equal(a.missing_codes, b.missing_codes)
            assert a.column_labels == b.column_labels
            assert a.value_labels == b.value_labels
