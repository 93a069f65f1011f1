"""Closed-form variances and power of longitudinal two-arm designs, with monotone dropout.

For a linear mixed model with marginal covariance V (per participant, observed at the first k
of the planned times when they leave after visit k), the generalised least-squares estimator
has information

    I = sum_arms n_a sum_k p_{a,k} X_{a,k}' V_k^{-1} X_{a,k},

where p_{a,k} is the proportion of arm a whose last visit is visit k and X_{a,k}, V_k are the
first k rows (and columns) of the complete-data design and covariance. The variance of a
contrast c'β is c' I^{-1} c. With complete data and a random intercept and slope this reduces
to the textbook (1/n1 + 1/n2)(σ²_slope + σ²_e / Σ(t - t̄)²); with dropout it is the
pattern-mixture information of Lu, Luo and Chen (2008) and Zhao and Edland (the ``p`` argument
of longpower's ``edland.linear.power``; we also count the participants seen only at baseline,
who inform the intercept and through it the slope). Power of the two-sided Wald test at level
α is Φ(|δ|/se - z_{1-α/2}) + Φ(-|δ|/se - z_{1-α/2}).

References
----------
Diggle, P. J., Heagerty, P., Liang, K.-Y. and Zeger, S. L. (2002). Analysis of Longitudinal
Data, 2nd ed. Oxford University Press (§2.4, sample size for comparing rates of change).

Liu, G. and Liang, K.-Y. (1997). Sample size calculations for studies with correlated
observations. Biometrics 53(3), 937-947. doi:10.2307/2533554

Lu, K., Luo, X. and Chen, P.-Y. (2008). Sample size estimation for repeated measures analysis
in randomized clinical trials with missing data. International Journal of Biostatistics 4(1),
Article 9. doi:10.2202/1557-4679.1098

Zhao, Y. and Edland, S. D. (2020). Power formulas for mixed effects models with random slope
and intercept comparing rate of change across groups (implemented in R longpower's
``edland.linear.power``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from trackii_eval.errors import ModelError

__all__ = [
    "dropout_pattern_probs",
    "pattern_information",
    "power_from_se",
    "random_slope_cov",
    "slope_difference_variance_balanced",
]


def slope_difference_variance_balanced(
    n1: float, n2: float, times: Sequence[float], slope_var: float, resid_var: float
) -> float:
    """Var of the difference in mean slopes, complete balanced data, random intercept + slope.

    ``(1/n1 + 1/n2) (σ²_slope + σ²_e / Σ_j (t_j - t̄)²)``; the intercept variance and the
    intercept-slope covariance do not enter when every participant has the same times.

    Parameters
    ----------
    n1, n2 : float
        Participants per arm.
    times : sequence of float
        Measurement times (years).
    slope_var, resid_var : float
        Random-slope variance (per year²) and residual variance.

    Returns
    -------
    float
    """
    t = np.asarray(times, dtype=float)
    sxx = float(np.sum((t - t.mean()) ** 2))
    if sxx <= 0:
        raise ModelError("times: at least two distinct measurement times are needed")
    return (1.0 / n1 + 1.0 / n2) * (slope_var + resid_var / sxx)


def random_slope_cov(
    times: Sequence[float], intercept_var: float, slope_var: float, cov: float, resid_var: float
) -> np.ndarray:
    """Marginal covariance Z D Z' + σ²_e I of one participant's complete measurements.

    Returns
    -------
    ndarray, shape (W, W)
    """
    t = np.asarray(times, dtype=float)
    Z = np.column_stack([np.ones_like(t), t])
    D = np.array([[intercept_var, cov], [cov, slope_var]])
    return Z @ D @ Z.T + resid_var * np.eye(t.size)


def dropout_pattern_probs(n_visits: int, hazard: float) -> np.ndarray:
    """Proportion whose last visit is visit k (k = 1..W) under a constant per-visit dropout.

    Everyone is seen at baseline; before each later visit a fraction ``hazard`` of those still
    in the study leaves for good (monotone dropout).

    Returns
    -------
    ndarray, shape (W,), sums to 1
    """
    if not 0 <= hazard < 1:
        raise ModelError(f"attrition: a per-wave dropout rate in [0, 1) is needed, got {hazard}")
    keep = (1.0 - hazard) ** np.arange(n_visits)  # P(still in at visit k)
    p = keep - np.append(keep[1:], 0.0)
    return p


def pattern_information(
    X: np.ndarray, V: np.ndarray, probs: Sequence[float], n: float = 1.0
) -> np.ndarray:
    """GLS information ``n Σ_k p_k X_k' V_k^{-1} X_k`` over monotone dropout patterns.

    Parameters
    ----------
    X : ndarray, shape (W, p)
        Complete-data design of one participant (rows in visit order).
    V : ndarray, shape (W, W)
        Complete-data marginal covariance.
    probs : sequence of float, length W
        ``probs[k-1]``: proportion whose last visit is visit k.
    n : float
        Participants.

    Returns
    -------
    ndarray, shape (p, p)

    References
    ----------
    Lu, K., Luo, X. and Chen, P.-Y. (2008), International Journal of Biostatistics 4(1), eq. 5.
    """
    X = np.asarray(X, dtype=float)
    V = np.asarray(V, dtype=float)
    p = np.asarray(probs, dtype=float)
    if p.size != X.shape[0] or V.shape != (X.shape[0],) * 2:
        raise ModelError("pattern_information: X, V and probs must all have one row per visit")
    info = np.zeros((X.shape[1], X.shape[1]))
    for k in range(1, X.shape[0] + 1):
        if p[k - 1] <= 0:
            continue
        Xk = X[:k]
        info += p[k - 1] * Xk.T @ np.linalg.solve(V[:k, :k], Xk)
    return n * info


def power_from_se(effect: float | np.ndarray, se: float | np.ndarray, alpha: float = 0.05):
    """Power of the two-sided Wald z-test of H0: effect = 0 with standard error ``se``.

    Returns
    -------
    float or ndarray
    """
    z = norm.ppf(1.0 - alpha / 2.0)
    r = np.abs(np.asarray(effect, dtype=float)) / np.asarray(se, dtype=float)
    out = norm.cdf(r - z) + norm.cdf(-r - z)
    return float(out) if np.ndim(out) == 0 else out
