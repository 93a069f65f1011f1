"""Analysis plans: which models, on which outcomes; fitted from the scores, stored as results.

A plan lives in ``analysis/<study>.yaml`` (or is the default built from the study design). Each
model has a name, a kind and its specification; results are stored in the study store as JSON so
that reports read them and never refit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._yaml import format_loc, line_of, load_yaml
from .config import Instrument, StudyConfig
from .errors import ConfigError, ModelError

if TYPE_CHECKING:
    from .study import Study

__all__ = ["AnalysisPlan", "ModelResults", "ModelSpec", "default_plan", "fit_plan", "load_plan"]


class ModelSpec(BaseModel):
    """One model of the plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    kind: Literal["growth", "event_study"]
    outcome: str
    formula: str | None = None
    reml: bool = True
    label: str = ""
    headline: bool = False


class AnalysisPlan(BaseModel):
    """The models an impact report is built from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)


def load_plan(path: str | Path) -> AnalysisPlan:
    """Load an analysis plan YAML, with file:line errors."""
    path = Path(path)
    data, lines = load_yaml(path)
    try:
        return AnalysisPlan.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msgs.append(f"{path}:{line_of(lines, loc) or 1}: {format_loc(loc)}: {err['msg']}")
        raise ConfigError("\n".join(msgs)) from None


def default_plan(config: StudyConfig, instrument: Instrument | None = None) -> AnalysisPlan:
    """Growth, durability and event-study models of perceptions and relationships, and an
    event study of every behavioural outcome the instrument declares."""
    models = []
    for outcome in ("perceptions", "relationships"):
        models.append(ModelSpec(
            name=f"{outcome}_growth", kind="growth", outcome=outcome,
            formula=f"{outcome} ~ time * arm + (time | participant)",
            label=f"Linear growth of {outcome}",
        ))
        if config.program_end_wave is not None:
            models.append(ModelSpec(
                name=f"{outcome}_durability", kind="growth", outcome=outcome,
                formula=f"{outcome} ~ (time + post_time) * arm + (time | participant)",
                label=f"Piecewise growth of {outcome}: during and after the programme",
                headline=outcome == "perceptions",
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
    return AnalysisPlan(models=models)


@dataclass
class ModelResults:
    """The fitted models of a plan, by name (live objects; the store keeps their JSON)."""

    fits: dict[str, Any] = field(default_factory=dict)
    specs: dict[str, ModelSpec] = field(default_factory=dict)

    def summary(self) -> str:
        """Text for people."""
        return "\n\n".join(f"== {name} ==\n{fit.summary()}" for name, fit in self.fits.items())


def fit_plan(study: Study, plan: AnalysisPlan) -> ModelResults:
    """Fit every model of ``plan`` to the study's scores and store the results."""
    from .ingest.attributes import require_arms
    from .models.growth import growth
    from .models.panel import event_study

    data = study.scores()
    require_arms(data, study.config)
    results = ModelResults()
    for spec in plan.models:
        if spec.outcome not in data.columns:
            raise ModelError(
                f"model '{spec.name}': outcome '{spec.outcome}' is not a construct of the "
                f"instrument (constructs: {', '.join(study.instrument.constructs)})"
            )
        if spec.kind == "growth":
            if not spec.formula:
                raise ConfigError(f"model '{spec.name}': a growth model needs a formula")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # warnings are kept on the fit and reported
                fit = growth(spec.formula, data=data, reml=spec.reml)
        else:
            fit = event_study(data, spec.outcome)
        results.fits[spec.name] = fit
        results.specs[spec.name] = spec
        payload: dict[str, Any] = {"spec": spec.model_dump(), "fit": fit.to_dict()}
        if spec.kind == "growth":
            payload["trajectory"] = _trajectory(fit, study.config, data).to_dict(orient="records")
        study.store.put_result(spec.name, spec.kind, payload)
    return results


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
