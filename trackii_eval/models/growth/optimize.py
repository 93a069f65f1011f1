"""Minimise the profiled criterion over θ: L-BFGS-B with the analytic gradient, then fallbacks.

lme4 minimises the same criterion with the derivative-free BOBYQA; having the exact gradient we
use a quasi-Newton method with bounds (Λ's diagonal >= 0), and keep derivative-free Powell as a
fallback when the gradient method stops early or returns a non-finite value.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§3.4, θ as the only optimisation
parameter; §5.1, the convergence checks mirrored here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from trackii_eval.errors import ModelError

__all__ = ["OptimizerInfo", "minimise_theta", "projected_gradient"]

# lme4's check.conv.grad tolerance on the (scaled) gradient of the deviance.
GRAD_TOL = 2e-3
# lme4's isSingular() tolerance on Λ's diagonal.
SINGULAR_TOL = 1e-4


@dataclass(frozen=True)
class OptimizerInfo:
    """How θ was found.

    Attributes
    ----------
    name : str
        Optimiser(s) used, e.g. ``"L-BFGS-B"`` or ``"L-BFGS-B>Powell>L-BFGS-B"``.
    n_evals : int
        Criterion evaluations (with or without gradient).
    gradient_norm : float
        Largest absolute projected gradient component at the optimum.
    final_gradient : tuple of float
        Projected gradient at the optimum (0 for a bound that the gradient pushes against).
        For fits by :class:`GrowthModel` both are with respect to the optimiser's θ~, θ scaled
        by each random-effect column's root mean square (``GrowthModel.theta_scale``), so
        that they do not depend on the units of time.
    start_theta, final_theta : tuple of float
        Starting and final θ.
    message : str
        The optimiser's own message.
    engine : str
        ``"trackii"`` or ``"statsmodels"``.
    converged : bool
        Whether the convergence checks passed.
    """

    name: str
    n_evals: int
    gradient_norm: float
    final_gradient: tuple[float, ...]
    start_theta: tuple[float, ...]
    final_theta: tuple[float, ...]
    message: str
    engine: str
    converged: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable record."""
        return {
            "name": self.name,
            "n_evals": self.n_evals,
            "gradient_norm": _finite_or_none(self.gradient_norm),
            "final_gradient": [_finite_or_none(v) for v in self.final_gradient],
            "start_theta": [_finite_or_none(v) for v in self.start_theta],
            "final_theta": [_finite_or_none(v) for v in self.final_theta],
            "message": self.message,
            "engine": self.engine,
            "converged": self.converged,
        }


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def projected_gradient(theta: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Zero the gradient components that push against an active lower bound."""
    pg = np.array(grad, dtype=float)
    active = (theta <= lower + 1e-12) & (pg > 0)
    pg[active] = 0.0
    return pg


def _escape_boundary(
    counted: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta: np.ndarray,
    val: float,
    grad: np.ndarray,
    lower: np.ndarray,
    bounds: list[tuple[float | None, None]],
    opts: dict[str, float],
) -> tuple[np.ndarray, float, np.ndarray]:
    """Leave a zero diagonal if the criterion decreases away from it (a saddle, not a minimum).

    The projected gradient is zero there, so only a probe can tell; we try small steps into
    the interior and restart the bounded run from any that improves.
    """
    for _ in range(3):
        at_bound = np.flatnonzero(np.isfinite(lower) & (theta <= lower + 1e-10))
        improved = False
        for j in at_bound:
            for h in (1e-2, 1e-3):
                probe = theta.copy()
                probe[j] = lower[j] + h
                pval, _ = counted(probe)
                if pval < val - 1e-10 * max(1.0, abs(val)):
                    res = minimize(
                        counted, probe, jac=True, method="L-BFGS-B", bounds=bounds, options=opts
                    )
                    cand = np.asarray(res.x, dtype=float)
                    cval, cgrad = counted(cand)
                    if cval < val:
                        theta, val, grad, improved = cand, cval, cgrad, True
                    break
            if improved:
                break
        if not improved:
            break
    return theta, val, grad


def _snap_to_boundary(
    counted: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta: np.ndarray,
    val: float,
    grad: np.ndarray,
    lower: np.ndarray,
    bounds: list[tuple[float | None, None]],
    opts: dict[str, float],
) -> tuple[np.ndarray, float, np.ndarray]:
    """Put a diagonal θ that ended a hair above 0 exactly on the bound if that is no worse.

    A quasi-Newton run approaches a boundary optimum only asymptotically (θ ~ 1e-7); lme4
    reports exact zeros there, and downstream numerical derivatives (Satterthwaite) are much
    better behaved at an exact boundary point than at a tiny positive one.
    """
    near = np.flatnonzero(np.isfinite(lower) & (theta > lower) & (theta < lower + SINGULAR_TOL))
    if near.size == 0:
        return theta, val, grad
    probe = theta.copy()
    probe[near] = lower[near]
    res = minimize(counted, probe, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
    cand = np.asarray(res.x, dtype=float)
    cval, cgrad = counted(cand)
    if cval <= val + 1e-10 * max(1.0, abs(val)):
        return cand, cval, cgrad
    return theta, val, grad


def _scaled_gradient_ok(
    grad_fun: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, pg: np.ndarray
) -> bool:
    k = theta.size
    H = np.empty((k, k))
    for j in range(k):
        h = 1e-5 * max(1.0, abs(theta[j]))
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (grad_fun(theta + e) - grad_fun(theta - e)) / (2 * h)
    H = 0.5 * (H + H.T)
    try:
        R = np.linalg.cholesky(H).T
    except np.linalg.LinAlgError:
        return False
    return bool(np.max(np.abs(np.linalg.solve(R, pg))) <= GRAD_TOL)


def minimise_theta(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    lower: np.ndarray,
    engine: str = "trackii",
    sign_flip: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, OptimizerInfo]:
    """Minimise ``fun`` (value and gradient) over θ with ``θ >= lower``.

    Parameters
    ----------
    fun : callable
        θ -> (criterion, gradient).
    start : ndarray
        Starting θ.
    lower : ndarray
        Lower bounds (0 or -inf).
    engine : str
        Recorded in the returned info.
    sign_flip : callable, optional
        Maps any θ to the equivalent θ with Λ's diagonal >= 0 (flipping whole columns). When
        given, a first unbounded run avoids the saddle at a zero diagonal.

    Returns
    -------
    theta : ndarray
        The minimiser found.
    info : OptimizerInfo
        Diagnostics; ``info.converged`` is False if the gradient check fails.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """
    n_evals = 0
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]

    def counted(th: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal n_evals
        n_evals += 1
        try:
            val, grad = fun(th)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError, ModelError):
            # A trial θ far from the optimum can make X'V^{-1}X numerically singular
            # (ModelError from the criterion): treat it as an infinite criterion so that the
            # line search backs off instead of ending the fit.
            return np.inf, np.zeros_like(th)
        if not np.isfinite(val):
            return np.inf, np.zeros_like(th)
        return val, grad

    def value_only(th: np.ndarray) -> float:
        return counted(np.maximum(th, lower))[0]

    # ftol 1e-12 (relative) leaves the criterion within ~1e-9 relative of the optimum, far inside
    # the 1e-3 we promise; tighter settings only add line-search failures at rounding level.
    opts = {"maxiter": 2000, "maxfun": 20000, "ftol": 1e-12, "gtol": 1e-6, "maxcor": 20}
    names = []
    theta = np.asarray(start, dtype=float)
    message = ""
    if sign_flip is not None:
        # Stage 1 without bounds. The criterion is even in each column of Λ, so Λ's diagonal on
        # the bound 0 is a stationary point (a saddle when the variance should be positive);
        # a bounded quasi-Newton run that reaches the bound stops there. Without bounds the
        # iterates cross 0 instead, and normalise_signs maps the result back.
        names.append("L-BFGS-B(free)")
        res = minimize(counted, theta, jac=True, method="L-BFGS-B", options=opts)
        if np.isfinite(res.fun):
            theta = sign_flip(np.asarray(res.x, dtype=float))
    interior = sign_flip is not None and bool(np.all(theta > lower + SINGULAR_TOL))
    if interior and np.isfinite(res.fun):
        # The unbounded optimum is inside the feasible set: the bounds are inactive there,
        # so a bounded polish would only repeat it.
        message = str(res.message)
        val, grad = counted(theta)
    else:
        names.append("L-BFGS-B")
        res = minimize(counted, theta, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        theta, message = np.asarray(res.x, dtype=float), str(res.message)
        val, grad = counted(theta)
    theta, val, grad = _escape_boundary(counted, theta, val, grad, lower, bounds, opts)
    theta, val, grad = _snap_to_boundary(counted, theta, val, grad, lower, bounds, opts)
    pg = projected_gradient(theta, grad, lower)
    gnorm = float(np.max(np.abs(pg), initial=0.0))
    converged = bool(np.isfinite(val)) and (
        gnorm <= GRAD_TOL or _scaled_gradient_ok(lambda t: counted(t)[1], theta, pg)
    )
    if not converged:
        # The gradient method stopped early: derivative-free Powell from the better of the start
        # and the L-BFGS-B point, then L-BFGS-B again to polish.
        names.append("Powell")
        best0 = theta if np.isfinite(val) and val <= counted(start)[0] else start
        pw = minimize(
            value_only,
            best0,
            method="Powell",
            bounds=bounds,
            options={"xtol": 1e-8, "ftol": 1e-12, "maxfev": 20000},
        )
        cand = np.maximum(np.asarray(pw.x, dtype=float), lower)
        names.append("L-BFGS-B")
        res2 = minimize(counted, cand, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        cands = [
            (counted(np.asarray(t, dtype=float))[0], np.asarray(t, dtype=float), m)
            for t, m in ((theta, message), (cand, str(pw.message)), (res2.x, str(res2.message)))
        ]
        val, theta, message = min(cands, key=lambda c: c[0])
        val, grad = counted(theta)
        pg = projected_gradient(theta, grad, lower)
        gnorm = float(np.max(np.abs(pg), initial=0.0))
        converged = bool(np.isfinite(val)) and (
            gnorm <= GRAD_TOL or _scaled_gradient_ok(lambda t: counted(t)[1], theta, pg)
        )
    info = OptimizerInfo(
        name=">".join(names),
        n_evals=n_evals,
        gradient_norm=gnorm,
        final_gradient=tuple(float(v) for v in pg),
        start_theta=tuple(float(v) for v in start),
        final_theta=tuple(float(v) for v in theta),
        message=message,
        engine=engine,
        converged=converged,
    )
    return theta, info
