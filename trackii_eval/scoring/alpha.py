"""Coefficient alpha (raw and standardized), its asymptotic variance and Feldt interval."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["alpha_asymptotic_variance", "alpha_from_cor", "alpha_from_cov", "feldt_interval"]


def alpha_from_cov(c: np.ndarray) -> float:
    """Raw coefficient alpha of the unit-weighted sum, from an item covariance matrix."""
    k = c.shape[0]
    if k < 2:
        return math.nan
    return float(k / (k - 1) * (1.0 - np.trace(c) / c.sum()))


def alpha_from_cor(r: np.ndarray) -> float:
    """Standardized alpha (alpha of the sum of z-scored items), from a correlation matrix."""
    k = r.shape[0]
    if k < 2:
        return math.nan
    return float(k / (k - 1) * (1.0 - k / r.sum()))


def alpha_asymptotic_variance(c: np.ndarray) -> float:
    """Asymptotic variance ``Q`` of alpha under normality (van Zyl, Neudecker & Nel, 2000).

    ``se = sqrt(Q / n)``; this is the standard error psych prints as ``ase`` and uses for its
    "Duhachek" bounds.
    """
    k = c.shape[0]
    one_c_one = c.sum()
    tr_c = np.trace(c)
    c2 = c @ c
    return float(
        2.0
        * k**2
        / ((k - 1) ** 2 * one_c_one**3)
        * (one_c_one * (np.trace(c2) + tr_c**2) - 2.0 * tr_c * c2.sum())
    )


def feldt_interval(alpha: float, n: int, k: int, ci: float) -> tuple[float, float]:
    """Feldt, Woodruff & Salih (1987): ``(1 - alpha) / (1 - alpha_pop) ~ F(n-1, (n-1)(k-1))``."""
    if not np.isfinite(alpha) or n < 2 or k < 2:
        return math.nan, math.nan
    tail = (1.0 - ci) / 2.0
    df1 = n - 1
    df2 = (n - 1) * (k - 1)
    # special.fdtri is the F quantile scipy.stats.f.ppf calls, without importing scipy.stats.
    low = 1.0 - (1.0 - alpha) * special.fdtri(df1, df2, 1.0 - tail)
    high = 1.0 - (1.0 - alpha) * special.fdtri(df1, df2, tail)
    return float(low), float(high)
