"""Each stage on an in-memory store, without the demo; provenance and freshness between them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from trackii_eval.analysis import AnalysisPlan, ModelSpec
from trackii_eval.errors import KeyMismatchError, StaleResultError, StoreError
from trackii_eval.pipeline import StudyContext, ingest, model, report, score
from trackii_eval.pipeline.provenance import (
    data_fingerprint,
    file_sha256,
    last_run,
    results_problem,
    scores_problem,
)
from trackii_eval.store import Store
from trackii_eval.study import Study

from .conftest import N_BOOT, TRUTH


def _tables(store: Store) -> dict[str, pd.DataFrame]:
    names = store.query("SELECT table_name FROM information_schema.tables")["table_name"]
    return {n: store.query(f'SELECT * FROM "{n}"') for n in sorted(names)}


def _replace_wave(ctx: StudyContext, wave: int, keep: float = 0.8) -> int:
    """Drop the last rows of a wave file (a corrected re-export); returns rows kept."""
    path = ctx.root / next(w.file for w in ctx.config.waves if w.index == wave)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    kept = frame.iloc[: int(len(frame) * keep)]
    kept.to_csv(path, index=False)
    return len(kept)


def test_ingest_records_file_hashes_and_key(store: Store, ctx: StudyContext, mini_key) -> None:
    summary = ingest(store, ctx, mini_key)
    assert [f.status for f in summary.files] == ["ingested"] * 3
    run = last_run(store, "ingest")
    assert run is not None
    for w in ctx.config.waves:  # the hash recorded is the file's, taken before reading
        assert run.inputs["files"][f"wave {w.index}"] == file_sha256(ctx.root / w.file)
    assert run.inputs["files"]["study"] == file_sha256(ctx.root / "study.yaml")
    assert run.inputs["key_fingerprint"] == mini_key.fingerprint
    assert run.outputs["data"] == data_fingerprint(store)
    assert "numpy" in run.inputs["versions"]
    fp = data_fingerprint(store)
    again = ingest(store, ctx, mini_key)
    assert [f.status for f in again.files] == ["unchanged"] * 3
    assert data_fingerprint(store) == fp  # idempotent: nothing downstream goes stale


def test_score_stage(store: Store, ctx: StudyContext, mini_key) -> None:
    with pytest.raises(StoreError, match="run `trackii-eval ingest` first"):
        score(store, ctx, n_boot=N_BOOT)
    assert last_run(store, "score") is None  # a refused stage records nothing
    ingest(store, ctx, mini_key)
    assert scores_problem(store, ctx) == "no scores yet"
    scores = score(store, ctx, n_boot=N_BOOT)
    n_people = TRUTH.n_per_dialogue + TRUTH.n_comparison
    assert scores["participant"].nunique() == n_people
    assert set(scores["construct"]) == {"perceptions", "relationships"}
    assert scores_problem(store, ctx) is None
    run = last_run(store, "score")
    assert run.inputs["data"] == data_fingerprint(store)
    assert run.inputs["seeds"]["n_boot"] == N_BOOT
    assert store.query("SELECT count(*) AS n FROM reliability")["n"][0] > 0


def test_model_stage_refuses_without_scores(store: Store, ctx: StudyContext,
                                            mini_key) -> None:
    ingest(store, ctx, mini_key)
    with pytest.raises(StaleResultError, match="no scores yet; run `trackii-eval score`"):
        model(store, ctx)
    assert store.results() == {} and last_run(store, "model") is None


def test_model_stage_recovers_the_simulated_effect(scored: Store, ctx: StudyContext) -> None:
    store = scored
    assert scores_problem(store, ctx) is None  # the copied store is current for this copy
    results = model(store, ctx)
    run = last_run(store, "model")
    stored = store.results(run.run_id)
    assert set(stored) == set(results.payloads) == set(run.outputs["models"])
    assert set(results.fits) <= set(stored)  # plus the plan's change-that-matters tables
    assert run.inputs["scores"] == last_run(store, "score").outputs["scores"]
    # the simulated gain during the programme is 9 POMP points a year
    fixed = results.fits["perceptions_durability"].fixed
    fixed = fixed.set_index("term") if "term" in fixed.columns else fixed
    row = fixed.loc["time:arm[T.dialogue]"]
    assert row["ci_low"] < TRUTH.perceptions.gain_per_year < row["ci_high"]


def test_report_stage_names_plan_and_writes_manifest(scored: Store, ctx: StudyContext,
                                                     mini_key) -> None:
    store = scored
    model(store, ctx)
    path = report(store, ctx, ctx.out / "report.html")
    text = path.read_text()
    run = last_run(store, "model")
    assert run.inputs["plan_hash"][:12] in text and "default plan" in text
    manifest = json.loads((path.parent / "manifest.json").read_text())
    for role, p in ctx.input_files().items():
        assert manifest["inputs"][role]["sha256"] == file_sha256(p)
    assert manifest["plan"]["hash"] == run.inputs["plan_hash"]
    assert manifest["disclosure"] == {"min_cell_size": 5}
    assert manifest["key_fingerprint"] == mini_key.fingerprint
    assert manifest["seeds"]["n_boot"] == N_BOOT
    assert manifest["outputs"]["report"]["sha256"] == file_sha256(path)
    assert manifest["runs"]["model"]["run_id"] == run.run_id
    assert {"python", "trackii_eval", "numpy", "duckdb"} <= set(manifest["versions"])
    pseudonyms = store.query("SELECT participant FROM participants")["participant"]
    raw = json.dumps(manifest)
    assert not any(p in raw for p in pseudonyms)  # no pseudonym, let alone a raw code
    assert last_run(store, "report").outputs["report"] == file_sha256(path)


def test_ingest_after_score_no_stale_number_reaches_a_report(scored: Store, ctx: StudyContext,
                                                             mini_key) -> None:
    store = scored
    first = model(store, ctx)
    nobs_before = first.fits["perceptions_growth"].nobs
    kept = _replace_wave(ctx, 3)
    summary = ingest(store, ctx, mini_key, replace=True)
    assert [f.status for f in summary.files] == ["unchanged", "unchanged", "replaced"]
    # scores, model and report all know the data moved under them
    assert "ingested data" in scores_problem(store, ctx)
    assert results_problem(store, ctx) is not None
    with pytest.raises(StaleResultError, match="run `trackii-eval score` first"):
        model(store, ctx)
    with pytest.raises(StaleResultError, match="out of date"):
        report(store, ctx, ctx.out / "report.html")
    assert not (ctx.out / "report.html").exists()
    # the façade re-scores: scores() and fit_models() never return numbers of the old data
    study = Study(ctx, store)
    wide = study.scores()
    assert (wide["wave"] == 3).sum() == kept
    refit = study.fit_models()
    assert refit.fits["perceptions_growth"].nobs < nobs_before
    assert results_problem(store, ctx) is None
    text = study.report().read_text()
    stored = store.results(last_run(store, "model").run_id)
    assert stored["perceptions_growth"]["fit"]["nobs"] == refit.fits["perceptions_growth"].nobs
    assert f"{refit.fits['perceptions_growth'].nobs} observations" in text
    assert f"{nobs_before} observations" not in text


def test_plan_change_replaces_results_and_report_names_new_plan(scored: Store,
                                                                ctx: StudyContext,
                                                                tmp_path: Path) -> None:
    store = scored
    model(store, ctx)
    assert "relationships_event_study" in store.results()
    plan = AnalysisPlan(models=[ModelSpec(
        name="perceptions_only", kind="growth", outcome="perceptions",
        formula="perceptions ~ time * arm + (time | participant)", label="Only perceptions",
    )])
    new_ctx = ctx.with_plan(plan, source="analysis/only_perceptions.yaml")
    model(store, new_ctx)
    assert set(store.results()) == {"perceptions_only"}  # no results of dropped models
    # the old plan's context now refuses to report the new plan's results, and vice versa
    with pytest.raises(StaleResultError, match=r"analysis/only_perceptions\.yaml"):
        report(store, ctx.with_plan(ctx.resolved_plan(), "analysis/old.yaml"),
               tmp_path / "r.html")
    text = report(store, new_ctx, tmp_path / "report.html").read_text()
    run = last_run(store, "model")
    assert "analysis/only_perceptions.yaml" in text and run.inputs["plan_hash"][:12] in text
    assert "perceptions_only" in text
    for dropped in ("relationships_event_study", "perceptions_durability"):
        assert dropped not in text


def test_a_different_key_is_refused_and_nothing_changes(scored: Store, ctx: StudyContext,
                                                        mini_key, other_key) -> None:
    store = scored
    before = _tables(store)
    _replace_wave(ctx, 2)  # even with new data waiting, nothing is written under a wrong key
    with pytest.raises(KeyMismatchError) as caught:
        ingest(store, ctx, other_key, replace=True)
    message = str(caught.value)
    assert other_key.fingerprint in message and mini_key.fingerprint in message
    assert "trackii-eval rekey" in message and "\n" not in message
    assert bytes(range(1, 33)).hex() not in message and bytes(range(32)).hex() not in message
    after = _tables(store)
    assert after.keys() == before.keys()
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)


def test_store_file_not_created_by_a_stage_run_out_of_order(ctx: StudyContext) -> None:
    path = ctx.out / "mini.duckdb"
    study = Study(ctx)
    with pytest.raises(StoreError, match="run `trackii-eval ingest`"):
        study.report()
    assert not path.exists()


def test_what_makes_scores_stale(scored: Store, ctx: StudyContext) -> None:
    """The study design and the instrument do; settings only the report reads do not."""
    import dataclasses

    assert scores_problem(scored, ctx) is None
    privacy = ctx.config.privacy.model_copy(update={"min_cell_size": 10})
    report_only = dataclasses.replace(ctx, config=ctx.config.model_copy(
        update={"privacy": privacy, "name": "Renamed"}))
    assert scores_problem(scored, report_only) is None
    later = ctx.config.program_end_wave + 1
    design = dataclasses.replace(ctx, config=ctx.config.model_copy(
        update={"program_end_wave": later}))
    assert "study.yaml" in scores_problem(scored, design)
    construct = ctx.instrument.constructs["perceptions"].model_copy(update={"min_answered": 1.0})
    instrument = dataclasses.replace(ctx, instrument=ctx.instrument.model_copy(
        update={"constructs": {**ctx.instrument.constructs, "perceptions": construct}}))
    assert "the instrument" in scores_problem(scored, instrument)
    with pytest.raises(StaleResultError, match="run `trackii-eval score` first"):
        model(scored, instrument)
