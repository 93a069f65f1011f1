"""The GLMM criterion: Laplace and adaptive Gauss–Hermite approximations, cluster by cluster.

Model (lme4's notation, Bates et al. 2015): η = offset + Xβ + ZΛ_θ u with spherical random
effects u ~ N(0, I), b = Λ_θ u. The participants (or, with a nested outer factor, the
dialogues) are independent clusters, so the penalised log-likelihood
``f(u) = Σ log p(y | η) - |u|²/2`` separates by cluster. For given (θ, β) the conditional
modes û are found by Newton's method run on every cluster at once (numpy over a batch of
q×q blocks; with an outer factor an arrowhead system per dialogue solved through its Schur
complement), with step halving per cluster. No n×n or (G q)×(G q) matrix is ever formed.

The Laplace deviance (glmer's ``nAGQ = 1``) is

    -2 Σ_c [ f_c(û_c) - ½ log det H_c(û_c) ],    H_c = I + Λ'Z_c' W_c Z_c Λ,

and for a single scalar random effect the adaptive Gauss–Hermite deviance (``nAGQ > 1``) is

    -2 Σ_c log( σ̂_c Σ_k ω_k exp(ℓ_c(û_c + σ̂_c z_k) - (û_c + σ̂_c z_k)²/2 + z_k²/2) ),

σ̂_c = H_c^{-1/2}, (z_k, ω_k) the K-point Gauss–Hermite rule for the standard normal
(Pinheiro and Bates 1995; Liu and Pierce 1994). K = 1 gives the Laplace value exactly.
Constants (binomial coefficients, log y!) are added when the log-likelihood is reported.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.

Pinheiro, J. C. and Bates, D. M. (1995). Approximations to the log-likelihood function in the
nonlinear mixed-effects model. Journal of Computational and Graphical Statistics 4(1), 12-35.

Liu, Q. and Pierce, D. A. (1994). A note on Gauss–Hermite quadrature. Biometrika 81(3),
624-629.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trackii_eval.models.glmm.family import Family

__all__ = ["ClusterProblem", "gauss_hermite"]

# Newton on the conditional modes stops once the largest step is below this; the step after
# it is applied, so the modes are exact to ~1e-16 (quadratic convergence) and the criterion is
# smooth enough for finite-difference derivatives.
_MODE_TOL = 1e-8
_MAX_NEWTON = 200


def gauss_hermite(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log-weights of the K-point Gauss–Hermite rule for ∫ f(z) φ(z) dz.

    Returns
    -------
    nodes, log_weights : ndarray, shape (k,)
        The weights sum to one (standard normal weight function).
    """
    z, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / np.sqrt(2.0 * np.pi)
    return z, np.log(w)


def _reduce(a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    # Sum consecutive runs (rows are sorted by cluster); np.add.reduceat over axis 0.
    return np.add.reduceat(a, starts, axis=0)


def _inv(H: np.ndarray) -> np.ndarray:
    # Batched inverse of (B, q, q) matrices; closed form for q <= 2 (intercept and slope),
    # where LAPACK's per-matrix overhead dominates.
    q = H.shape[-1]
    if q == 1:
        return 1.0 / H
    if q == 2:
        a, b, c, d = H[:, 0, 0], H[:, 0, 1], H[:, 1, 0], H[:, 1, 1]
        det = a * d - b * c
        out = np.empty_like(H)
        out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = d, -b, -c, a
        return out / det[:, None, None]
    return np.linalg.inv(H)


def _solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    # Batched solve of (B, q, q) systems with (B, q) or (B, q, r) right-hand sides.
    if H.shape[-1] == 1:
        return g / (H[:, 0, :] if g.ndim == 2 else H[:, :1, :1])
    if H.shape[-1] == 2:
        Hi = _inv(H)
        return (np.einsum("bij,bj->bi", Hi, g) if g.ndim == 2
                else np.einsum("bij,bjr->bir", Hi, g))
    if g.ndim == 2:
        return np.linalg.solve(H, g[..., None])[..., 0]
    return np.linalg.solve(H, g)


def _logdet(H: np.ndarray) -> np.ndarray:
    # Log-determinants of a batch of symmetric positive definite (B, q, q) matrices.
    if H.shape[-1] == 1:
        return np.log(H[:, 0, 0])
    if H.shape[-1] == 2:
        return np.log(H[:, 0, 0] * H[:, 1, 1] - H[:, 0, 1] * H[:, 1, 0])
    return np.linalg.slogdet(H)[1]


@dataclass
class _Modes:
    u: np.ndarray  # (G, q)
    v: np.ndarray | None  # (D, q_o)


class ClusterProblem:
    """One GLMM's data, arranged by cluster, and its deviance as a function of (θ, β).

    Parameters
    ----------
    family : Family
        Response family (canonical link).
    y, m : ndarray, shape (n,)
        Successes and trials (binomial) or counts and prior weights (Poisson).
    X : ndarray, shape (n, p)
        Fixed-effects matrix.
    Z : ndarray, shape (n, q)
        Participant random-effects matrix.
    group : ndarray of int, shape (n,)
        Participant code per row, 0..G-1, every code observed.
    theta_pos : list of (int, int)
        Positions in Λ (q×q, lower triangular) filled by the participant θ, lme4's order.
    Zo : ndarray, shape (n, q_o), optional
        Outer (dialogue) random-effects matrix.
    outer_of_group : ndarray of int, shape (G,), optional
        Dialogue code of each participant (participants nested in dialogues).
    theta_pos_outer : list of (int, int)
        Positions in Λ_o filled by the outer θ.
    offset : ndarray, shape (n,), optional
        Known part of the linear predictor.
    """

    def __init__(
        self,
        family: Family,
        y: np.ndarray,
        m: np.ndarray,
        X: np.ndarray,
        Z: np.ndarray,
        group: np.ndarray,
        theta_pos: list[tuple[int, int]],
        Zo: np.ndarray | None = None,
        outer_of_group: np.ndarray | None = None,
        theta_pos_outer: list[tuple[int, int]] | None = None,
        offset: np.ndarray | None = None,
    ) -> None:
        self.family = family
        n = len(y)
        G = int(group.max()) + 1
        nested = outer_of_group is not None and Zo is not None
        # Participants sorted by dialogue, rows by participant: every cluster is a contiguous
        # run, so sums per cluster are np.add.reduceat calls.
        g_order = (np.argsort(outer_of_group, kind="stable") if nested
                   else np.arange(G))
        new_code = np.empty(G, dtype=np.intp)
        new_code[g_order] = np.arange(G)
        gcode = new_code[group]
        row_order = np.argsort(gcode, kind="stable")
        self.row_order = row_order
        # internal position k holds the caller's participant g_order[k]
        self.g_order = g_order
        self.g = gcode[row_order]
        self.row_starts = np.flatnonzero(np.r_[True, self.g[1:] != self.g[:-1]])
        self.y = np.asarray(y, float)[row_order]
        self.m = np.asarray(m, float)[row_order]
        self.X = np.asarray(X, float)[row_order]
        self.Z = np.asarray(Z, float)[row_order]
        self.offset = (np.zeros(n) if offset is None else np.asarray(offset, float)[row_order])
        self.n, self.G, self.q = n, G, self.Z.shape[1]
        self.p = self.X.shape[1]
        self.theta_pos = list(theta_pos)
        self.nested = nested
        self.theta_pos_outer = list(theta_pos_outer or []) if nested else []
        if nested:
            assert Zo is not None and outer_of_group is not None
            self.Zo = np.asarray(Zo, float)[row_order]
            self.qo = self.Zo.shape[1]
            d_of_g = np.asarray(outer_of_group)[g_order]
            self.d_of_g = d_of_g
            self.D = int(d_of_g.max()) + 1
            self.g_starts = np.flatnonzero(np.r_[True, d_of_g[1:] != d_of_g[:-1]])
            d_row = d_of_g[self.g]
            self.d_row = d_row
            self.drow_starts = np.flatnonzero(np.r_[True, d_row[1:] != d_row[:-1]])
        self.n_theta = len(self.theta_pos) + len(self.theta_pos_outer)
        self.const = family.constant(self.y, self.m)
        self._modes = _Modes(np.zeros((G, self.q)),
                             np.zeros((self.D, self.qo)) if nested else None)
        self.n_evals = 0

    # ------------------------------------------------------------------ parameters
    def lambdas(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Λ (q×q) and Λ_o (q_o×q_o, or None) from θ in lme4's order."""
        k = len(self.theta_pos)
        L = np.zeros((self.q, self.q))
        for (r, c), t in zip(self.theta_pos, theta[:k], strict=True):
            L[r, c] = t
        if not self.nested:
            return L, None
        Lo = np.zeros((self.qo, self.qo))
        for (r, c), t in zip(self.theta_pos_outer, theta[k:], strict=True):
            Lo[r, c] = t
        return L, Lo

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds of (θ, β): 0 on Λ's diagonals, -inf elsewhere."""
        lb = [0.0 if r == c else -np.inf for r, c in [*self.theta_pos, *self.theta_pos_outer]]
        return np.r_[lb, np.full(self.p, -np.inf)]

    def start_theta(self) -> np.ndarray:
        """lme4's start: 1 on the diagonals, 0 elsewhere."""
        return np.array([1.0 if r == c else 0.0
                         for r, c in [*self.theta_pos, *self.theta_pos_outer]])

    # ------------------------------------------------------------------ criterion
    def deviance(self, x: np.ndarray, nagq: int = 1) -> float:
        """-2 × (approximate) log-likelihood without constants at x = (θ, β).

        Warm-starts the conditional modes from the previous call.
        """
        self.n_evals += 1
        theta, beta = x[: self.n_theta], x[self.n_theta:]
        val, modes = self._evaluate(theta, beta, nagq, self._modes)
        if np.isfinite(val):
            self._modes = modes
        return val

    def deviance_and_gradient(self, x: np.ndarray, nagq: int = 1) -> tuple[float, np.ndarray]:
        """The deviance and its exact gradient over (θ, β).

        The gradient is the total derivative through the conditional modes (implicit
        function theorem: dû/dψ = H⁻¹ ∂g/∂ψ), and for quadrature through the nodes'
        centres and scales as well. Warm-starts like :meth:`deviance`.
        """
        self.n_evals += 1
        theta, beta = x[: self.n_theta], x[self.n_theta:]
        L, Lo = self.lambdas(theta)
        off = self.offset + self.X @ beta
        if not np.all(np.isfinite(off)):
            return np.inf, np.full(x.size, np.nan)
        if self.nested:
            assert Lo is not None
            val, modes, grad = self._nested(off, self.Z @ L, self.Zo @ Lo, self._modes,
                                            want_grad=True)
        else:
            val, modes, grad = self._simple(off, self.Z @ L, nagq, self._modes,
                                            want_grad=True)
        if np.isfinite(val):
            self._modes = modes
        return val, grad

    def conditional_modes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """û (G, q) in the caller's participant order and v̂ (D, q_o) at x, on the b = Λu scale."""
        theta, beta = x[: self.n_theta], x[self.n_theta:]
        _, modes = self._evaluate(theta, beta, 1, self._modes)
        L, Lo = self.lambdas(theta)
        b = np.empty_like(modes.u)
        b[self.g_order] = modes.u @ L.T
        bo = None if modes.v is None or Lo is None else modes.v @ Lo.T
        return b, bo

    def cluster_terms(
        self, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For a scalar random effect without outer factor: per-cluster pieces at x.

        Returns the rows' offset + Xβ, the rows' Z·θ, the cluster of each row (internal
        order) and the conditional modes û — what an independent quadrature needs.
        """
        theta, beta = x[: self.n_theta], x[self.n_theta:]
        _, modes = self._evaluate(theta, beta, 1, self._modes)
        return self.offset + self.X @ beta, self.Z[:, 0] * theta[0], self.g, modes.u[:, 0]

    def _evaluate(
        self, theta: np.ndarray, beta: np.ndarray, nagq: int, start: _Modes
    ) -> tuple[float, _Modes]:
        L, Lo = self.lambdas(theta)
        Zt = self.Z @ L
        off = self.offset + self.X @ beta
        if not np.all(np.isfinite(off)):
            return np.inf, start
        if self.nested:
            assert Lo is not None and start.v is not None
            return self._nested(off, Zt, self.Zo @ Lo, start)
        return self._simple(off, Zt, nagq, start)

    # ------------------------------------------------------------------ one level
    def _simple(
        self, off: np.ndarray, Zt: np.ndarray, nagq: int, start: _Modes,
        want_grad: bool = False,
    ) -> tuple[Any, ...]:
        fam, y, m, g, rs = self.family, self.y, self.m, self.g, self.row_starts
        q = self.q
        ZZ = Zt[:, :, None] * Zt[:, None, :]
        eye = np.eye(q)

        def at(u: np.ndarray) -> tuple[np.ndarray, ...]:
            eta = off + np.einsum("nq,nq->n", Zt, u[g]) if q > 1 else off + Zt[:, 0] * u[g, 0]
            ll, r, w = fam.score_weight(eta, y, m)
            f = _reduce(ll, rs) - 0.5 * np.einsum("gq,gq->g", u, u)
            return f, r, w, ll

        u = start.u.copy()
        f, r, w, _ = at(u)
        for _ in range(_MAX_NEWTON):
            grad = _reduce(Zt * r[:, None], rs) - u
            H = eye + _reduce(w[:, None, None] * ZZ, rs)
            step = _solve(H, grad)
            small = float(np.max(np.abs(step))) < _MODE_TOL
            u_new = u + step
            f_new, r_new, w_new, _ = at(u_new)
            # Step halving per cluster: the penalised log-likelihood is concave, so a
            # shortened Newton step always increases it.
            for _half in range(40):
                bad = ~(f_new >= f - 1e-12 * (1.0 + np.abs(f)))
                if not bad.any():
                    break
                step[bad] *= 0.5
                u_new = u + step
                f_new, r_new, w_new, _ = at(u_new)
            u, f, r, w = u_new, f_new, r_new, w_new
            if small:
                break
        else:
            return (np.inf, start, None) if want_grad else (np.inf, start)
        H = eye + _reduce(w[:, None, None] * ZZ, rs)
        if not np.all(np.isfinite(f)):
            return (np.inf, start, None) if want_grad else (np.inf, start)
        if want_grad:
            return self._with_gradient(off, Zt, u, r, w, H, f, nagq)
        if nagq <= 1:
            return float(-2.0 * np.sum(f - 0.5 * _logdet(H))), _Modes(u, None)
        # Adaptive Gauss–Hermite for a scalar random effect (q == 1).
        z, logw = gauss_hermite(nagq)
        sd = 1.0 / np.sqrt(H[:, 0, 0])  # (G,)
        nodes = u[:, 0][:, None] + sd[:, None] * z[None, :]  # (G, K)
        eta = off[:, None] + Zt[:, :1] * nodes[g]  # (n, K)
        llk = _reduce(fam.kernel(eta, y[:, None], m[:, None]), rs)  # (G, K)
        terms = logw[None, :] + llk - 0.5 * nodes**2 + 0.5 * z[None, :] ** 2
        top = terms.max(axis=1)
        logint = np.log(sd) + top + np.log(np.exp(terms - top[:, None]).sum(axis=1))
        return float(-2.0 * np.sum(logint)), _Modes(u, None)

    # ------------------------------------------------------------------ gradient
    def _with_gradient(
        self, off: np.ndarray, Zt: np.ndarray, u: np.ndarray, r: np.ndarray, w: np.ndarray,
        H: np.ndarray, f: np.ndarray, nagq: int,
    ) -> tuple[float, _Modes, np.ndarray]:
        """Deviance and gradient at the converged modes (see deviance_and_gradient)."""
        fam, g, rs, X, Z = self.family, self.g, self.row_starts, self.X, self.Z
        q, p = self.q, self.p
        eta = off + np.einsum("nq,nq->n", Zt, u[g])
        dw = fam.weight_derivative(eta, self.m)
        Hinv = _inv(H)
        HiZt = np.einsum("nab,nb->na", Hinv[g], Zt)  # H_c⁻¹ Zt_j
        lev = np.einsum("na,na->n", Zt, HiZt)  # Zt_j' H⁻¹ Zt_j
        # dû/dβ = -H⁻¹ Σ_j w_j Zt_j x_j'  (G, q, p); total dη/dβ per row
        Ab = _reduce((w[:, None] * Zt)[:, :, None] * X[:, None, :], rs)
        Ub = -np.einsum("gab,gbp->gap", Hinv, Ab)
        Eb = X + np.einsum("na,nap->np", Zt, Ub[g])
        # dû/dθ_k for θ_k at Λ[a, b]: H⁻¹ (e_b Σ z_ja r_j - Σ w_j Zt_j z_ja u_cb)
        nt = len(self.theta_pos)
        Ut = np.empty((self.G, q, nt))
        Et = np.empty((self.n, nt))
        explicit = np.empty(nt)
        for k, (a, b) in enumerate(self.theta_pos):
            za = Z[:, a]
            dg = -_reduce((w * za)[:, None] * Zt, rs) * u[:, b][:, None]
            dg[:, b] += _reduce(za * r, rs)
            Ut[:, :, k] = np.einsum("gab,gb->ga", Hinv, dg)
            Et[:, k] = za * u[g, b] + np.einsum("na,na->n", Zt, Ut[g, :, k])
            explicit[k] = np.sum(w * za * HiZt[:, b])
        if nagq <= 1:
            dev = float(-2.0 * np.sum(f - 0.5 * _logdet(H)))
            gb = -2.0 * (X.T @ r) + (dw * lev) @ Eb
            gt = np.empty(nt)
            for k, (a, b) in enumerate(self.theta_pos):
                gt[k] = (-2.0 * np.sum(r * Z[:, a] * u[g, b]) + np.sum(dw * lev * Et[:, k])
                         + 2.0 * explicit[k])
            return dev, _Modes(u, None), np.r_[gt, gb]
        # Adaptive quadrature, one scalar random effect: Zt = θ z.
        th = float(Zt[0, 0] / Z[0, 0]) if Z[0, 0] != 0 else float(self._theta_scalar(Zt, Z))
        z, logw = gauss_hermite(nagq)
        h = H[:, 0, 0]
        sd = 1.0 / np.sqrt(h)
        # d H / dψ (total): θ² Σ z² w' dη̂ (+ 2θ Σ z² w for θ)
        z0 = Z[:, 0]
        dH = np.empty((self.G, 1 + p))
        dH[:, 1:] = th * th * _reduce((z0 * z0 * dw)[:, None] * Eb, rs)
        dH[:, 0] = th * th * _reduce(z0 * z0 * dw * Et[:, 0], rs) + 2 * th * _reduce(
            z0 * z0 * w, rs)
        dsd = -0.5 * sd[:, None] ** 3 * dH  # (G, P)
        du = np.concatenate([Ut[:, 0, :1], Ub[:, 0, :]], axis=1)  # (G, P)
        nodes = u[:, 0][:, None] + sd[:, None] * z[None, :]  # (G, K)
        eta_k = off[:, None] + Zt[:, :1] * nodes[g]  # (n, K)
        llk_rows, rk, _ = fam.score_weight(eta_k, self.y[:, None], self.m[:, None])
        llk = _reduce(llk_rows, rs)
        terms = logw[None, :] + llk - 0.5 * nodes**2 + 0.5 * z[None, :] ** 2
        top = terms.max(axis=1)
        ex = np.exp(terms - top[:, None])
        tot = ex.sum(axis=1)
        logint = np.log(sd) + top + np.log(tot)
        pi = ex / tot[:, None]  # (G, K) node weights of the posterior
        db = du[:, None, :] + z[None, :, None] * dsd[:, None, :]  # (G, K, P)
        rz = _reduce(rk * z0[:, None], rs)  # (G, K): Σ_j r_jk z_j
        S = th * rz
        dT = (S - nodes)[:, :, None] * db
        dT[:, :, 0] += nodes * rz
        dlog = dsd / sd[:, None] + np.einsum("gk,gkp->gp", pi, dT)
        # the β part of Σ_k π_ck Σ_j r_jk x_j, summed over k first: no (n, K, p) array
        rbar = np.einsum("nk,nk->n", pi[g], rk)
        dlog[:, 1:] += _reduce(rbar[:, None] * X, rs)
        return float(-2.0 * np.sum(logint)), _Modes(u, None), -2.0 * dlog.sum(axis=0)

    @staticmethod
    def _theta_scalar(Zt: np.ndarray, Z: np.ndarray) -> float:
        k = int(np.flatnonzero(Z[:, 0] != 0)[0])
        return float(Zt[k, 0] / Z[k, 0])

    # ------------------------------------------------------------------ nested
    def _nested(
        self, off: np.ndarray, Zt: np.ndarray, Zot: np.ndarray, start: _Modes,
        want_grad: bool = False,
    ) -> tuple[Any, ...]:
        fam, y, m, g = self.family, self.y, self.m, self.g
        rs, gs, drs, dg, dr = (self.row_starts, self.g_starts, self.drow_starts, self.d_of_g,
                               self.d_row)
        q, qo = self.q, self.qo
        ZZ = Zt[:, :, None] * Zt[:, None, :]
        ZZo = Zt[:, :, None] * Zot[:, None, :]
        ZoZo = Zot[:, :, None] * Zot[:, None, :]
        eye, eyeo = np.eye(q), np.eye(qo)

        def at(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
            eta = off + np.einsum("nq,nq->n", Zt, u[g]) + np.einsum("nq,nq->n", Zot, v[dr])
            ll, r, w = fam.score_weight(eta, y, m)
            f = (_reduce(ll, drs) - 0.5 * _reduce(np.einsum("gq,gq->g", u, u), gs)
                 - 0.5 * np.einsum("dq,dq->d", v, v))
            return f, r, w

        def system(u: np.ndarray, v: np.ndarray, r: np.ndarray,
                   w: np.ndarray) -> tuple[np.ndarray, ...]:
            A = eye + _reduce(w[:, None, None] * ZZ, rs)  # (G, q, q)
            B = _reduce(w[:, None, None] * ZZo, rs)  # (G, q, qo)
            Dm = eyeo + _reduce(w[:, None, None] * ZoZo, drs)  # (D, qo, qo)
            gu = _reduce(Zt * r[:, None], rs) - u
            gv = _reduce(Zot * r[:, None], drs) - v
            AiB = _solve(A, B)
            Aig = _solve(A, gu)
            S = Dm - _reduce(np.einsum("gqo,gqp->gop", B, AiB), gs)
            rhs = gv - _reduce(np.einsum("gqo,gq->go", B, Aig), gs)
            return A, S, AiB, Aig, rhs

        u, v = start.u.copy(), start.v.copy()  # type: ignore[union-attr]
        f, r, w = at(u, v)
        for _ in range(_MAX_NEWTON):
            A, S, AiB, Aig, rhs = system(u, v, r, w)
            dv = _solve(S, rhs)
            du = Aig - np.einsum("gqo,go->gq", AiB, dv[dg])
            small = max(float(np.max(np.abs(du))), float(np.max(np.abs(dv)))) < _MODE_TOL
            u_new, v_new = u + du, v + dv
            f_new, r_new, w_new = at(u_new, v_new)
            for _half in range(40):
                bad = ~(f_new >= f - 1e-12 * (1.0 + np.abs(f)))
                if not bad.any():
                    break
                dv[bad] *= 0.5
                du[bad[dg]] *= 0.5
                u_new, v_new = u + du, v + dv
                f_new, r_new, w_new = at(u_new, v_new)
            u, v, f, r, w = u_new, v_new, f_new, r_new, w_new
            if small:
                break
        else:
            return (np.inf, start, None) if want_grad else (np.inf, start)
        if not np.all(np.isfinite(f)):
            return (np.inf, start, None) if want_grad else (np.inf, start)
        A, S, *_ = system(u, v, r, w)
        logdet = _reduce(_logdet(A), gs) + _logdet(S)
        dev = float(-2.0 * np.sum(f - 0.5 * logdet))
        if not want_grad:
            return dev, _Modes(u, v)
        B = _reduce(w[:, None, None] * ZZo, rs)
        return dev, _Modes(u, v), self._nested_gradient(off, Zt, Zot, u, v, r, w, A, B, S)

    def _nested_gradient(
        self, off: np.ndarray, Zt: np.ndarray, Zot: np.ndarray, u: np.ndarray, v: np.ndarray,
        r: np.ndarray, w: np.ndarray, A: np.ndarray, B: np.ndarray, S: np.ndarray,
    ) -> np.ndarray:
        """Exact gradient of the nested Laplace deviance (arrowhead H per dialogue).

        H⁻¹ is never formed: with a_j = A_i⁻¹ Zt_j and c_j = B_i' a_j - Zot_j, the row
        leverage is Zt_j'a_j + c_j'S⁻¹c_j, and H⁻¹ times a row's random-effects vector is
        (a_j + A_i⁻¹B_i S⁻¹ c_j, -S⁻¹ c_j) in (participant, dialogue) slots.
        """
        g, rs, gs, drs, dg, dr = (self.g, self.row_starts, self.g_starts, self.drow_starts,
                                  self.d_of_g, self.d_row)
        X, Z, Zo = self.X, self.Z, self.Zo
        eta = off + np.einsum("nq,nq->n", Zt, u[g]) + np.einsum("nq,nq->n", Zot, v[dr])
        dw = self.family.weight_derivative(eta, self.m)
        Ainv, Sinv = _inv(A), _inv(S)
        AiB = Ainv @ B
        a = np.einsum("nab,nb->na", Ainv[g], Zt)
        c = np.einsum("nqo,nq->no", B[g], a) - Zot
        Sc = np.einsum("nop,np->no", Sinv[dr], c)
        lev = np.einsum("nq,nq->n", Zt, a) + np.einsum("no,no->n", c, Sc)
        hz_u = a + np.einsum("nqo,no->nq", AiB[g], Sc)
        hz_v = -Sc
        # partial derivatives of η (modes held fixed), one column per parameter (θ, β)
        nti, nto = len(self.theta_pos), len(self.theta_pos_outer)
        P = nti + nto + self.p
        PE = np.empty((self.n, P))
        for k, (ra, cb) in enumerate(self.theta_pos):
            PE[:, k] = Z[:, ra] * u[g, cb]
        for k, (ra, cb) in enumerate(self.theta_pos_outer):
            PE[:, nti + k] = Zo[:, ra] * v[dr, cb]
        PE[:, nti + nto:] = X
        wPE = w[:, None] * PE
        GU = -_reduce(Zt[:, :, None] * wPE[:, None, :], rs)  # (G, q, P)
        GV = -_reduce(Zot[:, :, None] * wPE[:, None, :], drs)  # (D, qo, P)
        explicit = np.zeros(P)
        for k, (ra, cb) in enumerate(self.theta_pos):
            GU[:, cb, k] += _reduce(Z[:, ra] * r, rs)
            explicit[k] = 2.0 * np.sum(w * Z[:, ra] * hz_u[:, cb])
        for k, (ra, cb) in enumerate(self.theta_pos_outer):
            GV[:, cb, nti + k] += _reduce(Zo[:, ra] * r, drs)
            explicit[nti + k] = 2.0 * np.sum(w * Zo[:, ra] * hz_v[:, cb])
        # dU/dψ = H⁻¹ ∂g/∂ψ through the Schur complement
        Aig = Ainv @ GU
        rhs = GV - _reduce(np.einsum("gqo,gqp->gop", B, Aig), gs)
        dV = Sinv @ rhs
        dU = Aig - np.einsum("gqo,gop->gqp", AiB, dV[dg])
        E = PE + np.einsum("nq,nqp->np", Zt, dU[g]) + np.einsum("no,nop->np", Zot, dV[dr])
        return -2.0 * (r @ PE) + (dw * lev) @ E + explicit
