"""The command line: exit codes, one-line errors without tracebacks, the whole run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from trackii_eval.cli import app

runner = CliRunner()


def test_help_lists_stages() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("ingest", "score", "model", "report", "run", "keygen"):
        assert cmd in result.output


def test_run_end_to_end(demo_copy: Path, key_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(demo_copy), "--out", str(out), "--key-file",
                                 str(key_file)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()
    assert "report written" in result.output


def test_config_error_is_one_line_exit_2(demo_copy: Path, key_file: Path, tmp_path: Path) -> None:
    (demo_copy / "waves" / "wave2_post.csv").unlink()
    result = runner.invoke(app, ["ingest", str(demo_copy), "--out", str(tmp_path / "o"),
                                 "--key-file", str(key_file)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "study.yaml:" in lines[0] and "waves[1].file" in lines[0]


def test_value_outside_scale_is_reported_as_one_line(demo_copy: Path, key_file: Path,
                                                    tmp_path: Path) -> None:
    path = demo_copy / "waves" / "wave1_baseline.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[2, "solvable_1"] = "12"
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["ingest", str(demo_copy), "--out", str(tmp_path / "o"),
                                 "--key-file", str(key_file), "--strict"])
    assert result.exit_code == 4
    assert "waves/wave1_baseline.csv:4:solvable_1: value outside the item's scale" in result.output
    assert (tmp_path / "o" / "ingest_problems.csv").is_file()


def test_missing_key_explains_how_to_make_one(demo_copy: Path, tmp_path: Path,
                                              monkeypatch) -> None:
    monkeypatch.delenv("TRACKII_EVAL_KEY", raising=False)
    monkeypatch.delenv("TRACKII_EVAL_KEY_FILE", raising=False)
    result = runner.invoke(app, ["ingest", str(demo_copy), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3
    assert "keygen" in result.output
    assert "Traceback" not in result.output


def test_item_absent_from_instrument_is_one_line(demo_copy: Path, key_file: Path,
                                                tmp_path: Path) -> None:
    path = demo_copy / "waves" / "wave3_followup1.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["trust_other_9"] = "4"
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["ingest", str(demo_copy), "--out", str(tmp_path / "o"),
                                 "--key-file", str(key_file), "--strict"])
    assert result.exit_code == 4
    assert ("waves/wave3_followup1.csv:1:trust_other_9: column is not an item of the "
            "instrument") in result.output
    assert "Traceback" not in result.output


def test_renamed_column_to_unknown_item_is_a_config_error(demo_copy: Path, key_file: Path,
                                                          tmp_path: Path) -> None:
    path = demo_copy / "instrument.yaml"
    path.write_text(path.read_text().replace("3: {trust_other_a: trust_other_1}",
                                             "3: {trust_other_a: trust_other_7}"))
    result = runner.invoke(app, ["ingest", str(demo_copy), "--out", str(tmp_path / "o"),
                                 "--key-file", str(key_file)])
    assert result.exit_code == 2
    assert "instrument.yaml:" in result.output and "trust_other_7" in result.output
    assert "Traceback" not in result.output
