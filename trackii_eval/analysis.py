"""Analysis plans: which models, on which outcomes; fitted from the scores, stored as results.

A plan lives in ``analysis/<study>.yaml`` (or is the default built from the study design). Each
model has a name, a kind and its specification; results are stored in the study store as JSON so
that reports read them and never refit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
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
    kind: Literal["growth", "event_study", "did", "glmm"]
    outcome: str
    formula: str | None = None
    reml: bool = True
    label: str = ""
    headline: bool = False
    # Named linear combinations of the model's terms to report (label -> term -> weight),
    # e.g. the dialogue-comparison gap in yearly change after the programme.
    contrasts: dict[str, dict[str, float]] = Field(default_factory=dict)
    # kind glmm: the response family (binomial for yes/no, poisson for counts) and the
    # quadrature points (1 = Laplace; more only for a single random intercept)
    family: Literal["binomial", "poisson"] | None = None
    nagq: int = Field(default=1, ge=1, le=100)


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
            family = glmm_family(instrument, name)
            if family is not None and construct.asked_of is None:
                models.append(glmm_spec(name, family, construct.label or name))
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


def glmm_family(instrument: Instrument, construct: str) -> str | None:
    """The GLMM family of a behavioural outcome, or None when it is not yes/no or a count.

    A raw-scored behaviour construct of one item is ``binomial`` when the item's scale runs
    from 0 to 1 (yes/no) and ``poisson`` when its scale is named a count (``count``,
    ``contacts_count`` ...) with minimum 0; anything else (amounts, tokens, sums of items) is
    left to the linear models.
    """
    con = instrument.constructs[construct]
    if con.kind != "behaviour" or con.scoring != "raw" or len(con.items) != 1:
        return None
    scale_name = con.items[0].scale
    scale = instrument.scales[scale_name]
    if scale.min == 0 and scale.max == 1:
        return "binomial"
    if scale.min == 0 and "count" in scale_name.lower():
        return "poisson"
    return None


def glmm_spec(outcome: str, family: str, label: str) -> ModelSpec:
    """The default GLMM of a yes/no or count outcome: piecewise growth on the link scale with
    a random intercept per participant (the linear event study stays as a sensitivity model).
    """
    kind = "logistic" if family == "binomial" else "Poisson"
    return ModelSpec(
        name=f"{outcome}_glmm", kind="glmm", outcome=outcome, family=family,  # type: ignore[arg-type]
        formula=f"{outcome} ~ (time + post_time) * arm + (1 | participant)",
        label=f"Behaviour: {label} ({kind} mixed model, during and after the programme)",
    )


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


def _fit_glmm(spec: ModelSpec, data: pd.DataFrame) -> ModelResult:
    from .models.glmm import glmm

    if not spec.formula or spec.family is None:
        raise ConfigError(f"model '{spec.name}': a glmm model needs a formula and a family "
                          "(binomial for yes/no outcomes, poisson for counts)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are kept on the fit and reported
        return glmm(spec.formula, data=data, family=spec.family, nAGQ=spec.nagq)


# How each kind of plan model is fitted; everything after fitting reads the results protocol.
FITTERS: dict[str, Callable[[ModelSpec, pd.DataFrame], ModelResult]] = {
    "growth": _fit_growth,
    "event_study": _fit_event_study,
    "did": _fit_did,
    "glmm": _fit_glmm,
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


def fit_plan(data: pd.DataFrame, ctx: StudyContext, plan: AnalysisPlan) -> ModelResults:
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = FITTERS[spec.kind](spec, data)
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
        if callable(getattr(fit, "predict", None)):
            trajectory = TRAJECTORIES.get(spec.kind, _trajectory)
            payload["trajectory"] = trajectory(fit, ctx.config, data).to_dict(orient="records")
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


def _wave_trajectory(fit: Any, config: StudyConfig, data: pd.DataFrame) -> pd.DataFrame:
    """Predicted probabilities or rates per arm at each observed wave, with 95% intervals.

    For a GLMM these are population-level predictions for a typical participant (random
    effects at zero) on the response scale, the interval the link-scale Wald interval
    transformed (so probabilities stay within 0 and 1).
    """
    waves = data.groupby("wave", observed=True)["time"].median().sort_index()
    t_end = config.program_end_time
    rows = []
    for arm in data["arm"].cat.categories:
        frame = pd.DataFrame({"wave": waves.index.to_numpy(), "time": waves.to_numpy()})
        frame["post_time"] = (np.maximum(frame["time"] - t_end, 0.0) if t_end is not None
                              else 0.0)
        frame["arm"] = pd.Categorical([arm] * len(frame), categories=data["arm"].cat.categories)
        frame["treated"] = int(arm != config.comparison_arm)
        pred = fit.predict(frame, re=False)
        rows.append(pd.DataFrame({
            "arm": arm, "time": frame["time"].to_numpy(),
            "estimate": np.asarray(pred["estimate"]), "ci_low": np.asarray(pred["ci_low"]),
            "ci_high": np.asarray(pred["ci_high"]),
        }))
    return pd.concat(rows, ignore_index=True)


# Plan kinds whose stored trajectory is not the default time grid of _trajectory.
TRAJECTORIES: dict[str, Callable[[Any, StudyConfig, pd.DataFrame], pd.DataFrame]] = {
    "glmm": _wave_trajectory,
}
