"""The plan's "change that matters" analyses, as the model stage stores them.

The demo's truth (surveys/demo/truth.json) says what was simulated; the stored tables must
recover it, and the reliable-change counts must equal a computation by hand.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from trackii_eval.analysis import (
    PLAN_ANALYSES,
    AnalysisPlan,
    ModelSpec,
    default_plan,
    dialogue_cohorts,
    fit_plan,
    load_plan,
)
from trackii_eval.errors import ConfigError, ModelError

ROOT = Path(__file__).resolve().parents[2]
TRUTH = json.loads((ROOT / "surveys" / "demo" / "truth.json").read_text())


@pytest.fixture(scope="module")
def stored(demo_run) -> dict:
    """The demo's stored results of the default plan, by name."""
    return demo_run[0].store.results()


def _table(stored: dict, name: str, table: str) -> pd.DataFrame:
    return pd.DataFrame(stored[name]["tables"][table])


def test_default_plan_stores_every_kind_with_counts(stored) -> None:
    kinds = {res["kind"] for res in stored.values()}
    assert set(PLAN_ANALYSES) <= kinds
    counted = {"gaps": "n_treated", "persistence": "n_treated", "shares": "n",
               "effects": "n", "balance": "n_treated", "dropout": "n_baseline",
               "sensitivity": "n", "comparison": "n"}
    for name, res in stored.items():
        if res["kind"] not in PLAN_ANALYSES:
            continue
        for table, records in res["tables"].items():
            assert records, (name, table)
            assert all(isinstance(r[counted[table]], int) and r[counted[table]] > 0
                       for r in records), (name, table)


def test_stored_durability_gaps_cover_the_simulated_gaps(stored) -> None:
    gaps = _table(stored, "perceptions_gaps", "gaps").set_index("wave")
    truth = TRUTH["effects"]["perceptions"]["gap_at_each_wave"]
    for wave in (2, 3, 4, 5):
        assert gaps.loc[wave, "ci_low"] < truth[str(wave)] < gaps.loc[wave, "ci_high"], wave
    # persistence: the share of the wave-2 gap left at each follow-up, covering the truth
    share = _table(stored, "perceptions_gaps", "persistence").set_index("wave")
    for wave in (3, 4, 5):
        true_share = truth[str(wave)] / truth["2"]
        assert share.loc[wave, "ci_low"] < true_share < share.loc[wave, "ci_high"], wave


def test_model_implied_gaps_cover_the_simulated_gaps(demo_run) -> None:
    # relationships: +16 a year during the programme, -1 a year after (truth.json)
    study = demo_run[0]
    ctx = study.context.with_plan(load_plan(ROOT / "analysis" / "demo.yaml"))
    plan = AnalysisPlan(models=[m for m in ctx.plan.models
                                if m.name in ("relationships_durability", "relationships_gaps")])
    res = fit_plan(study.scores(), ctx, plan, reliability=study.reliability())
    gaps = res.tables["relationships_gaps"]["gaps"].set_index("wave")
    eff = TRUTH["effects"]["relationships"]
    t = TRUTH["wave_time"]
    t_end = TRUTH["program_end_time"]
    for wave in (2, 3, 4, 5):
        tw = t[str(wave)]
        true_gap = (eff["gain_per_year_during_program"] * min(tw, t_end)
                    - eff["fade_per_year_after_program"] * max(tw - t_end, 0))
        assert gaps.loc[wave, "ci_low"] < true_gap < gaps.loc[wave, "ci_high"], wave


def test_stored_reliable_change_counts_equal_a_hand_computation(demo_run, stored) -> None:
    study = demo_run[0]
    scores, rel = study.scores(), study.reliability()
    alpha = float(rel[(rel["construct"] == "perceptions") & (rel["wave"] == 1)]["alpha"].iloc[0])
    base = {p: v for p, w, v in scores[["participant", "wave", "perceptions"]].itertuples(
        index=False) if w == 1 and v == v}
    vals = list(base.values())
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    s_diff = math.sqrt(2) * sd * math.sqrt(1 - alpha)
    hand: dict[tuple, int] = {}
    for p, w, v, arm, dialogue, side in scores[
            ["participant", "wave", "perceptions", "arm", "dialogue", "side"]].itertuples(
            index=False):
        if w == 1 or v != v or p not in base:
            continue
        rci = (v - base[p]) / s_diff
        cat = "improved" if rci > 1.959964 else "worsened" if rci < -1.959964 else "unchanged"
        keys = [("arm", str(arm), str(arm)), ("side", str(side), str(arm))]
        if str(arm) == "dialogue":
            keys.append(("dialogue", str(dialogue), "dialogue"))
        for by, group, a in keys:
            for c in (cat, "n"):
                hand[(by, group, a, int(w), c)] = hand.get((by, group, a, int(w), c), 0) + 1
    shares = _table(stored, "perceptions_reliable_change", "shares")
    assert len(shares) == len({k[:4] for k in hand})
    for r in shares.to_dict("records"):
        key = (r["by"], r["group"], r["arm"], r["wave"])
        assert r["n"] == hand[(*key, "n")], key
        for cat in ("improved", "unchanged", "worsened"):
            assert r[f"n_{cat}"] == hand.get((*key, cat), 0), (key, cat)
        assert r["reliability"] == pytest.approx(alpha)
        assert r["min_change"] == pytest.approx(1.959964 * s_diff, rel=1e-6)


def test_balance_and_effect_sizes_find_what_was_simulated(stored) -> None:
    bal = _table(stored, "baseline_balance", "balance").set_index("variable")
    # the comparison arm's low baseline sign-up rate (4% where about 16% was simulated)
    assert bal.loc["joint_activity", "flagged"] and bal.loc["joint_activity", "smd"] > 0.25
    assert bal.loc["joint_activity", "mean_comparison"] < 0.08
    assert not bal.loc["perceptions", "flagged"]
    eff = _table(stored, "perceptions_effect_sizes", "effects")
    g = eff[eff["measure"] == "hedges_g"].set_index("wave")
    assert g.loc[1, "ci_low"] < 0 < g.loc[1, "ci_high"]  # no baseline difference simulated
    assert g.loc[2, "ci_low"] > 0  # the first-year gain
    # growth_d: 9 points a year for one year over the simulated baseline SD of a score
    # (person SD 11 and occasion residual SD 5)
    par = TRUTH["parameters"]["perceptions"]
    true_d = (par["gain_per_year"] * TRUTH["program_end_time"]
              / math.hypot(par["baseline_sd"], par["residual_sd"]))
    gd = eff[eff["measure"] == "growth_d"].iloc[0]
    assert gd["ci_low"] < true_d < gd["ci_high"]


def test_attrition_and_growth_comparison_tables(stored) -> None:
    drop = _table(stored, "perceptions_attrition", "dropout")
    per_wave = drop.groupby("wave")["n_observed"].sum()
    # people scored at baseline and at the wave cannot exceed the responses of the wave
    for wave, n in TRUTH["responses_per_wave"].items():
        assert per_wave[int(wave)] <= n
    sens = _table(stored, "perceptions_attrition", "sensitivity")
    assert set(sens["method"]) == {"complete cases", "inverse probability weights",
                                   "multiple imputation"}
    mi = sens[sens["method"] == "multiple imputation"]
    assert (mi["n_imputed"] > 0).all()
    comp = _table(stored, "perceptions_growth_comparison", "comparison").set_index("model")
    # the piecewise model is the simulated one: the LRT and both criteria prefer it
    assert comp.loc["perceptions_durability", "p"] < 0.001
    assert comp.loc["perceptions_durability", "aic"] < comp.loc["perceptions_growth", "aic"]
    assert comp.loc["perceptions_durability", "df"] == 2


def test_subgroups_have_adjusted_p_and_counts(stored) -> None:
    sub = _table(stored, "perceptions_subgroups", "effects")
    assert set(sub["moderator"]) == {"side", "dialogue"}
    assert (sub["p_holm"] >= sub["p"] - 1e-15).all() and (sub["p_bh"] <= sub["p_holm"]).all()
    assert (sub["n"] == sub["n_treated"] + sub["n_comparison"]).all()


def test_demo_plan_loads_and_references_resolve() -> None:
    plan = load_plan(ROOT / "analysis" / "demo.yaml")
    kinds = {m.kind for m in plan.models}
    assert set(PLAN_ANALYSES) <= kinds


def test_plan_options_are_checked() -> None:
    with pytest.raises(ValueError, match="covariates is not an option of kind durability"):
        ModelSpec(name="x", kind="durability", outcome="perceptions", covariates=["side"])
    with pytest.raises(ValueError, match="needs models"):
        ModelSpec(name="x", kind="growth_comparison", outcome="perceptions", models=["a"])
    growth = ModelSpec(name="g", kind="growth", outcome="perceptions", formula="perceptions ~ 1")
    with pytest.raises(ValueError, match="'h' is not a growth model of the plan"):
        AnalysisPlan(models=[growth, ModelSpec(name="c", kind="growth_comparison",
                                               outcome="perceptions", models=["g", "h"])])
    with pytest.raises(ValueError, match="is of perceptions, not of relationships"):
        AnalysisPlan(models=[growth, ModelSpec(name="d", kind="durability",
                                               outcome="relationships", model="g")])


def test_plan_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("models:\n  - name: a\n    kind: balance\n    outcome: perceptions\n"
                    "    models: [b, c]\n")
    with pytest.raises(ConfigError, match=r"plan\.yaml:\d+: .*models is not an option of kind "
                       r"balance"):
        load_plan(path)


def test_did_kind_derives_cohorts_from_start_wave(demo_run) -> None:
    study = demo_run[0]
    ctx = study.context
    data = study.scores()
    spec = ModelSpec(name="p_did", kind="did", outcome="perceptions")
    with pytest.raises(ModelError, match=r"add start_wave: .* to dialogue\(s\) D1, D2, D3"):
        fit_plan(data, ctx, AnalysisPlan(models=[spec]))
    # staggered start: D1 and D2 after wave 1, D3 a wave later
    starts = {"D1": 2, "D2": 2, "D3": 3}
    config = ctx.config.model_copy(update={"dialogues": [
        d.model_copy(update={"start_wave": starts[d.id]}) for d in ctx.config.dialogues]})
    cohorts = dialogue_cohorts(data, config)
    expect = data["dialogue"].map(starts).where(data["treated"] == 1, 0)
    assert (cohorts == expect).all()
    res = fit_plan(data, dataclasses.replace(ctx, config=config), AnalysisPlan(models=[spec]))
    terms = set(res.fits["p_did"].terms)
    assert {"ATT(g=2,t=2)", "ATT(g=3,t=3)", "simple"} <= terms


def test_default_plan_without_programme_end_or_comparison(demo_run) -> None:
    config = demo_run[0].context.config
    no_end = config.model_copy(update={"program_end_wave": None})
    kinds = [m.kind for m in default_plan(no_end, demo_run[0].context.instrument).models]
    assert "growth_comparison" not in kinds and "durability" in kinds
    # a programme that ends at the last fielded wave: nothing to compare the piecewise
    # model's after-programme slope with
    last = max(w.index for w in config.fielded_waves)
    at_end = config.model_copy(update={"program_end_wave": last})
    kinds = [m.kind for m in default_plan(at_end, demo_run[0].context.instrument).models]
    assert "growth_comparison" not in kinds


def test_start_wave_must_be_a_wave(demo_run) -> None:
    from pydantic import ValidationError

    config = demo_run[0].context.config
    data = config.model_dump()
    data["dialogues"][0]["start_wave"] = 9
    with pytest.raises(ValidationError, match="start_wave 9 of dialogue D1 is not a wave index"):
        type(config).model_validate(data)
