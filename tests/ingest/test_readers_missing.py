"""Stata and SPSS missing values are derived independently of the value read (issue 8).

The files in fixtures/missing cover every Stata numeric storage type (byte, int, long, float,
double) with ``.``, ``.a`` and an answer in all six orders plus ``.z``, and SPSS numeric columns
with system missing, discrete user-missing values, a range and a range plus a discrete value in
every order, and a string user-missing value. The expected reading is R haven's
(fixtures/missing/read_with_haven.R -> expected.json); the tests never need R.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from trackii_eval.ingest.readers import read_table

from .stata_writer import write_dta

HERE = Path(__file__).parent
MISSING = HERE / "fixtures" / "missing"
EXPECTED = json.loads((MISSING / "expected.json").read_text(encoding="utf-8"))
FILES = sorted(k for k in EXPECTED if k != "versions")
CASE = HERE / "cases" / "stata-dot-missing"


def _ours(code: object, value: object, is_stata: bool) -> dict[str, object]:
    """Our reading of one cell in haven's vocabulary."""
    if code is None:
        return {"missing": ""} if value is None else {"value": value}
    text = str(code)
    if text.startswith("missing:"):
        tag = text.removeprefix("missing:")
        return {"missing": tag.removeprefix(".") if is_stata else tag}
    return {"label": text}


@pytest.mark.parametrize("name", FILES)
def test_missing_values_match_haven(name: str) -> None:
    raw = read_table(MISSING / name)
    expected = EXPECTED[name]
    is_stata = name.endswith(".dta")
    assert list(raw.data.columns) == list(expected)
    for column, cells in expected.items():
        for i, want in enumerate(cells):
            got = _ours(raw.missing_codes[column].iloc[i], raw.data[column].iloc[i], is_stata)
            if "label" in got:  # a labelled missing value: haven names the code and label
                assert want.get("label") == got["label"], (name, column, i, want, got)
            elif "value" in want:
                assert got == {"value": pytest.approx(want["value"])} or got == want, (
                    name, column, i, want, got)
            else:
                assert got == {"missing": want["missing"]}, (name, column, i, want, got)


def test_no_missing_cell_becomes_a_number_in_the_case() -> None:
    """Case stata-dot-missing: f1 = .a . 2 .b 4 .; f2 = 1 .a . 3 . 2, long and byte."""
    for file, refused, dont_know in (("wave1.dta", "Refused", "Don't know"),
                                     ("wave1_byte.dta", "missing:.a", "missing:.b")):
        raw = read_table(CASE / file)
        assert raw.data["f1"].tolist() == [None, None, 2, None, 4, None]
        assert raw.data["f2"].tolist() == [1, None, None, 3, None, 2]
        assert raw.missing_codes["f1"].tolist() == [refused, None, None, dont_know, None, None]
        assert raw.missing_codes["f2"].tolist() == [None, refused, None, None, None, None]


@pytest.mark.parametrize("stype", ["byte", "int", "long", "float", "double"])
def test_every_letter_and_the_type_limits(tmp_path: Path, stype: str) -> None:
    """All 26 extended missing values and the largest answers each type can hold."""
    from .stata_writer import INT_MAX

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    top = INT_MAX.get(stype, 1e6)
    values: list[object] = [None, *letters, top, -top, 0, None]
    path = tmp_path / f"all_{stype}.dta"
    write_dta(path, [("pid", "str3", [f"p{i}" for i in range(len(values))]),
                     ("x", stype, values)], {"x": {"q": "Not asked"}})
    raw = read_table(path)
    codes = raw.missing_codes["x"].tolist()
    data = raw.data["x"].tolist()
    for v, got, code in zip(values, data, codes, strict=True):
        if v is None:
            assert got is None and code is None
        elif isinstance(v, str):
            assert got is None
            assert code == ("Not asked" if v == "q" else f"missing:.{v}")
        else:
            assert got == pytest.approx(v) and code is None


@pytest.mark.parametrize("file", ["wave1.dta", "wave1_byte.dta"])
def test_case_ingested_with_nothing_quarantined(tmp_path: Path, key, file: str) -> None:
    """End to end: `.` is stored as an empty answer, `.a`/`.b` as their codes, no problem."""
    from trackii_eval import Study

    from .mini_study import make_study

    root = make_study(tmp_path / "s", [(CASE / file, "2022-03-01")], items=("f1", "f2", "f3"),
                      scale=(0, 4))
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    assert len(summary.problems) == 0, summary.problem_lines()
    assert summary.table["rows_stored"].tolist() == [6]
    got = study.store.query(
        "SELECT row, item, value, missing_code FROM responses WHERE item IN ('f1', 'f2') "
        "ORDER BY item, row")
    study.close()
    f1 = got[got["item"] == "f1"]
    assert f1["value"].isna().tolist() == [True, True, False, True, False, True]
    assert f1["value"].dropna().tolist() == [2.0, 4.0]
    labelled = file == "wave1.dta"
    assert [None if pd.isna(c) else c for c in f1["missing_code"]] == [
        "Refused" if labelled else "missing:.a", "missing", None,
        "Don't know" if labelled else "missing:.b", None, "missing"]
    f2 = got[got["item"] == "f2"]
    assert f2["value"].dropna().tolist() == [1.0, 3.0, 2.0]


@pytest.mark.parametrize(("module", "file"), [("spss", "spss_missing.sav"),
                                               ("stata", "stata_long.dta")])
def test_reads_that_disagree_on_an_answer_refuse_the_file(monkeypatch, module: str,
                                                          file: str) -> None:
    """A reader fault on a present answer is never guessed: the file is refused."""
    import importlib

    from trackii_eval.errors import IngestError

    mod = importlib.import_module(f"trackii_eval.ingest.readers.{module}")
    real = mod._read

    def faulty(*args, user_missing: bool, **kwargs):
        frame, meta = real(*args, user_missing=user_missing, **kwargs)
        if user_missing:
            column = "discrete0" if module == "spss" else "v0"
            frame[column] = frame[column].astype(object)
            frame.loc[4, column] = 99  # row 5 holds the answer 3 in both files
        return frame, meta

    monkeypatch.setattr(mod, "_read", faulty)
    with pytest.raises(IngestError, match=r"row 5, column '(discrete0|v0)'.*reader fault"):
        read_table(MISSING / file)
