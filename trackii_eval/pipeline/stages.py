"""The pipeline's stages as functions over a store and a frozen study context.

::

    ingest(store, ctx, key, replace=False) -> IngestSummary   wave files -> store
    score(store, ctx, n_boot=200)         -> DataFrame        store -> scores, reliability, ...
    model(store, ctx)                     -> ModelResults     scores -> results of ctx's plan
    report(store, ctx, path)              -> Path             results -> HTML + manifest.json

Each stage records its run in the store (:mod:`.provenance`) in the same transaction as its
output, and refuses to read an earlier stage's output that is out of date
(:class:`~trackii_eval.errors.StaleResultError`, one line saying what to run). The
:class:`~trackii_eval.study.Study` façade and the command line call these; none of them
imports the façade.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from threadpoolctl import threadpool_limits

from ..errors import IngestError, StaleResultError, StoreError, TrackIIEvalError
from .context import StudyContext, canonical_hash
from .provenance import (
    check_key,
    data_fingerprint,
    file_sha256,
    frame_fingerprint,
    input_hashes,
    last_run,
    new_run_id,
    record_run,
    results_problem,
    scores_problem,
    versions,
)

if TYPE_CHECKING:
    from ..analysis import ModelResults
    from ..ingest.core import IngestSummary
    from ..ingest.pseudonym import PseudonymKey
    from ..store import Store

__all__ = ["N_BOOT", "SCORE_TABLES", "ingest", "model", "report", "score"]

#: Bootstrap resamples of omega's interval per construct and wave (the seed is the wave index).
N_BOOT = 200
#: The tables the score stage writes (all replaced together).
SCORE_TABLES = ("scores", "reliability", "item_statistics", "network", "invariance",
                "idea_metrics")


def _where(store: Store) -> str:
    return "in-memory store" if store.in_memory else str(store.path)


# ------------------------------------------------------------------------------ ingest
def ingest(store: Store, ctx: StudyContext, key: PseudonymKey, *,
           replace: bool = False) -> IngestSummary:
    """Read, validate, pseudonymize, link and store every wave file; record the run.

    Parameters
    ----------
    store
        The study store.
    ctx
        The frozen study context.
    key
        The pseudonymization key. It must be the key the store was made with.
    replace
        Let a changed file of an already-ingested wave replace the stored version.

    Returns
    -------
    IngestSummary
        Per-file outcome (``ingested``, ``unchanged``, ``replaced``) and every problem.

    Raises
    ------
    KeyMismatchError
        The key is not the store's; raised before anything is written.
    IngestError
        A file cannot be ingested (see :func:`trackii_eval.ingest.ingest_study`), or a wave
        file changed on disk while it was being read.
    """
    from ..ingest.core import ingest_study

    check_key(store, key.fingerprint)  # before any write: a wrong key changes nothing
    ctx.out.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id("ingest")
    before = input_hashes(ctx)  # the bytes as they were when the run started
    summary = ingest_study(store, ctx, key, replace=replace)
    for w in ctx.config.fielded_waves:  # a planned wave has no file yet
        role = f"wave {w.index}"
        active = store.query("SELECT sha256 FROM files WHERE wave = ? AND active", [w.index])
        stored = None if active.empty else str(active["sha256"].iloc[0])
        if stored is not None and stored != before[role]:
            raise IngestError(
                f"{w.file}: the file changed while it was being ingested (SHA-256 "
                f"{str(before[role])[:12]} before, {stored[:12]} read); ingest again"
            )
    with store.transaction():
        store.set_meta("config_hash", ctx.config_hash)
        record_run(store, "ingest", {
            "files": before, "study": ctx.study_hash, "instrument": ctx.instrument_hash,
            "key_fingerprint": key.fingerprint, "replace": replace, "versions": versions(),
        }, {
            "data": data_fingerprint(store),
            "files": {f.file: f.status for f in summary.files},
            "problems": len(summary.problems),
        }, run_id=run_id)
    return summary


# ------------------------------------------------------------------------------- score
def score(store: Store, ctx: StudyContext, *, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Score every participant-wave, with reliability, item statistics, network measures,
    measurement invariance and idea-log metrics; all replaced together and the run recorded.

    Parameters
    ----------
    store, ctx
        The study store and its frozen context.
    n_boot
        Bootstrap resamples of omega's percentile interval per construct and wave (at least
        100); each wave's resampling is seeded by its index, so a re-run gives the same
        intervals. Recorded with the run.

    Returns
    -------
    pandas.DataFrame
        The long score table (see :data:`trackii_eval.scoring.SCORE_COLUMNS`).

    Raises
    ------
    StoreError
        Nothing was ingested yet.
    """
    from ..scoring import reliability_by_wave, score_responses
    from ..scoring.by_wave import item_statistics_by_wave
    from ..scoring.ideas import IDEA_COLUMNS, idea_metrics

    run_id = new_run_id("score")
    inputs = {
        "data": data_fingerprint(store), "study": ctx.study_hash,
        "instrument": ctx.instrument_hash, "versions": versions(),
        "seeds": {"reliability_bootstrap": "wave index", "n_boot": n_boot},
    }
    responses = store.active_responses()
    if responses.empty:
        raise StoreError(f"{_where(store)}: no responses stored; run `trackii-eval ingest` "
                         "first")
    scores = score_responses(responses, ctx.instrument, ctx.config)
    # many small matrices: BLAS threads only fight each other here
    with threadpool_limits(limits=1, user_api="blas"):
        rel = reliability_by_wave(responses, ctx.instrument, n_boot=n_boot)
        items = item_statistics_by_wave(responses, ctx.instrument)
    network = _network(store)
    invariance = _invariance(responses, ctx)
    ideas = store.query("SELECT * FROM ideas")
    ideas_table = idea_metrics(ideas) if len(ideas) else pd.DataFrame(columns=IDEA_COLUMNS)
    tables = {"scores": scores, "reliability": rel, "item_statistics": items,
              "network": network, "invariance": invariance, "idea_metrics": ideas_table}
    with store.transaction():
        for name, frame in tables.items():
            store.replace_table(name, frame)
        record_run(store, "score", inputs, {
            "scores": frame_fingerprint(scores),
            **{name: frame_fingerprint(f) for name, f in tables.items() if name != "scores"},
            "n_participants": int(scores["participant"].nunique()),
            "n_scores": int(scores["score"].notna().sum()),
        }, run_id=run_id)
    return scores


def _invariance(responses: pd.DataFrame, ctx: StudyContext, n_waves: int = 3) -> pd.DataFrame:
    """Longitudinal measurement invariance of each perception construct.

    Fitted on the first ``n_waves`` waves: by default baseline, the end of the programme (did
    the programme change what the items mean?) and the first follow-up. By full-information
    maximum likelihood (lavaan's ``missing = "ml"``): everyone who answered an item counts,
    not only those who answered every item at every wave, so attrition does not decide who
    is checked (demo: 231 people over waves 1-3 where complete cases were 80). Cost on the
    demo (CPU time, one thread): 1.0 s for two waves, 5.4 s for three; five waves took about
    70 s (272 s on a loaded machine), more than a score stage can spend, so three it is.
    """
    from ..scoring.invariance import measurement_invariance
    from ..scoring.scores import keyed_items

    tables = []
    waves = [w.index for w in ctx.config.waves][:n_waves]
    for name, con in ctx.instrument.constructs.items():
        if con.output != "perceptions" or con.scoring != "pomp" or len(con.items) < 3:
            continue
        keyed = keyed_items(responses[responses["construct"] == name], ctx.instrument)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = measurement_invariance(
                    keyed, items=[i.id for i in con.items], wave_col="wave",
                    id_col="participant", waves=waves, item_col="item", value_col="pomp",
                    missing="ml",
                )
            except TrackIIEvalError as exc:
                tables.append(pd.DataFrame([{"construct": name, "model": "not fitted",
                                             "decision": str(exc)}]))
                continue
        table = res.table.assign(construct=name, n=res.n, n_dropped=res.n_dropped,
                                 waves=",".join(map(str, waves)), level=res.level,
                                 missing=res.missing,
                                 notes="; ".join(str(w.message) for w in caught))
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["construct", "model", "decision"])


def _network(store: Store) -> pd.DataFrame:
    from ..scoring.network import NETWORK_COLUMNS, network_measures

    ties = store.query("SELECT * FROM ties")
    if ties.empty:
        return pd.DataFrame(columns=NETWORK_COLUMNS)
    participants = store.query("SELECT participant, side, dialogue FROM participants")
    respondents = store.query("""
        SELECT DISTINCT s.participant, s.wave FROM submissions s
        JOIN files f ON f.sha256 = s.sha256 AND f.active WHERE s.excluded_reason IS NULL
    """)
    return network_measures(ties, participants, respondents)


def current_scores(store: Store, ctx: StudyContext) -> pd.DataFrame:
    """The stored long score table, refused if it is out of date.

    Raises
    ------
    StaleResultError
        No scores yet, or they were made from other data, configuration or instrument.
    """
    problem = scores_problem(store, ctx)
    if problem is not None:
        raise StaleResultError(f"{_where(store)}: {problem}; run `trackii-eval score` first")
    return store.query("SELECT * FROM scores")


# ------------------------------------------------------------------------------- model
def model(store: Store, ctx: StudyContext) -> ModelResults:
    """Fit the context's analysis plan to the current scores; its results replace all stored ones.

    Results of models that are no longer in the plan are removed: the store holds the results
    of exactly one model run, and that run names its plan and the scores it was fitted to.

    Raises
    ------
    StaleResultError
        The scores are missing or out of date (run the score stage first).
    ModelError
        A model cannot be specified or fitted; the stored results are left as they were.
    """
    from ..analysis import fit_plan
    from ..scoring import scores_wide

    scores = current_scores(store, ctx)
    score_run = last_run(store, "score")
    assert score_run is not None  # current_scores checked it
    plan = ctx.resolved_plan()
    run_id = new_run_id("model")
    inputs = {
        "scores": score_run.outputs["scores"], "score_run": score_run.run_id,
        "plan_name": ctx.plan_name, "plan_hash": canonical_hash(plan.model_dump(mode="json")),
        "plan": plan.model_dump(mode="json"), "study": ctx.study_hash, "versions": versions(),
    }
    # reliable change reads each construct's baseline reliability from the same score run
    reliability = store.query("SELECT * FROM reliability") if store.has_table(
        "reliability") else None
    with threadpool_limits(limits=1, user_api="blas"):
        results = fit_plan(scores_wide(scores, ctx.config), ctx, plan, reliability=reliability)
    with store.transaction():
        store.replace_results(run_id, [(name, kind, payload)
                                       for name, (kind, payload) in results.payloads.items()])
        record_run(store, "model", inputs, {
            "models": list(results.payloads),
            "converged": {n: bool(getattr(f, "converged", True)) for n, f in results.fits.items()},
        }, run_id=run_id)
    return results


# ------------------------------------------------------------------------------ report
def report(store: Store, ctx: StudyContext, path: str | Path) -> Path:
    """Render the HTML impact report from the last model run and write its manifest beside it.

    One case report per dialogue goes to ``dialogues/<id>.html`` beside it (protected together
    with the pooled report).

    Parameters
    ----------
    path
        The HTML file to write; ``manifest.json`` goes in the same folder.

    Raises
    ------
    StaleResultError
        No model results, or they were fitted to scores or a plan that are not current
        (the message says which stage to run).
    """
    from ..report.build import render_reports
    from .manifest import write_manifest

    problem = results_problem(store, ctx)
    if problem is not None:
        fix = "score" if problem.startswith("no scores") else "model"
        raise StaleResultError(f"{_where(store)}: {problem}; run `trackii-eval {fix}` first")
    model_run = last_run(store, "model")
    assert model_run is not None
    run_id = new_run_id("report")
    pages = render_reports(store, ctx, path, model_run=model_run)
    path = pages.report
    manifest = write_manifest(store, ctx, path.parent / "manifest.json", report=path)
    record_run(store, "report", {"model_run": model_run.run_id,
                                 "min_cell_size": ctx.config.privacy.min_cell_size,
                                 "versions": versions()},
               {"report": file_sha256(path), "manifest": file_sha256(manifest),
                **{f"dialogue:{d}": file_sha256(p) for d, p in pages.dialogues.items()}},
               run_id=run_id)
    return path
