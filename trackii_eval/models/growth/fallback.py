"""statsmodels MixedLM fallback for random-intercept models outside the native family.

Crossed random intercepts (e.g. ``(1 | participant) + (1 | rater)``) and more than two
grouping factors cannot use the per-participant block structure of the native engine. When every
random term is an intercept, the model is a variance-components model that statsmodels fits with
one all-encompassing group; the result is wrapped in the same :class:`GrowthFit`, with a note in
``fit.warnings`` and an :class:`~trackii_eval.errors.EngineFallbackWarning`, and without
Satterthwaite df (p-values and intervals are z-based).

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from trackii_eval.errors import (
    ConvergenceWarning,
    EngineFallbackWarning,
    ModelError,
    warning_line,
)
from trackii_eval.models.growth.design import Prepared, drop_rank_deficient, not_estimable_terms
from trackii_eval.models.growth.optimize import SINGULAR_TOL, OptimizerInfo
from trackii_eval.models.growth.results import GrowthFit, VarComp

__all__ = ["fit_statsmodels"]


class StatsmodelsBackend:
    """Post-fit services for a statsmodels fit (prediction, BLUPs, ML refit)."""

    def __init__(self, prep: Prepared, spec: Any, kept: list[int], result: Any, y: np.ndarray):
        self.prep = prep
        self.spec = spec
        self.kept = kept
        self.result = result
        self.y = y

    def satterthwaite(self, fit: GrowthFit) -> None:
        """Not available: statsmodels gives no Satterthwaite df (z-based inference instead)."""
        return None

    def fixed_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """Fixed-effects matrix for new data, coded as in the fit."""
        mm = self.spec.get_model_matrix(newdata, output="numpy", na_action="ignore")
        return np.asarray(mm, dtype=float)[:, self.kept]

    def random_part(self, fit: GrowthFit, newdata: pd.DataFrame) -> np.ndarray:
        """Sum of the predicted intercepts of the known levels in new data."""
        out = np.zeros(len(newdata))
        for group, re in self._ranef_tables().items():
            cols = group.split(":")
            if not all(c in newdata.columns for c in cols):
                continue
            keys = newdata[cols[0]] if len(cols) == 1 else pd.MultiIndex.from_frame(newdata[cols])
            idx = re.index.get_indexer(keys)
            ok = idx >= 0
            out[ok] += re["Intercept"].to_numpy()[idx[ok]]
        return out

    def _ranef_tables(self) -> dict[str, pd.DataFrame]:
        re = self.result.random_effects
        blup = next(iter(re.values()))  # one all-encompassing group
        out = {}
        for group, (_, levels) in self.prep.codes.items():
            name = ":".join(group)
            # statsmodels labels each coefficient "<component>[<column name>]".
            vals = [float(blup.get(f"{name}[{name}[{k}]]", np.nan)) for k in range(len(levels))]
            out[name] = pd.DataFrame({"Intercept": vals}, index=levels.copy())
        return out

    def ranef(self, fit: GrowthFit, group: str | None) -> pd.DataFrame:
        """Predicted intercepts for one grouping factor (default: the one with most levels)."""
        tables = self._ranef_tables()
        if group is None:
            group = max(tables, key=lambda g: len(tables[g]))
        if group not in tables:
            raise ModelError(
                f"no random effects for {group!r}; grouping factors are {list(tables)}"
            )
        return tables[group]

    def refit_ml(self, fit: GrowthFit) -> GrowthFit:
        """Refit by maximum likelihood (for likelihood-ratio tests)."""
        return fit if not fit.reml else fit_statsmodels(self.prep, reml=False)

    def signature(self) -> dict[str, Any]:
        """What two fits must share for a likelihood-ratio test."""
        return {"y": self.y}


def fit_statsmodels(prep: Prepared, reml: bool = True) -> GrowthFit:
    """Fit a random-intercepts-only model with statsmodels MixedLM.

    Parameters
    ----------
    prep : Prepared
        Prepared data with ``structure.kind == "vc"``.
    reml : bool
        REML or ML.

    Returns
    -------
    GrowthFit
        ``engine == "statsmodels"``; df are NaN, p-values and intervals z-based.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """
    import statsmodels.api as sm
    from formulaic import model_matrix
    from statsmodels.regression.mixed_linear_model import VCSpec

    parsed, frame = prep.parsed, prep.frame
    if parsed.response not in frame.columns:
        raise ModelError("the statsmodels fallback needs the response to be a plain column")
    mm = model_matrix(parsed.fixed, frame, na_action="ignore", output="numpy")
    names_all = list(mm.model_spec.column_names)
    X, names, dropped = drop_rank_deficient(np.asarray(mm, dtype=float), names_all)
    kept = [names_all.index(n) for n in names]
    y = frame[parsed.response].to_numpy(dtype=float)
    n = y.size
    # One dense indicator block per grouping factor, all in one group (crossed design).
    groups = list(prep.codes)
    vc_names, vc_cols, vc_mats = [], [], []
    for g in groups:
        codes, levels = prep.codes[g]
        ind = np.zeros((n, len(levels)))
        ind[np.arange(n), codes] = 1.0
        vc_names.append(":".join(g))
        vc_cols.append([[f"{':'.join(g)}[{k}]" for k in range(len(levels))]])
        vc_mats.append([ind])
    exog_vc = VCSpec(vc_names, vc_cols, vc_mats)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sm.MixedLM(y, X, groups=np.zeros(n), exog_re=np.zeros((n, 0)), exog_vc=exog_vc)
        result = model.fit(reml=reml)
    fallback = (
        f"fitted by statsmodels MixedLM, not the lme4-exact engine ({prep.structure.reason}); "
        "no Satterthwaite df, so p-values and intervals use the normal distribution"
    )
    notes = [fallback]
    # A note alone is easy to miss: the weaker inference must reach whoever runs the fit.
    warnings.warn(fallback, EngineFallbackWarning, stacklevel=3)
    if dropped:
        notes.append(
            f"fixed-effect model matrix is rank deficient so dropping: {', '.join(dropped)}"
        )
    lost = tuple(not_estimable_terms(parsed.fixed, frame))
    for t, why in lost:
        notes.append(f"{t}: {why}")
        warnings.warn(f"growth {parsed.text!r}: {t}: {why}", UserWarning, stacklevel=3)
    # One clean line per distinct library warning (no traceback or multi-line text).
    notes += sorted({f"statsmodels: {warning_line(w.message, w.category)}" for w in caught})
    converged = bool(getattr(result, "converged", False))
    if not converged:
        msg = "statsmodels MixedLM did not converge"
        notes.append(msg)
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)

    sigma2 = float(result.scale)
    sigma = float(np.sqrt(sigma2))
    vc_names = list(model.exog_vc.names)
    vcomp = dict(zip(vc_names, np.asarray(result.vcomp, dtype=float), strict=True))
    # lme4 orders terms by decreasing number of levels; θ = sd / σ.
    order = sorted(groups, key=lambda g: -len(prep.codes[g][1]))
    theta = np.array([np.sqrt(max(vcomp[":".join(g)], 0.0)) / sigma for g in order])
    varcomps = [
        VarComp(
            ":".join(g),
            "Intercept",
            None,
            vcomp[":".join(g)],
            np.sqrt(max(vcomp[":".join(g)], 0)),
            np.nan,
        )
        for g in order
    ]
    varcomps.append(VarComp("Residual", None, None, sigma2, sigma, np.nan))
    p = len(names)
    beta = np.asarray(result.fe_params, dtype=float)[:p]
    vcov = np.asarray(result.cov_params(), dtype=float)[:p, :p]
    llf = float(result.llf)
    dev = -2.0 * llf
    npar = p + theta.size + 1
    info = OptimizerInfo(
        name="statsmodels MixedLM",
        n_evals=int(getattr(result, "n_iter", 0) or 0) if hasattr(result, "n_iter") else 0,
        gradient_norm=np.nan,
        final_gradient=(),
        start_theta=(),
        final_theta=tuple(float(v) for v in theta),
        message="converged" if converged else "not converged",
        engine="statsmodels",
        converged=converged,
    )
    singular = bool(np.any(theta < SINGULAR_TOL))
    if singular:
        notes.append("boundary (singular) fit: a variance component is estimated as zero")
    backend = StatsmodelsBackend(prep, mm.model_spec, kept, result, y)
    return GrowthFit(
        formula=parsed.text,
        reml=reml,
        engine="statsmodels",
        nobs=n,
        n_dropped=prep.n_dropped,
        fixed_names=tuple(names),
        beta=beta,
        vcov_beta=vcov,
        theta=theta,
        sigma=sigma,
        deviance=dev,
        loglik=llf,
        aic=dev + 2 * npar,
        bic=dev + np.log(n) * npar,
        converged=converged,
        singular=singular,
        optimizer=info,
        varcomps=tuple(varcomps),
        group_counts=tuple((":".join(g), len(prep.codes[g][1])) for g in order),
        dropped_columns=tuple(dropped),
        not_estimable=lost,
        _warnings=tuple(notes),
        _backend=backend,
    )
