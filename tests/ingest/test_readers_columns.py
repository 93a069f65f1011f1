"""A missing required column is one file-level error naming it and the closest header names;
Kobo group paths are read whatever the separator (issue 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackii_eval import Study
from trackii_eval.errors import IngestError

from .mini_study import make_study

CASE = Path(__file__).parent / "cases" / "kobo-group-separator" / "wave1_kobo.csv"


def _ingest(tmp_path: Path, key, wave: Path):
    root = make_study(tmp_path / "s", [(wave, "2022-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    try:
        return study.ingest(key), study.store.query("SELECT count(*) AS n FROM files")["n"][0]
    finally:
        study.close()


def test_case_kobo_dash_separator_rows_stored(tmp_path: Path, key) -> None:
    summary, n_files = _ingest(tmp_path, key, CASE)
    assert n_files == 1
    assert summary.table["rows_stored"].tolist() == [6]
    assert not (summary.problems["rule"] == "missing_participant_code").any()
    assert not (summary.problems["column"] == "meta-instanceID").any()


@pytest.mark.parametrize("sep", ["/", "-", ".", ":"])
def test_every_kobo_group_separator(tmp_path: Path, key, sep: str) -> None:
    text = CASE.read_text(encoding="utf-8").replace("grp_id-", f"grp_id{sep}").replace(
        "grp_att-", f"grp_att{sep}").replace("meta-", f"meta{sep}")
    wave = tmp_path / f"kobo_{sep.replace('/', 'slash')}.csv"
    wave.write_text(text, encoding="utf-8")
    summary, _ = _ingest(tmp_path, key, wave)
    assert summary.table["rows_stored"].tolist() == [6]
    assert len(summary.problems) == 0, summary.problem_lines()


def test_missing_participant_column_is_one_file_error(tmp_path: Path, key) -> None:
    text = CASE.read_text(encoding="utf-8").replace("grp_id-pid", "participant_no")
    wave = tmp_path / "kobo.csv"
    wave.write_text(text, encoding="utf-8")
    root = make_study(tmp_path / "s", [(wave, "2022-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    with pytest.raises(IngestError) as info:
        study.ingest(key)
    message = str(info.value)
    assert "\n" not in message
    assert "kobo.csv" in message and "'pid'" in message and "participant_no" in message
    assert "not ingested" in message
    assert study.store.query("SELECT count(*) AS n FROM files")["n"][0] == 0
    study.close()


def test_no_item_column_is_one_file_error(tmp_path: Path, key) -> None:
    wave = tmp_path / "w.csv"
    wave.write_text("pid,arm,q1,q2\n1,comparison,1,2\n", encoding="utf-8")
    root = make_study(tmp_path / "s", [(wave, "2022-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    with pytest.raises(IngestError, match="names no item of the instrument"):
        study.ingest(key)
    study.close()
