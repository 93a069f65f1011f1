"""Omega total of one correlation matrix, and its percentile bootstrap with vectorised refits.

The point estimate is psych's ``omega(x, nfactors = 1)$omega.tot`` (see
:mod:`trackii_eval.scoring.one_factor`). The bootstrap resamples rows; every replicate's
pairwise correlation matrix comes out of one weighted matrix product (row counts as weights) and
all replicates are refitted together, starting from the full-sample estimate: ML by batched
Newton / Fisher scoring, minres by batched iterated principal axes. A replicate that ends with a
uniqueness at a bound (where local minima can sit) or that does not converge is refitted from
every start, as the point estimate is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .moments import pairwise_moments
from .one_factor import (
    PSI_MIN,
    fisher_scoring,
    fit_one_factor_minres,
    minres_batch,
    ml_multistart,
    omega_from_loadings,
)

__all__ = ["OmegaResult", "bootstrap_omega", "omega_point"]

_BOOT_CHUNK = 128


@dataclass
class OmegaResult:
    """Omega total of one matrix, the fit behind it, and notes instead of exceptions."""

    value: float = math.nan
    loadings: np.ndarray | None = None
    uniquenesses: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def omega_point(r: np.ndarray, method: str, flip: bool) -> OmegaResult:
    """Omega total of one pairwise correlation matrix (k, k), with notes instead of exceptions.

    Parameters
    ----------
    r : numpy.ndarray, shape (k, k)
        Pairwise-complete correlation matrix of the items.
    method : {"ml", "minres"}
        How the one-factor model is fitted.
    flip : bool
        Reverse negatively loading items for omega, as ``psych::omega(flip = TRUE)``.

    Returns
    -------
    OmegaResult
        NaN value and a note when omega cannot be computed: fewer than 3 items (a one-factor
        model of 2 items is not identified), pairs never answered together, or (ML) a matrix
        that is not positive definite.
    """
    out = OmegaResult()
    k = r.shape[0]
    if k < 3:
        msg = "omega needs at least 3 items (a one-factor model of 2 is not identified)"
        if k == 2:
            # Eisinga, te Grotenhuis & Pelzer (2013): for two items report Spearman-Brown.
            msg += "; with 2 items alpha_std is the Spearman-Brown coefficient"
        out.notes.append(msg)
        return out
    if not np.all(np.isfinite(r)):
        out.notes.append("omega not computed: some item pairs were never answered together")
        return out
    if method == "ml" and np.linalg.eigvalsh(r)[0] <= 0:
        # The ML discrepancy needs log|R|; minres does not, and goes ahead.
        out.notes.append(
            "omega not computed: the pairwise correlation matrix is not positive "
            "definite (omega_method='minres' does not need it to be)"
        )
        return out
    if method == "ml":
        fit = ml_multistart(r[None, :, :])
        if not fit.converged[0]:
            out.notes.append("omega not computed: the one-factor fit failed")
            return out
        lam, psi = fit.loadings[0], fit.uniquenesses[0]
    else:
        lam = fit_one_factor_minres(r)
        psi = None
    out.loadings, out.uniquenesses = lam, psi
    out.value = float(omega_from_loadings(r, lam, flip))
    if np.any(lam < 0):
        how = "reversed for omega, as psych::omega does" if flip else "not reversed"
        out.notes.append(
            f"some items load negatively on the common factor (not reverse-keyed?); {how}"
        )
    return out


def _refit_ml(r: np.ndarray, point: OmegaResult) -> tuple[np.ndarray, np.ndarray]:
    """ML loadings of replicate matrices (B, k, k) from the full-sample fit; a converged mask."""
    b = r.shape[0]
    lam0 = np.broadcast_to(point.loadings, (b, r.shape[1]))
    psi0 = np.broadcast_to(point.uniquenesses, (b, r.shape[1]))
    fit = fisher_scoring(r, lam0, psi0)
    lam, conv = fit.loadings.copy(), fit.converged.copy()
    redo = ~conv | np.any(fit.uniquenesses <= PSI_MIN, axis=1)
    if redo.any():
        again = ml_multistart(r[redo])
        lam[redo], conv[redo] = again.loadings, again.converged
    return lam, conv


def bootstrap_omega(
    x: np.ndarray,
    point: OmegaResult,
    method: str,
    n_boot: int,
    rng: np.random.Generator,
    flip: bool,
) -> np.ndarray:
    """Omega total in ``n_boot`` row-resampled replicates (NaN where one cannot be fitted).

    Parameters
    ----------
    x : numpy.ndarray, shape (n, k)
        The items (NaN for missing answers).
    point : OmegaResult
        The full-sample fit (its loadings, and for ML its uniquenesses, start every replicate).
    method : {"ml", "minres"}
    n_boot : int
    rng : numpy.random.Generator
        Draws ``n_boot x n`` row indices, in chunks of 128 replicates.
    flip : bool
        As in :func:`omega_point`.

    Returns
    -------
    numpy.ndarray, shape (n_boot,)
    """
    n = x.shape[0]
    out = np.full(n_boot, np.nan)
    for start in range(0, n_boot, _BOOT_CHUNK):
        b = min(_BOOT_CHUNK, n_boot - start)
        draws = rng.integers(0, n, size=(b, n))
        # Counts of each row in each replicate: summing weighted rows is resampling them.
        offsets = draws + (np.arange(b) * n)[:, None]
        weights = np.bincount(offsets.ravel(), minlength=b * n).reshape(b, n).astype(float)
        r = pairwise_moments(x, weights).cor
        ok = np.all(np.isfinite(r), axis=(1, 2))
        if ok.any() and method == "ml":
            ok_idx = np.flatnonzero(ok)
            ok_idx = ok_idx[np.linalg.eigvalsh(r[ok_idx])[:, 0] > 0]
            ok = np.zeros(b, dtype=bool)
            ok[ok_idx] = True
        if not ok.any():
            continue
        rr = r[ok]
        if method == "ml":
            lam, conv = _refit_ml(rr, point)
        else:
            lam, conv = minres_batch(rr, point.loadings)
        vals = np.where(conv, omega_from_loadings(rr, lam, flip), np.nan)
        # The rare minres replicate that iterated principal axes do not settle in time gets the
        # exact optimiser instead.
        for j in np.flatnonzero(~conv) if method != "ml" else ():
            vals[j] = omega_point(rr[j], method, flip).value
        out[start + np.flatnonzero(ok)] = vals
    return out
