"""Difference-in-differences for staggered entry: R `did` on mpdta, simulated truth, pre-trends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackii_eval.errors import ModelError
from trackii_eval.models.did import (
    DidFit,
    callaway_santanna,
    imputation_did,
    sun_abraham,
    twfe_did,
)
from trackii_eval.models.did.wild import webb_weights
from trackii_eval.models.results import result_from_dict

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "did"
MPDTA = dict(entity="countyreal", time="year", cohort="first.treat")


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    return pd.read_csv(FIX / "mpdta.csv")


# ----------------------------------------------------------------------------- R did, mpdta
@pytest.mark.parametrize(("scenario", "control"),
                         [("mpdta_nev_dr", "never"), ("mpdta_nyt_dr", "notyet")])
def test_callaway_santanna_matches_r_did(mpdta, scenario, control):
    fit = callaway_santanna(mpdta, "lemp", control=control, **MPDTA)
    tab = fit.tidy().set_index("term")
    ref = pd.read_csv(FIX / "ref_attgt.csv").query("scenario == @scenario")
    assert len(ref) == 12
    for row in ref.itertuples():
        term = f"ATT(g={row.group},t={row.t})"
        assert tab.loc[term, "estimate"] == pytest.approx(row.att, abs=1e-12)
        assert tab.loc[term, "std_error"] == pytest.approx(row.se, rel=1e-9)
    agg = pd.read_csv(FIX / "ref_aggte.csv").query("scenario == @scenario")
    prefix = {"group": "group", "dynamic": "event", "calendar": "calendar"}
    for row in agg.itertuples():
        assert tab.loc[row.type, "estimate"] == pytest.approx(row.overall_att, abs=1e-12)
        assert tab.loc[row.type, "std_error"] == pytest.approx(row.overall_se, rel=1e-9)
        if row.type != "simple":
            term = f"{prefix[row.type]}:{int(row.egt)}"
            assert tab.loc[term, "estimate"] == pytest.approx(row.att_egt, abs=1e-12)
            assert tab.loc[term, "std_error"] == pytest.approx(row.se_egt, rel=1e-9)
    pre = pd.read_csv(FIX / "ref_pretest.csv").set_index("scenario").loc[scenario]
    assert fit.pretest["statistic"] == pytest.approx(pre["W"], rel=1e-9)
    assert fit.pretest["p_value"] == pytest.approx(pre["Wpval"], abs=1e-5)
    assert fit.pretest["df"] == 5


def test_published_mpdta_values(mpdta):
    # Callaway & Sant'Anna (2021) / R did vignette: simple -0.0400, dynamic -0.0772
    fit = callaway_santanna(mpdta, "lemp", **MPDTA)
    agg = fit.info["aggregates"]
    assert round(agg["simple"], 4) == -0.0400
    assert round(agg["dynamic"], 4) == -0.0772


def test_twfe_matches_plm(mpdta):
    # plm within twoways with vcovHC(type = "sss", cluster = "group"): make_twfe_fixture.R
    ref = pd.read_csv(FIX / "ref_twfe_plm.csv").iloc[0]
    tw = twfe_did(mpdta, "lemp", **MPDTA)
    assert tw.estimate[0] == pytest.approx(ref["estimate"], abs=1e-12)
    assert tw.std_error[0] == pytest.approx(ref["se_sss"], rel=1e-9)
    assert round(tw.estimate[0], 4) == -0.0365  # the value the did vignette shows


def test_sun_abraham_equals_cs_never_treated_post_periods(mpdta):
    # With never-treated controls the saturated regression's post-period cell coefficients are
    # the CS ATT(g, t) with base g-1, and both weight cohorts by size: same event-time effects.
    cs = callaway_santanna(mpdta, "lemp", **MPDTA).tidy().set_index("term")
    sa = sun_abraham(mpdta, "lemp", **MPDTA).tidy().set_index("term")
    for e in range(4):
        assert sa.loc[f"event:{e}", "estimate"] == pytest.approx(
            cs.loc[f"event:{e}", "estimate"], abs=1e-10)
    assert sa.loc["overall", "estimate"] == pytest.approx(cs.loc["simple", "estimate"],
                                                          abs=1e-10)
    assert "event:-1" not in sa.index


def test_bacon_decomposition_sums_to_twfe(mpdta):
    tw = twfe_did(mpdta, "lemp", **MPDTA)
    rows = pd.DataFrame(tw.info["bacon"])
    assert rows["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert (rows["weight"] * rows["estimate"]).sum() == pytest.approx(tw.estimate[0], abs=1e-12)
    assert (rows["weight"] > 0).all()
    # the treated-vs-never 2x2 of a cohort is its CS group effect with never-treated controls
    cs = callaway_santanna(mpdta, "lemp", **MPDTA).tidy().set_index("term")
    first = rows[(rows["type"] == "treated vs never treated") & (rows["treated"] == 2004)]
    assert first["estimate"].iloc[0] == pytest.approx(cs.loc["group:2004", "estimate"],
                                                      abs=1e-12)


def test_imputation_matches_lm_reference(mpdta):
    # make_imputation_fixture.R: lm() on untreated observations, predict, average
    ref = pd.read_csv(FIX / "ref_imputation_lm.csv").set_index("term")["estimate"]
    tab = imputation_did(mpdta, "lemp", **MPDTA).tidy().set_index("term")
    assert list(tab.index) == list(ref.index)
    for term, value in ref.items():
        assert tab.loc[term, "estimate"] == pytest.approx(value, abs=1e-10)


def test_imputation_flags_single_pre_wave(mpdta):
    fit = imputation_did(mpdta, "lemp", **MPDTA)
    assert fit.info["single_pre_wave_cohorts"] == [2004.0]
    assert any("single pre-treatment wave" in w for w in fit.warnings)


# ----------------------------------------------------------------------------- simulations
def staggered(seed: int = 1, n_per: int = 60, noise: float = 0.5, pretrend: float = 0.0,
              slope: float = 0.5) -> pd.DataFrame:
    """Waves 0-4; dialogues A, B, C start at waves 1, 2, 3; a comparison arm never starts.

    Effect at exposure e = wave - start >= 0: slope * (e + 1) (grows with exposure).
    ``pretrend``: the dialogue arms drift by this much per wave before they start.
    """
    rng = np.random.default_rng(seed)
    rows = []
    starts = {"A": 1, "B": 2, "C": 3, "none": 0}
    pid = 0
    for dlg, g in starts.items():
        for _ in range(n_per * (2 if dlg == "none" else 1)):
            pid += 1
            a = rng.normal(0, 1)
            site = dlg if dlg != "none" else f"cmp{pid % 3}"
            for w in range(5):
                eff = slope * (w - g + 1) if g and w >= g else 0.0
                drift = pretrend * w if g else 0.0
                y = a + 0.3 * w + eff + drift + rng.normal(0, noise)
                rows.append({"participant": f"p{pid}", "wave": w, "cohort": g, "y": y,
                             "dialogue": site})
    return pd.DataFrame(rows)


# truth: equal cohort sizes; post cells g=1: e 0..3, g=2: e 0..2, g=3: e 0..1
TRUE_EVENT = {e: 0.5 * (e + 1) for e in range(4)}
TRUE_SIMPLE = sum(0.5 * (e + 1) for g in (1, 2, 3) for e in range(5 - g)) / 9


def test_noise_free_panel_recovered_exactly():
    d = staggered(noise=0.0)
    cs = callaway_santanna(d, "y").tidy().set_index("term")
    sa = sun_abraham(d, "y").tidy().set_index("term")
    bj = imputation_did(d, "y").tidy().set_index("term")
    for e, truth in TRUE_EVENT.items():
        for tab in (cs, sa, bj):
            assert tab.loc[f"event:{e}", "estimate"] == pytest.approx(truth, abs=1e-9)
    assert cs.loc["simple", "estimate"] == pytest.approx(TRUE_SIMPLE, abs=1e-9)
    assert bj.loc["overall", "estimate"] == pytest.approx(TRUE_SIMPLE, abs=1e-9)
    tw = twfe_did(d, "y")
    assert tw.estimate[0] < TRUE_SIMPLE - 0.2  # biased even without noise


def test_staggered_twfe_biased_robust_estimators_cover_truth():
    d = staggered(seed=7)
    tw = twfe_did(d, "y").tidy().iloc[0]
    assert not tw["ci_low"] <= TRUE_SIMPLE <= tw["ci_high"]
    assert tw["ci_high"] < TRUE_SIMPLE
    cs = callaway_santanna(d, "y").tidy().set_index("term")
    sa = sun_abraham(d, "y").tidy().set_index("term")
    bj = imputation_did(d, "y").tidy().set_index("term")
    for tab, overall in ((cs, "simple"), (sa, "overall"), (bj, "overall")):
        row = tab.loc[overall]
        assert row["ci_low"] <= TRUE_SIMPLE <= row["ci_high"]
        for e, truth in TRUE_EVENT.items():
            r = tab.loc[f"event:{e}"]
            assert abs(r["estimate"] - truth) < 3 * r["std_error"]
    twfe_fit = twfe_did(d, "y")
    assert any("later-vs-earlier" in n for n in twfe_fit.notes)


def test_robust_estimators_coverage_over_replications():
    hits = {"cs": 0, "sa": 0, "bj": 0, "twfe": 0}
    reps = 40
    for s in range(reps):
        d = staggered(seed=100 + s, n_per=30, noise=1.0)
        for key, fit, term in (("cs", callaway_santanna(d, "y"), "simple"),
                               ("sa", sun_abraham(d, "y"), "overall"),
                               ("bj", imputation_did(d, "y"), "overall"),
                               ("twfe", twfe_did(d, "y"), "D")):
            r = fit.tidy().set_index("term").loc[term]
            hits[key] += r["ci_low"] <= TRUE_SIMPLE <= r["ci_high"]
    for key in ("cs", "sa", "bj"):
        assert hits[key] / reps >= 0.85, hits  # nominal 95%; 40 replications
    assert hits["twfe"] / reps <= 0.5, hits


@pytest.mark.parametrize("estimator", [callaway_santanna, sun_abraham, imputation_did])
def test_pretrend_test_size_and_power(estimator):
    null_rej = alt_rej = 0
    reps = 40
    for s in range(reps):
        p0 = estimator(staggered(seed=200 + s, n_per=30, noise=1.0), "y").pretest["p_value"]
        p1 = estimator(staggered(seed=300 + s, n_per=30, noise=1.0, pretrend=0.7),
                       "y").pretest["p_value"]
        null_rej += p0 < 0.05
        alt_rej += p1 < 0.05
    assert null_rej / reps <= 0.15
    assert alt_rej / reps >= 0.9


def test_single_pre_wave_has_no_pretest():
    d = staggered(seed=3)
    two = d[d["wave"] <= 1]  # cohort 1 only, one pre-treatment wave
    two = two[two["cohort"].isin([0, 1])]
    fit = callaway_santanna(two, "y")
    assert "statistic" not in fit.pretest
    assert "single pre-treatment wave" in fit.pretest["note"]
    assert "Pre-trends:" in fit.summary()


# ----------------------------------------------------------------------------- few clusters
def test_wild_cluster_bootstrap_few_dialogues():
    d = staggered(seed=11)
    fit = callaway_santanna(d, "y", cluster="dialogue", inference="wild", n_boot=499, seed=5)
    again = callaway_santanna(d, "y", cluster="dialogue", inference="wild", n_boot=499, seed=5)
    assert fit.std_error == again.std_error
    assert fit.info["n_clusters"] == 6
    assert any("only 6 clusters" in w for w in fit.warnings)
    assert "Webb" in fit.record.vcov
    assert np.isfinite(fit.std_error).all()
    analytic = callaway_santanna(d, "y", cluster="dialogue")
    assert analytic.df[0] == 5
    with pytest.raises(ModelError, match="name the cluster column"):
        callaway_santanna(d, "y", inference="wild")
    for est in (twfe_did, sun_abraham, imputation_did):
        f = est(d, "y", cluster="dialogue", inference="wild", n_boot=199)
        assert np.isfinite(f.std_error).all()
        assert any("clusters" in w for w in f.warnings)


def test_webb_weights_moments():
    w = webb_weights(np.random.default_rng(0), (200_000,))
    assert set(np.round(np.unique(w) ** 2, 12)) == {0.5, 1.0, 1.5}
    assert abs(w.mean()) < 0.01
    assert w.var() == pytest.approx(1.0, abs=0.01)


def test_unit_clustering_equals_default(mpdta):
    # clustering on the unit itself reproduces the unclustered influence-function SEs up to
    # the G/(G-1) factor
    d = mpdta.assign(cl=mpdta["countyreal"])
    a = callaway_santanna(d, "lemp", **MPDTA)
    b = callaway_santanna(d, "lemp", cluster="cl", **MPDTA)
    g = d["countyreal"].nunique()
    np.testing.assert_allclose(np.array(b.std_error), np.array(a.std_error)
                               * np.sqrt(g / (g - 1)), rtol=1e-12)


# ----------------------------------------------------------------------------- protocol, errors
def test_protocol_round_trip(mpdta):
    for fit in (callaway_santanna(mpdta, "lemp", **MPDTA), twfe_did(mpdta, "lemp", **MPDTA),
                sun_abraham(mpdta, "lemp", **MPDTA), imputation_did(mpdta, "lemp", **MPDTA)):
        data = json.loads(json.dumps(fit.to_dict()))
        back = result_from_dict(data)
        assert isinstance(back, DidFit) and back.kind == "did"
        pd.testing.assert_frame_equal(back.tidy(), fit.tidy())
        assert back.summary() == fit.summary()
        assert back.to_dict() == data
        assert fit.describe() and "<table" in fit.summary_html()
    cs = callaway_santanna(mpdta, "lemp", **MPDTA)
    # lincom uses the joint covariance: event:0 - event:0 is exactly zero with zero SE
    row = cs.lincom({"event:0": 1.0, "calendar:2004": 0.0})
    assert row["estimate"].iloc[0] == pytest.approx(cs.tidy().set_index("term")
                                                    .loc["event:0", "estimate"])


def test_bad_input_is_one_clear_error(mpdta):
    with pytest.raises(ModelError, match="not in the data"):
        callaway_santanna(mpdta, "nope", **MPDTA)
    bad = mpdta.copy()
    bad.loc[bad.index[0], "first.treat"] = 2006
    with pytest.raises(ModelError, match="changes within a unit"):
        callaway_santanna(bad, "lemp", **MPDTA)
    allt = mpdta[mpdta["first.treat"] > 0]
    with pytest.raises(ModelError, match="no never-treated unit"):
        callaway_santanna(allt, "lemp", **MPDTA)
    fit = callaway_santanna(allt, "lemp", control="notyet", **MPDTA)
    assert "ATT(g=2004,t=2005)" in fit.terms
    # the last cohort has no not-yet-treated comparison once it starts: reported, not dropped
    row = fit.tidy().set_index("term").loc["ATT(g=2007,t=2007)"]
    assert not row["estimable"] and np.isnan(row["estimate"]) and "no comparison" in row["note"]
    assert any("ATT(g=2007,t=2007) not estimable" in w for w in fit.warnings)
    assert fit.lincom({"ATT(g=2004,t=2005)": 1.0})["estimable"].iloc[0]
    back = result_from_dict(json.loads(json.dumps(fit.to_dict())))
    pd.testing.assert_frame_equal(back.tidy(), fit.tidy())
    gap = mpdta.drop(index=mpdta.index[3])
    fit = callaway_santanna(gap, "lemp", **MPDTA)
    assert any("1 of 500 units" in w for w in fit.warnings)


def test_wcr_bootstrap_matches_brute_force_refits():
    # the closed form of wcr_twfe against explicit refits of the two-way FE regression on
    # each bootstrap outcome (same Webb draws)
    from trackii_eval.models.did._data import staggered_panel
    from trackii_eval.models.did.regression import _demean2
    from trackii_eval.models.did.wild import wcr_twfe

    d = staggered(seed=21, n_per=20)
    panel = staggered_panel(d, "y", entity="participant", time="wave", cohort="cohort",
                            cluster="dialogue", what="test")
    D = (panel.periods[None, :] >= panel.cohort[:, None]).astype(float)
    dt, yt = _demean2(D), _demean2(panel.y)
    res = wcr_twfe(dt, yt, panel.cluster, panel.n_clusters, n_boot=99, seed=4)
    member = np.eye(panel.n_clusters)[panel.cluster]

    def t_of(y):
        b = (y * dt).sum() / (dt**2).sum()
        sc = (((y - b * dt) * dt).sum(axis=1)) @ member
        return b / np.sqrt((sc**2).sum()) * (dt**2).sum()

    t0 = t_of(yt)
    w = webb_weights(np.random.default_rng(4), (99, panel.n_clusters))[:, panel.cluster]
    tb = np.array([t_of(_demean2(w[i][:, None] * yt)) for i in range(99)])
    assert res["p_value"] == pytest.approx(np.mean(np.abs(tb) >= abs(t0)), abs=1e-12)
    assert res["ci_low"] < (yt * dt).sum() / (dt**2).sum() < res["ci_high"]


def test_twfe_wild_replaces_p_and_ci_at_its_level():
    d = staggered(seed=11)
    fit = twfe_did(d, "y", cluster="dialogue", inference="wild", n_boot=199)
    t95, t90 = fit.tidy().iloc[0], fit.tidy(level=0.9).iloc[0]
    assert t95["p_value"] == fit.info["wild"]["D"]["p_value"]
    assert t95["ci_low"] == fit.info["wild"]["D"]["ci_low"]
    assert "WCR" in t95["note"] and "only at level" in t90["note"]
    back = result_from_dict(json.loads(json.dumps(fit.to_dict())))
    pd.testing.assert_frame_equal(back.tidy(), fit.tidy())


def test_missing_cluster_is_refused():
    d = staggered(seed=2)
    d.loc[d["cohort"] == 0, "dialogue"] = None
    with pytest.raises(ModelError, match="cluster column 'dialogue' is missing for 120 units"):
        callaway_santanna(d, "y", cluster="dialogue")


def test_missing_cluster_message_counts_the_balanced_panel():
    # 10 comparison units miss a wave: the count is of the 290 balanced-panel units, and the
    # message says the missing ones are comparison units and what to do.
    d = staggered(seed=2)
    d.loc[d["cohort"] == 0, "dialogue"] = None
    gone = d["participant"].isin([f"p{i}" for i in range(181, 191)]) & (d["wave"] == 2)
    d = d[~gone]
    with pytest.raises(ModelError, match=r"missing for 110 units of the 290 kept in the "
                       r"balanced panel \(300 in the data\); 110 of them are never-treated "
                       r"\(comparison\).*cluster by unit"):
        callaway_santanna(d, "y", cluster="dialogue")


def test_balanced_panel_drop_is_warned_and_counted():
    d = staggered(seed=3)
    # 7 units (3 treated in cohort 1, 4 comparison) lose their outcome at one wave
    lost = [f"p{i}" for i in (1, 2, 3, 181, 182, 183, 184)]
    d.loc[d["participant"].isin(lost) & (d["wave"] == 3), "y"] = np.nan
    with pytest.warns(UserWarning,
                      match=r"7 of 300 units lack 'y' .*\(balanced panel.*293 of 300 units kept"):
        fit = callaway_santanna(d, "y")
    assert (fit.info["n_units_data"], fit.info["n_units_kept"],
            fit.info["n_units_dropped"]) == (300, 293, 7)
    assert "balanced panel of 293 of 300 units (7 dropped" in fit.summary()
    assert any("293 of 300 units kept" in w for w in fit.record.warnings)
    back = result_from_dict(json.loads(json.dumps(fit.to_dict())))
    assert back.info["n_units_kept"] == 293


def few_cluster_panel(seed: int, n_clusters: int, per_cluster: int, waves: int = 5,
                      shock_sd: float = 0.5) -> pd.DataFrame:
    """Dialogues 0-2 start at waves 1-3, the others never; no effect; dialogue-wave shocks."""
    rng = np.random.default_rng(seed)
    n = n_clusters * per_cluster
    cl = np.repeat(np.arange(n_clusters), per_cluster)
    start = np.where(cl < 3, cl + 1, 0)
    shocks = rng.normal(0, shock_sd, (n_clusters, waves))
    y = (rng.normal(size=(n, 1)) + 0.2 * np.arange(waves)[None, :] + shocks[cl]
         + rng.normal(size=(n, waves)))
    return pd.DataFrame({"participant": np.repeat(np.arange(n), waves),
                         "wave": np.tile(np.arange(waves), n),
                         "cohort": np.repeat(start, waves), "dialogue": np.repeat(cl, waves),
                         "y": y.ravel()})


def test_wcr_size_with_few_treated_dialogues():
    # no effect, 10 dialogues of which 3 start (waves 1-3), dialogue-by-wave shocks: the WCR
    # bootstrap-t rejects near the nominal 5% (benchmarks/did.py: 5.0% in 200 replications
    # where the analytic CR t(G-1) test rejects 10.5%)
    from trackii_eval.models.did._data import staggered_panel
    from trackii_eval.models.did.regression import _demean2
    from trackii_eval.models.did.wild import wcr_twfe

    reps, rejected = 60, 0
    for s in range(reps):
        d = few_cluster_panel(1000 + s, n_clusters=10, per_cluster=10)  # same as benchmark
        p = staggered_panel(d, "y", entity="participant", time="wave", cohort="cohort",
                            cluster="dialogue", what="test")
        D = (p.periods[None, :] >= p.cohort[:, None]).astype(float)
        res = wcr_twfe(_demean2(D), _demean2(p.y), p.cluster, p.n_clusters, n_boot=199,
                       seed=s, ci=False)
        rejected += res["p_value"] < 0.05
    assert rejected / reps <= 0.12


def test_imputation_weights_match_dense_least_squares():
    # the O(n T^2) solver against the dense normal equations (pseudo-inverse) on a small panel:
    # the BJS standard error of the overall effect, sum_i (sum_t v_it e_it)^2
    d = staggered(seed=5, n_per=8)
    fit = imputation_did(d, "y")
    wide = d.pivot(index="participant", columns="wave", values="y").sort_index()
    g = d.groupby("participant")["cohort"].first().reindex(wide.index).to_numpy(float)
    g = np.where(g == 0, np.inf, g)
    n, T = wide.shape
    unit, tix = np.repeat(np.arange(n), T), np.tile(np.arange(T), n)
    tr = tix >= g[unit]
    Z = np.zeros((n * T, n + T - 1))
    Z[np.arange(n * T), unit] = 1
    Z[np.flatnonzero(tix > 0), n + tix[tix > 0] - 1] = 1
    yv = wide.to_numpy().ravel()
    coef = np.linalg.pinv(Z[~tr]) @ yv[~tr]
    tau = yv[tr] - Z[tr] @ coef
    w1 = np.full(tr.sum(), 1 / tr.sum())
    v0 = -(w1 @ Z[tr] @ np.linalg.pinv(Z[~tr].T @ Z[~tr]) @ Z[~tr].T)
    cells = pd.Series(tau).groupby([g[unit][tr], tix[tr] - g[unit][tr]]).transform("mean")
    contrib = np.zeros(n * T)
    contrib[tr] = w1 * (tau - cells.to_numpy())
    contrib[~tr] = v0 * (yv[~tr] - Z[~tr] @ coef)
    se = np.sqrt((contrib.reshape(n, T).sum(axis=1) ** 2).sum())
    overall = fit.tidy().set_index("term").loc["overall"]
    assert overall["estimate"] == pytest.approx(w1 @ tau, abs=1e-12)
    assert overall["std_error"] == pytest.approx(se, rel=1e-9)


def test_overview_flags_twfe_when_it_departs():
    from trackii_eval.models.did import did_overview

    table = did_overview(staggered(seed=7), "y")
    assert len(table) == 5
    robust = table.iloc[:4]
    assert ((robust["ci_low"] <= TRUE_SIMPLE) & (TRUE_SIMPLE <= robust["ci_high"])).all()
    assert "outside the Callaway-Sant'Anna interval" in table.iloc[-1]["note"]
    same = did_overview(staggered(seed=7, slope=0.0), "y")  # no effect: TWFE unbiased
    assert "outside" not in same.iloc[-1]["note"]


def test_non_numeric_cohort_is_refused_not_read_as_never_treated():
    d = staggered(seed=2).astype({"cohort": object})
    d.loc[5, "cohort"] = "wave2"
    with pytest.raises(ModelError, match="row 5 is not a number"):
        twfe_did(d, "y")
