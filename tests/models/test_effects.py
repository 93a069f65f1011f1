"""Effects, reliable change, durability and attrition checked against R (reference.R).

The fixture panel (tests/fixtures/effects/panel.csv, made by make_panel.py) was analysed in R by
tests/fixtures/effects/reference.R (sandwich, car::deltaMethod, t.test/p.adjust, glm, mice);
these tests compare trackii_eval's numbers with reference.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from trackii_eval.errors import ModelError
from trackii_eval.models.attrition import (
    balance_table,
    dropout_by_wave,
    ipw_sensitivity,
    mice_sensitivity,
    stayers_vs_leavers,
)
from trackii_eval.models.change import durability, reliable_change, reliable_change_shares
from trackii_eval.models.effects import (
    dz_within,
    growth_effect_size,
    hedges_g_by_wave,
    subgroup_effects,
)
from trackii_eval.models.results import ModelResult, result_from_dict

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "effects"


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return pd.read_csv(HERE / "panel.csv", dtype={"participant": str})


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads((HERE / "reference.json").read_text())


def test_durability_matches_sandwich_and_delta_method(panel, ref):
    fit = durability(panel, "y")
    tab = fit.tidy().set_index("term")
    r = ref["durability"]
    np.testing.assert_allclose(tab.loc[["gap wave 2", "gap wave 3", "gap wave 4"], "estimate"],
                               r["gap"], rtol=1e-9)
    np.testing.assert_allclose(tab.loc[["gap wave 2", "gap wave 3", "gap wave 4"], "std_error"],
                               r["gap_se"], rtol=1e-9)
    shares = ["persisting share wave 3", "persisting share wave 4"]
    np.testing.assert_allclose(tab.loc[shares, "estimate"], r["share"], rtol=1e-9)
    np.testing.assert_allclose(tab.loc[shares, "std_error"], r["share_se"], rtol=1e-9)
    assert fit.record.n_obs == r["n_obs"]
    assert fit.record.n_groups == {"participant": r["n_clusters"]}
    # simulated truth: gaps 8, 6, 4; shares 0.75 and 0.5 -- inside the 95% intervals
    for term, truth in [("gap wave 2", 8), ("gap wave 3", 6), ("gap wave 4", 4),
                        ("persisting share wave 3", 0.75), ("persisting share wave 4", 0.5)]:
        assert tab.loc[term, "ci_low"] < truth < tab.loc[term, "ci_high"]


def test_durability_follows_the_results_protocol(panel):
    fit = durability(panel, "y")
    assert isinstance(fit, ModelResult)
    back = result_from_dict(json.loads(json.dumps(fit.to_dict())))
    assert type(back) is type(fit)
    pd.testing.assert_frame_equal(back.tidy(level=0.9), fit.tidy(level=0.9))
    assert back.summary() == fit.summary()
    assert "clustered" in fit.record.vcov


def test_durability_flags_an_end_gap_that_may_be_zero(panel):
    noise = panel.copy()
    noise.loc[(noise["wave"] == 2) & (noise["treated"] == 1), "y"] -= 6.85  # erase the gap
    fit = durability(noise, "y")
    assert any("not interpretable" in w for w in fit.warnings)


def test_durability_refuses_an_end_wave_without_an_arm(panel):
    cut = panel[~((panel["wave"] == 2) & (panel["treated"] == 0))]
    with pytest.raises(ModelError, match="end-of-programme wave 2"):
        durability(cut, "y")
    # a later wave without the comparison arm is reported as not estimable, not dropped
    cut = panel[~((panel["wave"] == 4) & (panel["treated"] == 0))]
    tab = durability(cut, "y").tidy().set_index("term")
    assert not tab.loc["gap wave 4", "estimable"]
    assert not tab.loc["persisting share wave 4", "estimable"]


def test_subgroup_effects_match_welch_t_test_and_p_adjust(panel, ref):
    fit = subgroup_effects(panel, "y", 2, by=["side", "dialogue", "sector"])
    tab = fit.tidy().set_index("term")
    r = pd.DataFrame(ref["subgroups"]).set_index("term")
    assert list(tab.index) == list(r.index)
    np.testing.assert_allclose(tab["estimate"], r["estimate"], rtol=1e-9)
    np.testing.assert_allclose(tab["std_error"], r["se"], rtol=1e-9)
    np.testing.assert_allclose(tab["df"], r["df"], rtol=1e-9)
    np.testing.assert_allclose(tab["p_value"], r["p"], rtol=1e-7)
    np.testing.assert_allclose(tab["p_holm"], r["p_holm"], rtol=1e-7)
    np.testing.assert_allclose(tab["p_bh"], r["p_bh"], rtol=1e-7)
    forest = fit.forest()
    assert list(forest.columns[:3]) == ["variable", "level", "label"]
    assert (forest["ci_low"] < forest["estimate"]).all()
    assert "whole comparison arm" in tab.loc["dialogue=D1", "note"]
    back = result_from_dict(fit.to_dict())
    pd.testing.assert_frame_equal(back.forest(), forest)


def test_dz_matches_noncentral_t_interval(panel, ref):
    out = dz_within(panel, "y", 1, 2).set_index("treated")
    r = ref["dz"]
    assert out.loc[1, "n"] == r["n"]
    np.testing.assert_allclose(out.loc[1, ["dz", "ci_low", "ci_high"]].astype(float),
                               [r["dz"], r["ci_low"], r["ci_high"]], rtol=1e-6)


def test_reliable_change_matches_r(panel, ref):
    rc = reliable_change(panel, "y", 0.8, wave=2)
    assert rc["s_diff"].iloc[0] == pytest.approx(ref["rci"]["s_diff"], rel=1e-12)
    shares = reliable_change_shares(rc, by=["treated"])
    got = {(str(t), c): k for t, c, k in shares[["treated", "category", "count"]].itertuples(
        index=False)}
    want = {(c["treated"], c["category"]): c["Freq"] for c in ref["rci"]["counts"]}
    for key, k in got.items():
        assert k == want.get(key, 0), key
    improved = shares[shares["category"] == "improved"].set_index("treated")
    for arm, w in ref["rci"]["wilson"].items():
        row = improved.loc[arm]
        assert (row["count"], row["n"]) == (w["k"], w["n"])
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((w["low"], w["high"]), rel=1e-9)


def test_reliable_change_refuses_without_reliability(panel):
    rel = pd.DataFrame({"construct": ["y"], "wave": [2], "alpha": [0.8]})
    with pytest.raises(ModelError, match="no alpha for construct 'y' at baseline wave 1"):
        reliable_change(panel, "y", rel)
    with pytest.raises(ModelError, match="must be in"):
        reliable_change(panel, "y", 1.0)


def test_balance_smd_matches_r(panel, ref):
    tab = balance_table(panel, ["y", "binary", "side"])
    smd = {(v, lv): s for v, lv, s in tab[["variable", "level", "smd"]].itertuples(index=False)}
    r = ref["balance"]
    assert smd[("y", "")] == pytest.approx(r["y"], rel=1e-10)
    assert smd[("binary", "")] == pytest.approx(r["binary"], rel=1e-10)
    assert smd[("side", "South")] == pytest.approx(r["side_South"], rel=1e-10)
    assert tab.set_index(["variable", "level"]).loc[("binary", ""), "imbalanced"]


def test_dropout_and_stayers(panel):
    drop = dropout_by_wave(panel, "y")
    comp = drop[(drop["arm"] == "comparison")].set_index("wave")
    base = panel[(panel["wave"] == 1) & (panel["treated"] == 0)]["participant"]
    at3 = panel[(panel["wave"] == 3)]["participant"]
    assert comp.loc[3, "n_retained"] == base.isin(at3).sum()
    assert comp.loc[1, "retention"] == 1.0
    sl = stayers_vs_leavers(panel, ["y", "side"], 4)
    # dropout was simulated to depend on low baseline scores: stayers started higher
    assert (sl.loc[sl["variable"] == "y", "smd"] > 0).all()


def test_stayers_vs_leavers_tests_match_r(panel, ref):
    sl = stayers_vs_leavers(panel, ["y", "side"], 4)
    for r in ref["stayers"].values():
        arm = sl[sl["arm"] == ("dialogue" if r["treated"] == 1 else "comparison")]
        by = arm.set_index(["variable", "level"])["p_value"]
        assert by[("y", "")] == pytest.approx(r["p_y"], rel=1e-9)
        assert by[("side", "South")] == pytest.approx(r["p_side"], rel=1e-9)
        assert by[("side", "North")] == pytest.approx(r["p_side"], rel=1e-9)


def test_ipw_matches_glm_and_weighted_lm(panel, ref):
    out = ipw_sensitivity(panel, "y", 3, predictors=["y", "side"]).set_index("analysis")
    r = ref["ipw"]
    assert out.loc["complete cases", "estimate"] == pytest.approx(r["cc"], rel=1e-9)
    assert out.loc["complete cases", "std_error"] == pytest.approx(r["cc_se"], rel=1e-9)
    assert out.loc["inverse probability weighted", "estimate"] == pytest.approx(r["ipw"],
                                                                              rel=1e-7)
    assert out.loc["inverse probability weighted", "std_error"] == pytest.approx(
        r["ipw_se"], rel=1e-7)
    assert out.loc["complete cases", "n"] == r["n"]


def test_mice_agrees_with_r_mice(panel, ref):
    out = mice_sensitivity(panel, "y", 3, predictors=["y", "side"], n_imputations=20,
                           seed=3).set_index("analysis")
    r = ref["mice"]
    cc = out.loc["complete cases (ANCOVA)"]
    assert cc["estimate"] == pytest.approx(r["cc"], rel=1e-9)
    assert cc["std_error"] == pytest.approx(r["cc_se"], rel=1e-9)
    mi = out.loc["multiple imputation (ANCOVA)"]
    assert mi["n_imputed"] == r["n_missing"]
    # Two stochastic imputation engines (statsmodels vs R mice with m = 200, both pmm with 5
    # donors): with 20 imputations the Monte Carlo SD of the pooled estimate is about 0.12 SE
    # here, so they agree within a quarter of a standard error; the SEs within 15%.
    assert abs(mi["estimate"] - r["estimate"]) < 0.25 * r["se"]
    assert mi["std_error"] == pytest.approx(r["se"], rel=0.15)


def test_hedges_g_interval_covers_the_truth_in_simulation():
    # 400 simulated two-arm waves with true d = 0.5 (n 30 and 20): the 95% intervals cover
    # J-corrected truth at close to the nominal rate, and g is unbiased (Hedges & Olkin 1985).
    rng = np.random.default_rng(7)
    rows = []
    for rep in range(400):
        x = rng.normal(0.5, 1, 30)
        y = rng.normal(0.0, 1, 20)
        rows += [{"participant": f"a{rep}_{i}", "wave": rep, "treated": 1, "s": v}
                 for i, v in enumerate(x)]
        rows += [{"participant": f"b{rep}_{i}", "wave": rep, "treated": 0, "s": v}
                 for i, v in enumerate(y)]
    g = hedges_g_by_wave(pd.DataFrame(rows), "s")
    cover = ((g["ci_low"] < 0.5) & (0.5 < g["ci_high"])).mean()
    assert 0.92 < cover < 0.98
    assert abs(g["g"].mean() - 0.5) < 0.03


def test_growth_effect_size_scales_the_coefficient():
    class Fit:  # the smallest object with a protocol tidy(): one time x arm coefficient
        def tidy(self, level=0.95):
            from trackii_eval.models.results import tidy_frame
            return tidy_frame(["time:treated"], [3.0], [1.0], [40.0], level)

    out = growth_effect_size(Fit(), "time:treated", duration=2.0, sd_baseline=12.0).iloc[0]
    assert out["d"] == pytest.approx(0.5)
    lo = Fit().tidy().iloc[0]["ci_low"]
    assert out["ci_low"] == pytest.approx(lo * 2 / 12)
    with pytest.raises(ModelError, match="no term"):
        growth_effect_size(Fit(), "time:arm", 2.0, 12.0)


def test_growth_effect_size_recovers_simulated_feingold_d():
    # Simulated truth: slopes differ by 3 points a year, the programme lasts 2 years and the
    # baseline SD is sqrt(10^2 + 5^2): Feingold's d = 6 / 11.18 = 0.537 (2009, eq. 3).
    from trackii_eval.models.effects import pooled_baseline_sd
    from trackii_eval.models.growth import growth

    rng = np.random.default_rng(11)
    n, times = 300, np.array([0.0, 1.0, 2.0])
    treated = (np.arange(n) % 2).astype(int)
    b0 = rng.normal(50, 10, n)
    slope = rng.normal(1, 1, n) + 3 * treated
    y = b0[:, None] + slope[:, None] * times[None, :] + rng.normal(0, 5, (n, 3))
    data = pd.DataFrame({"participant": np.repeat([f"p{i}" for i in range(n)], 3),
                         "wave": np.tile([1, 2, 3], n), "time": np.tile(times, n),
                         "treated": np.repeat(treated, 3), "y": y.ravel()})
    fit = growth("y ~ time * treated + (time | participant)", data)
    sd = pooled_baseline_sd(data, "y")
    out = growth_effect_size(fit, "time:treated", duration=2.0, sd_baseline=sd).iloc[0]
    truth = 6 / np.sqrt(125)
    assert out["ci_low"] < truth < out["ci_high"]
    coef = fit.tidy().set_index("term").loc["time:treated", "estimate"]
    assert out["d"] == pytest.approx(coef * 2 / sd)


def test_bad_input_is_refused_in_one_line(panel):
    with pytest.raises(ModelError, match=r"no column.*nope") as exc:
        durability(panel, "nope")
    assert "\n" not in str(exc.value)
    with pytest.raises(ModelError, match="level must be between 0 and 1"):
        hedges_g_by_wave(panel, "y", level=95)
    with pytest.raises(ModelError, match="wave_from and wave_to must differ"):
        dz_within(panel, "y", 2, 2)
    lonely = panel[panel["treated"] == 1]
    with pytest.raises(ModelError, match="an arm has no baseline rows"):
        balance_table(lonely, ["y"])
    with pytest.raises(ModelError, match=r"predictor.*missing values"):
        ipw_sensitivity(panel.assign(x=np.where(panel.index % 7 == 0, np.nan, 1.0)), "y", 3,
                        predictors=["y", "x"])


def test_hedges_g_matches_psych_cohen_d(panel, ref):
    g = hedges_g_by_wave(panel, "y").set_index("wave")
    for r in ref["smd_by_wave"]:
        n1, n0 = r["n1"], r["n0"]
        assert (g.loc[r["wave"], "n_dialogue"], g.loc[r["wave"], "n_comparison"]) == (n1, n0)
        j = 1 - 3 / (4 * (n1 + n0) - 9)  # Hedges & Olkin's small-sample factor
        assert g.loc[r["wave"], "g"] == pytest.approx(j * r["d_pooled"], rel=1e-10)
        # interval: g +/- t(n1 + n2 - 2) * Hedges-Olkin se
        row = g.loc[r["wave"]]
        half = sps.t.ppf(0.975, n1 + n0 - 2) * row["se"]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((row["g"] - half,
                                                                 row["g"] + half), rel=1e-9)
