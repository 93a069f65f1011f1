"""Qualtrics exports: header layout, metadata columns and per-response metadata.

Qualtrics writes CSV/XLSX exports with three header rows::

    row 1  column names        StartDate, ..., ResponseId, Q1, Q2_1
    row 2  question text       Start Date, ..., Response ID, How much do you trust ...
    row 3  import ids (JSON)   {"ImportId":"startDate","timeZone":"America/Denver"}, ...

so the first response is on row 4. Older ("legacy") exports have two rows: ``V1``..``V10``
names over ``ResponseID``, ``ResponseSet``, ... labels, then question ids over question text.
A file with the names row only (the other rows deleted by hand) is read too when it carries
Qualtrics' ``ResponseId`` and a ``StartDate``/``EndDate``/``RecordedDate`` column.

The platform conventions here (which columns are metadata, which are identifiers, how to tell a
preview response) also apply to Qualtrics SPSS exports; see `looks_like`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trackii_eval.ingest.readers.base import (
    ParsedTable,
    assemble_records,
    empty_codes,
    frame_from_rows,
    make_row_meta,
    parse_bool,
    parse_number,
    parse_timestamps,
)
from trackii_eval.ingest.readers.csv_excel import Grid, header_index

__all__ = [
    "IDENTIFIER_COLUMNS",
    "LEGACY_IDENTIFIER_COLUMNS",
    "LEGACY_METADATA_COLUMNS",
    "METADATA_COLUMNS",
    "Layout",
    "find_layout",
    "identifier_columns",
    "looks_like",
    "metadata_columns",
    "read_qualtrics",
    "row_meta",
]

METADATA_COLUMNS: frozenset[str] = frozenset(
    {
        "StartDate",
        "EndDate",
        "Status",
        "IPAddress",
        "Progress",
        "Duration (in seconds)",
        # The SPSS export spells it this way, since SPSS names cannot hold spaces.
        "Duration__in_seconds_",
        "Finished",
        "RecordedDate",
        "ResponseId",
        "RecipientLastName",
        "RecipientFirstName",
        "RecipientEmail",
        "ExternalReference",
        "LocationLatitude",
        "LocationLongitude",
        "DistributionChannel",
        "UserLanguage",
        # Fraud and quality checks that Qualtrics adds when they are switched on.
        "Q_RecaptchaScore",
        "Q_RelevantIDDuplicate",
        "Q_RelevantIDDuplicateScore",
        "Q_RelevantIDFraudScore",
        "Q_RelevantIDLastStartDate",
        "Q_BallotBoxStuffing",
        "Q_DuplicateRespondent",
        "Q_TotalDuration",
        "Q_URL",
    }
)
# Legacy exports name the same fields differently; these names are only treated as metadata
# in a legacy file, because "Name" is a plausible question name in a new one.
LEGACY_METADATA_COLUMNS: frozenset[str] = frozenset(
    {
        "ResponseID",
        "ResponseSet",
        "Name",
        "ExternalDataReference",
        "EmailAddress",
        "IPAddress",
        "Status",
        "StartDate",
        "EndDate",
        "Finished",
        "LocationLatitude",
        "LocationLongitude",
        "LocationAccuracy",
    }
)
IDENTIFIER_COLUMNS: frozenset[str] = frozenset(
    {
        "IPAddress",
        "RecipientEmail",
        "RecipientFirstName",
        "RecipientLastName",
        "LocationLatitude",
        "LocationLongitude",
        # Often the study's participant code rather than a name, but Qualtrics also fills it
        # from contact lists; flagged so the caller decides, never silently passed on.
        "ExternalReference",
    }
)
LEGACY_IDENTIFIER_COLUMNS: frozenset[str] = frozenset(
    {
        "Name",
        "EmailAddress",
        "IPAddress",
        "ExternalDataReference",
        "LocationLatitude",
        "LocationLongitude",
    }
)
_RESPONSE_ID = ("ResponseId", "ResponseID")
_LABEL_FOR_ID = frozenset({"ResponseId", "ResponseID", "Response ID"})
_TIME_COLUMNS = ("StartDate", "EndDate", "RecordedDate")
_LEGACY_NAME = re.compile(r"^V\d+$")
# Status codes of the numeric export: 1 Survey Preview, 2 Survey Test, 9 Survey Preview Spam,
# 17 Offline Survey Preview. 0 (IP Address), 4 (Imported), 8 (Spam), 16 (Offline) are real
# respondents as far as "test" goes.
_TEST_STATUS_CODES = frozenset({1.0, 2.0, 9.0, 17.0})
_TEST_CHANNELS = frozenset({"preview", "test"})


@dataclass
class Layout:
    """Where a Qualtrics export keeps its header rows.

    Attributes
    ----------
    header : int
        0-based record of the column names.
    label_row : int or None
        0-based record of the question text, if any.
    data_start : int
        0-based record of the first response.
    legacy : bool
        True for the legacy ``V1``..``Vn`` export.
    time_zones : dict[int, str]
        Grid column -> time zone named in the ImportId row.
    """

    header: int
    label_row: int | None
    data_start: int
    legacy: bool = False
    time_zones: dict[int, str] = field(default_factory=dict)


def _import_ids(record: Sequence[str | None]) -> dict[int, dict[str, object]] | None:
    """Parse an ImportId row, or return None if the record is not one."""
    parsed: dict[int, dict[str, object]] = {}
    filled = 0
    for j, cell in enumerate(record):
        if cell is None or not str(cell).strip():
            continue
        filled += 1
        text = str(cell).strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and "ImportId" in value:
            parsed[j] = value
    # Most cells must be ImportId JSON: one stray JSON answer must not turn a row into a
    # header row.
    return parsed if filled and len(parsed) * 2 > filled else None


def _cell(record: Sequence[str | None], j: int) -> str:
    return str(record[j]).strip() if j < len(record) and record[j] is not None else ""


def find_layout(records: Grid, header: int) -> Layout | None:
    """Recognise a Qualtrics header layout starting at record `header`.

    Parameters
    ----------
    records : Grid
        The file's records.
    header : int
        0-based record holding the column names.

    Returns
    -------
    Layout or None
        None when the records do not look like a Qualtrics export.
    """
    names = [str(c).strip() if c is not None else "" for c in records[header]]
    second = records[header + 1] if header + 1 < len(records) else []
    third = records[header + 2] if header + 2 < len(records) else []
    import_ids = _import_ids(third)
    if import_ids is not None:
        zones = {j: str(v["timeZone"]) for j, v in import_ids.items() if v.get("timeZone")}
        return Layout(header, header + 1, header + 3, time_zones=zones)
    if "V1" in names and _cell(second, names.index("V1")) in _LABEL_FOR_ID:
        return Layout(header, header + 1, header + 2, legacy=True)
    id_column = next((names.index(n) for n in _RESPONSE_ID if n in names), None)
    if id_column is None:
        return None
    if _cell(second, id_column) in _LABEL_FOR_ID:
        return Layout(header, header + 1, header + 2)
    if any(n in names for n in _TIME_COLUMNS):
        return Layout(header, None, header + 1)
    return None


def read_qualtrics(path: Path, records: Grid, header_row: int | None) -> ParsedTable:
    """Read a Qualtrics CSV/XLSX export.

    Parameters
    ----------
    path : Path
        The file.
    records : Grid
        Its records.
    header_row : int, optional
        1-based row of the column names (the first of the header rows); default the first
        non-blank row.

    Returns
    -------
    ParsedTable
        Cells as text; question text from the second header row in `column_labels`; time zones
        from the ImportId row. A file that is not recognisably Qualtrics is read with one
        header row, since the caller asked for Qualtrics explicitly.
    """
    header = header_index(path, records, header_row)
    layout = find_layout(records, header) or Layout(header, None, header + 1)
    table = assemble_records(path, records, layout.header, layout.data_start)
    labels_record = records[layout.label_row] if layout.label_row is not None else []
    columns = list(table.columns)
    if layout.legacy:
        # Legacy names metadata V1..Vn and puts the real names in the label row.
        for k, j in enumerate(table.positions):
            label = _cell(labels_record, j)
            if _LEGACY_NAME.match(columns[k]) and label in LEGACY_METADATA_COLUMNS:
                columns[k] = label
    source = {c: table.columns[k] for k, c in enumerate(columns)}
    labels = {}
    for k, j in enumerate(table.positions):
        text = _cell(labels_record, j)
        # Embedded data and legacy metadata repeat their name as "text"; that is no label.
        if text and text != columns[k]:
            labels[columns[k]] = text
    zones = {
        columns[k]: layout.time_zones[j]
        for k, j in enumerate(table.positions)
        if j in layout.time_zones
    }
    data = frame_from_rows(columns, table.rows)
    return ParsedTable(
        data=data,
        missing_codes=empty_codes(data),
        row_numbers=np.asarray(table.row_numbers, dtype=np.int64),
        source_columns=source,
        column_labels=labels,
        time_zones=zones,
        qualtrics_legacy=layout.legacy,
    )


def looks_like(columns: Sequence[str]) -> bool:
    """Whether a table carries Qualtrics' metadata columns (e.g. a Qualtrics SPSS export).

    Parameters
    ----------
    columns : Sequence[str]
        Canonical column names.

    Returns
    -------
    bool
        True when a response id column and a Qualtrics timestamp column are both present.
    """
    names = set(columns)
    return bool(names & set(_RESPONSE_ID)) and bool(names & set(_TIME_COLUMNS))


def metadata_columns(columns: Sequence[str], *, legacy: bool = False) -> frozenset[str]:
    """Qualtrics metadata columns present in `columns`.

    Parameters
    ----------
    columns : Sequence[str]
        Canonical column names.
    legacy : bool
        Whether the file is a legacy export.

    Returns
    -------
    frozenset[str]
        The metadata columns.
    """
    known = METADATA_COLUMNS | LEGACY_METADATA_COLUMNS if legacy else METADATA_COLUMNS
    return frozenset(c for c in columns if c in known)


def identifier_columns(columns: Sequence[str], *, legacy: bool = False) -> frozenset[str]:
    """Qualtrics direct-identifier columns present in `columns`.

    Parameters
    ----------
    columns : Sequence[str]
        Canonical column names.
    legacy : bool
        Whether the file is a legacy export.

    Returns
    -------
    frozenset[str]
        The identifier columns.
    """
    known = IDENTIFIER_COLUMNS | LEGACY_IDENTIFIER_COLUMNS if legacy else IDENTIFIER_COLUMNS
    return frozenset(c for c in columns if c in known)


def _test_reason(status: object, channel: object) -> str | None:
    reasons = []
    channel_text = str(channel).strip().lower() if channel is not None else ""
    if channel_text in _TEST_CHANNELS:
        reasons.append(f"Qualtrics DistributionChannel is {channel_text!r}")
    code = parse_number(status)
    status_text = str(status).strip() if isinstance(status, str) else ""
    if code in _TEST_STATUS_CODES or (
        status_text and ("preview" in status_text.lower() or status_text.lower() == "survey test")
    ):
        reasons.append(f"Qualtrics Status is {status_text or int(code or 0)!r}")
    return "; ".join(reasons) or None


def _finished(finished: object, progress: object, has_finished: bool) -> bool | None:
    if has_finished:
        return parse_bool(finished)
    number = parse_number(progress)
    return None if number is None else number >= 100


def row_meta(table: ParsedTable) -> pd.DataFrame:
    """Per-response metadata from Qualtrics' columns.

    ``response_id`` is ResponseId (legacy: ResponseID); ``submitted_at`` is EndDate, else
    RecordedDate, converted to UTC when the ImportId row names the time zone; ``finished`` is
    Finished (1/0, True/False), else Progress >= 100; ``is_test`` is DistributionChannel
    ``preview``/``test`` or a preview/test Status (``Survey Preview``, ``Survey Test``,
    ``Survey Preview Spam``, ``Offline Survey Preview``, or codes 1, 2, 9, 17).

    Parameters
    ----------
    table : ParsedTable
        The table read from the file.

    Returns
    -------
    pd.DataFrame
        The `row_meta` frame.
    """
    data = table.data
    n = len(data)

    def column(name: str) -> list[object]:
        return data[name].tolist() if name in data.columns else [None] * n

    id_name = next((c for c in _RESPONSE_ID if c in data.columns), None)
    time_name = next((c for c in ("EndDate", "RecordedDate") if c in data.columns), None)
    zone = table.time_zones.get(time_name) if time_name else None
    submitted = parse_timestamps(column(time_name), zone) if time_name else None
    has_finished = "Finished" in data.columns
    finished = [
        _finished(f, p, has_finished)
        for f, p in zip(column("Finished"), column("Progress"), strict=True)
    ]
    reasons = [
        _test_reason(s, c)
        for s, c in zip(column("Status"), column("DistributionChannel"), strict=True)
    ]
    return make_row_meta(
        data.index,
        response_id=column(id_name) if id_name else None,
        submitted_at=submitted,
        finished=finished,
        is_test=[r is not None for r in reasons],
        test_reason=reasons,
    )
