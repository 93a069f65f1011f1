"""Ingest keeps every row: stored or quarantined with file, row, column and rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trackii_eval import Study
from trackii_eval.errors import IngestError


def _edit_wave(study_dir: Path, name: str, edit) -> Path:
    path = study_dir / "waves" / name
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = edit(frame)
    frame.to_csv(path, index=False)
    return path


def test_demo_counts_reconcile(demo_run) -> None:
    study, summary, _, _ = demo_run
    table = summary.table
    assert (table["rows_read"] == table["rows_stored"] + table["rows_quarantined"]).all()
    raw_rows = sum(len(pd.read_csv(study.root / w.file)) for w in study.config.waves)
    assert table["rows_read"].sum() == raw_rows
    stored = study.store.file_summary()
    assert stored["rows_read"].sum() == raw_rows


def test_bad_values_are_quarantined_with_location(demo_copy: Path, key, tmp_path: Path) -> None:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[4, "trust_other_2"] = "9"          # outside the 1-7 scale: file row 6
        frame.loc[7, "threat_1"] = "often"            # text where a number belongs: row 9
        frame.loc[10, "sgic"] = ""                    # no participant code: row 12
        frame["favourite_colour"] = "blue"            # not an item of the instrument
        return frame

    _edit_wave(demo_copy, "wave2_post.csv", edit)
    study = Study.load(demo_copy, out=tmp_path / "out")
    summary = study.ingest(key)
    lines = summary.problem_lines()
    assert "waves/wave2_post.csv:6:trust_other_2: value outside the item's scale: scale agree7 " \
           "is 1-7 (9)" in lines
    assert any(line.startswith("waves/wave2_post.csv:9:threat_1: text where a number belongs")
               for line in lines)
    assert "waves/wave2_post.csv:12:sgic: missing participant code" in lines
    assert any(line.startswith("waves/wave2_post.csv:1:favourite_colour: column is not an item")
               for line in lines)
    wave2 = summary.table.set_index("wave").loc[2]
    row_problems = summary.problems[(summary.problems["file"] == "waves/wave2_post.csv")
                                    & (summary.problems["scope"] == "row")]
    assert 12 in set(row_problems["row"])
    assert wave2["rows_quarantined"] == row_problems["row"].nunique()
    assert wave2["rows_read"] == wave2["rows_stored"] + wave2["rows_quarantined"]
    # the out-of-scale cell is missing (code "quarantined"), the rest of its row is stored
    resp = study.store.query(
        "SELECT item, value, missing_code FROM responses WHERE wave = 2 AND row = 6"
    )
    assert resp.set_index("item").loc["trust_other_2", "missing_code"] == "quarantined"
    assert resp["value"].notna().sum() >= 10
    study.close()


def test_reingest_same_files_is_noop(demo_copy: Path, key, tmp_path: Path) -> None:
    study = Study.load(demo_copy, out=tmp_path / "out")
    first = study.ingest(key)
    n = study.store.query("SELECT count(*) AS n FROM responses")["n"].iloc[0]
    again = study.ingest(key)
    assert set(again.table["status"]) == {"unchanged"}
    assert study.store.query("SELECT count(*) AS n FROM responses")["n"].iloc[0] == n
    assert (first.table["rows_read"] == again.table["rows_read"]).all()
    study.close()


def test_changed_file_refused_then_replaced_and_recoverable(demo_copy: Path, key,
                                                            tmp_path: Path) -> None:
    study = Study.load(demo_copy, out=tmp_path / "out")
    study.ingest(key)
    _edit_wave(demo_copy, "wave5_followup3.csv", lambda f: f.iloc[:-3])
    with pytest.raises(IngestError, match=r"wave5_followup3\.csv: wave 5 was already ingested"):
        study.ingest(key)
    summary = study.ingest(key, replace=True)
    assert summary.table.set_index("wave").loc[5, "status"] == "replaced"
    versions = study.store.query("SELECT active FROM files WHERE wave = 5")
    assert sorted(versions["active"]) == [False, True]
    study.close()


def test_window_and_duplicates(demo_copy: Path, key, tmp_path: Path) -> None:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[0, "submitted_at"] = "2019-01-01 10:00"      # row 2: outside the window
        dup = frame.iloc[[5]].copy()
        return pd.concat([frame, dup], ignore_index=True)      # last row: duplicate

    _edit_wave(demo_copy, "wave3_followup1.csv", edit)
    study = Study.load(demo_copy, out=tmp_path / "out")
    summary = study.ingest(key)
    rules = summary.problems.set_index("row")["rule"]
    assert rules.loc[2] == "outside_wave_window"
    n_rows = len(pd.read_csv(demo_copy / "waves" / "wave3_followup1.csv"))
    assert rules.loc[n_rows + 1] == "duplicate_submission"
    dup = summary.problems[summary.problems["rule"] == "duplicate_submission"].iloc[0]
    assert "CNRY" not in str(dup["value"]) and "CNRY" not in dup["message"]
    study.close()


def test_file_of_the_wrong_wave_is_refused_and_changes_nothing(demo_copy: Path, key,
                                                               tmp_path: Path) -> None:
    path = demo_copy / "study.yaml"
    text = path.read_text()
    # swap the files of waves 3 and 4 by mistake
    text = text.replace("waves/wave3_followup1.csv", "TMP").replace(
        "waves/wave4_followup2.csv", "waves/wave3_followup1.csv").replace(
        "TMP", "waves/wave4_followup2.csv")
    path.write_text(text)
    study = Study.load(demo_copy, out=tmp_path / "out")
    with pytest.raises(IngestError, match=r"wave4_followup2\.csv: looks like the export of "
                                          r"wave 4, not wave 3"):
        study.ingest(key)
    files = study.store.query("SELECT wave FROM files")
    assert set(files["wave"]) == {1, 2}  # earlier waves stored, the wrong one not at all
    assert study.store.query("SELECT count(*) AS n FROM submissions WHERE wave = 3")["n"][0] == 0
    study.close()
