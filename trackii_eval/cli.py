"""The ``trackii-eval`` command line: a thin layer over the public API.

Exit codes (for scripts), with the error class behind each:

==  ==========================================================================
0   success
1   unexpected internal error (please report it; ``--debug`` shows the traceback)
2   configuration or usage error (study.yaml, instrument.yaml, analysis plan, options):
    ``ConfigError``
3   input error: a wave file cannot be ingested, no pseudonymization key, or a key that is
    not the store's: ``IngestError``, ``KeyMissingError``, ``KeyMismatchError``
4   ``--strict`` and ingest quarantined rows or cells; ``check`` found something to decide
5   model error, or ``--strict`` and a model did not converge: ``ModelError``,
    ``UnsupportedModelError``
6   store, scoring or report error, or a stage run out of order / on out-of-date output:
    ``StoreError``, ``StaleResultError``, ``ScoringError``, ``ReportError``, ``DisclosureError``
7   disclosure risk: ``audit`` found an identifier or a small or recoverable cell;
    ``export`` is not k-anonymous
==  ==========================================================================
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from . import errors
from .privacy.at_rest import set_owner_only_umask as _set_owner_only_umask


class _FlagHelp:
    """Show ``--help`` as a flag, like every other flag (typer would show ``--help <bool>``)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class _Command(_FlagHelp, TyperCommand):
    pass


class _Group(_FlagHelp, TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    name="trackii-eval",
    help="Evaluate Track II dialogues from longitudinal panel surveys: ingest wave exports, score "
    "the Allen-Sharp outputs, model change, and report it.",
    no_args_is_help=True,
    add_completion=False,
    epilog="Exit codes: 0 ok; 1 internal error; 2 configuration or usage error; 3 a file cannot "
    "be ingested, no key, or not the store's key; 4 --strict and data were quarantined; 5 model "
    "error (or --strict and a fit did not converge); 6 store, scoring or report error, or a "
    "stage run out of order.",
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

MAX_PROBLEM_LINES = 50  # a broken export can have thousands; the CSV has them all

EXIT_CODES: dict[type[errors.TrackIIEvalError], int] = {
    errors.ConfigError: 2,
    errors.IngestError: 3,
    errors.KeyMissingError: 3,
    errors.KeyMismatchError: 3,
    errors.ModelError: 5,
    errors.UnsupportedModelError: 5,
    errors.StoreError: 6,
    errors.StaleResultError: 6,
    errors.ReportError: 6,
    errors.DisclosureError: 6,
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
ReportPlanOpt = Annotated[
    Path | None, typer.Option("--plan", help="Refuse unless the stored results are of this "
                              "analysis plan (default: report the plan fitted last).")
]
# metavar="": a flag takes no value, so help shows `--strict`, not `--strict <bool>`
StrictOpt = Annotated[bool, typer.Option("--strict", metavar="", help="Fail on quarantined "
                                          "data or unconverged fits.")]
DebugOpt = Annotated[bool, typer.Option("--debug", metavar="",
                                        help="Show tracebacks of internal errors.")]
PdfOpt = Annotated[bool, typer.Option("--pdf", metavar="", help="Also write the report as PDF "
                                       "(report.pdf beside report.html; one per linked page).")]
ReplaceOpt = Annotated[bool, typer.Option("--replace", metavar="", help="Replace changed files "
                                           "of ingested waves (the old versions are kept).")]


def _version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"trackii-eval {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_version,
                                          is_eager=True, help="Show the version and exit.")]
    = False,
) -> None:
    """Evaluate Track II dialogues from longitudinal panel surveys."""


def _fail(exc: errors.TrackIIEvalError) -> int:
    for line in str(exc).splitlines() or [type(exc).__name__]:
        err.print(f"[bold red]error:[/] {line}", markup=True, highlight=False, soft_wrap=True)
    for cls, code in EXIT_CODES.items():
        if isinstance(exc, cls):
            return code
    return 1


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Library and project warnings as one line each (repeats counted, no file paths)."""
    counts: dict[str, int] = {}
    for w in caught:
        line = errors.warning_line(w.message, w.category)
        counts[line] = counts.get(line, 0) + 1
    for line, n in counts.items():
        times = f" ({n} times)" if n > 1 else ""
        err.print(f"[yellow]warning:[/] {line}{times}", highlight=False, soft_wrap=True)


@contextmanager
def _guard(debug: bool) -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except errors.TrackIIEvalError as exc:
            _print_warnings(caught)
            raise typer.Exit(_fail(exc)) from None
        except (KeyboardInterrupt, typer.Exit):
            _print_warnings(caught)
            raise
        except Exception as exc:
            if debug:
                raise
            _print_warnings(caught)
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}; re-run with --debug "
                      "and report it", highlight=False)
            raise typer.Exit(1) from None
        _print_warnings(caught)


def _step(label: str, fn: Callable[[], Any]) -> Any:
    with err.status(label, spinner="dots"):
        return fn()


def _load(study_dir: Path, out_dir: Path | None, plan: Path | None = None) -> Any:
    from .study import Study

    return Study.load(study_dir, out=out_dir, plan=plan)


def _percent(frame: Any) -> Any:
    """Shares and rates (0-1) as whole percentages for people (``90%``, not ``0.900000``)."""
    if frame is None:
        return None
    shown = frame.copy()
    for col in shown.columns:
        if col.endswith(("_share", "_rate")):
            shown[col] = [("–" if v != v else f"{100 * v:.0f}%") for v in shown[col]]
    return shown


def _changes(summary: Any) -> str:
    """Which waves a --replace changed and which it left as they were."""
    def waves(status: tuple[str, ...]) -> str:
        found = [f"{f.wave} ({f.file})" for f in summary.files if f.status in status]
        return ", ".join(found) or "none"

    return (f"waves replaced: {waves(('replaced',))}; newly ingested: {waves(('ingested',))}; "
            f"unchanged: {waves(('unchanged',))}")


def _do_ingest(study: Any, key_file: Path | None, replace: bool, strict: bool) -> int:
    from rich.markup import escape  # a problem line's "[rule ...]" is text, not markup

    from .ingest.pseudonym import load_key

    key = load_key(key_file)
    # what `check` warns about (a wave dated in the future, a date outside its own window, a
    # planned wave overdue) blocks nothing, but ingest says it too
    from .config import config_warnings, load_study_config

    ctx = study.context
    _, config_lines = load_study_config(ctx.root / ctx.study_file)
    for line in config_warnings(ctx.config, config_lines, ctx.study_file):
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    summary = _step("Ingesting wave files", lambda: study.ingest(key, replace=replace))
    out.print(dataclasses.replace(summary, linkage=_percent(summary.linkage)).summary(),
              highlight=False)
    if replace or any(f.status == "replaced" for f in summary.files):
        out.print(_changes(summary), highlight=False, soft_wrap=True)
    lines = summary.report_lines()
    for line in lines[:MAX_PROBLEM_LINES]:
        err.print(f"[yellow]problem:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if len(lines) > MAX_PROBLEM_LINES:
        err.print(f"... and {len(lines) - MAX_PROBLEM_LINES} more problem(s) in the table below",
                  highlight=False)
    for line in summary.error_lines():
        err.print(f"[red]{escape(line)}[/]", highlight=False, soft_wrap=True)
    # every open problem of every active file version, not only this run's: a second run
    # must not hide the first's problems (rewritten, so a fixed problem disappears too)
    open_problems = (summary.open_problems if summary.open_problems is not None
                     else summary.problems)
    path = study.out / "ingest_problems.csv"
    open_problems.to_csv(path, index=False)
    if len(open_problems):
        out.print(f"{len(open_problems)} open problem(s) written to {path}", highlight=False)
    # a record stored as a new person but listed for review is a decision still to make
    failed = len(open_problems) > 0 or bool(summary.empty_waves) or summary.n_listed > 0
    if strict and failed:
        err.print("--strict: data were quarantined or left for review; exit 4", highlight=False)
    return 4 if strict and failed else 0


def _do_score(study: Any) -> None:
    _ = study.store  # refuses a missing store (run ingest first) before the spinner starts
    scores = _step("Scoring participants", study.score)
    rel = study.reliability()
    out.print(f"scored {scores['participant'].nunique()} participants x "
              f"{scores['wave'].nunique()} waves x {scores['construct'].nunique()} constructs; "
              f"{int((scores['status'] == 'too_few_items').sum())} score(s) missing for too few "
              f"answered items; {int(rel['flag'].sum()) if len(rel) else 0} reliability flag(s)",
              highlight=False)


def _do_model(study: Any, strict: bool) -> int:
    stale = study.scores_stale()
    if stale is not None and stale != "no scores yet":
        out.print(f"note: {stale}; scoring again first", highlight=False)
    if stale is not None:
        _do_score(study)
    results = _step("Fitting models", study.fit_models)
    bad = 0
    for name, fit in results.fits.items():  # every fit follows the results protocol
        messages = [*fit.warnings, *results.notes.get(name, [])]
        state = "ok" if not messages else "; ".join(messages)
        out.print(f"model {name}: {state}", highlight=False)
        bad += not fit.record.converged
    for name, tables in results.tables.items():  # the plan's change-that-matters analyses
        rows = ", ".join(f"{t} ({len(frame)} rows)" for t, frame in tables.items())
        out.print(f"analysis {name}: {rows}", highlight=False)
    return 5 if strict and bad else 0


@app.command(cls=_Command)
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


@app.command(cls=_Command)
def ingest(
    study_dir: StudyArg, out_dir: OutOpt = None, key_file: KeyOpt = None,
    replace: ReplaceOpt = False, strict: StrictOpt = False, debug: DebugOpt = False,
) -> None:
    """Read, validate, pseudonymize and store the study's wave files.

    Every row ends in the store or in quarantine with a reason; each problem is printed as
    file:row:column: rule (value), and the full table is written next to the store.
    """
    with _guard(debug):
        code = _do_ingest(_load(study_dir, out_dir), key_file, replace, strict)
    raise typer.Exit(code)


@app.command(cls=_Command)
def score(study_dir: StudyArg, out_dir: OutOpt = None, debug: DebugOpt = False) -> None:
    """Score every participant-wave on the Allen-Sharp outputs, with reliability per wave."""
    with _guard(debug):
        _do_score(_load(study_dir, out_dir))


@app.command(cls=_Command)
def model(
    study_dir: StudyArg, out_dir: OutOpt = None, plan: PlanOpt = None, strict: StrictOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fit the analysis plan's growth and panel models to the scores; results are stored."""
    with _guard(debug):
        code = _do_model(_load(study_dir, out_dir, plan), strict)
    raise typer.Exit(code)


@app.command(cls=_Command)
def report(study_dir: StudyArg, out_dir: OutOpt = None, plan: ReportPlanOpt = None,
           pdf: PdfOpt = False, debug: DebugOpt = False) -> None:
    """Write the self-contained HTML impact report, and manifest.json beside it, from the
    stored results (refused if they are out of date); with --pdf, the same as PDF."""
    with _guard(debug):
        _do_report(_load(study_dir, out_dir, plan), pdf=pdf)


def _do_report(study: Any, pdf: bool = False) -> None:
    _ = study.store  # refuses a missing store (run ingest first) before the spinner starts
    path = _step("Rendering report", study.report)
    out.print(f"report written to {path}; manifest {path.parent / 'manifest.json'}",
              highlight=False)
    if pdf:
        from .report.pdf import write_report_pdfs

        pdfs = _step("Writing PDF", lambda: write_report_pdfs(path))
        out.print(f"PDF written to {pdfs[0]}"
                  + (f" and {len(pdfs) - 1} more beside it" if len(pdfs) > 1 else ""),
                  highlight=False)


@app.command(cls=_Command)
def run(
    study_dir: StudyArg, out_dir: OutOpt = None, key_file: KeyOpt = None, plan: PlanOpt = None,
    replace: ReplaceOpt = False, strict: StrictOpt = False, pdf: PdfOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run every stage: ingest, score, model, report (with --pdf, also as PDF)."""
    with _guard(debug):
        study = _load(study_dir, out_dir, plan)
        code = _do_ingest(study, key_file, replace, strict)
        if code:
            raise typer.Exit(code)
        _do_score(study)
        code = _do_model(study, strict)
        if code:
            raise typer.Exit(code)
        _do_report(study, pdf=pdf)


@app.command(cls=_Command)
def dashboard(
    studies: Annotated[list[str], typer.Argument(
        help="Study folders holding study.yaml; STUDY=OUT when its store is not in build/<id>.",
        metavar="STUDY[=OUT]...")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for dashboard.html and "
                                          "the jointly protected reports/.")] = Path(
        "build/portfolio"),
    serve: Annotated[bool, typer.Option("--serve", metavar="", help="Then serve the folder on "
                                        "127.0.0.1 and print the URL (Ctrl-C stops).")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve (0: a free one).")] = 0,
    debug: DebugOpt = False,
) -> None:
    """Write the funder's portfolio dashboard over one or several studies' stored results.

    The dashboard and the studies' reports are protected together (one disclosure decision);
    publish the reports written to OUT/reports/ with it, not those `run` wrote on their own.
    """
    from .dashboard.build import build_dashboard, load_portfolio, standalone_differences

    with _guard(debug):
        portfolio = load_portfolio([s.partition("=")[::2] for s in studies])
        try:
            dash = _step("Building the dashboard", lambda: build_dashboard(portfolio, out_dir))
            for s in portfolio:
                sid = s.context.study_id
                n = standalone_differences(s, dash)
                note = (f"; {n} numbers the report written by `run` shows are suppressed here, "
                        "so publish this one instead" if n else "")
                out.print(f"report {sid}: {dash.paths[sid]}{note}", highlight=False)
        finally:
            for s in portfolio:
                s.store.close()
        out.print(f"dashboard written to {dash.paths['dashboard']}", highlight=False)
    if serve:
        from .dashboard.serve import serve as _serve

        server, url = _serve(out_dir, port=port)
        out.print(f"serving {out_dir} at {url} (Ctrl-C stops)", highlight=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


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


# ----------------------------------------------------------------------------- privacy
# Everything the command line creates (the store, DuckDB's write-ahead log, reports, problem
# and review files, exports) is readable by its owner only: the umask is set once, here,
# because the command line is the process's entry point.
_set_owner_only_umask()

# Exit code 7: a disclosure risk was found (audit finding; export not k-anonymous).
DISCLOSURE_RISK = 7
PassphraseEnvOpt = Annotated[
    str, typer.Option("--passphrase-env", help="Environment variable holding the passphrase "
                      "(prompted for when it is not set).")
]


def _passphrase(env_var: str, *, confirm: bool) -> str:
    import os

    value = os.environ.get(env_var)
    if value:
        return value
    if not sys.stdin.isatty():
        raise errors.ConfigError(f"no passphrase: set {env_var} or run in a terminal to be "
                                 "prompted")
    return typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


@app.command()
def audit(
    path: Annotated[Path, typer.Argument(help="Folder of outputs (or one file) to scan.")],
    study_dir: Annotated[Path, typer.Option("--study", help="Study folder: its wave files "
                                            "give the identifiers to look for.")],
    k: Annotated[int | None, typer.Option(help="Minimum cell size for count columns of CSV "
                                          "and HTML tables (default: the study's "
                                          "min_cell_size, at least 5).")]
    = None,
    count_column: Annotated[list[str] | None, typer.Option(
        "--count-column", help="Another column name that counts people (repeatable).")]
    = None,
    min_length: Annotated[int, typer.Option(help="Shortest identifier searched as text.")]
    = 6,
    pseudonyms: Annotated[bool, typer.Option(
        "--pseudonyms", help="Also flag keyed pseudonyms (for folders meant for publication; "
        "the store and linkage review file hold them by design).")] = False,
    debug: DebugOpt = False,
) -> None:
    """Scan outputs for the study's identifiers and for small count cells.

    Looks for every value of the participant code, linkage code and declared identifier
    columns of the study's wave files, in any case, HTML-, URL- or JSON-escaped, base64
    embedded, or as an unkeyed SHA-256/SHA-1/MD5 digest; and for counts of 1 to k-1 people in
    CSV tables. One line per finding (file:line: kind: detail), never the identifier itself.
    Exit code 7 when anything is found, 0 when clean.
    """
    from .privacy.audit import audit_path, study_needles
    from .study import Study

    with _guard(debug):
        needles = _step("Reading identifiers from the wave files",
                        lambda: study_needles(study_dir, min_length=min_length))
        if k is None:
            # the issue's floor: no published cell describes fewer than 5 people, whatever
            # study.yaml says
            k = max(Study.load(study_dir).config.privacy.min_cell_size, 5)
        result = _step("Scanning outputs", lambda: audit_path(
            path, needles, k=k, count_columns=count_column or [], pseudonyms=pseudonyms))
        for line in result.lines():
            out.print(line, highlight=False, soft_wrap=True, markup=False)
        for note in result.notes:
            err.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
        if needles.n_too_short:
            err.print(f"note: {needles.n_too_short} identifier value(s) shorter than "
                      f"{min_length} characters were searched as digests only (as text they "
                      "match ordinary words and numbers)", highlight=False, soft_wrap=True)
        out.print(f"audit: {len(result.files_scanned)} file(s) scanned for "
                  f"{needles.n_values} identifier values and counts below k={k}: "
                  f"{len(result.findings)} finding(s)", highlight=False, soft_wrap=True)
    raise typer.Exit(DISCLOSURE_RISK if result.findings else 0)


@app.command()
def rekey(
    study_dir: StudyArg,
    old_key_file: Annotated[Path, typer.Option("--old-key-file", help="The key the store is "
                                               "under now.")],
    new_key_file: Annotated[Path, typer.Option("--new-key-file", help="The new key (make it "
                                               "with `trackii-eval keygen`).")],
    out_dir: OutOpt = None, debug: DebugOpt = False,
) -> None:
    """Re-pseudonymize the store under a new key, from the source wave files.

    Every pseudonym in every table is replaced; links across waves and linkage decisions are
    kept; the key version goes up by one (store meta and key_log table) and the rotation is
    logged in key_rotation.log next to the store. Run `model` (or `run`) again before
    `report` afterwards; keep the old key until the rotation is checked, then destroy it.
    """
    from .ingest.pseudonym import load_key
    from .privacy.rekey import rekey_store

    with _guard(debug):
        study = _load(study_dir, out_dir)
        old, new = load_key(old_key_file), load_key(new_key_file)
        result = _step("Re-keying the store", lambda: rekey_store(study, old, new))
        out.print(result.summary(), highlight=False)


@app.command("export")
def export_(
    study_dir: StudyArg,
    to: Annotated[Path, typer.Option("--to", help="Export folder to create (or, with "
                                     "--encrypt, the encrypted file to write).")],
    out_dir: OutOpt = None,
    k: Annotated[int | None, typer.Option(help="Minimum class size over the quasi-identifiers "
                                          "(default: the study's min_cell_size).")] = None,
    drop: Annotated[list[str] | None, typer.Option(
        "--drop", help="Leave out a quasi-identifier column (repeatable).")] = None,
    include_free_text: Annotated[bool, typer.Option(
        "--include-free-text", help="Export free-text columns (only after review).")] = False,
    keep_store_pseudonyms: Annotated[bool, typer.Option(
        "--keep-store-pseudonyms", help="Use the store's pseudonyms instead of fresh random "
        "export IDs.")] = False,
    allow_below_k: Annotated[bool, typer.Option(
        "--allow-below-k", help="Write even when not k-anonymous.")] = False,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="Encrypt the export with a "
                                          "passphrase (scrypt + Fernet).")] = False,
    passphrase_env: PassphraseEnvOpt = "TRACKII_EVAL_EXPORT_PASSPHRASE",
    debug: DebugOpt = False,
) -> None:
    """Write de-identified microdata for archiving with scholars.

    Pseudonymous responses and scores, a data dictionary and a k-anonymity report over the
    quasi-identifiers (arm, side, dialogue, sector, gender, age band: those present). Free
    text is excluded unless --include-free-text. An export that is not k-anonymous is refused
    (exit code 7) with coarsening options in k_anonymity.md.
    """
    from .privacy.microdata import ExportRefused, export_microdata

    with _guard(debug):
        study = _load(study_dir, out_dir)
        phrase = _passphrase(passphrase_env, confirm=True) if encrypt else None
        try:
            result = _step("Exporting microdata", lambda: export_microdata(
                study, to, k=k, drop=drop or [], include_free_text=include_free_text,
                keep_store_pseudonyms=keep_store_pseudonyms, allow_below_k=allow_below_k,
                passphrase=phrase))
        except ExportRefused as exc:
            _fail(exc)
            raise typer.Exit(DISCLOSURE_RISK) from None
        out.print(result.summary(), highlight=False)


@app.command()
def decrypt(
    file: Annotated[Path, typer.Argument(help="Encrypted export.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to extract into (created "
                                     "owner-only).")],
    passphrase_env: PassphraseEnvOpt = "TRACKII_EVAL_EXPORT_PASSPHRASE",
    debug: DebugOpt = False,
) -> None:
    """Decrypt an export written with `trackii-eval export --encrypt`."""
    from .privacy.encrypt import decrypt_to_folder

    with _guard(debug):
        files = decrypt_to_folder(file, to, _passphrase(passphrase_env, confirm=False))
        out.print(f"{len(files)} file(s) written to {to}", highlight=False)


@app.command("power", cls=_Command)
def power(
    n: Annotated[str, typer.Option("--n", help="Participants per arm; a comma list (20,40,80) "
                                   "gives a power curve.")] = "40",
    model_kind: Annotated[str, typer.Option("--model", help="growth (effect = slope "
                                            "difference, SD/year) or did (level shift, SD).")]
    = "growth",
    waves: Annotated[int, typer.Option("--waves", help="Number of waves.")] = 5,
    spacing: Annotated[float, typer.Option("--spacing", help="Years between waves.")] = 1.0,
    times: Annotated[str | None, typer.Option("--times", help="Wave times in years, e.g. "
                                              "0,0.5,1,2 (overrides --waves/--spacing).")]
    = None,
    effect: Annotated[float, typer.Option("--effect", help="Effect size in SD units (per year "
                                          "for growth).")] = 0.3,
    dialogues: Annotated[int, typer.Option("--dialogues-per-arm", help="Dialogues per arm "
                                           "(0: no dialogue level).")] = 0,
    icc: Annotated[float, typer.Option("--icc", help="Participant share of baseline "
                                       "variance.")] = 0.5,
    icc_dialogue: Annotated[float, typer.Option("--icc-dialogue", help="Dialogue share of "
                                                "baseline variance.")] = 0.0,
    slope_sd: Annotated[float, typer.Option("--slope-sd", help="SD of participant slopes, "
                                            "SD/year.")] = 0.1,
    corr: Annotated[float, typer.Option("--corr", help="Intercept-slope correlation.")] = 0.0,
    attrition: Annotated[float, typer.Option("--attrition", help="Dropout rate per wave after "
                                             "baseline, e.g. 0.2.")] = 0.0,
    dropout_or: Annotated[float, typer.Option("--dropout-or", help="Odds ratio of dropping "
                                              "out per SD of the current outcome (1: MCAR; "
                                              "else missing not at random).")] = 1.0,
    did_start: Annotated[int, typer.Option("--did-start", help="DiD: index of the first "
                                           "wave after the dialogue starts.")] = 1,
    alpha: Annotated[float, typer.Option("--alpha", help="Two-sided test level.")] = 0.05,
    target: Annotated[float, typer.Option("--target", help="Power for the minimal "
                                          "detectable effect.")] = 0.8,
    sims: Annotated[int, typer.Option("--sims", help="Replicates per sample size.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Root seed (same results on any number "
                                      "of workers).")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", help="Local worker processes (-1: all "
                                      "cores).")] = -1,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler "
                                                  "address (tcp://host:8786): run there.")]
    = None,
    figure: Annotated[Path | None, typer.Option("--figure", help="Write the power curve "
                                                "figure (.svg or .png).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as "
                                                  "JSON.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Simulation-based power of a planned growth or DiD study: power (with Monte-Carlo
    interval) per sample size, the closed form where one exists, the minimal detectable
    effect, and a figure."""
    import json
    import math

    from .power import PowerDesign, power_curve
    from .power.run import mde_from_point, minimal_detectable_effect

    with _guard(debug):
        try:
            sizes = [int(v) for v in n.split(",") if v.strip()]
            wave_times = (
                tuple(float(v) for v in times.split(",") if v.strip()) if times
                else tuple(spacing * j for j in range(waves))
            )
        except ValueError as exc:
            raise errors.ConfigError(
                f"--n and --times take comma-separated numbers ({exc}); e.g. --n 20,40,80"
            ) from exc
        try:
            design = PowerDesign(
                model=model_kind, n_per_arm=sizes[0] if sizes else 0,  # type: ignore[arg-type]
                dialogues_per_arm=dialogues, times=wave_times, effect=effect, icc=icc,
                icc_dialogue=icc_dialogue, slope_sd=slope_sd, corr=corr, attrition=attrition,
                dropout_or=dropout_or, did_start=did_start, alpha=alpha,
            )
        except errors.ModelError as exc:
            raise errors.ConfigError(str(exc)) from exc
        curve = power_curve(design, sizes, sims, seed=seed, n_jobs=jobs, scheduler=scheduler)
        rows = []
        for pt in curve.points:
            row = pt.to_dict()
            if not design.mnar:
                row["mde"] = mde_from_point(pt, target)["mde"]
            rows.append(row)
        if design.mnar:
            first = minimal_detectable_effect(design.with_n(sizes[0]), target, sims, seed=seed,
                                              n_jobs=jobs, scheduler=scheduler)
            rows[0]["mde"] = first["mde"]
        unit = "SD/year" if design.model == "growth" else "SD"
        out.print(
            f"{design.model} design: {len(wave_times)} waves at {list(wave_times)} years, effect "
            f"{effect:g} {unit}, attrition {attrition:.0%}/wave"
            + (f" (dropout OR {dropout_or:g} per SD: not at random)" if design.mnar else "")
            + f", {sims} simulations per size, seed {seed}", highlight=False)

        def fmt(v: Any, spec: str) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(
                v, spec)

        out.print(f"{'n/arm':>6} {'power':>6} {'95% MC interval':>16} {'closed form':>11} "
                  f"{'MDE@' + format(target, 'g'):>8}", highlight=False)
        for r in rows:
            ci = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            out.print(
                f"{r['n_per_arm']:>6} {r['power']:>6.3f} {ci:>16} "
                f"{fmt(r['closed_form'], '.3f'):>11} {fmt(r.get('mde'), '.3f'):>8}",
                highlight=False)
        if any(not math.isnan(r["closed_form"]) for r in rows if r["closed_form"] is not None):
            # why the two columns can differ beyond Monte-Carlo error at small n (with dropout
            # above all): the closed form treats the variance components as known
            out.print("closed form: large-sample power from the GLS information with known "
                      "variance components (Lu, Luo & Chen 2008); the simulation estimates them "
                      "and is the answer to use at small n", highlight=False)
        bad = sum(r["n_unconverged"] for r in rows)
        if bad:
            err.print(f"warning: {bad} refit(s) did not converge; they count as fits",
                      highlight=False)
        if figure is not None:
            curve.plot(str(figure), target=target)
            out.print(f"figure written to {figure}", highlight=False)
        if json_out is not None:
            json_out.write_text(json.dumps({"design": design.to_dict(), "points": rows},
                                           indent=2))
            out.print(f"results written to {json_out}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    """Entry point for ``python -m trackii_eval``."""
    sys.exit(app())


if __name__ == "__main__":  # `python -m trackii_eval.cli` as well as `python -m trackii_eval`
    main()
