"""Satterthwaite denominator degrees of freedom for contrasts of the fixed effects.

Following lmerTest (Kuznetsova et al. 2017, §3.1): with varpar = (θ, σ), let A be the
asymptotic covariance of varpar, 2 H^{-1} with H the Hessian of the unprofiled deviance
d(θ, σ) (lmerTest's ``devfun_vp``; H is pseudo-inverted over eigenvalues > 1e-8 as lmerTest does),
and J_k = ∂ vcov(β) / ∂ varpar_k. For a contrast L,

    df = 2 (L V L')² / (g' A g),   g_k = L J_k L'.

We take H as the Richardson-extrapolated Jacobian of our *analytic* gradient of d(θ, σ), and J by
the same central differences of σ²C(θ) (lmerTest uses numDeriv on the deviance itself; both are
accurate far beyond the agreement we test).

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
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    r: int = 4,
    d: float = 1e-4,
    floor: float = 1e-2,
) -> np.ndarray:
    """Jacobian of f at x by central differences with Richardson extrapolation.

    Steps h_j = d max(|x_j|, floor), halved r-1 times, and the r estimates combined to cancel
    error terms of order h², h⁴, ... (numDeriv's scheme). Unlike numDeriv's default (h = d |x_j|
    unless |x_j| < 1.8e-5) the step never shrinks below d·floor: for a θ of order 1e-4 a purely
    relative step is ~1e-8 and the difference drowns in rounding error, which makes lmerTest's
    df for such fits wobble in the third digit.

    Returns
    -------
    ndarray, shape (len(f(x)), len(x))
    """
    x = np.asarray(x, dtype=float)
    out: np.ndarray | None = None  # sized by the first difference: no evaluation at x itself
    for j in range(x.size):
        h = d * max(abs(x[j]), floor)
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
        if out is None:
            out = np.empty((est[0].size, x.size))
        out[:, j] = est[0]
    if out is None:
        raise ValueError("richardson_jacobian needs at least one variable")
    return out


def satterthwaite_parts(
    fdev: ProfiledDeviance, theta: np.ndarray, sigma: float, reml: bool,
    C: np.ndarray | None = None,
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
    C : ndarray, optional
        (X'V⁻¹X)⁻¹ at ``theta`` if already known (it depends on θ only); saves an evaluation.

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

    p = st.p

    def grad_and_vcov(vp: np.ndarray) -> np.ndarray:
        # One evaluation gives both the θ-gradient of d(θ, σ) and vcov(β) = σ² C(θ), so the
        # Hessian and the Jacobian of vcov(β) come from the same finite differences.
        s = float(vp[-1])
        ev = fdev(vp[:k], reml, gradient=True, sigma=s)
        assert ev.gradient is not None
        # ∂/∂σ of r²/σ² + df_res log(2πσ²).
        gs = -2.0 * ev.r2 / s**3 + 2.0 * df_res / s
        return np.concatenate([ev.gradient, [gs], (s * s * ev.C).ravel()])

    vp0 = np.concatenate([theta, [sigma]])
    jac = richardson_jacobian(grad_and_vcov, vp0, r=1)
    H = jac[: k + 1]
    H = 0.5 * (H + H.T)
    J = jac[k + 1 :].T.reshape(k + 1, p, p)
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
    vcov0 = sigma**2 * (fdev(theta, reml).C if C is None else C)
    return SatterthwaiteParts(vcov_beta=vcov0, vcov_varpar=A, jacobian=J, notes=tuple(notes))
