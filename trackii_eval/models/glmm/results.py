"""The immutable result of a GLMM fit, in the project's results protocol.

``fit.tidy(level=)`` gives the fixed effects on the link scale (log-odds or log-rate) with
normal-based (Wald z) tests and intervals, as ``summary(glmer(...))``; ``fit.ratios()`` the
same on the exponentiated scale (odds or rate ratios) with Wald or profile-likelihood
intervals; ``fit.random`` the variance components (lme4's ``as.data.frame(VarCorr(m))``
layout, without a residual row); ``fit.predict(newdata)`` population-level predicted
probabilities or rates (random effects at zero, as ``predict(m, re.form = NA, type =
"response")``) with intervals transformed from the link scale.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats as sps

from trackii_eval.errors import ModelError
from trackii_eval.models.glmm.engine import ClusterProblem
from trackii_eval.models.glmm.family import get_family
from trackii_eval.models.glmm.optimize import GRAD_TOL, SINGULAR_TOL
from trackii_eval.models.growth.design import Design, aliased_notes
from trackii_eval.models.growth.results import VarComp
from trackii_eval.models.results import (
    SCHEMA_VERSION,
    FitRecord,
    append_not_estimable,
    as_float,
    json_number,
    register_result,
    summary_html_layout,
    term_role,
    tidy_frame,
)

__all__ = ["GlmmBackend", "GlmmFit", "varcomps"]


def _ro(a: Any) -> np.ndarray:
    arr = np.array(a, dtype=float, copy=True)
    arr.setflags(write=False)
    return arr


def varcomps(design: Design, prob: ClusterProblem, theta: np.ndarray) -> list[VarComp]:
    """Variances, SDs and correlations of the random effects (Σ = ΛΛ', no residual)."""
    L, Lo = prob.lambdas(np.asarray(theta, float))
    out: list[VarComp] = []
    blocks = [(design.group_name, L, design.z_names, design.theta_pos)]
    if Lo is not None and design.outer_name is not None:
        blocks.append((design.outer_name, Lo, design.zo_names, design.theta_pos_outer))
    for name, lam, names, pos in blocks:
        cov = lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        out += [VarComp(name, nm, None, float(cov[i, i]), float(sd[i]), np.nan)
                for i, nm in enumerate(names)]
        for a, b in sorted({(c, r) for r, c in pos if r != c}):
            corr = cov[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else np.nan
            out.append(VarComp(name, names[a], names[b], float(cov[a, b]), np.nan,
                               float(corr)))
    return out


@dataclass
class GlmmBackend:
    """What a live fit keeps for predictions, random effects and profiles."""

    problem: ClusterProblem
    design: Design
    kept: list[int]
    nagq: int

    def fixed_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """Fixed-effects matrix for new data, coded as in the fit."""
        try:
            mm = self.design.fixed_spec.get_model_matrix(newdata, output="numpy",
                                                         na_action="ignore")
        except Exception as exc:  # formulaic raises many types; say which step failed
            raise ModelError(f"cannot build the fixed-effects matrix for new data: {exc}") \
                from exc
        return np.asarray(mm, dtype=float)[:, self.kept]


@register_result
@dataclass(frozen=True, eq=False)
class GlmmFit:
    """A fitted logistic or Poisson mixed model. Immutable; build it with :func:`glmm`.

    Satisfies :class:`trackii_eval.models.results.ModelResult`. A fit rebuilt by
    :meth:`from_dict` keeps every number (tidy tables at any level, ratios with Wald
    intervals) but cannot predict, give random effects or profile.

    Attributes
    ----------
    formula, family, link : str
        The model as given; ``"binomial"``/``"logit"`` or ``"poisson"``/``"log"``.
    nagq : int
        1 = Laplace approximation; > 1 = adaptive Gauss–Hermite points.
    nobs, n_dropped : int
        Observations used; rows dropped for missing values.
    beta, vcov_beta : ndarray
        Fixed effects (link scale) and their covariance (lme4's Hessian-based ``vcov``).
    theta : ndarray
        Relative covariance factor, lme4's ``getME(m, "theta")`` order (for a GLMM Λ is the
        Cholesky factor of the random effects' covariance itself: no residual σ).
    loglik, deviance, aic, bic : float
        Log-likelihood (Laplace or quadrature, constants included), -2 loglik, AIC and BIC
        with fixed effects + θ parameters, as lme4's ``logLik``/``AIC``/``BIC`` of a Laplace
        fit.
    loglik_saturated : float
        Log-likelihood of the saturated model; ``loglik - loglik_saturated`` is what glmer
        reports as ``logLik`` for ``nAGQ > 1``.
    converged, singular : bool
        lme4's gradient check passed; a random-effect variance is 0 or a correlation ±1.
    """

    formula: str
    family: str
    link: str
    nagq: int
    nobs: int
    n_dropped: int
    fixed_names: tuple[str, ...]
    beta: np.ndarray
    vcov_beta: np.ndarray
    theta: np.ndarray
    loglik: float
    deviance: float
    aic: float
    bic: float
    loglik_saturated: float
    converged: bool
    singular: bool
    varcomps: tuple[VarComp, ...]
    group_counts: tuple[tuple[str, int], ...]
    dropped_columns: tuple[str, ...] = ()
    not_estimable: tuple[tuple[str, str], ...] = ()
    _warnings: tuple[str, ...] = ()
    n_evals: int = 0
    optimizer_message: str = ""
    gradient: tuple[float, ...] = ()
    offset: str = ""
    _backend: Any = field(default=None, repr=False)
    fingerprint: str = ""
    versions: tuple[tuple[str, str], ...] = ()

    kind: ClassVar[str] = "glmm"

    def __post_init__(self) -> None:
        for name in ("beta", "vcov_beta", "theta"):
            object.__setattr__(self, name, _ro(getattr(self, name)))

    # ----------------------------------------------------------------- accessors
    @property
    def warnings(self) -> list[str]:
        """Problems a reader must see (convergence, singular fit, separation, dropped terms)."""
        return list(self._warnings)

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        return dict(self.group_counts)

    @property
    def method(self) -> str:
        """``"Laplace"`` or ``"adaptive Gauss-Hermite quadrature (K points)"``."""
        return "Laplace" if self.nagq == 1 else (
            f"adaptive Gauss-Hermite quadrature ({self.nagq} points)")

    @property
    def loglik_saturated_relative(self) -> float:
        """``loglik - loglik_saturated``: glmer's ``logLik`` for ``nAGQ > 1`` fits."""
        return self.loglik - self.loglik_saturated

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects."""
        names = list(self.fixed_names)
        return pd.DataFrame(np.array(self.vcov_beta), index=names, columns=names)

    @property
    def random(self) -> pd.DataFrame:
        """Variance components: group, term, term2, variance, std_dev, corr (lme4's layout)."""
        rows = [vc.__dict__ for vc in self.varcomps]
        df = pd.DataFrame(rows, columns=["group", "term", "term2", "variance", "std_dev", "corr"])
        for col in ("term", "term2"):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        return df

    @property
    def fixed(self) -> pd.DataFrame:
        """Fixed effects (link scale) with z tests and 95% Wald intervals, indexed by term."""
        return self.tidy(0.95).set_index("term")

    # ----------------------------------------------------------------- protocol
    def tidy(self, level: float = 0.95, exponentiate: bool = False) -> pd.DataFrame:
        """Fixed effects with the protocol's columns; z-based (``df`` NaN), as glmer.

        Parameters
        ----------
        level : float
            Confidence level.
        exponentiate : bool
            Report odds or rate ratios: estimate and interval exponentiated (the standard
            error, statistic and p-value stay those of the link-scale coefficient).
        """
        se = np.sqrt(np.clip(np.diag(self.vcov_beta), 0, None))
        tab = tidy_frame(list(self.fixed_names), self.beta, se, np.nan, level,
                         role=[term_role(t) for t in self.fixed_names],
                         note=self._notes())
        if exponentiate:
            for col in ("estimate", "ci_low", "ci_high"):
                tab[col] = np.exp(tab[col])
        # Terms the data cannot identify stay visible as not-estimable rows with the reason.
        return append_not_estimable(
            tab, [*aliased_notes(self.dropped_columns), *self.not_estimable])

    def _notes(self) -> list[str]:
        out = []
        for b in self.beta:
            out.append("possible separation: estimate at the edge of the likelihood"
                       if self.family == "binomial" and abs(b) > 10 else "")
        return out

    def ratios(self, level: float = 0.95, method: str = "wald") -> pd.DataFrame:
        """Odds ratios (binomial) or rate ratios (Poisson) with confidence intervals.

        Parameters
        ----------
        level : float
            Confidence level.
        method : {"wald", "profile"}
            Wald (exp of β ± z se) or profile-likelihood intervals (lme4's
            ``confint(method = "profile")``, exponentiated).

        Returns
        -------
        pandas.DataFrame
            Indexed by term: ratio, ci_low, ci_high, p_value; ``attrs["ratio"]`` names the
            scale (``"odds ratio"`` or ``"rate ratio"``).
        """
        ci = self.confint(method=method, level=level).loc[list(self.fixed_names)]
        p = self.tidy(level)["p_value"].to_numpy()[:len(self.fixed_names)]
        out = pd.DataFrame({"ratio": np.exp(np.asarray(self.beta)),
                            "ci_low": np.exp(ci["ci_low"].to_numpy()),
                            "ci_high": np.exp(ci["ci_high"].to_numpy()), "p_value": p},
                           index=pd.Index(list(self.fixed_names), name="term"))
        out.attrs["ratio"] = get_family(self.family).ratio
        return out

    def confint(self, method: str = "wald", level: float = 0.95,
                parm: list[str] | None = None) -> pd.DataFrame:
        """Confidence intervals on the link scale (fixed effects) and for the random-effect SDs.

        Parameters
        ----------
        method : {"wald", "profile"}
            ``wald``: β ± z se (SD rows NaN, as lme4's Wald method). ``profile``:
            likelihood-profile intervals, where the deviance rises by the χ²₁ quantile
            (lme4's default); for the fixed effects and the SD of every scalar random-effect
            term (rows ``sd(term|group)``); needs the live fit.
        level : float
            Coverage.
        parm : list of str, optional
            Profile only these parameters (the others' intervals are NaN); profiling costs
            a constrained refit per point.

        Returns
        -------
        pandas.DataFrame
            Indexed by parameter; columns estimate, ci_low, ci_high.
        """
        if not 0 < level < 1:
            raise ModelError(f"level must be between 0 and 1, got {level}")
        method = method.lower()
        if method not in {"wald", "profile"}:
            raise ModelError(f"confint method must be 'wald' or 'profile', not {method!r}")
        if method == "profile":
            if self._backend is None:
                raise ModelError("profile intervals need the live fit; refit the model")
            from trackii_eval.models.glmm.profile import profile_confint

            return profile_confint(self, level, parm)
        tab = self.tidy(level).iloc[:len(self.fixed_names)]  # estimated terms only
        sd_names = [f"sd({vc.term}|{vc.group})" for vc in self.varcomps if vc.term2 is None]
        sd_vals = [vc.std_dev for vc in self.varcomps if vc.term2 is None]
        nan = [np.nan] * len(sd_names)
        return pd.DataFrame(
            {"estimate": [*sd_vals, *tab["estimate"]], "ci_low": [*nan, *tab["ci_low"]],
             "ci_high": [*nan, *tab["ci_high"]]},
            index=pd.Index([*sd_names, *self.fixed_names], name="parameter"))

    def lincom(self, weights: Mapping[str, float], level: float = 0.95,
               name: str = "") -> pd.DataFrame:
        """A linear combination of fixed effects (link scale) as one tidy row (z-based).

        Raises
        ------
        ModelError
            ``weights`` names a term that is not a fixed effect.
        """
        names = list(self.fixed_names)
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise ModelError(f"lincom: {unknown} are not fixed effects of this model "
                             f"({', '.join(names)})")
        L = np.zeros(len(names))
        for k, v in weights.items():
            L[names.index(k)] = float(v)
        est = float(L @ self.beta)
        se = float(np.sqrt(L @ self.vcov_beta @ L))
        label = name or " + ".join(f"{w:g}*{t}" for t, w in weights.items())
        role = "effect" if any(term_role(t) == "effect" for t in weights) else "other"
        return tidy_frame([label], [est], [se], [np.nan], level, role=[role])

    # ----------------------------------------------------------------- predictions
    def predict(self, newdata: pd.DataFrame, re: bool = False, level: float = 0.95,
                type: str = "response") -> pd.DataFrame:
        """Population-level predictions (random effects at 0) with Wald intervals.

        Parameters
        ----------
        newdata : pandas.DataFrame
            Predictor values.
        re : bool
            Must be False: predictions for a typical participant (random effects 0), as
            ``predict(m, re.form = NA)``. These are conditional, not population-averaged,
            probabilities.
        level : float
            Coverage of the interval.
        type : {"response", "link"}
            Probability / rate, or the linear predictor.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``newdata``: estimate, std_error (link scale), ci_low, ci_high. On
            the response scale the interval is the link-scale interval transformed, so it
            stays inside (0, 1) for probabilities.
        """
        if self._backend is None:
            raise ModelError("this fit cannot predict (rebuilt from a stored record); refit")
        if re:
            raise ModelError("glmm predictions are population-level (re=False): random "
                             "effects at zero")
        if type not in {"response", "link"}:
            raise ModelError(f"predict type must be 'response' or 'link', not {type!r}")
        X = self._backend.fixed_matrix(newdata)
        eta = X @ self.beta
        if self.offset:
            if self.offset not in newdata.columns:
                raise ModelError(f"newdata needs the offset column {self.offset!r} (e.g. 0 "
                                 "for the rate per unit of exposure)")
            eta = eta + newdata[self.offset].to_numpy(dtype=float)
        se = np.sqrt(np.einsum("ri,ij,rj->r", X, self.vcov_beta, X))
        z = sps.norm.ppf(0.5 + level / 2)
        lo, hi = eta - z * se, eta + z * se  # the offset is known: no variance
        if type == "response":
            inv = get_family(self.family).inverse_link
            eta, lo, hi = inv(eta), inv(lo), inv(hi)
        return pd.DataFrame({"estimate": eta, "std_error": se, "ci_low": lo, "ci_high": hi},
                            index=newdata.index)

    def ranef(self, group: str | None = None) -> pd.DataFrame:
        """Conditional modes of the random effects (b = Λû), one row per level.

        Parameters
        ----------
        group : str, optional
            The grouping factor; default the participant factor.
        """
        if self._backend is None:
            raise ModelError("this fit carries no random effects (rebuilt from a record)")
        d: Design = self._backend.design
        prob: ClusterProblem = self._backend.problem
        x = np.r_[np.asarray(self.theta), np.asarray(self.beta)]
        b, bo = prob.conditional_modes(x)
        if group is None or group == d.group_name:
            return pd.DataFrame(b, index=d.group_levels, columns=d.z_names)
        if group == d.outer_name and bo is not None:
            return pd.DataFrame(bo, index=d.outer_levels, columns=d.zo_names)
        raise ModelError(f"no grouping factor {group!r} in this model "
                         f"({', '.join(self.ngroups)})")

    # ----------------------------------------------------------------- reporting
    @property
    def record(self) -> FitRecord:
        """How the model was fitted and on what."""
        return FitRecord(
            estimator=f"generalized linear mixed model ({self.family}, {self.link} link; "
                      f"{self.method})",
            engine="trackii", optimizer="L-BFGS-B on (theta, beta) + Newton polish",
            tolerances={"gradient": GRAD_TOL, "singular": SINGULAR_TOL},
            n_evals=int(self.n_evals), converged=bool(self.converged),
            warnings=tuple(self.warnings), versions=dict(self.versions),
            data_fingerprint=self.fingerprint, n_obs=int(self.nobs), n_groups=self.ngroups,
            vcov="Hessian of the deviance over (theta, beta) (as lme4); normal approximation",
        )

    def describe(self) -> str:
        """One methods-section sentence."""
        groups = ", ".join(f"{v} {k}s" for k, v in self.ngroups.items())
        kind = "logistic" if self.family == "binomial" else "Poisson"
        return (
            f"{kind.capitalize()} mixed-effects model {self.formula} fitted by maximum "
            f"likelihood ({self.method}) to {self.nobs} observations of {groups} "
            f"({'converged' if self.converged else 'NOT converged'}"
            f"{'; singular fit' if self.singular else ''}); Wald z tests with standard errors "
            f"from the Hessian of the deviance; coefficients are log "
            f"{'odds' if kind == 'logistic' else 'rate'} ratios for a typical participant "
            "(conditional on the random effects)."
        )

    def summary(self) -> str:
        """Text summary in the layout of ``summary(glmer(...))``."""
        lines = [
            f"Generalized linear mixed model fit by maximum likelihood ({self.method}) "
            f"['glmerMod' as lme4]",
            f" Family: {self.family}  ( {self.link} )",
            f"Formula: {self.formula}",
            "",
            f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10}",
            f"{self.aic:>10.1f} {self.bic:>10.1f} {self.loglik:>10.1f} {self.deviance:>10.1f}",
            "",
            "Random effects:",
        ]
        for vc in self.varcomps:
            if vc.term2 is None:
                lines.append(f" {vc.group:<12} {vc.term:<16} variance {vc.variance:.4g}  "
                             f"sd {vc.std_dev:.4g}")
            else:
                lines.append(f" {vc.group:<12} cor({vc.term}, {vc.term2}) {vc.corr:.3f}")
        groups = ", ".join(f"{k}, {v}" for k, v in self.ngroups.items())
        lines += [f"Number of obs: {self.nobs}, groups: {groups}", "", "Fixed effects:"]
        tab = self.tidy()
        lines.append(f"{'':<28} {'Estimate':>10} {'Std.Error':>10} {'z value':>8} "
                     f"{'Pr(>|z|)':>9} {get_family(self.family).ratio:>12}")
        for r in tab.itertuples():
            lines.append(f"{r.term:<28} {r.estimate:>10.4f} {r.std_error:>10.4f} "
                         f"{r.statistic:>8.3f} {r.p_value:>9.3g} {np.exp(r.estimate):>12.4g}")
        if self.warnings:
            lines += ["", *self.warnings]
        return "\n".join(lines)

    def summary_html(self) -> str:
        """The summary as an HTML fragment."""
        body = summary_html_layout(f"GLMM ({self.family}): {self.formula}", self.record,
                                   self.tidy(), self.warnings)
        random = self.random.round(4).to_html(index=False, escape=True, border=0,
                                              classes="random", na_rep="")
        return body + "\n<h5>Random effects</h5>\n" + random

    def _repr_html_(self) -> str:
        return self.summary_html()

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON-serialisable record (NaN and inf become None)."""
        rec = {
            "kind": self.kind, "schema": SCHEMA_VERSION, "record": self.record.to_dict(),
            "formula": self.formula, "family": self.family, "link": self.link,
            "nagq": self.nagq, "nobs": self.nobs, "n_dropped": self.n_dropped,
            "fixed_names": list(self.fixed_names),
            "beta": [json_number(v) for v in self.beta],
            "vcov": [[json_number(v) for v in row] for row in np.asarray(self.vcov_beta)],
            "theta": [json_number(v) for v in self.theta],
            "loglik": json_number(self.loglik), "deviance": json_number(self.deviance),
            "aic": json_number(self.aic), "bic": json_number(self.bic),
            "loglik_saturated": json_number(self.loglik_saturated),
            "converged": self.converged, "singular": self.singular,
            "random": [{k: json_number(v) for k, v in vc.__dict__.items()}
                       for vc in self.varcomps],
            "ngroups": self.ngroups, "dropped_columns": list(self.dropped_columns),
            "not_estimable": [list(r) for r in self.not_estimable],
            "warnings": self.warnings, "n_evals": self.n_evals,
            "optimizer_message": self.optimizer_message,
            "gradient": [json_number(v) for v in self.gradient], "offset": self.offset,
        }
        json.dumps(rec)  # fail here, not in a report, if anything is not serialisable
        return rec

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlmmFit:
        """Rebuild a fit from :meth:`to_dict` (without its backend)."""
        names = tuple(data["fixed_names"])
        k = len(names)
        return cls(
            formula=data["formula"], family=data["family"], link=data["link"],
            nagq=int(data["nagq"]), nobs=int(data["nobs"]), n_dropped=int(data["n_dropped"]),
            fixed_names=names, beta=np.array([as_float(v) for v in data["beta"]]),
            vcov_beta=np.array([[as_float(v) for v in row] for row in data["vcov"]],
                               dtype=float).reshape(k, k),
            theta=np.array([as_float(v) for v in data["theta"]]),
            loglik=as_float(data["loglik"]), deviance=as_float(data["deviance"]),
            aic=as_float(data["aic"]), bic=as_float(data["bic"]),
            loglik_saturated=as_float(data["loglik_saturated"]),
            converged=bool(data["converged"]), singular=bool(data["singular"]),
            varcomps=tuple(VarComp(group=r["group"], term=r["term"], term2=r["term2"],
                                   variance=as_float(r["variance"]),
                                   std_dev=as_float(r["std_dev"]), corr=as_float(r["corr"]))
                           for r in data["random"]),
            group_counts=tuple((g, int(v)) for g, v in data["ngroups"].items()),
            dropped_columns=tuple(data["dropped_columns"]),
            not_estimable=tuple((str(t), str(n)) for t, n in data.get("not_estimable", [])),
            _warnings=tuple(data["warnings"]),
            n_evals=int(data["n_evals"]), optimizer_message=data["optimizer_message"],
            gradient=tuple(as_float(v) for v in data["gradient"]),
            offset=data.get("offset", ""), fingerprint=data["record"]["data_fingerprint"],
            versions=tuple(data["record"]["versions"].items()),
        )
