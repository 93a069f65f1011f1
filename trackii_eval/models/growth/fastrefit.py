"""Cheap refits of one design to many responses (power simulations, parametric bootstraps).

Two things make a refit of a fixed design cost a fraction of a fit:

* :class:`ResponseUpdater` swaps a new response into the pattern-compressed statistics
  (cell mode of :mod:`.stats`): the y-free parts of the per-cell Gram matrices are computed
  once, and a new response only changes the entries that involve y, obtained from one sparse
  product per participant sum and one per cell sum (no Python loop over cells);
* :func:`warm_bfgs` starts quasi-Newton iterations at the previous optimum θ *and* its
  curvature: the inverse Hessian of the criterion at the template fit, so that the first step
  is already a Newton step and a handful of evaluations reach the optimum of a new response.

Anything unusual (a variance near zero, a non-finite criterion, no convergence within the
iteration budget) is left to the full optimiser of :mod:`.optimize`, so a refit's answer is the
same as a fresh fit's (``tests/models/test_growth_fastpath.py``).

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§3: the profiled criterion; lme4's
``refit`` starts from the previous θ the same way).

Nocedal, J. and Wright, S. J. (2006). Numerical Optimization, 2nd ed. Springer (§6.1, the BFGS
update and the choice of the initial inverse Hessian).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from trackii_eval.errors import ModelError
from trackii_eval.models.growth.stats import SufficientStats, _cell_grams

__all__ = ["ResponseUpdater", "hessian_inverse", "warm_bfgs"]


class ResponseUpdater:
    """Sufficient statistics of a fixed design for any response, in cell mode.

    Parameters
    ----------
    stats : SufficientStats
        The design's statistics (cell mode, as :func:`.stats.compute_stats` made them).
    X, Z : ndarray, shapes (n, p) and (n, q)
        Fixed- and random-effects matrices of the analysis rows.
    group : ndarray of int, shape (n,)
        Participant code per row.
    Zo : ndarray, shape (n, q_o), optional
        The outer factor's random-effects matrix (default a column of ones when the design has
        an outer factor).

    Notes
    -----
    ``stats_for(y)`` returns exactly what ``stats.with_response(y, ...)`` returns (up to
    rounding), at a fraction of the cost: with ``W_i = [W_i^x, w_i]`` (w_i = Z_i'y_i), the cell
    Gram ``sum_i vec(W_i) vec(W_i)'`` has y-free entries (computed once) and entries
    ``sum_i W_i[a, j] w_i[b]`` (one product per participant, summed per cell by a sparse
    indicator).
    """

    def __init__(
        self, stats: SufficientStats, X: np.ndarray, Z: np.ndarray, group: np.ndarray,
        Zo: np.ndarray | None = None,
    ) -> None:
        if stats.mode != "cell" or stats.cell_of_group is None:
            raise ModelError("ResponseUpdater needs statistics in cell mode")
        n = X.shape[0]
        G, q, m = stats.W.shape
        self.stats = stats
        self.n, self.G, self.q, self.m = n, G, q, m
        rows = np.arange(n)
        # w = Z_i'y per participant: one sparse (G*q x n) product.
        self._zy = sp.csr_matrix(
            (Z.ravel(), ((group[:, None] * q + np.arange(q)[None, :]).ravel(),
                         np.repeat(rows, q))),
            shape=(G * q, n),
        )
        # X~'y per outer level (X~ = [X, Z_o]) and y'y per outer level.
        aug = X if stats.i_one is None else np.column_stack(
            [X, np.ones((n, 1)) if Zo is None else Zo]
        )
        self._k = aug.shape[1]
        outer_row = stats.outer_of_group[group]
        D = stats.D
        self._xy = sp.csr_matrix(
            (aug.ravel(), ((outer_row[:, None] * self._k + np.arange(self._k)[None, :]).ravel(),
                           np.repeat(rows, self._k))),
            shape=(D * self._k, n),
        )
        self._outer_row = outer_row if D > 1 else None
        # y-free parts: W with a zero response column, and its cell Gram matrices.
        self._W0 = stats.W.copy()
        self._W0[:, :, stats.i_y] = 0.0
        self._XX0 = stats.XX.copy()
        self._XX0[:, stats.i_y, :] = 0.0
        self._XX0[:, :, stats.i_y] = 0.0
        self._S0 = _cell_grams(self._W0, stats.cell_of_group)
        C = self._S0.shape[0]
        self._cells = sp.csr_matrix(
            (np.ones(G), (stats.cell_of_group, np.arange(G))), shape=(C, G)
        )
        self._C = C

    def stats_for(self, y: np.ndarray) -> SufficientStats:
        """Statistics of the design with response ``y`` (shape (n,), finite)."""
        st = self.stats
        G, q, m, iy, D = self.G, self.q, self.m, st.i_y, st.D
        w = (self._zy @ y).reshape(G, q)
        W = self._W0.copy()
        W[:, :, iy] = w
        # P[c, a, i, b] = sum over the cell's participants of W[a, i] * w[b].
        prod = (W[:, :, :, None] * w[:, None, None, :]).reshape(G, q * m * q)
        P = np.asarray(self._cells @ prod).reshape(self._C, q, m, q)
        S = self._S0.copy()
        S4 = S.reshape(self._C, q, q, m, m)
        S4[:, :, :, :, iy] = P.transpose(0, 1, 3, 2)
        S4[:, :, :, iy, :] = P.transpose(0, 3, 1, 2)
        XX = self._XX0.copy()
        xy = (self._xy @ y).reshape(D, self._k)
        XX[:, : self._k, iy] = xy
        XX[:, iy, : self._k] = xy
        if D == 1:
            XX[0, iy, iy] = float(y @ y)
        else:
            XX[:, iy, iy] = np.bincount(self._outer_row, weights=y * y, minlength=D)
        # A shallow copy with three arrays swapped: dataclasses.replace would re-run __init__
        # over every field, a noticeable share of a sub-millisecond refit.
        new = copy.copy(st)
        object.__setattr__(new, "W", W)
        object.__setattr__(new, "XX", XX)
        object.__setattr__(new, "S", S)
        return new


def hessian_inverse(
    grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rel_step: float = 1e-4
) -> np.ndarray | None:
    """Inverse of the central-difference Hessian of ``grad`` at ``x``; None if not SPD.

    Parameters
    ----------
    grad : callable
        x -> gradient (shape (k,)).
    x : ndarray, shape (k,)
    rel_step : float
        Step relative to max(1, |x_j|).

    Returns
    -------
    ndarray, shape (k, k), or None
    """
    k = x.size
    H = np.empty((k, k))
    for j in range(k):
        h = rel_step * max(1.0, abs(float(x[j])))
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (grad(x + e) - grad(x - e)) / (2.0 * h)
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return None
    try:
        L = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    Linv = np.linalg.inv(L)
    return Linv.T @ Linv


def warm_bfgs(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    hinv0: np.ndarray,
    *,
    gtol: float = 1e-6,
    ftol: float = 1e-14,
    gmax: float = 5e-4,
    max_iter: int = 40,
) -> tuple[np.ndarray, float, np.ndarray, int, bool]:
    """Unconstrained BFGS from a warm start and a warm inverse Hessian.

    Parameters
    ----------
    fun : callable
        x -> (value, gradient).
    x0 : ndarray, shape (k,)
        Start (the previous optimum).
    hinv0 : ndarray, shape (k, k)
        Initial inverse Hessian (the previous optimum's), symmetric positive definite.
    gtol : float
        Stop when max |gradient| <= gtol, or
    ftol, gmax : float
        when max |gradient| <= gmax and the Newton decrement g'Hg/2 (the predicted distance of
        the value from the optimum) is at most ``ftol * max(1, |value|)``: the analytic
        gradient of a criterion of size ~10^4 has rounding noise of ~10^-5, below which no
        line search can make progress.
    max_iter : int
        Iteration budget.

    Returns
    -------
    x, value, gradient : the last iterate
    n_evals : int
    converged : bool
        Whether the gradient test passed (False also after a failed line search).

    References
    ----------
    Nocedal, J. and Wright, S. J. (2006). Numerical Optimization, 2nd ed., Algorithm 6.1 with
    a backtracking Armijo line search.
    """
    x = np.array(x0, dtype=float)
    f, g = fun(x)
    n_evals = 1
    if not np.isfinite(f):
        return x, f, g, n_evals, False
    H = np.array(hinv0, dtype=float)
    for _ in range(max_iter):
        d = -(H @ g)
        slope = float(g @ d)
        gn_inf = float(np.max(np.abs(g)))
        if gn_inf <= gtol or (
            gn_inf <= gmax and 0 <= -0.5 * slope <= ftol * max(1.0, abs(f))
        ):
            return x, f, g, n_evals, True
        if not slope < 0:
            H = np.eye(x.size)
            d = -g
            slope = float(g @ d)
        step = 1.0
        while True:
            xn = x + step * d
            fn, gn = fun(xn)
            n_evals += 1
            if np.isfinite(fn) and fn <= f + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-3:
                # No progress along a descent direction: rounding noise of the criterion. The
                # iterate is the optimum to that precision if the gradient is small and the
                # predicted decrease negligible (~1e-8 of the criterion's units at most).
                ok = gn_inf <= gmax and -0.5 * slope <= 1e-12 * max(1.0, abs(f))
                return x, f, g, n_evals, ok
        s = xn - x
        yv = gn - g
        sy = float(s @ yv)
        if sy > 1e-14:
            # H+ = (I - ρ s y')H(I - ρ y s') + ρ s s', expanded to avoid k x k temporaries.
            Hy = H @ yv
            H = H + ((sy + float(yv @ Hy)) / (sy * sy)) * np.multiply.outer(s, s) - (
                np.multiply.outer(Hy, s) + np.multiply.outer(s, Hy)) / sy
        x, f, g = xn, fn, gn
    return x, f, g, n_evals, float(np.max(np.abs(g))) <= gtol
