"""The command line around the pipeline: version, flags, order of commands, keys, warnings."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trackii_eval import errors
from trackii_eval.cli import EXIT_CODES, _percent, app
from trackii_eval.ingest.pseudonym import load_key, write_key

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("keygen", "ingest", "score", "model", "report", "run")


def test_version() -> None:
    from trackii_eval import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"trackii-eval {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_are_shown_as_flags(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert "--help" in result.output


@pytest.mark.parametrize("command", ["score", "model", "report"])
def test_command_before_ingest_says_what_to_run_and_leaves_no_store(
        command: str, mini: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, [command, str(mini), "--out", str(out)])
    assert result.exit_code == 6
    assert "run `trackii-eval ingest`" in result.output
    assert not (out / "mini.duckdb").exists()
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture()
def two_keys(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "keys" / "a.key", tmp_path / "keys" / "b.key"
    write_key(a)
    write_key(b)
    return a, b


def test_replace_names_changed_and_unchanged_waves(mini: Path, tmp_path: Path,
                                                   two_keys: tuple[Path, Path]) -> None:
    out, key = tmp_path / "out", str(two_keys[0])
    assert runner.invoke(app, ["ingest", str(mini), "-o", str(out), "-k", key]).exit_code == 0
    wave2 = mini / "waves" / "w2.csv"
    frame = pd.read_csv(wave2, dtype=str, keep_default_na=False)
    frame.iloc[:-3].to_csv(wave2, index=False)
    refused = runner.invoke(app, ["ingest", str(mini), "-o", str(out), "-k", key])
    assert refused.exit_code == 3 and "--replace" in refused.output
    result = runner.invoke(app, ["ingest", str(mini), "-o", str(out), "-k", key, "--replace"])
    assert result.exit_code == 0, result.output
    assert ("waves replaced: 2 (waves/w2.csv); newly ingested: none; unchanged: "
            "1 (waves/w1.csv), 3 (waves/w3.csv)") in result.output


def test_wrong_key_is_refused_with_both_fingerprints(mini: Path, tmp_path: Path,
                                                     two_keys: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    a, b = two_keys
    assert runner.invoke(app, ["ingest", str(mini), "-o", str(out), "-k", str(a)]).exit_code == 0
    before = (out / "mini.duckdb").read_bytes()
    result = runner.invoke(app, ["ingest", str(mini), "-o", str(out), "-k", str(b)])
    assert result.exit_code == 3
    line = " ".join(result.output.split())
    assert load_key(a).fingerprint in line and load_key(b).fingerprint in line
    assert "trackii-eval rekey" in line
    assert a.read_text().strip() not in result.output and b.read_text().strip() not in line
    assert (out / "mini.duckdb").read_bytes() == before


def test_shares_are_printed_as_percentages() -> None:
    linkage = pd.DataFrame({"wave": [1, 2], "records": [40, 36], "linked_share": [0.0, 1.0],
                            "match_rate": [1.0, 0.9]})
    shown = _percent(linkage)
    assert shown["match_rate"].tolist() == ["100%", "90%"]
    assert shown["linked_share"].tolist() == ["0%", "100%"]
    assert shown["records"].tolist() == [40, 36]


def test_absorbing_effect_warning_becomes_one_line() -> None:
    from linearmodels import PanelOLS

    rng = np.random.default_rng(1)
    idx = pd.MultiIndex.from_product([range(20), range(4)], names=["participant", "wave"])
    frame = pd.DataFrame({"x": rng.normal(size=80),
                          "constant_per_person": np.repeat(rng.normal(size=20), 4)}, index=idx)
    frame["y"] = frame["x"] + rng.normal(size=80)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PanelOLS(frame["y"], frame[["x", "constant_per_person"]], entity_effects=True,
                 drop_absorbed=True).fit()
    absorbed = [w for w in caught if w.category.__name__ == "AbsorbingEffectWarning"]
    assert absorbed, "linearmodels no longer warns: this test must be updated"
    line = errors.warning_line(absorbed[0].message, absorbed[0].category)
    assert "\n" not in line and "constant_per_person" in line and "fixed effects" in line


def _error_classes() -> list[type[errors.TrackIIEvalError]]:
    return [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)
            and issubclass(getattr(errors, n), errors.TrackIIEvalError)
            and getattr(errors, n) is not errors.TrackIIEvalError]


def test_readme_command_line_section_names_every_command() -> None:
    """A newcomer reads the list under "## Command line": every command the CLI has is in it."""
    import typer

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Command line"):]
    listed = section[: section.index("`--help` on each")]
    for name in typer.main.get_command(app).commands:
        assert re.search(rf"\b{name}\b", listed), f"README's command list lacks `{name}`"


def test_every_error_class_has_an_exit_code_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| code | meaning | error class |"):]
    table = table[: table.index("\n\n")]
    for cls in _error_classes():
        assert cls in EXIT_CODES, cls.__name__
        row = next(r for r in table.splitlines() if f"`{cls.__name__}`" in r)
        assert row.startswith(f"| {EXIT_CODES[cls]} |"), (cls.__name__, row)


def test_stages_do_not_import_the_study_facade() -> None:
    """Dependencies point one way: only the façade, the CLI and the package root know Study."""
    package = ROOT / "trackii_eval"
    allowed = {package / "study.py", package / "cli.py", package / "__init__.py"}
    offenders = []
    for path in package.rglob("*.py"):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and re.fullmatch(
                    r"(trackii_eval\.)?study", node.module.lstrip(".")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_plan_errors_are_formatted_as_other_configuration_errors(mini: Path,
                                                                 tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("models:\n  - name: a\n    kind: growth\n    outcome: perceptions\n"
                    "    formul: 'x ~ y'\n")
    result = runner.invoke(app, ["model", str(mini), "--plan", str(plan), "-o",
                                 str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {plan}:5: models[0].formul: Extra inputs are not "
                                     "permitted")


def test_cli_after_a_re_ingest_report_refuses_and_model_re_scores(
        mini: Path, tmp_path: Path, two_keys: tuple[Path, Path]) -> None:
    out, key = tmp_path / "out", str(two_keys[0])
    base = [str(mini), "-o", str(out)]
    assert runner.invoke(app, ["ingest", *base, "-k", key]).exit_code == 0
    first = runner.invoke(app, ["model", *base])  # scores first: there are none yet
    assert first.exit_code == 0, first.output
    assert "scored 60 participants" in first.output
    assert runner.invoke(app, ["report", *base]).exit_code == 0
    wave3 = mini / "waves" / "w3.csv"
    frame = pd.read_csv(wave3, dtype=str, keep_default_na=False)
    frame.iloc[:-5].to_csv(wave3, index=False)
    assert runner.invoke(app, ["ingest", *base, "-k", key, "--replace"]).exit_code == 0
    stale = runner.invoke(app, ["report", *base])
    assert stale.exit_code == 6
    assert "run `trackii-eval model`" in " ".join(stale.output.split())
    again = runner.invoke(app, ["model", *base])
    assert again.exit_code == 0, again.output
    assert "before the ingested data changed" in again.output and "scoring again" in again.output
    assert runner.invoke(app, ["report", *base]).exit_code == 0
    import json

    from trackii_eval.pipeline.provenance import file_sha256

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["wave 3"]["sha256"] == file_sha256(wave3)
