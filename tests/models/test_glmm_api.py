"""glmm's interface: response forms, results protocol, predictions, refusals, the plan."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackii_eval.errors import ModelError, UnsupportedModelError
from trackii_eval.models.glmm import GlmmFit, glmm
from trackii_eval.models.results import TIDY_COLUMNS, ModelResult, result_from_dict

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "glmer"


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return pd.read_csv(FIX / "cbpp.csv", dtype={"herd": str})


@pytest.fixture(scope="module")
def cbpp_fit(cbpp: pd.DataFrame) -> GlmmFit:
    return glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)


def test_cbind_trials_and_weights_give_the_same_fit(cbpp: pd.DataFrame,
                                                    cbpp_fit: GlmmFit) -> None:
    by_trials = glmm("incidence ~ period + (1 | herd)", cbpp, trials="size")
    by_weights = glmm("prop ~ period + (1 | herd)", cbpp, weights="size")
    for other in (by_trials, by_weights):
        np.testing.assert_allclose(other.beta, cbpp_fit.beta, atol=1e-6)
        assert other.loglik == pytest.approx(cbpp_fit.loglik, abs=1e-8)


def test_results_protocol_and_round_trip(cbpp_fit: GlmmFit) -> None:
    assert isinstance(cbpp_fit, ModelResult)
    tab = cbpp_fit.tidy(level=0.9)
    assert tuple(tab.columns) == TIDY_COLUMNS
    assert tab["df"].isna().all()  # z tests, as glmer
    back = result_from_dict(json.loads(json.dumps(cbpp_fit.to_dict())))
    assert isinstance(back, GlmmFit)
    pd.testing.assert_frame_equal(back.tidy(level=0.9), tab)
    assert back.to_dict() == cbpp_fit.to_dict()
    assert back.record.data_fingerprint == cbpp_fit.record.data_fingerprint
    assert "Laplace" in cbpp_fit.record.estimator and cbpp_fit.record.converged
    assert "odds ratio" in cbpp_fit.summary() and "herd" in cbpp_fit.describe()
    with pytest.raises(ModelError, match="live fit"):
        back.confint("profile")


def test_ratios_are_exponentiated_wald_intervals(cbpp_fit: GlmmFit) -> None:
    tab = cbpp_fit.tidy()
    odds = cbpp_fit.ratios()
    assert odds.attrs["ratio"] == "odds ratio"
    np.testing.assert_allclose(odds["ratio"], np.exp(tab["estimate"]))
    np.testing.assert_allclose(odds["ci_low"], np.exp(tab["ci_low"]))
    np.testing.assert_allclose(cbpp_fit.tidy(exponentiate=True)["ci_high"], odds["ci_high"])


def test_lincom_is_a_z_test(cbpp_fit: GlmmFit) -> None:
    row = cbpp_fit.lincom({"period[T.P2]": 1, "period[T.P3]": -1})
    V = cbpp_fit.vcov
    se = np.sqrt(V.iloc[1, 1] + V.iloc[2, 2] - 2 * V.iloc[1, 2])
    assert row["std_error"].iloc[0] == pytest.approx(se)
    with pytest.raises(ModelError, match="not fixed effects"):
        cbpp_fit.lincom({"nope": 1})


def test_predicted_probabilities_with_intervals(cbpp_fit: GlmmFit) -> None:
    new = pd.DataFrame({"period": ["P1", "P4"]})
    pred = cbpp_fit.predict(new)
    b = cbpp_fit.beta
    assert pred["estimate"].iloc[0] == pytest.approx(1 / (1 + np.exp(-b[0])))
    assert pred["estimate"].iloc[1] == pytest.approx(1 / (1 + np.exp(-(b[0] + b[3]))))
    assert (pred["ci_low"] < pred["estimate"]).all() and (pred["estimate"] < pred["ci_high"]).all()
    assert ((pred["ci_low"] > 0) & (pred["ci_high"] < 1)).all()
    link = cbpp_fit.predict(new, type="link")
    assert link["estimate"].iloc[0] == pytest.approx(b[0])


def test_ranef_are_conditional_modes(cbpp_fit: GlmmFit) -> None:
    re = cbpp_fit.ranef()
    assert list(re.columns) == ["Intercept"] and len(re) == 15
    # the modes of a random intercept average near zero and shrink towards it
    assert abs(re["Intercept"].mean()) < 0.3


def _panel(n: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"participant": np.repeat(np.arange(n), 4),
                      "time": np.tile(np.arange(4) / 2, n)})
    u = rng.normal(0, 1, n)
    d["y"] = rng.binomial(1, 1 / (1 + np.exp(-(-0.3 + 0.4 * d["time"] + u[d["participant"]]))))
    d["count"] = rng.poisson(np.exp(0.5 + 0.1 * d["time"] + 0.5 * u[d["participant"]]))
    return d


def test_refusals_say_what_to_do() -> None:
    d = _panel()
    with pytest.raises(ModelError, match="family 'gaussian'"):
        glmm("y ~ time + (1 | participant)", d, family="gaussian")
    with pytest.raises(ModelError, match="adaptive quadrature"):
        glmm("y ~ time + (time | participant)", d, nAGQ=5)
    bad = d.assign(y=d["y"] * 2)
    with pytest.raises(ModelError, match="analysis row 1: value 2"):
        glmm("y ~ time + (1 | participant)", bad)
    with pytest.raises(ModelError, match="count"):
        glmm("count ~ time + (1 | participant)", d.assign(count=d["count"] + 0.5),
             family="poisson")
    crossed = d.assign(rater=np.tile([0, 1, 2, 3, 4], len(d) // 5 + 1)[: len(d)])
    with pytest.raises(UnsupportedModelError, match="crossed"):
        glmm("y ~ time + (1 | participant) + (1 | rater)", crossed)
    with pytest.raises(ModelError, match="code a yes/no outcome as 1/0"):
        glmm("y ~ time + (1 | participant)", d.assign(y=np.where(d["y"] == 1, "yes", "no")))
    with pytest.raises(ModelError, match="cbind"):
        glmm("cbind(y, 1 - y) ~ time + (1 | participant)", d, family="poisson")


def test_missing_rows_are_dropped_and_counted() -> None:
    d = _panel()
    d.loc[[0, 5, 9], "y"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = glmm("y ~ time + (1 | participant)", d)
    assert fit.n_dropped == 3 and fit.nobs == len(d) - 3


def test_recovers_simulated_truth() -> None:
    # a larger simulated panel: the true values lie inside the 95% intervals
    d = _panel(600, seed=12)
    fit = glmm("y ~ time + (1 | participant)", d)
    ci = fit.tidy().set_index("term")
    assert ci.loc["Intercept", "ci_low"] < -0.3 < ci.loc["Intercept", "ci_high"]
    assert ci.loc["time", "ci_low"] < 0.4 < ci.loc["time", "ci_high"]
    assert 0.75 < fit.random["std_dev"].iloc[0] < 1.25
    rates = glmm("count ~ time + (1 | participant)", d, family="poisson").ratios()
    assert rates.attrs["ratio"] == "rate ratio"
    assert rates.loc["time", "ci_low"] < np.exp(0.1) < rates.loc["time", "ci_high"]


def test_plan_fits_behaviour_outcomes_by_glmm_with_trajectories(demo_run) -> None:
    from trackii_eval.analysis import load_plan

    _, _, results, _ = demo_run
    for name, family in (("joint_activity_glmm", "binomial"),
                         ("cross_contacts_glmm", "poisson")):
        fit = results.fits[name]
        assert isinstance(fit, GlmmFit) and fit.family == family and fit.converged
        kind, payload = results.payloads[name]
        assert kind == "glmm"
        traj = pd.DataFrame(payload["trajectory"])
        assert list(traj.columns) == ["arm", "time", "estimate", "ci_low", "ci_high"]
        assert (traj["ci_low"] <= traj["estimate"]).all()
        assert (traj["estimate"] <= traj["ci_high"]).all()
        # one row per arm and observed wave
        assert len(traj) == 2 * traj["time"].nunique()
        if family == "binomial":
            assert ((traj["ci_low"] > 0) & (traj["ci_high"] < 1)).all()
        # the linear model stays as a sensitivity analysis
        assert name.replace("_glmm", "_event_study") in results.fits
    plan = load_plan(Path(__file__).resolve().parents[2] / "analysis" / "demo.yaml")
    specs = {m.name: m for m in plan.models}
    assert specs["joint_activity_glmm"].family == "binomial"
    assert specs["cross_contacts_glmm"].family == "poisson"


def test_offset_predictions_need_the_offset_column() -> None:
    d = _panel()
    d["log_months"] = np.log(np.where(np.arange(len(d)) % 2 == 0, 1.0, 3.0))
    fit = glmm("count ~ time + (1 | participant)", d, family="poisson", offset="log_months")
    assert fit.offset == "log_months"
    new = pd.DataFrame({"time": [0.0, 0.0], "log_months": [0.0, np.log(3.0)]})
    pred = fit.predict(new)
    # a three-month window has three times the one-month rate
    assert pred["estimate"].iloc[1] == pytest.approx(3 * pred["estimate"].iloc[0])
    with pytest.raises(ModelError, match="offset column"):
        fit.predict(new.drop(columns="log_months"))
    back = GlmmFit.from_dict(fit.to_dict())
    assert back.offset == "log_months"
