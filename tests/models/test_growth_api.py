"""The public contract of trackii_eval.models.growth: shapes, names, errors, fallbacks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats as sps

from trackii_eval.errors import (
    ConvergenceWarning,
    EngineFallbackWarning,
    ModelError,
    UnsupportedModelError,
)
from trackii_eval.models.growth import GrowthFit, growth, lrt
from trackii_eval.models.growth.formula import parse_formula
from trackii_eval.models.growth.simulate import simulate_panel

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"
SLEEP = pd.read_csv(FIX / "sleepstudy" / "data.csv")
FIXED_COLUMNS = ["estimate", "std_error", "df", "t", "p_value", "ci_low", "ci_high"]


@pytest.fixture(scope="module")
def sleep_fit() -> GrowthFit:
    return growth("Reaction ~ Days + (Days | Subject)", data=SLEEP, reml=True)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return simulate_panel(150, 6, missing=0.15, n_dialogues=12, string_ids=True, seed=21)


# ----------------------------------------------------------------- formula parsing
@pytest.mark.parametrize(
    ("formula", "fixed", "random"),
    [
        ("y ~ t * arm + (t | p)", "t * arm", [("t", ("p",), False)]),
        ("y ~ t + (1 | p)", "t", [("1", ("p",), False)]),
        ("y ~ t + (0 + t | p) + (1 | d)", "t", [("0 + t", ("p",), False), ("1", ("d",), False)]),
        ("y ~ t + (t || p)", "t", [("t", ("p",), True)]),
        ("y ~ t + I(t**2) + (t + I(t**2) | p)", "t + I(t**2)", [("t + I(t**2)", ("p",), False)]),
        ("y ~ (1 | d/p)", "1", [("1", ("d",), False), ("1", ("d", "p"), False)]),
    ],
)
def test_parse_formula(formula, fixed, random):
    parsed = parse_formula(formula)
    assert parsed.response == "y"
    assert parsed.fixed == fixed
    assert [(t.expr, t.group, t.independent) for t in parsed.random] == random


@pytest.mark.parametrize("bad", ["y t + (t | p)", "y ~ t + (t | p", "y ~ t + ( | p)", "~ t"])
def test_malformed_formulas_raise_model_error(bad):
    with pytest.raises(ModelError):
        parse_formula(bad)


# ----------------------------------------------------------------- result shapes
def test_fixed_table_shape_and_values(sleep_fit):
    fx = sleep_fit.fixed
    assert list(fx.columns) == FIXED_COLUMNS
    assert list(fx.index) == ["Intercept", "Days"]
    crit = sps.t.ppf(0.975, fx["df"])
    assert_allclose(fx["ci_low"], fx["estimate"] - crit * fx["std_error"])
    assert_allclose(fx["p_value"], 2 * sps.t.sf(np.abs(fx["t"]), fx["df"]))
    assert_allclose(np.sqrt(np.diag(sleep_fit.vcov)), fx["std_error"])
    assert list(sleep_fit.vcov.index) == ["Intercept", "Days"]


def test_random_table_and_theta(sleep_fit):
    rnd = sleep_fit.random
    assert list(rnd.columns) == ["group", "term", "term2", "variance", "std_dev", "corr"]
    assert list(rnd["group"]) == ["Subject", "Subject", "Subject", "Residual"]
    assert rnd["term2"].tolist() == [None, None, "Days", None]
    assert rnd.iloc[3]["term"] is None
    assert_allclose(rnd.iloc[3]["std_dev"], sleep_fit.sigma)
    assert_allclose(rnd.iloc[0]["std_dev"] ** 2, rnd.iloc[0]["variance"])
    assert_allclose(sleep_fit.theta, [0.96674, 0.01517, 0.23091], atol=1e-4)
    assert sleep_fit.ngroups == {"Subject": 18}
    assert sleep_fit.nobs == 180 and sleep_fit.n_dropped == 0
    assert sleep_fit.engine == "trackii" and sleep_fit.reml
    assert sleep_fit.formula == "Reaction ~ Days + (Days | Subject)"


def test_information_criteria_as_lme4(sleep_fit):
    npar = 2 + 3 + 1
    assert_allclose(sleep_fit.loglik, -sleep_fit.deviance / 2)
    assert_allclose(sleep_fit.aic, sleep_fit.deviance + 2 * npar)
    assert_allclose(sleep_fit.bic, sleep_fit.deviance + np.log(180) * npar)


def test_optimizer_record(sleep_fit):
    opt = sleep_fit.optimizer
    assert dataclasses.is_dataclass(opt)
    assert opt.engine == "trackii" and opt.n_evals > 0 and opt.converged
    assert "L-BFGS-B" in opt.name
    assert opt.gradient_norm < 2e-3
    assert len(opt.start_theta) == len(opt.final_theta) == 3
    assert_allclose(opt.final_theta, sleep_fit.theta)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.n_evals = 0  # type: ignore[misc]


def test_results_are_immutable(sleep_fit):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sleep_fit.sigma = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        sleep_fit.theta[0] = 0.0
    fx = sleep_fit.fixed
    fx.loc["Days", "estimate"] = 0.0
    assert sleep_fit.fixed.loc["Days", "estimate"] > 10
    w = sleep_fit.warnings
    w.append("x")
    assert "x" not in sleep_fit.warnings


def test_to_dict_is_json_and_summary_is_readable(sleep_fit):
    rec = sleep_fit.to_dict()
    text = json.dumps(rec, allow_nan=False)
    assert json.loads(text)["fixed"]["Days"]["estimate"] == pytest.approx(10.467286, rel=1e-6)
    assert rec["optimizer"]["engine"] == "trackii"
    summary = sleep_fit.summary()
    for piece in (
        "REML criterion at convergence: 1743.628",
        "Satterthwaite",
        "Days",
        "Subject",
        "Residual",
        "Number of obs: 180",
    ):
        assert piece in summary


# ----------------------------------------------------------------- predict and ranef
def test_predict_population_band(sleep_fit):
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0]}, index=["a", "b", "c"])
    pred = sleep_fit.predict(new)
    assert list(pred.columns) == ["estimate", "std_error", "ci_low", "ci_high"]
    assert list(pred.index) == ["a", "b", "c"]
    X = np.column_stack([np.ones(3), new["Days"]])
    V = sleep_fit.vcov.to_numpy()
    assert_allclose(pred["estimate"], X @ sleep_fit.fixed["estimate"].to_numpy())
    assert_allclose(pred["std_error"], np.sqrt(np.einsum("ij,jk,ik->i", X, V, X)))
    # at Days = 0 the band is the intercept's Wald CI (same contrast, same Satterthwaite df)
    assert_allclose(
        pred.loc["a", ["ci_low", "ci_high"]].to_numpy(dtype=float),
        sleep_fit.fixed.loc["Intercept", ["ci_low", "ci_high"]].to_numpy(dtype=float),
    )
    assert (pred["ci_low"] < pred["estimate"]).all() and (pred["estimate"] < pred["ci_high"]).all()


def test_predict_with_random_effects_and_ranef(sleep_fit):
    re = sleep_fit.ranef()
    assert list(re.columns) == ["Intercept", "Days"]
    assert len(re) == 18 and re.index.name == "Subject"
    assert_allclose(re.mean().to_numpy(), 0.0, atol=1e-8)
    new = pd.DataFrame({"Days": [3.0, 3.0], "Subject": [308, 99999]})
    pred = sleep_fit.predict(new, re=True)
    pop = sleep_fit.predict(new)
    b = re.loc[308]
    assert_allclose(
        pred["estimate"].iloc[0], pop["estimate"].iloc[0] + b["Intercept"] + 3 * b["Days"]
    )
    assert_allclose(pred["estimate"].iloc[1], pop["estimate"].iloc[1])  # unknown participant
    assert pred["std_error"].isna().all()


def test_nested_dialogue_intercept(panel):
    fit = growth("y ~ wave * arm + (wave | participant) + (1 | dialogue)", panel)
    assert fit.ngroups == {"participant": 150, "dialogue": 12}
    assert fit.theta.size == 4
    assert fit.random["group"].tolist() == ["participant"] * 3 + ["dialogue", "Residual"]
    d = fit.ranef("dialogue")
    assert list(d.columns) == ["Intercept"] and len(d) == 12
    assert fit.n_dropped == int(panel["y"].isna().sum())
    with pytest.raises(ModelError):
        fit.ranef("nope")


def test_categorical_predictors_are_named_as_formulaic(panel):
    fit = growth("y ~ wave * arm + (1 | participant)", panel)
    assert list(fit.fixed.index) == ["Intercept", "wave", "arm[T.dialogue]", "wave:arm[T.dialogue]"]
    pred = fit.predict(pd.DataFrame({"wave": [1.0, 1.0], "arm": ["control", "dialogue"]}))
    assert pred["estimate"].iloc[1] - pred["estimate"].iloc[0] == pytest.approx(
        fit.fixed.loc["arm[T.dialogue]", "estimate"]
        + fit.fixed.loc["wave:arm[T.dialogue]", "estimate"]
    )


def test_independent_and_slope_only_terms():
    diag = growth("Reaction ~ Days + (Days || Subject)", SLEEP)
    assert diag.theta.size == 2 and diag.random["term2"].isna().all()
    slope = growth("Reaction ~ Days + (0 + Days | Subject)", SLEEP)
    assert list(slope.ranef().columns) == ["Days"]
    assert slope.theta.size == 1


def test_rank_deficient_columns_are_dropped_with_a_note():
    df = SLEEP.assign(Days2=2 * SLEEP["Days"])
    fit = growth("Reaction ~ Days + Days2 + (1 | Subject)", df)
    assert list(fit.fixed.index) == ["Intercept", "Days"]
    assert fit.dropped_columns == ("Days2",)
    assert any("rank deficient" in w for w in fit.warnings)


# ----------------------------------------------------------------- diagnostics
def test_singular_fit_is_flagged():
    df = pd.read_csv(FIX / "singular" / "data.csv")
    fit = growth("y ~ time + (time | participant)", df)
    assert fit.singular
    assert any("singular" in w for w in fit.warnings)
    assert fit.theta[2] == 0.0


def test_missing_rows_are_dropped_and_counted():
    df = pd.read_csv(FIX / "missing_heavy" / "data.csv")
    fit = growth("y ~ time + (time | participant)", df)
    assert fit.n_dropped == int(df["y"].isna().sum()) > 0
    assert fit.nobs == len(df) - fit.n_dropped
    assert "dropped for missing values" in fit.summary()


def test_unconverged_fit_warns_and_records(monkeypatch):
    from trackii_eval.models.growth import model as model_mod

    real = model_mod.minimise_theta

    def stalled(fun, start, lower, **kw):
        _theta, info = real(fun, start, lower, **kw)
        return start, dataclasses.replace(info, converged=False, gradient_norm=1.0)

    monkeypatch.setattr(model_mod, "minimise_theta", stalled)
    with pytest.warns(ConvergenceWarning):
        fit = growth("Reaction ~ Days + (Days | Subject)", SLEEP)
    assert not fit.converged
    assert any("failed to converge" in w for w in fit.warnings)
    assert "failed to converge" in fit.summary()


# ----------------------------------------------------------------- errors and fallbacks
def test_missing_column_and_no_random_term():
    with pytest.raises(ModelError, match="not in the data"):
        growth("Reaction ~ Days + nope + (1 | Subject)", SLEEP)
    with pytest.raises(UnsupportedModelError, match="no random term"):
        growth("Reaction ~ Days", SLEEP)


def _crossed() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    p = np.repeat(np.arange(30), 8)
    r = np.tile(np.arange(8), 30)
    y = rng.normal(size=30)[p] + rng.normal(size=8)[r] + rng.normal(size=p.size)
    return pd.DataFrame({"y": y, "participant": p, "rater": r, "t": rng.normal(size=p.size)})


def test_crossed_slopes_are_refused_with_a_reason():
    with pytest.raises(UnsupportedModelError, match="crossed"):
        growth("y ~ t + (t | participant) + (1 | rater)", _crossed())


def test_crossed_intercepts_fall_back_to_statsmodels():
    with pytest.warns(EngineFallbackWarning, match="statsmodels MixedLM") as rec:
        fit = growth("y ~ t + (1 | participant) + (1 | rater)", _crossed())
    assert fit.engine == "statsmodels" and fit.optimizer.engine == "statsmodels"
    note = fit.warnings[0]
    assert note == str(next(r.message for r in rec if r.category is EngineFallbackWarning))
    assert note == (
        "fitted by statsmodels MixedLM, not the lme4-exact engine ('participant' is not nested "
        "in 'rater' (crossed factors)); no Satterthwaite df, so p-values and intervals use the "
        "normal distribution"
    )
    assert all("\n" not in w for w in fit.warnings)
    assert fit.fixed["df"].isna().all() and fit.fixed["p_value"].notna().all()
    assert fit.ngroups == {"participant": 30, "rater": 8}
    assert len(fit.ranef("rater")) == 8
    json.dumps(fit.to_dict(), allow_nan=False)


# ----------------------------------------------------------------- LRT and intervals
def test_lrt_refits_reml_fits_by_ml():
    small = growth("Reaction ~ 1 + (Days | Subject)", SLEEP)
    big = growth("Reaction ~ Days + (Days | Subject)", SLEEP)
    with pytest.warns(UserWarning, match="maximum likelihood"):
        tab = lrt(small, big)
    assert list(tab["criterion"]) == ["ML", "ML"]
    assert tab["df"].iloc[1] == 1 and tab["chisq"].iloc[1] > 0
    with pytest.raises(ModelError, match="not comparable"):
        lrt(small, big, refit=False)
    same = lrt(growth("Reaction ~ Days + (1 | Subject)", SLEEP), big, refit=False)
    assert list(same["criterion"]) == ["REML", "REML"]
    other = growth("Reaction ~ Days + (Days | Subject)", SLEEP.iloc[:170])
    with pytest.raises(ModelError):
        lrt(other, big)


def test_confint_methods(sleep_fit):
    wald = sleep_fit.confint()
    names = [
        "sd(Intercept|Subject)",
        "sd(Days|Subject)",
        "cor(Intercept,Days|Subject)",
        "sigma",
        "Intercept",
        "Days",
    ]
    assert list(wald.index) == names
    assert wald.iloc[:4][["ci_low", "ci_high"]].isna().all().all()
    assert_allclose(wald.loc["Days", "ci_low"], sleep_fit.fixed.loc["Days", "ci_low"])
    boot = sleep_fit.confint("boot", n_boot=40, seed=1)
    assert list(boot.index) == names and boot.attrs["n_boot"] == 40
    assert (boot["ci_low"] < boot["estimate"]).all() and (boot["estimate"] < boot["ci_high"]).all()
    again = sleep_fit.confint("boot", n_boot=40, seed=1)
    assert_allclose(boot.to_numpy(), again.to_numpy())
    with pytest.raises(ModelError):
        sleep_fit.confint("bayes")


def test_profile_confint_matches_lme4():
    expected = json.loads((FIX / "sleepstudy" / "expected.json").read_text())["extra"]["profile"]
    fit = growth("Reaction ~ Days + (Days | Subject)", data=SLEEP)
    prof = fit.confint("profile")
    # lme4 orders sd, cor, sd; we order sds first then correlations (as in fit.random)
    lme4 = dict(
        zip(
            expected["parameter"],
            zip(expected["lower"], expected["upper"], strict=True),
            strict=True,
        )
    )
    pairs = {
        "sd(Intercept|Subject)": "sd_(Intercept)|Subject",
        "sd(Days|Subject)": "sd_Days|Subject",
        "cor(Intercept,Days|Subject)": "cor_Days.(Intercept)|Subject",
        "sigma": "sigma",
        "Intercept": "(Intercept)",
        "Days": "Days",
    }
    for ours, theirs in pairs.items():
        # lme4 interpolates its profile with splines; 1e-4 relative is what that allows
        assert_allclose(
            prof.loc[ours, ["ci_low", "ci_high"]].to_numpy(dtype=float), lme4[theirs], rtol=1e-4
        )


def test_outer_random_slopes_predict_and_ranef():
    """(time | dialogue): the dialogues' intercepts and slopes enter predictions and ranef."""
    data = pd.read_csv(Path(__file__).resolve().parents[1] / "fixtures" / "lme4" /
                       "outer_slopes" / "data.csv")
    fit = growth("y ~ time * arm + (time | participant) + (time | dialogue)", data)
    assert fit.engine == "trackii" and fit.ngroups == {"participant": 240, "dialogue": 16}
    re_d = fit.ranef("dialogue")
    assert list(re_d.columns) == ["Intercept", "time"] and len(re_d) == 16
    rows = data.dropna(subset=["y"]).head(7)
    b = fit.ranef().loc[rows["participant"]].to_numpy()
    bd = re_d.loc[rows["dialogue"]].to_numpy()
    t = rows["time"].to_numpy()
    expected = (fit.predict(rows)["estimate"].to_numpy()
                + b[:, 0] + b[:, 1] * t + bd[:, 0] + bd[:, 1] * t)
    got = fit.predict(rows, re=True)["estimate"].to_numpy()
    assert_allclose(got, expected, rtol=1e-10)
    assert fit.theta.size == 6 and fit.parameter_names()[3:6] == [
        "sd(Intercept|dialogue)", "sd(time|dialogue)", "cor(Intercept,time|dialogue)"]
