"""Pairwise-complete moments of item blocks, for one sample or many bootstrap weightings.

As R's ``cov(x, use = "pairwise")`` and ``cor(x, use = "pairwise")``: each pair of items uses
the rows where both were answered, with ``n_ij - 1`` in the denominator.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["Moments", "cov2cor", "pairwise_moments"]


@dataclass(frozen=True)
class Moments:
    """Pairwise-complete moments of a block of items (one replicate or a batch of them)."""

    count: np.ndarray  # (..., k, k) rows with both items answered
    cov: np.ndarray  # (..., k, k) pairwise-complete covariance, psych's C
    cor: np.ndarray  # (..., k, k) pairwise-complete correlation, R's cor(use = "pairwise")


def pairwise_moments(x: np.ndarray, weights: np.ndarray | None = None) -> Moments:
    """Pairwise-complete covariances and correlations, optionally for many row weightings.

    ``weights`` (B, n) holds how often each row is drawn in B bootstrap replicates; a weighted
    sum over rows is exactly the sum over the resampled data set, so every replicate's pairwise
    moments come out of a few batched matrix products instead of B passes over copied data.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, k)
        Item answers, NaN where not answered.
    weights : numpy.ndarray, shape (B, n), optional
        Row counts of B bootstrap replicates.

    Returns
    -------
    Moments
        Arrays of shape (k, k), or (B, k, k) with weights; NaN for pairs answered together by
        fewer than 2 rows.
    """
    present = ~np.isnan(x)
    mask = present.astype(float)
    n, k = x.shape
    # Centring on the full-sample means first keeps the one-pass sums of squares from losing
    # digits to cancellation; pairwise covariances do not depend on this shift.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmean(x, axis=0) if n else np.zeros(k)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    xc = np.where(present, x - centre, 0.0)
    # Per row, the four products whose sums give every pairwise moment: m_i m_j (both answered),
    # x_i m_j, x_i^2 m_j and x_i x_j (x is 0 where missing). Summing them over rows, or over
    # weighted rows for the bootstrap, is one matrix product.
    prods = np.concatenate(
        [
            (mask[:, :, None] * mask[:, None, :]).reshape(n, k * k),
            (xc[:, :, None] * mask[:, None, :]).reshape(n, k * k),
            ((xc * xc)[:, :, None] * mask[:, None, :]).reshape(n, k * k),
            (xc[:, :, None] * xc[:, None, :]).reshape(n, k * k),
        ],
        axis=1,
    )
    sums = prods.sum(axis=0) if weights is None else weights @ prods
    sums = sums.reshape(*sums.shape[:-1], 4, k, k)
    n_ij, s_ij, ss_ij, sxy = (sums[..., q, :, :] for q in range(4))
    swap = (-1, -2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_i = s_ij / n_ij
        mean_j = np.swapaxes(mean_i, *swap)
        denom = n_ij - 1.0
        cov = (sxy - n_ij * mean_i * mean_j) / denom
        var_i = (ss_ij - n_ij * mean_i * mean_i) / denom
        var_j = np.swapaxes(var_i, *swap)
        cor = cov / np.sqrt(var_i * var_j)
        bad = n_ij < 2
        cov = np.where(bad, np.nan, cov)
        cor = np.where(bad, np.nan, cor)
    # The diagonal is 1 by definition (it would be 1 up to rounding anyway); an item with
    # fewer than 2 answers keeps NaN.
    eye = np.eye(x.shape[1], dtype=bool)
    cor = np.where(eye & np.isfinite(cor), 1.0, cor)
    return Moments(count=n_ij, cov=cov, cor=cor)


def cov2cor(c: np.ndarray) -> np.ndarray:
    """Scale a covariance matrix by its own diagonal (R's ``cov2cor``)."""
    d = np.sqrt(np.diag(c))
    return c / np.outer(d, d)
