"""Likelihood-profile confidence intervals (as lme4's ``confint(method = "profile")``).

As lme4 does, profiles are of the *ML* deviance (a REML fit is refitted by ML first): an
interval for parameter ψ is the set where ``d(ψ) - d_min <= z²``, ``d(ψ)`` the deviance minimised
over all other parameters with ψ held fixed. Variance parameters are profiled on lme4's scale
(standard deviations, correlations, σ); a fixed effect β_k is profiled by moving ``x_k β_k``
into an offset, which is a linear map of the precomputed sufficient statistics.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§5.3, profiling).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

if TYPE_CHECKING:
    from trackii_eval.models.growth.model import GrowthModel, NativeBackend
    from trackii_eval.models.growth.results import GrowthFit

__all__ = ["profile_confint"]


def _safe_chol(S: np.ndarray) -> np.ndarray:
    # Cholesky of a positive semi-definite matrix: zero pivots give zero columns (a boundary
    # covariance with a zero variance or a ±1 correlation), as in lme4's parameterisation.
    q = S.shape[0]
    L = np.zeros_like(S)
    for j in range(q):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-14 * max(1.0, abs(S[j, j])):
            continue
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            L[i, j] = (S[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


class _VarParams:
    """Map between lme4's profile scale (sds, correlations, σ) and θ."""

    def __init__(self, model: GrowthModel) -> None:
        d = model.design
        self.q = d.Z.shape[1]
        self.pos = d.theta_pos
        self.pairs = sorted({(c, r) for r, c in d.theta_pos if r != c})
        self.has_outer = d.has_outer
        # The outer factor's block (intercept, slopes) follows, in varcomps order.
        self.qo = len(d.zo_names) if d.has_outer else 0
        self.pos_o = d.theta_pos_outer
        self.pairs_o = sorted({(c, r) for r, c in d.theta_pos_outer if r != c})
        self.n = self.q + len(self.pairs) + self.qo + len(self.pairs_o) + 1

    def lower_upper(self) -> tuple[np.ndarray, np.ndarray]:
        lo = ([0.0] * self.q + [-1.0] * len(self.pairs) + [0.0] * self.qo
              + [-1.0] * len(self.pairs_o) + [1e-12])
        hi = ([np.inf] * self.q + [1.0] * len(self.pairs) + [np.inf] * self.qo
              + [1.0] * len(self.pairs_o))
        return np.array(lo), np.array([*hi, np.inf])

    @staticmethod
    def _block(v: np.ndarray, q: int, pairs: list[tuple[int, int]], sigma: float) -> np.ndarray:
        sd = v[:q] / sigma
        R = np.eye(q)
        for k, (a, b) in enumerate(pairs):
            R[a, b] = R[b, a] = v[q + k]
        return _safe_chol(sd[:, None] * R * sd[None, :])

    def to_theta(self, v: np.ndarray) -> tuple[np.ndarray, float]:
        sigma = float(v[-1])
        L = self._block(v, self.q, self.pairs, sigma)
        theta = [L[r, c] for r, c in self.pos]
        if self.has_outer:
            off = self.q + len(self.pairs)
            Lo = self._block(v[off:], self.qo, self.pairs_o, sigma)
            theta += [Lo[r, c] for r, c in self.pos_o]
        return np.array(theta), sigma


def _root(g: Callable[[float], float], x0: float, step: float, bound: float) -> float:
    """First x beyond x0 (in the direction of ``step``) with g(x) = 0, or ``bound``."""
    a = x0
    x = x0 + step
    for _ in range(60):
        if (step > 0 and x >= bound) or (step < 0 and x <= bound):
            if g(bound) < 0:
                return bound
            x = bound
        gx = g(x)
        if gx >= 0:
            return float(optimize.brentq(g, a, x, xtol=1e-8 * max(1.0, abs(x)), rtol=1e-10))
        a = x
        step *= 2.0
        x = a + step
    return np.nan


def profile_confint(backend: NativeBackend, fit: GrowthFit, level: float) -> pd.DataFrame:
    """Profile-likelihood intervals for sds, correlations, σ and the fixed effects.

    Parameters
    ----------
    backend : NativeBackend
        The fit's backend.
    fit : GrowthFit
        The fitted model (REML fits are refitted by ML, as lme4 does).
    level : float
        Coverage.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``fit.parameter_names()``: estimate (of the fit passed in), ci_low,
        ci_high.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """
    model = backend.model
    ml = backend.refit_ml(fit)
    ml_backend = ml._backend
    d_min = ml.deviance
    z2 = float(sps.norm.ppf(0.5 + level / 2.0) ** 2)
    vp = _VarParams(model)
    fdev = ml_backend.fdev
    v_hat = ml.parameter_estimates()[: vp.n]
    lo, hi = vp.lower_upper()

    def dev_v(v: np.ndarray) -> float:
        theta, sigma = vp.to_theta(v)
        return fdev(theta, False, sigma=sigma).deviance

    lows, highs = [], []
    for j in range(vp.n):
        free = [k for k in range(vp.n) if k != j]
        state = {"x": v_hat[free].copy()}

        def g(x: float, j: int = j, free: list[int] = free, state: dict = state) -> float:
            v = v_hat.copy()
            v[j] = x

            def h(u: np.ndarray) -> float:
                v[free] = u
                return dev_v(v)

            bounds = list(zip(lo[free], hi[free], strict=True))
            res = optimize.minimize(h, state["x"], method="L-BFGS-B", bounds=bounds)
            if float(res.fun) - d_min - z2 >= 0 and not np.array_equal(state["x"], v_hat[free]):
                # The warm start (the previous point of the profile, possibly on a bound such
                # as a correlation of -1) can leave the inner fit stuck; the optimum's values
                # are a second start before the point counts as outside the interval.
                res2 = optimize.minimize(h, v_hat[free], method="L-BFGS-B", bounds=bounds)
                if res2.fun < res.fun:
                    res = res2
            state["x"] = res.x
            return float(res.fun) - d_min - z2

        scale = max(abs(v_hat[j]), 1e-3)
        lo_j = _root(g, v_hat[j], -0.25 * scale, lo[j])
        state["x"] = v_hat[free].copy()
        hi_j = _root(g, v_hat[j], 0.25 * scale, hi[j] if np.isfinite(hi[j]) else np.inf)
        lows.append(lo_j)
        highs.append(hi_j)

    # Fixed effects: offset x_k b, drop column k; the augmented statistics transform linearly.
    st = fdev.stats
    p, m = st.p, st.m
    se = np.sqrt(np.diag(ml.vcov_beta))
    beta_hat = np.array(ml.beta)
    for k in range(p):
        keep = [i for i in range(m) if i != k]
        state = {"theta": np.array(ml.theta)}

        def gb(b: float, k: int = k, keep: list[int] = keep, state: dict = state) -> float:
            P = np.eye(m)[:, keep]
            P[k, -1] = -b  # y - b x_k
            stats_k = st.transform(P, p - 1)
            _, ev, _ = model.optimise(stats_k, False, start=state["theta"])
            state["theta"] = ev.theta
            return ev.deviance - d_min - z2

        lows.append(_root(gb, beta_hat[k], -se[k], -np.inf))
        state["theta"] = np.array(ml.theta)
        highs.append(_root(gb, beta_hat[k], se[k], np.inf))

    out = pd.DataFrame(
        {"estimate": fit.parameter_estimates(), "ci_low": lows, "ci_high": highs},
        index=pd.Index(fit.parameter_names(), name="parameter"),
    )
    out.attrs["note"] = "profiles of the ML deviance (REML fits refitted by ML, as lme4 does)"
    return out
