"""``clmm()``: fit a cumulative-link mixed model to ordinal responses (as R's ordinal::clmm).

The formula is lme4-style, e.g. ``"rating ~ time * arm + (time | participant)"``; its response
is an ordered categorical column or integer codes (order = sorted values). The fixed part is
coded by formulaic (term names as elsewhere in the project, e.g. ``arm[T.dialogue]``) without
an intercept: the K-1 thresholds take its place.

References
----------
Christensen, R. H. B. (2019). Cumulative link models for ordinal regression with the R package
ordinal. R package vignette. Agresti, A. (2010). Analysis of Ordinal Categorical Data, 2nd ed.,
Wiley, ch. 10.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from scipy import optimize
from scipy import stats as sps

from trackii_eval.errors import ModelError, UnsupportedModelError
from trackii_eval.models.clmm._engine import Problem, loglik_and_gradient
from trackii_eval.models.clmm.result import ClmmFit, VarianceComponent
from trackii_eval.models.growth.design import not_estimable_terms
from trackii_eval.models.growth.formula import parse_formula
from trackii_eval.models.results import data_fingerprint, package_versions

__all__ = ["clmm"]

GRAD_TOL = 1e-3          # max |gradient| of the log-likelihood at the optimum (free parameters)
BOUNDARY_TOL = 1e-4      # a diagonal element of the covariance factor this small is on the boundary
MAX_AGQ_NODES = 400      # n_agq ** q nodes per cluster at most


@dataclass
class _Design:
    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    group: np.ndarray
    n_groups: int
    categories: list[Any]
    x_names: list[str]
    z_names: list[str]
    group_name: str
    n_dropped: int
    used: pd.DataFrame
    notes: list[str]


def _columns_of(expr: str, data: pd.DataFrame) -> list[str]:
    # the data columns a formulaic right-hand side reads (formulaic's own parse)
    try:
        names = Formula(expr).required_variables
    except Exception as exc:  # formulaic raises many kinds of parse errors
        raise ModelError(f"cannot read the formula part {expr!r}: {exc}") from exc
    missing = sorted(n for n in names if n not in data.columns)
    if missing:
        raise ModelError(f"formula part {expr!r}: column(s) {', '.join(missing)} not in the "
                         f"data (columns: {', '.join(map(str, data.columns))})")
    return sorted(names)


def _design(formula: str, data: pd.DataFrame) -> _Design:
    if not isinstance(data, pd.DataFrame):
        raise ModelError("clmm(data=...) must be a pandas DataFrame")
    parsed = parse_formula(formula)
    if len(parsed.random) != 1:
        raise UnsupportedModelError(
            f"formula {formula!r}: clmm fits exactly one random-effects term for one grouping "
            "factor, e.g. (1 | participant) or (time | participant); nested or crossed factors "
            "are not supported yet")
    term = parsed.random[0]
    if len(term.group) != 1:
        raise UnsupportedModelError(
            f"formula {formula!r}: the grouping factor must be a single column (got "
            f"{term.group_name}); nested factors are not supported by clmm yet")
    group_name = term.group[0]
    for col in (parsed.response, group_name):
        if col not in data.columns:
            raise ModelError(f"formula {formula!r}: column '{col}' is not in the data "
                             f"(columns: {', '.join(map(str, data.columns))})")
    needed = [parsed.response, group_name, *_columns_of(parsed.fixed, data),
              *_columns_of(term.expr, data)]
    needed = list(dict.fromkeys(needed))
    used = data[needed]
    keep = used.notna().all(axis=1).to_numpy()
    n_dropped = int((~keep).sum())
    used = used.loc[keep]
    if len(used) == 0:
        raise ModelError(f"formula {formula!r}: no row has all of {', '.join(needed)}")
    resp = used[parsed.response]
    notes: list[str] = []
    if isinstance(resp.dtype, pd.CategoricalDtype):
        if not resp.cat.ordered:
            raise ModelError(f"response '{parsed.response}' is an unordered categorical; make it "
                             "ordered (pd.Categorical(..., ordered=True)) or use integer codes")
        observed = [c for c in resp.cat.categories if (resp == c).any()]
        unused = [str(c) for c in resp.cat.categories if c not in observed]
        if unused:
            notes.append(f"response categories never observed and left out: {', '.join(unused)}")
        categories = observed
        codes = pd.Categorical(resp, categories=observed, ordered=True).codes.astype(np.int64)
    else:
        if not pd.api.types.is_numeric_dtype(resp):
            raise ModelError(f"response '{parsed.response}' must be ordered categorical or "
                             f"integer codes, not {resp.dtype}")
        vals = resp.to_numpy(dtype=float)
        if np.any(vals != np.round(vals)):
            raise ModelError(f"response '{parsed.response}' has non-integer values; an ordinal "
                             "item needs ordered categories or integer codes")
        categories = [int(v) for v in np.unique(vals)]
        codes = np.searchsorted(np.array(categories, dtype=float), vals).astype(np.int64)
    if len(categories) < 2:
        raise ModelError(f"response '{parsed.response}' has fewer than two observed categories; "
                         "an ordinal model needs at least two")
    # A factor seen at one level makes its terms vanish from the model matrix: say so.
    for t, why in not_estimable_terms(parsed.fixed, used):
        notes.append(f"{t}: {why}")
    fixed = model_matrix(parsed.fixed, used, ensure_full_rank=True, na_action="raise")
    x_names = [c for c in fixed.columns if c != "Intercept"]
    X = np.asarray(fixed[x_names], dtype=float).reshape(len(used), len(x_names))
    full = np.column_stack([np.ones(len(used)), X])
    if np.linalg.matrix_rank(full) < full.shape[1]:
        raise ModelError(f"formula {formula!r}: the fixed effects are not all identifiable "
                         "(collinear columns); drop a term")
    rand = model_matrix(term.expr, used, na_action="raise")
    z_names = list(rand.columns)
    Z = np.asarray(rand, dtype=float).reshape(len(used), len(z_names))
    group, uniques = pd.factorize(used[group_name], sort=True)
    # observations sorted by cluster (stable): the engine then sums within clusters in one pass
    order = np.argsort(group, kind="stable")
    used, codes, X, Z, group = used.iloc[order], codes[order], X[order], Z[order], group[order]
    return _Design(y=codes, X=X, Z=Z, group=group.astype(np.int64), n_groups=len(uniques),
                   categories=categories, x_names=x_names, z_names=z_names,
                   group_name=group_name, n_dropped=n_dropped, used=used, notes=notes)


class _Objective:
    """Negative marginal log-likelihood in the optimiser's parameters, with warm starts.

    Parameters (``phi``): theta_1, log(theta_k - theta_{k-1}) for k >= 2 (so the thresholds
    stay ordered without constraints), beta, then the covariance factor: diagonal (>= 0) and
    the lower triangle by rows.
    """

    def __init__(self, prob: Problem, n_agq: int) -> None:
        self.prob, self.n_agq = prob, n_agq
        self.K1 = prob.n_cat - 1
        self.q = prob.q
        self.tril = [(r, s) for r in range(self.q) for s in range(r)]
        self.u: np.ndarray | None = None
        self.n_evals = 0
        self.inner_ok = True

    def unpack(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K1, p, q = self.K1, self.prob.p, self.q
        theta = phi[0] + np.concatenate(([0.0], np.cumsum(np.exp(phi[1:K1]))))
        beta = phi[K1:K1 + p]
        Lam = np.diag(phi[K1 + p:K1 + p + q]).astype(float)
        for k, (r, s) in enumerate(self.tril):
            Lam[r, s] = phi[K1 + p + q + k]
        return theta, beta, Lam

    def natural(self, phi: np.ndarray) -> np.ndarray:
        theta, _, _ = self.unpack(phi)
        return np.concatenate([theta, phi[self.K1:]])

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """d natural / d phi (thresholds block lower-triangular, identity elsewhere)."""
        J = np.eye(len(phi))
        K1 = self.K1
        for k in range(K1):
            J[k, 0] = 1.0
            for j in range(1, k + 1):
                J[k, j] = math.exp(phi[j])
        return J

    def __call__(self, phi: np.ndarray) -> float:
        return self.value_and_grad(phi)[0]

    def value_and_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log-likelihood and its exact gradient in ``phi`` (inf, 0 if infeasible)."""
        self.n_evals += 1
        theta, beta, Lam = self.unpack(phi)
        if not (np.all(np.isfinite(theta)) and np.all(np.diff(theta) > 0)):
            return math.inf, np.zeros(len(phi))
        with np.errstate(all="ignore"):
            ll, grad_nat, modes = loglik_and_gradient(self.prob, theta, beta, Lam, self.n_agq,
                                                      u0=self.u)
        if not (np.isfinite(ll) and np.all(np.isfinite(grad_nat))):
            return math.inf, np.zeros(len(phi))
        self.inner_ok = self.inner_ok and modes.converged
        self.u = modes.u
        # chain rule through the threshold increments: d nat / d phi = J
        return -ll, -(self.jacobian(phi).T @ grad_nat)

    def gradient(self, phi: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Gradient of the negative log-likelihood on the free parameters."""
        return self.value_and_grad(phi)[1][free]

    def hessian(self, phi: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Hessian on the free parameters: central differences of the exact gradient."""
        idx = np.flatnonzero(free)
        u_keep = self.u
        H = np.zeros((len(idx), len(idx)))
        for a, i in enumerate(idx):
            h = 1e-5 * max(1.0, abs(phi[i]))
            e = np.zeros(len(phi))
            e[i] = h
            gp = self.gradient(phi + e, free)
            self.u = u_keep
            gm = self.gradient(phi - e, free)
            self.u = u_keep
            H[a] = (gp - gm) / (2 * h)
        return 0.5 * (H + H.T)


def _start(prob: Problem, n_lam: int) -> np.ndarray:
    # Thresholds from the marginal cumulative proportions (the fit without covariates and
    # random effects), fixed effects 0, covariance factor 0.5 * I.
    counts = np.bincount(prob.y, minlength=prob.n_cat).astype(float) + 0.5
    cum = np.cumsum(counts)[:-1] / counts.sum()
    theta = sps.logistic.ppf(cum) if prob.link == "logit" else sps.norm.ppf(cum)
    q = prob.q
    lam = np.concatenate([np.full(q, 0.5), np.zeros(n_lam - q)])
    return np.concatenate([[theta[0]], np.log(np.diff(theta)), np.zeros(prob.p), lam])


def clmm(formula: str, data: pd.DataFrame, link: str = "logit", nAGQ: int = 1,
         *, level_names: bool = True) -> ClmmFit:
    """Fit a cumulative-link mixed model by maximum likelihood.

    ``logit P(Y <= k | b) = theta_k - x'beta - z'b`` (probit: the normal CDF), the
    parameterisation of R's ``ordinal::clmm``: a positive coefficient moves responses towards
    the higher categories.

    Parameters
    ----------
    formula : str
        lme4-style formula with one random-effects term for one grouping factor, e.g.
        ``"rating ~ time * arm + (1 | participant)"`` or ``"... + (time | participant)"``.
    data : pandas.DataFrame
        Long data, one row per response. Rows with a missing value in a used column are left
        out (counted in the fit's record and warnings).
    link : {"logit", "probit"}
    nAGQ : int
        1: Laplace approximation (as ``clmm``). > 1: adaptive Gauss-Hermite quadrature with
        ``nAGQ`` points per random-effect dimension, for a random intercept **and** for
        random slopes (product rule around the conditional mode, ``nAGQ ** q`` nodes per
        cluster; ``clmm`` offers quadrature for a single random intercept only).
    level_names : bool
        Name thresholds by the response's categories (``"1|2"``, as clmm).

    Returns
    -------
    ClmmFit
        Thresholds and fixed effects with SEs (inverse of the numerical Hessian of the
        log-likelihood, as clmm), random-effect variances, log-likelihood, the method used and
        a boundary flag (a zero variance or a correlation of +-1).

    Raises
    ------
    ModelError
        Bad formula, data or link; fewer than two categories; collinear fixed effects.
    UnsupportedModelError
        More than one random term, or nested/crossed grouping factors.

    References
    ----------
    Christensen, R. H. B. (2019). ordinal: Regression Models for Ordinal Data (``clmm``).
    """
    if link not in {"logit", "probit"}:
        raise ModelError(f"clmm(link={link!r}): link must be 'logit' or 'probit'")
    if not isinstance(nAGQ, int | np.integer) or nAGQ < 1:
        raise ModelError(f"clmm(nAGQ={nAGQ!r}): nAGQ must be a positive integer (1 = Laplace)")
    d = _design(formula, data)
    prob = Problem(y=d.y, X=d.X, Z=d.Z, group=d.group, n_groups=d.n_groups,
                   n_cat=len(d.categories), link=link)
    q = prob.q
    if nAGQ > 1 and nAGQ ** q > MAX_AGQ_NODES:
        raise ModelError(f"clmm(nAGQ={nAGQ}): {nAGQ}^{q} = {nAGQ ** q} quadrature nodes per "
                         f"cluster is more than {MAX_AGQ_NODES}; use fewer points")
    n_lam = q * (q + 1) // 2
    obj = _Objective(prob, int(nAGQ))
    K1, p = prob.n_cat - 1, prob.p
    n_par = K1 + p + n_lam
    bounds = [(None, None)] * (K1 + p) + [(0.0, None)] * q + [(None, None)] * (n_lam - q)

    def fun_grad(phi: np.ndarray) -> tuple[float, np.ndarray]:
        f0, g0 = obj.value_and_grad(phi)
        return (f0, g0) if np.isfinite(f0) else (1e300, g0)

    phi0 = _start(prob, n_lam)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = optimize.minimize(fun_grad, phi0, jac=True, method="L-BFGS-B", bounds=bounds,
                                    options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-7})
    except (np.linalg.LinAlgError, FloatingPointError, ValueError) as exc:
        raise ModelError(f"clmm {formula!r}: the likelihood could not be maximised ({exc}); "
                         "check for categories or covariates that separate the responses "
                         "and simplify the model") from exc
    phi = res.x.copy()
    diag_idx = np.arange(K1 + p, K1 + p + q)
    # A diagonal element of the covariance factor on its bound of 0 is a stationary point of
    # the likelihood for any data (b = Lu enters through L L'), so a line search that
    # overshoots to the bound stops there. Restart from positive values and keep the better
    # optimum; a genuinely singular fit returns to the bound (see glmm's fit_outer).
    for _ in range(3):
        on_bound = diag_idx[phi[diag_idx] <= BOUNDARY_TOL]
        if on_bound.size == 0:
            break
        base = float(res.fun)
        trials = []
        for value in (0.1, 0.5, 1.0):
            cand = phi.copy()
            cand[on_bound] = value
            val = fun_grad(cand)[0]
            if np.isfinite(val) and val < base - 1e-8:
                trials.append((val, cand))
        if not trials:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            again = optimize.minimize(fun_grad, min(trials, key=lambda t: t[0])[1], jac=True,
                                      method="L-BFGS-B", bounds=bounds,
                                      options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-7})
        if not again.fun < base - 1e-8:
            break
        res, phi = again, again.x.copy()
    # Polish with Newton steps on the free parameters (a diagonal element at the bound 0 stays
    # there, as clmm drops boundary parameters from its Hessian): the gradient at the reported
    # optimum is then checked, not assumed.
    if q == 2 and phi[K1 + p] <= BOUNDARY_TOL:
        # no intercept variance: the slope's variance is l21^2 + l22^2 whichever carries it;
        # put it on l22 so that the factor is unique and l21 can be fixed at 0
        phi[K1 + p + 1] = math.hypot(phi[K1 + p + 1], phi[K1 + p + 2])
        phi[K1 + p + 2] = 0.0
    free = np.ones(n_par, bool)
    free[diag_idx] = phi[diag_idx] > BOUNDARY_TOL
    phi[diag_idx[~free[diag_idx]]] = 0.0
    for k, (_r, s) in enumerate(obj.tril):
        # an off-diagonal element below a zero diagonal element is not identified
        if not free[K1 + p + s]:
            free[K1 + p + q + k] = False
            phi[K1 + p + q + k] = 0.0
    f = obj(phi)
    H = obj.hessian(phi, free)
    for _ in range(4):
        g = obj.gradient(phi, free)
        if np.max(np.abs(g)) < 1e-6:
            break
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        trial = phi.copy()
        trial[free] -= step
        if np.any(trial[diag_idx] < 0):
            break
        f_trial = obj(trial)
        if not f_trial <= f:
            break
        phi, f = trial, f_trial
    f, g_all = obj.value_and_grad(phi)
    g_final = g_all[free]
    loglik = -f
    _, _, Lam = obj.unpack(phi)
    warn: list[str] = list(d.notes)
    if d.n_dropped:
        warn.append(f"{d.n_dropped} row(s) with a missing value in a model column left out")
    eig = np.linalg.eigvalsh(H) if H.size else np.array([1.0])
    hess_ok = bool(np.all(eig > 0))
    max_grad = float(np.max(np.abs(g_final))) if g_final.size else 0.0
    converged = bool(hess_ok and max_grad < GRAD_TOL and obj.inner_ok)
    if not hess_ok:
        warn.append("the Hessian of the log-likelihood is not positive definite at the "
                    "optimum: standard errors are not available; simplify the model")
    if max_grad >= GRAD_TOL:
        warn.append(f"optimiser stopped with max |gradient| {max_grad:.2g} >= {GRAD_TOL:g}: "
                    "the fit may not be at the maximum")
    if not obj.inner_ok:
        warn.append("the conditional modes of some participants did not converge")
    # Covariance of the natural parameters (thresholds, beta, covariance factor).
    nat = obj.natural(phi)
    cov = np.full((n_par, n_par), np.nan)
    if hess_ok:
        J = obj.jacobian(phi)[np.ix_(np.arange(n_par), np.flatnonzero(free))]
        cov_phi = np.linalg.inv(H)
        cov = J @ cov_phi @ J.T
        cov[~free, :] = np.nan
        cov[:, ~free] = np.nan
    boundary = bool(np.any(np.abs(np.diag(Lam)) <= BOUNDARY_TOL))
    Sigma = Lam @ Lam.T
    method = "Laplace approximation" if nAGQ == 1 else (
        f"adaptive Gauss-Hermite quadrature, {nAGQ} points per dimension"
        + (f" ({nAGQ}^{q} = {nAGQ ** q} product nodes per {d.group_name})" if q > 1 else ""))
    if boundary:
        sd = np.sqrt(np.diag(Sigma))
        if q > 1 and np.all(sd > BOUNDARY_TOL):
            what = "a random-effect correlation of +-1"
        else:
            what = "a random-effect variance of 0"
        hint = (" Laplace can land on such a boundary when the exact likelihood does not: "
                "refit with nAGQ > 1 (adaptive quadrature) to check."
                if nAGQ == 1 and q > 1 else "")
        warn.append(f"boundary (singular) fit: {what} ({method}).{hint}")
    comps = []
    for r in range(q):
        for s in range(r + 1):
            if r == s:
                comps.append(VarianceComponent(d.group_name, d.z_names[r], None,
                                               float(Sigma[r, r]), float(math.sqrt(Sigma[r, r])),
                                               math.nan))
            else:
                denom = math.sqrt(Sigma[r, r] * Sigma[s, s])
                corr = float(Sigma[r, s] / denom) if denom > 0 else math.nan
                comps.append(VarianceComponent(d.group_name, d.z_names[s], d.z_names[r],
                                               float(Sigma[r, s]), math.nan, corr))
    cats = [str(c) for c in d.categories]
    thr_names = ([f"{a}|{b}" for a, b in itertools.pairwise(cats)] if level_names
                 else [f"threshold{k + 1}" for k in range(K1)])
    lam_names = ([f"lambda[{r},{r}]" for r in range(q)]
                 + [f"lambda[{r},{s}]" for r, s in obj.tril])
    parsed = parse_formula(formula)
    lost = tuple(not_estimable_terms(parsed.fixed, d.used))
    for t, why in lost:
        warnings.warn(f"clmm {formula!r}: {t}: {why}", UserWarning, stacklevel=3)
    return ClmmFit(
        formula=formula, fixed_formula=parsed.fixed, link=link, n_agq=int(nAGQ), method=method,
        threshold_names=tuple(thr_names), fixed_names=tuple(d.x_names),
        z_names=tuple(d.z_names), group_name=d.group_name, categories=tuple(cats),
        estimates=np.asarray(nat[:K1 + p], float), lam=np.asarray(nat[K1 + p:], float),
        lam_names=tuple(lam_names), vcov_full=cov, loglik=float(loglik),
        n_params=int(free.sum()), converged=converged, boundary=boundary,
        varcomps=tuple(comps), nobs=len(d.y), n_dropped=d.n_dropped,
        n_groups=d.n_groups, n_evals=obj.n_evals, max_gradient=max_grad,
        optimizer_message=str(res.message), _warnings=tuple(warn),
        fingerprint=data_fingerprint(d.used.reset_index(drop=True)),
        versions=tuple(package_versions("formulaic").items()),
        ranef=tuple(map(tuple, (obj.u if obj.u is not None else np.zeros((0, q))) @ Lam.T)),
        not_estimable=lost,
    )
