"""The fitted cumulative-link mixed model: results protocol, predictions, serialisation."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats as sps

from trackii_eval.errors import ModelError
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

__all__ = ["ClmmFit", "VarianceComponent"]


@dataclass(frozen=True)
class VarianceComponent:
    """One row of the random-effects table (a variance, or a covariance with its correlation)."""

    group: str
    term: str
    term2: str | None
    variance: float
    std_dev: float
    corr: float


def _arr(v: Any) -> np.ndarray:
    return np.array([as_float(x) for x in v], dtype=float)


@register_result
@dataclass(frozen=True)
class ClmmFit:
    """A cumulative-link mixed model fitted by :func:`trackii_eval.models.clmm.clmm`.

    ``logit P(Y <= k | b) = theta_k - x'beta - z'b`` (as R's ``ordinal::clmm``).

    Attributes
    ----------
    estimates : ndarray
        Thresholds then fixed effects (``threshold_names`` + ``fixed_names``).
    lam : ndarray
        The covariance factor's parameters (diagonal, then lower triangle): Sigma = L L'.
    vcov_full : ndarray
        Covariance of (thresholds, fixed effects, lam) from the inverse numerical Hessian;
        rows of parameters on the boundary are NaN.
    method : str
        Laplace approximation or adaptive Gauss-Hermite quadrature (with the number of points).
    boundary : bool
        A variance is 0 or a correlation is +-1 (a singular fit).
    """

    kind: ClassVar[str] = "clmm"

    formula: str
    fixed_formula: str
    link: str
    n_agq: int
    method: str
    threshold_names: tuple[str, ...]
    fixed_names: tuple[str, ...]
    z_names: tuple[str, ...]
    group_name: str
    categories: tuple[str, ...]
    estimates: np.ndarray
    lam: np.ndarray
    lam_names: tuple[str, ...]
    vcov_full: np.ndarray
    loglik: float
    n_params: int
    converged: bool
    boundary: bool
    varcomps: tuple[VarianceComponent, ...]
    nobs: int
    n_dropped: int
    n_groups: int
    n_evals: int
    max_gradient: float
    optimizer_message: str
    _warnings: tuple[str, ...]
    fingerprint: str
    versions: tuple[tuple[str, str], ...]
    ranef: tuple[tuple[float, ...], ...] = field(default=(), repr=False)
    # formula terms the data cannot identify, (term, reason): shown by tidy() as rows
    not_estimable: tuple[tuple[str, str], ...] = ()
    # category probabilities per arm, wave and item made by the analysis plan (not serialised
    # here: the plan stores them in its payload)
    plan_probabilities: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    # ----------------------------------------------------------------- accessors
    @property
    def warnings(self) -> list[str]:
        """Problems a reader must see (convergence, boundary fit, rows left out)."""
        return list(self._warnings)

    @property
    def terms(self) -> list[str]:
        """Threshold names then fixed-effect names."""
        return [*self.threshold_names, *self.fixed_names]

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of thresholds and fixed effects."""
        k = len(self.terms)
        return pd.DataFrame(self.vcov_full[:k, :k], index=self.terms, columns=self.terms)

    @property
    def thresholds(self) -> np.ndarray:
        """theta_1 < ... < theta_{K-1}."""
        return self.estimates[:len(self.threshold_names)]

    @property
    def beta(self) -> np.ndarray:
        """Fixed effects (no intercept)."""
        return self.estimates[len(self.threshold_names):]

    @property
    def Lambda(self) -> np.ndarray:
        """Lower-triangular covariance factor L (Sigma = L L')."""
        q = len(self.z_names)
        L = np.diag(self.lam[:q]).astype(float)
        k = q
        for r in range(q):
            for s in range(r):
                L[r, s] = self.lam[k]
                k += 1
        return L

    @property
    def Sigma(self) -> np.ndarray:
        """Random-effect covariance matrix (q x q)."""
        L = self.Lambda
        return L @ L.T

    @property
    def random(self) -> pd.DataFrame:
        """Variance components: group, term, term2, variance, std_dev, corr (as VarCorr)."""
        return pd.DataFrame([vc.__dict__ for vc in self.varcomps],
                            columns=["group", "term", "term2", "variance", "std_dev", "corr"])

    @property
    def aic(self) -> float:
        """Akaike information criterion, -2 logLik + 2 (number of free parameters)."""
        return -2.0 * self.loglik + 2.0 * self.n_params

    # ----------------------------------------------------------------- results protocol
    @property
    def record(self) -> FitRecord:
        """How the model was fitted and on what."""
        return FitRecord(
            estimator=f"cumulative {self.link} mixed model (ML, {self.method})",
            engine="trackii", optimizer="L-BFGS-B + Newton polish (exact gradient)",
            tolerances={"gradient": 1e-3, "boundary": 1e-4}, n_evals=int(self.n_evals),
            converged=bool(self.converged), warnings=tuple(self._warnings),
            versions=dict(self.versions), data_fingerprint=self.fingerprint,
            n_obs=int(self.nobs), n_groups={self.group_name: int(self.n_groups)},
            vcov=("inverse observed information (Hessian: central differences of the exact "
                  "gradient); normal approximation"),
        )

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """Thresholds and fixed effects with the protocol's columns (z statistics)."""
        se = np.sqrt(np.diag(self.vcov_full)[:len(self.terms)])
        notes = [""] * len(self.terms)
        roles = ["other"] * len(self.threshold_names) + [term_role(t) for t in self.fixed_names]
        tab = tidy_frame(self.terms, self.estimates, se, np.nan, level,
                         estimable=np.isfinite(se), role=roles, note=notes)
        return append_not_estimable(tab, self.not_estimable)

    def lincom(self, weights: Mapping[str, float], level: float = 0.95,
               name: str = "") -> pd.DataFrame:
        """A linear combination of thresholds/fixed effects as one tidy row (normal).

        Raises
        ------
        ModelError
            ``weights`` names a term the model does not have.
        """
        terms = self.terms
        unknown = [t for t in weights if t not in terms]
        if unknown:
            raise ModelError(f"lincom: unknown term(s) {', '.join(unknown)}; the model's terms "
                             f"are {', '.join(terms)}")
        w = np.array([float(weights.get(t, 0.0)) for t in terms])
        V = self.vcov_full[:len(terms), :len(terms)]
        est = float(w @ self.estimates)
        se = float(math.sqrt(max(w @ V @ w, 0.0))) if np.all(np.isfinite(V)) else math.nan
        label = name or " + ".join(f"{v:g}*{t}" for t, v in weights.items())
        role = "effect" if any(term_role(t) == "effect" for t in weights) else "other"
        return tidy_frame([label], [est], [se], [np.nan], level, role=[role])

    def describe(self) -> str:
        """One methods-section sentence."""
        return (
            f"Cumulative {self.link} mixed model {self.formula} (parameterisation of R's "
            f"ordinal::clmm: P(Y <= k) = F(theta_k - x'beta - z'b)) fitted by maximum "
            f"likelihood with the {self.method} to {self.nobs} responses of {self.n_groups} "
            f"{self.group_name}s ({'converged' if self.converged else 'NOT converged'}"
            f"{'; boundary (singular) fit' if self.boundary else ''}); standard errors from "
            "the observed information."
        )

    def summary(self) -> str:
        """Text for people, in the layout of ``summary(clmm)``."""
        lines = [f"Cumulative Link Mixed Model fitted with the {self.method}",
                 f"formula: {self.formula}   link: {self.link}",
                 f"logLik {self.loglik:.4f}   AIC {self.aic:.2f}   nobs {self.nobs}   "
                 f"groups {self.group_name} {self.n_groups}", "", "Random effects:"]
        lines.append(_blank_missing(self.random).to_string(index=False))
        lines += ["", "Coefficients and thresholds:"]
        tab = self.tidy()[["term", "estimate", "std_error", "statistic", "p_value"]]
        lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        lines += ["", *self.record.lines()]
        lines += [f"Warning: {w}" for w in self._warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def summary_html(self) -> str:
        """The summary as an HTML fragment."""
        body = summary_html_layout(f"Ordinal mixed model: {self.formula} ({self.method})",
                                   self.record, self.tidy(), self.warnings)
        random = _blank_missing(self.random.round(4)).to_html(index=False, escape=True,
                                                               border=0, classes="random")
        return body + "\n<h5>Random effects</h5>\n" + random

    def _repr_html_(self) -> str:
        return self.summary_html()

    # ----------------------------------------------------------------- predictions
    def _fixed_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        from formulaic import model_matrix

        try:
            mm = model_matrix(self.fixed_formula, newdata, na_action="raise")
        except Exception as exc:  # formulaic raises many kinds; say what to do
            raise ModelError(f"probabilities: cannot build the fixed effects "
                             f"{self.fixed_formula!r} from newdata ({exc})") from exc
        missing = [n for n in self.fixed_names if n not in mm.columns]
        if missing:
            raise ModelError(f"probabilities: newdata does not give the model's terms "
                             f"{', '.join(missing)}; give categorical columns the levels of "
                             "the fitted data (pd.Categorical with the same categories)")
        return np.asarray(mm[list(self.fixed_names)], dtype=float).reshape(
            len(newdata), len(self.fixed_names))

    def _probs(self, est: np.ndarray, lam: np.ndarray, X: np.ndarray, Zn: np.ndarray,
               marginal: bool, nodes: np.ndarray, logw: np.ndarray) -> np.ndarray:
        from trackii_eval.models.clmm._engine import category_probs, link_parts

        K1 = len(self.threshold_names)
        theta, beta = est[:K1], est[K1:]
        eta = X @ beta
        if not marginal:
            return category_probs(self.link, theta, eta)
        q = len(self.z_names)
        L = np.diag(lam[:q]).astype(float)
        k = q
        for r in range(q):
            for s in range(r):
                L[r, s] = lam[k]
                k += 1
        # population-averaged: integrate over b = L u with Gauss-Hermite (u = sqrt(2) t)
        shift = (Zn @ L) @ (np.sqrt(2.0) * nodes.T)            # (n, M)
        w = np.exp(logw) / np.pi ** (q / 2)
        ext = np.concatenate(([-1e6], theta, [1e6]))
        cum = link_parts(self.link, ext[None, None, :] - (eta[:, None] + shift)[..., None])[0]
        return np.einsum("m,nmk->nk", w, np.diff(cum, axis=2))

    def probabilities(self, newdata: pd.DataFrame, level: float = 0.95,
                      marginal: bool = True) -> pd.DataFrame:
        """Predicted category probabilities with delta-method confidence intervals.

        Parameters
        ----------
        newdata : pandas.DataFrame
            Covariate values (the fixed part's columns and the random part's, e.g. ``time``).
        level : float
            Confidence level.
        marginal : bool
            True: population-averaged probabilities, integrating over the random effects
            (30-point Gauss-Hermite per dimension); False: for a participant with b = 0.

        Returns
        -------
        pandas.DataFrame
            Long: newdata's columns repeated per ``category``, with ``probability``,
            ``ci_low``, ``ci_high`` (interval on the logit scale of each probability, so it
            stays within (0, 1)).

        Raises
        ------
        ModelError
            ``newdata`` lacks the model's terms, or the fit has no standard errors.
        """
        from formulaic import model_matrix

        if not 0 < level < 1:
            raise ModelError(f"level must be between 0 and 1, got {level}")
        X = self._fixed_matrix(newdata)
        rhs = " + ".join(n for n in self.z_names if n != "Intercept") or "1"
        Zmm = model_matrix(rhs, newdata, na_action="raise")
        Zn = np.column_stack([np.ones(len(newdata)) if n == "Intercept"
                              else np.asarray(Zmm[n], float) for n in self.z_names])
        q = len(self.z_names)
        x, w = np.polynomial.hermite.hermgauss(30 if q == 1 else 15)
        grids = np.meshgrid(*([x] * q), indexing="ij")
        nodes = np.stack([g.ravel() for g in grids], axis=1)
        logw = np.sum(np.stack([g.ravel() for g in np.meshgrid(*([np.log(w)] * q),
                                                               indexing="ij")], 1), 1)
        par = np.concatenate([self.estimates, self.lam])
        n_est = len(self.estimates)

        def f(v: np.ndarray) -> np.ndarray:
            P = self._probs(v[:n_est], v[n_est:], X, Zn, marginal, nodes, logw)
            P = np.clip(P, 1e-300, 1.0)
            return np.log(P) - np.log1p(-np.minimum(P, 1 - 1e-16))

        P = self._probs(self.estimates, self.lam, X, Zn, marginal, nodes, logw)
        base = f(par)
        V = np.nan_to_num(self.vcov_full, nan=0.0)   # boundary parameters: no uncertainty
        if not np.all(np.isfinite(self.vcov_full[:n_est, :n_est])):
            raise ModelError("probabilities: the fit has no standard errors (see its warnings)")
        jac = np.empty((*base.shape, len(par)))
        for i in range(len(par)):
            h = 1e-6 * max(1.0, abs(par[i]))
            e = np.zeros(len(par))
            e[i] = h
            jac[..., i] = (f(par + e) - f(par - e)) / (2 * h)
        se = np.sqrt(np.maximum(np.einsum("nki,ij,nkj->nk", jac, V, jac), 0.0))
        z = sps.norm.ppf(0.5 + level / 2)
        lo = 1 / (1 + np.exp(-(base - z * se)))
        hi = 1 / (1 + np.exp(-(base + z * se)))
        rows = []
        for k, cat in enumerate(self.categories):
            part = newdata.reset_index(drop=True).copy()
            part["category"] = cat
            part["probability"] = P[:, k]
            part["ci_low"] = lo[:, k]
            part["ci_high"] = hi[:, k]
            rows.append(part)
        return pd.concat(rows, ignore_index=True)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON form (NaN/inf as None), with ``kind`` and ``schema``."""
        rec = {
            "kind": self.kind, "schema": SCHEMA_VERSION, "formula": self.formula,
            "fixed_formula": self.fixed_formula, "link": self.link, "n_agq": self.n_agq,
            "method": self.method, "threshold_names": list(self.threshold_names),
            "fixed_names": list(self.fixed_names), "z_names": list(self.z_names),
            "group_name": self.group_name, "categories": list(self.categories),
            "estimates": [json_number(v) for v in self.estimates],
            "lam": [json_number(v) for v in self.lam], "lam_names": list(self.lam_names),
            "vcov": [[json_number(v) for v in row] for row in self.vcov_full],
            "loglik": json_number(self.loglik), "n_params": self.n_params,
            "converged": self.converged, "boundary": self.boundary,
            "random": [{k: json_number(v) for k, v in vc.__dict__.items()}
                       for vc in self.varcomps],
            "nobs": self.nobs, "n_dropped": self.n_dropped, "n_groups": self.n_groups,
            "n_evals": self.n_evals, "max_gradient": json_number(self.max_gradient),
            "optimizer_message": self.optimizer_message, "warnings": list(self._warnings),
            "not_estimable": [list(r) for r in self.not_estimable],
            "record": self.record.to_dict(),
        }
        json.dumps(rec)
        return rec

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClmmFit:
        """Rebuild a fit from :meth:`to_dict` (random-effect predictions are not kept)."""
        est = _arr(data["estimates"])
        lam = _arr(data["lam"])
        n = len(est) + len(lam)
        return cls(
            formula=data["formula"], fixed_formula=data["fixed_formula"], link=data["link"],
            n_agq=int(data["n_agq"]), method=data["method"],
            threshold_names=tuple(data["threshold_names"]),
            fixed_names=tuple(data["fixed_names"]), z_names=tuple(data["z_names"]),
            group_name=data["group_name"], categories=tuple(data["categories"]),
            estimates=est, lam=lam, lam_names=tuple(data["lam_names"]),
            vcov_full=np.array([[as_float(v) for v in row] for row in data["vcov"]],
                               dtype=float).reshape(n, n),
            loglik=as_float(data["loglik"]), n_params=int(data["n_params"]),
            converged=bool(data["converged"]), boundary=bool(data["boundary"]),
            varcomps=tuple(VarianceComponent(r["group"], r["term"], r["term2"],
                                             as_float(r["variance"]), as_float(r["std_dev"]),
                                             as_float(r["corr"])) for r in data["random"]),
            nobs=int(data["nobs"]), n_dropped=int(data["n_dropped"]),
            n_groups=int(data["n_groups"]), n_evals=int(data["n_evals"]),
            max_gradient=as_float(data["max_gradient"]),
            optimizer_message=data["optimizer_message"], _warnings=tuple(data["warnings"]),
            fingerprint=data["record"]["data_fingerprint"],
            versions=tuple(data["record"]["versions"].items()),
            not_estimable=tuple((str(t), str(n)) for t, n in data.get("not_estimable", [])),
        )


def _blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Absent entries (no second term, no correlation) print as blanks: ``na_rep`` misses
    ``None`` in object columns, which printed as the word "None"."""
    return frame.astype(object).where(frame.notna(), "")
