"""Property: for messy generated wave files, every row is stored or quarantined, and the only
exception that escapes ingest is the documented IngestError."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackii_eval import Study
from trackii_eval.errors import IngestError
from trackii_eval.ingest.readers import read_table
from trackii_eval.ingest.validate import validate_wave

from ..conftest import DEMO

STUDY = Study.load(DEMO)
ITEMS = list(STUDY.instrument.items)
CELL = st.one_of(
    st.integers(-120, 120).map(str),
    st.sampled_from(["", " ", "-99", "-98", "Don't know", "Prefer not to say", "n/a", "3,5",
                     "Strongly agree", "seven", "4.0", "1e3", "NaN", "\u00e9t\u00e9", '"', "7 "]),
    st.text(max_size=6),
)
IDS = st.sampled_from(["", "CNRY-0001-AAAA", "CNRY-0002-BBBB", "CNRY-0003-CCCC", " x ",
                       "CNRY-0004-DDDD"])
ARMS = st.sampled_from(["dialogue", "comparison", "", "Dialogue", "control"])
SIDES = st.sampled_from(["North", "South", "", "East"])
DIALOGUES = st.sampled_from(["D1", "D2", "D3", "", "D9"])
DATES = st.sampled_from(["2023-03-05 10:00", "", "2019-01-01", "not a date", "03/10/2023"])


@st.composite
def wave_files(draw: st.DrawFn) -> str:
    items = draw(st.lists(st.sampled_from([*ITEMS, "mystery_item"]), min_size=1, max_size=8,
                          unique=True))
    header = ["participant_code", "arm", "side", "dialogue", "submitted_at", *items]
    rows = draw(st.lists(
        st.tuples(IDS, ARMS, SIDES, DIALOGUES, DATES,
                  st.lists(CELL, min_size=len(items), max_size=len(items))),
        max_size=12,
    ))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for pid, arm, side, dialogue, date, cells in rows:
        writer.writerow([pid, arm, side, dialogue, date, *cells])
    return buf.getvalue()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=wave_files())
def test_validate_accounts_for_every_row(tmp_path: Path, content: str) -> None:
    path = tmp_path / "wave.csv"
    path.write_text(content, encoding="utf-8")
    wave = STUDY.config.waves[1]
    try:
        raw = read_table(path)
        # a file-level problem (no participant-code or item column) refuses the whole file
        out = validate_wave(raw, wave, STUDY.config, STUDY.instrument, display_name="wave.csv")
    except IngestError:
        return
    assert out.rows_read == raw.n_rows
    assert out.rows_read == out.rows_stored + out.rows_quarantined
    row_problems = out.problems[out.problems["scope"] == "row"]
    assert row_problems["row"].nunique() == out.rows_quarantined
    assert len(out.submissions) == out.rows_stored
    stored_rows = set(out.submissions["row"])
    assert stored_rows.isdisjoint(set(row_problems["row"]))
    # no raw participant code leaks into a problem
    for text in [str(v) for v in [*out.problems["value"], *out.problems["message"]]]:
        assert "CNRY-" not in text


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=wave_files())
def test_ingest_reconciles_or_raises_ingest_error(tmp_path_factory, key, content: str) -> None:
    root = tmp_path_factory.mktemp("study")
    for name in ("study.yaml", "instrument.yaml", "ideas.csv", "roster.csv"):
        shutil.copy(DEMO / name, root / name)
    shutil.copytree(DEMO / "waves", root / "waves")
    (root / "waves" / "wave2_post.csv").write_text(content, encoding="utf-8")
    study = Study.load(root, out=root / "out")
    try:
        summary = study.ingest(key)
    except IngestError:
        files = study.store.query("SELECT * FROM files WHERE wave = 2")
        assert files.empty  # a failing file changes nothing in the store
        return
    finally:
        pass
    table = summary.table
    assert (table["rows_read"] == table["rows_stored"] + table["rows_quarantined"]).all()
    stored = study.store.query("SELECT count(*) AS n FROM submissions WHERE wave = 2")["n"][0]
    assert stored == table.set_index("wave").loc[2, "rows_stored"]
    lines = pd.Series(summary.problem_lines(), dtype=str)
    assert not lines.str.contains("CNRY-").any()
    study.close()
