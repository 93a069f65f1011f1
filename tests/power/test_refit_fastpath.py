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
