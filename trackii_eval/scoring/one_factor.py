"""The one-factor model behind omega total: ML by Newton / Fisher scoring, minres, and omega.

Maximum likelihood fits ``Sigma = lambda lambda' + diag(psi)`` to a correlation matrix ``R`` by
minimising ``F = log|Sigma| + tr(R Sigma^-1)`` with every uniqueness held in psych's
``[0.005, 1]`` (``psych::fa(fm = "ml")`` bounds them so). With ``k`` items there are only ``2k``
parameters, so each Newton or Fisher-scoring step is one small linear solve, and a whole batch of
correlation matrices (the starts of one fit, or every bootstrap replicate) is iterated at once
with batched numpy: a few milliseconds instead of a scipy optimisation per matrix.

Gradient and expected information (Jennrich & Robinson, 1969; Lee & Jennrich, 1979): with
``S = Sigma^-1`` and ``M = S - S R S``, ``dF/dlambda = 2 M lambda``, ``dF/dpsi = diag(M)``, and
the information is ``tr(S dSigma_a S dSigma_b)``, which for one factor is, with ``u = S lambda``
and ``c = lambda' u``::

    I_ll = 2 (u u' + c S),   I_lp[i, j] = 2 S_ij u_j,   I_pp = S * S (elementwise).

The exact Hessian is ``-T(S, S) + 2 T(S, SRS)`` plus ``2M`` in the loadings block, where
``T(X, Y)_ab = tr(X dSigma_a Y dSigma_b)`` (see :func:`_trace_form`; at a perfect fit it equals
the information). A step is Newton's where that Hessian is positive definite (quadratic
convergence near the optimum, typically 5-10 steps) and Fisher scoring's elsewhere. Bounds are
an active set: a uniqueness at a bound whose gradient points out of the box is held there, one a
step would carry across is put on the bound; the step is halved until ``F`` does not increase,
and iteration stops when the largest step is below ``1e-10``.

Near-Heywood correlation matrices can have several local minima under the bounds, so a point
estimate starts from ``1 - SMC`` (with loadings in closed form from it), from
``psi = 0.5`` and from each item at the lower bound, all in one batch, and keeps the lowest
``F``: the ML estimate, as psych's reported one is.

References
----------
.. [1] Joreskog, K. G. (1967). Some contributions to maximum likelihood factor analysis.
   Psychometrika, 32(4), 443-482.
.. [2] Jennrich, R. I., & Robinson, S. M. (1969). A Newton-Raphson algorithm for maximum
   likelihood factor analysis. Psychometrika, 34(1), 111-123.
.. [3] Lee, S.-Y., & Jennrich, R. I. (1979). A study of algorithms for covariance structure
   analysis with specific comparisons using factor analysis. Psychometrika, 44(1), 99-113.
.. [4] McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = [
    "PSI_MAX",
    "PSI_MIN",
    "OneFactorFit",
    "fit_one_factor_minres",
    "fit_one_factor_ml",
    "minres_batch",
    "ml_multistart",
    "omega_from_loadings",
    "smc",
]

# psych::fa bounds every uniqueness to [0.005, 1] when it fits a correlation matrix; the same
# bounds make Heywood cases end where psych's end.
PSI_MIN = 0.005
PSI_MAX = 1.0
_TOL = 1e-10
_MAX_ITER = 500
_MAX_HALVINGS = 20


@dataclass(frozen=True)
class OneFactorFit:
    """One-factor ML fits of a batch of correlation matrices (B of them, k items).

    Attributes
    ----------
    loadings, uniquenesses : numpy.ndarray, shape (B, k)
    discrepancy : numpy.ndarray, shape (B,)
        ``F = log|Sigma| + tr(R Sigma^-1)`` at the estimate (without the constant
        ``-log|R| - k``).
    iterations : numpy.ndarray, shape (B,)
        Fisher-scoring iterations taken.
    converged : numpy.ndarray of bool, shape (B,)
    """

    loadings: np.ndarray
    uniquenesses: np.ndarray
    discrepancy: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def smc(r: np.ndarray) -> np.ndarray:
    """Squared multiple correlations of each item on the others, the usual communality start.

    Parameters
    ----------
    r : numpy.ndarray, shape (k, k)
        A correlation matrix.

    Returns
    -------
    numpy.ndarray, shape (k,)
        ``1 - 1 / diag(R^-1)``; where R is singular or indefinite, each item's largest absolute
        correlation (clipped to [0.05, 0.95]) instead, which is always a usable start.
    """
    try:
        inv = np.linalg.inv(r)
        out = 1.0 - 1.0 / np.diag(inv)
    except np.linalg.LinAlgError:
        out = np.full(r.shape[0], 0.5)
    if not np.all(np.isfinite(out)) or np.any(out <= 0) or np.any(out >= 1):
        off = np.abs(r - np.diag(np.diag(r)))
        out = np.clip(off.max(axis=1), 0.05, 0.95)
    return out


def _inverse_and_discrepancy(
    r: np.ndarray, lam: np.ndarray, psi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``Sigma^-1`` (Woodbury) and ``F = log|Sigma| + tr(R Sigma^-1)`` for a batch (B, k)."""
    a = lam / psi
    d = 1.0 + np.sum(lam * a, axis=1)
    s = -a[:, :, None] * a[:, None, :] / d[:, None, None]
    idx = np.arange(lam.shape[1])
    s[:, idx, idx] += 1.0 / psi
    logdet = np.sum(np.log(psi), axis=1) + np.log(d)
    f = logdet + np.einsum("bij,bji->b", r, s)
    return s, f


def _trace_form(x: np.ndarray, y: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``T_ab = tr(X dSigma_a Y dSigma_b)`` over (lambda, psi) for symmetric X, Y (B, 2k, 2k).

    With ``dSigma/dlambda_i = e_i lambda' + lambda e_i'`` and ``dSigma/dpsi_i = e_i e_i'``:
    ``T_ll = xl yl' + yl xl' + X (l'Y l) + Y (l'X l)``, ``T_lp[i, j] = X_ij yl_j + xl_j Y_ij``,
    ``T_pp = X * Y``, where ``xl = X lambda`` and ``yl = Y lambda``.
    """
    b, k = lam.shape
    xl = np.einsum("bij,bj->bi", x, lam)
    yl = np.einsum("bij,bj->bi", y, lam)
    lxl = np.sum(lam * xl, axis=1)[:, None, None]
    lyl = np.sum(lam * yl, axis=1)[:, None, None]
    out = np.empty((b, 2 * k, 2 * k))
    out[:, :k, :k] = (
        xl[:, :, None] * yl[:, None, :] + yl[:, :, None] * xl[:, None, :] + x * lyl + y * lxl
    )
    cross = x * yl[:, None, :] + y * xl[:, None, :]
    out[:, :k, k:] = cross
    out[:, k:, :k] = np.swapaxes(cross, 1, 2)
    out[:, k:, k:] = x * y
    return out


def _derivatives(
    r: np.ndarray, lam: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient (B, 2k), expected information and exact Hessian (B, 2k, 2k) of F.

    Parameters are ordered (lambda, psi); ``s`` is ``Sigma^-1`` at (lambda, psi).
    """
    k = lam.shape[1]
    srs = s @ r @ s
    m = s - srs
    g = np.concatenate([2.0 * np.einsum("bij,bj->bi", m, lam), np.diagonal(m, 0, 1, 2)], axis=1)
    info = _trace_form(s, s, lam)
    hess = 2.0 * _trace_form(s, srs, lam) - info
    idx = np.arange(k)
    hess[:, idx[:, None], idx[None, :]] += 2.0 * m
    return g, info, hess


def _score_step(
    r: np.ndarray, lam: np.ndarray, psi: np.ndarray, s: np.ndarray, *, to_bounds: bool = True
) -> np.ndarray:
    """The Newton (or Fisher-scoring) step ``delta`` (new = old - delta), batched (B, 2k).

    Bounds are an active set: a uniqueness at a bound whose gradient points out of the box is
    held (``delta = 0``), and one the step would carry across a bound is put on it (``delta``
    prescribed) while the other parameters take the step that is best given that move, i.e.
    the rows of the fixed parameters in ``I delta = g`` are replaced by ``delta_i = given``.
    With ``to_bounds=False`` only the held uniquenesses are fixed (the caller then projects).
    """
    b, k = lam.shape
    g, info, hess = _derivatives(r, lam, s)
    # Newton where the exact Hessian is positive definite (quadratic convergence near the
    # optimum), Fisher scoring elsewhere (always positive definite, linear convergence).
    try:
        np.linalg.cholesky(hess)  # the usual case near the optimum: every Hessian is
        newton = np.ones(b, dtype=bool)
    except np.linalg.LinAlgError:
        scale = np.abs(np.diagonal(hess, 0, 1, 2)).max(axis=1)
        newton = np.linalg.eigvalsh(hess)[:, 0] > 1e-8 * scale
    info = np.where(newton[:, None, None], hess, info)
    g_psi = g[:, k:]
    fixed = ((psi <= PSI_MIN) & (g_psi > 0)) | ((psi >= PSI_MAX) & (g_psi < 0))
    given = np.zeros_like(psi)
    eye = np.eye(2 * k)
    for _ in range(k + 1):
        rows = np.concatenate([np.zeros_like(fixed), fixed], axis=1)
        system = np.where(rows[:, :, None], eye[None, :, :], info)
        rhs = np.where(rows, np.concatenate([np.zeros_like(given), given], axis=1), g)
        try:
            step = np.linalg.solve(system, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([_solve_or_gradient(system[i], rhs[i]) for i in range(b)])
        if not to_bounds:
            break
        target = psi - step[:, k:]
        low, high = (target < PSI_MIN) & ~fixed, (target > PSI_MAX) & ~fixed
        if not (low.any() or high.any()):
            break
        given = np.where(low, psi - PSI_MIN, np.where(high, psi - PSI_MAX, given))
        fixed = fixed | low | high
    return step


def _solve_or_gradient(info: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One singular information matrix in a batch: a least-squares step (gradient if that fails)."""
    try:
        return np.linalg.lstsq(info, g, rcond=None)[0]
    except np.linalg.LinAlgError:
        return 1e-3 * g


def fisher_scoring(
    r: np.ndarray,
    lam: np.ndarray,
    psi: np.ndarray,
    *,
    tol: float = _TOL,
    max_iter: int = _MAX_ITER,
) -> OneFactorFit:
    """Bounded one-factor ML by Newton / Fisher scoring, for a batch of correlation matrices.

    All matrices iterate together (batched numpy); each leaves the batch when it converges.

    Parameters
    ----------
    r : numpy.ndarray, shape (B, k, k)
        Positive definite correlation matrices.
    lam, psi : numpy.ndarray, shape (B, k)
        Starting loadings (not all zero) and uniquenesses (clipped into [0.005, 1]).
    tol : float
        Stop when no parameter moves more than this in a step.
    max_iter : int
        Iterations at most; a matrix still moving then is returned with ``converged`` False.

    Returns
    -------
    OneFactorFit
    """
    lam = np.array(lam, dtype=float, copy=True)
    psi = np.clip(np.array(psi, dtype=float, copy=True), PSI_MIN, PSI_MAX)
    b = lam.shape[0]
    s, f = _inverse_and_discrepancy(r, lam, psi)
    iters = np.zeros(b, dtype=int)
    done = np.zeros(b, dtype=bool)
    active = np.arange(b)
    for _ in range(max_iter):
        ra, la, pa, sa, fa = r[active], lam[active], psi[active], s[active], f[active]
        step = _score_step(ra, la, pa, sa)
        size = np.max(np.abs(step), axis=1)
        cand_l, cand_p, cs, cf, worse = _line_search(ra, la, pa, fa, step)
        if worse.any():
            # The active-set step is not always a descent direction once bounds are involved;
            # the plainly projected step is (it only takes more halvings).
            w = np.flatnonzero(worse)
            alt = _score_step(ra[w], la[w], pa[w], sa[w], to_bounds=False)
            cand_l[w], cand_p[w], cs[w], cf[w], worse[w] = _line_search(
                ra[w], la[w], pa[w], fa[w], alt
            )
        # A step that no halving makes acceptable leaves the parameters where they are; that is
        # convergence when the step was already negligible (F only wobbling in its last digits).
        cand_l[worse], cand_p[worse] = la[worse], pa[worse]
        cs[worse], cf[worse] = sa[worse], fa[worse]
        lam[active], psi[active], s[active], f[active] = cand_l, cand_p, cs, cf
        iters[active] += 1
        converged = (size < tol) | (worse & (size < 1e-6))
        done[active[converged]] = True
        finished = converged | worse
        active = active[~finished]
        if active.size == 0:
            break
    return OneFactorFit(lam, psi, f, iters, done)


def _line_search(
    r: np.ndarray, lam: np.ndarray, psi: np.ndarray, f: np.ndarray, step: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step halving until F does not increase; psi projected onto the box. Batched.

    Returns the candidate loadings, uniquenesses, ``Sigma^-1``, F, and the mask of matrices for
    which no halving was acceptable.
    """
    k = lam.shape[1]
    cand_l = lam - step[:, :k]
    cand_p = np.clip(psi - step[:, k:], PSI_MIN, PSI_MAX)
    cs, cf = _inverse_and_discrepancy(r, cand_l, cand_p)
    # Rounding lets F wobble by a few ulps at the optimum; only a real increase is refused.
    slack = 1e-12 * np.maximum(np.abs(f), 1.0)
    worse = ~(np.isfinite(cf) & (cf <= f + slack))
    t = 1.0
    for _ in range(_MAX_HALVINGS):
        if not worse.any():
            break
        t *= 0.5
        w = np.flatnonzero(worse)
        cand_l[w] = lam[w] - t * step[w, :k]
        cand_p[w] = np.clip(psi[w] - t * step[w, k:], PSI_MIN, PSI_MAX)
        cs[w], cf[w] = _inverse_and_discrepancy(r[w], cand_l[w], cand_p[w])
        worse[w] = ~(np.isfinite(cf[w]) & (cf[w] <= f[w] + slack[w]))
    return cand_l, cand_p, cs, cf, worse


def _concentrated_loadings(r: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """The best loadings for given uniquenesses (Joreskog, 1967), batched (B, k).

    From the leading eigenpair ``(theta, v)`` of ``Psi^-1/2 R Psi^-1/2``:
    ``lambda = Psi^1/2 v sqrt(theta - 1)``. Where ``theta <= 1`` (no common variance at this
    ``Psi``) the loadings ``sqrt(1 - psi)`` along ``v`` start the search instead of zeros.
    """
    sq = np.sqrt(psi)
    theta, vec = np.linalg.eigh(r / (sq[:, :, None] * sq[:, None, :]))
    lead = vec[:, :, -1] * np.where(vec[:, :, -1].sum(axis=1) < 0, -1.0, 1.0)[:, None]
    scale = np.sqrt(np.maximum(theta[:, -1] - 1.0, 0.0))
    lam = sq * lead * scale[:, None]
    weak = scale < 1e-3
    if weak.any():
        lam[weak] = np.sign(lead[weak] + 1e-300) * np.sqrt(np.maximum(1.0 - psi[weak], 0.01))
    return lam


def _starts(r: np.ndarray) -> np.ndarray:
    """Starting uniquenesses (k + 2, k): ``1 - SMC``, 0.5 everywhere, each item at the bound."""
    k = r.shape[0]
    base = np.clip(1.0 - smc(r), PSI_MIN, PSI_MAX)
    heywood = np.repeat(base[None, :], k, axis=0)
    heywood[np.arange(k), np.arange(k)] = PSI_MIN
    return np.vstack([base, np.full(k, 0.5), heywood])


def ml_multistart(r: np.ndarray) -> OneFactorFit:
    """The ML fit of each matrix from every start of :func:`_starts`, best start kept (batched).

    Parameters
    ----------
    r : numpy.ndarray, shape (B, k, k)
        Positive definite correlation matrices.

    Returns
    -------
    OneFactorFit
        One fit per matrix: the converged start with the lowest discrepancy (the first start
        wins ties within 1e-12), loadings signed to sum to >= 0.
    """
    b, k = r.shape[0], r.shape[1]
    psi0 = np.concatenate([_starts(r[i]) for i in range(b)])  # (b * (k + 2), k)
    rr = np.repeat(r, k + 2, axis=0)
    fit = fisher_scoring(rr, _concentrated_loadings(rr, psi0), psi0)
    f = np.where(np.isfinite(fit.discrepancy), fit.discrepancy, np.inf).reshape(b, k + 2)
    # The first start within 1e-12 of the minimum: ties go to the usual 1 - SMC start.
    best = np.argmax(f <= f.min(axis=1, keepdims=True) + 1e-12, axis=1)
    pick = np.arange(b) * (k + 2) + best
    lam = fit.loadings[pick]
    lam = lam * np.where(lam.sum(axis=1) < 0, -1.0, 1.0)[:, None]
    return OneFactorFit(
        lam,
        fit.uniquenesses[pick],
        fit.discrepancy[pick],
        fit.iterations.reshape(b, k + 2).sum(axis=1),
        np.isfinite(f.min(axis=1)) & fit.converged[pick],
    )


def fit_one_factor_ml(r: np.ndarray) -> np.ndarray | None:
    """Loadings of the one-factor ML fit of one correlation matrix (uniquenesses in [0.005, 1]).

    Parameters
    ----------
    r : numpy.ndarray, shape (k, k)
        A positive definite correlation matrix, k >= 3.

    Returns
    -------
    numpy.ndarray, shape (k,), or None
        The loadings (signed to sum to >= 0) of the best of several starts, as psych's
        ``fa(r, nfactors = 1, fm = "ml")``; None if no start converged.
    """
    fit = ml_multistart(r[None, :, :])
    if not fit.converged[0]:
        return None
    return fit.loadings[0]


def _minres_loadings(psi: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Leading principal axis of R with communalities ``1 - psi`` on the diagonal."""
    reduced = r.copy()
    np.fill_diagonal(reduced, 1.0 - psi)
    vals, vecs = np.linalg.eigh(reduced)
    return vecs[:, -1] * math.sqrt(max(vals[-1], 0.0))


def fit_one_factor_minres(r: np.ndarray) -> np.ndarray | None:
    """Loadings minimizing the squared off-diagonal residuals (minres) of one correlation matrix.

    Parametrized, as psych's ``fa(fm = "minres")`` is, by uniquenesses in [0.005, 1] whose
    complements are put on the diagonal, the loadings being that matrix's leading principal
    axis. Away from the bounds this is the ordinary minres optimum; at a Heywood case it stops
    where psych's bounded search stops, which a bound on the loadings themselves would not.

    Parameters
    ----------
    r : numpy.ndarray, shape (k, k)
        A correlation matrix (need not be positive definite).

    Returns
    -------
    numpy.ndarray, shape (k,)
        Loadings, signed to sum to >= 0.
    """
    k = r.shape[0]
    lower = np.tril_indices(k, -1)

    def objective(psi: np.ndarray) -> float:
        lam = _minres_loadings(psi, r)
        return float(np.sum((r - np.outer(lam, lam))[lower] ** 2))

    start = np.clip(1.0 - smc(r), PSI_MIN, PSI_MAX)
    # No closed-form gradient through the eigenvector; k is small, so finite differences are
    # cheap, and a tight tolerance keeps their error far below what omega is reported to.
    res = optimize.minimize(
        objective,
        start,
        method="L-BFGS-B",
        bounds=[(PSI_MIN, PSI_MAX)] * k,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000, "eps": 1e-9},
    )
    lam = _minres_loadings(res.x, r)
    return lam if lam.sum() >= 0 else -lam


def minres_batch(
    r: np.ndarray, lam0: np.ndarray, max_iter: int = 5000, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Minres loadings of a batch of correlation matrices (B, k, k) by iterated principal axes.

    The fixed points of iterated principal axes are the minres solutions; every matrix starts
    at ``lam0`` (the full-sample loadings, so few iterations are needed). Returns the loadings
    (B, k) and a converged mask (B,).
    """
    b, k = r.shape[0], r.shape[1]
    lam = np.broadcast_to(lam0, (b, k)).copy()
    done = np.zeros(b, dtype=bool)
    active = np.arange(b)
    idx = np.arange(k)
    for _ in range(max_iter):
        ra, la = r[active], lam[active]
        reduced = ra.copy()
        reduced[:, idx, idx] = np.minimum(la * la, 1.0 - PSI_MIN)
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


def omega_from_loadings(r: np.ndarray, lam: np.ndarray, flip: bool) -> np.ndarray:
    """Omega total as psych computes it: ``(1'R1 - sum(1 - lambda^2)) / 1'R1``, batched.

    Parameters
    ----------
    r : numpy.ndarray, shape (..., k, k)
        Correlation matrices.
    lam : numpy.ndarray, shape (..., k)
        Their one-factor loadings.
    flip : bool
        Reverse items that load negatively first (``R`` becomes ``KRK`` with
        ``K = diag(sign(lambda))``), as ``psych::omega(flip = TRUE)`` does.

    Returns
    -------
    numpy.ndarray, shape (...)
    """
    key = np.where(lam < 0, -1.0, 1.0) if flip else np.ones_like(lam)
    vt = np.einsum("...i,...ij,...j->...", key, r, key)
    return (vt - np.sum(1.0 - lam**2, axis=-1)) / vt
