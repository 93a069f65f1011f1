"""Simulation-based power against closed forms and published tables; reproducibility across
workers and backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import norm

from trackii_eval.errors import ModelError
from trackii_eval.power import PowerDesign, minimal_detectable_effect, power_curve, simulate_power
from trackii_eval.power.theory import (
    dropout_pattern_probs,
    pattern_information,
    random_slope_cov,
    slope_difference_variance_balanced,
)


def _within_mc(p_hat: float, p_true: float, n: int, k: float = 3.5) -> bool:
    return abs(p_hat - p_true) <= k * math.sqrt(p_true * (1 - p_true) / n)


# ----------------------------------------------------------------- closed forms vs tables
def test_gls_information_reproduces_diggle_table_page_29():
    # Diggle, Heagerty, Liang & Zeger (2002), Analysis of Longitudinal Data, 2nd ed., p. 29:
    # participants per group to detect a slope difference d = 0.5 with times (0, 2, 5),
    # exchangeable correlation rho and variance sigma2, one-sided alpha 0.05, power 0.8.
    # Published values (rows rho = 0.2, 0.5, 0.8; columns sigma2 = 100, 200, 300).
    table = np.array([[313, 625, 938], [196, 391, 586], [79, 157, 235]])
    t = np.array([0.0, 2.0, 5.0])
    X = np.column_stack([np.ones(3), t])
    z2 = (norm.ppf(0.95) + norm.ppf(0.8)) ** 2
    for i, rho in enumerate((0.2, 0.5, 0.8)):
        for j, s2 in enumerate((100.0, 200.0, 300.0)):
            V = s2 * (rho * np.ones((3, 3)) + (1 - rho) * np.eye(3))
            var1 = np.linalg.inv(pattern_information(X, V, [0, 0, 1]))[1, 1]
            n = z2 * 2 * var1 / 0.5**2
            assert math.ceil(n) == table[i, j]


def test_dropout_information_reproduces_lu_luo_chen_table_2():
    # Lu, Luo & Chen (2008), Int. J. Biostatistics 4(1), Table 2: variance inflation phi of
    # the last-visit contrast of a repeated-measures model with AR(1) correlation and
    # monotone dropout; retention falls linearly from 1 to 1 - a_J over J visits.
    # Rows: J = 2 (a_J = .1,.2,.3,.4), then J = 4; columns: rho^(J-1) = 0,.1,.3,.5,.7,.9.
    published = np.array([
        [1.1111, 1.1100, 1.1011, 1.0833, 1.0567, 1.0211],
        [1.2500, 1.2475, 1.2275, 1.1875, 1.1275, 1.0475],
        [1.4286, 1.4243, 1.3900, 1.3214, 1.2186, 1.0814],
        [1.6667, 1.6600, 1.6067, 1.5000, 1.3400, 1.1267],
        [1.1111, 1.1005, 1.0828, 1.0628, 1.0400, 1.0141],
        [1.2500, 1.2247, 1.1839, 1.1389, 1.0880, 1.0309],
        [1.4286, 1.3825, 1.3107, 1.2332, 1.1470, 1.0514],
        [1.6667, 1.5901, 1.4749, 1.3541, 1.2220, 1.0773],
    ])
    row = 0
    for J in (2, 4):
        for a in (0.1, 0.2, 0.3, 0.4):
            r = np.linspace(1, 1 - a, J)
            probs = r - np.append(r[1:], 0.0)
            for col, rj in enumerate((0.0, 0.1, 0.3, 0.5, 0.7, 0.9)):
                rho = rj ** (1 / (J - 1))
                lag = np.abs(np.subtract.outer(np.arange(J), np.arange(J)))
                R = rho**lag
                phi = np.linalg.inv(pattern_information(np.eye(J), R, probs))[-1, -1]
                assert phi == pytest.approx(published[row, col], abs=1e-4)
            row += 1


def test_balanced_closed_form_is_the_gls_information_without_dropout():
    t = (0.0, 0.5, 1.0, 2.0)
    d = PowerDesign(n_per_arm=50, times=t, icc=0.4, slope_sd=0.2, corr=0.3)
    V = slope_difference_variance_balanced(50, 50, t, 0.04, d.resid_var)
    assert_allclose(d.closed_form_se() ** 2, V, rtol=1e-12)
    assert_allclose(dropout_pattern_probs(3, 0.2), [0.2, 0.16, 0.64])


# ----------------------------------------------------------------- simulation vs theory
def test_simulated_power_matches_the_balanced_closed_form():
    d = PowerDesign(n_per_arm=60, times=(0, 1, 2, 3, 4), effect=0.12, slope_sd=0.15, icc=0.5)
    n_sims = 400
    pt = simulate_power(d, n_sims, seed=3, n_jobs=1)
    se_theory = math.sqrt(slope_difference_variance_balanced(60, 60, d.times, 0.15**2,
                                                             d.resid_var))
    p_theory = norm.cdf(0.12 / se_theory - norm.ppf(0.975)) + norm.cdf(
        -0.12 / se_theory - norm.ppf(0.975))
    assert pt.closed_form == pytest.approx(p_theory, rel=1e-10)
    assert _within_mc(pt.power, p_theory, n_sims)
    # The spread of the estimates is the theoretical SE (relative MC error ~ 1/sqrt(2n) = 3.5%).
    assert pt.sd_estimate == pytest.approx(se_theory, rel=0.12)
    assert pt.mean_se == pytest.approx(se_theory, rel=0.03)
    assert abs(pt.mean_estimate - 0.12) < 4 * se_theory / math.sqrt(n_sims)
    assert pt.n_unconverged == 0


def test_simulated_power_with_dropout_matches_the_pattern_mixture_closed_form():
    # 20% dropout a wave: the GLS information over dropout patterns (Lu, Luo & Chen 2008;
    # Zhao & Edland), which the two tests above check against published tables.
    d = PowerDesign(n_per_arm=60, times=(0, 1, 2, 3, 4), effect=0.15, slope_sd=0.15, icc=0.5,
                    corr=0.2, attrition=0.2)
    n_sims = 400
    pt = simulate_power(d, n_sims, seed=5, n_jobs=1)
    t = np.asarray(d.times)
    V = random_slope_cov(t, 0.5, 0.15**2, 0.2 * math.sqrt(0.5) * 0.15, d.resid_var)
    probs = dropout_pattern_probs(5, 0.2)
    info = sum(pattern_information(np.column_stack([np.ones(5), t, np.full(5, a), t * a]), V,
                                   probs, 60) for a in (0.0, 1.0))
    se = math.sqrt(np.linalg.inv(info)[3, 3])
    assert pt.closed_form_se == pytest.approx(se, rel=1e-12)
    p_theory = norm.cdf(0.15 / se - norm.ppf(0.975)) + norm.cdf(-0.15 / se - norm.ppf(0.975))
    assert _within_mc(pt.power, p_theory, n_sims)
    assert pt.sd_estimate == pytest.approx(se, rel=0.12)
    # Dropout costs power: the complete design's closed form is higher.
    assert PowerDesign(**{**d.to_dict(), "attrition": 0.0}).closed_form_se() < se


def test_did_power_matches_its_closed_form():
    # Random intercept, complete data: Var(DiD) = s2_e (1/m0 + 1/m1)(1/n1 + 1/n2).
    d = PowerDesign(model="did", n_per_arm=50, times=(0, 1, 2, 3), did_start=2, effect=0.25,
                    slope_sd=0.0, icc=0.5)
    se = math.sqrt(0.5 * (1 / 2 + 1 / 2) * (2 / 50))
    assert d.closed_form_se() == pytest.approx(se, rel=1e-10)
    pt = simulate_power(d, 300, seed=1, n_jobs=1)
    p_theory = norm.cdf(0.25 / se - norm.ppf(0.975)) + norm.cdf(-0.25 / se - norm.ppf(0.975))
    assert _within_mc(pt.power, p_theory, 300)
    assert pt.sd_estimate == pytest.approx(se, rel=0.15)


def test_mnar_dropout_realises_the_attrition_rate_and_runs():
    d = PowerDesign(n_per_arm=40, times=(0, 1, 2), effect=0.2, attrition=0.3, dropout_or=1.0)
    assert not d.mnar
    d2 = PowerDesign(**{**d.to_dict(), "dropout_or": 3.0})
    pt = simulate_power(d2, 40, seed=2, n_jobs=1)
    assert pt.n_sims == 40 and math.isnan(pt.closed_form) and 0 <= pt.power <= 1
    with pytest.raises(ModelError, match="MCAR"):
        pt.power_at(0.3)


def test_minimal_detectable_effect_matches_closed_form():
    d = PowerDesign(n_per_arm=60, times=(0, 1, 2, 3, 4), effect=0.15, slope_sd=0.15,
                    attrition=0.2)
    res = minimal_detectable_effect(d, target=0.8, n_sims=400, seed=4, n_jobs=1)
    assert res["ci_low"] <= res["mde"] <= res["ci_high"]
    # MC error of the MDE: the interval from the Wilson bounds, widened a little.
    half = res["ci_high"] - res["ci_low"]
    assert abs(res["mde"] - res["closed_form"]) <= half


def test_curve_is_increasing_and_invalid_designs_fail_loudly():
    d = PowerDesign(n_per_arm=20, times=(0, 1, 2), effect=0.3)
    curve = power_curve(d, [20, 80], n_sims=60, seed=0, n_jobs=1)
    frame = curve.to_frame()
    assert list(frame["n_per_arm"]) == [20, 80]
    assert frame["closed_form"].is_monotonic_increasing
    with pytest.raises(ModelError, match="attrition"):
        PowerDesign(attrition=1.2)
    with pytest.raises(ModelError, match="icc"):
        PowerDesign(icc=0.8, icc_dialogue=0.3, dialogues_per_arm=2)


# ----------------------------------------------------------------- reproducibility
def test_identical_results_on_one_worker_two_workers_and_dask():
    distributed = pytest.importorskip("distributed")
    d = PowerDesign(n_per_arm=30, times=(0, 1, 2, 3), effect=0.2, attrition=0.1)
    one = simulate_power(d, 60, seed=9, n_jobs=1)
    two = simulate_power(d, 60, seed=9, n_jobs=2)
    assert np.array_equal(one.estimates, two.estimates) and np.array_equal(one.ses, two.ses)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = simulate_power(d, 60, seed=9, scheduler=client)
    assert np.array_equal(one.estimates, dask.estimates)
    assert one.power == two.power == dask.power
    other = simulate_power(d, 60, seed=10, n_jobs=1)
    assert not np.array_equal(one.estimates, other.estimates)


def test_cli_power_prints_a_curve_and_writes_figure_and_json(tmp_path):
    import json

    from typer.testing import CliRunner

    from trackii_eval.cli import app

    fig, js = tmp_path / "power.svg", tmp_path / "power.json"
    res = CliRunner().invoke(app, ["power", "--n", "20,40", "--waves", "4", "--attrition", "0.2",
                                   "--effect", "0.2", "--sims", "40", "--jobs", "1",
                                   "--figure", str(fig), "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "MDE@0.8" in res.output and fig.read_text().startswith("<?xml")
    points = json.loads(js.read_text())["points"]
    assert [p["n_per_arm"] for p in points] == [20, 40]
    bad = CliRunner().invoke(app, ["power", "--attrition", "1.5", "--jobs", "1"])
    assert bad.exit_code == 2 and "attrition" in bad.output
