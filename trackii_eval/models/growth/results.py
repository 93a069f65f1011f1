"""The immutable result of a growth-model fit.

Every table a report needs is a read-only property that builds a fresh DataFrame from frozen
arrays, so no caller can change a fit after the fact.

``fit.random`` shape (one row per variance or covariance parameter, lme4's
``as.data.frame(VarCorr(m))`` order):

=========  =================  ==========================================================
column     variance rows      covariance rows
=========  =================  ==========================================================
group      grouping factor    grouping factor (``"Residual"`` for the residual row)
term       random term        first term of the pair
term2      None               second term of the pair
variance   variance           covariance
std_dev    standard deviation NaN
corr       NaN                correlation
=========  =================  ==========================================================

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.

Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats as sps

from trackii_eval.errors import ModelError
from trackii_eval.models.growth.design import aliased_notes
from trackii_eval.models.growth.optimize import GRAD_TOL, SINGULAR_TOL, OptimizerInfo
from trackii_eval.models.results import (
    SCHEMA_VERSION,
    FitRecord,
    append_not_estimable,
    as_float,
    register_result,
    summary_html_layout,
    term_role,
    tidy_frame,
)

__all__ = ["GrowthFit", "VarComp", "parameter_vector"]


@dataclass(frozen=True)
class VarComp:
    """One row of ``fit.random``."""

    group: str
    term: str | None
    term2: str | None
    variance: float
    std_dev: float
    corr: float


def _ro(a: Any) -> np.ndarray:
    arr = np.array(a, dtype=float, copy=True)
    arr.setflags(write=False)
    return arr


def _json_num(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


@register_result
@dataclass(frozen=True, eq=False)
class GrowthFit:
    """A fitted growth (linear mixed) model. Immutable; build it with :func:`growth`.

    Satisfies :class:`trackii_eval.models.results.ModelResult` (``tidy``, ``record``,
    ``summary``/``summary_html``, ``to_dict``/``from_dict``). A fit rebuilt by
    :meth:`from_dict` keeps every number of the original (tidy tables at any level included)
    but has no fitting backend: ``predict``, ``ranef``, profile/bootstrap intervals and
    Satterthwaite df of new contrasts need the live fit.

    Attributes
    ----------
    formula : str
        The model formula as given.
    reml : bool
        REML (True) or maximum likelihood.
    engine : str
        ``"trackii"`` (the profiled-deviance engine) or ``"statsmodels"`` (fallback).
    nobs : int
        Observations used.
    n_dropped : int
        Rows dropped because a used column was missing.
    theta : ndarray
        Relative covariance factor in lme4's ``getME(m, "theta")`` order and parameterisation.
    sigma : float
        Residual standard deviation.
    deviance : float
        REML criterion for REML fits, else -2 log-likelihood.
    loglik, aic, bic : float
        As lme4's ``logLik``, ``AIC`` and ``BIC`` (REML log-likelihood for REML fits; number of
        parameters = fixed effects + θ + 1).
    converged, singular : bool
        Convergence checks passed; some variance/diagonal θ on the boundary (< 1e-4).
    optimizer : OptimizerInfo
        Optimiser diagnostics.
    fingerprint : str
        SHA-256 of the analysis rows (see ``models.results.data_fingerprint``).
    versions : tuple of (str, str)
        Package versions at fit time.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.

    Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests
    in linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
    """

    formula: str
    reml: bool
    engine: str
    nobs: int
    n_dropped: int
    fixed_names: tuple[str, ...]
    beta: np.ndarray
    vcov_beta: np.ndarray
    theta: np.ndarray
    sigma: float
    deviance: float
    loglik: float
    aic: float
    bic: float
    converged: bool
    singular: bool
    optimizer: OptimizerInfo
    varcomps: tuple[VarComp, ...]
    group_counts: tuple[tuple[str, int], ...]
    dropped_columns: tuple[str, ...] = ()
    not_estimable: tuple[tuple[str, str], ...] = ()
    _warnings: tuple[str, ...] = ()
    _backend: Any = field(default=None, repr=False)
    fingerprint: str = ""
    versions: tuple[tuple[str, str], ...] = ()
    # Satterthwaite df of the fixed effects of a fit rebuilt by from_dict (no backend).
    _fixed_df: tuple[float, ...] | None = None

    kind: ClassVar[str] = "growth"

    def __post_init__(self) -> None:
        for name in ("beta", "vcov_beta", "theta"):
            object.__setattr__(self, name, _ro(getattr(self, name)))

    # ----------------------------------------------------------------- simple accessors
    @property
    def warnings(self) -> list[str]:
        """Problems a report should show (convergence, singular fit, fallbacks, dropped terms)."""
        satt = self._satt
        return list(self._warnings) + (list(satt.notes) if satt is not None else [])

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        return dict(self.group_counts)

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects (σ² (X'V⁻¹X)⁻¹)."""
        names = list(self.fixed_names)
        return pd.DataFrame(np.array(self.vcov_beta), index=names, columns=names)

    @property
    def random(self) -> pd.DataFrame:
        """Variance components, correlations and the residual variance (see module docs)."""
        rows = [vc.__dict__ for vc in self.varcomps]
        df = pd.DataFrame(rows, columns=["group", "term", "term2", "variance", "std_dev", "corr"])
        for col in ("term", "term2"):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        return df

    # ----------------------------------------------------------------- inference
    @cached_property
    def _satt(self) -> Any:
        # Computed on first use: refits and bootstraps that never read df do not pay for it.
        if self._backend is None:
            return None
        return self._backend.satterthwaite(self)

    @property
    def fixed(self) -> pd.DataFrame:
        """Fixed effects: estimate, std_error, Satterthwaite df, t, p_value, 95% Wald CI.

        The CI is t-based with the Satterthwaite df (lmerTest's ``contest1D(confint=TRUE)``);
        for the statsmodels fallback df is NaN and z-based p-values and CIs are reported.
        """
        return self._fixed_table(0.95)

    def _fixed_table(self, level: float) -> pd.DataFrame:
        est = np.array(self.beta)
        se = np.sqrt(np.diag(self.vcov_beta))
        if self._backend is None and self._fixed_df is not None:
            df = np.array(self._fixed_df, dtype=float)
        else:
            df = self._df_rows(np.eye(est.size))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = est / se
        p, crit = _p_and_crit(t, df, level)
        return pd.DataFrame(
            {
                "estimate": est,
                "std_error": se,
                "df": df,
                "t": t,
                "p_value": p,
                "ci_low": est - crit * se,
                "ci_high": est + crit * se,
            },
            index=pd.Index(list(self.fixed_names), name="term"),
        )

    def _df_rows(self, L: np.ndarray) -> np.ndarray:
        parts = self._satt
        if parts is None:
            return np.full(L.shape[0], np.nan)
        return parts.df(L)

    def contrast(self, L: np.ndarray | pd.Series | dict[str, float]) -> pd.DataFrame:
        """t-test of a linear combination of the fixed effects with Satterthwaite df.

        Parameters
        ----------
        L : array-like (p,) or (r, p), Series or dict
            Coefficients over ``fixed_names`` (a dict/Series maps names to weights).

        Returns
        -------
        pandas.DataFrame
            estimate, std_error, df, t, p_value, ci_low, ci_high per contrast row.
        """
        Lm = self._as_contrast(L)
        est = Lm @ self.beta
        se = np.sqrt(np.einsum("ri,ij,rj->r", Lm, self.vcov_beta, Lm))
        df = self._df_rows(Lm)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = est / se
        p, crit = _p_and_crit(t, df, 0.95)
        return pd.DataFrame(
            {
                "estimate": est,
                "std_error": se,
                "df": df,
                "t": t,
                "p_value": p,
                "ci_low": est - crit * se,
                "ci_high": est + crit * se,
            }
        )

    def _as_contrast(self, L: Any) -> np.ndarray:
        names = list(self.fixed_names)
        if isinstance(L, dict | pd.Series):
            unknown = [k for k in dict(L) if k not in names]
            if unknown:
                raise ModelError(f"contrast names {unknown} are not fixed effects {names}")
            vec = np.zeros(len(names))
            for k, v in dict(L).items():
                vec[names.index(k)] = float(v)
            return vec[None]
        Lm = np.atleast_2d(np.asarray(L, dtype=float))
        if Lm.shape[1] != len(names):
            raise ModelError(f"a contrast needs {len(names)} coefficients, got {Lm.shape[1]}")
        return Lm

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        n_boot: int = 500,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Confidence intervals.

        Parameters
        ----------
        method : {"wald", "profile", "boot"}
            ``wald``: t-based with Satterthwaite df, fixed effects only (variance parameters
            NaN, as lme4's Wald method). ``profile``: likelihood-profile intervals (lme4's
            default method) for the standard deviations, correlations, σ and the fixed effects.
            ``boot``: parametric bootstrap percentile intervals from ``n_boot`` refits.
        level : float
            Coverage.
        n_boot : int
            Bootstrap replicates (``boot`` only).
        seed : int, optional
            Random seed (``boot`` only).

        Returns
        -------
        pandas.DataFrame
            Indexed by parameter (``sd(term|group)``, ``cor(a,b|group)``, ``sigma``, then the
            fixed effects) with columns estimate, ci_low, ci_high.
        """
        if not 0 < level < 1:
            raise ModelError(f"level must be between 0 and 1, got {level}")
        method = method.lower()
        if method == "wald":
            names, est = self.parameter_names(), self.parameter_estimates()
            tab = self._fixed_table(level)
            low = np.full(len(names), np.nan)
            high = np.full(len(names), np.nan)
            k = len(names) - len(self.fixed_names)
            low[k:], high[k:] = tab["ci_low"].to_numpy(), tab["ci_high"].to_numpy()
            return pd.DataFrame(
                {"estimate": est, "ci_low": low, "ci_high": high},
                index=pd.Index(names, name="parameter"),
            )
        if method not in {"profile", "boot"}:
            raise ModelError(f"confint method must be 'wald', 'profile' or 'boot', not {method!r}")
        if self._backend is None or not hasattr(self._backend, f"confint_{method}"):
            raise ModelError(
                f"confint(method={method!r}) is not available for engine {self.engine}"
            )
        return getattr(self._backend, f"confint_{method}")(
            self, level=level, n_boot=n_boot, seed=seed
        )

    def parameter_names(self) -> list[str]:
        """Names of the variance parameters (sd/cor scale) followed by the fixed effects."""
        out = []
        for vc in self.varcomps:
            if vc.group == "Residual":
                out.append("sigma")
            elif vc.term2 is None:
                out.append(f"sd({vc.term}|{vc.group})")
            else:
                out.append(f"cor({vc.term},{vc.term2}|{vc.group})")
        # sigma last among the variance parameters, as in lme4's confint output
        out = [n for n in out if n != "sigma"] + ["sigma"]
        return out + list(self.fixed_names)

    def parameter_estimates(self) -> np.ndarray:
        """Estimates in the order of :meth:`parameter_names`."""
        return parameter_vector(self.varcomps, self.sigma, self.beta)

    # ----------------------------------------------------------------- random effects
    def ranef(self, group: str | None = None) -> pd.DataFrame:
        """Conditional modes (BLUPs) of the random effects.

        Parameters
        ----------
        group : str, optional
            Grouping factor; default the participant (finest) factor.

        Returns
        -------
        pandas.DataFrame
            Indexed by level (sorted as R sorts factor levels), one column per random term.
        """
        if self._backend is None:
            raise ModelError("this fit carries no random-effects predictions")
        return self._backend.ranef(self, group)

    def predict(self, newdata: pd.DataFrame, re: bool = False, level: float = 0.95) -> pd.DataFrame:
        """Predictions with population-level standard errors and confidence intervals.

        Parameters
        ----------
        newdata : pandas.DataFrame
            Predictor values (the response column is not needed).
        re : bool
            Add each known participant's BLUPs (unknown participants get the population
            curve). The standard errors and intervals then stay NaN: they would need the
            prediction-error variance of the BLUPs, which is not computed.
        level : float
            Coverage of the interval.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``newdata``: estimate, std_error, ci_low, ci_high. For ``re=False`` the
            interval is t-based with a Satterthwaite df for each row's contrast x'β (z-based for
            the statsmodels fallback), i.e. a confidence band for the mean trajectory.
        """
        if self._backend is None:
            raise ModelError("this fit cannot predict")
        X = self._backend.fixed_matrix(newdata)
        est = X @ self.beta
        if re:
            est = est + self._backend.random_part(self, newdata)
            nan = np.full(est.shape, np.nan)
            return pd.DataFrame(
                {"estimate": est, "std_error": nan, "ci_low": nan, "ci_high": nan},
                index=newdata.index,
            )
        se = np.sqrt(np.einsum("ri,ij,rj->r", X, self.vcov_beta, X))
        ok = np.isfinite(X).all(axis=1)
        df = np.full(est.shape, np.nan)
        if ok.any() and self._satt is not None:
            df[ok] = self._df_rows(X[ok])
        _, crit = _p_and_crit(np.zeros_like(est), df, level)
        return pd.DataFrame(
            {
                "estimate": est,
                "std_error": se,
                "ci_low": est - crit * se,
                "ci_high": est + crit * se,
            },
            index=newdata.index,
        )

    # ----------------------------------------------------------------- results protocol
    @property
    def record(self) -> FitRecord:
        """How the model was fitted and on what (the protocol's fit record)."""
        opt = self.optimizer
        crit = "REML" if self.reml else "ML"
        return FitRecord(
            estimator=f"linear mixed model ({crit})", engine=self.engine, optimizer=opt.name,
            tolerances={"gradient": GRAD_TOL, "singular": SINGULAR_TOL},
            n_evals=int(opt.n_evals), converged=bool(self.converged),
            warnings=tuple(self.warnings), versions=dict(self.versions),
            data_fingerprint=self.fingerprint, n_obs=int(self.nobs), n_groups=self.ngroups,
            vcov="model-based; t with Satterthwaite df" if self.engine == "trackii"
            else "model-based; normal approximation",
        )

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """Fixed effects with the protocol's columns (``models.results.TIDY_COLUMNS``).

        ``role`` is ``"effect"`` for coefficients that involve the arm (``arm``/``treated``).
        """
        tab = self._fixed_table(level)
        out = tidy_frame(list(self.fixed_names), tab["estimate"], tab["std_error"],
                         tab["df"], level, role=[term_role(t) for t in self.fixed_names])
        # Terms the data cannot identify stay visible as not-estimable rows with the reason.
        return append_not_estimable(
            out, [*aliased_notes(self.dropped_columns), *self.not_estimable])

    def lincom(self, weights: Mapping[str, float], level: float = 0.95,
               name: str = "") -> pd.DataFrame:
        """A linear combination of fixed effects as one tidy row (Satterthwaite df).

        Raises
        ------
        ModelError
            ``weights`` names a term that is not a fixed effect, or the fit was rebuilt by
            :meth:`from_dict` (the Satterthwaite df needs the live fit).
        """
        if self._backend is None and self._fixed_df is not None:
            raise ModelError("lincom() needs the live fit (Satterthwaite df); refit the model")
        row = self.contrast(dict(weights))
        label = name or " + ".join(f"{w:g}*{t}" for t, w in weights.items())
        role = "effect" if any(term_role(t) == "effect" for t in weights) else "other"
        return tidy_frame([label], row["estimate"], row["std_error"], row["df"], level,
                          role=[role])

    def describe(self) -> str:
        """One methods-section sentence."""
        rec = self.record
        groups = ", ".join(f"{v} {k}s" for k, v in rec.n_groups.items())
        return (
            f"Linear mixed-effects growth model {self.formula} fitted by "
            f"{'REML' if self.reml else 'maximum likelihood'} ({self.engine} engine) to "
            f"{self.nobs} observations of {groups} "
            f"({'converged' if self.converged else 'NOT converged'}; "
            f"optimiser {self.optimizer.name}, {self.optimizer.n_evals} evaluations"
            f"{'; singular fit' if self.singular else ''}); {rec.vcov}. Missing responses are "
            "handled by the likelihood (valid under missing at random given the modelled "
            "covariates and earlier answers)."
        )

    def summary_html(self) -> str:
        """The summary as an HTML fragment (fixed effects, variance components, fit record,
        warnings)."""
        body = summary_html_layout(f"Growth model: {self.formula}", self.record, self.tidy(),
                                   self.warnings)
        random = self.random.round(4).to_html(index=False, escape=True, border=0,
                                              classes="random", na_rep="")
        return body + "\n<h5>Random effects</h5>\n" + random

    def _repr_html_(self) -> str:
        return self.summary_html()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GrowthFit:
        """Rebuild a fit from :meth:`to_dict` (without its fitting backend; see class docs)."""
        opt = dict(data["optimizer"])
        info = OptimizerInfo(
            name=opt["name"], n_evals=int(opt["n_evals"]),
            gradient_norm=as_float(opt["gradient_norm"]),
            final_gradient=tuple(as_float(v) for v in opt["final_gradient"]),
            start_theta=tuple(as_float(v) for v in opt["start_theta"]),
            final_theta=tuple(as_float(v) for v in opt["final_theta"]),
            message=opt["message"], engine=opt["engine"], converged=bool(opt["converged"]),
        )
        names = tuple(data["fixed_names"])
        return cls(
            formula=data["formula"], reml=bool(data["reml"]), engine=data["engine"],
            nobs=int(data["nobs"]), n_dropped=int(data["n_dropped"]), fixed_names=names,
            beta=np.array([as_float(v) for v in data["beta"]]),
            vcov_beta=np.array([[as_float(v) for v in row] for row in data["vcov"]],
                               dtype=float).reshape(len(names), len(names)),
            theta=np.array([as_float(v) for v in data["theta"]]),
            sigma=as_float(data["sigma"]), deviance=as_float(data["deviance"]),
            loglik=as_float(data["loglik"]), aic=as_float(data["aic"]),
            bic=as_float(data["bic"]), converged=bool(data["converged"]),
            singular=bool(data["singular"]), optimizer=info,
            varcomps=tuple(
                VarComp(group=r["group"], term=r["term"], term2=r["term2"],
                        variance=as_float(r["variance"]), std_dev=as_float(r["std_dev"]),
                        corr=as_float(r["corr"]))
                for r in data["random"]
            ),
            group_counts=tuple((k, int(v)) for k, v in data["ngroups"].items()),
            dropped_columns=tuple(data["dropped_columns"]),
            not_estimable=tuple((str(t), str(n)) for t, n in data.get("not_estimable", [])),
            _warnings=tuple(data["warnings"]),
            fingerprint=data["record"]["data_fingerprint"],
            versions=tuple(data["record"]["versions"].items()),
            _fixed_df=tuple(as_float(v) for v in data["df"]),
        )

    # ----------------------------------------------------------------- reporting
    def to_dict(self) -> dict[str, Any]:
        """A lossless JSON-serialisable record of the fit (NaN and inf become None).

        :meth:`from_dict` rebuilds it; ``fixed`` (95% table) and ``record`` are for readers
        of the raw JSON.
        """
        fixed = self.fixed
        rec = {
            "kind": self.kind,
            "schema": SCHEMA_VERSION,
            "fixed_names": list(self.fixed_names),
            "beta": [_json_num(v) for v in self.beta],
            "df": [_json_num(v) for v in fixed["df"]],
            "record": self.record.to_dict(),
            "formula": self.formula,
            "engine": self.engine,
            "reml": self.reml,
            "nobs": self.nobs,
            "n_dropped": self.n_dropped,
            "ngroups": self.ngroups,
            "fixed": {
                term: {k: _json_num(v) for k, v in row.items()}
                for term, row in fixed.to_dict(orient="index").items()
            },
            "vcov": [[_json_num(v) for v in row] for row in np.asarray(self.vcov_beta)],
            "random": [{k: _json_num(v) for k, v in vc.__dict__.items()} for vc in self.varcomps],
            "theta": [_json_num(v) for v in self.theta],
            "sigma": _json_num(self.sigma),
            "deviance": _json_num(self.deviance),
            "loglik": _json_num(self.loglik),
            "aic": _json_num(self.aic),
            "bic": _json_num(self.bic),
            "converged": self.converged,
            "singular": self.singular,
            "dropped_columns": list(self.dropped_columns),
            "not_estimable": [list(r) for r in self.not_estimable],
            "warnings": self.warnings,
            "optimizer": self.optimizer.to_dict(),
        }
        json.dumps(rec)  # fail here, not in a report, if anything is not serialisable
        return rec

    def summary(self) -> str:
        """A text summary in the layout of lme4's / lmerTest's ``summary()``."""
        from trackii_eval.models.growth.summary import format_summary

        return format_summary(self)

    def __str__(self) -> str:
        return self.summary()


def parameter_vector(
    varcomps: tuple[VarComp, ...] | list[VarComp], sigma: float, beta: np.ndarray
) -> np.ndarray:
    """Standard deviations and correlations (varcomps order), σ, then β."""
    vals = [
        vc.std_dev if vc.term2 is None else vc.corr for vc in varcomps if vc.group != "Residual"
    ]
    return np.array([*vals, sigma, *np.asarray(beta)])


def _p_and_crit(t: np.ndarray, df: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    # t-distribution with the given df; where df is unknown (NaN) fall back to the normal.
    t = np.asarray(t, dtype=float)
    df = np.asarray(df, dtype=float)
    q = 0.5 + level / 2.0
    use_t = np.isfinite(df) & (df > 0)
    p = np.where(
        use_t, 2 * sps.t.sf(np.abs(t), np.where(use_t, df, 1.0)), 2 * sps.norm.sf(np.abs(t))
    )
    crit = np.where(use_t, sps.t.ppf(q, np.where(use_t, df, 1.0)), sps.norm.ppf(q))
    return p, crit
