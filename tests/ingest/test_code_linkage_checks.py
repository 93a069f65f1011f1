"""Linkage by participant code never merges or splits a person silently.

A code is the person, so there is no fuzzy linker to hold a doubtful record back: a record
whose side contradicts the same code's earlier wave is quarantined (a mistyped code that landed
on someone else), and a code nobody used before, after baseline in a study without late
entrants, is stored but reported (a mistyped code that split someone in two).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from trackii_eval.cli import app
from trackii_eval.study import Study

runner = CliRunner()

STUDY = """id: codes
name: Code linkage checks (synthetic)
dialogues:
  - {id: D1, name: Synthetic dialogue, sides: [A, B]}
arms:
  - {id: dialogue}
  - {id: comparison, comparison: true}
waves:
  - {index: 1, label: Baseline, phase: baseline, date: 2024-03-01, file: wave1.csv}
  - {index: 2, label: Follow-up 1, phase: post, date: 2025-03-01, file: wave2.csv}
"""
INSTRUMENT = """name: Minimal instrument
scales:
  agree7: {min: 1, max: 7}
participant: {id: pcode, submitted_at: null}
constructs:
  perceptions:
    output: perceptions
    items:
      - {id: trust_1, scale: agree7}
"""
HEADER = "pcode,arm,dialogue,side,trust_1\n"


def _study(tmp_path: Path, wave2: str, *, late_entrants: bool = False) -> Path:
    root = tmp_path / "study"
    root.mkdir()
    text = STUDY + ("linkage: {late_entrants: true}\n" if late_entrants else "")
    (root / "study.yaml").write_text(text)
    (root / "instrument.yaml").write_text(INSTRUMENT)
    (root / "wave1.csv").write_text(HEADER + "X101,dialogue,D1,A,4\nX102,dialogue,D1,B,5\n"
                                    "X103,dialogue,D1,A,3\n")
    (root / "wave2.csv").write_text(HEADER + wave2)
    return root


def _ingest(root: Path, tmp_path: Path, key_file: Path, *extra: str):
    out = tmp_path / "out"
    return out, runner.invoke(app, ["ingest", str(root), "--out", str(out), "--key-file",
                                    str(key_file), *extra])


def test_conflicting_side_is_quarantined_and_unknown_code_reported(tmp_path: Path,
                                                                    key_file: Path) -> None:
    # X101 says side B at wave 2 (A at baseline); X109 was never seen before.
    root = _study(tmp_path, "X101,dialogue,D1,B,4\nX102,dialogue,D1,B,5\nX109,dialogue,D1,A,3\n")
    out, result = _ingest(root, tmp_path, key_file)
    assert result.exit_code == 0, result.output
    problems = pd.read_csv(out / "ingest_problems.csv")
    got = sorted(zip(problems["rule"], problems["scope"], problems["value"].astype(str),
                     strict=True))
    assert got[0] == ("conflicting_attributes", "row", "B")
    assert got[1][:2] == ("unexpected_new_code", "file")
    assert "X109" not in result.output and "X109" not in got[1][2]  # codes are masked
    study = Study.load(root, out=out)
    try:
        subs = study.store.query("SELECT wave, count(*) AS n FROM submissions GROUP BY 1 "
                                 "ORDER BY 1")
        people = study.store.query("SELECT count(*) AS n FROM participants")["n"].iloc[0]
    finally:
        study.close()
    assert subs["n"].tolist() == [3, 2]  # the conflicting record is not merged into X101
    assert people == 4  # the unknown code is stored, and reported
    _, strict = _ingest(root, tmp_path, key_file, "--strict")
    assert strict.exit_code == 4


def test_consistent_panel_has_no_problem_and_late_entrants_are_allowed(
        tmp_path: Path, key_file: Path) -> None:
    root = _study(tmp_path, "X101,dialogue,D1,A,4\nX102,dialogue,D1,B,5\nX109,dialogue,D1,A,3\n",
                  late_entrants=True)
    out, result = _ingest(root, tmp_path, key_file, "--strict")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "ingest_problems.csv").empty


def test_ingest_warns_about_a_wave_dated_in_the_future(tmp_path: Path, key_file: Path) -> None:
    # what `check` warns about, ingest says too (one line, blocking nothing)
    root = _study(tmp_path, "X101,dialogue,D1,A,4\nX102,dialogue,D1,B,5\n")
    text = (root / "study.yaml").read_text().replace("date: 2025-03-01", "date: 2099-03-01")
    (root / "study.yaml").write_text(text)
    _, result = _ingest(root, tmp_path, key_file)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert any("study.yaml:10" in w and "in the future" in w for w in warnings), warnings
