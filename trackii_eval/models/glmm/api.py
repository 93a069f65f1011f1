"""Public entry point :func:`glmm`: logistic and Poisson mixed models, as lme4's ``glmer``.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.

Breslow, N. E. and Clayton, D. G. (1993). Approximate inference in generalized linear mixed
models. Journal of the American Statistical Association 88(421), 9-25.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd

from trackii_eval.errors import ModelError, UnsupportedModelError
from trackii_eval.models.glmm.engine import ClusterProblem
from trackii_eval.models.glmm.family import get_family
from trackii_eval.models.glmm.optimize import SINGULAR_TOL, fit_outer, glm_start
from trackii_eval.models.glmm.results import GlmmBackend, GlmmFit, varcomps
from trackii_eval.models.growth.design import (
    Design,
    build_design,
    drop_rank_deficient,
    not_estimable_terms,
    prepare,
)
from trackii_eval.models.growth.formula import parse_formula
from trackii_eval.models.results import data_fingerprint, package_versions

__all__ = ["glmm"]

_SUCC, _TRIALS, _WEIGHT = "_glmm_successes", "_glmm_trials", "_glmm_weight"


def _split_args(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def _eval_column(data: pd.DataFrame, expr: str, formula: str) -> pd.Series:
    try:
        out = data.eval(expr) if expr not in data.columns else data[expr]
    except Exception as exc:  # pandas raises many types for a bad expression
        raise ModelError(f"formula {formula!r}: cannot evaluate {expr!r} in cbind(): {exc}") \
            from exc
    return pd.Series(np.asarray(out, dtype=float), index=data.index)


def glmm(
    formula: str,
    data: pd.DataFrame,
    family: str = "binomial",
    nAGQ: int = 1,
    *,
    trials: str | None = None,
    weights: str | None = None,
    offset: str | None = None,
) -> GlmmFit:
    """Fit a logistic or Poisson mixed model (lme4's ``glmer``).

    Parameters
    ----------
    formula : str
        lme4-style formula with the growth engine's random-effect structures:
        ``y ~ fixed + (terms | participant)`` (random intercept and slopes, ``||`` for
        independent terms), optionally ``+ (terms | dialogue)`` with participants nested in
        dialogues. For the binomial family the response may be ``cbind(successes, failures)``
        (columns or arithmetic on them, e.g. ``cbind(incidence, size - incidence)``).
    data : pandas.DataFrame
        Long format, one row per participant and wave. Rows with a missing value in a used
        column are dropped (``fit.n_dropped``).
    family : {"binomial", "poisson"}
        Logistic (logit link) or Poisson (log link) model.
    nAGQ : int
        1: Laplace approximation (glmer's default). More than 1: adaptive Gauss–Hermite
        quadrature with that many points per participant, only for a single scalar random
        effect (as glmer).
    trials : str, optional
        Binomial only: column with the number of trials; the response is then the number of
        successes.
    weights : str, optional
        Column of prior weights. Binomial: the number of trials, the response being the
        proportion of successes (glmer's ``weights=`` convention); Poisson: each row's
        log-likelihood is multiplied by its weight.
    offset : str, optional
        Column added to the linear predictor with coefficient 1 (glmer's
        ``offset(log(exposure))``): for counts over different exposures, give the log of the
        exposure (e.g. log months) and the coefficients are log rate ratios per unit.

    Returns
    -------
    GlmmFit
        Fixed effects on the link scale (``tidy``), odds or rate ratios (``ratios``), variance
        components (``random``), log-likelihood, fit record and convergence warnings.

    Raises
    ------
    ModelError
        Malformed formula, missing columns, a response the family cannot model, ``nAGQ``
        with a random-effects structure quadrature does not support.
    UnsupportedModelError
        Crossed random factors, or more than two grouping factors.

    Notes
    -----
    The Laplace and quadrature criteria, the optimisation over (θ, β) and the convergence
    checks follow glmer (Bates et al. 2015): conditional modes by Newton's method per cluster
    (participant, or dialogue with nested participants), θ and β optimised jointly, standard
    errors from the finite-difference Hessian of the deviance. The log-likelihood includes the
    binomial / Poisson constants for every ``nAGQ`` (glmer drops them when ``nAGQ > 1``; see
    :attr:`GlmmFit.loglik_saturated_relative`).

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.

    Examples
    --------
    >>> fit = glmm("joint_activity ~ time * arm + (1 | participant)", data=scores,
    ...            family="binomial")  # doctest: +SKIP
    >>> fit.ratios()  # doctest: +SKIP
    """
    fam = get_family(family)
    try:
        nagq = int(nAGQ)
    except (TypeError, ValueError):
        raise ModelError(f"nAGQ must be a whole number >= 1, got {nAGQ!r}") from None
    if nagq < 1 or nagq > 100:
        raise ModelError(f"nAGQ must be between 1 and 100 (glmer's range), got {nAGQ!r}")
    if not isinstance(data, pd.DataFrame):
        raise ModelError("data must be a pandas DataFrame in long format (one row per wave)")
    parsed = parse_formula(formula)
    frame = data.reset_index(drop=True)
    extra: dict[str, str] = {}
    response = parsed.response
    if response.replace(" ", "").startswith("cbind("):
        if fam.name != "binomial":
            raise ModelError(f"formula {formula!r}: cbind(successes, failures) is for the "
                             "binomial family")
        if trials is not None or weights is not None:
            raise ModelError("give the trials either by cbind(successes, failures) or by "
                             "trials=/weights=, not both")
        inner = response.strip()[len("cbind("):-1]
        args = _split_args(inner)
        if len(args) != 2 or not all(args):
            raise ModelError(f"formula {formula!r}: cbind() needs two arguments, successes "
                             "and failures")
        succ = _eval_column(frame, args[0], formula)
        fail = _eval_column(frame, args[1], formula)
        frame = frame.assign(**{_SUCC: succ, _TRIALS: succ + fail})
        extra["trials"] = _TRIALS
        parsed = dataclasses.replace(parsed, response=_SUCC)
    for arg, name in (("trials", trials), ("weights", weights), ("offset", offset)):
        if name is None:
            continue
        if name not in frame.columns:
            raise ModelError(f"{arg}={name!r} is not a column of the data")
        extra[arg] = name
    if "trials" in extra and fam.name != "binomial" and trials is not None:
        raise ModelError("trials= is for the binomial family; use weights= for prior weights")
    # rows missing the trials or weights are dropped like rows missing a model variable
    keep = np.ones(len(frame), bool)
    for arg, col in extra.items():
        if arg != "trials" or col != _TRIALS:
            if not pd.api.types.is_numeric_dtype(frame[col]):
                raise ModelError(f"{arg}={col!r} must be a numeric column")
        keep &= frame[col].notna().to_numpy()
    n_pre = int((~keep).sum())
    if n_pre:
        frame = frame.loc[keep]
    resp_col = frame.get(parsed.response)
    if resp_col is not None and not (pd.api.types.is_numeric_dtype(resp_col)
                                     or pd.api.types.is_bool_dtype(resp_col)):
        raise ModelError(
            f"response {parsed.response!r} is not numeric (dtype {resp_col.dtype}); code a "
            "yes/no outcome as 1/0 (or True/False) and a count as whole numbers")
    prep = prepare(parsed, frame)
    if prep.structure.kind != "native":
        raise UnsupportedModelError(
            f"formula {formula!r}: {prep.structure.reason}; glmm supports (terms | "
            "participant), optionally with (terms | dialogue) for participants nested in "
            "dialogues"
        )
    design = build_design(prep)
    if len(design.y) != len(prep.frame):
        raise ModelError(f"formula {formula!r}: a transform gave non-finite values in some "
                         "rows; remove those rows or change the transform")
    rows = prep.frame.index
    y = np.asarray(design.y, float)
    if fam.name == "binomial" and prep.frame[parsed.response].dtype == bool:
        y = y.astype(float)
    ones = np.ones(len(y))
    if "trials" in extra:
        m = frame.loc[rows, extra["trials"]].to_numpy(dtype=float)
    elif "weights" in extra and fam.name == "binomial":
        m = frame.loc[rows, extra["weights"]].to_numpy(dtype=float)
        y = y * m
        # proportions times weights must be whole numbers of successes (as glmer warns)
        if np.any(np.abs(y - np.round(y)) > 1e-6):
            raise ModelError("binomial with weights=: response x weight is not a whole "
                             "number of successes in some rows; give cbind(successes, "
                             "failures) or trials= instead")
        y = np.round(y)
    else:
        m = ones
    if "weights" in extra and fam.name == "poisson":
        # prior weights multiply each row's log-likelihood (glmer's weights= for poisson)
        m = frame.loc[rows, extra["weights"]].to_numpy(dtype=float)
    if np.any(~np.isfinite(m)) or np.any(m < 0):
        raise ModelError("trials and weights must be finite and >= 0")
    fam.check(y, m if fam.name == "binomial" else ones, parsed.response)

    X, x_names, dropped = drop_rank_deficient(design.X, list(design.x_names))
    kept = [design.x_names.index(nm) for nm in x_names]
    q, nested = design.Z.shape[1], design.has_outer
    if nagq > 1 and (q != 1 or nested):
        raise ModelError(
            f"nAGQ = {nagq} (adaptive quadrature) needs a single scalar random effect such as "
            "(1 | participant), as glmer; use nAGQ = 1 (Laplace) for random slopes or nested "
            "factors"
        )
    off = None
    if "offset" in extra:
        off = frame.loc[rows, extra["offset"]].to_numpy(dtype=float)
        if not np.all(np.isfinite(off)):
            raise ModelError(f"offset={extra['offset']!r} has non-finite values (the log of a "
                             "zero exposure?); drop those rows or fix the exposure")
    prob = ClusterProblem(
        fam, y, m, X, design.Z, design.group, design.theta_pos, offset=off,
        Zo=design.Zo if nested else None,
        outer_of_group=design.outer_of_group if nested else None,
        theta_pos_outer=design.theta_pos_outer if nested else None,
    )
    beta0 = glm_start(prob.X, prob.y, prob.m, fam.name, prob.offset)
    x0 = np.r_[prob.start_theta(), beta0]
    try:
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            res = fit_outer(prob, nagq, x0)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError) as exc:
        # numpy/scipy failures say nothing a user can act on: name the model and what to try
        raise ModelError(
            f"glmm {formula!r}: the fit failed numerically ({type(exc).__name__}: {exc}); "
            "check for predictors on very different scales (rescale them), an outcome that "
            "never or always occurs, or too few participants for the random effects"
        ) from exc
    return _assemble(formula, fam, nagq, design, prob, res, x_names, kept, dropped, n_pre,
                     frame.loc[rows], offset or "")


def _assemble(formula: str, fam: Any, nagq: int, design: Design, prob: ClusterProblem,
              res: Any, x_names: list[str], kept: list[int], dropped: list[str], n_pre: int,
              rows: pd.DataFrame, offset: str) -> GlmmFit:
    nt = prob.n_theta
    theta, beta = res.x[:nt], res.x[nt:]
    warn = list(res.warnings)
    # lme4's vcov(use.hessian = TRUE): 2 (H⁻¹)_ββ from the Hessian over (θ, β)
    try:
        Hinv = np.linalg.inv(res.hessian)
        V = Hinv[nt:, nt:] + Hinv[nt:, nt:].T
        if np.any(~np.isfinite(V)) or np.linalg.eigvalsh(V).min() <= 0:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        # as lme4: fall back to the β block of the Hessian alone (θ held fixed) and say so
        Hb = res.hessian[nt:, nt:]
        try:
            V = 2 * np.linalg.inv(Hb)
        except np.linalg.LinAlgError:
            V = np.full((len(beta), len(beta)), np.nan)
        warn.append("variance-covariance matrix computed from finite-difference Hessian is "
                    "not positive definite: standard errors are conditional on θ")
    diag_theta = np.array([theta[i] for i, (r, c) in
                           enumerate([*design.theta_pos, *design.theta_pos_outer]) if r == c])
    singular = bool(np.any(diag_theta < SINGULAR_TOL))
    if singular:
        warn.append("boundary (singular) fit: see help('isSingular') — a random-effect "
                    "variance is estimated as zero or a correlation as ±1")
    se = np.sqrt(np.clip(np.diag(V), 0, None))
    if fam.name == "binomial":
        for nm, b, s in zip(x_names, beta, se, strict=True):
            if abs(b) > 10:
                warn.append(
                    f"possible (quasi-)complete separation: {nm} = {b:.3g} on the logit scale "
                    f"(std. error {s:.3g}); its odds ratio and Wald interval are not "
                    "meaningful (use confint(method='profile') or a penalised model)")
    if dropped:
        warn.append(f"fixed-effect model matrix is rank deficient so dropping "
                    f"{len(dropped)} column(s): {', '.join(dropped)}")
    # A factor seen at one level makes its terms vanish from the model matrix: say so.
    lost = tuple(not_estimable_terms(design.parsed.fixed, rows))
    warn += [f"{t}: {why}" for t, why in lost]
    dev_kernel = res.deviance
    loglik = -0.5 * dev_kernel + prob.const
    npar = len(beta) + nt
    nobs = len(prob.y)
    groups = [(design.group_name, int(prob.G))]
    if design.has_outer and design.outer_name is not None:
        groups.append((design.outer_name, int(prob.D)))
    # glmer's quadrature fits report the log-likelihood relative to the saturated model
    sat = fam.saturated(prob.y, prob.m)
    backend = GlmmBackend(problem=prob, design=design, kept=kept, nagq=nagq)
    fit = GlmmFit(
        formula=formula, family=fam.name, link=fam.link, nagq=nagq, nobs=nobs,
        n_dropped=int(design.n_dropped + n_pre), fixed_names=tuple(x_names), beta=beta,
        vcov_beta=V, theta=theta, loglik=float(loglik), deviance=float(-2 * loglik),
        aic=float(-2 * loglik + 2 * npar), bic=float(-2 * loglik + np.log(nobs) * npar),
        loglik_saturated=float(sat),
        converged=bool(res.converged), singular=singular,
        varcomps=tuple(varcomps(design, prob, theta)), group_counts=tuple(groups),
        dropped_columns=tuple(dropped), not_estimable=lost,
        _warnings=tuple(dict.fromkeys(warn)),
        n_evals=int(res.n_evals), optimizer_message=res.message, offset=offset,
        gradient=tuple(float(v) for v in res.gradient), _backend=backend,
        fingerprint=data_fingerprint(rows.reset_index(drop=True)),
        versions=tuple(package_versions().items()),
    )
    if fit.warnings:
        from trackii_eval.errors import ConvergenceWarning

        for w in fit.warnings:
            if w.startswith(("Model failed", "boundary", "Model is nearly")):
                warnings.warn(f"glmm {formula!r}: {w}", ConvergenceWarning, stacklevel=3)
    for t, why in fit.not_estimable:
        warnings.warn(f"glmm {formula!r}: {t}: {why}", UserWarning, stacklevel=3)
    return fit
