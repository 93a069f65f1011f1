"""Outer optimisation of the GLMM criterion over (θ, β) and its convergence checks.

As glmer's second stage, θ and β are optimised jointly on the Laplace (or quadrature)
deviance, the conditional modes being found afresh at every evaluation. The gradient is
exact (implicit differentiation through the conditional modes, see ``engine``), the
optimiser is L-BFGS-B with θ's diagonal bounded at 0, and the result is polished by Newton
steps on the Hessian (central differences of the exact gradient), which is also what the
standard errors come from (lme4's ``vcov(use.hessian = TRUE)``: 2 H⁻¹, β block). The
checks are lme4's ``checkConv``: the scaled gradient H⁻¹g below 0.002, a positive definite
Hessian, its eigenvalue ratio, and a singular fit when a diagonal θ is below 1e-4.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize as spo

from trackii_eval.models.glmm.engine import ClusterProblem

__all__ = ["GRAD_TOL", "SINGULAR_TOL", "OuterResult", "check_convergence", "fit_outer", "glm_start"]

GRAD_TOL = 2e-3  # lme4 check.conv.grad
SINGULAR_TOL = 1e-4  # lme4 isSingular
HESS_RATIO_TOL = 1e-6  # lme4 check.conv.hess eigenvalue ratio
_FD_STEP = 1e-4  # lme4 deriv12's delta


@dataclass
class OuterResult:
    """Where the outer optimisation ended and what was checked there."""

    x: np.ndarray
    deviance: float
    gradient: np.ndarray
    hessian: np.ndarray
    n_evals: int
    n_iter: int
    message: str
    converged: bool
    warnings: list[str] = field(default_factory=list)


def glm_start(X: np.ndarray, y: np.ndarray, m: np.ndarray, family: str,
              offset: np.ndarray) -> np.ndarray:
    """β of the GLM without random effects (IRLS, a few steps): the starting fixed effects."""
    p = X.shape[1]
    if family == "binomial":
        mu = (y + 0.5) / (m + 1.0)
        eta = np.log(mu / (1 - mu))
    else:
        eta = np.log(y + 0.1)
    beta = np.zeros(p)
    for _ in range(25):
        if family == "binomial":
            pr = 1 / (1 + np.exp(-eta))
            w = np.maximum(m * pr * (1 - pr), 1e-10)
            zresp = eta - offset + (y - m * pr) / w
        else:
            mu = np.exp(eta)
            w = np.maximum(m * mu, 1e-10)
            zresp = eta - offset + (y - m * mu) / w
        sw = np.sqrt(w)
        new, *_ = np.linalg.lstsq(X * sw[:, None], zresp * sw, rcond=None)
        # Bounded start: separated data would otherwise send β to ±inf before we begin.
        new = np.clip(new, -15, 15)
        done = np.max(np.abs(new - beta)) < 1e-8
        beta = new
        eta = offset + X @ beta
        if done:
            break
    return beta


def fit_outer(prob: ClusterProblem, nagq: int, x0: np.ndarray, *,
              max_iter: int = 1000) -> OuterResult:
    """Minimise the deviance over (θ, β) from ``x0``; polish; check convergence as lme4.

    Parameters
    ----------
    prob : ClusterProblem
        The data and criterion.
    nagq : int
        Quadrature points (1 = Laplace).
    x0 : ndarray
        Start (θ, β).
    max_iter : int
        L-BFGS-B iteration limit.

    Returns
    -------
    OuterResult
    """
    lower = prob.lower
    nt = prob.n_theta

    def f(x: np.ndarray) -> float:
        return prob.deviance(x, nagq)

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        return prob.deviance_and_gradient(x, nagq)

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    if nagq > 1:
        # Start quadrature from the Laplace optimum: Laplace evaluations cost a fraction of
        # K-point ones and the two optima are close.
        pre = spo.minimize(lambda x: prob.deviance_and_gradient(x, 1), x0, jac=True,
                           method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": max_iter, "ftol": 1e-10, "gtol": 1e-4})
        if np.isfinite(pre.fun):
            x0 = np.asarray(pre.x, float)
    opts = {"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-7, "maxcor": 20}
    res = spo.minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
    x = np.asarray(res.x, float)
    dev = float(res.fun)
    n_iter = int(res.nit)
    # A standard deviation θ on its bound of 0 is a stationary point of the deviance whatever
    # the data: b = θu enters only through θ², so ∂dev/∂θ = 0 there. A line search that
    # overshoots to the bound stops there (seen on a Poisson panel where glmer's optimum had
    # θ = 0.26 and a log-likelihood 10 units higher). Restart from positive values of each
    # such θ and keep the best optimum; a genuinely singular fit returns to the bound.
    for _ in range(3):
        on_bound = np.flatnonzero(np.isfinite(lower) & (x <= lower + SINGULAR_TOL))
        if on_bound.size == 0:
            break
        best = None
        for value in (0.1, 0.5, 1.0):
            cand = x.copy()
            cand[on_bound] = value
            val = f(cand)
            if np.isfinite(val) and val < dev - 1e-8 and (best is None or val < best[1]):
                best = (cand, val)
        if best is None:
            break
        again = spo.minimize(fg, best[0], jac=True, method="L-BFGS-B", bounds=bounds,
                             options=opts)
        if not np.isfinite(again.fun) or again.fun >= dev - 1e-8:
            break
        res, x, dev = again, np.asarray(again.x, float), float(again.fun)
        n_iter += int(again.nit)
    # Newton polish on the finite-difference Hessian (free parameters only: a θ held at its
    # bound stays there).
    curvature = _curvature(prob, nagq)
    grad, H = curvature(f, x, dev)
    for _ in range(5):
        free = ~(np.isfinite(lower) & (x <= lower + SINGULAR_TOL) & (grad > 0))
        try:
            step = np.zeros_like(x)
            step[free] = -np.linalg.solve(H[np.ix_(free, free)], grad[free])
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)) or np.max(np.abs(step)) < 1e-10:
            break
        t = 1.0
        improved = False
        for _half in range(8):
            cand = np.maximum(x + t * step, lower)
            val = f(cand)
            if val < dev - 1e-12:
                x, dev, improved = cand, val, True
                break
            t /= 2
        if not improved:
            break
        grad, H = curvature(f, x, dev)
    # The last evaluation must leave the warm-start modes at x (for ranef and predictions).
    dev = f(x)
    warnings_, converged = check_convergence(x, grad, H, lower, nt)
    if not res.success and not converged:
        warnings_.append(f"optimiser message: {res.message}")
    return OuterResult(x=x, deviance=dev, gradient=grad, hessian=H, n_evals=prob.n_evals,
                       n_iter=n_iter, message=str(res.message), converged=converged,
                       warnings=warnings_)


def _curvature(prob: ClusterProblem, nagq: int) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Gradient and Hessian at x: the exact gradient and central differences of it (lme4's
    deriv12 differences the deviance itself; differencing the gradient is more accurate)."""

    def from_gradient(f: Callable[[np.ndarray], float], x: np.ndarray,
                      f0: float) -> tuple[np.ndarray, np.ndarray]:
        g0 = prob.deviance_and_gradient(x, nagq)[1]
        H = np.empty((x.size, x.size))
        for i in range(x.size):
            e = np.zeros_like(x)
            e[i] = _FD_STEP
            H[:, i] = (prob.deviance_and_gradient(x + e, nagq)[1]
                       - prob.deviance_and_gradient(x - e, nagq)[1]) / (2 * _FD_STEP)
        return g0, (H + H.T) / 2

    return from_gradient


def check_convergence(x: np.ndarray, grad: np.ndarray, H: np.ndarray, lower: np.ndarray,
                      n_theta: int) -> tuple[list[str], bool]:
    """lme4's ``checkConv`` on the deviance's gradient and Hessian over (θ, β).

    Returns the warnings (lme4's wording) and whether the gradient check passed.
    """
    out: list[str] = []
    at_bound = np.isfinite(lower) & (x <= lower + SINGULAR_TOL)
    # a parameter on its bound with the gradient pushing outward is at a constrained optimum
    g = np.where(at_bound & (grad > 0), 0.0, grad)
    ok = True
    try:
        R = np.linalg.cholesky(H)
        scaled = np.linalg.solve(R.T, np.linalg.solve(R, g))
        mx = float(np.max(np.abs(scaled)))
        if mx > GRAD_TOL:
            k = int(np.argmax(np.abs(scaled)))
            out.append(f"Model failed to converge with max|grad| = {mx:.3g} (tol = {GRAD_TOL}, "
                       f"component {k + 1})")
            ok = False
        ev = np.linalg.eigvalsh(H)
        if ev.min() / ev.max() < HESS_RATIO_TOL:
            out.append("Model is nearly unidentifiable: large eigenvalue ratio - rescale "
                       "variables?")
    except np.linalg.LinAlgError:
        free = ~at_bound
        Hf = H[np.ix_(free, free)]
        ev = np.linalg.eigvalsh(Hf) if Hf.size else np.array([1.0])
        neg = int(np.sum(ev < 0))
        if neg:
            out.append(f"Model failed to converge: degenerate Hessian with {neg} negative "
                       "eigenvalues")
            ok = False
        else:
            out.append("Hessian is numerically singular: parameters are not uniquely "
                       "determined")
        mx = float(np.max(np.abs(g)))
        if mx > GRAD_TOL * 10:
            out.append(f"Model failed to converge with max|grad| = {mx:.3g}")
            ok = False
    return out, ok

