"""Classical panel estimators (linearmodels) and the Hausman test, returning the results protocol.

:func:`panel` fits ``outcome ~ regressors`` by one of

===================  ==========================================  ============================
estimator            model                                       plm ``model =``
===================  ==========================================  ============================
``"within"``         entity (or entity and time) fixed effects   ``"within"``
``"random"``         random effects, Swamy-Arora variance parts  ``"random"``
``"first_difference"``  OLS on first differences, with a drift   ``"fd"``
                     (intercept) as plm includes one
``"between"``        OLS on entity means                         ``"between"``
``"pooled"``         pooled OLS                                  ``"pooling"``
===================  ==========================================  ============================

Standard errors are ``"classic"`` (model-based, t with the residual df, as ``vcov(plm)``) or
``"clustered"`` by entity with the project's small-sample convention (see
:mod:`trackii_eval.models.panel`: ``"sss"`` G/(G-1)·(N-1)/(N-K) by default, ``"stata"`` with
xtreg's K', ``"hc1"`` N/(N-K) as plm's ``vcovHC(type = "HC1")``), t with G - 1 df.

:func:`hausman` is the test of fixed against random effects (Hausman 1978) as
``plm::phtest``: H = (b_FE - b_RE)' [V_FE - V_RE]^{-1} (b_FE - b_RE) on the common slopes,
χ² with as many df. linearmodels has no Hausman test.

References
----------
Hausman, J. A. (1978). Specification tests in econometrics. Econometrica, 46(6), 1251-1271.
Croissant, Y., & Millo, G. (2008). Panel data econometrics in R: the plm package. Journal of
Statistical Software, 27(2).
Wooldridge, J. M. (2010). Econometric Analysis of Cross Section and Panel Data (2nd ed.), ch. 10.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import ModelError
from .panel import CLUSTER_CONVENTIONS, PanelFit, _library_warning, cluster_scale, library_error
from .results import FitRecord, data_fingerprint, json_number, package_versions, term_role

__all__ = ["ESTIMATORS", "HausmanTest", "hausman", "panel"]

Estimator = Literal["within", "random", "first_difference", "between", "pooled"]
ESTIMATORS: dict[str, str] = {
    "within": "Fixed effects (within)",
    "random": "Random effects (GLS)",
    "first_difference": "First differences",
    "between": "Between (entity means)",
    "pooled": "Pooled OLS",
}


def panel(
    data: pd.DataFrame, outcome: str, regressors: Sequence[str], *,
    estimator: Estimator = "within", entity: str = "participant", time: str = "wave",
    time_effects: bool = False, vcov: Literal["clustered", "classic"] = "clustered",
    small: str = "sss",
) -> PanelFit:
    """Fit a classical panel estimator; the result follows the results protocol.

    Parameters
    ----------
    data : pandas.DataFrame
        Long panel, one row per entity and period.
    outcome : str
        Dependent variable.
    regressors : sequence of str
        Numeric explanatory columns (an intercept is added where the estimator has one).
    estimator : {"within", "random", "first_difference", "between", "pooled"}
        See the module table.
    entity, time : str
        Panel index columns.
    time_effects : bool
        Two-way fixed effects (``within`` only; plm ``effect = "twoways"``).
    vcov : {"clustered", "classic"}
        Entity-clustered (default) or model-based standard errors.
    small : {"sss", "stata", "hc1", "none"}
        Small-sample factor of clustered SEs (see :mod:`trackii_eval.models.panel`).

    Returns
    -------
    PanelFit
        ``kind == "panel"``; ``tidy()`` has one row per coefficient.

    Raises
    ------
    ModelError
        Missing columns, no complete rows, a single period for ``first_difference``/``within``,
        ``time_effects`` with another estimator, or the library refused the data.
    """
    if estimator not in ESTIMATORS:
        raise ModelError(f"panel estimator must be one of {', '.join(ESTIMATORS)}, "
                         f"not {estimator!r}")
    if vcov not in {"clustered", "classic"}:
        raise ModelError(f"vcov must be 'clustered' or 'classic', not {vcov!r}")
    if time_effects and estimator != "within":
        raise ModelError("time_effects=True is only for the within estimator")
    regs = list(regressors)
    what = f"{ESTIMATORS[estimator].lower()} model of '{outcome}'"
    missing = [c for c in (entity, time, outcome, *regs) if c not in data.columns]
    if missing:
        raise ModelError(f"{what}: column(s) {', '.join(missing)} not in the data")
    frame = data[[entity, time, outcome, *regs]].dropna()
    if frame.empty:
        raise ModelError(f"{what}: no complete observations")
    if estimator in {"within", "first_difference"} and frame[time].nunique() < 2:
        raise ModelError(f"{what}: only one period; change needs at least two")
    indexed = frame.set_index([entity, time]).sort_index()
    y, X = indexed[outcome], indexed[regs].astype(float)
    model = _model(estimator, y, X, time_effects, what)
    fingerprint = data_fingerprint(frame.reset_index(drop=True))
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            if vcov == "clustered" and estimator != "between":
                res = model.fit(cov_type="clustered", cluster_entity=True, debiased=False,
                                group_debias=False, **_no_auto_df(estimator))
            else:
                res = model.fit(cov_type="unadjusted")
        except Exception as exc:  # any library failure becomes one ModelError line
            raise ModelError(f"{what}: the data cannot identify the model "
                             f"({library_error(exc)})") from None
    lib_warnings = [_library_warning(w) for w in caught]
    cov = np.asarray(res.cov, dtype=float)
    n_obs = int(res.nobs)
    n_entities = int(frame[entity].nunique())
    if vcov == "clustered" and estimator == "between":
        raise ModelError(f"{what}: the between estimator has one observation per entity; "
                         "use vcov='classic'")
    if vcov == "clustered":
        clusters = _n_clusters(res, n_entities)
        # xtreg, fe reports a constant (and, with i.year, T-1 year dummies) beyond the slopes
        extra = (1 + (frame[time].nunique() - 1 if time_effects else 0)
                 if estimator == "within" else 0)
        cov = cov * cluster_scale(small, n_obs, len(res.params), clusters, extra)
        df_ref = float(clusters - 1)
        vcov_text = f"clustered by {entity} ({CLUSTER_CONVENTIONS[small]}); t(G-1)"
    else:
        df_ref = float(res.df_resid)
        vcov_text = "classic (model-based); t(residual df)"
    terms = [("(Intercept)" if t == "const" else str(t)) for t in res.params.index]
    se = np.sqrt(np.diag(cov))
    stats = {"r2": float(res.rsquared)}
    if estimator == "random":
        stats.update({"theta": float(np.asarray(res.theta).mean()),
                      "sigma2_idiosyncratic": float(res.variance_decomposition["Residual"]),
                      "sigma2_effects": float(res.variance_decomposition["Effects"])})
    name = ESTIMATORS[estimator] + (" with time effects" if time_effects else "")
    record = FitRecord(
        estimator=name, engine="linearmodels", optimizer="closed form", tolerances={},
        n_evals=None, converged=True, warnings=tuple(lib_warnings),
        versions=package_versions("linearmodels"), data_fingerprint=fingerprint,
        n_obs=n_obs, n_groups={entity: n_entities}, vcov=vcov_text,
    )
    return PanelFit(
        outcome=outcome, estimator=name, terms=tuple(terms),
        estimate=tuple(float(v) for v in res.params), std_error=tuple(float(v) for v in se),
        df=(df_ref,) * len(terms), estimable=(True,) * len(terms),
        roles=tuple(term_role(t) for t in terms), notes=("",) * len(terms),
        vcov=tuple(tuple(float(v) for v in row) for row in cov), record=record, stats=stats,
    )


def _no_auto_df(estimator: str) -> dict[str, Any]:
    # PanelOLS would otherwise fold the absorbed effects into its own small-sample factor.
    return {"auto_df": False, "count_effects": False} if estimator == "within" else {}


def _n_clusters(res: Any, n_entities: int) -> int:
    info = getattr(res, "entity_info", None)
    return int(info["total"]) if info is not None else n_entities


def _model(estimator: str, y: pd.Series, X: pd.DataFrame, time_effects: bool,
           what: str) -> Any:
    from linearmodels.panel import BetweenOLS, PanelOLS, PooledOLS, RandomEffects

    with_const = X.assign(const=1.0)[["const", *X.columns]]
    try:
        if estimator == "within":
            return PanelOLS(y, X, entity_effects=True, time_effects=time_effects,
                            check_rank=True)
        if estimator == "random":
            return RandomEffects(y, with_const)
        if estimator == "between":
            return BetweenOLS(y, with_const)
        if estimator == "pooled":
            return PooledOLS(y, with_const)
        # First differences between consecutive periods of the same entity (a gap gives no
        # difference, as Stata's D. operator), with an intercept (the drift) as plm fits.
        periods = {p: i for i, p in enumerate(sorted(y.index.get_level_values(1).unique()))}
        pos = pd.Series([periods[p] for p in y.index.get_level_values(1)], index=y.index)
        ent = pd.Series(y.index.get_level_values(0), index=y.index)
        consecutive = (pos.groupby(ent).diff() == 1).to_numpy()
        dy = y.groupby(level=0).diff()[consecutive]
        dX = X.groupby(level=0).diff()[consecutive]
        if dy.empty:
            raise ModelError(f"{what}: no entity is observed at two consecutive periods")
        return PooledOLS(dy, dX.assign(const=1.0)[["const", *dX.columns]])
    except ModelError:
        raise
    except Exception as exc:  # any library failure becomes one ModelError line
        raise ModelError(f"{what}: {library_error(exc)}") from None


@dataclass(frozen=True)
class HausmanTest:
    """Result of :func:`hausman`.

    Attributes
    ----------
    statistic : float
        χ² statistic (NaN when the covariance difference is singular).
    df : int
        Degrees of freedom (number of compared slopes).
    p_value : float
        Upper-tail χ² probability.
    terms : tuple of str
        Compared coefficients.
    positive_definite : bool
        Whether V_FE - V_RE is positive definite; when it is not, the statistic is not a
        valid χ² and ``note`` says so.
    note : str
        Caveat for a reader ("" when none).
    """

    statistic: float
    df: int
    p_value: float
    terms: tuple[str, ...]
    positive_definite: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"statistic": json_number(self.statistic), "df": self.df,
                "p_value": json_number(self.p_value), "terms": list(self.terms),
                "positive_definite": self.positive_definite, "note": self.note}

    def summary(self) -> str:
        """One line for people."""
        text = (f"Hausman test, fixed vs random effects: chi2({self.df}) = "
                f"{self.statistic:.4f}, p = {self.p_value:.4f}")
        return text + (f" ({self.note})" if self.note else "")


def hausman(fixed: PanelFit, random: PanelFit) -> HausmanTest:
    """Hausman test of the random-effects assumption, as ``plm::phtest(fe, re)``.

    Parameters
    ----------
    fixed, random : PanelFit
        Within and random-effects fits of the same model with ``vcov="classic"`` (the test
        rests on random effects being efficient under the null, which clustered covariances
        do not assume).

    Returns
    -------
    HausmanTest
        Statistic, df, p-value; a covariance difference that is not positive definite is
        reported with ``positive_definite=False`` and a note, never hidden.

    Raises
    ------
    ModelError
        Classic covariances missing, different data, or no common slopes.
    """
    for fit, label in ((fixed, "fixed"), (random, "random")):
        if not fit.record.vcov.startswith("classic"):
            raise ModelError(f"hausman(): the {label}-effects fit needs vcov='classic' "
                             "(the test compares model-based covariances)")
    if fixed.record.data_fingerprint != random.record.data_fingerprint:
        raise ModelError("hausman(): the two fits were made from different data")
    common = [t for t in fixed.terms if t in random.terms and t != "(Intercept)"]
    if not common:
        raise ModelError("hausman(): the fits share no slope coefficient")
    b = _pick(fixed, common) - _pick(random, common)
    V = _pick_cov(fixed, common) - _pick_cov(random, common)
    eig = np.linalg.eigvalsh((V + V.T) / 2)
    pd_ok = bool(eig.min() > 0)
    try:
        stat = float(b @ np.linalg.solve(V, b))
    except np.linalg.LinAlgError:
        stat = float("nan")
    df = len(common)
    p = float(sps.chi2.sf(stat, df)) if np.isfinite(stat) and stat >= 0 else float("nan")
    note = "" if pd_ok else (
        "V_FE - V_RE is not positive definite (smallest eigenvalue "
        f"{eig.min():.3g}): the statistic is not a valid chi-squared; prefer a "
        "cluster-robust (Mundlak) test"
    )
    return HausmanTest(statistic=stat, df=df, p_value=p, terms=tuple(common),
                       positive_definite=pd_ok, note=note)


def _pick(fit: PanelFit, terms: list[str]) -> np.ndarray:
    return np.array([fit.estimate[fit.terms.index(t)] for t in terms])


def _pick_cov(fit: PanelFit, terms: list[str]) -> np.ndarray:
    idx = [fit.terms.index(t) for t in terms]
    return np.asarray(fit.vcov, dtype=float)[np.ix_(idx, idx)]
