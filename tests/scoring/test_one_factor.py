"""The one-factor ML fit behind omega: batched Newton / Fisher scoring against references.

References: (1) an independent implementation kept here, the bounded L-BFGS-B search on
Joreskog's concentrated discrepancy from several starts that trackii_eval used before (it
matched psych to < 2e-7); (2) psych's own loadings (tests/fixtures/psych, made by
make_fixtures.R); (3) the known truth of a correlation matrix that a one-factor model fits
exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from trackii_eval.scoring.moments import pairwise_moments
from trackii_eval.scoring.omega import bootstrap_omega, omega_point
from trackii_eval.scoring.one_factor import (
    PSI_MAX,
    PSI_MIN,
    fisher_scoring,
    fit_one_factor_ml,
    ml_multistart,
    omega_from_loadings,
    smc,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "psych"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _reference_ml(r: np.ndarray) -> tuple[np.ndarray, float]:
    """Bounded ML by L-BFGS-B on the concentrated discrepancy, best of k + 2 starts."""
    k = r.shape[0]

    def objective(psi: np.ndarray) -> tuple[float, np.ndarray]:
        s = 1.0 / np.sqrt(psi)
        theta, vec = np.linalg.eigh(r * np.outer(s, s))
        rest = theta[:-1]
        if np.any(rest <= 0):
            return math.inf, np.zeros_like(psi)
        lam = np.sqrt(psi) * vec[:, -1] * math.sqrt(max(theta[-1] - 1.0, 0.0))
        return float(np.sum(rest - np.log(rest) - 1.0)), (lam * lam + psi - 1.0) / psi**2

    base = np.clip(1.0 - smc(r), PSI_MIN, PSI_MAX)
    starts = [base, np.full(k, 0.5)]
    for j in range(k):
        h = base.copy()
        h[j] = PSI_MIN
        starts.append(h)
    best = None
    for x0 in starts:
        res = optimize.minimize(objective, x0, jac=True, method="L-BFGS-B",
                                bounds=[(PSI_MIN, PSI_MAX)] * k,
                                options={"ftol": 1e-14, "gtol": 1e-11, "maxiter": 5000})
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun - 1e-12):
            best = res
    psi = best.x
    s = 1.0 / np.sqrt(psi)
    theta, vec = np.linalg.eigh(r * np.outer(s, s))
    lam = np.sqrt(psi) * vec[:, -1] * math.sqrt(max(theta[-1] - 1.0, 0.0))
    return (lam if lam.sum() >= 0 else -lam), float(best.fun)


def _simulated_r(seed: int) -> np.ndarray:
    """Sample correlations of a one-factor population; some near a Heywood case, some weak."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 9))
    n = int(rng.integers(20, 300))
    lam = rng.uniform(0.1, 0.95, k)
    if seed % 4 == 0:
        lam[0] = 0.99
    x = rng.normal(size=(n, 1)) * lam + rng.normal(size=(n, k)) * np.sqrt(1.0 - lam**2)
    return np.corrcoef(x.T)


def _battery_matrices() -> list[np.ndarray]:
    battery = pd.read_csv(FIXTURES / "battery.csv")
    out = []
    for _, rows in battery.groupby("dataset"):
        x = rows.drop(columns=["dataset", "row"]).dropna(axis=1, how="all").to_numpy(float)
        r = pairwise_moments(x).cor
        if r.shape[0] >= 3 and np.all(np.isfinite(r)) and np.linalg.eigvalsh(r)[0] > 0:
            out.append(r)
    return out


MATRICES = [*_battery_matrices(), *(_simulated_r(s) for s in range(40))]


@pytest.mark.parametrize("i", range(len(MATRICES)))
def test_loadings_match_independent_bounded_search(i: int) -> None:
    r = MATRICES[i]
    ours = fit_one_factor_ml(r)
    ref, _ = _reference_ml(r)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert float(omega_from_loadings(r, ours, True)) == pytest.approx(
        float(omega_from_loadings(r, ref, True)), abs=1e-7
    )


def test_heywood_cases_are_in_the_reference_set() -> None:
    # The comparison above must include solutions on the lower bound, where local minima are.
    at_bound = [np.any(ml_multistart(r[None]).uniquenesses[0] <= PSI_MIN) for r in MATRICES]
    assert sum(at_bound) >= 3


@pytest.mark.parametrize("case", ["agreeableness", "neuroticism"])
def test_loadings_match_psych(case: str) -> None:
    bfi = pd.read_csv(FIXTURES / "bfi_items.csv")
    exp = EXPECTED[case]
    x = bfi[exp["items_in"]].astype(float)
    for item in exp["reverse"]:
        x[item] = 7 - x[item]
    r = pairwise_moments(x.to_numpy()).cor
    np.testing.assert_allclose(fit_one_factor_ml(r), exp["loadings_ml"], atol=1e-5)


def test_exact_one_factor_matrix_recovers_the_truth() -> None:
    lam = np.array([0.8, 0.7, 0.6, 0.5, 0.4])
    r = np.outer(lam, lam)
    np.fill_diagonal(r, 1.0)
    fit = ml_multistart(r[None])
    np.testing.assert_allclose(fit.loadings[0], lam, atol=1e-9)
    np.testing.assert_allclose(fit.uniquenesses[0], 1 - lam**2, atol=1e-9)
    # F at the truth is log|R| + k: the discrepancy is 0.
    assert fit.discrepancy[0] == pytest.approx(np.linalg.slogdet(r)[1] + 5, abs=1e-10)
    assert fit.iterations[0] < 100


def test_batch_equals_one_at_a_time() -> None:
    rs = np.stack([_simulated_r(s)[:3, :3] for s in (3, 5, 7)])  # same size to batch
    one = np.stack([fit_one_factor_ml(r) for r in rs])
    batch = ml_multistart(rs)
    np.testing.assert_allclose(batch.loadings, one, atol=1e-12)
    # From a common start (as the bootstrap does), the same optimum.
    from_start = fisher_scoring(rs, np.tile(one[0], (3, 1)), np.tile(1 - one[0] ** 2, (3, 1)))
    assert from_start.converged.all()
    np.testing.assert_allclose(from_start.loadings, one, atol=1e-6)


def test_bootstrap_refits_equal_separate_fits() -> None:
    rng = np.random.default_rng(4)
    n, lam = 120, np.array([0.9, 0.8, 0.5, 0.3])
    x = rng.normal(size=(n, 1)) * lam + rng.normal(size=(n, 4)) * np.sqrt(1 - lam**2)
    x[rng.random(x.shape) < 0.1] = np.nan
    point = omega_point(pairwise_moments(x).cor, "ml", True)
    reps = bootstrap_omega(x, point, "ml", 150, np.random.default_rng(9), True)
    # Redraw the same replicates and fit each one on its own, from every start.
    draws = np.random.default_rng(9).integers(0, n, size=(128, n))
    for b in range(0, 128, 16):
        r = pairwise_moments(x[draws[b]]).cor
        assert reps[b] == pytest.approx(omega_point(r, "ml", True).value, abs=1e-8)
    assert np.isfinite(reps).all()


def test_gradient_and_hessian_match_finite_differences() -> None:
    from trackii_eval.scoring.one_factor import _derivatives, _inverse_and_discrepancy

    r = MATRICES[-1]
    k = r.shape[0]
    rng = np.random.default_rng(1)
    theta = np.concatenate([rng.uniform(0.3, 0.8, k), rng.uniform(0.3, 0.9, k)])

    def f(t: np.ndarray) -> float:
        return float(_inverse_and_discrepancy(r[None], t[None, :k], t[None, k:])[1][0])

    def grad(t: np.ndarray) -> np.ndarray:
        s, _ = _inverse_and_discrepancy(r[None], t[None, :k], t[None, k:])
        return _derivatives(r[None], t[None, :k], s)[0][0]

    h = 1e-6
    eye = np.eye(2 * k)
    num_g = np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in eye])
    num_h = np.array([(grad(theta + h * e) - grad(theta - h * e)) / (2 * h) for e in eye])
    s, _ = _inverse_and_discrepancy(r[None], theta[None, :k], theta[None, k:])
    g, _, hess = _derivatives(r[None], theta[None, :k], s)
    np.testing.assert_allclose(g[0], num_g, atol=1e-6)
    np.testing.assert_allclose(hess[0], num_h, atol=1e-5)
    # At a model-implied matrix (perfect fit) the Hessian is the expected information.
    sigma = np.outer(theta[:k], theta[:k]) + np.diag(theta[k:])
    s_fit, _ = _inverse_and_discrepancy(sigma[None], theta[None, :k], theta[None, k:])
    _, info_fit, hess_fit = _derivatives(sigma[None], theta[None, :k], s_fit)
    np.testing.assert_allclose(hess_fit, info_fit, atol=1e-10)
