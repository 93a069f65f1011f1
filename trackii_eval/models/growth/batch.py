"""Many refits of one design at once: the criterion and BFGS vectorised over responses.

A simulation study refits the same design to thousands of responses. One refit at a time, each
criterion evaluation is a few dozen operations on arrays of a few hundred numbers, so
interpreter overhead dominates. :class:`BatchRefitter` evaluates the profiled REML (or ML)
criterion and its gradient for B responses at once, each at its own θ: every q x q
per-pattern matrix operation is written out entry by entry on (B, K) arrays, and the only
response-dependent statistics are

    P_b[k, a, i, c] = Σ_{participants of pattern k} W_g[a, i] w_{g,b}[c],   w_{g,b} = Z_g' y_{g,b},

(W_g = Z_g'[X_g, y_g]); the y-free Gram matrices S0 are shared by all responses. BFGS runs in
lock step from the template fit's θ and inverse Hessian (see :mod:`.fastrefit`), each
response with its own step length; responses that do not converge, or whose optimum is at the
boundary (a variance near zero), are refitted one by one with the full optimiser.

Scope: one grouping factor (no nested dialogue factor) with statistics in cell mode, the
layout every balanced or pattern-compressed panel gets.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§3, the profiled criterion).

Nocedal, J. and Wright, S. J. (2006). Numerical Optimization, 2nd ed. Springer (§6.1, BFGS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from trackii_eval.errors import ModelError
from trackii_eval.models.growth._threads import single_threaded_blas
from trackii_eval.models.growth.optimize import SINGULAR_TOL

if TYPE_CHECKING:
    from trackii_eval.models.growth.model import GrowthModel

__all__ = ["BatchFits", "BatchRefitter"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class BatchFits:
    """Results of :meth:`BatchRefitter.refit` for B responses.

    Attributes
    ----------
    beta : ndarray, shape (B, p)
    vcov_beta : ndarray, shape (B, p, p)
        σ̂² (X'V⁻¹X)⁻¹ per response.
    sigma : ndarray, shape (B,)
    theta : ndarray, shape (B, n_theta)
    deviance : ndarray, shape (B,)
    converged : ndarray of bool, shape (B,)
    fallback : ndarray of bool, shape (B,)
        Refitted one by one with the full optimiser.
    n_rounds : int
        Lock-step BFGS rounds (criterion evaluations of the batch).
    """

    beta: np.ndarray
    vcov_beta: np.ndarray
    sigma: np.ndarray
    theta: np.ndarray
    deviance: np.ndarray
    converged: np.ndarray
    fallback: np.ndarray
    n_rounds: int


class BatchRefitter:
    """Refit a fitted :class:`GrowthModel`'s design to many responses at once.

    Parameters
    ----------
    model : GrowthModel
        Fitted (``model.fit()`` called): its θ and curvature are the warm start.
    reml : bool
        REML (default) or ML.

    Raises
    ------
    ModelError
        If the design has a nested outer factor, its statistics are not in cell mode, or the
        model has not been fitted (or its fit is at the boundary, where no warm start applies).
    """

    def __init__(self, model: GrowthModel, reml: bool = True) -> None:
        st = model.stats
        if st.D != 1 or st.i_one is not None or st.mode != "cell" or st.S is None:
            raise ModelError(
                "BatchRefitter needs one grouping factor and cell-mode statistics; refit this "
                "design one response at a time with GrowthModel.refit"
            )
        warm = model.warm_state(reml)
        if warm is None:
            raise ModelError(
                "BatchRefitter needs a fitted model with an interior optimum: call fit() first "
                "(boundary fits are refitted one at a time with GrowthModel.refit)"
            )
        self.model = model
        self.reml = reml
        self.x0, self.hinv0 = warm
        self.scale = model.theta_scale
        d = model.design
        self.pos = list(d.theta_pos)
        self.diag = np.array([r == c for r, c in self.pos])
        q, m, p, G, K = st.q, st.m, st.p, st.G, st.K
        self.q, self.m, self.p, self.K, self.G = q, m, p, K, G
        self.n, self.iy = st.n, st.i_y
        n = st.n
        rows = np.arange(n)
        group = d.group
        Z = d.Z
        self._zy = sp.csr_matrix(
            (Z.ravel(), ((group[:, None] * q + np.arange(q)[None, :]).ravel(),
                         np.repeat(rows, q))), shape=(G * q, n))
        self._Xt = np.ascontiguousarray(model.X.T)
        W0 = st.W.copy()
        W0[:, :, self.iy] = 0.0
        cell = st.pattern_of_group  # D == 1: cells are the patterns
        # A_x[(k, a, i), g] = W0[g, a, i] for g in pattern k: sums W0[g, a, i] w[g, c].
        ka = (cell[:, None, None] * q + np.arange(q)[None, :, None]) * m + np.arange(m)
        self._Ax = sp.csr_matrix((W0.ravel(), (ka.ravel(), np.repeat(np.arange(G), q * m))),
                                 shape=(K * q * m, G))
        self._cells = sp.csr_matrix((np.ones(G), (cell, np.arange(G))), shape=(K, G))
        from trackii_eval.models.growth.stats import _cell_grams

        self._S0r = _cell_grams(W0, cell).reshape(K * q * q, m * m)
        XX0 = st.XX[0].copy()
        XX0[self.iy, :] = 0.0
        XX0[:, self.iy] = 0.0
        self._XX0 = XX0.ravel()
        self._t = [[st.T[:, a, b] for b in range(q)] for a in range(q)]
        self._npat = st.n_pat
        self._nT = (st.n_pat @ st.T.reshape(K, q * q)).reshape(q, q)

    # ------------------------------------------------------------------ statistics
    def _stats(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P and the response column of X~'X~, XXy (B, m), for responses Y.

        P has shape (B, K*q*q, m), row (k, a, c) and column i holding P_b[k, a, i, c], so that
        both contractions the criterion needs are batched matrix products.
        """
        B = Y.shape[0]
        q, m, K, G, iy = self.q, self.m, self.K, self.G, self.iy
        w = np.asarray(self._zy @ Y.T).reshape(G, q, B)
        Px = np.asarray(self._Ax @ w.reshape(G, q * B)).reshape(K, q, m, q, B)
        ww = (w[:, :, None, :] * w[:, None, :, :]).reshape(G, q * q * B)
        Py = np.asarray(self._cells @ ww).reshape(K, q, q, B)
        Px[:, :, iy, :, :] = Py
        P = np.ascontiguousarray(Px.transpose(4, 0, 1, 3, 2)).reshape(B, K * q * q, m)
        XXy = np.empty((B, m))
        XXy[:, : self.p] = (self._Xt @ Y.T).T
        XXy[:, iy] = np.einsum("bn,bn->b", Y, Y)
        return P, XXy

    # ------------------------------------------------------------------ criterion
    def _lam(self, theta: np.ndarray) -> list[list[np.ndarray | float]]:
        q = self.q
        lam: list[list[np.ndarray | float]] = [[0.0] * q for _ in range(q)]
        for j, (r, c) in enumerate(self.pos):
            lam[r][c] = theta[:, j : j + 1]  # (B, 1): broadcasts over patterns
        return lam

    def criterion(
        self, x: np.ndarray, P: np.ndarray, XXy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Criterion and gradient (in the optimiser's θ~ = θ * scale) for each response.

        Returns
        -------
        deviance (B,), gradient (B, k), beta (B, p), C = (X'V⁻¹X)⁻¹ (B, p, p), r² (B,)
        (deviance inf where X'V⁻¹X is not positive definite)
        """
        q, m, p, K, iy = self.q, self.m, self.p, self.K, self.iy
        B = x.shape[0]
        lam = self._lam(x / self.scale)
        t = self._t
        R = range(q)
        # A = Λ'TΛ + I per pattern, entry by entry on (B, K) arrays.
        U = [[sum(t[a][b] * lam[b][c] for b in R) for c in R] for a in R]
        A = [[sum(lam[a][c] * U[a][d] for a in R) + (1.0 if c == d else 0.0) for d in R]
             for c in R]
        A = [[np.broadcast_to(A[c][d], (B, K)) for d in R] for c in R]
        Ainv, logdetA = _spd_inv(A, q)
        Pm = [[sum(lam[a][c] * Ainv[c][d] for c in R) for d in R] for a in R]
        M = [[sum(Pm[a][d] * lam[b][d] for d in R) for b in R] for a in R]
        Mf = np.empty((B, K, q * q))
        for a in R:
            for b in R:
                Mf[:, :, a * q + b] = M[a][b]
        Mf = Mf.reshape(B, K * q * q)
        logdet_V = logdetA @ self._npat
        Bm = (self._XX0[None, :] - Mf @ self._S0r).reshape(B, m, m)
        yp = np.matmul(Mf[:, None, :], P)[:, 0, :]
        col = XXy - yp
        Bm[:, :, iy] = col
        Bm[:, iy, :] = col
        xvx = Bm[:, :p, :p]
        dev = np.full(B, np.inf)
        grad = np.zeros((B, len(self.pos)))
        try:
            L = np.linalg.cholesky(xvx)
            ok = np.ones(B, dtype=bool)
        except np.linalg.LinAlgError:
            ok = np.array([np.all(np.linalg.eigvalsh(a) > 0) for a in xvx])
            L = np.zeros_like(xvx)
            if ok.any():
                L[ok] = np.linalg.cholesky(xvx[ok])
        Lok = L[ok]
        Li = np.linalg.inv(Lok)
        C = np.zeros((B, p, p))
        C[ok] = np.matmul(Li.transpose(0, 2, 1), Li)
        xvy = Bm[:, :p, iy]
        beta = np.matmul(C, xvy[:, :, None])[:, :, 0]
        r2 = Bm[:, iy, iy] - np.einsum("bi,bi->b", xvy, beta)
        r2 = np.where(r2 > 0, r2, np.finfo(float).tiny)
        logdet_X = np.zeros(B)
        logdet_X[ok] = 2.0 * np.log(np.diagonal(Lok, axis1=1, axis2=2)).sum(axis=1)
        n = self.n
        df_res = n - p if self.reml else n
        d = logdet_V + df_res * (1.0 + _LOG_2PI + np.log(r2 / df_res))
        if self.reml:
            d = d + logdet_X
        dev[ok] = d[ok]
        # Gradient (see deviance.py): Q = Σ n_k (T - TMT)_k - Σ (I-TM)_k R_k (I-TM)_k'.
        v = np.zeros((B, m))
        v[:, :p] = -beta
        v[:, iy] = 1.0
        Phi = (df_res / r2)[:, None, None] * v[:, :, None] * v[:, None, :]
        if self.reml:
            Phi[:, :p, :p] += C
        RS = (Phi.reshape(B, m * m) @ self._S0r.T).reshape(B, K, q, q)
        u = np.matmul(P, Phi[:, :, iy, None]).reshape(B, K, q, q)
        Rm = RS + u + u.transpose(0, 1, 3, 2) - P[:, :, iy].reshape(B, K, q, q) * Phi[
            :, iy, iy][:, None, None, None]
        TM = [[sum(t[a][b] * M[b][c] for b in R) for c in R] for a in R]
        TMT = [[sum(TM[a][c] * t[c][dd] for c in R) for dd in R] for a in R]
        E = [[(1.0 if a == b else 0.0) - TM[a][b] for b in R] for a in R]
        F = [[sum(E[a][b] * Rm[:, :, b, c] for b in R) for c in R] for a in R]
        Q = [[self._nT[a, dd] - np.broadcast_to(TMT[a][dd], (B, K)) @ self._npat
              - sum(F[a][c] * E[dd][c] for c in R).sum(axis=1) for dd in R] for a in R]
        for j, (r, c) in enumerate(self.pos):
            grad[:, j] = 2.0 * sum(Q[r][k] * (lam[k][c][:, 0] if isinstance(lam[k][c], np.ndarray)
                                              else lam[k][c]) for k in R)
        grad /= self.scale
        grad[~ok] = 0.0
        return dev, grad, beta, C, r2

    # ------------------------------------------------------------------ optimiser
    def refit(self, Y: np.ndarray, *, gtol: float = 1e-6, ftol: float = 1e-14,
              gmax: float = 5e-4, max_rounds: int = 60) -> BatchFits:
        """Refit the design to each row of ``Y`` (shape (B, nobs), finite).

        Returns
        -------
        BatchFits
        """
        Y = np.atleast_2d(np.asarray(Y, dtype=float))
        if Y.shape[1] != self.n or not np.isfinite(Y).all():
            raise ModelError(f"refit needs finite responses of length {self.n} (one per row)")
        with single_threaded_blas():
            return self._refit(Y, gtol, ftol, gmax, max_rounds)

    def _refit(self, Y: np.ndarray, gtol: float, ftol: float, gmax: float,
               max_rounds: int) -> BatchFits:
        B = Y.shape[0]
        k = self.x0.size
        P, XXy = self._stats(Y)
        x = np.repeat(self.x0[None, :], B, axis=0)
        H = np.repeat(self.hinv0[None, :, :], B, axis=0)
        f, g, beta, C, r2 = self.criterion(x, P, XXy)
        step = np.ones(B)
        active = np.isfinite(f)
        ok = np.zeros(B, dtype=bool)
        rounds = 1
        while active.any() and rounds < max_rounds:
            idx = np.flatnonzero(active)
            gi, Hi = g[idx], H[idx]
            d = -np.einsum("bij,bj->bi", Hi, gi)
            slope = np.einsum("bi,bi->b", gi, d)
            bad = ~(slope < 0)
            if bad.any():
                H[idx[bad]] = np.eye(k)
                d[bad] = -gi[bad]
                slope[bad] = -np.einsum("bi,bi->b", gi[bad], gi[bad])
            ginf = np.abs(gi).max(axis=1)
            small = (ginf <= gtol) | ((ginf <= gmax) & (-0.5 * slope <= ftol
                                                         * np.maximum(1.0, np.abs(f[idx]))))
            ok[idx[small]] = True
            active[idx[small]] = False
            keep = ~small
            idx, d, slope = idx[keep], d[keep], slope[keep]
            if idx.size == 0:
                break
            xt = x[idx] + step[idx, None] * d
            ft, gt, bt, Ct, rt = self.criterion(xt, P[idx], XXy[idx])
            rounds += 1
            acc = np.isfinite(ft) & (ft <= f[idx] + 1e-4 * step[idx] * slope)
            ia = idx[acc]
            if ia.size:
                s = xt[acc] - x[ia]
                yv = gt[acc] - g[ia]
                sy = np.einsum("bi,bi->b", s, yv)
                good = sy > 1e-14
                Ha = H[ia]
                Hy = np.einsum("bij,bj->bi", Ha, yv)
                coef = np.where(good, (sy + np.einsum("bi,bi->b", yv, Hy)) / np.where(
                    good, sy * sy, 1.0), 0.0)
                inv = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
                H[ia] = (Ha + coef[:, None, None] * s[:, :, None] * s[:, None, :]
                         - inv[:, None, None] * (Hy[:, :, None] * s[:, None, :]
                                                 + s[:, :, None] * Hy[:, None, :]))
                x[ia], f[ia], g[ia] = xt[acc], ft[acc], gt[acc]
                beta[ia], C[ia], r2[ia] = bt[acc], Ct[acc], rt[acc]
                step[ia] = 1.0
            ir = idx[~acc]
            if ir.size:
                step[ir] *= 0.5
                stuck = ir[step[ir] < 1e-3]
                if stuck.size:
                    # Rounding noise of the criterion: accept a small gradient, else fall back.
                    gs = np.abs(g[stuck]).max(axis=1)
                    ok[stuck] = gs <= gmax
                    active[stuck] = False
        # Equivalent θ with Λ's diagonal >= 0 (the criterion is even in each column of Λ).
        for c in {c for _, c in self.pos}:
            cols = [j for j, (r, cc) in enumerate(self.pos) if cc == c]
            dj = [j for j, (r, cc) in enumerate(self.pos) if cc == c and r == c]
            if dj:
                flip = x[:, dj[0]] < 0
                x[np.ix_(flip, cols)] *= -1.0
        ok &= np.all(x[:, self.diag] >= SINGULAR_TOL, axis=1) & np.isfinite(f)
        n, p = self.n, self.p
        df_res = n - p if self.reml else n
        sigma = np.sqrt(r2 / df_res)
        vcov = sigma[:, None, None] ** 2 * C
        theta = x / self.scale
        fallback = ~ok
        converged = ok.copy()
        for b in np.flatnonzero(fallback):
            fit = self.model._fit_stats(
                self.model.stats.with_response(Y[b], self.model.X, self.model.design.Z,
                                               self.model.design.group),
                Y[b], self.reml, self.model._last_theta)
            beta[b], vcov[b], sigma[b] = fit.beta, fit.vcov_beta, fit.sigma
            theta[b], f[b], converged[b] = fit.theta, fit.deviance, fit.converged
        return BatchFits(beta=beta, vcov_beta=vcov, sigma=sigma, theta=theta, deviance=f,
                         converged=converged, fallback=fallback, n_rounds=rounds)


def _spd_inv(A: list[list[np.ndarray]], q: int) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Inverse and log-determinant of SPD q x q matrices given entry by entry (arrays)."""
    if q == 1:
        return [[1.0 / A[0][0]]], np.log(A[0][0])
    if q == 2:
        det = A[0][0] * A[1][1] - A[0][1] * A[0][1]
        r = 1.0 / det
        off = -A[0][1] * r
        return [[A[1][1] * r, off], [off, A[0][0] * r]], np.log(det)
    L: list[list[np.ndarray]] = [[None] * q for _ in range(q)]  # type: ignore[list-item]
    for j in range(q):
        s = A[j][j] - sum(L[j][k] * L[j][k] for k in range(j)) if j else A[j][j]
        L[j][j] = np.sqrt(s)
        for i in range(j + 1, q):
            tt = A[i][j] - sum(L[i][k] * L[j][k] for k in range(j)) if j else A[i][j]
            L[i][j] = tt / L[j][j]
    logdet = 2.0 * sum(np.log(L[j][j]) for j in range(q))
    Li: list[list[np.ndarray]] = [[None] * q for _ in range(q)]  # type: ignore[list-item]
    for i in range(q):
        Li[i][i] = 1.0 / L[i][i]
        for j in range(i - 1, -1, -1):
            tt = sum(L[i][k] * Li[k][j] for k in range(j, i))
            Li[i][j] = -tt * Li[i][i]
    inv = [[sum(Li[k][r] * Li[k][c] for k in range(max(r, c), q)) for c in range(q)]
           for r in range(q)]
    return inv, logdet
