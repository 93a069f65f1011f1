"""The warm refit path (fast response swap + BFGS from the last optimum) gives a fresh fit's
answer, with and without a nested dialogue factor, and hands boundary cases to the full
optimiser."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from trackii_eval.models.growth import GrowthModel
from trackii_eval.models.growth.simulate import simulate_panel


@pytest.mark.parametrize(
    "formula, dialogues",
    [("y ~ wave * treated + (wave | participant)", 0),
     ("y ~ wave * treated + (wave | participant) + (1 | dialogue)", 6)],
)
def test_warm_refit_equals_a_fresh_fit(formula, dialogues):
    df = simulate_panel(150, 5, missing=0.1, n_dialogues=dialogues, seed=3)
    df = df.dropna(subset=["y"]).reset_index(drop=True)
    model = GrowthModel(formula, df)
    fresh_model = GrowthModel(formula, df)
    model.fit()
    rng = np.random.default_rng(1)
    u = model.response_updater
    assert u is not None
    for _ in range(5):
        y = model.y + rng.normal(0, 3, model.nobs) + rng.normal(0, 2, 150)[df["participant"]]
        swapped = u.stats_for(y)
        slow = model.stats.with_response(y, model.X, model.design.Z, model.design.group,
                                         model.design.Zo)
        for name in ("W", "XX", "S"):
            assert_allclose(getattr(swapped, name), getattr(slow, name), rtol=1e-12, atol=1e-7)
        warm = model.refit(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = fresh_model._fit_stats(slow, y, True, None)
        assert warm.optimizer.name == "BFGS(warm)"
        assert warm.converged
        assert_allclose(warm.deviance, fresh.deviance, atol=1e-7)
        assert_allclose(warm.beta, fresh.beta, rtol=1e-6, atol=1e-7)
        assert_allclose(warm.theta, fresh.theta, rtol=1e-4, atol=1e-5)


def test_boundary_refit_goes_to_the_full_optimiser():
    # No slope variance in the generating model: about half the responses have a zero slope
    # variance at the optimum, which the warm path leaves to the bounded optimiser; the answer
    # is a fresh fit's.
    df = simulate_panel(60, 4, missing=0.0, sd_slope=0.0, corr=0.0, sigma=8.0, seed=4)
    formula = "y ~ wave * treated + (wave | participant)"
    model = GrowthModel(formula, df)
    model.fit()
    fresh_model = GrowthModel(formula, df)
    rng = np.random.default_rng(2)
    b0 = rng.normal(0, 8, (40, 60))
    singular = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(40):
            y = 50 + b0[k][model.design.group] + rng.normal(0, 8, model.nobs)
            warm = model.refit(y)
            fresh = fresh_model._fit_stats(
                model.stats.with_response(y, model.X, model.design.Z, model.design.group), y,
                True, None)
            assert_allclose(warm.deviance, fresh.deviance, atol=1e-6)
            if fresh.singular:
                singular += 1
                assert warm.singular and warm.optimizer.name != "BFGS(warm)"
    assert singular >= 5


@pytest.mark.parametrize(
    "formula",
    ["y ~ wave * treated + (1 | participant)",
     "y ~ wave * treated + (wave | participant)",
     "y ~ wave * treated + (wave + I(wave**2) | participant)"],
)
def test_lean_and_batched_criteria_equal_the_reference_criterion(formula):
    from trackii_eval.models.growth.batch import BatchRefitter

    df = simulate_panel(120, 5, missing=0.1, sd_quadratic=0.8, sigma=2.0, seed=8)
    df = df.dropna(subset=["y"]).reset_index(drop=True)
    model = GrowthModel(formula, df)
    fit = model.fit()
    fdev = fit._backend.fdev
    rng = np.random.default_rng(3)
    k = len(fit.theta)
    thetas = np.array(fit.theta) * (1 + 0.2 * rng.standard_normal((4, k)))
    for reml in (True, False):
        for th in thetas:
            ref = fdev(th, reml, gradient=True)
            val, grad = fdev.value_grad(th, reml)
            assert_allclose(val, ref.deviance, rtol=1e-12)
            assert_allclose(grad, ref.gradient, rtol=1e-7, atol=1e-7)
        br = BatchRefitter(model, reml=reml)
        Y = np.vstack([model.y, model.y + rng.normal(0, 1, model.nobs)])
        P, XXy = br._stats(Y)
        dev, grad, beta, _, _ = br.criterion(thetas[:2] * br.scale, P, XXy)
        for b in range(2):
            st = model.stats.with_response(Y[b], model.X, model.design.Z, model.design.group)
            ref = model._criterion(st)(thetas[b], reml, gradient=True)
            assert_allclose(dev[b], ref.deviance, rtol=1e-12)
            assert_allclose(grad[b] * br.scale, ref.gradient, rtol=1e-7, atol=1e-6)
            assert_allclose(beta[b], ref.beta, rtol=1e-9, atol=1e-10)


def test_batched_refits_equal_one_at_a_time_refits():
    from trackii_eval.models.growth.batch import BatchRefitter
    from trackii_eval.models.growth.bootstrap import simulate_responses

    df = simulate_panel(200, 6, missing=0.15, seed=9).dropna(subset=["y"]).reset_index(drop=True)
    model = GrowthModel("y ~ wave * treated + (wave | participant)", df)
    fit = model.fit()
    Y = simulate_responses(model, fit, 30, np.random.default_rng(4))
    res = BatchRefitter(model).refit(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = [model.refit(y) for y in Y]
    assert res.converged.all()
    assert_allclose(res.deviance, [f.deviance for f in one], atol=1e-7)
    assert_allclose(res.beta, np.array([f.beta for f in one]), rtol=1e-6, atol=1e-8)
    assert_allclose(res.vcov_beta, np.array([f.vcov_beta for f in one]), rtol=1e-5,
                    atol=1e-10)
    assert_allclose(res.sigma, [f.sigma for f in one], rtol=1e-6)
    with pytest.raises(Exception, match="responses"):
        BatchRefitter(model).refit(Y[:, :-1])
