"""Satterthwaite denominator degrees of freedom for contrasts of the fixed effects.

Following lmerTest (Kuznetsova et al. 2017, §3.1): with varpar = (θ, σ), let A be the
asymptotic covariance of varpar, 2 H^{-1} with H the Hessian of the unprofiled deviance
d(θ, σ) (lmerTest's ``devfun_vp``; H is pseudo-inverted over eigenvalues > 1e-8 as lmerTest does),
and J_k = ∂ vcov(β) / ∂ varpar_k. For a contrast L,

    df = 2 (L V L')² / (g' A g),   g_k = L J_k L'.

We take H as the Richardson-extrapolated Jacobian of our *analytic* gradient of d(θ, σ), and J by
Richardson-extrapolated central differences (lmerTest uses numDeriv; both are accurate far
beyond the agreement we test).

References
----------
Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
doi:10.18637/jss.v082.i13

Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trackii_eval.models.growth.deviance import ProfiledDeviance

__all__ = ["SatterthwaiteParts", "richardson_jacobian", "satterthwaite_parts"]

_EIG_TOL = 1e-8  # lmerTest's tolerance for the Hessian's eigenvalues
_ZERO_TOL = float(np.sqrt(np.finfo(float).eps / 7e-7))  # numDeriv's zero.tol


@dataclass(frozen=True)
class SatterthwaiteParts:
    """What every Satterthwaite df needs: vcov(β), A = cov(varpar), J_k = ∂vcov(β)/∂varpar_k."""

    vcov_beta: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray  # (k, p, p)
    notes: tuple[str, ...]

    def df(self, L: np.ndarray) -> np.ndarray:
        """Satterthwaite df for each row of L (contrast vectors over the fixed effects).

        Parameters
        ----------
        L : ndarray, shape (r, p) or (p,)
            Contrast rows.

        Returns
        -------
        ndarray, shape (r,)
        """
        L = np.atleast_2d(np.asarray(L, dtype=float))
        var = np.einsum("ri,ij,rj->r", L, self.vcov_beta, L)
        g = np.einsum("ri,kij,rj->rk", L, self.jacobian, L)
        denom = np.einsum("rk,kl,rl->r", g, self.vcov_varpar, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2.0 * var**2 / denom


def richardson_jacobian(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, r: int = 4, d: float = 1e-4
) -> np.ndarray:
    """Jacobian of f at x by central differences with Richardson extrapolation.

    Steps h_j = d |x_j| (+ d when |x_j| < 1.78e-5, numDeriv's ``zero.tol``), halved r-1 times,
    and the r estimates combined to cancel error terms of order h², h⁴, ... (the same scheme as
    numDeriv's default). The absolute floor matters at a boundary θ ≈ 0, where a purely
    relative step would drown in rounding error.

    Returns
    -------
    ndarray, shape (len(f(x)), len(x))
    """
    x = np.asarray(x, dtype=float)
    f0 = np.asarray(f(x), dtype=float).ravel()
    out = np.empty((f0.size, x.size))
    for j in range(x.size):
        h = d * abs(x[j]) + (d if abs(x[j]) < _ZERO_TOL else 0.0)
        est = []
        for _ in range(r):
            e = np.zeros_like(x)
            e[j] = h
            fp = np.asarray(f(x + e), dtype=float).ravel()
            fm = np.asarray(f(x - e), dtype=float).ravel()
            est.append((fp - fm) / (2.0 * h))
            h /= 2.0
        # Richardson: combine successive halvings to remove the h^(2k) error terms.
        for k in range(1, r):
            fac = 4.0**k
            est = [(fac * est[i + 1] - est[i]) / (fac - 1.0) for i in range(len(est) - 1)]
        out[:, j] = est[0]
    return out


def satterthwaite_parts(
    fdev: ProfiledDeviance, theta: np.ndarray, sigma: float, reml: bool
) -> SatterthwaiteParts:
    """Compute A and the Jacobian of vcov(β) at the optimum.

    Parameters
    ----------
    fdev : ProfiledDeviance
        The model's criterion.
    theta : ndarray
        Optimal θ.
    sigma : float
        Residual standard deviation at the optimum (REML or ML as fitted).
    reml : bool
        Whether the REML criterion was optimised.

    Returns
    -------
    SatterthwaiteParts

    References
    ----------
    Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests
    in linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
    """
    st = fdev.stats
    k = theta.size
    df_res = st.n - st.p if reml else st.n

    def grad_vp(vp: np.ndarray) -> np.ndarray:
        s = float(vp[-1])
        ev = fdev(vp[:k], reml, gradient=True, sigma=s)
        assert ev.gradient is not None
        # ∂/∂σ of r²/σ² + df_res log(2πσ²).
        gs = -2.0 * ev.r2 / s**3 + 2.0 * df_res / s
        return np.concatenate([ev.gradient, [gs]])

    def vcov_vp(vp: np.ndarray) -> np.ndarray:
        ev = fdev(vp[:k], reml)
        return float(vp[-1]) ** 2 * ev.C

    vp0 = np.concatenate([theta, [sigma]])
    H = richardson_jacobian(grad_vp, vp0)
    H = 0.5 * (H + H.T)
    evals, evecs = np.linalg.eigh(H)
    notes = []
    if np.any(evals < -_EIG_TOL):
        notes.append(
            "the Hessian of the deviance in (theta, sigma) has negative eigenvalue(s) "
            + " ".join(f"{v:.1e}" for v in evals[evals < -_EIG_TOL])
            + "; Satterthwaite df may be unreliable"
        )
    near0 = np.abs(evals) <= _EIG_TOL
    if np.any(near0):
        notes.append(
            "the Hessian of the deviance in (theta, sigma) has eigenvalue(s) close to zero "
            + " ".join(f"{v:.1e}" for v in evals[near0])
            + "; Satterthwaite df may be unreliable"
        )
    pos = evals > _EIG_TOL
    A = 2.0 * (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    p = st.p
    J = richardson_jacobian(vcov_vp, vp0).T.reshape(k + 1, p, p)
    return SatterthwaiteParts(vcov_beta=vcov_vp(vp0), vcov_varpar=A, jacobian=J, notes=tuple(notes))
