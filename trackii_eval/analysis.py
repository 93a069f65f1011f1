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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._yaml import load_yaml
from .config import Instrument, StudyConfig
from .errors import ConfigError, ModelError, warning_line
from .models.results import Comparison, ModelResult, compare, json_number, tidy_frame

if TYPE_CHECKING:
    from .pipeline.context import StudyContext

__all__ = ["PLAN_ANALYSES", "AnalysisPlan", "ModelResults", "ModelSpec", "default_plan", "fit_plan",
           "load_plan"]


#: The "change that matters" kinds of plan entry: computed from the scores (and the plan's
#: fitted models) by :data:`trackii_eval.models.plan_tables.ANALYSES` and stored as tables
#: with counts (see that module for each kind's columns).
PLAN_ANALYSES = ("durability", "reliable_change", "effect_sizes", "subgroups", "balance",
                 "attrition", "growth_comparison")


class ModelSpec(BaseModel):
    """One model (or "change that matters" analysis) of the plan.

    ``model``, ``models``, ``by``, ``covariates``, ``wave`` and ``threshold`` are options of
    the plan analyses (:data:`PLAN_ANALYSES`): ``model`` names the plan's growth model a
    ``durability`` or ``effect_sizes`` entry reads (model-implied gaps; Feingold's growth
    d), ``models`` the growth models a ``growth_comparison`` compares, ``by`` the groupings
    of ``reliable_change`` / ``subgroups``, ``covariates`` the baseline variables of
    ``balance`` / ``attrition`` (and of the doubly robust adjustment of a ``did`` model),
    ``wave`` the follow-up wave of ``subgroups`` / ``attrition`` and ``threshold`` the |SMD|
    that ``balance`` flags.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    kind: Literal["growth", "event_study", "did", "durability", "reliable_change",
                  "effect_sizes", "subgroups", "balance", "attrition", "growth_comparison", "glmm",
                  "clmm"]
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
    # kind clmm (item-level ordinal model of the outcome construct's items): link and
    # quadrature points (1 = Laplace); items default to those on a scale of at most 11 points
    link: Literal["logit", "probit"] = "logit"
    items: list[str] = Field(default_factory=list)
    model: str | None = None
    models: list[str] = Field(default_factory=list)
    by: list[str] = Field(default_factory=list)
    covariates: list[str] = Field(default_factory=list)
    wave: int | None = None
    threshold: float = Field(default=0.1, gt=0)

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> ModelSpec:
        # an option the kind does not read is a mistake the user should hear about
        uses = {"model": ("durability", "effect_sizes"), "models": ("growth_comparison",),
                "by": ("reliable_change", "subgroups"),
                "covariates": ("balance", "attrition", "did"),
                "wave": ("subgroups", "attrition"), "formula": ("growth", "glmm", "clmm"),
                "family": ("glmm",), "items": ("clmm",)}
        for option, kinds in uses.items():
            if getattr(self, option) not in (None, []) and self.kind not in kinds:
                raise ValueError(f"model '{self.name}': {option} is not an option of kind "
                                 f"{self.kind} (only of {', '.join(kinds)})")
        if self.kind == "growth_comparison" and len(self.models) < 2:
            raise ValueError(f"model '{self.name}': growth_comparison needs models: naming at "
                             "least two growth models of the plan")
        if self.kind == "reliable_change":
            bad = [b for b in self.by if b not in ("arm", "dialogue", "side")]
            if bad:
                raise ValueError(f"model '{self.name}': by {bad} must be arm, dialogue or side")
        return self


class AnalysisPlan(BaseModel):
    """The models an impact report is built from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> AnalysisPlan:
        specs = {m.name: m for m in self.models}
        if len(specs) != len(self.models):
            dup = sorted({m.name for m in self.models if
                          sum(o.name == m.name for o in self.models) > 1})
            raise ValueError(f"model names must be unique; repeated: {', '.join(dup)}")
        for m in self.models:
            for ref in ([m.model] if m.model else []) + list(m.models):
                target = specs.get(ref)
                if target is None or target.kind != "growth":
                    raise ValueError(f"model '{m.name}': '{ref}' is not a growth model of the "
                                     "plan")
                if target.outcome != m.outcome:
                    raise ValueError(f"model '{m.name}': growth model '{ref}' is of "
                                     f"{target.outcome}, not of {m.outcome}")
        return self


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
    """Growth, durability and event-study models of perceptions and relationships with their
    "change that matters" analyses (gaps at each follow-up, reliable change, effect sizes;
    for perceptions also subgroups, baseline balance, attrition and the growth-model
    comparison), and an event study of every behavioural outcome the instrument declares."""
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
        models.extend(_change_analyses(config, instrument, outcome))
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


def _change_analyses(config: StudyConfig, instrument: Instrument | None,
                     outcome: str) -> list[ModelSpec]:
    """The default plan's "change that matters" entries for one outcome (perceptions gets all;
    relationships the durability, reliable change and effect sizes)."""
    piecewise = config.program_end_wave is not None
    multi_item = instrument is None or len(instrument.constructs[outcome].items) > 1
    out = [ModelSpec(name=f"{outcome}_gaps", kind="durability", outcome=outcome,
                     label=f"Durability: the gap in {outcome} at each follow-up")]
    if multi_item:  # a reliability coefficient needs several items
        out.append(ModelSpec(name=f"{outcome}_reliable_change", kind="reliable_change",
                             outcome=outcome,
                             label=f"Reliable change in {outcome} (Jacobson-Truax)"))
    out.append(ModelSpec(name=f"{outcome}_effect_sizes", kind="effect_sizes", outcome=outcome,
                         model=f"{outcome}_durability" if piecewise else f"{outcome}_growth",
                         label=f"Effect sizes of {outcome}"))
    if outcome != "perceptions":
        return out
    out += [
        ModelSpec(name=f"{outcome}_subgroups", kind="subgroups", outcome=outcome,
                  label=f"For whom: the change in {outcome} by side and dialogue"),
        ModelSpec(name="baseline_balance", kind="balance", outcome=outcome,
                  label="Baseline balance between the arms"),
        ModelSpec(name=f"{outcome}_attrition", kind="attrition", outcome=outcome,
                  label=f"Attrition and its consequences for {outcome}"),
    ]
    # linear and piecewise differ only once a wave after the programme has been fielded
    after = piecewise and any(w.index > (config.program_end_wave or 0)
                              for w in config.fielded_waves)
    if after:
        out.append(ModelSpec(name=f"{outcome}_growth_comparison", kind="growth_comparison",
                             outcome=outcome,
                             models=[f"{outcome}_growth", f"{outcome}_durability"],
                             label=f"Which growth model of {outcome} the data support"))
    return out


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
    ``notes`` the one-line messages of library warnings raised while fitting each model;
    ``tables`` the tables of each "change that matters" analysis (:data:`PLAN_ANALYSES`).
    """

    fits: dict[str, ModelResult] = field(default_factory=dict)
    specs: dict[str, ModelSpec] = field(default_factory=dict)
    payloads: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    #: the tables of the plan's "change that matters" analyses, by entry name
    tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)

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
    # each participant's dialogue started ('cohort'; 0 for the comparison arm). fit_plan
    # derives it from the dialogues' start_wave in study.yaml (dialogue_cohorts).
    from .models.did import callaway_santanna

    if "cohort" not in data.columns:
        raise ModelError(f"model '{spec.name}' (kind did) needs a 'cohort' column: the first "
                         "wave of each participant's dialogue, 0 for the comparison arm "
                         "(the model stage derives it from each dialogue's start_wave in "
                         "study.yaml)")
    # covariates: doubly robust adjustment (Sant'Anna & Zhao 2020), R did's default
    return callaway_santanna(data, spec.outcome, entity="participant", time="wave",
                             cohort="cohort", control="notyet", covariates=spec.covariates)


def dialogue_cohorts(data: pd.DataFrame, config: StudyConfig, what: str = "did") -> pd.Series:
    """Each row's treatment cohort for staggered difference-in-differences.

    The cohort of a dialogue-arm participant is the ``start_wave`` of their dialogue in
    study.yaml (the first wave fielded after the dialogue began: Callaway and Sant'Anna's
    group g); comparison-arm participants are never treated (0).

    Parameters
    ----------
    data
        Wide scores (``treated``, ``dialogue``).
    config
        The study configuration.
    what
        The plan entry, for the message.

    Returns
    -------
    pandas.Series
        Integer cohorts aligned with ``data``.

    Raises
    ------
    ModelError
        A dialogue without ``start_wave`` (naming what to add to study.yaml), or dialogue-arm
        rows without a dialogue.
    """
    missing = [d.id for d in config.dialogues if d.start_wave is None]
    if missing:
        raise ModelError(
            f"model '{what}' (kind did) needs the wave each dialogue started: add start_wave: "
            f"<first wave fielded after the dialogue began> to dialogue(s) {', '.join(missing)} "
            "in study.yaml (or give the scores a 'cohort' column)")
    start = {d.id: d.start_wave for d in config.dialogues}
    treated = data["treated"] == 1
    cohort = data["dialogue"].map(start)
    orphan = treated & cohort.isna()
    if orphan.any():
        n = int(data.loc[orphan, "participant"].nunique())
        raise ModelError(f"model '{what}' (kind did): {n} dialogue-arm participant(s) have no "
                         "dialogue, so their start wave is unknown; fix their dialogue column")
    return cohort.where(treated, 0).astype(int)


def _fit_glmm(spec: ModelSpec, data: pd.DataFrame) -> ModelResult:
    from .models.glmm import glmm

    if not spec.formula or spec.family is None:
        raise ConfigError(f"model '{spec.name}': a glmm model needs a formula and a family "
                          "(binomial for yes/no outcomes, poisson for counts)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are kept on the fit and reported
        return glmm(spec.formula, data=data, family=spec.family, nAGQ=spec.nagq)


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
    "glmm": _fit_glmm,
    "clmm": _fit_clmm,
}


def _contrast(fit: ModelResult, label: str, weights: dict[str, float]) -> pd.DataFrame:
    """One contrast of the plan as a tidy row; a contrast whose terms the fit lacks (a term
    the data could not identify, e.g. ``post_time`` before any wave after the programme) is
    a row marked not estimable with the reason, never a crash nor a silent omission."""
    tab = fit.tidy()
    # a term kept as a not-estimable row (its reason in note) counts as missing too
    terms = set(tab.loc[tab["estimable"].astype(bool), "term"])
    missing = [t for t in weights if t not in terms]
    if not missing:
        return fit.lincom(weights, name=label)
    why = dict(zip(tab["term"], tab["note"], strict=True))
    reasons = sorted({why[t].removeprefix("not estimable: ") for t in missing if why.get(t)})
    return tidy_frame([label], [np.nan], [np.nan], [np.nan], 0.95, estimable=[False],
                      role=["effect"],
                      note=[f"not estimable: the fit has no term {', '.join(missing)}"
                            + (f" ({'; '.join(reasons)})" if reasons else "")])


def fit_plan(data: pd.DataFrame, ctx: StudyContext, plan: AnalysisPlan, *,
             reliability: pd.DataFrame | None = None,
             responses: pd.DataFrame | None = None) -> ModelResults:
    """Fit every model of ``plan`` to the wide scores ``data``; nothing is stored.

    Models (kinds growth, event_study, did) are fitted first, then the "change that matters"
    analyses (:data:`PLAN_ANALYSES`), which may read the fitted growth models; payloads keep
    the plan's order.

    Parameters
    ----------
    data
        Wide scores (participant x wave rows, a column per construct, ``time``, ``post_time``,
        ``treated``, categorical ``arm``), as :func:`trackii_eval.scoring.scores_wide` makes them.
    ctx
        The frozen study context (configuration and instrument).
    plan
        The models to fit.
    reliability
        The score stage's reliability table (``construct``, ``wave``, ``alpha`` ...); needed
        by ``reliable_change`` entries.
    responses
        Long item responses (:meth:`trackii_eval.store.Store.active_responses`); needed only
        by item-level models (kind ``clmm``).

    Returns
    -------
    ModelResults
        Live fits, specs and the JSON payloads the model stage
        (:func:`trackii_eval.pipeline.stages.model`) stores. A model's payload is
        ``{"spec", "fit", "notes"[, "contrasts", "trajectory"]}``; an analysis's is
        ``{"spec", "tables": {name: [record, ...]}, "notes"[, "fit"]}`` with the tables of
        :mod:`trackii_eval.models.plan_tables` (every record carries its counts).

    Raises
    ------
    ModelError
        An outcome is not a construct of the instrument, or a model cannot be fitted, or no
        participant has an arm, or a ``did`` model's dialogues have no ``start_wave``.
    """
    from .ingest.attributes import require_arms
    from .models.plan_tables import ANALYSES, PlanInputs

    require_arms(data, ctx.config)
    results = ModelResults()
    for spec in plan.models:
        if spec.outcome not in data.columns:
            raise ModelError(
                f"model '{spec.name}': outcome '{spec.outcome}' is not a construct of the "
                f"instrument (constructs: {', '.join(ctx.instrument.constructs)})"
            )
    payloads: dict[str, tuple[str, dict[str, Any]]] = {}
    for spec in plan.models:
        if spec.kind in PLAN_ANALYSES:
            continue
        frame = data
        if spec.kind == "clmm":
            if responses is None:
                raise ModelError(f"model '{spec.name}' (kind clmm) is fitted to the item "
                                 "responses; pass responses=store.active_responses()")
            frame = item_responses(spec, responses, data, ctx)
        if spec.kind == "did" and "cohort" not in data.columns:
            frame = data.assign(cohort=dialogue_cohorts(data, ctx.config, spec.name))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = FITTERS[spec.kind](spec, frame)
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
            trajectory = TRAJECTORIES.get(spec.kind, _trajectory)
            payload["trajectory"] = trajectory(fit, ctx.config, data).to_dict(orient="records")
        payloads[spec.name] = (spec.kind, payload)
    inputs = PlanInputs(config=ctx.config, instrument=ctx.instrument, reliability=reliability,
                        fits=results.fits, labels={m.name: m.label for m in plan.models})
    for spec in plan.models:
        if spec.kind not in PLAN_ANALYSES:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = ANALYSES[spec.kind](spec, data, inputs)
        notes = list(dict.fromkeys([*out.notes, *(
            warning_line(w.message, w.category) for w in caught)]))
        results.specs[spec.name] = spec
        results.notes[spec.name] = notes
        results.tables[spec.name] = out.tables
        payload = {"spec": spec.model_dump(),
                   "tables": {k: _json_rows(t) for k, t in out.tables.items()},
                   "notes": notes}
        if out.fit is not None:
            payload["fit"] = out.fit.to_dict()
        payloads[spec.name] = (spec.kind, payload)
    results.payloads = {m.name: payloads[m.name] for m in plan.models}
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
