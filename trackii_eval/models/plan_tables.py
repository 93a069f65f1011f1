"""The "change that matters" analyses of an analysis plan, as stored tables with counts.

Each function computes one plan entry (``ModelSpec.kind`` ``durability``,
``reliable_change``, ``effect_sizes``, ``subgroups``, ``balance``, ``attrition``,
``growth_comparison``) from the wide scores (and, where needed, the reliability table and
the plan's fitted growth models) and returns :class:`PlanTables`: named tables whose records
carry the counts of the people they describe, so that the report can register every number
with disclosure control. The column names are the shared contract of the model stage
(``/work/wt/prompts/contract.md``; documented on each function); extra columns may follow.

The statistics themselves live in :mod:`trackii_eval.models.change`,
:mod:`~trackii_eval.models.effects` and :mod:`~trackii_eval.models.attrition`; this module
only lays their results out per wave, arm and group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import ModelError
from .effects import baseline_wave, paired_change

if TYPE_CHECKING:
    from ..analysis import ModelSpec
    from ..config import Instrument, StudyConfig
    from .results import ModelResult

__all__ = ["ANALYSES", "PlanInputs", "PlanTables"]


@dataclass
class PlanInputs:
    """What a plan analysis may read besides the wide scores.

    Attributes
    ----------
    config, instrument
        The study configuration and instrument.
    reliability
        The score stage's reliability table (``construct``, ``wave``, ``alpha``,
        ``omega_total``), or None when the caller has none.
    fits
        The plan's fitted models so far, by name (growth fits for ``model:``/``models:``).
    labels
        The plan's model labels, by name.
    """

    config: StudyConfig
    instrument: Instrument
    reliability: pd.DataFrame | None = None
    fits: Mapping[str, ModelResult] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class PlanTables:
    """One plan analysis: named tables (records with counts), notes, and a protocol fit
    where the analysis has one (durability, subgroups)."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    fit: Any = None


# ----------------------------------------------------------------------------- helpers
def _end_wave(config: StudyConfig, data: pd.DataFrame) -> int:
    """The end of the programme: ``program_end_wave``, else the first wave after baseline."""
    base = baseline_wave(data, None)
    later = sorted(int(w) for w in data["wave"].unique() if w > base)
    if not later:
        raise ModelError("the scores have no wave after the baseline; change from baseline "
                         "needs at least two fielded waves")
    end = config.program_end_wave
    if end is None:
        return later[0]
    if end not in later:
        raise ModelError(f"program_end_wave {end} has no scores after baseline wave {base} yet")
    return int(end)


def _later_waves(data: pd.DataFrame) -> list[int]:
    base = baseline_wave(data, None)
    return sorted(int(w) for w in data["wave"].unique() if w > base)


def _wave_labels(config: StudyConfig) -> dict[int, str]:
    return {w.index: w.label for w in config.waves}


def _arm_ids(config: StudyConfig) -> tuple[str, str]:
    if config.comparison_arm is None:
        raise ModelError("these analyses compare the dialogue arm with the comparison arm; "
                         "study.yaml declares no arm with comparison: true")
    return config.treated_arm, config.comparison_arm


def _scored(data: pd.DataFrame, outcome: str, wave: int, treated: int) -> int:
    at = data[(data["wave"] == wave) & (data["treated"] == treated)]
    return int(at.loc[at[outcome].notna(), "participant"].nunique())


def _paired_n(data: pd.DataFrame, outcome: str, base: int, wave: int) -> tuple[int, int]:
    pairs = paired_change(data, outcome, base, wave, keep=["treated"])
    return int((pairs["treated"] == 1).sum()), int((pairs["treated"] == 0).sum())


# ----------------------------------------------------------------------------- durability
def durability_tables(spec: ModelSpec, data: pd.DataFrame, inputs: PlanInputs) -> PlanTables:
    """Gaps between the arms at every wave after baseline and the share that persists.

    Without ``model:`` the gaps are the model-free per-wave difference-in-differences of
    :func:`trackii_eval.models.change.durability` (mean change from baseline, dialogue minus
    comparison, among people scored at baseline and at the wave; participant-clustered CR1
    errors); with ``model:`` naming a piecewise growth model of the plan they are that
    model's implied gaps (:func:`~trackii_eval.models.change.durability_from_growth`).

    Tables
    ------
    ``gaps``: wave, label, time, estimate, se, ci_low, ci_high, n_treated, n_comparison,
    estimable, note. ``persistence``: wave, label, estimate, ci_low, ci_high, n_treated,
    n_comparison, estimable, note. Counts: people scored at baseline and at the wave
    (model-free) or scored at the wave (growth model), per arm.
    """
    from .change import durability, durability_from_growth

    config = inputs.config
    treated, _ = _arm_ids(config)
    end = _end_wave(config, data)
    base = baseline_wave(data, None)
    times = config.wave_time()
    labels = _wave_labels(config)
    if spec.model is not None:
        fit = _growth_fit(spec, inputs, spec.model)
        present = {int(w) for w in data["wave"].unique()}
        res = durability_from_growth(
            fit, {w: t for w, t in times.items() if w in present}, end,
            during_term=f"time:arm[T.{treated}]", after_term=f"post_time:arm[T.{treated}]")

        def counts(w: int) -> tuple[int, int]:
            return _scored(data, spec.outcome, w, 1), _scored(data, spec.outcome, w, 0)
        source = f"model-implied by the growth model '{spec.model}'"
    else:
        res = durability(data, spec.outcome, end_wave=end)

        def counts(w: int) -> tuple[int, int]:
            return _paired_n(data, spec.outcome, base, w)
        source = "difference in mean change from baseline per wave (model-free)"
    tab = res.tidy().set_index("term")
    gaps, persist = [], []
    for w in _later_waves(data):
        n1, n0 = counts(w)
        row = tab.loc[f"gap wave {w}"]
        gaps.append({"wave": w, "label": labels.get(w, str(w)), "time": times.get(w),
                     "estimate": row["estimate"], "se": row["std_error"],
                     "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n_treated": n1,
                     "n_comparison": n0, "estimable": bool(row["estimable"]),
                     "note": row["note"]})
        share = f"persisting share wave {w}"
        if share in tab.index:
            row = tab.loc[share]
            persist.append({"wave": w, "label": labels.get(w, str(w)),
                            "estimate": row["estimate"], "ci_low": row["ci_low"],
                            "ci_high": row["ci_high"], "n_treated": n1, "n_comparison": n0,
                            "estimable": bool(row["estimable"]), "note": row["note"]})
    notes = [f"gaps: {source}; end of the programme: wave {end}", *res.warnings]
    return PlanTables({"gaps": pd.DataFrame(gaps), "persistence": pd.DataFrame(
        persist, columns=["wave", "label", "estimate", "ci_low", "ci_high", "n_treated",
                          "n_comparison", "estimable", "note"])}, notes, res)


def _growth_fit(spec: ModelSpec, inputs: PlanInputs, name: str) -> Any:
    fit = inputs.fits.get(name)
    if fit is None or not callable(getattr(fit, "lincom", None)) or not hasattr(fit, "vcov"):
        raise ModelError(f"plan entry '{spec.name}': '{name}' is not a fitted growth model of "
                         "the plan")
    return fit


# ----------------------------------------------------------------------------- reliable change
def reliable_change_tables(spec: ModelSpec, data: pd.DataFrame,
                           inputs: PlanInputs) -> PlanTables:
    """Jacobson-Truax reliable change from baseline to every later wave, counted per group.

    RCI = change / (sqrt(2) SD_baseline sqrt(1 - alpha_baseline)) per participant scored at
    baseline and at the wave (:func:`trackii_eval.models.change.reliable_change`); |RCI| >
    1.96 is reliable. Higher scores are taken as better (items are keyed that way).

    Tables
    ------
    ``shares``: by ('arm' | 'dialogue' | 'side'), group, arm, wave, n, n_improved,
    n_unchanged, n_worsened, share_improved, share_unchanged, share_worsened, reliability,
    rci_cutoff (the |RCI| criterion, 1.96), min_change (the change in score points that is
    reliable: rci_cutoff x S_diff). ``dialogue`` rows are the dialogue arm's dialogues;
    ``side`` rows are per arm and side.
    """
    from .change import reliable_change

    if inputs.reliability is None or inputs.reliability.empty:
        raise ModelError(f"plan entry '{spec.name}' (reliable_change) needs the score stage's "
                         "reliability table; run `trackii-eval score` first")
    treated, _ = _arm_ids(inputs.config)
    groupings = list(spec.by) or ["arm", "dialogue", "side"]
    rows = []
    for w in _later_waves(data):
        rc = reliable_change(data, spec.outcome, inputs.reliability, wave=w)
        rc["arm"] = rc["arm"].astype(str)
        for by in groupings:
            if by == "arm":
                groups = [(arm, arm, g) for arm, g in rc.groupby("arm", sort=True)]
            elif by == "dialogue":
                sub = rc[rc["arm"] == treated]
                groups = [(treated, str(d), g) for d, g in sub.groupby("dialogue", sort=True)]
            else:
                if by not in rc.columns:
                    raise ModelError(f"plan entry '{spec.name}': by '{by}' is not a column of "
                                     "the scores (arm, dialogue, side)")
                groups = [(arm, str(v), g)
                          for (arm, v), g in rc.groupby(["arm", by], sort=True)]
            for arm, group, g in groups:
                k = g["category"].value_counts()
                n = len(g)
                counts = {c: int(k.get(c, 0)) for c in ("improved", "unchanged", "worsened")}
                rows.append({
                    "by": by, "group": group, "arm": arm, "wave": w, "n": n,
                    **{f"n_{c}": v for c, v in counts.items()},
                    **{f"share_{c}": v / n for c, v in counts.items()},
                    "reliability": float(rc["reliability"].iloc[0]),
                    "rci_cutoff": float(rc["criterion"].iloc[0]),
                    "min_change": float(rc["criterion"].iloc[0] * rc["s_diff"].iloc[0]),
                })
    base = baseline_wave(data, None)
    return PlanTables({"shares": pd.DataFrame(rows)}, [
        f"Jacobson-Truax reliable change from wave {base} with Cronbach's alpha at wave "
        f"{base}; |RCI| > 1.96 counts as reliable; higher scores are better"])


# ----------------------------------------------------------------------------- effect sizes
def effect_size_tables(spec: ModelSpec, data: pd.DataFrame, inputs: PlanInputs) -> PlanTables:
    """Hedges' g between the arms per wave, d_z within person per arm and later wave, and
    Feingold's standardized growth effect of the growth model named by ``model:``.

    Tables
    ------
    ``effects``: measure ('hedges_g' | 'd_z' | 'growth_d'), wave, group, estimate, ci_low,
    ci_high, n, n_treated, n_comparison, note. ``group`` is '<treated> vs <comparison>' for
    g and growth_d and the arm for d_z; ``n`` counts the people behind the row (both arms
    for g; the growth model's participants for growth_d).
    """
    from .effects import dz_within, growth_effect_size, hedges_g_by_wave, pooled_baseline_sd

    config = inputs.config
    treated, comparison = _arm_ids(config)
    versus = f"{treated} vs {comparison}"
    rows = []
    for r in hedges_g_by_wave(data, spec.outcome).to_dict("records"):
        rows.append({"measure": "hedges_g", "wave": r["wave"], "group": versus,
                     "estimate": r["g"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "n": r["n_dialogue"] + r["n_comparison"], "n_treated": r["n_dialogue"],
                     "n_comparison": r["n_comparison"], "note": r["note"]})
    base = baseline_wave(data, None)
    for w in _later_waves(data):
        for r in dz_within(data, spec.outcome, base, w, by="treated").to_dict("records"):
            arm = treated if r["treated"] == 1 else comparison
            rows.append({"measure": "d_z", "wave": w, "group": arm, "estimate": r["dz"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"],
                         "n_treated": r["n"] if r["treated"] == 1 else 0,
                         "n_comparison": r["n"] if r["treated"] == 0 else 0,
                         "note": r["note"] or f"change from wave {base}"})
    notes = []
    if spec.model is not None:
        fit = _growth_fit(spec, inputs, spec.model)
        end = _end_wave(config, data)
        duration = config.wave_time()[end] - config.wave_time()[base]
        tab = growth_effect_size(fit, f"time:arm[T.{treated}]", duration,
                                 pooled_baseline_sd(data, spec.outcome))
        r = tab.iloc[0]
        n_part = fit.record.n_groups.get("participant")
        people = data[data[spec.outcome].notna()].drop_duplicates("participant")
        rows.append({"measure": "growth_d", "wave": end, "group": versus, "estimate": r["d"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "n": int(n_part) if n_part is not None else len(people),
                     "n_treated": int((people["treated"] == 1).sum()),
                     "n_comparison": int((people["treated"] == 0).sum()),
                     "note": f"Feingold (2009): slope difference x {duration:.2f} years / "
                             f"pooled baseline SD, from '{spec.model}'"})
    else:
        notes.append("no growth_d: name the plan's growth model with model: to add "
                     "Feingold's standardized growth effect")
    return PlanTables({"effects": pd.DataFrame(rows)}, notes)


# ----------------------------------------------------------------------------- subgroups
def subgroup_tables(spec: ModelSpec, data: pd.DataFrame, inputs: PlanInputs) -> PlanTables:
    """Arm differences in change from baseline by side, dialogue (or ``by:``) at ``wave:``
    (default the end of the programme), with Holm and Benjamini-Hochberg adjusted p
    (:func:`trackii_eval.models.effects.subgroup_effects`).

    Tables
    ------
    ``effects``: moderator, level, estimate, se, ci_low, ci_high, p, p_holm, p_bh, n,
    n_treated, n_comparison, estimable, note -- the rows of a forest plot.
    """
    from .effects import subgroup_effects

    wave = spec.wave if spec.wave is not None else _end_wave(inputs.config, data)
    by = list(spec.by) or [c for c in ("side", "dialogue") if c in data.columns]
    res = subgroup_effects(data, spec.outcome, wave, by=by)
    tab = res.tidy()
    rows = [{"moderator": r["variable"], "level": r["level"], "estimate": r["estimate"],
             "se": r["std_error"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
             "p": r["p_value"], "p_holm": r["p_holm"], "p_bh": r["p_bh"],
             "n": int(r["n_dialogue"] + r["n_comparison"]), "n_treated": int(r["n_dialogue"]),
             "n_comparison": int(r["n_comparison"]), "estimable": bool(r["estimable"]),
             "note": r["note"]} for r in tab.to_dict("records")]
    base = baseline_wave(data, None)
    return PlanTables({"effects": pd.DataFrame(rows)}, [
        f"change from wave {base} to wave {wave}; Welch intervals; p adjusted over all "
        f"{len(rows)} subgroups"], res)


# ----------------------------------------------------------------------------- balance
def _default_covariates(spec: ModelSpec, data: pd.DataFrame, inputs: PlanInputs) -> list[str]:
    """The outcome, every other construct scored at baseline in both arms, and side."""
    base = data[data["wave"] == baseline_wave(data, None)]
    names = [spec.outcome] + [c for c in inputs.instrument.constructs if c != spec.outcome]
    keep = []
    for c in names:
        if c in base.columns and all(base.loc[base["treated"] == t, c].notna().sum() >= 2
                                     for t in (0, 1)):
            keep.append(c)
    return keep + (["side"] if "side" in data.columns else [])


def balance_tables(spec: ModelSpec, data: pd.DataFrame, inputs: PlanInputs) -> PlanTables:
    """Baseline balance between the arms: standardized mean differences
    (:func:`trackii_eval.models.attrition.balance_table`), flagged above ``threshold:``.

    Tables
    ------
    ``balance``: variable, label, level, type, mean_treated, mean_comparison, sd_treated,
    sd_comparison, smd, n_treated, n_comparison, flagged. A categorical covariate has a row
    per level (means are shares).
    """
    from .attrition import balance_table

    covs = list(spec.covariates) or _default_covariates(spec, data, inputs)
    tab = balance_table(data, covs, threshold=spec.threshold)
    cons = inputs.instrument.constructs
    rows = []
    for r in tab.to_dict("records"):
        var = r["variable"]
        label = (cons[var].label or var) if var in cons else var
        rows.append({"variable": var, "label": f"{label}: {r['level']}" if r["level"] else label,
                     "level": r["level"], "type": r["type"],
                     "mean_treated": r["mean_dialogue"], "mean_comparison": r["mean_comparison"],
                     "sd_treated": r["sd_dialogue"], "sd_comparison": r["sd_comparison"],
                     "smd": r["smd"], "n_treated": r["n_dialogue"],
                     "n_comparison": r["n_comparison"], "flagged": bool(r["imbalanced"])})
    return PlanTables({"balance": pd.DataFrame(rows)}, [
        f"standardized mean differences at baseline (Austin 2009); |SMD| > {spec.threshold} "
        "is flagged"])


# ----------------------------------------------------------------------------- attrition
def attrition_tables(spec: ModelSpec, data: pd.DataFrame, inputs: PlanInputs) -> PlanTables:
    """Dropout by wave and arm, and the arm difference at the end of the programme and the
    last follow-up (or at ``wave:``) under three treatments of missing follow-ups: complete
    cases, inverse-probability weights and multiple imputation
    (:mod:`trackii_eval.models.attrition`).

    Tables
    ------
    ``dropout``: wave, arm, n_baseline, n_observed (scored at baseline and at the wave),
    n_scored (scored at the wave), retention. ``sensitivity``: method ('complete cases' |
    'inverse probability weights' | 'multiple imputation'), estimand ('change score' |
    'ANCOVA'), wave, estimate, se, ci_low, ci_high, n, n_imputed. The complete-case and IPW
    rows estimate the difference in mean change; multiple imputation fits ANCOVA
    (follow-up on baseline), so its complete-case ANCOVA row is given beside it: compare
    rows of the same estimand.
    """
    from .attrition import dropout_by_wave, ipw_sensitivity, mice_sensitivity

    treated, comparison = _arm_ids(inputs.config)
    arm_id = {"dialogue": treated, "comparison": comparison}
    drop = dropout_by_wave(data, spec.outcome)
    dropout = [{"wave": r["wave"], "arm": arm_id[r["arm"]], "n_baseline": r["n_baseline"],
                "n_observed": r["n_retained"], "n_scored": r["n_scored"],
                "retention": r["retention"]} for r in drop.to_dict("records")]
    preds = list(spec.covariates) or [spec.outcome] + (["side"] if "side" in data.columns
                                                       else [])
    # the end of the programme and the last follow-up (where attrition is worst): multiple
    # imputation costs about 2 s of CPU a wave on the demo, so not every wave by default
    later = _later_waves(data)
    waves = ([spec.wave] if spec.wave is not None
             else sorted({_end_wave(inputs.config, data), later[-1]}))
    rows = []
    notes = [f"dropout model and imputation predictors: {', '.join(preds)} at baseline and arm"]
    for w in waves:
        ipw = ipw_sensitivity(data, spec.outcome, w, predictors=preds)
        for r in ipw.to_dict("records"):
            method = ("complete cases" if r["analysis"] == "complete cases"
                      else "inverse probability weights")
            rows.append({"method": method, "estimand": "change score", "wave": w,
                         "estimate": r["estimate"], "se": r["std_error"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"],
                         "n_imputed": 0})
        mi = mice_sensitivity(data, spec.outcome, w, predictors=preds, seed=w)
        for r in mi.to_dict("records"):
            method = ("complete cases" if r["analysis"].startswith("complete")
                      else "multiple imputation")
            rows.append({"method": method, "estimand": "ANCOVA", "wave": w,
                         "estimate": r["estimate"], "se": r["std_error"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"],
                         "n_imputed": r["n_imputed"]})
    return PlanTables({"dropout": pd.DataFrame(dropout), "sensitivity": pd.DataFrame(rows)},
                      notes)


# ----------------------------------------------------------------------------- growth models
def growth_comparison_tables(spec: ModelSpec, data: pd.DataFrame,
                             inputs: PlanInputs) -> PlanTables:
    """Which growth model the data support: likelihood-ratio tests on ML refits, AIC and BIC
    of the plan's growth models named by ``models:``
    (:func:`trackii_eval.models.growth.compare_growth`, as lme4's ``anova``).

    Tables
    ------
    ``comparison``: model, label, formula, n_params, loglik, aic, bic, chisq, df, p,
    delta_aic, delta_bic, n (participants), n_obs.
    """
    from .growth import compare_growth

    fits = {name: _growth_fit(spec, inputs, name) for name in spec.models}
    try:
        tab = compare_growth(fits)
    except ModelError as exc:
        raise ModelError(f"plan entry '{spec.name}' (growth_comparison): {exc}") from None
    rows = []
    for name, r in tab.iterrows():
        fit = fits[str(name)]
        rows.append({"model": str(name), "label": inputs.labels.get(str(name), ""),
                     "formula": r["formula"], "n_params": int(r["npar"]),
                     "loglik": r["loglik"], "aic": r["aic"], "bic": r["bic"],
                     "chisq": r["chisq"], "df": r["df"], "p": r["p_value"],
                     "delta_aic": r["delta_aic"], "delta_bic": r["delta_bic"],
                     "n": fit.record.n_groups.get("participant"), "n_obs": fit.record.n_obs})
    prefer = tab.attrs.get("prefer", {})
    notes = [*tab.attrs.get("notes", []),
             *(f"preferred by {k.upper()}: {v}" for k, v in prefer.items() if v)]
    return PlanTables({"comparison": pd.DataFrame(rows)}, notes)


#: How each "change that matters" kind of plan entry is computed.
ANALYSES: dict[str, Callable[[ModelSpec, pd.DataFrame, PlanInputs], PlanTables]] = {
    "durability": durability_tables,
    "reliable_change": reliable_change_tables,
    "effect_sizes": effect_size_tables,
    "subgroups": subgroup_tables,
    "balance": balance_tables,
    "attrition": attrition_tables,
    "growth_comparison": growth_comparison_tables,
}

