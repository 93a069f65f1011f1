"""The item-level ordinal model in the analysis plan: responses reach it through the model
stage, its result is stored through the results protocol with category probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.pipeline.conftest import (  # noqa: F401 - pytest fixtures used by name
    ctx,
    mini,
    mini_key,
    mini_template,
    scored,
    scored_file,
)
from trackii_eval.analysis import AnalysisPlan, ModelSpec, fit_plan, item_responses, load_plan
from trackii_eval.errors import ModelError
from trackii_eval.models.results import result_from_dict
from trackii_eval.pipeline.stages import current_scores, model
from trackii_eval.scoring import scores_wide

ROOT = Path(__file__).resolve().parents[2]
SPEC = ModelSpec(name="perceptions_items", kind="clmm", outcome="perceptions",
                 formula="response ~ item + time * arm + (1 | participant)")


def test_demo_plan_declares_the_item_level_model() -> None:
    plan = load_plan(ROOT / "analysis" / "demo.yaml")
    spec = next(m for m in plan.models if m.kind == "clmm")
    assert spec.outcome == "perceptions" and "item" in (spec.formula or "")


def test_model_stage_passes_responses_and_stores_the_fit(scored, ctx) -> None:  # noqa: F811
    growth = ModelSpec(name="perceptions_growth", kind="growth", outcome="perceptions",
                       formula="perceptions ~ time * arm + (1 | participant)")
    plan = AnalysisPlan(models=[growth, SPEC])
    results = model(scored, ctx.with_plan(plan, "test"))
    stored = scored.results()
    assert set(stored) == {"perceptions_growth", "perceptions_items"}
    res = stored["perceptions_items"]
    fit = result_from_dict(res["fit"])
    assert fit.kind == "clmm" and fit.record.converged
    pd.testing.assert_frame_equal(fit.tidy(), results.fits["perceptions_items"].tidy())
    # the dialogue arm's ordinal effect is in the same direction as the scale-score model's
    eff = fit.tidy().set_index("term").loc["time:arm[T.dialogue]", "estimate"]
    growth_eff = results.fits["perceptions_growth"].tidy().set_index("term").loc[
        "time:arm[T.dialogue]", "estimate"]
    assert np.sign(eff) == np.sign(growth_eff)
    probs = pd.DataFrame(res["probabilities"])
    assert {"arm", "wave", "item", "category", "probability", "ci_low", "ci_high"} <= set(probs)
    sums = probs.groupby(["arm", "wave", "item"])["probability"].sum()
    assert np.allclose(sums, 1.0)
    assert (probs["ci_low"] <= probs["probability"]).all()
    assert (probs["probability"] <= probs["ci_high"]).all()
    # thermometer (0-100) is not an ordinal item and is left out
    assert set(probs["item"]) == {"trust_other_1", "trust_other_2", "trust_other_3"}


def test_item_responses_are_keyed_and_refused_without_responses(scored, ctx) -> None:  # noqa: F811
    wide = scores_wide(current_scores(scored, ctx), ctx.config)
    responses = scored.active_responses()
    long = item_responses(SPEC, responses, wide, ctx)
    raw = responses[responses["item"].isin(["trust_other_1"]) & responses["missing_code"].isna()]
    assert len(long[long["item"] == "trust_other_1"]) == len(
        raw.merge(wide[["participant", "wave"]], on=["participant", "wave"]))
    assert long["response"].between(1, 7).all()
    plan = AnalysisPlan(models=[SPEC])
    with pytest.raises(ModelError, match="responses"):
        fit_plan(wide, ctx, plan)
    bad = SPEC.model_copy(update={"items": ["therm_other"]})
    with pytest.raises(ModelError, match="not an ordinal item"):
        item_responses(bad, responses, wide, ctx)


def test_reverse_keyed_items_are_flipped(demo_run) -> None:
    study = demo_run[0]
    context = study.context
    wide = scores_wide(current_scores(study._store, context), context.config)
    responses = study._store.active_responses()
    spec = ModelSpec(name="x", kind="clmm", outcome="perceptions", formula="response ~ item")
    long = item_responses(spec, responses, wide, context).set_index(["participant", "wave", "item"])
    raw = responses[responses["missing_code"].isna()].set_index(["participant", "wave", "item"])
    for item, reverse in (("threat_1", True), ("trust_other_1", False)):
        got = long.xs(item, level="item")["response"]
        want = raw.xs(item, level="item")["value"].astype(float).reindex(got.index)
        assert np.array_equal(got.to_numpy(), (8 - want if reverse else want).to_numpy())
