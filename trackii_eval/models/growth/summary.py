"""Text summary of a fit in the layout of lme4's / lmerTest's ``summary()``.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§5, the summary output).

Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trackii_eval.models.growth.results import GrowthFit

__all__ = ["format_summary"]


def _fmt(v: float, width: int = 10, digits: int = 4) -> str:
    if v is None or not np.isfinite(v):
        return f"{'NA':>{width}}"
    return (
        f"{v:>{width}.{digits}g}"
        if abs(v) >= 1e5 or (0 < abs(v) < 1e-3)
        else (f"{v:>{width}.{digits}f}")
    )


def _pfmt(p: float) -> str:
    if not np.isfinite(p):
        return f"{'NA':>9}"
    return f"{'< 2e-16':>9}" if p < 2e-16 else f"{p:>9.3g}"


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return ""


def format_summary(fit: GrowthFit) -> str:
    """Format ``fit`` as text.

    Parameters
    ----------
    fit : GrowthFit
        A fitted model.

    Returns
    -------
    str
    """
    crit = "REML" if fit.reml else "maximum likelihood"
    df_label = "Satterthwaite's method" if fit.engine == "trackii" else "normal approximation"
    lines = [
        f"Linear mixed model fit by {crit}. t-tests use {df_label} [engine: {fit.engine}]",
        f"Formula: {fit.formula}",
        f"Observations: {fit.nobs} used, {fit.n_dropped} dropped for missing values",
        "",
    ]
    if fit.reml:
        lines.append(f"REML criterion at convergence: {fit.deviance:.4f}")
    else:
        lines.append(
            f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10}\n"
            f"{fit.aic:>10.2f} {fit.bic:>10.2f} {fit.loglik:>10.2f} {fit.deviance:>10.2f}"
        )
    lines += ["", "Random effects:"]
    rnd = fit.random
    var_rows = rnd[rnd["term2"].isna()]
    corr = {(r.group, r.term, r.term2): r.corr for r in rnd[rnd["term2"].notna()].itertuples()}
    lines.append(f" {'Groups':<12} {'Name':<22} {'Variance':>12} {'Std.Dev.':>10}  Corr")
    prev_group = None
    seen: dict[str, list[str]] = {}
    for r in var_rows.itertuples():
        group = r.group if r.group != prev_group else ""
        name = r.term if r.term is not None else ""
        cors = [corr.get((r.group, a, name), np.nan) for a in seen.get(r.group, [])]
        cor_txt = " ".join(f"{c:>5.2f}" for c in cors if np.isfinite(c))
        lines.append(f" {group:<12} {name:<22} {r.variance:>12.5g} {r.std_dev:>10.5g}  {cor_txt}")
        seen.setdefault(r.group, []).append(name)
        prev_group = r.group
    groups = ", ".join(f"{k}, {v}" for k, v in fit.ngroups.items())
    lines += [f"Number of obs: {fit.nobs}, groups:  {groups}", "", "Fixed effects:"]
    tab = fit.fixed
    width = max(12, *(len(t) for t in tab.index))
    lines.append(
        f"{'':<{width}} {'Estimate':>10} {'Std. Error':>10} {'df':>10} {'t value':>10} "
        f"{'Pr(>|t|)':>9}"
    )
    for term, row in tab.iterrows():
        lines.append(
            f"{term:<{width}} {_fmt(row.estimate)} {_fmt(row.std_error)} {_fmt(row.df, 10, 2)} "
            f"{_fmt(row.t, 10, 3)} {_pfmt(row.p_value)} {_stars(row.p_value)}"
        )
    lines.append("---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
    opt = fit.optimizer
    lines += [
        "",
        f"Optimizer: {opt.name} ({opt.engine}), {opt.n_evals} evaluations, "
        f"max|gradient| {opt.gradient_norm:.2g}, converged: {fit.converged}",
        f"theta: {np.array2string(np.asarray(fit.theta), precision=5)}",
    ]
    if fit.fingerprint:
        lines.append(f"Data: sha256:{fit.fingerprint[:16]}; "
                     + ", ".join(f"{k} {v}" for k, v in fit.versions))
    if fit.dropped_columns:
        lines.append(f"Dropped (rank deficient): {', '.join(fit.dropped_columns)}")
    warns = fit.warnings
    if warns:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in warns]
    return "\n".join(lines)
