"""Property over generated messy wave files in every format: rows in = stored + quarantined
for every file, or the file is refused as a whole with one line (issue 8); and the same rows
written in different formats give the same participants."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import openpyxl
import pandas as pd
import pyreadstat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackii_eval import Study
from trackii_eval.errors import IngestError
from trackii_eval.ingest.readers import read_table
from trackii_eval.ingest.validate import validate_wave

from .mini_study import make_study
from .stata_writer import write_dta

_ROOT = Path(tempfile.mkdtemp(prefix="messy_study_"))
(_ROOT / "w.csv").write_text("pid,arm,t1,t2,t3\nA,comparison,1,2,3\n", encoding="utf-8")
STUDY = Study.load(make_study(_ROOT / "s", [(_ROOT / "w.csv", "2024-03-01")],
                              wave_options=["window: [2024-03-01, 2024-03-31]"]))
WAVE = STUDY.config.waves[0]

CODES = st.one_of(st.integers(1, 3000), st.sampled_from(["", "0042", "A-7", " 12 ", "1001"]))
ARMS = st.sampled_from(["dialogue", "comparison", "control"])
SIDES = st.sampled_from(["North", "South", "", "Ost"])
ITEM = st.one_of(st.none(), st.integers(-3, 9), st.sampled_from(["a", "z"]))
TIMES = st.sampled_from(["2024-03-01 00:00:00", "2024-02-29 23:59:59", "2024-03-31T23:30:00Z",
                         "2024-03-15T10:00:00+05:00", "", "soon"])
ROWS = st.lists(st.tuples(CODES, ARMS, SIDES, TIMES, ITEM, ITEM, ITEM), min_size=1, max_size=10)


def _text(v: object) -> str:
    if v is None or (isinstance(v, str) and len(v) == 1 and v.isalpha()):
        return ""  # text formats have no extended missing values: an empty cell
    return str(v)


def _write(fmt: str, rows: list[tuple], folder: Path, variant: int) -> Path:
    header = ["pid", "arm", "side", "dialogue", "submitted_at", "t1", "t2", "t3"]
    if fmt in ("csv", "kobo"):
        sep = ",;\t"[variant % 3]
        names = header
        if fmt == "kobo":
            g = "/-.:"[variant % 4]
            names = [f"grp{g}{h}" if h.startswith("t") or h == "pid" else h for h in header]
            names += ["_uuid"]
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=sep, lineterminator="\r\n" if variant % 2 else "\n")
        w.writerow(names)
        for i, (pid, arm, side, t, *items) in enumerate(rows):
            cells = [_text(pid), arm, side, "D1" if side else "", t, *map(_text, items)]
            w.writerow(cells + ([f"u{i}"] if fmt == "kobo" else []))
        text = buf.getvalue()
        if variant % 5 == 0:
            text = text.rstrip("\r\n")  # a whole file without the final line break
        path = folder / f"w.{fmt}.csv"
        path.write_bytes(text.encode("utf-8-sig" if variant % 7 == 0 else "utf-8"))
        return path
    if fmt == "xlsx":
        book = openpyxl.Workbook()
        ws = book.active
        ws.append(header)
        for pid, arm, side, t, *items in rows:
            ws.append([pid if pid != "" else None, arm, side or None, "D1" if side else None,
                       t or None, *[None if isinstance(v, str) or v is None else v
                                    for v in items]])
        path = folder / "w.xlsx"
        book.save(path)
        return path
    if fmt == "spss":
        frame = pd.DataFrame(
            [[str(pid).strip(), arm, side, "D1" if side else "", t,
              *[float("nan") if v is None or isinstance(v, str) else float(v) for v in items]]
             for pid, arm, side, t, *items in rows], columns=header)
        path = folder / "w.sav"
        pyreadstat.write_sav(frame, path, missing_ranges={"t1": [-3.0], "t2": [{"lo": -3.0,
                                                                                  "hi": -1.0}]})
        return path
    stype = ("byte", "int", "long", "float", "double")[variant % 5]
    numeric_ids = all(isinstance(r[0], int) for r in rows)
    cols: list[tuple[str, str, list[object]]] = [
        ("pid", stype if numeric_ids and stype in ("long", "double") else "str8",
         [r[0] if numeric_ids else str(r[0]) for r in rows]),
        ("arm", "str12", [r[1] for r in rows]),
        ("side", "str8", [r[2] for r in rows]),
        ("dialogue", "str4", ["D1" if r[2] else "" for r in rows]),
        ("submitted_at", "str32", [r[3] for r in rows]),
    ]
    for j, name in enumerate(("t1", "t2", "t3")):
        cols.append((name, stype, [r[4 + j] for r in rows]))
    path = folder / "w.dta"
    write_dta(path, cols, {"t1": {"a": "Refused"}})
    return path


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, fmt=st.sampled_from(["csv", "kobo", "xlsx", "spss", "stata"]),
       variant=st.integers(0, 100))
def test_rows_in_equal_stored_plus_quarantined(tmp_path: Path, rows: list[tuple], fmt: str,
                                               variant: int) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = _write(fmt, rows, folder, variant)
    try:
        raw = read_table(path)
        out = validate_wave(raw, WAVE, STUDY.config, STUDY.instrument, display_name=path.name)
    except IngestError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
        return
    # every generated row has an arm, so none is blank: rows in is the rows generated
    assert raw.n_rows == len(rows)
    assert out.rows_read == out.rows_stored + out.rows_quarantined == len(rows)
    assert len(out.submissions) == out.rows_stored
    row_problems = out.problems[out.problems["scope"] == "row"]
    assert row_problems["row"].nunique() == out.rows_quarantined
    # no item cell became a number it was not: stored values are the generated on-scale ones
    stored = out.responses.dropna(subset=["value"])
    assert stored["value"].between(1, 5).all()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(codes=st.lists(st.integers(1, 99999), min_size=1, max_size=6, unique=True),
       variant=st.integers(0, 100))
def test_numeric_codes_are_the_same_people_in_every_format(tmp_path: Path, codes: list[int],
                                                           variant: int) -> None:
    rows = [(c, "comparison", "", "2024-03-02 10:00:00", 1, 2, 3) for c in codes]
    seen = []
    for fmt in ("csv", "kobo", "xlsx", "spss", "stata"):
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        raw = read_table(_write(fmt, rows, folder, variant))
        out = validate_wave(raw, WAVE, STUDY.config, STUDY.instrument, display_name="w")
        seen.append(sorted(out.submissions["raw_id"]))
    assert all(s == sorted(str(c) for c in codes) for s in seen), seen
