"""Longitudinal measurement invariance of one scale across panel waves.

One factor per wave, all waves in a single model, and the residuals of the same item correlated
across waves (Widaman, Ferrer & Conger, 2010). The levels are fitted in order, each nested in
the previous one:

* configural: same pattern (every item loads on its wave's factor), all loadings and intercepts
  free, latent means fixed to 0;
* metric: each item's loading equal across waves;
* scalar: loadings and each item's intercept equal across waves, latent means of waves after the
  first estimated;
* strict (optional): also each item's residual variance equal across waves.

Each factor is scaled by its first item (loading fixed to 1 at every wave), which is lavaan's
default; fit does not depend on which item is the marker. Estimation is normal-theory maximum
likelihood, by default full-information ML on everyone with an answer (lavaan's
``missing = "ml"``: each participant contributes the likelihood of the answers given, chi-square
against the unrestricted model fitted by EM), or on the complete cases (``missing =
"listwise"``, the sample covariance matrix divided by N and ``chisq = N * F_ML``); either way the
fit statistics are the ones ``lavaan::cfa`` prints for the same model. The model is fitted here
by Fisher scoring rather than through a SEM package, because equality constraints across waves
on loadings, intercepts and residual variances need a parameter map that the available Python
SEM packages do not expose cleanly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from trackii_eval.errors import ConvergenceWarning, ScoringError, TrackIIEvalWarning

__all__ = [
    "INVARIANCE_COLUMNS",
    "LEVELS",
    "InvarianceResult",
    "InvarianceWarning",
    "measurement_invariance",
]

Level = Literal["configural", "metric", "scalar", "strict"]

#: The invariance levels in the order they are tested.
LEVELS: tuple[str, ...] = ("configural", "metric", "scalar", "strict")

#: Columns of :attr:`InvarianceResult.table`, in order.
INVARIANCE_COLUMNS: tuple[str, ...] = (
    "model",
    "npar",
    "chisq",
    "df",
    "p",
    "cfi",
    "tli",
    "rmsea",
    "rmsea_ci_low",
    "rmsea_ci_high",
    "srmr",
    "delta_chisq",
    "delta_df",
    "delta_p",
    "delta_cfi",
    "delta_rmsea",
    "decision",
    "converged",
)


class InvarianceWarning(TrackIIEvalWarning):
    """A fitted invariance model is questionable (improper estimates, rows left out)."""


# --------------------------------------------------------------------------------------------
# Model specification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """Parameter map of one longitudinal model.

    Observed variables are ordered wave-major (all items of wave 1, then wave 2, ...). Each
    ``*_idx`` array holds, per matrix entry, the index of the free parameter it takes, or -1 if
    the entry is fixed; sharing an index is how equality constraints are written.
    """

    level: str
    n_items: int
    n_waves: int
    lam_idx: np.ndarray  # (P, T)
    lam_fixed: np.ndarray  # (P, T) values of fixed loadings
    phi_idx: np.ndarray  # (T, T) symmetric
    theta_idx: np.ndarray  # (P, P) symmetric
    nu_idx: np.ndarray  # (P,)
    alpha_idx: np.ndarray  # (T,)
    names: tuple[str, ...]

    @property
    def n_par(self) -> int:
        return len(self.names)


def _build_spec(level: str, items: Sequence[str], waves: Sequence[str]) -> _Spec:
    p, t_n = len(items), len(waves)
    n_obs = p * t_n
    names: list[str] = []

    def new(name: str) -> int:
        names.append(name)
        return len(names) - 1

    lam_idx = np.full((n_obs, t_n), -1)
    lam_fixed = np.zeros((n_obs, t_n))
    shared_lam: dict[int, int] = {}
    for t in range(t_n):
        for j in range(p):
            r = t * p + j
            if j == 0:
                lam_fixed[r, t] = 1.0  # marker item scales the wave's factor
                continue
            if level == "configural":
                lam_idx[r, t] = new(f"loading {items[j]} @ {waves[t]}")
            else:
                if j not in shared_lam:
                    shared_lam[j] = new(f"loading {items[j]}")
                lam_idx[r, t] = shared_lam[j]

    phi_idx = np.full((t_n, t_n), -1)
    for s in range(t_n):
        for t in range(s, t_n):
            label = (
                f"factor variance @ {waves[s]}"
                if s == t
                else f"factor covariance {waves[s]} ~ {waves[t]}"
            )
            phi_idx[s, t] = phi_idx[t, s] = new(label)

    theta_idx = np.full((n_obs, n_obs), -1)
    shared_theta: dict[int, int] = {}
    for t in range(t_n):
        for j in range(p):
            r = t * p + j
            if level == "strict":
                if j not in shared_theta:
                    shared_theta[j] = new(f"residual variance {items[j]}")
                theta_idx[r, r] = shared_theta[j]
            else:
                theta_idx[r, r] = new(f"residual variance {items[j]} @ {waves[t]}")
    for j in range(p):
        for s in range(t_n):
            for t in range(s + 1, t_n):
                a, b = s * p + j, t * p + j
                theta_idx[a, b] = theta_idx[b, a] = new(
                    f"residual covariance {items[j]} {waves[s]} ~ {waves[t]}"
                )

    nu_idx = np.full(n_obs, -1)
    shared_nu: dict[int, int] = {}
    for t in range(t_n):
        for j in range(p):
            r = t * p + j
            if level in ("scalar", "strict"):
                if j not in shared_nu:
                    shared_nu[j] = new(f"intercept {items[j]}")
                nu_idx[r] = shared_nu[j]
            else:
                nu_idx[r] = new(f"intercept {items[j]} @ {waves[t]}")

    alpha_idx = np.full(t_n, -1)
    if level in ("scalar", "strict"):
        # With equal intercepts the latent means become identified relative to the first wave.
        for t in range(1, t_n):
            alpha_idx[t] = new(f"latent mean @ {waves[t]}")

    return _Spec(
        level=level,
        n_items=p,
        n_waves=t_n,
        lam_idx=lam_idx,
        lam_fixed=lam_fixed,
        phi_idx=phi_idx,
        theta_idx=theta_idx,
        nu_idx=nu_idx,
        alpha_idx=alpha_idx,
        names=tuple(names),
    )


@dataclass
class _Matrices:
    lam: np.ndarray
    phi: np.ndarray
    theta: np.ndarray
    nu: np.ndarray
    alpha: np.ndarray

    def implied(self) -> tuple[np.ndarray, np.ndarray]:
        sigma = self.lam @ self.phi @ self.lam.T + self.theta
        return sigma, self.nu + self.lam @ self.alpha


def _fill(idx: np.ndarray, theta: np.ndarray, fixed: np.ndarray | float) -> np.ndarray:
    return np.where(idx >= 0, theta[np.maximum(idx, 0)], fixed)


def _matrices(spec: _Spec, theta: np.ndarray) -> _Matrices:
    return _Matrices(
        lam=_fill(spec.lam_idx, theta, spec.lam_fixed),
        phi=_fill(spec.phi_idx, theta, 0.0),
        theta=_fill(spec.theta_idx, theta, 0.0),
        nu=_fill(spec.nu_idx, theta, 0.0),
        alpha=_fill(spec.alpha_idx, theta, 0.0),
    )


def _pack(spec: _Spec, m: _Matrices) -> np.ndarray:
    """Parameter vector from matrices; an equality-constrained parameter takes the mean."""
    total = np.zeros(spec.n_par)
    count = np.zeros(spec.n_par)
    for idx, mat in (
        (spec.lam_idx, m.lam),
        (spec.phi_idx, m.phi),
        (spec.theta_idx, m.theta),
        (spec.nu_idx, m.nu),
        (spec.alpha_idx, m.alpha),
    ):
        sel = idx >= 0
        np.add.at(total, idx[sel], mat[sel])
        np.add.at(count, idx[sel], 1.0)
    return total / count


def _jacobian(spec: _Spec, m: _Matrices) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives of the implied covariance (q, P, P) and mean (q, P) in each parameter."""
    q, n_obs = spec.n_par, spec.lam_idx.shape[0]
    d_sigma = np.zeros((q, n_obs, n_obs))
    d_mu = np.zeros((q, n_obs))
    # Loadings: d(L Phi L') / d L_rt = e_r v' + v e_r' with v = (L Phi)[:, t]; d mu = e_r alpha_t.
    r_i, t_i = np.nonzero(spec.lam_idx >= 0)
    a_i = spec.lam_idx[r_i, t_i]
    v = (m.lam @ m.phi)[:, t_i].T  # (entries, P)
    np.add.at(d_sigma, (a_i, r_i), v)
    np.add.at(d_sigma.transpose(0, 2, 1), (a_i, r_i), v)
    np.add.at(d_mu, (a_i, r_i), m.alpha[t_i])
    # Factor (co)variances: both (s, t) and (t, s) are listed, which sums to the symmetric term.
    s_i, t_i = np.nonzero(spec.phi_idx >= 0)
    a_i = spec.phi_idx[s_i, t_i]
    np.add.at(d_sigma, a_i, m.lam[:, s_i].T[:, :, None] * m.lam[:, t_i].T[:, None, :])
    # Residual (co)variances.
    i_i, j_i = np.nonzero(spec.theta_idx >= 0)
    np.add.at(d_sigma, (spec.theta_idx[i_i, j_i], i_i, j_i), 1.0)
    # Intercepts and latent means.
    r_i = np.flatnonzero(spec.nu_idx >= 0)
    np.add.at(d_mu, (spec.nu_idx[r_i], r_i), 1.0)
    t_i = np.flatnonzero(spec.alpha_idx >= 0)
    np.add.at(d_mu, spec.alpha_idx[t_i], m.lam[:, t_i].T)
    return d_sigma, d_mu


# --------------------------------------------------------------------------------------------
# Maximum likelihood
# --------------------------------------------------------------------------------------------


def _discrepancy(
    sigma: np.ndarray, mu: np.ndarray, s: np.ndarray, mean: np.ndarray, logdet_s: float
) -> float:
    """F_ML = log|Sigma| - log|S| + tr(S Sigma^-1) - P + (m - mu)' Sigma^-1 (m - mu)."""
    sign, logdet = np.linalg.slogdet(sigma)
    if sign <= 0:
        return math.inf
    w = np.linalg.inv(sigma)
    d = mean - mu
    return float(logdet - logdet_s + np.sum(s * w) - s.shape[0] + d @ w @ d)


@dataclass
class _Fit:
    spec: _Spec
    theta: np.ndarray
    fmin: float
    converged: bool
    iterations: int


def _fit_ml(
    spec: _Spec, s: np.ndarray, mean: np.ndarray, start: np.ndarray, max_iter: int = 500
) -> _Fit:
    """Minimize F_ML by Fisher scoring with step halving.

    Fisher scoring uses the expected Hessian ``tr(W S_a W S_b) + 2 mu_a' W mu_b`` (W the inverse
    implied covariance), which is positive definite for an identified model and gives the
    near-quadratic convergence needed to reproduce lavaan's chi-square to many digits. A
    quasi-Newton fallback handles the rare start from which scoring cannot descend.
    """
    logdet_s = float(np.linalg.slogdet(s)[1])
    theta = start.copy()
    sigma, mu = _matrices(spec, theta).implied()
    f = _discrepancy(sigma, mu, s, mean, logdet_s)
    if not np.isfinite(f):
        raise ScoringError("invariance: the starting values imply an impossible covariance matrix")
    converged = False
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        m = _matrices(spec, theta)
        sigma, mu = m.implied()
        w = np.linalg.inv(sigma)
        d = mean - mu
        wd = w @ d
        g_mat = w - w @ (s + np.outer(d, d)) @ w
        d_sigma, d_mu = _jacobian(spec, m)
        grad = np.einsum("ij,aij->a", g_mat, d_sigma) - 2.0 * d_mu @ wd
        a = w @ d_sigma  # (q, P, P): W Sigma_a
        info = np.einsum("aij,bji->ab", a, a) + 2.0 * d_mu @ w @ d_mu.T
        if np.max(np.abs(grad)) < 1e-9:
            converged = True
            break
        try:
            step = -np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            break
        scale = 1.0
        for _ in range(40):
            cand = theta + scale * step
            f_new = _discrepancy(*_matrices(spec, cand).implied(), s, mean, logdet_s)
            if np.isfinite(f_new) and f_new <= f + 1e-14:
                break
            scale /= 2.0
        else:
            break
        if f - f_new < 1e-15 and np.max(np.abs(scale * step)) < 1e-10:
            theta, f = cand, f_new
            converged = True
            break
        theta, f = cand, f_new
    if not converged:
        res = _fit_quasi_newton(spec, s, mean, theta, logdet_s)
        if res is not None and res[1] <= f:
            theta, f = res[0], res[1]
            converged = res[2]
    return _Fit(spec=spec, theta=theta, fmin=f, converged=converged, iterations=iterations)


def _fit_quasi_newton(
    spec: _Spec, s: np.ndarray, mean: np.ndarray, start: np.ndarray, logdet_s: float
) -> tuple[np.ndarray, float, bool] | None:
    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        m = _matrices(spec, theta)
        sigma, mu = m.implied()
        f = _discrepancy(sigma, mu, s, mean, logdet_s)
        if not np.isfinite(f):
            return 1e10, np.zeros_like(theta)
        w = np.linalg.inv(sigma)
        d = mean - mu
        g_mat = w - w @ (s + np.outer(d, d)) @ w
        d_sigma, d_mu = _jacobian(spec, m)
        return f, np.einsum("ij,aij->a", g_mat, d_sigma) - 2.0 * d_mu @ (w @ d)

    res = optimize.minimize(
        fun, start, jac=True, method="BFGS", options={"gtol": 1e-8, "maxiter": 5000}
    )
    if not np.isfinite(res.fun) or res.fun >= 1e10:
        return None
    return res.x, float(res.fun), bool(res.success)


# --------------------------------------------------------------------------------------------
# Full-information maximum likelihood (lavaan's missing = "ml")
# --------------------------------------------------------------------------------------------

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class _Patterns:
    """The participants grouped by which variables they answered.

    For pattern k: ``obs[k]`` the observed columns, ``rows[k]`` their answers (n_k, p_k),
    ``mean[k]`` and ``cov[k]`` the pattern's mean and N-denominator covariance.
    """

    obs: tuple[np.ndarray, ...]
    rows: tuple[np.ndarray, ...]
    mean: tuple[np.ndarray, ...]
    cov: tuple[np.ndarray, ...]
    n_total: int
    n_vars: int

    @property
    def n(self) -> np.ndarray:
        return np.array([r.shape[0] for r in self.rows], dtype=float)


def _patterns(x: np.ndarray) -> _Patterns:
    mask = ~np.isnan(x)
    keys, inv = np.unique(mask, axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    obs, rows, means, covs = [], [], [], []
    for k in range(keys.shape[0]):
        o = np.flatnonzero(keys[k])
        r = x[inv == k][:, o]
        obs.append(o)
        rows.append(r)
        means.append(r.mean(axis=0))
        covs.append(np.atleast_2d(np.cov(r, rowvar=False, bias=True)) if r.shape[0] > 1
                    else np.zeros((o.size, o.size)))
    return _Patterns(tuple(obs), tuple(rows), tuple(means), tuple(covs), x.shape[0], x.shape[1])


def _fiml_m2ll(sigma: np.ndarray, mu: np.ndarray, pats: _Patterns) -> float:
    """-2 log-likelihood of the observed data (each participant's answered variables)."""
    total = 0.0
    for o, r, m_k, s_k in zip(pats.obs, pats.rows, pats.mean, pats.cov, strict=True):
        s_oo = sigma[np.ix_(o, o)]
        sign, logdet = np.linalg.slogdet(s_oo)
        if sign <= 0:
            return math.inf
        w = np.linalg.inv(s_oo)
        d = m_k - mu[o]
        total += r.shape[0] * (logdet + np.sum(w * s_k) + d @ w @ d + o.size * _LOG_2PI)
    return float(total)


def _em_saturated(pats: _Patterns, tol: float = 1e-11, max_iter: int = 20000) -> tuple[
    np.ndarray, np.ndarray, bool
]:
    """Unrestricted (H1) means and covariances under missingness by EM (as lavaan's h1)."""
    p, n = pats.n_vars, pats.n_total
    total = np.zeros(p)
    count = np.zeros(p)
    sq = np.zeros(p)
    for o, r in zip(pats.obs, pats.rows, strict=True):
        total[o] += r.sum(axis=0)
        sq[o] += (r**2).sum(axis=0)
        count[o] += r.shape[0]
    mu = total / count
    sigma = np.diag(sq / count - mu**2)
    converged = False
    for _ in range(max_iter):
        t1 = np.zeros(p)
        t2 = np.zeros((p, p))
        for o, r in zip(pats.obs, pats.rows, strict=True):
            miss = np.setdiff1d(np.arange(p), o)
            full = np.empty((r.shape[0], p))
            full[:, o] = r
            if miss.size:
                # E-step: regression of the missing on the answered variables.
                b = np.linalg.solve(sigma[np.ix_(o, o)], sigma[np.ix_(o, miss)]).T
                full[:, miss] = mu[miss] + (r - mu[o]) @ b.T
                t2[np.ix_(miss, miss)] += r.shape[0] * (
                    sigma[np.ix_(miss, miss)] - b @ sigma[np.ix_(o, miss)]
                )
            t1 += full.sum(axis=0)
            t2 += full.T @ full
        mu_new = t1 / n
        sigma_new = t2 / n - np.outer(mu_new, mu_new)
        change = max(np.max(np.abs(mu_new - mu)), np.max(np.abs(sigma_new - sigma)))
        mu, sigma = mu_new, sigma_new
        # Relative to the answers' scale (1-5 items or 0-100 POMP scores alike).
        if change < tol * max(1.0, float(np.max(np.abs(sigma)))):
            converged = True
            break
    return mu, sigma, converged


def _fiml_parts(
    spec: _Spec, theta: np.ndarray, pats: _Patterns, info: bool
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """-2 log-likelihood / N, its gradient and (optionally) the expected information."""
    m = _matrices(spec, theta)
    sigma, mu = m.implied()
    d_sigma, d_mu = _jacobian(spec, m)
    q = spec.n_par
    f = 0.0
    grad = np.zeros(q)
    inf_m = np.zeros((q, q)) if info else None
    for o, r, m_k, s_k in zip(pats.obs, pats.rows, pats.mean, pats.cov, strict=True):
        n_k = r.shape[0]
        s_oo = sigma[np.ix_(o, o)]
        sign, logdet = np.linalg.slogdet(s_oo)
        if sign <= 0:
            return math.inf, grad, inf_m
        w = np.linalg.inv(s_oo)
        d = m_k - mu[o]
        c = s_k + np.outer(d, d)
        f += n_k * (logdet + np.sum(w * c) + o.size * _LOG_2PI)
        ds = d_sigma[:, o][:, :, o]
        dm = d_mu[:, o]
        g_mat = w - w @ c @ w
        grad += n_k * (np.einsum("ij,aij->a", g_mat, ds) - 2.0 * dm @ (w @ d))
        if inf_m is not None:
            # tr(W S_a W S_b) for all a, b as one matrix product (S_a symmetric).
            a = np.matmul(w, ds).reshape(spec.n_par, -1)
            at = np.matmul(ds, w).reshape(spec.n_par, -1)
            inf_m += n_k * (a @ at.T + 2.0 * dm @ w @ dm.T)
    n = pats.n_total
    return f / n, grad / n, (inf_m / n if inf_m is not None else None)


def _fit_fiml(
    spec: _Spec, pats: _Patterns, start: np.ndarray, m2ll_h1: float, max_iter: int = 500
) -> _Fit:
    """Maximise the observed-data likelihood by Fisher scoring with step halving.

    ``fmin`` is returned as (-2 logL_H0 + 2 logL_H1) / N, so that ``N * fmin`` is lavaan's
    chi-square under ``missing = "ml"`` (the likelihood ratio against the EM-fitted
    unrestricted model).
    """
    theta = start.copy()
    f, _, _ = _fiml_parts(spec, theta, pats, info=False)
    if not np.isfinite(f):
        raise ScoringError("invariance: the starting values imply an impossible covariance matrix")
    converged = False
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        f, grad, inf_m = _fiml_parts(spec, theta, pats, info=True)
        assert inf_m is not None
        if np.max(np.abs(grad)) < 1e-9:
            converged = True
            break
        try:
            step = -np.linalg.solve(inf_m, grad)
        except np.linalg.LinAlgError:
            break
        scale = 1.0
        for _ in range(40):
            cand = theta + scale * step
            f_new = _fiml_parts(spec, cand, pats, info=False)[0]
            if np.isfinite(f_new) and f_new <= f + 1e-14:
                break
            scale /= 2.0
        else:
            break
        if f - f_new < 1e-15 and np.max(np.abs(scale * step)) < 1e-10:
            theta, f = cand, f_new
            converged = True
            break
        theta, f = cand, f_new
    if not converged:
        def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
            val, g, _ = _fiml_parts(spec, th, pats, info=False)
            return (val, g) if np.isfinite(val) else (1e10, np.zeros_like(th))

        res = optimize.minimize(fun, theta, jac=True, method="BFGS",
                                options={"gtol": 1e-8, "maxiter": 5000})
        if np.isfinite(res.fun) and res.fun <= f:
            theta, f, converged = res.x, float(res.fun), bool(res.success)
    fmin = f - m2ll_h1 / pats.n_total
    return _Fit(spec=spec, theta=theta, fmin=fmin, converged=converged, iterations=iterations)


# --------------------------------------------------------------------------------------------
# Starting values
# --------------------------------------------------------------------------------------------


def _data_start(s: np.ndarray, mean: np.ndarray, p: int, t_n: int) -> _Matrices:
    """Rough configural estimates from the sample moments (marker-scaled, per wave)."""
    n_obs = p * t_n
    lam = np.zeros((n_obs, t_n))
    phi = np.zeros((t_n, t_n))
    theta = np.zeros((n_obs, n_obs))
    for t in range(t_n):
        rows = np.arange(t * p, (t + 1) * p)
        block = s[np.ix_(rows, rows)]
        load = np.ones(p)
        for j in range(1, p):
            # lambda_j / lambda_marker = cov(j, k) / cov(marker, k) for any third item k.
            ratios = [block[j, k] / block[0, k] for k in range(1, p) if k != j and block[0, k]]
            load[j] = float(np.median(ratios)) if ratios else 1.0
        var_f = np.median([block[0, j] / load[j] for j in range(1, p) if load[j]])
        var_f = float(max(var_f, 0.05 * block[0, 0]))
        lam[rows, t] = load
        phi[t, t] = var_f
        theta[rows, rows] = np.maximum(np.diag(block) - load**2 * var_f, 0.1 * np.diag(block))
    for a in range(t_n):
        for b in range(a + 1, t_n):
            # Marker covariance across waves, shrunk so the start is safely positive definite.
            c = 0.8 * s[a * p, b * p]
            bound = 0.9 * math.sqrt(phi[a, a] * phi[b, b])
            phi[a, b] = phi[b, a] = float(np.clip(c, -bound, bound))
    return _Matrices(lam=lam, phi=phi, theta=theta, nu=mean.copy(), alpha=np.zeros(t_n))


def _start_from(previous: _Matrices, spec: _Spec) -> _Matrices:
    """Start a nested model from the previous level's estimates."""
    m = _Matrices(
        lam=previous.lam.copy(),
        phi=previous.phi.copy(),
        theta=previous.theta.copy(),
        nu=previous.nu.copy(),
        alpha=previous.alpha.copy(),
    )
    p, t_n = spec.n_items, spec.n_waves
    if spec.level == "scalar" and not np.any(previous.alpha):
        # Metric intercepts absorb the latent mean change; split it out: the shift of each
        # item's intercept from wave 1, per unit loading, averaged over items.
        lam_j = np.array([m.lam[j, 0] for j in range(p)])
        nu = m.nu.reshape(t_n, p)
        shift = (nu - nu[0]) / lam_j
        m.alpha = shift.mean(axis=1)
        m.alpha[0] = 0.0
        m.nu = (nu - np.outer(m.alpha, lam_j)).reshape(-1)
    return m


# --------------------------------------------------------------------------------------------
# Fit statistics
# --------------------------------------------------------------------------------------------


def _rmsea_ci(chisq: float, df: int, n: int, level: float) -> tuple[float, float]:
    """RMSEA interval from the noncentral chi-square (Browne & Cudeck, 1993)."""
    if df <= 0:
        return math.nan, math.nan
    upper_q = (1.0 + level) / 2.0  # e.g. 0.95 for a 90% interval
    lower_q = 1.0 - upper_q

    def ncp_at(prob: float) -> float:
        # Noncentrality lambda where P(X <= chisq | df, lambda) = prob; 0 if even lambda = 0
        # leaves less than prob below chisq.
        if stats.chi2.cdf(chisq, df) < prob:
            return 0.0
        hi = max(chisq, 1.0)
        while stats.ncx2.cdf(chisq, df, hi) > prob:
            hi *= 2.0
        return float(
            optimize.brentq(lambda lam: stats.ncx2.cdf(chisq, df, lam) - prob, 0.0, hi, xtol=1e-12)
        )

    low = math.sqrt(ncp_at(upper_q) / (n * df))
    high = math.sqrt(ncp_at(lower_q) / (n * df))
    return low, high


def _fit_stats(
    fit: _Fit,
    s: np.ndarray,
    mean: np.ndarray,
    n: int,
    baseline: tuple[float, int],
    rmsea_level: float,
) -> dict[str, object]:
    n_obs = s.shape[0]
    moments = n_obs * (n_obs + 1) // 2 + n_obs
    df = moments - fit.spec.n_par
    chisq = n * fit.fmin
    chisq_b, df_b = baseline
    excess = max(chisq - df, 0.0)
    excess_b = max(chisq_b - df_b, 0.0)
    cfi = 1.0 - excess / max(excess, excess_b) if max(excess, excess_b) > 0 else 1.0
    tli = ((chisq_b / df_b) - (chisq / df)) / ((chisq_b / df_b) - 1.0) if df > 0 else math.nan
    rmsea = math.sqrt(excess / (df * n)) if df > 0 else math.nan
    low, high = _rmsea_ci(chisq, df, n, rmsea_level)
    sigma, mu = _matrices(fit.spec, fit.theta).implied()
    sd = np.sqrt(np.diag(s))
    # SRMR over covariances and means, residuals scaled by the observed standard deviations
    # (Bentler's form, lavaan's "srmr" when a mean structure is fitted).
    r_cov = ((s - sigma) / np.outer(sd, sd))[np.triu_indices(n_obs)]
    r_mean = (mean - mu) / sd
    srmr = math.sqrt((np.sum(r_cov**2) + np.sum(r_mean**2)) / moments)
    return {
        "model": fit.spec.level,
        "npar": fit.spec.n_par,
        "chisq": chisq,
        "df": df,
        "p": float(stats.chi2.sf(chisq, df)) if df > 0 else math.nan,
        "cfi": cfi,
        "tli": tli,
        "rmsea": rmsea,
        "rmsea_ci_low": low,
        "rmsea_ci_high": high,
        "srmr": srmr,
        "converged": fit.converged,
    }


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvarianceResult:
    """Fit of the nested longitudinal invariance models of one scale.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model with the columns in :data:`INVARIANCE_COLUMNS`: ``model``, ``npar``,
        ``chisq``, ``df``, ``p``, ``cfi``, ``tli``, ``rmsea`` with its interval
        (``rmsea_ci_low``, ``rmsea_ci_high``), ``srmr``, the changes from the previous model
        (``delta_chisq``, ``delta_df``, ``delta_p`` of the likelihood-ratio test, ``delta_cfi``,
        ``delta_rmsea``), ``decision`` and ``converged``.
    level : str
        The most restrictive level that holds, every level before it holding too
        (``"configural"`` if metric invariance already fails).
    items, waves : tuple of str
        Items of the scale and waves, in model order.
    n : int
        Participants used: under FIML everyone with at least one answer in the waves; under
        listwise deletion those complete on every item at every wave.
    n_dropped : int
        Participants left out: no answer at all (FIML) or a missing answer (listwise).
    estimates : dict of str to pandas.DataFrame
        Per model, the parameter estimates (``parameter``, ``estimate``).
    mean_residuals : pandas.DataFrame
        Per item and wave, the observed minus model-implied mean of the scalar model in
        observed standard deviations; a drifting intercept shows up as a large value here.
    delta_cfi_cutoff : float
        The cutoff the decisions used.
    missing : str
        ``"ml"`` (FIML) or ``"listwise"``.

    Notes
    -----
    In R: ``semTools::compareFit(configural, metric, scalar)`` on the lavaan fits gives the
    same table of fit measures and differences.

    References
    ----------
    .. [1] Putnick, D. L., & Bornstein, M. H. (2016). Measurement invariance conventions and
       reporting: The state of the art and future directions for psychological research.
       Developmental Review, 41, 71-90.
    """

    table: pd.DataFrame
    level: str
    items: tuple[str, ...]
    waves: tuple[str, ...]
    n: int
    n_dropped: int
    estimates: dict[str, pd.DataFrame] = field(repr=False)
    mean_residuals: pd.DataFrame = field(repr=False)
    delta_cfi_cutoff: float = -0.01
    missing: str = "listwise"

    def summary(self) -> str:
        """Plain-text report: the fit table, the decisions and what they rest on.

        Returns
        -------
        str
            Several lines of text, for a log or a report appendix.

        Notes
        -----
        In R: ``summary(semTools::compareFit(configural, metric, scalar))``.

        References
        ----------
        .. [1] Widaman, K. F., Ferrer, E., & Conger, R. D. (2010). Factorial invariance within
           longitudinal structural equation models. Child Development Perspectives, 4(1), 10-18.
        """
        cols = ["model", "chisq", "df", "p", "cfi", "tli", "rmsea", "srmr", "delta_cfi", "decision"]
        shown = self.table[cols].copy()
        for c in ("chisq",):
            shown[c] = shown[c].map(lambda v: f"{v:.2f}")
        for c in ("p", "cfi", "tli", "rmsea", "srmr"):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
        shown["delta_cfi"] = shown["delta_cfi"].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")
        lines = [
            "Longitudinal measurement invariance "
            f"({len(self.items)} items x {len(self.waves)} waves: {', '.join(self.waves)})",
            (f"ML on complete cases: n = {self.n} participants"
             + (f" ({self.n_dropped} left out for missing answers)" if self.n_dropped else ""))
            if self.missing == "listwise" else
            (f"Full-information ML on everyone who answered: n = {self.n} participants"
             + (f" ({self.n_dropped} with no answer)" if self.n_dropped else "")),
            "One factor per wave, marker-scaled by the first item, same-item residuals "
            "correlated across waves.",
            "",
            shown.to_string(index=False),
            "",
            f"Decision rule: a level holds if CFI drops by no more than "
            f"{-self.delta_cfi_cutoff:.3f} from the previous level (Putnick & Bornstein, 2016).",
            f"Highest level supported: {self.level}.",
        ]
        bad = self.table.loc[~self.table["converged"].astype(bool), "model"].tolist()
        if bad:
            lines.append(f"Did not converge: {', '.join(bad)}; treat those rows with caution.")
        if "scalar" in set(self.table["model"]) and not self.mean_residuals.empty:
            worst = self.mean_residuals.abs().stack().idxmax()
            value = self.mean_residuals.loc[worst]
            lines.append(
                f"Largest mean residual under scalar invariance: item {worst[0]} at wave "
                f"{worst[1]} ({value:+.2f} SD)."
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Data preparation and the public function
# --------------------------------------------------------------------------------------------


def _to_wide(
    data: pd.DataFrame,
    *,
    items: Sequence[str],
    wave_col: str,
    id_col: str,
    waves: Sequence[Hashable] | None,
    item_col: str | None,
    value_col: str | None,
    listwise: bool = True,
) -> tuple[pd.DataFrame, list[Hashable], int]:
    """One row per participant, one column per (wave, item); complete cases only if
    ``listwise``, else every participant with at least one answer."""
    if not isinstance(data, pd.DataFrame):
        raise ScoringError(f"long_items must be a pandas DataFrame, got {type(data).__name__}")
    if (item_col is None) != (value_col is None):
        raise ScoringError("invariance: give both item_col and value_col, or neither")
    if item_col is not None and value_col is not None:
        need = [id_col, wave_col, item_col, value_col]
        missing = [c for c in need if c not in data.columns]
        if missing:
            raise ScoringError(f"invariance: column(s) {missing} not found")
        sub = data.loc[data[item_col].isin(items), need]
        dup = sub.duplicated(subset=[id_col, wave_col, item_col])
        if dup.any():
            raise ScoringError(
                f"invariance: {int(dup.sum())} answer(s) repeat a (participant, wave, item) "
                "combination"
            )
        data = sub.pivot(index=[id_col, wave_col], columns=item_col, values=value_col)
        data = data.reset_index()
    missing = [c for c in [id_col, wave_col, *items] if c not in data.columns]
    if missing:
        raise ScoringError(f"invariance: column(s) {missing} not found")
    bad = [
        str(c)
        for c in items
        if not pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c])
    ]
    if bad:
        raise ScoringError(f"invariance: item column(s) {bad} are not numeric")
    dup = data.duplicated(subset=[id_col, wave_col])
    if dup.any():
        raise ScoringError(
            f"invariance: {int(dup.sum())} row(s) repeat a (participant, wave) combination"
        )
    present = list(pd.unique(data[wave_col].dropna()))
    if waves is None:
        wave_list = sorted(present)
    else:
        wave_list = list(waves)
        absent = [w for w in wave_list if w not in present]
        if absent:
            raise ScoringError(f"invariance: wave(s) {absent} have no rows")
    if len(wave_list) < 2:
        raise ScoringError("invariance: at least 2 waves are needed")
    sub = data.loc[data[wave_col].isin(wave_list), [id_col, wave_col, *items]]
    wide = sub.set_index([id_col, wave_col])[list(items)].unstack(wave_col)
    # Wave-major column order: all items of the first wave, then the next wave, ...
    wide = wide.reindex(columns=pd.MultiIndex.from_product([list(items), wave_list]))
    wide = wide[[(i, w) for w in wave_list for i in items]]
    n_all = wide.shape[0]
    kept = wide.dropna() if listwise else wide.dropna(how="all")
    return kept, wave_list, n_all - kept.shape[0]


def measurement_invariance(
    long_items: pd.DataFrame,
    *,
    items: Sequence[str],
    wave_col: str = "wave",
    id_col: str = "participant",
    waves: Sequence[Hashable] | None = None,
    levels: Sequence[Level] = ("configural", "metric", "scalar"),
    delta_cfi_cutoff: float = -0.01,
    rmsea_ci: float = 0.90,
    item_col: str | None = None,
    value_col: str | None = None,
    missing: Literal["ml", "listwise"] = "ml",
) -> InvarianceResult:
    """Test configural, metric and scalar invariance of one scale across panel waves.

    Parameters
    ----------
    long_items : pandas.DataFrame
        One row per participant x wave with one (keyed, numeric) column per item; or, if
        `item_col` and `value_col` are given, one row per answer.
    items : sequence of str
        The scale's items (at least 3). The first is the marker that scales each wave's factor.
    wave_col, id_col : str
        Columns naming the wave and the participant.
    waves : sequence, optional
        Waves to use, in order; by default every wave present, sorted.
    levels : sequence of {"configural", "metric", "scalar", "strict"}
        Levels to fit; must start with "configural" and follow :data:`LEVELS` order.
    delta_cfi_cutoff : float, default -0.01
        A level holds if ``CFI - CFI_previous >= delta_cfi_cutoff``.
    rmsea_ci : float, default 0.90
        Confidence level of the RMSEA interval.
    item_col, value_col : str, optional
        For one-answer-per-row input: the columns holding the item name and the answer.
    missing : {"ml", "listwise"}, default "ml"
        ``"ml"``: full-information maximum likelihood, every participant with at least one
        answer in the chosen waves contributes the answers they gave (lavaan's
        ``missing = "ml"``); chi-square against the unrestricted model fitted by EM, baseline
        (independence) model by FIML, SRMR against the EM means and covariances.
        ``"listwise"``: complete cases only (lavaan's ``missing = "listwise"``), so attrition
        decides who is checked.

    Returns
    -------
    InvarianceResult
        ``table`` (one row per model: ``model, npar, chisq, df, p, cfi, tli, rmsea,
        rmsea_ci_low, rmsea_ci_high, srmr, delta_chisq, delta_df, delta_p, delta_cfi,
        delta_rmsea, decision, converged``), ``level`` (highest level that holds), ``n``,
        ``n_dropped``, ``estimates``, ``mean_residuals`` and ``summary()``.

    Raises
    ------
    ScoringError
        If columns are missing or not numeric, fewer than 3 items or 2 waves are given, a
        (participant, wave) row repeats, `levels` is malformed, too few (complete, for
        listwise) participants remain for the model, or (FIML) two variables are never
        answered by the same participant, so their covariance has no information.

    Warns
    -----
    InvarianceWarning
        When participants are left out for missing answers (listwise), or estimates are
        improper (negative variances).
    ConvergenceWarning
        When a model's optimizer stops short of convergence.

    Notes
    -----
    Decisions follow the change in CFI between nested models, ``delta_cfi >= -0.01``
    (Cheung & Rensvold, 2002; Putnick & Bornstein, 2016). The likelihood-ratio test
    (``delta_chisq``, ``delta_df``, ``delta_p``) and ``delta_rmsea`` (Chen, 2007, suggests
    ``<= 0.015``) are reported beside it but do not enter the decision. A level after a failed
    one is marked ``"not assessed"``. Estimation is FIML by default; with
    ``missing="listwise"`` participants missing any item at any wave are left out.

    In R: ``lavaan::cfa(model, data = wide, estimator = "ML", meanstructure = TRUE,
    missing = "ml")`` with
    equality labels on loadings (metric) and intercepts (scalar), and
    ``lavaan::fitMeasures(fit, c("chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr"))``.

    References
    ----------
    .. [1] Widaman, K. F., Ferrer, E., & Conger, R. D. (2010). Factorial invariance within
       longitudinal structural equation models: Measuring the same construct across time.
       Child Development Perspectives, 4(1), 10-18.
    .. [2] Putnick, D. L., & Bornstein, M. H. (2016). Measurement invariance conventions and
       reporting: The state of the art and future directions for psychological research.
       Developmental Review, 41, 71-90.
    .. [3] Cheung, G. W., & Rensvold, R. B. (2002). Evaluating goodness-of-fit indexes for
       testing measurement invariance. Structural Equation Modeling, 9(2), 233-255.
    .. [4] Chen, F. F. (2007). Sensitivity of goodness of fit indexes to lack of measurement
       invariance. Structural Equation Modeling, 14(3), 464-504.
    .. [5] Browne, M. W., & Cudeck, R. (1993). Alternative ways of assessing model fit. In
       K. A. Bollen & J. S. Long (Eds.), Testing structural equation models (pp. 136-162).
    .. [6] Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. Journal
       of Statistical Software, 48(2), 1-36.
    """
    items = [str(i) for i in items]
    if len(items) < 3:
        raise ScoringError(f"invariance: at least 3 items are needed, got {len(items)}")
    if len(set(items)) != len(items):
        raise ScoringError("invariance: items repeat")
    lv = list(levels)
    if not lv or lv[0] != "configural" or lv != list(LEVELS[: len(lv)]):
        raise ScoringError(
            f"invariance: levels must be a prefix of {LEVELS} starting at 'configural', got {lv}"
        )
    if not 0.0 < rmsea_ci < 1.0:
        raise ScoringError(f"invariance: rmsea_ci must be between 0 and 1, got {rmsea_ci}")
    if missing not in ("ml", "listwise"):
        raise ScoringError(f"invariance: missing must be 'ml' or 'listwise', got {missing!r}")

    wide, wave_list, n_dropped = _to_wide(
        long_items,
        items=items,
        wave_col=wave_col,
        id_col=id_col,
        waves=waves,
        item_col=item_col,
        value_col=value_col,
        listwise=missing == "listwise",
    )
    wave_names = [str(w) for w in wave_list]
    x = wide.to_numpy(dtype=float, na_value=np.nan)
    n, n_obs = x.shape
    if missing == "ml":
        return _invariance_fiml(x, items, wave_list, wave_names, n_dropped, lv,
                                delta_cfi_cutoff, rmsea_ci)
    if n_dropped:
        warnings.warn(
            f"invariance: {n_dropped} participant(s) with a missing answer at some wave were "
            "left out (listwise deletion)",
            InvarianceWarning,
            stacklevel=2,
        )
    if n <= n_obs:
        raise ScoringError(
            f"invariance: {n} complete participant(s) for {n_obs} observed variables; the "
            "model needs more participants than variables"
        )
    mean = x.mean(axis=0)
    s = np.cov(x, rowvar=False, bias=True)  # ML uses the N-denominator covariance
    sd = np.sqrt(np.diag(s))
    if np.any(sd <= 0):
        raise ScoringError("invariance: an item has no variance at some wave")
    sign, logdet_s = np.linalg.slogdet(s)
    if sign <= 0:
        raise ScoringError("invariance: the item covariance matrix is singular")
    baseline = (float(n * (np.sum(np.log(np.diag(s))) - logdet_s)), n_obs * (n_obs - 1) // 2)

    def fit_level(spec: _Spec, start: np.ndarray) -> _Fit:
        return _fit_ml(spec, s, mean, start)

    return _fit_levels(fit_level, s, mean, n, n_dropped, baseline, items, wave_list,
                       wave_names, lv, delta_cfi_cutoff, rmsea_ci, "listwise")


def _invariance_fiml(
    x: np.ndarray,
    items: list[str],
    wave_list: list[Hashable],
    wave_names: list[str],
    n_dropped: int,
    lv: list[str],
    delta_cfi_cutoff: float,
    rmsea_ci: float,
) -> InvarianceResult:
    """FIML branch of :func:`measurement_invariance`."""
    n, n_obs = x.shape
    if n <= n_obs:
        raise ScoringError(
            f"invariance: {n} participant(s) with an answer for {n_obs} observed variables; "
            "the model needs more participants than variables"
        )
    answered = (~np.isnan(x)).astype(float)
    together = answered.T @ answered
    if np.any(together == 0):
        i, j = np.argwhere(together == 0)[0]
        p = len(items)
        raise ScoringError(
            f"invariance: no participant answered both item {items[i % p]} at wave "
            f"{wave_names[i // p]} and item {items[j % p]} at wave {wave_names[j // p]}; their "
            "covariance has no information (drop one of those waves with `waves=`)"
        )
    pats = _patterns(x)
    mean, s, em_ok = _em_saturated(pats)
    if not em_ok:
        warnings.warn("invariance: the EM fit of the unrestricted model did not converge",
                      ConvergenceWarning, stacklevel=3)
    sd = np.sqrt(np.diag(s))
    if np.any(sd <= 0) or np.linalg.slogdet(s)[0] <= 0:
        raise ScoringError("invariance: an item has no variance at some wave, or the item "
                           "covariance matrix is singular")
    m2ll_h1 = _fiml_m2ll(s, mean, pats)
    # Independence (baseline) model by FIML: each variable's own mean and variance.
    m2ll_b = 0.0
    for j in range(n_obs):
        v = x[~np.isnan(x[:, j]), j]
        m2ll_b += v.size * (_LOG_2PI + math.log(v.var()) + 1.0)
    baseline = (float(m2ll_b - m2ll_h1), n_obs * (n_obs - 1) // 2)

    def fit_level(spec: _Spec, start: np.ndarray) -> _Fit:
        return _fit_fiml(spec, pats, start, m2ll_h1)

    return _fit_levels(fit_level, s, mean, n, n_dropped, baseline, items, wave_list,
                       wave_names, lv, delta_cfi_cutoff, rmsea_ci, "ml")


def _fit_levels(
    fit_level: Callable[[_Spec, np.ndarray], _Fit],
    s: np.ndarray,
    mean: np.ndarray,
    n: int,
    n_dropped: int,
    baseline: tuple[float, int],
    items: list[str],
    wave_list: list[Hashable],
    wave_names: list[str],
    lv: list[str],
    delta_cfi_cutoff: float,
    rmsea_ci: float,
    missing: str,
) -> InvarianceResult:
    """Fit the nested levels and build the result (``s``, ``mean``: the sample, or under FIML
    the EM-fitted unrestricted moments)."""
    sd = np.sqrt(np.diag(s))
    rows: list[dict[str, object]] = []
    estimates: dict[str, pd.DataFrame] = {}
    previous: _Matrices | None = None
    mean_resid = pd.DataFrame()
    for level in lv:
        spec = _build_spec(level, items, wave_names)
        start_m = (
            _data_start(s, mean, len(items), len(wave_list))
            if previous is None
            else _start_from(previous, spec)
        )
        fit = fit_level(spec, _pack(spec, start_m))
        if not fit.converged:
            warnings.warn(
                f"invariance: the {level} model did not converge", ConvergenceWarning, stacklevel=2
            )
        m = _matrices(spec, fit.theta)
        if np.any(np.diag(m.theta) < 0) or np.any(np.linalg.eigvalsh(m.phi) < 0):
            warnings.warn(
                f"invariance: the {level} model has improper estimates (a negative variance)",
                InvarianceWarning,
                stacklevel=2,
            )
        previous = m
        rows.append(_fit_stats(fit, s, mean, n, baseline, rmsea_ci))
        estimates[level] = pd.DataFrame({"parameter": list(spec.names), "estimate": fit.theta})
        if level == "scalar":
            mu = m.implied()[1]
            mean_resid = pd.DataFrame(
                ((mean - mu) / sd).reshape(len(wave_list), len(items)).T,
                index=pd.Index(items, name="item"),
                columns=pd.Index(wave_names, name="wave"),
            )

    table = pd.DataFrame(rows)
    table["delta_chisq"] = table["chisq"].diff()
    table["delta_df"] = table["df"].diff()
    table["delta_p"] = [
        math.nan if i == 0 or not d_df > 0 else float(stats.chi2.sf(max(d_chi, 0.0), d_df))
        for i, (d_chi, d_df) in enumerate(zip(table["delta_chisq"], table["delta_df"], strict=True))
    ]
    table["delta_cfi"] = table["cfi"].diff()
    table["delta_rmsea"] = table["rmsea"].diff()
    decisions: list[str] = []
    reached = "configural"
    failed = False
    for i, row in table.iterrows():
        if i == 0:
            decisions.append("baseline")
        elif failed:
            decisions.append("not assessed")
        elif row["delta_cfi"] >= delta_cfi_cutoff:
            decisions.append("holds")
            reached = str(row["model"])
        else:
            decisions.append("violated")
            failed = True
    table["decision"] = decisions
    table["delta_df"] = table["delta_df"].astype("Int64")
    table = table[list(INVARIANCE_COLUMNS)]
    return InvarianceResult(
        table=table,
        level=reached,
        items=tuple(items),
        waves=tuple(wave_names),
        n=n,
        n_dropped=n_dropped,
        estimates=estimates,
        mean_residuals=mean_resid,
        delta_cfi_cutoff=delta_cfi_cutoff,
        missing=missing,
    )
