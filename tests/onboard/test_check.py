"""`trackii-eval check`: a dry run that predicts what ingest does, and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from trackii_eval.cli import app
from trackii_eval.onboard.check import check_study

CASES = Path(__file__).parent / "cases"
runner = CliRunner()


def test_check_agrees_with_ingest_on_the_demo(demo_run, tmp_path: Path) -> None:
    study, summary, _, _ = demo_run
    report = check_study(study.root, out=tmp_path)  # no decisions there: as a first ingest
    assert list(tmp_path.iterdir()) == []  # nothing written
    table = summary.table.set_index("wave")
    files = report.files.set_index("wave")
    assert (files["read"] == table["rows_read"]).all()
    assert (files["stored"] == table["rows_stored"]).all()
    assert (files["quarantined"] == table["rows_quarantined"]).all()
    ambiguous = summary.problems[summary.problems["rule"] == "ambiguous_link"]
    assert len(report.review) == len(ambiguous) > 0
    assert report.needs_decision


def test_check_cli_exit_codes_and_masked_output(tmp_path: Path) -> None:
    root = tmp_path / "case"
    shutil.copytree(CASES / "participant-columns-per-wave", root)
    result = runner.invoke(app, ["check", str(root), "--out", str(tmp_path / "out")])
    assert result.exit_code == 4
    assert "no participant code column 'pcode'" in result.output
    assert "waves[0].columns: {code: ...}" in result.output
    assert "AB01RZ02" not in result.output  # no raw code is ever printed
    assert not (tmp_path / "out").exists()
    # the edit the message asks for, plus the arms
    text = (root / "study.yaml").read_text()
    text = text.replace("file: wave1.csv}", "file: wave1.csv, columns: {code: Q2}}")
    text = text.replace("arms:\n", "participants: {file: list.csv}\narms:\n")
    (root / "study.yaml").write_text(text)
    (root / "list.csv").write_text("code,arm\nAB01RZ02,dialogue\nCD02EF03,dialogue\n"
                                   "GH04IJ05,comparison\n")
    result = runner.invoke(app, ["check", str(root), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "nothing needs a decision" in result.output


def test_check_reports_sides_and_a_whole_wave_unlinked(tmp_path: Path) -> None:
    root = tmp_path / "case"
    shutil.copytree(CASES / "side-coding-per-wave", root)
    # wave 1 coded 1/2 without labels and no recode: every row is a reported problem
    (root / "wave1.csv").write_text("pcode,side,trust_1\nAB01RZ02,1,4\nCD02EF03,2,5\n"
                                    "GH04IJ05,1,3\n")
    report = check_study(root, out=tmp_path / "out")
    assert sorted(report.problems["rule"]) == ["unknown_side"] * 3
    assert "3 row or cell problem(s) would be quarantined" in report.text()
    # sides that are declared but coded the other way round: nothing is invalid, yet the
    # whole of wave 2 would link to no one
    (root / "wave1.csv").write_text("pcode,side,trust_1\nAB01RZ02,B,4\nCD02EF03,A,5\n"
                                    "GH04IJ05,B,3\n")
    report = check_study(root, out=tmp_path / "out")
    assert report.problems.empty
    assert any(d.startswith("wave 2: 3 of 3 records link to no one") for d in report.decisions)


def test_config_error_exits_2_with_line(tmp_path: Path) -> None:
    root = tmp_path / "case"
    shutil.copytree(CASES / "participant-columns-per-wave", root)
    shutil.copy(root / "instrument_rename_code.yaml", root / "instrument.yaml")
    result = runner.invoke(app, ["check", str(root)])
    assert result.exit_code == 2
    assert "instrument.yaml:11: renames[1].Q2:" in result.output.replace("\n", "")
