"""glmm agrees with lme4::glmer (fixtures made by tests/fixtures/glmer/make_fixtures.R).

Laplace fits: glmer evaluates its Laplace criterion with IRLS weights one PIRLS iteration
old (tolerance 1e-7 on the penalised deviance), so its optimum is of a slightly different
function; ours is the exact Laplace approximation (the fixture's ``laplace_exact_at_r``,
computed independently in R, checks that). We must reach R's log-likelihood or better, and the
estimates agree to a few thousandths; standard errors (Hessian of each criterion) to 3%.
Quadrature fits (nAGQ > 1) have no such difference and agree to 1e-4.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import expit, gammaln

from trackii_eval.models.glmm import glmm

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "glmer"
CASES = json.loads((FIX / "cases.json").read_text())["cases"]


def _fit(name: str):
    c = CASES[name]
    data = pd.read_csv(FIX / c["file"], dtype={"herd": str, "brood": str, "location": str})
    kw = {"weights": "size"} if c["weighted"] else {}
    formula = c["formula"]
    found = re.search(r"\+\s*offset\((\w+)\)", formula)
    if found:  # R's offset(col) term is glmm's offset= argument
        kw["offset"] = found.group(1)
        formula = formula.replace(found.group(0), "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm(formula, data, family=c["family"], nAGQ=c["nAGQ"], **kw), c


def _r_scale_loglik(fit, c) -> float:
    # glmer's nAGQ > 1 log-likelihood is relative to the saturated model
    return fit.loglik if c["nAGQ"] == 1 else fit.loglik_saturated_relative


@pytest.mark.parametrize("name", sorted(CASES))
def test_loglik_never_worse_than_glmer(name: str) -> None:
    fit, c = _fit(name)
    assert _r_scale_loglik(fit, c) >= c["loglik"] - 1e-3
    assert fit.nobs == c["nobs"]
    assert fit.singular == c["singular"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if n != "sim_separation"))
def test_estimates_ses_and_variances_match_glmer(name: str) -> None:
    fit, c = _fit(name)
    laplace = c["nAGQ"] == 1
    tol_b, tol_se = (5e-3, 3e-2) if laplace else (2e-4, 1e-3)
    np.testing.assert_allclose(fit.beta, c["fixef"], atol=tol_b)
    se = np.sqrt(np.diag(fit.vcov_beta))
    np.testing.assert_allclose(se, c["se"], rtol=tol_se)
    np.testing.assert_allclose(fit.theta, c["theta"], atol=3 * tol_b)
    # variance components in lme4's as.data.frame(VarCorr()) order; a correlation of a
    # singular fit sits at ±1 where its value is not identified to any precision
    ours = [vc.std_dev if vc.term2 is None else vc.corr for vc in fit.varcomps]
    sdcor, var2 = np.atleast_1d(c["vc"]["sdcor"]), np.atleast_1d(c["vc"]["var2"])
    for k, (mine, theirs) in enumerate(zip(ours, sdcor, strict=True)):
        if var2[k] and c["singular"]:
            assert abs(abs(mine) - 1) < 1e-3 and np.sign(mine) == np.sign(theirs)
        else:
            assert mine == pytest.approx(theirs, abs=3 * tol_b)


@pytest.mark.parametrize("name", sorted(n for n in CASES if "laplace_exact_at_r" in
                                        (CASES[n]["extra"] or {})))
def test_laplace_criterion_is_the_exact_laplace_approximation(name: str) -> None:
    # our deviance at glmer's (θ, β) equals an independent R computation of the Laplace
    # approximation there (modes by Newton to 1e-14, log-determinant at the mode)
    fit, c = _fit(name)
    prob = fit._backend.problem
    x = np.r_[c["theta"], c["fixef"]]
    dev = prob.deviance(x, 1) - 2 * prob.const
    assert dev == pytest.approx(c["extra"]["laplace_exact_at_r"], abs=1e-6)


def test_separation_is_flagged_and_the_likelihood_reached() -> None:
    fit, c = _fit("sim_separation")
    assert any("separation" in w for w in fit.warnings)
    # the separated coefficient runs off towards +inf in both fits; the others agree
    assert fit.beta[2] > 10 and c["fixef"][2] > 10
    np.testing.assert_allclose(fit.beta[:2], c["fixef"][:2], atol=5e-3)
    assert "possible separation" in fit.tidy()["note"].iloc[2]


def test_singular_fit_is_flagged_as_lme4() -> None:
    fit, _ = _fit("sim_singular")
    assert fit.singular and fit.theta[0] < 1e-4
    assert any(w.startswith("boundary (singular) fit") for w in fit.warnings)
    assert "boundary" in " ".join(fit.record.warnings)


def test_profile_intervals_match_glmer() -> None:
    fit, c = _fit("cbpp_laplace")
    prof = c["extra"]["profile"]
    ci = fit.confint("profile", parm=["sd(Intercept|herd)", "period[T.P4]"])
    for ours, r_name in (("sd(Intercept|herd)", ".sig01"), ("period[T.P4]", "periodP4")):
        k = prof["names"].index(r_name)
        assert ci.loc[ours, "ci_low"] == pytest.approx(prof["low"][k], abs=2e-3)
        assert ci.loc[ours, "ci_high"] == pytest.approx(prof["high"][k], abs=2e-3)
    # the quadrature fit's profile too (grouseticks, Poisson, nAGQ = 10)
    fit, c = _fit("grouse_agq10")
    prof = c["extra"]["profile"]
    ci = fit.confint("profile", parm=["cheight"])
    k = prof["names"].index("cheight")
    assert ci.loc["cheight", "ci_low"] == pytest.approx(prof["low"][k], abs=2e-3)
    assert ci.loc["cheight", "ci_high"] == pytest.approx(prof["high"][k], abs=2e-3)
    odds = fit.ratios(method="profile").loc["cheight"]
    assert odds["ci_low"] == pytest.approx(np.exp(prof["low"][k]), rel=3e-3)


@pytest.mark.parametrize("name", ["cbpp_agq10", "grouse_agq10"])
def test_quadrature_matches_an_independent_quadrature(name: str) -> None:
    # ∫ p(y_c | b) N(b; 0, θ²) db per cluster by scipy's adaptive quad at the fitted
    # parameters, constants included, summed: the same likelihood as fit.loglik
    fit, c = _fit(name)
    prob = fit._backend.problem
    x = np.r_[fit.theta, fit.beta]
    off, zth, cl, _ = prob.cluster_terms(x)
    y, m = prob.y, prob.m
    total = 0.0
    for g in range(prob.G):
        rows = cl == g
        o, z, yy, mm = off[rows], zth[rows], y[rows], m[rows]
        if c["family"] == "binomial":
            const = np.sum(gammaln(mm + 1) - gammaln(yy + 1) - gammaln(mm - yy + 1))

            def lik(u, o=o, z=z, yy=yy, mm=mm, const=const):
                p = expit(o + z * u)
                return np.exp(const + np.sum(yy * np.log(p) + (mm - yy) * np.log1p(-p))
                              - u * u / 2) / np.sqrt(2 * np.pi)
        else:
            const = -np.sum(gammaln(yy + 1))

            def lik(u, o=o, z=z, yy=yy, const=const):
                eta = o + z * u
                return np.exp(const + np.sum(yy * eta - np.exp(eta)) - u * u / 2) / np.sqrt(
                    2 * np.pi)
        val, _ = integrate.quad(lik, -12, 12, epsabs=0, epsrel=1e-12, limit=200)
        total += np.log(val)
    # the same criterion with 25 nodes is exact to the integrator's precision; the fit's own
    # 10 nodes are within the rule's error
    agq25 = -0.5 * prob.deviance(x, 25) + prob.const
    assert agq25 == pytest.approx(total, abs=1e-6)
    assert fit.loglik == pytest.approx(total, abs=1e-3)
    # and the Laplace approximation is measurably different (the check can fail)
    lap = -0.5 * prob.deviance(x, 1) + prob.const
    assert abs(lap - total) > 1e-3


@pytest.mark.parametrize("name", ["sim_slopes_logit", "grouse_agq10", "sim_nested_poisson"])
def test_exact_gradient_matches_finite_differences(name: str) -> None:
    # random slopes (Laplace), quadrature, nested: the implicit-function gradient the
    # optimiser uses equals central differences of the criterion, away from the optimum
    fit, c = _fit(name)
    prob = fit._backend.problem
    x = np.r_[fit.theta, fit.beta] + 0.05
    val, grad = prob.deviance_and_gradient(x, c["nAGQ"])
    assert val == pytest.approx(prob.deviance(x, c["nAGQ"]), abs=1e-9)
    h = 1e-5
    fd = [(prob.deviance(x + e, c["nAGQ"]) - prob.deviance(x - e, c["nAGQ"])) / (2 * h)
          for e in np.eye(x.size) * h]
    np.testing.assert_allclose(grad, fd, atol=1e-5 * (1 + np.max(np.abs(fd))))
