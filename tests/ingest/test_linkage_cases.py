"""The linkage cases of issue 8 run end to end through the CLI, with the right result.

Fixtures are copies of ``shared/cases/<case>`` (synthetic; no real person): see the README
there for what each case reproduces.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from trackii_eval.cli import app
from trackii_eval.study import Study

CASES = Path(__file__).parent / "fixtures" / "cases"
runner = CliRunner()


def _ingest(case: str, tmp_path: Path, key_file: Path, *extra: str) -> tuple[Path, str]:
    study_dir = tmp_path / case
    shutil.copytree(CASES / case, study_dir)
    out = tmp_path / "out"
    result = runner.invoke(app, ["ingest", str(study_dir), "--out", str(out), "--key-file",
                                 str(key_file), *extra])
    assert result.exit_code in (0, 4), result.output
    return study_dir, out


def _participants(study_dir: Path, out: Path) -> pd.DataFrame:
    study = Study.load(study_dir, out=out)
    try:
        return study.store.query(
            "SELECT participant, wave, row FROM submissions ORDER BY wave, row")
    finally:
        study.close()


def _review(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "linkage_review.csv", dtype=str, keep_default_na=False,
                       encoding="utf-8-sig")


def test_digit_typo_is_linked_to_its_only_candidate(tmp_path: Path, key_file: Path) -> None:
    # Row 2 typed birth day 02 then 12 (0 -> 1 is no neighbour on the number row, but nobody
    # else is within one element): one person, one pseudonym.
    study_dir, out = _ingest("digit-typo-split-off", tmp_path, key_file)
    subs = _participants(study_dir, out)
    assert len(subs) == 6 and subs["participant"].nunique() == 3
    by = subs.set_index(["wave", "row"])["participant"]
    for row in (2, 3, 4):
        assert by[(1, row)] == by[(2, row)]
    assert not (out / "linkage_review.csv").exists()  # nothing to decide


def test_ambiguous_code_is_quarantined_not_a_new_person(tmp_path: Path,
                                                         key_file: Path) -> None:
    study_dir, out = _ingest("ambiguous-code-made-new-person", tmp_path, key_file)
    subs = _participants(study_dir, out)
    # Wave 2 row 2 is one element from P0 and one keystroke from P2: quarantined, listed.
    assert len(subs) == 8
    assert (2, 2) not in set(zip(subs["wave"], subs["row"], strict=True))
    review = _review(out)
    assert list(review["record_id"]) == ["wave2.csv:row 2"]
    # Ranked: the candidate one slip away (P2, row 4) first, the other one element away next.
    assert review.loc[0, "candidates"] == "wave1.csv:row 4 ; wave1.csv:row 2"
    # The other 8 records linked; 0 new participants after wave 1.
    baseline = set(subs.loc[subs["wave"] == 1, "participant"])
    assert len(baseline) == 3 and set(subs["participant"]) == baseline
    by = subs.set_index(["wave", "row"])["participant"]
    assert by[(2, 3)] == by[(1, 3)] and by[(2, 4)] == by[(1, 4)]
    assert all(by[(3, r)] == by[(1, r)] for r in (2, 3, 4))  # ambiguity stayed local
    problems = pd.read_csv(out / "ingest_problems.csv")
    assert list(problems["rule"]) == ["ambiguous_link"]


def test_review_decision_resolves_the_ambiguous_case(tmp_path: Path, key_file: Path) -> None:
    study_dir, out = _ingest("ambiguous-code-made-new-person", tmp_path, key_file)
    review = _review(out)
    review.loc[0, "decision"] = "wave1.csv:row 2"  # the evaluator: it is P0
    review.to_csv(out / "linkage_review.csv", index=False, encoding="utf-8-sig")
    _ingest_again = runner.invoke(app, ["ingest", str(study_dir), "--out", str(out),
                                        "--key-file", str(key_file)])
    assert _ingest_again.exit_code == 0, _ingest_again.output
    subs = _participants(study_dir, out).set_index(["wave", "row"])["participant"]
    assert len(subs) == 9 and subs[(2, 2)] == subs[(1, 2)] == subs[(3, 2)]


def test_possible_matches_setting_stores_and_lists(tmp_path: Path, key_file: Path) -> None:
    # review_possible_matches: false stores the record as a new person, but never silently:
    # it is listed in linkage_review.csv and counted in the summary.
    study_dir = tmp_path / "study"
    shutil.copytree(CASES / "ambiguous-code-made-new-person", study_dir)
    yaml = (study_dir / "study.yaml").read_text()
    (study_dir / "study.yaml").write_text(
        yaml.replace("  method: sgic\n", "  method: sgic\n  review_possible_matches: false\n"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["ingest", str(study_dir), "--out", str(out), "--key-file",
                                 str(key_file)])
    assert result.exit_code == 0, result.output
    subs = _participants(study_dir, out)
    assert len(subs) == 9 and subs["participant"].nunique() == 4
    review = _review(out)
    assert list(review["record_id"]) == ["wave2.csv:row 2"]
    assert list(review["reason"]) == ["possible_match"]


def test_summary_counts_unexpected_new_people(tmp_path: Path, key_file: Path) -> None:
    # A code typed beyond recognition (two elements) after baseline in a study without late
    # entrants: stored, counted per wave as unexpected, and listed for review.
    study_dir = tmp_path / "study"
    shutil.copytree(CASES / "digit-typo-split-off", study_dir)
    (study_dir / "wave2.csv").write_text(
        "pcode,side,trust_1\nIQ11SO02,B,4\nUV05WX08,A,5\nEF07GH09,A,3\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["ingest", str(study_dir), "--out", str(out), "--key-file",
                                 str(key_file)])
    assert result.exit_code == 0, result.output
    assert "unexpected" in result.output
    study = Study.load(study_dir, out=out)
    try:
        table = study.store.query("SELECT * FROM linkage ORDER BY wave")
    finally:
        study.close()
    assert list(table["unexpected"]) == [0, 1]
    review = _review(out)
    assert list(zip(review["record_id"], review["reason"], strict=True)) == [
        ("wave2.csv:row 4", "unexpected_new")]


def test_strict_fails_while_a_listed_record_awaits_a_decision(tmp_path: Path,
                                                              key_file: Path) -> None:
    # A possible match stored as a new person is not quarantined (no open problem), but it is
    # a decision still to make: --strict must not pass it.
    study_dir = tmp_path / "study"
    shutil.copytree(CASES / "ambiguous-code-made-new-person", study_dir)
    yaml = (study_dir / "study.yaml").read_text()
    (study_dir / "study.yaml").write_text(
        yaml.replace("  method: sgic\n", "  method: sgic\n  review_possible_matches: false\n"))
    out = tmp_path / "out"
    args = ["ingest", str(study_dir), "--out", str(out), "--key-file", str(key_file)]
    assert runner.invoke(app, args).exit_code == 0
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 4, strict.output


def test_problem_line_says_what_to_do_once(tmp_path: Path, key_file: Path) -> None:
    study_dir = tmp_path / "study"
    shutil.copytree(CASES / "ambiguous-code-made-new-person", study_dir)
    result = runner.invoke(app, ["ingest", str(study_dir), "--out", str(tmp_path / "out"),
                                 "--key-file", str(key_file)])
    lines = [line for line in result.output.splitlines() if "ambiguous_link" in line]
    assert lines
    for line in lines:
        assert line.count("decide in linkage_review.csv") == 1, line
