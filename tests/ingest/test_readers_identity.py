"""Identity never depends on the file format (issue 8): one canonical text form for codes,
sides, arms, dialogues and roster ids from every reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from trackii_eval import Study
from trackii_eval.ingest.readers import read_table
from trackii_eval.ingest.readers.base import canonical_text

from .mini_study import make_study
from .stata_writer import write_dta

CASE = Path(__file__).parent / "cases" / "numeric-id-across-formats"


def test_case_numeric_id_across_formats(tmp_path: Path, key) -> None:
    """1001 from SPSS (F8.0), from a CSV and from Stata is one person: 5 people, 3 waves."""
    root = make_study(tmp_path / "s", [(CASE / "wave1.sav", "2022-03-01"),
                                       (CASE / "wave2.csv", "2023-03-01"),
                                       (CASE / "wave3.dta", "2024-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    assert summary.table["rows_quarantined"].sum() == 0
    people = study.store.query("SELECT participant FROM participants")
    assert len(people) == 5
    per = study.store.query("SELECT participant, count(*) AS n FROM submissions GROUP BY 1")
    assert sorted(per["n"]) == [3, 3, 3, 3, 3]
    study.close()


@pytest.mark.parametrize(
    ("value", "text"),
    [(1001.0, "1001"), (np.float64(1001.0), "1001"), (np.int8(7), "7"), (1001, "1001"),
     (" 1001 ", "1001"), ("0042", "0042"), ("007.0", "007.0"), (12.5, "12.5"),
     (np.nan, None), (None, None), ("  ", None), ("North", "North")],
)
def test_canonical_text(value: object, text: str | None) -> None:
    assert canonical_text(value) == text


def _write_all(folder: Path, codes: list[object], sides: list[object]) -> list[Path]:
    """The same rows written by every reader's format; numeric where the format allows."""
    numeric = pd.DataFrame({"pid": [float(c) for c in codes], "side": [float(s) for s in sides],
                            "t1": [1.0, 2.0, 3.0]})
    text = pd.DataFrame({"pid": [str(c) for c in codes], "side": [str(s) for s in sides],
                         "t1": ["1", "2", "3"]})
    paths = []
    p = folder / "w.csv"
    text.to_csv(p, index=False)
    paths.append(p)
    p = folder / "w.xlsx"
    numeric.to_excel(p, index=False)  # numbers as Excel numbers
    paths.append(p)
    p = folder / "w.sav"
    pyreadstat.write_sav(numeric, p)
    paths.append(p)
    for stype in ("byte", "int", "long", "float", "double"):
        p = folder / f"w_{stype}.dta"
        write_dta(p, [("pid", stype, codes), ("side", stype, sides), ("t1", stype, [1, 2, 3])])
        paths.append(p)
    p = folder / "w_kobo.csv"
    text.rename(columns={"pid": "grp/pid"}).assign(_uuid=["u1", "u2", "u3"]).to_csv(p, index=False)
    paths.append(p)
    return paths


def test_identifiers_from_every_reader_have_one_text_form(tmp_path: Path) -> None:
    paths = _write_all(tmp_path, [7, 42, 100], [1, 2, 1])
    seen = set()
    for path in paths:
        raw = read_table(path)
        pid = "pid" if "pid" in raw.data.columns else next(c for c in raw.data.columns
                                                           if c.endswith("pid"))
        seen.add((tuple(canonical_text(v) for v in raw.data[pid]),
                  tuple(canonical_text(v) for v in raw.data["side"])))
    assert seen == {(("7", "42", "100"), ("1", "2", "1"))}
