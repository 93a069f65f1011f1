"""A growth fit must not depend on the units of time (issue 12, "The growth engine, hardened").

Measuring time in days instead of years multiplies the time column of X and Z by c = 365.25.
The model is the same: the ML deviance is unchanged, the REML criterion shifts by exactly
2 Σ_j log c_j over the rescaled fixed-effect columns (log|X'V⁻¹X| changes by that much), and the
fixed effects scale by 1/c_j. Before the optimiser worked on a unit-free θ, days with a random
slope failed with "X'V^{-1}X is not positive definite" at lme4's start θ = 1.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from trackii_eval.models.growth import growth
from trackii_eval.models.growth.simulate import simulate_panel

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"
UNITS = {"years": 1.0, "weeks": 365.25 / 7.0, "days": 365.25}


def _datasets() -> dict[str, tuple[pd.DataFrame, str, dict[str, int]]]:
    """Data set -> (data with time in years as ``t``, formula, power of c per fixed column)."""
    slopes = simulate_panel(80, 5, missing=0.1, seed=1)
    slopes["t"] = slopes["time"] * 0.95  # a 5-wave programme over ~3.8 years
    nested = simulate_panel(90, 4, missing=0.1, n_dialogues=12, sd_dialogue=3.0, seed=2)
    nested["t"] = nested["time"] * 1.2
    quad = pd.read_csv(FIX / "quadratic" / "data.csv")
    quad["t"] = quad["time"] * 0.5
    sleep = pd.read_csv(FIX / "sleepstudy" / "data.csv")
    sleep["t"] = sleep["Days"] / 365.25  # sleepstudy's days, as years
    return {
        "slopes": (slopes, "y ~ t * arm + (t | participant)",
                   {"t": 1, "arm[T.dialogue]:t": 1, "t:arm[T.dialogue]": 1}),
        "nested": (nested, "y ~ t + (t | participant) + (1 | dialogue)", {"t": 1}),
        "quadratic": (quad, "y ~ t + I(t**2) + (t + I(t**2) | participant)",
                      {"t": 1, "I(t ** 2)": 2}),
        "sleepstudy": (sleep, "Reaction ~ t + (t | Subject)", {"t": 1}),
    }


DATA = _datasets()


def _fit(name: str, unit: str, reml: bool):
    data, formula, _ = DATA[name]
    d = data.copy()
    d["t"] = d["t"] * UNITS[unit]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a convergence warning would fail the test
        return growth(formula, d, reml=reml)


@pytest.mark.parametrize("reml", [False, True], ids=["ml", "reml"])
@pytest.mark.parametrize("name", list(DATA))
def test_days_weeks_years_give_the_same_fit(name: str, reml: bool) -> None:
    _, _, powers = DATA[name]
    ref = _fit(name, "years", reml)
    assert ref.converged
    for unit in ("weeks", "days"):
        c = UNITS[unit]
        fit = _fit(name, unit, reml)
        assert fit.converged, (name, unit)
        pw = np.array([powers.get(n, 0) for n in fit.fixed_names], dtype=float)
        # REML: log|X'V^-1 X| gains 2 log(c^k) per column scaled by c^k; ML: no change.
        shift = 2.0 * float(pw.sum()) * np.log(c) if reml else 0.0
        assert_allclose(fit.deviance - shift, ref.deviance, atol=1e-6, rtol=0)
        assert_allclose(fit.beta * c**pw, ref.beta, rtol=1e-5, atol=1e-6 * np.abs(ref.beta).max())
        assert_allclose(fit.sigma, ref.sigma, rtol=1e-6)
        se = np.sqrt(np.diag(fit.vcov_beta)) * c**pw
        assert_allclose(se, np.sqrt(np.diag(ref.vcov_beta)), rtol=1e-4)


def test_days_with_a_random_slope_converge_from_lme4s_start() -> None:
    """The issue's failure: time in days up to ~1,400 with a random slope."""
    data, formula, _ = DATA["slopes"]
    d = data.copy()
    d["t"] = d["t"] * 365.25
    assert d["t"].max() > 1300
    fit = growth(formula, d, reml=False)
    assert fit.converged and not fit.singular
    assert fit.optimizer.final_theta == pytest.approx(tuple(fit.theta))
