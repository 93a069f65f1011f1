"""Change that matters on the demo study: hand-computed reliable change, balance, durability.

The demo's truth (surveys/demo/truth.json) says what was simulated; these tests check that the
effects module finds it, and that the reliable-change shares equal a computation by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trackii_eval.models.attrition import balance_table, dropout_by_wave, ipw_sensitivity
from trackii_eval.models.change import durability, reliable_change, reliable_change_shares
from trackii_eval.models.effects import hedges_g_by_wave, subgroup_effects
from trackii_eval.models.results import result_from_dict

TRUTH = json.loads((Path(__file__).resolve().parents[2] / "surveys" / "demo" / "truth.json")
                   .read_text())


@pytest.fixture(scope="module")
def demo(demo_run):
    study = demo_run[0]
    return study.scores(), study.reliability()


def test_reliable_change_shares_equal_a_hand_computation(demo):
    scores, rel = demo
    rc = reliable_change(scores, "perceptions", rel, wave=2)
    shares = reliable_change_shares(rc, by=["arm"])
    # by hand: baseline SD of everyone, alpha at baseline, RCI = diff / (sqrt 2 * SD * sqrt(1-r))
    alpha = float(rel[(rel["construct"] == "perceptions") & (rel["wave"] == 1)]["alpha"].iloc[0])
    base = {p: v for p, w, v in scores[["participant", "wave", "perceptions"]].itertuples(
        index=False) if w == 1 and v == v}
    vals = list(base.values())
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    s_diff = math.sqrt(2) * sd * math.sqrt(1 - alpha)
    counts: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for p, w, v, arm in scores[["participant", "wave", "perceptions", "arm"]].itertuples(
            index=False):
        if w != 2 or v != v or p not in base:
            continue
        rci = (v - base[p]) / s_diff
        cat = "improved" if rci > 1.959964 else "worsened" if rci < -1.959964 else "unchanged"
        counts[(str(arm), cat)] = counts.get((str(arm), cat), 0) + 1
        totals[str(arm)] = totals.get(str(arm), 0) + 1
    for arm, cat, k, n, share in shares[["arm", "category", "count", "n", "share"]].itertuples(
            index=False):
        assert k == counts.get((arm, cat), 0)
        assert n == totals[arm]
        assert share == pytest.approx(k / n)
    # the simulated dialogue gain (9 points in the first year) shows as more improvers
    imp = shares[shares["category"] == "improved"].set_index("arm")["share"]
    assert imp["dialogue"] > imp["comparison"] + 0.15
    by_dialogue = reliable_change_shares(rc, by=["dialogue", "side"])
    assert set(by_dialogue["dialogue"]) == {"(none)", "D1", "D2", "D3"}


def test_balance_flags_the_comparison_arms_low_sign_up(demo):
    scores, _ = demo
    tab = balance_table(scores, ["perceptions", "relationships", "joint_activity", "side"])
    row = tab.set_index("variable").loc["joint_activity"]
    assert row["type"] == "binary"
    assert row["mean_comparison"] < 0.08  # 4% observed where about 16% was simulated
    assert row["imbalanced"] and row["smd"] > 0.25
    assert not tab.set_index("variable").loc["perceptions", "imbalanced"]


def test_durability_covers_the_simulated_gaps(demo):
    scores, _ = demo
    tab = durability(scores, "perceptions").tidy().set_index("term")
    gaps = TRUTH["effects"]["perceptions"]["gap_at_each_wave"]
    for wave in (2, 3, 4, 5):
        row = tab.loc[f"gap wave {wave}"]
        assert row["ci_low"] < gaps[str(wave)] < row["ci_high"], wave
    for wave in (3, 4, 5):
        row = tab.loc[f"persisting share wave {wave}"]
        assert row["ci_low"] < gaps[str(wave)] / gaps["2"] < row["ci_high"], wave


def test_effect_sizes_subgroups_and_attrition_run_on_the_demo(demo):
    scores, _ = demo
    g = hedges_g_by_wave(scores, "perceptions").set_index("wave")
    assert g.loc[1, "ci_low"] < 0 < g.loc[1, "ci_high"]  # randomised-like baseline
    assert g.loc[2, "ci_low"] > 0
    sub = subgroup_effects(scores, "perceptions", 2, by=["side", "dialogue"]).forest()
    assert len(sub) == 5 and sub["estimable"].all()
    assert (sub["p_holm"] >= sub["p_value"]).all() and (sub["p_bh"] <= sub["p_holm"]).all()
    drop = dropout_by_wave(scores, "perceptions")
    assert drop.groupby("arm")["retention"].is_monotonic_decreasing.all()
    ipw = ipw_sensitivity(scores, "perceptions", 3).set_index("analysis")
    assert ipw.loc["inverse probability weighted", "ci_low"] < gaps_at(3)
    assert gaps_at(3) < ipw.loc["inverse probability weighted", "ci_high"]


def gaps_at(wave: int) -> float:
    return TRUTH["effects"]["perceptions"]["gap_at_each_wave"][str(wave)]


def test_change_tables_bundle_on_the_demo(demo):
    from trackii_eval.models.change import change_tables

    scores, rel = demo
    tabs = change_tables(scores, rel, "perceptions", mice=False)
    assert set(tabs.reliable_change["grouping"]) == {"arm", "dialogue", "side"}
    assert tabs.durability.tidy().loc[0, "term"] == "gap wave 2"
    assert tabs.mice is None
    assert list(tabs.dropout["wave"].unique()) == [1, 2, 3, 4, 5]
    # the same numbers as the single functions
    alone = reliable_change_shares(reliable_change(scores, "perceptions", rel), by=["arm"])
    got = tabs.reliable_change[tabs.reliable_change["grouping"] == "arm"]
    assert got["count"].tolist() == alone["count"].tolist()


def test_durability_from_the_piecewise_growth_model(demo_run):
    from trackii_eval.models.change import durability_from_growth

    study, _, results, _ = demo_run
    fit = results.fits["perceptions_durability"]
    waves = study.store.query("SELECT wave, time FROM waves")
    times = dict(zip(waves["wave"].astype(int), waves["time"].astype(float), strict=True))
    dur = durability_from_growth(fit, times, end_wave=2)
    tab = dur.tidy().set_index("term")
    gaps = TRUTH["effects"]["perceptions"]["gap_at_each_wave"]
    for wave in (2, 3, 4, 5):
        # the same number as the fit's own linear combination
        lc = fit.lincom({"time:arm[T.dialogue]": times[wave] - times[1],
                         "post_time:arm[T.dialogue]": max(times[wave] - times[2], 0)})
        assert tab.loc[f"gap wave {wave}", "estimate"] == pytest.approx(lc["estimate"].iloc[0])
        assert tab.loc[f"gap wave {wave}", "ci_low"] < gaps[str(wave)]
        assert gaps[str(wave)] < tab.loc[f"gap wave {wave}", "ci_high"]
    for wave in (3, 4, 5):
        row = tab.loc[f"persisting share wave {wave}"]
        assert row["ci_low"] < gaps[str(wave)] / gaps["2"] < row["ci_high"]
    assert type(result_from_dict(dur.to_dict())) is type(dur)
