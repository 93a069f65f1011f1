"""Panel models of change against the comparison arm (linearmodels).

:func:`event_study` fits the two-way fixed-effects difference-in-differences with one effect
per post-baseline wave (an event study): participant and wave fixed effects absorb stable
differences between people and shocks that hit everyone (elections, escalations), and
``dialogue x wave`` interactions estimate the gap the dialogue opened at each wave relative to
baseline. With a single treatment date (everyone starts at baseline) the static TWFE problems
described by Goodman-Bacon (2021) do not arise; staggered designs belong to a later estimator.

Clustered standard errors (the convention, for every clustered SE in the project)
--------------------------------------------------------------------------------
The sandwich is built from the within-transformed regressors and residuals (CR0), then scaled
by a small-sample factor in which ``K`` counts only the *estimated* coefficients: fixed effects
nested in the clusters are swept out and do not count (Cameron & Miller 2015, §VI.B; counting
them made the SEs 10% too large with 6 waves and 42% with 2).

=========  ==================================  ============================================
small      factor                              matches
=========  ==================================  ============================================
"sss"      G/(G-1) · (N-1)/(N-K)               plm ``vcovHC(type = "sss", cluster =
                                               "group")`` (plm's "Stata small sample"),
                                               fixest's default. **Default**; R fixtures.
"stata"    G/(G-1) · (N-1)/(N-K')              Stata ``xtreg, fe vce(cluster id)``, whose K'
                                               also counts the constant it reports and, for
                                               two-way models written ``i.wave``, the T-1
                                               wave dummies (by Stata's documented formula;
                                               no Stata fixture). Differs from "sss" by
                                               (N-K)/(N-K') - under 1% here.
"hc1"      N/(N-K)                             plm ``vcovHC(type = "HC1", cluster = "group")``
"none"     1                                   plm ``type = "HC0"`` (CR0)
=========  ==================================  ============================================

Coverage is checked before fitting: an effect the data cannot identify (an arm absent at a
wave, no variation in treatment) is reported as not estimable with the reason instead of being
dropped silently (a wave where the outcome was never observed and a single wave included);
treatment varying within a participant or fewer than two clusters is a :class:`ModelError`.
Library warnings are kept on the fit and library exceptions become :class:`ModelError`.

References
----------
Wooldridge, J. M. (2010). Econometric Analysis of Cross Section and Panel Data (2nd ed.), ch. 10.
Cameron, A. C., & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
Journal of Human Resources, 50(2), 317-372.
Croissant, Y., & Millo, G. (2008). Panel data econometrics in R: the plm package. Journal of
Statistical Software, 27(2).
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from ..errors import ModelError
from .results import (
    SCHEMA_VERSION,
    FitRecord,
    as_float,
    data_fingerprint,
    json_number,
    package_versions,
    register_result,
    summary_html_layout,
    tidy_frame,
)

__all__ = ["CLUSTER_CONVENTIONS", "PanelFit", "cluster_scale", "event_study"]

SmallSample = Literal["sss", "stata", "hc1", "none"]
CLUSTER_CONVENTIONS: dict[str, str] = {
    "sss": "G/(G-1)(N-1)/(N-K) as plm 'sss'",
    "stata": "G/(G-1)(N-1)/(N-K') as Stata xtreg, fe",
    "hc1": "N/(N-K) as plm HC1",
    "none": "CR0, no small-sample factor",
}


def cluster_scale(small: str, n_obs: int, n_params: int, n_clusters: int,
                  n_stata_extra: int = 0) -> float:
    """Small-sample factor that multiplies the CR0 cluster-robust covariance.

    Parameters
    ----------
    small : {"sss", "stata", "hc1", "none"}
        Convention (see the module docs).
    n_obs : int
        Observations N.
    n_params : int
        Estimated coefficients K, *not* counting fixed effects swept out by the within
        transformation (they are nested in the clusters).
    n_clusters : int
        Clusters G.
    n_stata_extra : int
        Coefficients Stata's ``xtreg, fe`` estimates beyond ``n_params`` (its constant, and
        T-1 wave dummies in a two-way model); used by ``"stata"`` only (K' = K + extra).

    Returns
    -------
    float

    Raises
    ------
    ModelError
        Unknown convention, fewer than two clusters, or N <= K.
    """
    if small not in CLUSTER_CONVENTIONS:
        raise ModelError(f"small-sample convention must be one of "
                         f"{', '.join(CLUSTER_CONVENTIONS)}, not {small!r}")
    if n_clusters < 2:
        raise ModelError(f"clustered standard errors need at least 2 clusters, got {n_clusters}")
    k = n_params + (n_stata_extra if small == "stata" else 0)
    if n_obs <= k:
        raise ModelError(f"{n_obs} observations cannot estimate {k} coefficients")
    if small in {"sss", "stata"}:
        return n_clusters / (n_clusters - 1) * (n_obs - 1) / (n_obs - k)
    if small == "hc1":
        return n_obs / (n_obs - k)
    return 1.0


@register_result
@dataclass(frozen=True, eq=False)
class PanelFit:
    """A fitted panel model (event study, within, random effects, ...). Immutable.

    Satisfies :class:`trackii_eval.models.results.ModelResult`.

    Attributes
    ----------
    outcome : str
        Modelled column.
    estimator : str
        What was fitted.
    terms : tuple of str
        Every coefficient the model asked for, estimable or not.
    estimate, std_error, df : tuple of float
        Per term (NaN where not estimable); ``df`` is the t reference (NaN: normal).
    estimable, roles, notes : tuple
        Per term: identified by the data, ``"effect"``/``"other"``, reason or caveat.
    vcov : tuple of tuple of float
        Covariance of the estimable coefficients (in ``terms`` order, estimable only).
    record : FitRecord
        How the model was fitted and on what.
    stats : dict
        Model statistics (``r2_within``, ...).
    waves : dict
        Term -> wave for event-study effects (empty otherwise).
    method : str
        What the terms mean, for the methods section ("" when the estimator says it all).
    """

    kind: ClassVar[str] = "panel"

    outcome: str
    estimator: str
    terms: tuple[str, ...]
    estimate: tuple[float, ...]
    std_error: tuple[float, ...]
    df: tuple[float, ...]
    estimable: tuple[bool, ...]
    roles: tuple[str, ...]
    notes: tuple[str, ...]
    vcov: tuple[tuple[float, ...], ...]
    record: FitRecord
    stats: dict[str, float] = field(default_factory=dict)
    waves: dict[str, int] = field(default_factory=dict)
    method: str = ""

    # ------------------------------------------------------------------ protocol
    @property
    def warnings(self) -> list[str]:
        """Problems a reader must see (terms not estimable, library warnings)."""
        return list(self.record.warnings)

    @property
    def converged(self) -> bool:
        """Closed-form estimators always converge; kept for the protocol's record."""
        return self.record.converged

    @property
    def nobs(self) -> int:
        """Observations used."""
        return self.record.n_obs

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """One row per term with the protocol's columns (see ``models.results``)."""
        return tidy_frame(list(self.terms), self.estimate, self.std_error, self.df, level,
                          estimable=self.estimable, role=list(self.roles),
                          note=list(self.notes))

    def lincom(self, weights: Mapping[str, float], level: float = 0.95,
               name: str = "") -> pd.DataFrame:
        """A linear combination of coefficients as one tidy row (t with the fit's df).

        Raises
        ------
        ModelError
            ``weights`` names a term the model does not have.
        """
        unknown = [t for t in weights if t not in self.terms]
        if unknown:
            raise ModelError(f"contrast terms {unknown} are not terms of this model "
                             f"({', '.join(self.terms)})")
        label = name or " + ".join(f"{w:g}*{t}" for t, w in weights.items())
        blocked = [t for t in weights if not self.estimable[self.terms.index(t)]]
        if blocked:
            return tidy_frame([label], [np.nan], [np.nan], [np.nan], level, estimable=[False],
                              role=["effect"], note=[f"uses {', '.join(blocked)}, not estimable"])
        kept = [t for t, ok in zip(self.terms, self.estimable, strict=True) if ok]
        vec = np.array([float(weights.get(t, 0.0)) for t in kept])
        est = float(vec @ np.array([self.estimate[self.terms.index(t)] for t in kept]))
        se = float(np.sqrt(vec @ np.array(self.vcov) @ vec))
        # every term shares one df under CR1; under CR2 each term has its own Satterthwaite
        # df and the smallest of those combined is the conservative reference
        dfs = [self.df[self.terms.index(t)] for t in weights if weights[t] != 0]
        df = min(dfs) if dfs else np.nan
        roles = {self.roles[self.terms.index(t)] for t in weights}
        return tidy_frame([label], [est], [se], [df], level,
                          role=["effect" if "effect" in roles else "other"])

    @property
    def effects(self) -> pd.DataFrame:
        """Event-study effects indexed by term, with their wave (95% intervals)."""
        tab = self.tidy().set_index("term")
        tab["wave"] = [self.waves.get(t, -1) for t in tab.index]
        return tab

    def describe(self) -> str:
        """One methods-section sentence."""
        rec = self.record
        groups = ", ".join(f"{v} {k}s" for k, v in rec.n_groups.items())
        method = f" ({self.method})" if self.method else ""
        return (f"{self.estimator} of {self.outcome}{method}: {rec.n_obs} observations of "
                f"{groups}; standard errors {rec.vcov} ({rec.engine}).")

    def summary(self) -> str:
        """Text for people: the tidy table, the fit record and the warnings."""
        tab = self.tidy().drop(columns=["role"]).set_index("term")
        lines = [f"{self.estimator}: {self.outcome}", tab.round(4).to_string(), "",
                 *self.record.lines()]
        lines += [f"{k}: {v:.4f}" for k, v in self.stats.items() if np.isfinite(v)]
        if self.warnings:
            lines += ["Warnings:", *(f"  - {w}" for w in self.warnings)]
        return "\n".join(lines)

    def summary_html(self) -> str:
        """The summary as an HTML fragment."""
        return summary_html_layout(f"{self.estimator}: {self.outcome}", self.record,
                                   self.tidy(), self.warnings)

    def _repr_html_(self) -> str:
        return self.summary_html()

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON form (NaN as None)."""
        return {
            "kind": self.kind, "schema": SCHEMA_VERSION, "outcome": self.outcome,
            "estimator": self.estimator, "terms": list(self.terms),
            "estimate": [json_number(v) for v in self.estimate],
            "std_error": [json_number(v) for v in self.std_error],
            "df": [json_number(v) for v in self.df],
            "estimable": [bool(v) for v in self.estimable], "roles": list(self.roles),
            "notes": list(self.notes),
            "vcov": [[json_number(v) for v in row] for row in self.vcov],
            "record": self.record.to_dict(),
            "stats": {k: json_number(v) for k, v in self.stats.items()},
            "waves": dict(self.waves), "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PanelFit:
        """Inverse of :meth:`to_dict`."""
        return cls(
            outcome=data["outcome"], estimator=data["estimator"], terms=tuple(data["terms"]),
            estimate=tuple(as_float(v) for v in data["estimate"]),
            std_error=tuple(as_float(v) for v in data["std_error"]),
            df=tuple(as_float(v) for v in data["df"]),
            estimable=tuple(bool(v) for v in data["estimable"]), roles=tuple(data["roles"]),
            notes=tuple(data["notes"]),
            vcov=tuple(tuple(as_float(v) for v in row) for row in data["vcov"]),
            record=FitRecord.from_dict(data["record"]),
            stats={k: as_float(v) for k, v in data["stats"].items()},
            waves={k: int(v) for k, v in data["waves"].items()},
            method=data.get("method", ""),
        )


# ----------------------------------------------------------------------------- fitting
def _library_warning(w: _warnings.WarningMessage) -> str:
    # linearmodels' messages span many lines; the first sentence is the one a reader needs.
    text = " ".join(str(w.message).split())
    return f"{w.category.__name__}: {text[:200]}"


def library_error(exc: BaseException) -> str:
    """A library exception as one short line: its class and its message, whitespace folded."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


def fit_clustered(model: Any, small: str, what: str,
                  n_stata_extra: int = 0) -> tuple[Any, np.ndarray, int, list[str]]:
    """Fit a linearmodels panel model with participant-clustered SEs under ``small``.

    Returns the linearmodels result, the scaled covariance of its parameters, the number of
    clusters and the library's warnings as one-line messages.

    Raises
    ------
    ModelError
        The library refused the data (rank, absorbed variables, ...), naming ``what``.
    """
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            # auto_df/count_effects off and debiased off: linearmodels then returns the plain
            # CR0 sandwich (checked against plm's HC0); the small-sample factor is ours.
            res = model.fit(cov_type="clustered", cluster_entity=True, debiased=False,
                            group_debias=False, auto_df=False, count_effects=False)
        except Exception as exc:  # any library failure becomes one ModelError line
            raise ModelError(f"{what}: the data cannot identify the model "
                             f"({library_error(exc)})") from None
    n_clusters = int(res.entity_info["total"])
    scale = cluster_scale(small, int(res.nobs), len(res.params), n_clusters, n_stata_extra)
    vcov = np.asarray(res.cov, dtype=float) * scale
    return res, vcov, n_clusters, [_library_warning(w) for w in caught]


def event_study(
    data: pd.DataFrame, outcome: str, *, entity: str = "participant", wave: str = "wave",
    treated: str = "treated", small: SmallSample | Literal["cr2"] = "sss",
    cluster: str | None = None,
) -> PanelFit:
    """Two-way fixed-effects event study of the dialogue's effect at each wave.

    Parameters
    ----------
    data
        Long scores (one row per participant and wave) with the outcome, ``treated`` (0/1,
        constant per participant) and the wave index.
    outcome
        Column to model.
    entity, wave, treated
        Column names.
    small
        Small-sample convention of the clustered standard errors (module docs): ``"sss"``
        (default, plm's Stata-type factor), ``"stata"`` (xtreg's K'), ``"hc1"`` (plm's HC1)
        or ``"none"``; or ``"cr2"``: the Bell-McCaffrey CR2 covariance with a
        Satterthwaite df per term (:mod:`trackii_eval.models.cr2`, as R clubSandwich's
        ``vcovCR(type = "CR2")`` and ``coef_test(test = "Satterthwaite")``). Use CR2 with
        ``cluster="dialogue"``: with three dialogues CR1's t(G-1) is too optimistic and
        CR2's df (often 2-5) say how little the data hold. ``lincom`` of a CR2 fit uses the
        smallest df of the terms combined (conservative).
    cluster
        Column of the clusters the participants are nested in (e.g. ``dialogue``; every
        participant needs one: give comparison participants their recruitment group);
        default: participants. Only with ``small="cr2"``.

    Returns
    -------
    PanelFit
        One term per post-baseline wave (``dialogue:wave<w>``): the change in the
        dialogue-comparison gap since the first wave; a wave without both arms is a term with
        ``estimable = False`` and the reason.

    Raises
    ------
    ModelError
        No complete observations, treatment varying within a participant,
        fewer than two clusters, or the library refused the data.

    Examples
    --------
    The same estimate in Stata: ``xtreg y i.wave##i.treated, fe vce(cluster id)``; in R:
    ``plm(y ~ dialogue_wave2 + ..., effect = "twoways", model = "within")`` with
    ``vcovHC(type = "sss", cluster = "group")`` (see tests/fixtures/plm/make_fixtures.R);
    ``small="stata"`` applies xtreg's K'.
    """
    what = f"event study of '{outcome}'"
    if small not in CLUSTER_CONVENTIONS and small != "cr2":
        raise ModelError(f"{what}: small-sample convention must be one of "
                         f"{', '.join([*CLUSTER_CONVENTIONS, 'cr2'])}, not {small!r}")
    if cluster is not None and small != "cr2":
        raise ModelError(f"{what}: clustering by '{cluster}' is offered with small='cr2' "
                         "(few clusters need CR2's Satterthwaite df); the other conventions "
                         "cluster by participant")
    missing = [c for c in (entity, wave, treated, outcome, cluster) if c and c not in data.columns]
    if missing:
        raise ModelError(f"{what}: column(s) {', '.join(missing)} not in the data")
    cols = [entity, wave, treated, outcome] + ([cluster] if cluster else [])
    frame = data[cols].dropna(subset=[entity, wave, treated, outcome])
    if cluster is not None:
        lacking = frame.loc[frame[cluster].isna(), entity].nunique()
        if lacking:
            raise ModelError(f"{what}: {lacking} participant(s) have no '{cluster}'; give every "
                             "participant a cluster (comparison participants their recruitment "
                             "group) or cluster by participant")
        if (frame.groupby(entity)[cluster].nunique() > 1).any():
            raise ModelError(f"{what}: '{cluster}' changes within a participant; participants "
                             "must be nested in clusters")
    if frame.empty:
        raise ModelError(f"{what}: no complete observations")
    if (frame.groupby(entity)[treated].nunique() > 1).any():
        raise ModelError(f"{what}: '{treated}' changes within a participant; the event study "
                         "needs arm membership fixed for each participant")
    # Every wave of the data gets a term, also one where the outcome was never observed: an
    # effect the data cannot identify is reported as such, never left out.
    waves = sorted(data[wave].dropna().unique())
    model_notes = [] if len(waves) >= 2 else [
        f"not estimable: the data hold only wave {waves[0]}; change needs at least two waves"]
    terms = [f"dialogue:wave{w}" for w in waves[1:]]
    term_wave = {t: int(w) for t, w in zip(terms, waves[1:], strict=True)}
    notes = _coverage(frame, entity, wave, treated, waves, outcome)
    fingerprint = data_fingerprint(frame.reset_index(drop=True))
    versions = package_versions("linearmodels")
    vcov_text = (f"clustered by participant ({CLUSTER_CONVENTIONS[small]}); t(G-1)"
                 if small != "cr2" else "")
    estimator = "Two-way fixed-effects event study"
    n_groups = {"participant": int(frame[entity].nunique())}
    est = dict.fromkeys(terms, np.nan)
    se = dict.fromkeys(terms, np.nan)
    todo = [t for t in terms if not notes[term_wave[t]]]
    lib_warnings: list[str] = []
    vcov_rows: tuple[tuple[float, ...], ...] = ()
    stats: dict[str, float] = {}
    df_ref = np.nan
    n_obs = len(frame)
    if todo:
        from linearmodels.panel import PanelOLS

        indexed = frame.set_index([entity, wave])
        wave_values = indexed.index.get_level_values(wave)
        regressors = pd.DataFrame(index=indexed.index)
        for t in todo:
            regressors[t] = ((wave_values == term_wave[t]) * indexed[treated]).astype(float)
        try:
            model = PanelOLS(indexed[outcome], regressors, entity_effects=True,
                             time_effects=True, drop_absorbed=True, check_rank=True)
        except Exception as exc:  # any library failure becomes one ModelError line
            raise ModelError(f"{what}: {library_error(exc)}") from None
        # xtreg y i.wave##i.treated, fe also estimates a constant and T-1 wave dummies
        n_waves = int(wave_values.nunique())
        res, vcov, n_clusters, lib_warnings = fit_clustered(
            model, "none" if small == "cr2" else small, what, n_stata_extra=1 + n_waves - 1)
        kept = list(res.params.index)
        term_df: dict[str, float] = {}
        if small == "cr2":
            vcov, term_df, n_clusters, vcov_text = _cr2_event_study(
                indexed.join(regressors).reset_index(), kept, entity, wave, outcome,
                cluster or entity, res.params.to_numpy())
        for t in todo:
            if t not in kept:
                notes[term_wave[t]] = ("not estimable: collinear with the participant and wave "
                                       "effects")
        sd = np.sqrt(np.diag(vcov))
        for i, t in enumerate(kept):
            est[t], se[t] = float(res.params.iloc[i]), float(sd[i])
        vcov_rows = tuple(tuple(float(v) for v in row) for row in vcov)
        df_ref = float(n_clusters - 1)
        stats = {"r2_within": float(res.rsquared_within)}
        n_obs = int(res.nobs)
        n_groups = {"participant": int(res.entity_info["total"])}
        if cluster is not None:
            n_groups[cluster] = int(n_clusters)
    ok = [not notes[term_wave[t]] for t in terms]
    warns = model_notes + [f"{t} {notes[term_wave[t]]}" for t in terms if notes[term_wave[t]]]
    warns += lib_warnings
    if not np.isfinite([se[t] for t, good in zip(terms, ok, strict=True) if good]).all():
        warns.append("non-finite standard errors")
    record = FitRecord(
        estimator=estimator, engine="linearmodels PanelOLS", optimizer="closed form",
        tolerances={}, n_evals=None, converged=True, warnings=tuple(warns), versions=versions,
        data_fingerprint=fingerprint, n_obs=n_obs, n_groups=n_groups, vcov=vcov_text,
    )
    return PanelFit(
        outcome=outcome, estimator=estimator, terms=tuple(terms),
        estimate=tuple(est[t] for t in terms), std_error=tuple(se[t] for t in terms),
        df=tuple((term_df.get(t, df_ref) if small == "cr2" else df_ref) if good else np.nan
                 for t, good in zip(terms, ok, strict=True)), estimable=tuple(ok),
        roles=("effect",) * len(terms), notes=tuple(notes[term_wave[t]] for t in terms),
        vcov=vcov_rows, record=record, stats=stats, waves=term_wave,
        method="participant and wave fixed effects; one dialogue effect per post-baseline "
        "wave, the change in the dialogue-comparison gap since baseline",
    )


def _cr2_event_study(long: pd.DataFrame, kept: list[str], entity: str, wave: str,
                     outcome: str, cluster: str, params: np.ndarray,
                     ) -> tuple[np.ndarray, dict[str, float], int, str]:
    """CR2 covariance and Satterthwaite df of the event-study terms (participant effects
    absorbed, wave dummies in the design; :mod:`trackii_eval.models.cr2`)."""
    from .cr2 import cr2, within_design

    x, y, _ = within_design(long, entity, wave, kept, outcome)
    fit = cr2(x, y, long[cluster].to_numpy())
    k = len(kept)
    if not np.allclose(fit.beta[:k], params, rtol=1e-6, atol=1e-8):
        raise ModelError("event study: the CR2 refit does not reproduce the estimates; "
                         "report this as a bug")
    text = (f"CR2 (Bell-McCaffrey) clustered by {cluster}, {fit.n_clusters} clusters; t with "
            "Satterthwaite df per term (Pustejovsky-Tipton), as R clubSandwich")
    return (fit.vcov[:k, :k], {t: float(fit.df[i]) for i, t in enumerate(kept)},
            fit.n_clusters, text)


def _coverage(frame: pd.DataFrame, entity: str, wave: str, treated: str,
              waves: list[Any], outcome: str) -> dict[Any, str]:
    """Why each post-baseline wave's effect cannot be identified ("" when it can).

    Only participants seen at two or more waves carry within-person information: someone
    observed once is absorbed by their own fixed effect.
    """
    seen = frame.groupby(entity)[wave].transform("nunique") >= 2
    informative = frame[seen]
    arms = informative.groupby(wave)[treated].agg(lambda s: set(s.astype(int)))
    notes: dict[Any, str] = {}
    names = {1: "dialogue", 0: "comparison"}
    if frame[treated].nunique() < 2:
        only = names.get(int(frame[treated].iloc[0]), "one")
        reason = (f"not estimable: no variation in treatment (every participant is in the "
                  f"{only} arm)")
        return {w: reason for w in waves[1:]}
    observed = set(frame[wave].unique())
    if waves[0] not in observed:
        reason = (f"not estimable: '{outcome}' was not observed at the baseline wave "
                  f"{waves[0]}; effects relative to baseline need it")
        return {w: reason for w in waves[1:]}
    base_arms = arms.get(waves[0], set())
    if len(base_arms) < 2:
        lacking = ", ".join(names[a] for a in (1, 0) if a not in base_arms)
        reason = (f"not estimable: no {lacking} participant at the baseline wave {waves[0]} "
                  "(and at a later wave); effects relative to baseline need both arms there")
        return {w: reason for w in waves[1:]}
    for w in waves[1:]:
        if w not in observed:
            notes[w] = f"not estimable: '{outcome}' was not observed at wave {w}"
            continue
        have = arms.get(w, set())
        lacking = [names[a] for a in (1, 0) if a not in have]
        notes[w] = (f"not estimable: no {' or '.join(lacking)} participant observed at wave {w} "
                    "(and at another wave)") if lacking else ""
    return notes
