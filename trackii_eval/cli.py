"""The ``trackii-eval`` command line: a thin layer over the public API.

Exit codes (for scripts):

==  ==========================================================================
0   success
1   unexpected internal error (please report it; ``--debug`` shows the traceback)
2   configuration or usage error (study.yaml, instrument.yaml, analysis plan, options)
3   input error: a wave file cannot be ingested, or no pseudonymization key
4   ``--strict`` and ingest quarantined rows or cells; ``check`` found something to decide
5   model error, or ``--strict`` and a model did not converge
6   store or report error
==  ==========================================================================
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from . import errors

app = typer.Typer(
    name="trackii-eval",
    help="Evaluate Track II dialogues from longitudinal panel surveys: ingest wave exports, score "
    "the Allen-Sharp outputs, model change, and report it.",
    no_args_is_help=True,
    add_completion=False,
    epilog="Exit codes: 0 ok; 1 internal error; 2 configuration or usage error; 3 a file cannot "
    "be ingested or no key; 4 --strict and data were quarantined; 5 model error (or --strict "
    "and a fit did not converge); 6 store or report error.",
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

MAX_PROBLEM_LINES = 50  # a broken export can have thousands; the CSV has them all

EXIT_CODES: dict[type[errors.TrackIIEvalError], int] = {
    errors.ConfigError: 2,
    errors.IngestError: 3,
    errors.ModelError: 5,
    errors.StoreError: 6,
    errors.ReportError: 6,
    errors.ScoringError: 6,
}

StudyArg = Annotated[Path, typer.Argument(help="Study folder holding study.yaml.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder for the store and reports "
                              "(default: build/<study id>).")
]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key-file", "-k", envvar="TRACKII_EVAL_KEY_FILE",
                 help="Pseudonymization key file (make one with `trackii-eval keygen`)."),
]
PlanOpt = Annotated[
    Path | None, typer.Option("--plan", help="Analysis plan YAML (default: built from the study).")
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on quarantined data or "
                                          "unconverged fits.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]


def _fail(exc: errors.TrackIIEvalError) -> int:
    for line in str(exc).splitlines() or [type(exc).__name__]:
        err.print(f"[bold red]error:[/] {line}", markup=True, highlight=False, soft_wrap=True)
    for cls, code in EXIT_CODES.items():
        if isinstance(exc, cls):
            return code
    return 1


@contextmanager
def _guard(debug: bool) -> Iterator[None]:
    try:
        yield
    except errors.TrackIIEvalError as exc:
        raise typer.Exit(_fail(exc)) from None
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:
        if debug:
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}; re-run with --debug "
                  "and report it", highlight=False)
        raise typer.Exit(1) from None


def _step(label: str, fn: Callable[[], Any]) -> Any:
    with err.status(label, spinner="dots"):
        return fn()


def _load(study_dir: Path, out_dir: Path | None) -> Any:
    from .study import Study

    return Study.load(study_dir, out=out_dir)


def _do_ingest(study: Any, key_file: Path | None, replace: bool, strict: bool) -> int:
    from .ingest.pseudonym import load_key

    key = load_key(key_file)
    summary = _step("Ingesting wave files", lambda: study.ingest(key, replace=replace))
    out.print(summary.summary(), highlight=False)
    lines = summary.problem_lines()
    for line in lines[:MAX_PROBLEM_LINES]:
        err.print(f"[yellow]problem:[/] {line}", highlight=False, soft_wrap=True)
    if len(lines) > MAX_PROBLEM_LINES:
        err.print(f"... and {len(lines) - MAX_PROBLEM_LINES} more problem(s) in the table below",
                  highlight=False)
    if len(summary.problems):
        path = study.out / "ingest_problems.csv"
        summary.problems.to_csv(path, index=False)
        out.print(f"{len(summary.problems)} problem(s) written to {path}", highlight=False)
    return 4 if strict and len(summary.problems) else 0


def _do_score(study: Any) -> None:
    scores = _step("Scoring participants", study.score)
    rel = study.reliability()
    out.print(f"scored {scores['participant'].nunique()} participants x "
              f"{scores['wave'].nunique()} waves x {scores['construct'].nunique()} constructs; "
              f"{int((scores['status'] == 'too_few_items').sum())} score(s) missing for too few "
              f"answered items; {int(rel['flag'].sum()) if len(rel) else 0} reliability flag(s)",
              highlight=False)


def _do_model(study: Any, plan_file: Path | None, strict: bool) -> int:
    from .analysis import load_plan

    plan = load_plan(plan_file) if plan_file else None
    results = _step("Fitting models", lambda: study.fit_models(plan))
    bad = 0
    for name, fit in results.fits.items():
        warnings = getattr(fit, "warnings", [])
        state = "ok" if not warnings else "; ".join(warnings)
        out.print(f"model {name}: {state}", highlight=False)
        bad += bool(getattr(fit, "converged", True) is False)
    return 5 if strict and bad else 0


@app.command()
def keygen(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the key (outside the "
                                            "repository).")],
) -> None:
    """Write a new pseudonymization key (32 random bytes) with owner-only permissions.

    Keep it outside the repository and the store, and back it up: without it, new waves can no
    longer be linked to the pseudonyms of earlier waves.
    """
    from .ingest.pseudonym import write_key

    with _guard(False):
        fingerprint = write_key(out_file.expanduser())
        out.print(f"key written to {out_file} (fingerprint {fingerprint})", highlight=False)


@app.command()
def ingest(
    study_dir: StudyArg, out_dir: OutOpt = None, key_file: KeyOpt = None,
    replace: Annotated[bool, typer.Option(help="Replace a changed file of an ingested wave.")]
    = False, strict: StrictOpt = False, debug: DebugOpt = False,
) -> None:
    """Read, validate, pseudonymize and store the study's wave files.

    Every row ends in the store or in quarantine with a reason; each problem is printed as
    file:row:column: rule (value), and the full table is written next to the store.
    """
    with _guard(debug):
        code = _do_ingest(_load(study_dir, out_dir), key_file, replace, strict)
    raise typer.Exit(code)


@app.command()
def score(study_dir: StudyArg, out_dir: OutOpt = None, debug: DebugOpt = False) -> None:
    """Score every participant-wave on the Allen-Sharp outputs, with reliability per wave."""
    with _guard(debug):
        _do_score(_load(study_dir, out_dir))


@app.command()
def model(
    study_dir: StudyArg, out_dir: OutOpt = None, plan: PlanOpt = None, strict: StrictOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fit the analysis plan's growth and panel models to the scores; results are stored."""
    with _guard(debug):
        code = _do_model(_load(study_dir, out_dir), plan, strict)
    raise typer.Exit(code)


@app.command()
def report(study_dir: StudyArg, out_dir: OutOpt = None, debug: DebugOpt = False) -> None:
    """Write the self-contained HTML impact report from stored results."""
    with _guard(debug):
        study = _load(study_dir, out_dir)
        path = _step("Rendering report", study.report)
        out.print(f"report written to {path}", highlight=False)


@app.command()
def run(
    study_dir: StudyArg, out_dir: OutOpt = None, key_file: KeyOpt = None, plan: PlanOpt = None,
    replace: Annotated[bool, typer.Option(help="Replace changed files of ingested waves.")]
    = False, strict: StrictOpt = False, debug: DebugOpt = False,
) -> None:
    """Run every stage: ingest, score, model, report."""
    with _guard(debug):
        study = _load(study_dir, out_dir)
        code = _do_ingest(study, key_file, replace, strict)
        if code:
            raise typer.Exit(code)
        _do_score(study)
        code = _do_model(study, plan, strict)
        if code:
            raise typer.Exit(code)
        path = _step("Rendering report", study.report)
        out.print(f"report written to {path}", highlight=False)


@app.command()
def check(study_dir: StudyArg, out_dir: OutOpt = None, debug: DebugOpt = False) -> None:
    """Dry run: validate study.yaml, instrument.yaml and every file without writing a store.

    Lists what ingest would quarantine, leave for review or leave unlinked, and which
    participants would have no arm. Exits 4 when something needs a decision, 0 when `run`
    can go ahead.
    """
    from .onboard.check import check_study

    with _guard(debug):
        report = _step("Checking the study", lambda: check_study(study_dir, out_dir))
        out.print(report.text(MAX_PROBLEM_LINES), highlight=False, soft_wrap=True)
    raise typer.Exit(4 if report.needs_decision else 0)


@app.command()
def init(
    exports_dir: Annotated[Path, typer.Argument(help="Folder of wave exports (CSV, Excel, SPSS, "
                                                "Stata, Qualtrics, KoboToolbox).")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing study.yaml/instrument.yaml.")]
    = False,
    debug: DebugOpt = False,
) -> None:
    """Draft study.yaml and instrument.yaml from a folder of exports, every guess marked.

    Reads variable and value labels (SPSS, Stata), the Qualtrics question-text row and a
    KoboToolbox XLSForm when the folder has one; guesses scales, constructs (from name
    prefixes), participant columns and identifiers. Review every line marked `# REVIEW`.
    """
    from .onboard.init import init_study

    with _guard(debug):
        draft = _step("Drafting the configuration", lambda: init_study(exports_dir,
                                                                       overwrite=force))
        out.print(draft.summary(), highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover - console entry point
    """Entry point for ``python -m trackii_eval``."""
    sys.exit(app())
