"""Analysis plans: which models, on which outcomes; fitted from the scores, stored as results.

A plan lives in ``analysis/<study>.yaml`` (or is the default built from the study design). Each
model has a name, a kind and its specification; results are stored in the study store as JSON so
that reports read them and never refit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._yaml import load_yaml
from .config import Instrument, StudyConfig
from .errors import ConfigError, ModelError, warning_line
from .models.results import Comparison, ModelResult, compare, json_number, tidy_frame

if TYPE_CHECKING:
    from .pipeline.context import StudyContext

__all__ = ["AnalysisPlan", "ModelResults", "ModelSpec", "default_plan", "fit_plan", "load_plan"]


class ModelSpec(BaseModel):
    """One model of the plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    kind: Literal["growth", "event_study", "did", "clmm"]
    outcome: str
    formula: str | None = None
    reml: bool = True
    label: str = ""
    headline: bool = False
    # Named linear combinations of the model's terms to report (label -> term -> weight),
    # e.g. the dialogue-comparison gap in yearly change after the programme.
    contrasts: dict[str, dict[str, float]] = Field(default_factory=dict)
    # kind clmm (item-level ordinal model of the outcome construct's items): link and
    # quadrature points (1 = Laplace); items default to those on a scale of at most 11 points
    link: Literal["logit", "probit"] = "logit"
    nagq: int = Field(default=1, ge=1)
    items: list[str] = Field(default_factory=list)


class AnalysisPlan(BaseModel):
    """The models an impact report is built from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)


def load_plan(path: str | Path) -> AnalysisPlan:
    """Load an analysis plan YAML.

    Raises
    ------
    ConfigError
        One line per problem, ``file:line: key: rule``, formatted as study.yaml's and
        instrument.yaml's are (one formatter for every configuration file).
    """
    from .config import _raise_validation

    path = Path(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping with a list of models at the top level")
    try:
        return AnalysisPlan.model_validate(data)
    except ValidationError as exc:
        _raise_validation(path, lines, exc)
        raise  # unreachable: _raise_validation always raises


def default_plan(config: StudyConfig, instrument: Instrument | None = None) -> AnalysisPlan:
    """Growth, durability and event-study models of perceptions and relationships, and an
    event study of every behavioural outcome the instrument declares."""
    models = []
    # only the outputs the instrument measures: a study without a relationships construct
    # gets no relationships model (rather than a refusal to fit any model)
    outcomes = [o for o in ("perceptions", "relationships")
                if instrument is None or o in instrument.constructs]
    for outcome in outcomes:
        models.append(ModelSpec(
            name=f"{outcome}_growth", kind="growth", outcome=outcome,
            formula=f"{outcome} ~ time * arm + (time | participant)",
            label=f"Linear growth of {outcome}",
        ))
        if config.program_end_wave is not None:
            during = f"time:arm[T.{config.treated_arm}]"
            models.append(ModelSpec(
                name=f"{outcome}_durability", kind="growth", outcome=outcome,
                formula=f"{outcome} ~ (time + post_time) * arm + (time | participant)",
                label=f"Piecewise growth of {outcome}: during and after the programme",
                headline=outcome == "perceptions",
                contrasts={
                    "gap in yearly change during the programme": {during: 1.0},
                    "gap in yearly change after the programme": {
                        during: 1.0, f"post_time:arm[T.{config.treated_arm}]": 1.0},
                },
            ))
        models.append(ModelSpec(
            name=f"{outcome}_event_study", kind="event_study", outcome=outcome,
            label=f"Difference-in-differences by wave ({outcome})",
        ))
    if instrument is not None:
        for name, construct in instrument.constructs.items():
            if construct.kind == "behaviour" and construct.asked_of is None:
                models.append(ModelSpec(
                    name=f"{name}_event_study", kind="event_study", outcome=name,
                    label=f"Difference-in-differences by wave ({construct.label or name})",
                ))
    if not models:
        raise ModelError(
            "no default model for this instrument: it has no construct named perceptions or "
            "relationships and no behavioural measure; write an analysis plan naming the "
            "outcomes to model and pass it with --plan")
    return AnalysisPlan(models=models)


@dataclass
class ModelResults:
    """The fitted models of a plan, by name (live objects; the store keeps their JSON).

    Every fit satisfies the results protocol (:class:`trackii_eval.models.results.ModelResult`).
    ``payloads`` holds what the model stage stores per model: ``(kind, JSON-ready dict)``;
    ``notes`` the one-line messages of library warnings raised while fitting each model.
    """

    fits: dict[str, ModelResult] = field(default_factory=dict)
    specs: dict[str, ModelSpec] = field(default_factory=dict)
    payloads: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        """Text for people."""
        return "\n\n".join(f"== {name} ==\n{fit.summary()}" for name, fit in self.fits.items())

    def compare(self, *, level: float = 0.95, roles: Any = None) -> Comparison:
        """The plan's fits side by side (see :func:`trackii_eval.models.results.compare`)."""
        return compare(self.fits, level=level, roles=roles)

    def compare_growth(self, outcome: str | None = None) -> pd.DataFrame:
        """Which growth model the data support: the plan's growth models of one outcome by
        likelihood-ratio tests on ML fits, AIC and BIC (as lme4's ``anova``; see
        :func:`trackii_eval.models.growth.compare_growth` for the table's columns).

        Parameters
        ----------
        outcome
            The outcome whose growth models to compare; may be omitted when the plan's growth
            models share one outcome.

        Raises
        ------
        ModelError
            Fewer than two growth models of the outcome, or an ambiguous outcome.
        """
        from .models.growth import compare_growth

        growth_names = [n for n, s in self.specs.items() if s.kind == "growth" and n in self.fits]
        outcomes = sorted({self.specs[n].outcome for n in growth_names})
        if outcome is None:
            if len(outcomes) != 1:
                raise ModelError(f"the plan has growth models of {outcomes}; name the outcome "
                                 "whose models to compare")
            outcome = outcomes[0]
        names = [n for n in growth_names if self.specs[n].outcome == outcome]
        if len(names) < 2:
            raise ModelError(f"the plan has {len(names)} growth model(s) of {outcome!r}; "
                             "comparing needs at least two (e.g. linear and piecewise)")
        return compare_growth({n: self.fits[n] for n in names})  # type: ignore[misc]


def _fit_growth(spec: ModelSpec, data: pd.DataFrame) -> ModelResult:
    from .models.growth import growth

    if not spec.formula:
        raise ConfigError(f"model '{spec.name}': a growth model needs a formula")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are kept on the fit and reported
        return growth(spec.formula, data=data, reml=spec.reml)


def _fit_event_study(spec: ModelSpec, data: pd.DataFrame) -> ModelResult:
    from .models.panel import event_study

    return event_study(data, spec.outcome)


def _fit_did(spec: ModelSpec, data: pd.DataFrame) -> ModelResult:
    # Staggered entry: Callaway-Sant'Anna with not-yet-treated controls needs the first wave
    # each participant's dialogue started ('cohort'; 0 for the comparison arm).
    from .models.did import callaway_santanna

    if "cohort" not in data.columns:
        raise ModelError(f"model '{spec.name}' (kind did) needs a 'cohort' column: the first "
                         "wave of each participant's dialogue, 0 for the comparison arm")
    return callaway_santanna(data, spec.outcome, entity="participant", time="wave",
                             cohort="cohort", control="notyet")


def _fit_clmm(spec: ModelSpec, data: pd.DataFrame) -> ModelResult:
    # `data` is the long item table item_responses() builds (fit_plan passes it for clmm).
    from .models.clmm import clmm

    if not spec.formula:
        raise ConfigError(f"model '{spec.name}': a clmm model needs a formula, e.g. "
                          "'response ~ item + time * arm + (1 | participant)'")
    if "response" not in data.columns:
        raise ModelError(f"model '{spec.name}' (kind clmm) needs the item responses; fit it "
                         "with fit_plan(..., responses=store.active_responses())")
    fit = clmm(spec.formula, data, link=spec.link, nAGQ=spec.nagq)
    # predicted category probabilities per arm, wave and item (population-averaged), for
    # the report's figures; fit_plan stores them beside the fit
    grid = data.drop_duplicates(["arm", "wave", "item"])[
        [c for c in ("arm", "wave", "time", "post_time", "treated", "item") if c in data]]
    return replace(fit, plan_probabilities=fit.probabilities(
        grid.sort_values(["item", "arm", "wave"]).reset_index(drop=True)))


def item_responses(spec: ModelSpec, responses: pd.DataFrame, data: pd.DataFrame,
                   ctx: StudyContext) -> pd.DataFrame:
    """Long participant x wave x item table of one construct's ordinal items, keyed.

    Reverse-keyed items are flipped (min + max - value) so that a higher category always means
    the same direction as the scale score; answers with a missing code are left out. Rows are
    those of the wide scores ``data`` (same participants and waves as the scale-score models),
    whose covariates (``time``, ``post_time``, ``arm``, ``treated``) they carry.

    Raises
    ------
    ModelError
        The construct has no item on a scale of at most 11 points, or ``spec.items`` names an
        item that is not one of its items.
    """
    construct = ctx.instrument.constructs.get(spec.outcome)
    if construct is None:
        raise ModelError(f"model '{spec.name}': outcome '{spec.outcome}' is not a construct "
                         f"of the instrument")
    scales = ctx.instrument.scales
    ordinal = {it.id: it for it in construct.items
               if scales[it.scale].max - scales[it.scale].min <= 10}
    chosen = spec.items or list(ordinal)
    bad = [i for i in chosen if i not in ordinal]
    if bad or not chosen:
        raise ModelError(
            f"model '{spec.name}': {', '.join(bad) or 'no item'} is not an ordinal item of "
            f"'{spec.outcome}' (ordinal items, scales of at most 11 points: "
            f"{', '.join(ordinal) or 'none'})")
    used_scales = sorted({ordinal[i].scale for i in chosen})
    if len(used_scales) > 1:
        raise ModelError(
            f"model '{spec.name}': the items are on different scales ({', '.join(used_scales)}); "
            "one ordinal model shares its thresholds across items, so list items of one scale "
            "under 'items:'")
    r = responses[(responses["construct"] == spec.outcome) & responses["item"].isin(chosen)
                  & responses["missing_code"].isna() & responses["value"].notna()]
    value = r["value"].astype(float)
    lo = r["item"].map({i: scales[ordinal[i].scale].min for i in chosen}).astype(float)
    hi = r["item"].map({i: scales[ordinal[i].scale].max for i in chosen}).astype(float)
    rev = r["item"].map({i: bool(ordinal[i].reverse) for i in chosen}).astype(bool)
    keyed = value.where(~rev, lo + hi - value)
    long = pd.DataFrame({"participant": r["participant"].to_numpy(),
                         "wave": r["wave"].to_numpy(), "item": r["item"].to_numpy(),
                         "response": np.round(keyed.to_numpy()).astype(int)})
    covariates = [c for c in ("participant", "wave", "time", "post_time", "arm", "treated",
                              "dialogue") if c in data.columns]
    long = long.merge(data[covariates], on=["participant", "wave"], how="inner")
    long["item"] = pd.Categorical(long["item"], categories=chosen)
    return long.sort_values(["participant", "wave", "item"]).reset_index(drop=True)


# How each kind of plan model is fitted; everything after fitting reads the results protocol.
FITTERS: dict[str, Callable[[ModelSpec, pd.DataFrame], ModelResult]] = {
    "growth": _fit_growth,
    "event_study": _fit_event_study,
    "did": _fit_did,
    "clmm": _fit_clmm,
}


def _contrast(fit: ModelResult, label: str, weights: dict[str, float]) -> pd.DataFrame:
    """One contrast of the plan as a tidy row; a contrast whose terms the fit lacks (a term
    the data could not identify, e.g. ``post_time`` before any wave after the programme) is
    a row marked not estimable with the reason, never a crash nor a silent omission."""
    terms = set(fit.tidy()["term"])
    missing = [t for t in weights if t not in terms]
    if not missing:
        return fit.lincom(weights, name=label)
    return tidy_frame([label], [np.nan], [np.nan], [np.nan], 0.95, estimable=[False],
                      role=["effect"],
                      note=[f"not estimable: the fit has no term {', '.join(missing)}"])


def fit_plan(data: pd.DataFrame, ctx: StudyContext, plan: AnalysisPlan,
             responses: pd.DataFrame | None = None) -> ModelResults:
    """Fit every model of ``plan`` to the wide scores ``data``; nothing is stored.

    Parameters
    ----------
    data
        Wide scores (participant x wave rows, a column per construct, ``time``, ``post_time``,
        ``treated``, categorical ``arm``), as :func:`trackii_eval.scoring.scores_wide` makes them.
    ctx
        The frozen study context (configuration and instrument).
    plan
        The models to fit.
    responses
        Long item responses (:meth:`trackii_eval.store.Store.active_responses`); needed only
        by item-level models (kind ``clmm``).

    Returns
    -------
    ModelResults
        Live fits, specs and the JSON payloads the model stage
        (:func:`trackii_eval.pipeline.stages.model`) stores.

    Raises
    ------
    ModelError
        An outcome is not a construct of the instrument, or a model cannot be fitted, or no
        participant has an arm.
    """
    from .ingest.attributes import require_arms

    require_arms(data, ctx.config)
    results = ModelResults()
    for spec in plan.models:
        if spec.outcome not in data.columns:
            raise ModelError(
                f"model '{spec.name}': outcome '{spec.outcome}' is not a construct of the "
                f"instrument (constructs: {', '.join(ctx.instrument.constructs)})"
            )
        fit_data = data
        if spec.kind == "clmm":
            if responses is None:
                raise ModelError(f"model '{spec.name}' (kind clmm) is fitted to the item "
                                 "responses; pass responses=store.active_responses()")
            fit_data = item_responses(spec, responses, data, ctx)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = FITTERS[spec.kind](spec, fit_data)
        # fits keep their own warnings; any other library warning becomes the project's
        # one-line note, stored with the result and printed by the CLI
        notes = [line for line in dict.fromkeys(
            warning_line(w.message, w.category) for w in caught) if line not in fit.warnings]
        results.fits[spec.name] = fit
        results.specs[spec.name] = spec
        results.notes[spec.name] = notes
        payload: dict[str, Any] = {"spec": spec.model_dump(), "fit": fit.to_dict(),
                                   "notes": notes}
        if spec.contrasts:
            rows = pd.concat([_contrast(fit, label, w) for label, w in spec.contrasts.items()])
            payload["contrasts"] = _json_rows(rows)
        if getattr(fit, "plan_probabilities", None) is not None:
            payload["probabilities"] = _json_rows(fit.plan_probabilities)  # type: ignore[attr-defined]
        if callable(getattr(fit, "predict", None)):
            payload["trajectory"] = _trajectory(fit, ctx.config, data).to_dict(orient="records")
        results.payloads[spec.name] = (spec.kind, payload)
    return results


def _json_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: json_number(v) for k, v in row.items()} for row in table.to_dict("records")]


def _trajectory(fit: Any, config: StudyConfig, data: pd.DataFrame) -> pd.DataFrame:
    """Population-level predictions per arm over the study period, with 95% bands."""
    t_max = float(data["time"].max())
    grid = np.linspace(0.0, t_max, 41)
    t_end = config.program_end_time
    rows = []
    for arm in data["arm"].cat.categories:
        frame = pd.DataFrame({"time": grid})
        frame["post_time"] = np.maximum(grid - t_end, 0.0) if t_end is not None else 0.0
        frame["arm"] = pd.Categorical([arm] * len(grid), categories=data["arm"].cat.categories)
        frame["treated"] = int(arm != config.comparison_arm)
        pred = fit.predict(frame, re=False)
        rows.append(pd.DataFrame({
            "arm": arm, "time": grid, "estimate": np.asarray(pred["estimate"]),
            "ci_low": np.asarray(pred["ci_low"]), "ci_high": np.asarray(pred["ci_high"]),
        }))
    return pd.concat(rows, ignore_index=True)
