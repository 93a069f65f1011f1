"""ingest_problems.csv lists every open problem from the store; a wave with every row
quarantined is an error-level line; --strict fails on anything quarantined or left for review;
every rule named anywhere is in the one registry (issues 8 and 10)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from trackii_eval.cli import app
from trackii_eval.ingest.rules import Rule

from .mini_study import make_study

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _study(tmp_path: Path, second: str) -> Path:
    w1 = tmp_path / "w1.csv"
    w1.write_text("pid,arm,t1,t2,t3\nA1,comparison,1,2,9\nA2,comparison,1,2,3\n")
    w2 = tmp_path / "w2.csv"
    w2.write_text(second)
    return make_study(tmp_path / "s", [(w1, "2022-03-01"), (w2, "2023-03-01")])


def _ingest(root: Path, out: Path, key_file: Path, *extra: str):
    return runner.invoke(app, ["ingest", str(root), "--out", str(out), "--key-file",
                               str(key_file), *extra])


def test_second_run_keeps_first_runs_problems(tmp_path: Path, key_file: Path) -> None:
    root = _study(tmp_path, "pid,arm,t1,t2,t3\nA1,comparison,1,2,3\nA2,nowhere,1,2,3\n")
    out = tmp_path / "out"
    first = _ingest(root, out, key_file)
    assert first.exit_code == 0, first.output
    listed = pd.read_csv(out / "ingest_problems.csv")
    assert sorted(listed["rule"]) == ["outside_scale", "unknown_arm"]
    # one line per problem with file, row, column, rule and what to do
    assert "w1.csv:2:t3: value outside the item's scale" in first.output
    assert "[rule outside_scale; correct the value" in first.output
    second = _ingest(root, out, key_file, "--strict")
    assert "unchanged" in second.output
    again = pd.read_csv(out / "ingest_problems.csv")
    assert sorted(again["rule"]) == ["outside_scale", "unknown_arm"]
    assert second.exit_code == 4  # nothing new, but data are still quarantined
    # fixing wave 2 and replacing it closes its problem, not wave 1's
    (root / "w2.csv").write_text("pid,arm,t1,t2,t3\nA1,comparison,1,2,3\nA2,comparison,1,2,3\n")
    third = _ingest(root, out, key_file, "--replace")
    assert third.exit_code == 0, third.output
    assert pd.read_csv(out / "ingest_problems.csv")["rule"].tolist() == ["outside_scale"]


def test_clean_study_strict_passes_and_file_is_empty(tmp_path: Path, key_file: Path) -> None:
    root = _study(tmp_path, "pid,arm,t1,t2,t3\nA1,comparison,1,2,3\n")
    (tmp_path / "s" / "w1.csv").write_text("pid,arm,t1,t2,t3\nA1,comparison,1,2,3\n")
    result = _ingest(root, tmp_path / "out", key_file, "--strict")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "out" / "ingest_problems.csv")) == 0


def test_wave_with_every_row_quarantined_is_an_error(tmp_path: Path, key_file: Path) -> None:
    root = _study(tmp_path, "pid,arm,t1,t2,t3\nA1,nowhere,1,2,3\n,comparison,1,2,3\n")
    result = _ingest(root, tmp_path / "out", key_file)
    assert "ERROR: w2.csv: wave 2: all 2 rows quarantined" in result.output
    from trackii_eval import Study

    study = Study.load(root, out=tmp_path / "out")
    assert study.store.empty_waves()["wave"].tolist() == [2]
    summary = study.ingest(__import__("trackii_eval.ingest.pseudonym", fromlist=["x"])
                           .load_key(key_file))
    assert [f.wave for f in summary.empty_waves] == [2]  # also on an unchanged re-run
    study.close()
    strict = _ingest(root, tmp_path / "out", key_file, "--strict")
    assert strict.exit_code == 4


def test_every_rule_named_in_the_code_is_registered() -> None:
    """Rules named in problem records ("rule": "x") and refusals ("rule x") are all in Rule."""
    named: set[str] = set()
    for path in (ROOT / "trackii_eval").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        named |= set(re.findall(r'"rule": "([a-z_]+)"', text))
        named |= set(re.findall(r"rule ([a-z]+_[a-z_]+)", text))
        named |= set(re.findall(r'problem\([^)]*?"([a-z]+_[a-z_]+)", "(?:row|cell|column|file)"',
                                text, flags=re.S))
    registered = {r.value for r in Rule}
    assert named, "the search found no rule names"
    assert named <= registered, named - registered


def test_unchanged_file_is_hashed_not_parsed_again(tmp_path: Path, key, monkeypatch) -> None:
    """Issue 10: the hash is taken before reading; an unchanged file is not read again."""
    from trackii_eval import Study
    from trackii_eval.ingest import core

    root = _study(tmp_path, "pid,arm,t1,t2,t3\nA1,comparison,1,2,3\n")
    study = Study.load(root, out=tmp_path / "out")
    study.ingest(key)

    def refuse(*_: object) -> None:
        raise AssertionError("an unchanged file was parsed again")

    monkeypatch.setattr(core, "read_wave", refuse)
    again = study.ingest(key)
    assert set(again.table["status"]) == {"unchanged"}
    study.close()


def test_run_strict_stops_after_ingest_with_open_problems(tmp_path: Path,
                                                          key_file: Path) -> None:
    root = _study(tmp_path, "pid,arm,t1,t2,t3\nA1,comparison,1,2,3\n")
    result = runner.invoke(app, ["run", str(root), "--out", str(tmp_path / "out"),
                                 "--key-file", str(key_file), "--strict"])
    assert result.exit_code == 4
    assert "--strict" in result.output
    assert not (tmp_path / "out" / "report.html").exists()
