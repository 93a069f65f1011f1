"""Agreement of trackii_eval's growth engine with lme4 / lmerTest on stored reference fits.

The reference for each model is lme4's best fit over its optimizers (nloptwrap, bobyqa,
Nelder_Mead, as lme4::allFit; see make_fixtures.R). Two checks per model:

1. *Formulas* (``test_exact_at_lme4_theta``): at lme4's θ our engine must reproduce every
   stored statistic almost to rounding: criterion, logLik, AIC, BIC 1e-6 absolute; fixed
   effects 1e-7 relative; standard errors, vcov, t, σ, variance components, BLUPs 1e-6
   relative; Satterthwaite df and p-values 5e-3 relative, CI ends 1e-4 standard errors: both
   sides differentiate numerically, and lmerTest's steps (numDeriv, relative to |θ|) are ~1e-8
   for a θ near 1e-4 (quadratic-ml), which moves its df in the third digit; ours use a floored
   step (see satterthwaite.py).
2. *Optimum* (``test_optimum_against_lme4``): our own fit's criterion is never worse than
   lme4's (default optimizer or best) by more than 1e-3 and equal to the best within 1e-3
   absolute (logLik, AIC, BIC too); fixed effects 1e-5 relative (plus 1e-4 standard errors
   absolute, for coefficients near zero); standard errors 1e-4 relative; Satterthwaite df
   1e-2 relative; θ 1e-4 absolute; σ 1e-5 relative; variances 1e-4 relative; correlations
   1e-4 absolute; BLUPs 1e-4 of their largest value.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from trackii_eval.models.growth import GrowthModel, growth, lrt

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"
CASES = json.loads((FIX / "cases.json").read_text())


def _r_name(py_name: str) -> str:
    # formulaic -> R coefficient names: Intercept -> (Intercept), arm[T.x] -> armx, ** -> ^
    name = "(Intercept)" if py_name == "Intercept" else py_name
    name = re.sub(r"\[T\.([^\]]+)\]", r"\1", name)
    return name.replace(" ** ", "^").replace("**", "^").replace(" ", "")


def _py_formula(spec: dict) -> str:
    return spec.get("py", spec["r"])


def _load(case: str) -> tuple[pd.DataFrame, dict]:
    data = pd.read_csv(FIX / case / "data.csv")
    expected = json.loads((FIX / case / "expected.json").read_text())
    return data, expected


_FITS: dict[tuple[str, str], object] = {}


def _fit(case: str, spec: dict):
    key = (case, spec["id"])
    if key not in _FITS:
        data, _ = _load(case)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = growth(_py_formula(spec), data, reml=spec["reml"])
    return _FITS[key]


PARAMS = [
    pytest.param(case, spec, id=f"{case}-{spec['id']}")
    for case, specs in CASES["cases"].items()
    for spec in specs
]


def _messages(exp: dict) -> list[str]:
    msgs = exp["messages"]
    return [msgs] if isinstance(msgs, str) else list(msgs)


def _check_varcorr(fit, exp: dict, rtol: float, corr_atol: float) -> None:
    vc = exp["varcorr"]
    rnd = fit.random
    var_rows = [i for i, v2 in enumerate(vc["var2"]) if v2 is None]
    ours_var = rnd[rnd["term2"].isna()]
    # lme4 names the second term of (x || g) "g.1"; we keep the factor's name.
    assert list(ours_var["group"]) == [re.sub(r"\.\d+$", "", vc["grp"][i]) for i in var_rows]
    assert_allclose(
        ours_var["variance"].to_numpy(), np.asarray(vc["vcov"])[var_rows], rtol=rtol, atol=1e-9
    )
    cor_rows = [i for i, v2 in enumerate(vc["var2"]) if v2 is not None]
    ours_cor = rnd[rnd["term2"].notna()]
    assert len(ours_cor) == len(cor_rows)
    if cor_rows:
        assert_allclose(
            ours_cor["corr"].to_numpy(), np.asarray(vc["sdcor"])[cor_rows], atol=corr_atol, rtol=0
        )


def _check_ranef(fit, exp: dict, rtol: float) -> None:
    re_exp = exp["ranef"]
    ours = fit.ranef()
    first = ours.index[0]
    levels = [str(lv) if isinstance(first, str) else type(first)(lv) for lv in re_exp["level"]]
    vals = np.asarray(re_exp["values"], dtype=float).reshape(len(levels), -1)
    assert_allclose(ours.loc[levels].to_numpy(), vals, rtol=0, atol=rtol * np.abs(vals).max())


def _check_ranef_outer(fit, exp: dict, rtol: float) -> None:
    # Every level of the outer factor (stored only for models with two factors).
    ro = exp.get("ranef_outer")
    if not ro:
        return
    ours = fit.ranef(ro["group"])
    terms = ro["term"] if isinstance(ro["term"], list) else [ro["term"]]  # R unboxes length 1
    assert [_r_name(c) for c in ours.columns] == terms
    vals = np.asarray(ro["values"], dtype=float).reshape(len(ro["level"]), -1)
    got = ours.loc[[str(lv) for lv in ro["level"]]].to_numpy()
    assert_allclose(got, vals, rtol=0, atol=rtol * np.abs(vals).max())


def _model(case: str, spec: dict) -> GrowthModel:
    data, _ = _load(case)
    return GrowthModel(_py_formula(spec), data)


@pytest.mark.parametrize(("case", "spec"), PARAMS)
def test_exact_at_lme4_theta(case: str, spec: dict) -> None:
    _, expected = _load(case)
    exp = expected["models"][spec["id"]]
    fit = _model(case, spec).evaluate(np.atleast_1d(exp["theta"]), reml=spec["reml"])
    assert_allclose(fit.deviance, exp["criterion"], atol=1e-6, rtol=0)
    assert_allclose(
        [fit.loglik, fit.aic, fit.bic], [exp["logLik"], exp["AIC"], exp["BIC"]], atol=1e-6, rtol=0
    )
    fx, ef = fit.fixed, exp["fixed"]
    assert [_r_name(n) for n in fx.index] == ef["term"]
    scale = np.abs(np.asarray(ef["estimate"])).max()
    assert_allclose(fx["estimate"], ef["estimate"], rtol=1e-7, atol=1e-10 * scale)
    assert_allclose(fx["std_error"], ef["std_error"], rtol=1e-6)
    assert_allclose(fx["t"], ef["t"], rtol=1e-6, atol=1e-9)
    vc_exp = np.asarray(exp["vcov"], dtype=float).reshape(len(ef["term"]), -1)
    assert_allclose(fit.vcov.to_numpy(), vc_exp, rtol=1e-6, atol=1e-12 * np.abs(vc_exp).max())
    assert_allclose(fit.sigma, exp["sigma"], rtol=1e-6)
    assert_allclose(fx["df"], ef["df"], rtol=5e-3)
    assert_allclose(fx["p_value"], ef["p_value"], rtol=5e-3, atol=1e-14)
    se = np.asarray(ef["std_error"])
    assert np.all(np.abs(fx["ci_low"].to_numpy() - ef["ci_low"]) <= 1e-4 * se)
    assert np.all(np.abs(fx["ci_high"].to_numpy() - ef["ci_high"]) <= 1e-4 * se)
    assert fit.nobs == exp["nobs"]
    assert list(fit.ngroups.values()) == [int(v) for v in exp["ngrps"].values()]
    _check_varcorr(fit, exp, rtol=1e-6, corr_atol=1e-6)
    _check_ranef(fit, exp, rtol=1e-6)
    _check_ranef_outer(fit, exp, rtol=1e-6)


@pytest.mark.parametrize(("case", "spec"), PARAMS)
def test_optimum_against_lme4(case: str, spec: dict) -> None:
    _, expected = _load(case)
    exp = expected["models"][spec["id"]]
    fit = _fit(case, spec)
    assert fit.converged
    assert fit.deviance <= exp["criterion"] + 1e-3
    assert fit.deviance <= exp["criterion_default"] + 1e-3
    assert_allclose(fit.deviance, exp["criterion"], atol=1e-3, rtol=0)
    assert_allclose(
        [fit.loglik, fit.aic, fit.bic], [exp["logLik"], exp["AIC"], exp["BIC"]], atol=1e-3, rtol=0
    )
    assert_allclose(fit.theta, np.atleast_1d(exp["theta"]), atol=1e-4, rtol=0)
    assert fit.singular == exp["singular"]
    fx, ef = fit.fixed, exp["fixed"]
    assert [_r_name(n) for n in fx.index] == ef["term"]
    est, se = np.asarray(ef["estimate"]), np.asarray(ef["std_error"])
    assert np.all(np.abs(fx["estimate"].to_numpy() - est) <= 1e-5 * np.abs(est) + 1e-4 * se)
    assert_allclose(fx["std_error"], se, rtol=1e-4)
    assert_allclose(fx["df"], ef["df"], rtol=1e-2)
    assert_allclose(fit.sigma, exp["sigma"], rtol=1e-5)
    _check_varcorr(fit, exp, rtol=1e-4, corr_atol=1e-4)
    _check_ranef(fit, exp, rtol=1e-4)
    _check_ranef_outer(fit, exp, rtol=1e-4)


def test_sleepstudy_headline_numbers() -> None:
    """The numbers quoted in the issue."""
    data, _ = _load("sleepstudy")
    fit = growth("Reaction ~ Days + (Days | Subject)", data=data, reml=True)
    assert_allclose(fit.fixed["estimate"], [251.405105, 10.467286], rtol=1e-7)
    assert_allclose(fit.deviance, 1743.628, atol=1e-3)
    assert_allclose(fit.fixed["df"], [17.0, 17.0], rtol=1e-3)
    assert fit.converged and not fit.singular and fit.engine == "trackii"


def test_lrt_matches_lme4_anova() -> None:
    for item in CASES["lrt"]:
        case = item["case"]
        specs = {s["id"]: s for s in CASES["cases"][case]}
        small, big = _fit(case, specs[item["small"]]), _fit(case, specs[item["big"]])
        _, expected = _load(case)
        exp = expected["extra"]["lrt"]
        tab = lrt(small, big)
        assert list(tab["npar"]) == exp["npar"]
        assert_allclose(tab["aic"], exp["AIC"], atol=1e-3)
        assert_allclose(tab["bic"], exp["BIC"], atol=1e-3)
        assert_allclose(tab["loglik"], exp["logLik"], atol=1e-3)
        assert_allclose(tab["deviance"], exp["deviance"], atol=1e-3)
        assert_allclose(tab["chisq"].iloc[1], exp["Chisq"], atol=1e-3)
        assert tab["df"].iloc[1] == exp["Df"]
        assert_allclose(tab["p_value"].iloc[1], exp["p"], rtol=1e-3)
        assert tab.attrs["notes"]  # the ML refit is reported
