"""Profile-likelihood confidence intervals for a GLMM fit (lme4's ``confint(method="profile")``).

For a parameter ψ_i (a fixed effect, or the standard deviation of a scalar random effect,
which for a GLMM is its θ) the profile deviance is the deviance minimised over all other
parameters with ψ_i held fixed; the interval is where the signed root
ζ(ψ_i) = sign(ψ_i - ψ̂_i) √(D(ψ_i) - D̂) stays within the normal quantile (Bates et al. 2015,
§5.1). ζ is close to linear in ψ_i, so each end is found by secant steps on ζ starting from the
Wald bound; a standard deviation whose profile never reaches the quantile before 0 gets 0 as
its lower end, as lme4 reports.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§5.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize as spo
from scipy import stats as sps

if TYPE_CHECKING:
    from trackii_eval.models.glmm.results import GlmmFit

__all__ = ["profile_confint"]


def _restricted_min(f: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
                    i: int, value: float,
                    fgrad: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
                    ) -> float:
    """min over all coordinates but i (held at ``value``) of f, from x0."""
    free = np.arange(x0.size) != i

    def full(z: np.ndarray) -> np.ndarray:
        x = x0.copy()
        x[free] = z
        x[i] = value
        return x

    h = 1e-6

    def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
        if fgrad is not None:
            val, gr = fgrad(full(z))
            return val, gr[free]
        val = f(full(z))
        g = np.empty_like(z)
        for k in range(z.size):
            e = np.zeros_like(z)
            e[k] = h
            lo = lower[free][k]
            if np.isfinite(lo) and z[k] - h < lo:
                g[k] = (f(full(z + e)) - val) / h
            else:
                g[k] = (f(full(z + e)) - f(full(z - e))) / (2 * h)
        return val, g

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower[free]]
    res = spo.minimize(fg, x0[free], jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-6})
    x0[free] = res.x  # warm start for the next point of the profile
    return float(res.fun)


def profile_confint(fit: GlmmFit, level: float,
                    parm: list[str] | None = None) -> pd.DataFrame:
    """Profile intervals for the fixed effects and the SDs of scalar random-effect terms.

    Parameters
    ----------
    fit : GlmmFit
        A live fit (with its backend).
    level : float
        Coverage.
    parm : list of str, optional
        Only these parameters (names as in the result); default all.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``sd(term|group)`` then the fixed effects; estimate, ci_low, ci_high (NaN
        for a variance parameter that cannot be profiled alone: slopes' SDs and correlations).
    """
    backend = fit._backend
    prob, nagq = backend.problem, backend.nagq
    nt = prob.n_theta
    xhat = np.r_[np.asarray(fit.theta), np.asarray(fit.beta)]
    lower = prob.lower

    def f(x: np.ndarray) -> float:
        return prob.deviance(x, nagq)

    def fgrad(x: np.ndarray) -> tuple[float, np.ndarray]:
        return prob.deviance_and_gradient(x, nagq)

    d0 = f(xhat)
    zq = float(sps.norm.ppf(0.5 + level / 2))
    se = np.sqrt(np.clip(np.diag(np.asarray(fit.vcov_beta)), 0, None))
    # which θ are an SD on their own: a scalar term's (row == column and no off-diagonal θ
    # in the same column or row of Λ)
    pos = [*[(r, c, "inner") for r, c in prob.theta_pos],
           *[(r, c, "outer") for r, c in prob.theta_pos_outer]]
    names, index = [], []
    sd_rows = [vc for vc in fit.varcomps if vc.term2 is None]
    inner_q = prob.q
    for k, (r, c, lev) in enumerate(pos):
        if r != c:
            continue
        same = [(r2, c2) for r2, c2, l2 in pos if l2 == lev and (r2 == r or c2 == c)]
        vc = sd_rows[r if lev == "inner" else inner_q + r]
        names.append(f"sd({vc.term}|{vc.group})")
        index.append(k if len(same) == 1 else -1)
    names += list(fit.fixed_names)
    index += list(range(nt, nt + len(fit.fixed_names)))
    est, lows, highs = [], [], []
    for name, k in zip(names, index, strict=True):
        if k < 0 or (parm is not None and name not in parm):
            est.append(float(xhat[k]) if k >= 0 else np.nan)
            lows.append(np.nan)
            highs.append(np.nan)
            continue
        est.append(float(xhat[k]))
        step0 = se[k - nt] if k >= nt else max(0.3 * xhat[k], 0.1)
        ends = []
        for sign in (-1.0, 1.0):
            ends.append(_one_end(f, xhat, lower, k, sign, step0 * zq, d0, zq, fgrad))
        lows.append(ends[0])
        highs.append(ends[1])
    f(xhat)  # leave the warm-start modes at the estimate
    return pd.DataFrame({"estimate": est, "ci_low": lows, "ci_high": highs},
                        index=pd.Index(names, name="parameter"))


def _one_end(f: Callable[[np.ndarray], float], xhat: np.ndarray, lower: np.ndarray, k: int,
             sign: float,
             step: float, d0: float, zq: float,
             fgrad: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None) -> float:
    x0 = xhat.copy()
    lo_k = lower[k]

    def zeta(v: float) -> float:
        d = _restricted_min(f, x0, lower, k, v, fgrad)
        return sign * np.sqrt(max(d - d0, 0.0))

    v_prev, z_prev = float(xhat[k]), 0.0
    v = v_prev + sign * step
    if np.isfinite(lo_k) and v <= lo_k:
        v = lo_k
    for _ in range(30):
        z = zeta(v)
        if abs(abs(z) - zq) < 1e-4:
            return v
        if np.isfinite(lo_k) and v <= lo_k and abs(z) < zq:
            return float(lo_k)  # the profile stays inside the interval down to the bound
        # secant on ζ (nearly linear in the parameter)
        slope = (z - z_prev) / (v - v_prev) if v != v_prev else np.nan
        if not np.isfinite(slope) or slope <= 0:
            v_new = v + sign * step  # not yet monotone: keep walking out
        else:
            v_new = v + (sign * zq - z) / slope
        v_prev, z_prev = v, z
        if np.isfinite(lo_k) and v_new <= lo_k:
            v_new = lo_k
        if abs(v_new - v) > 5 * abs(step):
            v_new = v + np.sign(v_new - v) * 5 * abs(step)
        v = v_new
    return np.nan
