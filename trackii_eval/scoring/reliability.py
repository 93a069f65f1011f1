"""Internal-consistency reliability of keyed multi-item scales: alpha, omega total, item statistics.

The numbers are meant to be the ones a reviewer gets from R's ``psych`` package on the same
responses, so every choice below that could go two ways follows ``psych`` and says so:

* Missing values: covariances are pairwise-complete (``cov(x, use = "pairwise")``), each pair of
  items using the rows where both were answered, with ``n_ij - 1`` in the denominator.
* ``alpha`` is psych's ``raw_alpha``, computed from that covariance matrix; ``alpha_std`` is
  psych's ``std.alpha``, computed from ``cov2cor`` of the same matrix (each covariance divided by
  the two items' *own* standard deviations over all their answers, not by pair-specific ones).
* ``n`` is the number of rows given, including rows in which no item was answered: psych uses it
  for the Feldt bounds and the standard error, so these rows are counted here too (a warning
  says so; drop such rows first if they are not observations).
* An item without variance is left out with a warning, as psych does, and ``k`` counts the items
  actually used.
* ``omega_total`` is psych's one-factor ``omega(x, nfactors = 1)$omega.tot``: a one-factor model
  fitted to the pairwise-complete *correlation* matrix by maximum likelihood (or minres), and
  ``(1'R1 - sum(u2)) / 1'R1`` with ``u2 = 1 - loading^2``. Like psych, an item loading negatively
  is reversed for omega (``omega_flip=False`` turns this off); unlike psych, this is not silent:
  keyed items should not load negatively, so a warning is raised.

Two data layouts are accepted. Wide: one column per item, one row per response (optionally with
grouping columns named in ``by``) -> :func:`reliability`, :func:`item_statistics`. Long: one row per
answer with id, grouping, item and value columns -> :func:`reliability_long`,
:func:`item_statistics_long`, which pivot to wide and call the wide functions.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from trackii_eval.errors import ScoringError, TrackIIEvalWarning

__all__ = [
    "ITEM_STATISTICS_COLUMNS",
    "RELIABILITY_COLUMNS",
    "ReliabilityWarning",
    "item_statistics",
    "item_statistics_long",
    "reliability",
    "reliability_long",
]

#: Columns of :func:`reliability` after the ``by`` columns, in order.
RELIABILITY_COLUMNS: tuple[str, ...] = (
    "n",
    "n_complete",
    "k",
    "items",
    "alpha",
    "alpha_ci_low",
    "alpha_ci_high",
    "alpha_se",
    "alpha_std",
    "average_r",
    "omega_total",
    "omega_ci_low",
    "omega_ci_high",
    "flag",
    "note",
)

#: Columns of :func:`item_statistics` after the ``by`` columns, in order.
ITEM_STATISTICS_COLUMNS: tuple[str, ...] = (
    "item",
    "n",
    "mean",
    "sd",
    "floor_share",
    "ceiling_share",
    "r_drop",
    "alpha_if_deleted",
    "alpha_std_if_deleted",
    "note",
)

# psych::fa bounds every uniqueness to [0.005, 1] when it fits a correlation matrix; the same
# bounds make Heywood cases end where psych's end.
_PSI_MIN = 0.005
_PSI_MAX = 1.0
_OMEGA_METHODS = ("ml", "minres")
_BOOT_CHUNK = 128


class ReliabilityWarning(TrackIIEvalWarning):
    """A reliability statistic was computed on less than the data given, or could not be."""


# --------------------------------------------------------------------------------------------
# Pairwise-complete moments
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Moments:
    """Pairwise-complete moments of a block of items (one replicate or a batch of them)."""

    count: np.ndarray  # (..., k, k) rows with both items answered
    cov: np.ndarray  # (..., k, k) pairwise-complete covariance, psych's C
    cor: np.ndarray  # (..., k, k) pairwise-complete correlation, R's cor(use = "pairwise")


def _pairwise_moments(x: np.ndarray, weights: np.ndarray | None = None) -> _Moments:
    """Pairwise-complete covariances and correlations, optionally for many row weightings.

    ``weights`` (B, n) holds how often each row is drawn in B bootstrap replicates; a weighted
    sum over rows is exactly the sum over the resampled data set, so every replicate's pairwise
    moments come out of a few batched matrix products instead of B passes over copied data.
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
    return _Moments(count=n_ij, cov=cov, cor=cor)


def _cov2cor(c: np.ndarray) -> np.ndarray:
    """Scale a covariance matrix by its own diagonal (R's ``cov2cor``)."""
    d = np.sqrt(np.diag(c))
    return c / np.outer(d, d)


# --------------------------------------------------------------------------------------------
# Alpha
# --------------------------------------------------------------------------------------------


def _alpha_from_cov(c: np.ndarray) -> float:
    """Raw coefficient alpha of the unit-weighted sum, from an item covariance matrix."""
    k = c.shape[0]
    if k < 2:
        return math.nan
    return float(k / (k - 1) * (1.0 - np.trace(c) / c.sum()))


def _alpha_from_cor(r: np.ndarray) -> float:
    """Standardized alpha (alpha of the sum of z-scored items), from a correlation matrix."""
    k = r.shape[0]
    if k < 2:
        return math.nan
    return float(k / (k - 1) * (1.0 - k / r.sum()))


def _alpha_asymptotic_variance(c: np.ndarray) -> float:
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


def _feldt_interval(alpha: float, n: int, k: int, ci: float) -> tuple[float, float]:
    """Feldt, Woodruff & Salih (1987): ``(1 - alpha) / (1 - alpha_pop) ~ F(n-1, (n-1)(k-1))``."""
    if not np.isfinite(alpha) or n < 2 or k < 2:
        return math.nan, math.nan
    tail = (1.0 - ci) / 2.0
    df1 = n - 1
    df2 = (n - 1) * (k - 1)
    low = 1.0 - (1.0 - alpha) * stats.f.ppf(1.0 - tail, df1, df2)
    high = 1.0 - (1.0 - alpha) * stats.f.ppf(tail, df1, df2)
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# One-factor model and omega total
# --------------------------------------------------------------------------------------------


def _ml_objective(psi: np.ndarray, r: np.ndarray) -> tuple[float, np.ndarray]:
    """ML discrepancy of the one-factor model, concentrated on the uniquenesses, and gradient.

    For fixed uniquenesses ``Psi`` the best loadings come from the leading eigenpair of
    ``Psi^-1/2 R Psi^-1/2`` and the discrepancy is ``sum_{j>1} (theta_j - log theta_j - 1)`` over
    the other eigenvalues (Joreskog, 1967); its gradient is ``diag(Sigma - R) / psi^2``.
    """
    s = 1.0 / np.sqrt(psi)
    theta, vec = np.linalg.eigh(r * np.outer(s, s))
    rest = theta[:-1]  # eigh sorts ascending: the last one is the factor's
    if np.any(rest <= 0):
        return math.inf, np.zeros_like(psi)
    value = float(np.sum(rest - np.log(rest) - 1.0))
    lam = np.sqrt(psi) * vec[:, -1] * math.sqrt(max(theta[-1] - 1.0, 0.0))
    grad = (lam * lam + psi - np.diag(r)) / psi**2
    return value, grad


def _smc(r: np.ndarray) -> np.ndarray:
    """Squared multiple correlations, the usual starting communalities."""
    try:
        inv = np.linalg.inv(r)
        smc = 1.0 - 1.0 / np.diag(inv)
    except np.linalg.LinAlgError:
        smc = np.full(r.shape[0], 0.5)
    if not np.all(np.isfinite(smc)) or np.any(smc <= 0) or np.any(smc >= 1):
        # A singular or indefinite pairwise matrix: the largest absolute correlation of each
        # item is a serviceable start and always inside (0, 1].
        off = np.abs(r - np.diag(np.diag(r)))
        smc = np.clip(off.max(axis=1), 0.05, 0.95)
    return smc


def _fit_one_factor_ml(r: np.ndarray) -> np.ndarray | None:
    """Loadings of a one-factor ML fit to a correlation matrix, uniquenesses in [0.005, 1].

    The bounded ML problem can have several local minima when an item is near a Heywood case
    (small samples, one dominant item), so the search starts from the usual ``1 - SMC`` and
    from each item at the lower bound, and keeps the lowest discrepancy: that is the ML
    estimate, wherever a single search happens to stop.
    """
    k = r.shape[0]
    base = np.clip(1.0 - _smc(r), _PSI_MIN, _PSI_MAX)
    starts = [base, np.full(k, 0.5)]
    for j in range(k):
        heywood = base.copy()
        heywood[j] = _PSI_MIN
        starts.append(heywood)
    best: optimize.OptimizeResult | None = None
    for start in starts:
        res = optimize.minimize(
            _ml_objective,
            start,
            args=(r,),
            jac=True,
            method="L-BFGS-B",
            bounds=[(_PSI_MIN, _PSI_MAX)] * k,
            options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 2000},
        )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun - 1e-12):
            best = res
    if best is None:
        return None
    psi = best.x
    s = 1.0 / np.sqrt(psi)
    theta, vec = np.linalg.eigh(r * np.outer(s, s))
    lam = np.sqrt(psi) * vec[:, -1] * math.sqrt(max(theta[-1] - 1.0, 0.0))
    return lam if lam.sum() >= 0 else -lam


def _minres_loadings(psi: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Leading principal axis of R with communalities ``1 - psi`` on the diagonal."""
    reduced = r.copy()
    np.fill_diagonal(reduced, 1.0 - psi)
    vals, vecs = np.linalg.eigh(reduced)
    return vecs[:, -1] * math.sqrt(max(vals[-1], 0.0))


def _fit_one_factor_minres(r: np.ndarray) -> np.ndarray | None:
    """Loadings minimizing the squared off-diagonal residuals (minres).

    Parametrized, as psych's ``fa(fm = "minres")`` is, by uniquenesses in [0.005, 1] whose
    complements are put on the diagonal, the loadings being that matrix's leading principal
    axis. Away from the bounds this is the ordinary minres optimum; at a Heywood case it stops
    where psych's bounded search stops, which a bound on the loadings themselves would not.
    """
    k = r.shape[0]
    lower = np.tril_indices(k, -1)

    def objective(psi: np.ndarray) -> float:
        lam = _minres_loadings(psi, r)
        return float(np.sum((r - np.outer(lam, lam))[lower] ** 2))

    start = np.clip(1.0 - _smc(r), _PSI_MIN, _PSI_MAX)
    # No closed-form gradient through the eigenvector; k is small, so finite differences are
    # cheap, and a tight tolerance keeps their error far below what omega is reported to.
    res = optimize.minimize(
        objective,
        start,
        method="L-BFGS-B",
        bounds=[(_PSI_MIN, _PSI_MAX)] * k,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000, "eps": 1e-9},
    )
    lam = _minres_loadings(res.x, r)
    return lam if lam.sum() >= 0 else -lam


def _omega_from_loadings(r: np.ndarray, lam: np.ndarray, flip: bool) -> float:
    """Omega total as psych computes it: ``(1'R1 - sum(1 - lambda^2)) / 1'R1``.

    With ``flip``, items loading negatively are reversed first (``R`` becomes ``KRK`` with
    ``K = diag(sign(lambda))``), as ``psych::omega(flip = TRUE)`` does.
    """
    if flip:
        key = np.where(lam < 0, -1.0, 1.0)
        r = r * np.outer(key, key)
    vt = r.sum()
    return float((vt - np.sum(1.0 - lam**2)) / vt)


def _batched_one_factor(
    r: np.ndarray, lam0: np.ndarray, method: str, max_iter: int = 5000, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """One-factor loadings for a batch of correlation matrices (B, k, k), all at once.

    ML uses the EM algorithm for factor analysis (Rubin & Thayer, 1982), which for one factor
    needs only matrix-vector products, so a thousand bootstrap fits cost about as much as a few
    scipy fits; uniquenesses are held inside psych's [0.005, 1]. Minres uses iterated principal
    axes, whose fixed points are the minres solutions. Starting every replicate at the
    full-sample loadings keeps the iteration count low. Returns loadings and a converged mask.
    """
    b, k = r.shape[0], r.shape[1]
    lam = np.broadcast_to(lam0, (b, k)).copy()
    diag_r = np.diagonal(r, axis1=1, axis2=2)
    done = np.zeros(b, dtype=bool)
    active = np.arange(b)
    for _ in range(max_iter):
        ra, la, da = r[active], lam[active], diag_r[active]
        if method == "ml":
            psi = np.clip(da - la * la, _PSI_MIN, _PSI_MAX)
            a = la / psi
            beta = a / (1.0 + np.sum(la * a, axis=1))[:, None]  # lambda' Sigma^-1 (Woodbury)
            rb = np.einsum("bij,bj->bi", ra, beta)
            czz = 1.0 - np.sum(beta * la, axis=1) + np.sum(beta * rb, axis=1)
            new = rb / czz[:, None]
            # Hold the implied uniqueness inside the bounds psych uses.
            cap = np.sqrt(np.maximum(da - _PSI_MIN, 0.0))
            new = np.clip(new, -cap, cap)
        else:
            h2 = np.minimum(la * la, 1.0 - _PSI_MIN)
            reduced = ra.copy()
            idx = np.arange(k)
            reduced[:, idx, idx] = h2
            vals, vecs = np.linalg.eigh(reduced)
            lead = vecs[:, :, -1]
            lead = lead * np.where(np.sum(lead, axis=1) < 0, -1.0, 1.0)[:, None]
            new = lead * np.sqrt(np.maximum(vals[:, -1], 0.0))[:, None]
        step = np.max(np.abs(new - la), axis=1)
        lam[active] = new
        finished = step < tol
        done[active[finished]] = True
        active = active[~finished]
        if active.size == 0:
            break
    return lam, done


@dataclass
class _OmegaResult:
    value: float = math.nan
    loadings: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def _omega_point(r: np.ndarray, method: str, flip: bool) -> _OmegaResult:
    """Omega total of one correlation matrix, with notes instead of exceptions."""
    out = _OmegaResult()
    k = r.shape[0]
    if k < 3:
        out.notes.append("omega needs at least 3 items (a one-factor model of 2 is not identified)")
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
    lam = _fit_one_factor_ml(r) if method == "ml" else _fit_one_factor_minres(r)
    if lam is None:
        out.notes.append("omega not computed: the one-factor fit failed")
        return out
    out.loadings = lam
    out.value = _omega_from_loadings(r, lam, flip)
    if np.any(lam < 0):
        how = "reversed for omega, as psych::omega does" if flip else "not reversed"
        out.notes.append(
            f"some items load negatively on the common factor (not reverse-keyed?); {how}"
        )
    return out


def _bootstrap_omega(
    x: np.ndarray,
    lam0: np.ndarray,
    method: str,
    n_boot: int,
    rng: np.random.Generator,
    flip: bool,
) -> np.ndarray:
    """Omega total in ``n_boot`` row-resampled replicates (NaN where a replicate cannot be fit)."""
    n = x.shape[0]
    out = np.full(n_boot, np.nan)
    for start in range(0, n_boot, _BOOT_CHUNK):
        b = min(_BOOT_CHUNK, n_boot - start)
        draws = rng.integers(0, n, size=(b, n))
        # Counts of each row in each replicate: summing weighted rows is resampling them.
        offsets = draws + (np.arange(b) * n)[:, None]
        weights = np.bincount(offsets.ravel(), minlength=b * n).reshape(b, n).astype(float)
        r = _pairwise_moments(x, weights).cor
        ok = np.all(np.isfinite(r), axis=(1, 2))
        if ok.any() and method == "ml":
            ok_idx = np.flatnonzero(ok)
            ok_idx = ok_idx[np.linalg.eigvalsh(r[ok_idx])[:, 0] > 0]
            ok = np.zeros(b, dtype=bool)
            ok[ok_idx] = True
        if not ok.any():
            continue
        lam, conv = _batched_one_factor(r[ok], lam0, method)
        vals = np.full(int(ok.sum()), np.nan)
        rr = r[ok]
        key = np.where(lam < 0, -1.0, 1.0) if flip else np.ones_like(lam)
        vt = np.einsum("bi,bij,bj->b", key, rr, key)
        vals[conv] = (vt[conv] - np.sum(1.0 - lam[conv] ** 2, axis=1)) / vt[conv]
        # The rare replicate EM does not settle in time gets the exact optimiser instead.
        for j in np.flatnonzero(~conv):
            fit = _omega_point(rr[j], method, flip)
            vals[j] = fit.value
        out[start + np.flatnonzero(ok)] = vals
    return out


# --------------------------------------------------------------------------------------------
# Per-scale computation
# --------------------------------------------------------------------------------------------


@dataclass
class _ScaleData:
    """The items of one scale after psych's screening, and what the screening did."""

    x: np.ndarray
    names: list[str]
    n_rows: int
    constant: list[str]
    notes: list[str]


def _screen(block: pd.DataFrame, *, grouped: bool) -> _ScaleData:
    """Drop items that cannot enter the covariance matrix, recording why."""
    notes: list[str] = []
    empty = [str(c) for c in block.columns if block[c].isna().all()]
    if empty and not grouped:
        # In a by-group, an all-missing column is an item of another scale; alone it is news.
        msg = f"items never answered were left out: {', '.join(empty)}"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        notes.append(msg)
    keep = [c for c in block.columns if str(c) not in empty]
    x = block[keep].to_numpy(dtype=float, na_value=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(x, axis=0, ddof=1) if x.shape[0] > 1 else np.full(x.shape[1], np.nan)
    constant = [str(c) for c, s in zip(keep, sd, strict=True) if not (s > 0)]
    if constant:
        msg = f"items without variance were left out, as psych::alpha does: {', '.join(constant)}"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        notes.append(msg)
    used = [c for c in keep if str(c) not in constant]
    xs = block[used].to_numpy(dtype=float, na_value=np.nan)
    n_empty = int(np.all(np.isnan(xs), axis=1).sum()) if used else block.shape[0]
    if n_empty and used:
        msg = (
            f"{n_empty} row(s) answered none of the items; they are counted in n (Feldt bounds, "
            "standard error) as psych::alpha counts them"
        )
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        notes.append(msg)
    return _ScaleData(
        x=xs, names=[str(c) for c in used], n_rows=block.shape[0], constant=constant, notes=notes
    )


def _scale_row(
    sd: _ScaleData,
    *,
    ci: float,
    omega_ci: str,
    n_boot: int,
    rng: np.random.Generator,
    omega_method: str,
    omega_flip: bool,
) -> dict[str, object]:
    """All scale-level statistics of one screened scale."""
    x = sd.x
    n, k = sd.n_rows, x.shape[1]
    notes = list(sd.notes)
    row: dict[str, object] = {
        "n": n,
        "n_complete": int(np.all(~np.isnan(x), axis=1).sum()) if k else 0,
        "k": k,
        "items": ",".join(sd.names),
    }
    nan_stats = dict.fromkeys(
        (
            "alpha",
            "alpha_ci_low",
            "alpha_ci_high",
            "alpha_se",
            "alpha_std",
            "average_r",
            "omega_total",
            "omega_ci_low",
            "omega_ci_high",
        ),
        math.nan,
    )
    row.update(nan_stats)
    if k < 2:
        msg = f"fewer than 2 items with variance ({k}); reliability is undefined"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        row["note"] = "; ".join([*notes, msg])
        return row
    mom = _pairwise_moments(x)
    c = mom.cov
    if not np.all(np.isfinite(c)):
        msg = "some item pairs have fewer than 2 rows answered together; reliability is undefined"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        row["note"] = "; ".join([*notes, msg])
        return row
    alpha = _alpha_from_cov(c)
    r_scaled = _cov2cor(c)
    low, high = _feldt_interval(alpha, n, k, ci)
    q = _alpha_asymptotic_variance(c)
    row.update(
        alpha=alpha,
        alpha_ci_low=low,
        alpha_ci_high=high,
        alpha_se=math.sqrt(q / n) if q >= 0 else math.nan,
        alpha_std=_alpha_from_cor(r_scaled),
        average_r=float((r_scaled.sum() - k) / (k * (k - 1))),
    )
    if alpha < 0:
        notes.append("alpha is negative: items covary negatively on average (keying?)")
    om = _omega_point(mom.cor, omega_method, omega_flip)
    notes.extend(om.notes)
    if om.notes:
        warnings.warn("; ".join(om.notes), ReliabilityWarning, stacklevel=3)
    row["omega_total"] = om.value
    if om.loadings is not None and omega_ci == "bootstrap" and n_boot > 0:
        reps = _bootstrap_omega(x, om.loadings, omega_method, n_boot, rng, omega_flip)
        good = reps[np.isfinite(reps)]
        if good.size < max(10, int(0.9 * n_boot)):
            msg = f"only {good.size} of {n_boot} bootstrap replicates gave an omega; no interval"
            warnings.warn(msg, ReliabilityWarning, stacklevel=3)
            notes.append(msg)
        else:
            tail = (1.0 - ci) / 2.0
            # R's default quantile (type 7) is numpy's "linear" method.
            row["omega_ci_low"], row["omega_ci_high"] = (
                float(v) for v in np.quantile(good, [tail, 1.0 - tail])
            )
            if good.size < n_boot:
                notes.append(f"omega interval from {good.size} of {n_boot} replicates")
    row["note"] = "; ".join(notes)
    return row


# --------------------------------------------------------------------------------------------
# Argument checks and grouping
# --------------------------------------------------------------------------------------------


def _as_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _item_block(items: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The item columns (all but ``by``), checked to be numeric."""
    if not isinstance(items, pd.DataFrame):
        raise ScoringError(f"items must be a pandas DataFrame, got {type(items).__name__}")
    missing = [b for b in by if b not in items.columns]
    if missing:
        raise ScoringError(f"by: column(s) {missing} not in the items table")
    cols = [c for c in items.columns if c not in by]
    if not cols:
        raise ScoringError("items: no item columns besides the by columns")
    bad = [
        str(c)
        for c in cols
        if not (
            pd.api.types.is_numeric_dtype(items[c]) and not pd.api.types.is_bool_dtype(items[c])
        )
    ]
    if bad:
        raise ScoringError(
            f"items: column(s) {bad} are not numeric; keyed item responses must be numbers "
            "(pass grouping columns in by=)"
        )
    return items[cols]


def _check_options(ci: float, omega_ci: str, n_boot: int, omega_method: str) -> None:
    if not 0.0 < ci < 1.0:
        raise ScoringError(f"ci must be strictly between 0 and 1, got {ci}")
    if omega_ci not in ("bootstrap", "none"):
        raise ScoringError(f"omega_ci must be 'bootstrap' or 'none', got {omega_ci!r}")
    if omega_method not in _OMEGA_METHODS:
        raise ScoringError(f"omega_method must be one of {_OMEGA_METHODS}, got {omega_method!r}")
    if omega_ci == "bootstrap" and n_boot < 100:
        raise ScoringError(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")


def _groups(items: pd.DataFrame, by: list[str]) -> list[tuple[tuple[Hashable, ...], pd.DataFrame]]:
    if not by:
        return [((), items)]
    nan_keys = items[by].isna().any(axis=1)
    if nan_keys.any():
        warnings.warn(
            f"{int(nan_keys.sum())} row(s) with a missing value in a by column were left out",
            ReliabilityWarning,
            stacklevel=3,
        )
    grouped = items.loc[~nan_keys].groupby(by, sort=True, observed=True, dropna=True)
    return [(key if isinstance(key, tuple) else (key,), frame) for key, frame in grouped]


def _group_rng(seed: int | None, key: tuple[Hashable, ...]) -> np.random.Generator:
    """A generator per group, derived from the seed and the group's own key.

    A group's bootstrap interval then does not depend on which other groups are in the call.
    """
    if seed is None:
        return np.random.default_rng()
    tag = zlib.crc32(repr(key).encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), tag]))


# --------------------------------------------------------------------------------------------
# Public API: wide layout
# --------------------------------------------------------------------------------------------


def reliability(
    items: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    ci: float = 0.95,
    omega_ci: Literal["bootstrap", "none"] = "bootstrap",
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold: float | None = None,
    omega_method: Literal["ml", "minres"] = "ml",
    omega_flip: bool = True,
) -> pd.DataFrame:
    """Coefficient alpha and omega total of keyed items, one row per scale (or per group).

    Parameters
    ----------
    items : pandas.DataFrame
        One column per item, one row per response, already keyed (reverse-scored items
        reversed). Missing values are allowed. Every column that is not named in `by` is an item
        and must be numeric.
    by : str or sequence of str, optional
        Grouping columns (e.g. ``["construct", "wave"]``); one result row per group. Within a
        group, item columns with no answer at all are taken to belong to another scale and are
        left out silently.
    ci : float, default 0.95
        Confidence level of the alpha and omega intervals.
    omega_ci : {"bootstrap", "none"}, default "bootstrap"
        ``"bootstrap"``: percentile interval over `n_boot` row resamples, each refitted.
        ``"none"``: no omega interval (NaN bounds), for speed.
    n_boot : int, default 1000
        Bootstrap replicates for the omega interval.
    seed : int or None, default 0
        Seed of the bootstrap. Each group's generator is derived from the seed and the group's
        key, so adding or removing groups does not change another group's interval.
    threshold : float, optional
        If given, ``flag`` is True where alpha or omega total is below it, or alpha is NaN.
    omega_method : {"ml", "minres"}, default "ml"
        How the one-factor model behind omega is fitted: maximum likelihood
        (``psych::omega(fm = "ml")``) or minimum residual (psych's default ``fm = "minres"``).
        ML needs a positive definite pairwise correlation matrix (omega is NaN otherwise, as
        psych then fails); minres does not.
    omega_flip : bool, default True
        Reverse items that load negatively on the factor before computing omega, as
        ``psych::omega`` does by default (``flip = TRUE``); a warning and the ``note`` column
        name the situation, since keyed items should not load negatively. With False, omega is
        that of the items exactly as given (alpha always is).

    Returns
    -------
    pandas.DataFrame
        The `by` columns, then ``n`` (rows, including rows with no item answered, as psych
        counts them), ``n_complete`` (rows with every item answered), ``k`` (items used),
        ``items`` (their names, comma-joined), ``alpha`` (psych ``raw_alpha``),
        ``alpha_ci_low``/``alpha_ci_high`` (Feldt bounds), ``alpha_se`` (asymptotic standard
        error, psych ``ase``), ``alpha_std`` (psych ``std.alpha``), ``average_r``,
        ``omega_total``, ``omega_ci_low``/``omega_ci_high``, ``flag`` (bool) and ``note`` (why a
        value is missing or what was left out; empty when nothing was). ``attrs`` records the
        options used.

    Raises
    ------
    ScoringError
        If `items` is not a DataFrame, a `by` column is missing, an item column is not numeric,
        or an option is out of range.

    Warns
    -----
    ReliabilityWarning
        When items without variance are left out, rows without any answer are counted, a scale
        has fewer than 2 usable items (statistics are NaN), omega cannot be computed, or items
        load negatively.

    Notes
    -----
    Alpha is ``k/(k-1) * (1 - tr(C) / 1'C1)`` for the pairwise-complete covariance matrix ``C``
    (Cronbach, 1951); with missing values this matches ``psych::alpha``'s default
    ``use = "pairwise"``. The interval treats ``(1 - alpha) / (1 - alpha_pop)`` as
    ``F(n - 1, (n - 1)(k - 1))`` (Feldt, Woodruff & Salih, 1987), which is ``psych::alpha.ci``.
    Omega total is computed from a one-factor model fitted to the pairwise-complete correlation
    matrix (McDonald, 1999), as ``psych::omega`` with one factor does; the bootstrap resamples
    rows and refits every replicate (Kelley & Pornprasertmanit, 2016, recommend such intervals).

    In R: ``psych::alpha(x)`` (``$total``, ``$feldt``) and
    ``psych::omega(x, nfactors = 1, fm = "ml")$omega.tot``.

    References
    ----------
    .. [1] Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests.
       Psychometrika, 16(3), 297-334.
    .. [2] Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for
       coefficient alpha. Applied Psychological Measurement, 11(1), 93-103.
    .. [3] van Zyl, J. M., Neudecker, H., & Nel, D. G. (2000). On the distribution of the
       maximum likelihood estimator of Cronbach's alpha. Psychometrika, 65(3), 271-280.
    .. [4] McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
    .. [5] Kelley, K., & Pornprasertmanit, S. (2016). Confidence intervals for population
       reliability coefficients. Psychological Methods, 21(1), 69-92.
    .. [6] Revelle, W. (2022). psych: Procedures for psychological, psychometric, and
       personality research (R package version 2.2.9).

    Examples
    --------
    >>> table = reliability(wide, by=["construct", "wave"], threshold=0.7)  # doctest: +SKIP
    """
    by_cols = _as_list(by)
    _check_options(ci, omega_ci, n_boot, omega_method)
    _item_block(items, by_cols)
    rows: list[dict[str, object]] = []
    for key, frame in _groups(items, by_cols):
        block = _item_block(frame, by_cols)
        scale = _screen(block, grouped=bool(by_cols))
        row = _scale_row(
            scale,
            ci=ci,
            omega_ci=omega_ci,
            n_boot=n_boot,
            rng=_group_rng(seed, key),
            omega_method=omega_method,
            omega_flip=omega_flip,
        )
        rows.append({**dict(zip(by_cols, key, strict=True)), **row})
    out = pd.DataFrame(rows, columns=[*by_cols, *RELIABILITY_COLUMNS])
    out["flag"] = _flags(out, threshold)
    out["note"] = out["note"].fillna("")
    for col in ("n", "n_complete", "k"):
        out[col] = out[col].astype("int64")
    out.attrs.update(
        ci=ci,
        omega_ci=omega_ci,
        n_boot=n_boot if omega_ci == "bootstrap" else 0,
        seed=seed,
        threshold=threshold,
        omega_method=omega_method,
        omega_flip=omega_flip,
        alpha_interval="Feldt, Woodruff & Salih (1987)",
    )
    return out


def _flags(table: pd.DataFrame, threshold: float | None) -> pd.Series:
    if threshold is None or table.empty:
        return pd.Series(False, index=table.index, dtype=bool)
    alpha = table["alpha"].astype(float)
    omega = table["omega_total"].astype(float)
    low = (alpha < threshold) | (omega < threshold) | alpha.isna()
    return low.astype(bool)


def _floor_ceiling_bound(bound: float | Mapping[str, float] | None, item: str) -> float | None:
    if bound is None:
        return None
    if isinstance(bound, Mapping):
        value = bound.get(item)
        return None if value is None else float(value)
    return float(bound)


def item_statistics(
    items: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    scale_min: float | Mapping[str, float] | None = None,
    scale_max: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per-item statistics of keyed items: item-rest correlation, alpha if deleted, floor/ceiling.

    Parameters
    ----------
    items : pandas.DataFrame
        As in :func:`reliability`: one column per keyed item, one row per response, plus any
        grouping columns named in `by`.
    by : str or sequence of str, optional
        Grouping columns; statistics are computed within each group.
    scale_min, scale_max : float or mapping of item name to float, optional
        The lowest and highest response options. Needed for ``floor_share`` and
        ``ceiling_share`` (NaN without them); an answer outside them is an error.

    Returns
    -------
    pandas.DataFrame
        The `by` columns, then ``item``, ``n`` (answers), ``mean``, ``sd`` (n - 1 denominator),
        ``floor_share`` and ``ceiling_share`` (share of answers at the lowest/highest option),
        ``r_drop`` (correlation of the item with the sum of the other items, psych ``r.drop``),
        ``alpha_if_deleted`` and ``alpha_std_if_deleted`` (psych ``alpha.drop`` ``raw_alpha``
        and ``std.alpha``) and ``note``. Items without variance keep their descriptive columns
        with NaN correlations, and are left out of the other items' statistics, as psych does.

    Raises
    ------
    ScoringError
        On the conditions of :func:`reliability`, or an answer outside
        [`scale_min`, `scale_max`].

    Notes
    -----
    ``r_drop`` and the alpha-if-deleted values come from the pairwise-complete covariance matrix,
    as psych computes them. With two items, alpha of the single remaining item is undefined and
    reported as NaN; psych instead prints the regression slope ``C12 / C22`` in that slot.

    In R: ``psych::alpha(x)$item.stats`` (``n``, ``mean``, ``sd``, ``r.drop``) and
    ``psych::alpha(x)$alpha.drop``.

    References
    ----------
    .. [1] Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests.
       Psychometrika, 16(3), 297-334.
    .. [2] Revelle, W. (2022). psych: Procedures for psychological, psychometric, and
       personality research (R package version 2.2.9).
    """
    by_cols = _as_list(by)
    _item_block(items, by_cols)
    rows: list[dict[str, object]] = []
    for key, frame in _groups(items, by_cols):
        block = _item_block(frame, by_cols)
        keys = dict(zip(by_cols, key, strict=True))
        for rec in _item_rows(block, grouped=bool(by_cols), lo=scale_min, hi=scale_max):
            rows.append({**keys, **rec})
    out = pd.DataFrame(rows, columns=[*by_cols, *ITEM_STATISTICS_COLUMNS])
    out["n"] = out["n"].astype("int64")
    out["note"] = out["note"].fillna("")
    return out


def _item_rows(
    block: pd.DataFrame,
    *,
    grouped: bool,
    lo: float | Mapping[str, float] | None,
    hi: float | Mapping[str, float] | None,
) -> list[dict[str, object]]:
    with warnings.catch_warnings():
        # Item-level screening warnings are already raised by reliability(); here the note
        # column carries them.
        warnings.simplefilter("ignore", ReliabilityWarning)
        scale = _screen(block, grouped=grouped)
    used = scale.names
    k = len(used)
    stats_by_item: dict[str, dict[str, float]] = {}
    if k >= 2:
        c = _pairwise_moments(scale.x).cov
        if np.all(np.isfinite(c)):
            r = _cov2cor(c)
            for i, name in enumerate(used):
                rest = np.delete(np.arange(k), i)
                c_rest = c[np.ix_(rest, rest)]
                r_drop = (c[:, i].sum() - c[i, i]) / math.sqrt(c[i, i] * c_rest.sum())
                stats_by_item[name] = {
                    "r_drop": float(r_drop),
                    "alpha_if_deleted": _alpha_from_cov(c_rest),
                    "alpha_std_if_deleted": _alpha_from_cor(r[np.ix_(rest, rest)]),
                }
    out: list[dict[str, object]] = []
    for col in block.columns:
        name = str(col)
        v = block[col].to_numpy(dtype=float, na_value=np.nan)
        v = v[~np.isnan(v)]
        lo_i, hi_i = _floor_ceiling_bound(lo, name), _floor_ceiling_bound(hi, name)
        if v.size and lo_i is not None and v.min() < lo_i:
            raise ScoringError(f"item {name}: an answer is below scale_min={lo_i}")
        if v.size and hi_i is not None and v.max() > hi_i:
            raise ScoringError(f"item {name}: an answer is above scale_max={hi_i}")
        if grouped and v.size == 0:
            continue  # an item of another scale in this group
        note = ""
        if name in scale.constant:
            note = "no variance: left out of the other items' statistics"
        elif v.size == 0:
            note = "never answered"
        st = stats_by_item.get(name, {})
        if st.get("r_drop", 0.0) < 0:
            note = "correlates negatively with the other items (not reverse-keyed?)"
        out.append(
            {
                "item": name,
                "n": int(v.size),
                "mean": float(v.mean()) if v.size else math.nan,
                "sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                "floor_share": float(np.mean(np.isclose(v, lo_i)))
                if (lo_i is not None and v.size)
                else math.nan,
                "ceiling_share": float(np.mean(np.isclose(v, hi_i)))
                if (hi_i is not None and v.size)
                else math.nan,
                "r_drop": st.get("r_drop", math.nan),
                "alpha_if_deleted": st.get("alpha_if_deleted", math.nan),
                "alpha_std_if_deleted": st.get("alpha_std_if_deleted", math.nan),
                "note": note,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Public API: long layout
# --------------------------------------------------------------------------------------------


def _long_to_wide(
    responses: pd.DataFrame,
    *,
    id_cols: Sequence[str],
    by: Sequence[str],
    item_col: str,
    value_col: str,
) -> pd.DataFrame:
    """Pivot one-answer-per-row responses to one row per id x group, one column per item."""
    if not isinstance(responses, pd.DataFrame):
        raise ScoringError(f"responses must be a pandas DataFrame, got {type(responses).__name__}")
    needed = [*id_cols, *by, item_col, value_col]
    missing = [c for c in needed if c not in responses.columns]
    if missing:
        raise ScoringError(f"responses: column(s) {missing} not found")
    overlap = set(id_cols) & set(by)
    if overlap:
        raise ScoringError(f"responses: column(s) {sorted(overlap)} are in both id_cols and by")
    if not pd.api.types.is_numeric_dtype(responses[value_col]) or pd.api.types.is_bool_dtype(
        responses[value_col]
    ):
        raise ScoringError(f"responses: column {value_col!r} must hold numeric keyed answers")
    # An absent answer and a missing value mean the same here; a row exists only for an id that
    # answered at least one item of the group.
    kept = responses.loc[responses[value_col].notna(), needed]
    index = [*by, *id_cols]
    dup = kept.duplicated(subset=[*index, item_col])
    if dup.any():
        raise ScoringError(
            f"responses: {int(dup.sum())} answer(s) repeat an (id, {', '.join(by)}, item) "
            "combination; each participant answers an item once per group"
        )
    wide = kept.set_index([*index, item_col])[value_col].unstack(item_col)
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index(level=list(by)).reset_index(drop=True)


def reliability_long(
    responses: pd.DataFrame,
    *,
    by: str | Sequence[str] = ("construct", "wave"),
    id_cols: str | Sequence[str] = ("participant",),
    item_col: str = "item",
    value_col: str = "value",
    ci: float = 0.95,
    omega_ci: Literal["bootstrap", "none"] = "bootstrap",
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold: float | None = None,
    omega_method: Literal["ml", "minres"] = "ml",
    omega_flip: bool = True,
) -> pd.DataFrame:
    """:func:`reliability` for long responses: one row per answer, one result row per group.

    Parameters
    ----------
    responses : pandas.DataFrame
        One row per answer, with the `id_cols`, `by`, `item_col` and `value_col` columns, e.g.
        ``participant, wave, construct, item, value``. Values must be keyed. Rows with a missing
        value are treated as not answered.
    by : str or sequence of str, default ("construct", "wave")
        The groups a result row is computed for; a construct's items are the items that occur
        in its group.
    id_cols : str or sequence of str, default ("participant",)
        What identifies one respondent within a group.
    item_col, value_col : str
        The item name and the (keyed, numeric) answer.
    ci, omega_ci, n_boot, seed, threshold, omega_method, omega_flip
        As in :func:`reliability`.

    Returns
    -------
    pandas.DataFrame
        As :func:`reliability` with ``by`` columns first. ``n`` counts the respondents with at
        least one answer in the group.

    Raises
    ------
    ScoringError
        If a column is missing, values are not numeric, or an (id, group, item) answer repeats.

    Notes
    -----
    Pivoting keeps a respondent in a group only if they answered something there, so ``n`` is
    the number of respondents, never padded with empty rows.

    In R: ``psych::alpha(tidyr::pivot_wider(d, names_from = item, values_from = value)[items])``
    per group, and ``psych::omega(..., nfactors = 1, fm = "ml")``.

    References
    ----------
    .. [1] Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for
       coefficient alpha. Applied Psychological Measurement, 11(1), 93-103.
    .. [2] McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
    """
    by_cols = _as_list(by)
    ids = _as_list(id_cols)
    wide = _long_to_wide(responses, id_cols=ids, by=by_cols, item_col=item_col, value_col=value_col)
    return reliability(
        wide,
        by=by_cols,
        ci=ci,
        omega_ci=omega_ci,
        n_boot=n_boot,
        seed=seed,
        threshold=threshold,
        omega_method=omega_method,
        omega_flip=omega_flip,
    )


def item_statistics_long(
    responses: pd.DataFrame,
    *,
    by: str | Sequence[str] = ("construct", "wave"),
    id_cols: str | Sequence[str] = ("participant",),
    item_col: str = "item",
    value_col: str = "value",
    scale_min: float | Mapping[str, float] | None = None,
    scale_max: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """:func:`item_statistics` for long responses (one row per answer).

    Parameters
    ----------
    responses : pandas.DataFrame
        As in :func:`reliability_long`.
    by, id_cols, item_col, value_col
        As in :func:`reliability_long`.
    scale_min, scale_max : float or mapping of item name to float, optional
        As in :func:`item_statistics`.

    Returns
    -------
    pandas.DataFrame
        As :func:`item_statistics`, one row per group x item.

    Raises
    ------
    ScoringError
        As :func:`reliability_long` and :func:`item_statistics`.

    Notes
    -----
    In R: ``psych::alpha(wide_items)$item.stats`` and ``$alpha.drop`` per group.

    References
    ----------
    .. [1] Revelle, W. (2022). psych: Procedures for psychological, psychometric, and
       personality research (R package version 2.2.9).
    """
    by_cols = _as_list(by)
    ids = _as_list(id_cols)
    wide = _long_to_wide(responses, id_cols=ids, by=by_cols, item_col=item_col, value_col=value_col)
    return item_statistics(wide, by=by_cols, scale_min=scale_min, scale_max=scale_max)
