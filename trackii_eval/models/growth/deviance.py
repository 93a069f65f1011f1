"""The profiled deviance (ML) and REML criterion of a linear mixed model, with its gradient.

Notation follows Bates et al. (2015, §3): b = Λ_θ u with u ~ N(0, σ² I), so the marginal
covariance of y is σ² V(θ) with V = I + Z Λ Λ' Z'. For participant i with Z_i'Z_i = T_i,

    A_i = Λ' T_i Λ + I = L_i L_i',   log|V_i| = log|A_i|,
    V_i^{-1} = I - Z_i M_i Z_i',      M_i = Λ A_i^{-1} Λ',

so ``X'V^{-1}X``, ``X'V^{-1}y`` and ``y'V^{-1}y`` follow from the per-pattern matrices M_k and the
summed products in :mod:`.stats`. A nested outer factor with random-effects matrix Z_o (q_o
columns: 1 for an outer intercept, [1, time] for ``(time | dialogue)``) and relative covariance
factor Λ_o adds Z_o Λ_o Λ_o' Z_o' per outer level d; with S_d = Z_o'V_P⁻¹Z_o and
A_d = Λ_o' S_d Λ_o + I the Woodbury identity gives

    V_d⁻¹ = V_P⁻¹ - V_P⁻¹ Z_o K_d Z_o' V_P⁻¹,   K_d = Λ_o A_d⁻¹ Λ_o',
    log|V_d| = log|V_P| + log|A_d|,

a rank-q_o correction of the per-level cross-products (Sherman-Morrison for an intercept, where
K_d = λ²/(1 + λ² s_d)). Profiling out β and σ gives (Bates et al. 2015, eqs. 34 and 41)

    d_ML(θ)   = log|V| + n (1 + log(2π r²/n)),
    d_REML(θ) = log|V| + log|X'V^{-1}X| + (n-p) (1 + log(2π r²/(n-p))),

with r² = min_β (y - Xβ)'V^{-1}(y - Xβ). The gradient (our own derivation; compare §3.5 of
Bates et al. for the sparse-Cholesky route) uses ∂V = Z ∂(ΛΛ') Z':

    ∂ log|V|         = Σ_i tr(Z_i'V^{-1}Z_i ∂D),
    ∂ r²             = -Σ_i g_i' ∂D g_i,           g_i = Z_i'(V^{-1}e)_i,
    ∂ log|X'V^{-1}X| = -Σ_i tr(C H_i' ∂D H_i),     H_i = Z_i'(V^{-1}X)_i,  C = (X'V^{-1}X)^{-1},

and Z_i'V_i^{-1} = (I - T_i M_i) Z_i', so each term is a q x q matrix per pattern; with
D = ΛΛ' the derivative with respect to Λ[r, c] of tr(Q ∂D) is 2 (QΛ)[r, c]. For Λ_o the same
three terms with Z_o'V_d⁻¹Z_o = (I - S_d K_d) S_d, Z_o'V_d⁻¹e = (I - S_d K_d) Z_o'V_P⁻¹e and
Z_o'V_d⁻¹X = (I - S_d K_d) Z_o'V_P⁻¹X give Q_o, and the derivative is 2 (Q_o Λ_o)[r, c].

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48. doi:10.18637/jss.v067.i01
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotri as _potri

from trackii_eval.errors import ModelError
from trackii_eval.models.growth.stats import SufficientStats

__all__ = ["Evaluation", "ProfiledDeviance"]

_LOG_2PI = float(np.log(2 * np.pi))


def spd_inverse_logdet(A: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and log-determinant of a stack of small SPD matrices.

    Parameters
    ----------
    A : ndarray, shape (K, q*q)
        Row-major flattened matrices.
    q : int
        Matrix order.

    Returns
    -------
    inv : ndarray, shape (K, q*q)
    logdet : ndarray, shape (K,)

    Notes
    -----
    The Cholesky factorisation and triangular inverse are unrolled over the q x q entries,
    each step one vectorised operation over all K matrices: for q <= 4 this is several times
    faster than numpy's batched LAPACK calls, whose per-call overhead dominates for small
    matrices.
    """
    if q == 1:
        return 1.0 / A, np.log(A[:, 0])
    if q == 2:
        # Closed form: fewer, larger vectorised operations than the general loop below.
        a00, a01, a11 = A[:, 0], A[:, 1], A[:, 3]
        rdet = 1.0 / (a00 * a11 - a01 * a01)
        inv = np.empty_like(A)
        inv[:, 0] = a11 * rdet
        inv[:, 1] = inv[:, 2] = -a01 * rdet
        inv[:, 3] = a00 * rdet
        return inv, -np.log(rdet)
    a = [[A[:, i * q + j] for j in range(q)] for i in range(q)]
    L: list[list[np.ndarray]] = [[None] * q for _ in range(q)]  # type: ignore[list-item]
    for j in range(q):
        s = a[j][j].copy()
        for k in range(j):
            s -= L[j][k] * L[j][k]
        L[j][j] = np.sqrt(s)
        for i in range(j + 1, q):
            t = a[i][j].copy()
            for k in range(j):
                t -= L[i][k] * L[j][k]
            L[i][j] = t / L[j][j]
    logdet = 2.0 * np.log(L[0][0])
    for j in range(1, q):
        logdet += 2.0 * np.log(L[j][j])
    Li: list[list[np.ndarray]] = [[None] * q for _ in range(q)]  # type: ignore[list-item]
    for i in range(q):
        Li[i][i] = 1.0 / L[i][i]
        for j in range(i - 1, -1, -1):
            t = L[i][j] * Li[j][j]
            for k in range(j + 1, i):
                t += L[i][k] * Li[k][j]
            Li[i][j] = -t * Li[i][i]
    out = np.empty_like(A)
    for r in range(q):
        for c in range(r, q):
            v = Li[c][r] * Li[c][c]
            for k in range(c + 1, q):
                v += Li[k][r] * Li[k][c]
            out[:, r * q + c] = v
            out[:, c * q + r] = v
    return out, logdet


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the criterion at θ (and everything derived on the way)."""

    theta: np.ndarray
    deviance: float
    beta: np.ndarray
    C: np.ndarray  # (X'V^{-1}X)^{-1}; vcov(β) = σ² C
    r2: float  # penalised residual sum of squares at β(θ)
    logdet_V: float
    logdet_X: float
    gradient: np.ndarray | None


class ProfiledDeviance:
    """Profiled deviance / REML criterion as a function of θ, for one set of statistics.

    Parameters
    ----------
    stats : SufficientStats
        Sufficient statistics of the data.
    theta_pos : list of (int, int)
        (row, column) in Λ of each participant-level θ, in lme4's order.
    has_outer : bool
        Whether θ ends with the nested outer factor's parameters.
    theta_pos_outer : list of (int, int), optional
        (row, column) in Λ_o of each outer θ (default ``[(0, 0)]``: an outer intercept).

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """

    def __init__(
        self, stats: SufficientStats, theta_pos: list[tuple[int, int]], has_outer: bool,
        theta_pos_outer: list[tuple[int, int]] | None = None,
    ) -> None:
        self.stats = stats
        self.theta_pos = theta_pos
        self.has_outer = has_outer
        if not has_outer:
            theta_pos_outer = []
        elif theta_pos_outer is None:
            theta_pos_outer = [(0, 0)]
        self.theta_pos_outer = list(theta_pos_outer)
        self.q_outer = 1 + max((r for r, _ in self.theta_pos_outer), default=-1)
        self._rows_o = np.array([r for r, _ in self.theta_pos_outer], dtype=np.intp)
        self._cols_o = np.array([c for _, c in self.theta_pos_outer], dtype=np.intp)
        self._T_flat = stats.T.reshape(stats.K, -1)
        self._eye_flat = np.eye(stats.q).ravel()
        self._eye_q = np.eye(stats.q)
        self._iu = np.triu_indices(stats.p, 1)
        self._nT = (stats.n_pat @ self._T_flat).reshape(stats.q, stats.q)
        self._rows = np.array([r for r, _ in theta_pos], dtype=np.intp)
        self._cols = np.array([c for _, c in theta_pos], dtype=np.intp)
        self._flat_pos = self._rows * stats.q + self._cols
        self.n_evals = 0
        self._lean: tuple[np.ndarray, np.ndarray] | None = None
        self._last: tuple | None = None
        if stats.q == 2:
            T = stats.T
            self._t2 = (T[:, 0, 0].copy(), T[:, 0, 1].copy(), T[:, 1, 1].copy())
            self._m2_buf = np.empty((stats.K, 4))

    # ------------------------------------------------------------ lean refit path
    @property
    def simple(self) -> bool:
        """Whether :meth:`value_grad` applies: one grouping factor, cell-mode statistics."""
        st = self.stats
        return not self.has_outer and st.mode == "cell" and st.D == 1 and st.S is not None

    def with_stats(self, stats: SufficientStats) -> ProfiledDeviance:
        """The criterion of the same design for other statistics (a new response).

        Everything that depends only on the design (patterns, Λ positions) is shared; only
        the response-dependent statistics are swapped, so no per-refit set-up is repeated.

        Raises
        ------
        ModelError
            If ``stats`` has other measurement patterns (then build a new criterion).
        """
        if stats.T.shape != self.stats.T.shape or not np.array_equal(stats.n_pat,
                                                                      self.stats.n_pat):
            raise ModelError("with_stats needs statistics of the same design (same patterns)")
        new = copy.copy(self)
        new.stats = stats
        new.n_evals = 0
        new._lean = None
        new._last = None
        if stats.q == 2:
            new._m2_buf = np.empty((stats.K, 4))
        return new

    def value_grad(self, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray]:
        """Criterion and gradient at θ with the fewest array operations (see :attr:`simple`).

        The same algebra as :meth:`__call__` for one grouping factor in cell mode, with the
        design-only pieces precomputed; the last evaluation's β, C, r², log-determinants are
        kept for :meth:`last_evaluation`.
        """
        self.n_evals += 1
        st = self.stats
        if self._lean is None:
            q, m = st.q, st.m
            self._lean = (st.S.reshape(st.K * q * q, m * m), st.XX[0].ravel())
        S2, XXf = self._lean
        p, q, m, iy, n = st.p, st.q, st.m, st.i_y, st.n
        theta = np.asarray(theta, dtype=float)
        lam = np.zeros(q * q)
        lam[self._flat_pos] = theta
        lam = lam.reshape(q, q)
        if q == 2:
            Mf, logdets, parts = self._pattern_M2(lam)
        else:
            M, logdets = self._pattern_M(lam)
            Mf = M.reshape(-1)
        logdet_V = float(st.n_pat @ logdets)
        B = (XXf - Mf @ S2).reshape(m, m)
        Lx, info = _potrf(B[:p, :p], lower=1, clean=1)
        if info != 0:
            raise ModelError(
                "X'V^{-1}X is not positive definite: the fixed-effects design is rank deficient "
                "or badly scaled"
            )
        C, _ = _potri(Lx, lower=1)
        C[self._iu] = C.T[self._iu]
        xvy = B[:p, iy]
        beta = C @ xvy
        r2 = float(B[iy, iy] - xvy @ beta)
        if not r2 > 0:
            r2 = np.finfo(float).tiny
        logdet_X = 2.0 * float(np.log(Lx.diagonal()).sum())
        df_res = n - p if reml else n
        dev = logdet_V + df_res * (1.0 + _LOG_2PI + math.log(r2 / df_res))
        if reml:
            dev += logdet_X
        v = np.zeros(m)
        v[:p] = -beta
        v[iy] = 1.0
        Phi = np.multiply.outer((df_res / r2) * v, v)
        if reml:
            Phi[:p, :p] += C
        if q == 2:
            Q = self._Q2(parts, (S2 @ Phi.ravel()).reshape(-1, 4))
        else:
            R = (S2 @ Phi.ravel()).reshape(-1, q, q)
            TM = np.matmul(st.T, M)
            ImTM = self._eye_q - TM
            Q = (self._nT - (st.n_pat @ np.matmul(TM, st.T).reshape(-1, q * q)).reshape(q, q)
                 - np.matmul(np.matmul(ImTM, R), ImTM.transpose(0, 2, 1)).sum(axis=0))
        g = (2.0 * (Q @ lam)).ravel()[self._flat_pos]
        self._last = (theta.copy(), float(dev), beta, C, r2, logdet_V, logdet_X)
        return float(dev), g

    def _pattern_M2(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        """M_k = Λ A_k⁻¹ Λ' and log|A_k| for q = 2, written out entry by entry.

        numpy's batched matmul over many 2 x 2 matrices costs tens of microseconds per call;
        the same products as elementwise operations on the K-vectors of entries cost a few.
        Returns M flattened (K*4, row-major per pattern) and the pieces :meth:`_Q2` reuses.
        """
        t00, t01, t11 = self._t2
        l00, l10, l11 = float(lam[0, 0]), float(lam[1, 0]), float(lam[1, 1])
        u00 = t00 * l00 + t01 * l10
        u10 = t01 * l00 + t11 * l10
        u01 = t01 * l11
        u11 = t11 * l11
        a00 = l00 * u00 + l10 * u10 + 1.0
        a01 = l00 * u01 + l10 * u11
        a11 = l11 * u11 + 1.0
        det = a00 * a11 - a01 * a01
        rdet = 1.0 / det
        i00, i01, i11 = a11 * rdet, -a01 * rdet, a00 * rdet
        p00, p01 = l00 * i00, l00 * i01
        p10, p11 = l10 * i00 + l11 * i01, l10 * i01 + l11 * i11
        m00 = p00 * l00
        m01 = p00 * l10 + p01 * l11
        m11 = p10 * l10 + p11 * l11
        Mf = self._m2_buf
        Mf[:, 0] = m00
        Mf[:, 1] = m01
        Mf[:, 2] = m01
        Mf[:, 3] = m11
        return Mf.reshape(-1), np.log(det), (m00, m01, m11)

    def _Q2(self, parts: tuple, R: np.ndarray) -> np.ndarray:
        """Q = Σ n_k (T - TMT)_k - Σ (I - TM)_k R_k (I - TM)_k' for q = 2, entry by entry."""
        t00, t01, t11 = self._t2
        m00, m01, m11 = parts
        n = self.stats.n_pat
        a00 = t00 * m00 + t01 * m01
        a01 = t00 * m01 + t01 * m11
        a10 = t01 * m00 + t11 * m01
        a11 = t01 * m01 + t11 * m11
        b00 = a00 * t00 + a01 * t01
        b01 = a00 * t01 + a01 * t11
        b11 = a10 * t01 + a11 * t11
        e00, e01, e10, e11 = 1.0 - a00, -a01, -a10, 1.0 - a11
        r00, r01, r11 = R[:, 0], R[:, 1], R[:, 3]
        f00 = e00 * r00 + e01 * r01
        f01 = e00 * r01 + e01 * r11
        f10 = e10 * r00 + e11 * r01
        f11 = e10 * r01 + e11 * r11
        g00 = float((f00 * e00 + f01 * e01).sum())
        g01 = float((f00 * e10 + f01 * e11).sum())
        g11 = float((f10 * e10 + f11 * e11).sum())
        nT = self._nT
        q00 = nT[0, 0] - float(n @ b00) - g00
        q01 = nT[0, 1] - float(n @ b01) - g01
        q11 = nT[1, 1] - float(n @ b11) - g11
        return np.array([[q00, q01], [q01, q11]])

    def last_evaluation(self, theta: np.ndarray) -> Evaluation:
        """The :class:`Evaluation` of the last :meth:`value_grad` call, reported at ``theta``
        (an equivalent θ: the criterion is even in each column of Λ)."""
        _, dev, beta, C, r2, ldv, ldx = self._last
        return Evaluation(theta=np.array(theta, dtype=float), deviance=dev, beta=beta, C=C,
                          r2=r2, logdet_V=ldv, logdet_X=ldx, gradient=None)

    @property
    def n_theta(self) -> int:
        """Length of θ."""
        return len(self.theta_pos) + len(self.theta_pos_outer)

    def lam(self, theta: np.ndarray) -> np.ndarray:
        """Λ (q x q, lower triangular) for the participant factor."""
        q = self.stats.q
        lam = np.zeros((q, q))
        lam[self._rows, self._cols] = theta[: len(self.theta_pos)]
        return lam

    def lam_outer(self, theta: np.ndarray) -> np.ndarray:
        """Λ_o (q_o x q_o, lower triangular) for the outer factor (0 x 0 without one)."""
        lam = np.zeros((self.q_outer, self.q_outer))
        lam[self._rows_o, self._cols_o] = theta[len(self.theta_pos) :]
        return lam

    def _outer_K(
        self, B: np.ndarray, theta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Λ_o, S_d, K_d = Λ_o A_d⁻¹ Λ_o', log|A_d| and w_d = Z_o'V_P⁻¹[X, Z_o, y] per level."""
        io = self.stats.outer_cols
        lamo = self.lam_outer(theta)
        S = B[:, io, io]
        w = B[:, io, :]
        qo = self.q_outer
        A = np.matmul(np.matmul(lamo.T[None], S), lamo[None]) + np.eye(qo)
        Ainv, logdet = spd_inverse_logdet(A.reshape(-1, qo * qo), qo)
        K = np.matmul(np.matmul(lamo[None], Ainv.reshape(-1, qo, qo)), lamo.T[None])
        return lamo, S, K, logdet, w

    def _pattern_M(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """M_k = Λ A_k⁻¹ Λ' and log|A_k| for every pattern, A_k = Λ'T_kΛ + I.

        With row-major flattening, Λ'TΛ and ΛBΛ' are linear maps by kron(Λ, Λ), so both are
        one (K x q²) @ (q² x q²) product; A_k is SPD with eigenvalues >= 1, so the unrolled
        Cholesky never fails.
        """
        q = self.stats.q
        kl = (lam[:, None, :, None] * lam[None, :, None, :]).reshape(q * q, q * q)  # kron
        A = self._T_flat @ kl + self._eye_flat
        Ainv, logdet = spd_inverse_logdet(A, q)
        M = (Ainv @ kl.T).reshape(-1, q, q)
        return M, logdet

    def start(self) -> np.ndarray:
        """lme4's default start: 1 on Λ's diagonal (and the outer sd), 0 elsewhere."""
        th = (self._rows == self._cols).astype(float)
        return np.concatenate([th, (self._rows_o == self._cols_o).astype(float)])

    def __call__(
        self, theta: np.ndarray, reml: bool, gradient: bool = False, sigma: float | None = None
    ) -> Evaluation:
        """Evaluate the criterion at θ.

        Parameters
        ----------
        theta : ndarray
            Covariance parameters in lme4 order.
        reml : bool
            REML criterion if True, else the ML deviance.
        gradient : bool
            Also return the gradient with respect to θ.
        sigma : float, optional
            If given, the *unprofiled* deviance at (θ, σ) (as lmerTest's ``devfun_vp``) and its
            θ-gradient; used for the Satterthwaite Hessian. Default: σ profiled out.

        Returns
        -------
        Evaluation
        """
        self.n_evals += 1
        st = self.stats
        theta = np.asarray(theta, dtype=float)
        q, p, n = st.q, st.p, st.n
        lam = self.lam(theta)
        M, logdets = self._pattern_M(lam)
        logdet_V = float(st.n_pat @ logdets)
        B = st.XX - st.contract_M(M)  # X~'V_P^{-1}X~ per outer level

        if self.has_outer:
            lamo, S, K, logdet_A, w = self._outer_K(B, theta)
            Bfull = B.sum(axis=0) - np.einsum("dai,dab,dbj->ij", w, K, w)
            logdet_V += float(logdet_A.sum())
        else:
            Bfull = B[0]
        xvx = Bfull[:p, :p]
        xvy = Bfull[:p, st.i_y]
        yvy = Bfull[st.i_y, st.i_y]
        # Direct LAPACK calls: numpy.linalg's per-call overhead dominates for a p x p matrix.
        Lx, info = _potrf(xvx, lower=1, clean=1)
        if info != 0:
            raise ModelError(
                "X'V^{-1}X is not positive definite: the fixed-effects design is rank deficient "
                "or badly scaled"
            )
        C, _ = _potri(Lx, lower=1)
        C[self._iu] = C.T[self._iu]  # potri fills the lower triangle only
        beta = C @ xvy
        r2 = float(yvy - xvy @ beta)
        if not r2 > 0:
            # Rounding can make a perfect fit's r² slightly negative; keep the log defined.
            r2 = np.finfo(float).tiny
        logdet_X = 2.0 * float(np.log(Lx.diagonal()).sum())
        df_res = n - p if reml else n
        if sigma is None:
            dev = logdet_V + df_res * (1.0 + _LOG_2PI + math.log(r2 / df_res))
        else:
            s2 = sigma * sigma
            dev = logdet_V + r2 / s2 + df_res * (_LOG_2PI + math.log(s2))
        if reml:
            dev += logdet_X

        grad = None
        if gradient:
            weight = df_res / r2 if sigma is None else 1.0 / (sigma * sigma)
            m = st.m
            v_e = np.zeros(m)
            v_e[:p] = -beta
            v_e[st.i_y] = 1.0
            if self.has_outer:
                io = st.outer_cols
                a = w @ v_e  # Z_o'V_P^{-1}e per outer level, (D, q_o)
                wx = w[:, :, :p]  # Z_o'V_P^{-1}X, (D, q_o, p)
                Ka = np.einsum("dab,db->da", K, a)
                # Vectors mapping W_i to Z_i'(V^{-1}e)_i and Z_i'(V^{-1}X)_i in each outer level.
                ve_d = np.broadcast_to(v_e, (st.D, m)).copy()
                ve_d[:, io] -= Ka
                Phi = weight * np.einsum("di,dj->dij", ve_d, ve_d)
                Phi[:, io, io] += K
                if reml:
                    Pd = np.zeros((st.D, m, p))
                    Pd[:, :p, :] = np.eye(p)
                    Pd[:, io, :] = -np.matmul(K, wx)
                    Phi += Pd @ C[None] @ Pd.transpose(0, 2, 1)
            else:
                Phi = (weight * v_e[:, None]) * v_e[None, :]
                if reml:
                    Phi[:p, :p] += C
                Phi = Phi[None]
            R = st.contract_Phi(Phi)
            # Q = sum_k n_k (T - TMT)_k - sum_k (I - TM)_k R_k (I - TM)_k'
            TM = np.matmul(st.T, M)
            ImTM = self._eye_q - TM
            Q = self._nT - (st.n_pat @ np.matmul(TM, st.T).reshape(-1, q * q)).reshape(q, q)
            Q -= np.matmul(np.matmul(ImTM, R), ImTM.transpose(0, 2, 1)).sum(axis=0)
            QL = 2.0 * (Q @ lam)
            g = QL[self._rows, self._cols]
            if self.has_outer:
                ISK = np.eye(self.q_outer) - np.matmul(S, K)  # (I - S_d K_d)
                ge = np.einsum("dab,db->da", ISK, a)  # Z_o'V_d^{-1}e
                Qo = np.matmul(ISK, S).sum(axis=0) - weight * ge.T @ ge
                if reml:
                    H = np.matmul(ISK, wx)  # Z_o'V_d^{-1}X
                    Qo -= np.matmul(np.matmul(H, C[None]), H.transpose(0, 2, 1)).sum(axis=0)
                go = 2.0 * (Qo @ lamo)
                g = np.concatenate([g, go[self._rows_o, self._cols_o]])
            grad = g
        return Evaluation(
            theta=theta.copy(),
            deviance=float(dev),
            beta=beta,
            C=C,
            r2=r2,
            logdet_V=logdet_V,
            logdet_X=logdet_X,
            gradient=grad,
        )

    def blups(self, ev: Evaluation) -> tuple[np.ndarray, np.ndarray | None]:
        """Conditional modes of the random effects at an evaluation.

        Returns participant effects (G, q) = M_i Z_i'(V^{-1}e)_i-style BLUPs on the data scale
        and, with an outer factor, its effects (D, q_o): Λ_o Λ_o' Z_o'V_d⁻¹e.
        """
        st = self.stats
        p, m = st.p, st.m
        M, _ = self._pattern_M(self.lam(ev.theta))
        v_e = np.zeros(m)
        v_e[:p] = -ev.beta
        v_e[st.i_y] = 1.0
        outer = None
        if self.has_outer:
            B = st.XX - st.contract_M(M)
            lamo, S, K, _, w = self._outer_K(B, ev.theta)
            a = w @ v_e
            v = np.broadcast_to(v_e, (st.D, m)).copy()
            v[:, st.outer_cols] -= np.einsum("dab,db->da", K, a)
            vg = v[st.outer_of_group]  # (G, m)
            zte = np.einsum("gam,gm->ga", st.W, vg)
            ge = np.einsum("dab,db->da", np.eye(self.q_outer) - np.matmul(S, K), a)
            outer = ge @ (lamo @ lamo.T).T
        else:
            zte = st.W @ v_e
        b = np.einsum("gab,gb->ga", M[st.pattern_of_group], zte)
        return b, outer
