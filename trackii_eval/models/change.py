"""Change that matters to people: reliable change per participant and durability of the gain.

* :func:`reliable_change` -- the Jacobson & Truax (1991) reliable change index per participant,
  RCI = (x_wave - x_baseline) / S_diff with S_diff = sqrt(2) * SD_baseline * sqrt(1 - r_xx),
  SD_baseline the standard deviation of everyone's baseline score and r_xx the construct's
  baseline reliability (Cronbach's alpha, or omega) from the scoring stage.
* :func:`reliable_change_shares` -- the shares reliably improved / unchanged / worsened per arm,
  dialogue and side, with Wilson intervals.
* :func:`change_tables` -- all of the above with the effect sizes, subgroup effects and
  attrition tables of ``models.effects`` and ``models.attrition`` for one construct.
* :func:`durability` -- the gap between the arms in change from baseline at the end of the
  programme and at each follow-up, with cluster-robust CIs, and the share of the
  end-of-programme gap that persists (delta method).
* :func:`durability_from_growth` -- the same quantities implied by the piecewise growth model
  (``y ~ (time + post_time) * arm + (time | participant)``).

Input is the wide score table of :meth:`trackii_eval.Study.scores`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import ModelError
from .effects import (
    EffectTable,
    SubgroupEffects,
    baseline_wave,
    dz_within,
    hedges_g_by_wave,
    make_record,
    paired_change,
    require_columns,
    subgroup_effects,
)
from .results import register_result

__all__ = [
    "ChangeTables",
    "DurabilityResult",
    "change_tables",
    "durability",
    "durability_from_growth",
    "reliable_change",
    "reliable_change_shares",
]

#: The three categories of :func:`reliable_change`, in report order.
CATEGORIES = ("improved", "unchanged", "worsened")


def reliable_change(scores: pd.DataFrame, construct: str, reliability: pd.DataFrame | float,
                    *, wave: int | None = None, baseline: int | None = None,
                    coefficient: str = "alpha", higher_is_better: bool = True,
                    level: float = 0.95,
                    keep: Sequence[str] = ("treated", "arm", "dialogue", "side"),
                    ) -> pd.DataFrame:
    """Jacobson-Truax reliable change index per participant.

    Parameters
    ----------
    scores : DataFrame
        Wide scores (``participant``, ``wave``, ``construct``).
    construct : str
        Score column.
    reliability : DataFrame or float
        The reliability table of :meth:`trackii_eval.Study.reliability` (``construct``,
        ``wave``, ``coefficient``), from which the baseline wave's value is taken, or the
        reliability itself.
    wave : int, optional
        The wave compared with baseline (default: the first wave after baseline, the end of
        the programme).
    baseline : int, optional
        Baseline wave (default the first).
    coefficient : {"alpha", "omega_total"}
        Which reliability coefficient to use.
    higher_is_better : bool
        Direction of improvement (False for, e.g., perceived threat).
    level : float
        Two-sided level of the RCI criterion (0.95 -> |RCI| > 1.96).
    keep : sequence of str
        Participant-level columns carried over (those present).

    Returns
    -------
    DataFrame
        One row per participant scored at both waves (pseudonymous keys: for analysis, not
        for publication -- publish :func:`reliable_change_shares`): ``participant``,
        ``keep`` columns, ``baseline``, ``followup``, ``change``, ``rci``, ``category``
        (improved / unchanged / worsened), and the constants used: ``sd_baseline``,
        ``reliability``, ``s_diff``, ``criterion``.

    Raises
    ------
    ModelError
        Missing columns; no reliability for the construct at the baseline wave (e.g. a
        single-item or raw-count construct: give ``reliability`` as a number from a
        test-retest study); a reliability outside (0, 1); fewer than 2 baseline scores.

    References
    ----------
    Jacobson, N. S. and Truax, P. (1991). Clinical significance: a statistical approach to
    defining meaningful change in psychotherapy research. Journal of Consulting and Clinical
    Psychology 59(1), 12-19.
    """
    require_columns(scores, ["participant", "wave", construct], "reliable_change")
    if not 0 < level < 1:
        raise ModelError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    base = baseline_wave(scores, baseline)
    if wave is None:
        later = sorted(w for w in scores["wave"].unique() if w > base)
        if not later:
            raise ModelError("reliable_change: the data have no wave after the baseline")
        wave = int(later[0])
    r = _baseline_reliability(reliability, construct, base, coefficient)
    at_base = scores.loc[scores["wave"] == base, construct].dropna()
    if len(at_base) < 2:
        raise ModelError(f"reliable_change: fewer than 2 baseline scores of {construct}")
    sd = float(at_base.std(ddof=1))
    s_diff = math.sqrt(2) * sd * math.sqrt(1 - r)
    crit = float(sps.norm.ppf(0.5 + level / 2))
    present = [c for c in keep if c in scores.columns]
    out = paired_change(scores, construct, base, int(wave), keep=present)
    out["rci"] = out["change"] / s_diff
    signed = out["rci"] if higher_is_better else -out["rci"]
    out["category"] = pd.Categorical(
        np.select([signed > crit, signed < -crit], ["improved", "worsened"], "unchanged"),
        categories=list(CATEGORIES))
    out["sd_baseline"] = sd
    out["reliability"] = r
    out["s_diff"] = s_diff
    out["criterion"] = crit
    out.attrs.update(construct=construct, baseline=base, wave=int(wave), coefficient=coefficient)
    return out


def _baseline_reliability(reliability: pd.DataFrame | float, construct: str, base: int,
                          coefficient: str) -> float:
    if isinstance(reliability, pd.DataFrame):
        need = {"construct", "wave", coefficient}
        if not need <= set(reliability.columns):
            raise ModelError(f"reliable_change: the reliability table needs columns "
                             f"{', '.join(sorted(need))}")
        hit = reliability[(reliability["construct"] == construct)
                          & (reliability["wave"] == base)]
        if hit.empty or not np.isfinite(hit[coefficient].iloc[0]):
            raise ModelError(
                f"reliable_change: no {coefficient} for construct {construct!r} at baseline "
                f"wave {base} (single-item or unscored at baseline?); pass reliability= a "
                "number from a test-retest study, or choose another construct")
        r = float(hit[coefficient].iloc[0])
    else:
        r = float(reliability)
    if not 0 < r < 1:
        raise ModelError(f"reliable_change: reliability must be in (0, 1), got {r:.3f}; an "
                         "RCI needs measurement error (r < 1) and a reliable measure (r > 0)")
    return r


def reliable_change_shares(rc: pd.DataFrame, by: Sequence[str] = ("arm",), *,
                           level: float = 0.95) -> pd.DataFrame:
    """Shares reliably improved, unchanged and worsened per group, with Wilson intervals.

    Parameters
    ----------
    rc : DataFrame
        Output of :func:`reliable_change`.
    by : sequence of str
        Grouping columns (``arm``, ``dialogue``, ``side`` ...); ``()`` for everyone.
    level : float
        Level of the Wilson score intervals
        (``statsmodels.stats.proportion.proportion_confint(method="wilson")``).

    Returns
    -------
    DataFrame
        One row per group and category: the ``by`` columns, ``category``, ``count``, ``n``,
        ``share``, ``ci_low``, ``ci_high``. Groups with a missing ``by`` value (the
        comparison arm has no dialogue) are kept as ``"(none)"``.
    """
    from statsmodels.stats.proportion import proportion_confint

    require_columns(rc, ["category", *by], "reliable_change_shares")
    frame = rc.copy()
    for col in by:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "(none)").astype(str)
    groups = frame.groupby(list(by), sort=True) if by else [((), frame)]
    rows = []
    for key, grp in groups:
        key = key if isinstance(key, tuple) else (key,)
        n = len(grp)
        for cat in CATEGORIES:
            k = int((grp["category"] == cat).sum())
            lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
            rows.append({**dict(zip(by, key, strict=True)), "category": cat, "count": k,
                         "n": n, "share": k / n, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- durability
@register_result
class DurabilityResult(EffectTable):
    """Gaps between the arms in change from baseline, and the share of the gain that persists.

    Terms ``gap wave w`` (score units) and ``persisting share wave w`` (gap at w divided by
    the gap at the end of the programme; 1 = all of the gain persists).
    """

    kind = "durability"  # type: ignore[misc]


def durability(scores: pd.DataFrame, construct: str, *, end_wave: int | None = None,
               baseline: int | None = None, level: float = 0.95) -> DurabilityResult:
    """Gap remaining at each follow-up and the share of the end-of-programme gain that persists.

    The gap at wave w is the difference between the arms in mean change from baseline among
    participants scored at baseline and at w, estimated jointly for all waves by least squares
    of ``change ~ 0 + C(wave) + C(wave):treated`` with participant-clustered standard errors
    (CR1: G/(G-1) (N-1)/(N-K), as ``sandwich::vcovCL(type = "HC1")``, Stata's
    ``vce(cluster id)``) and t intervals with G - 1 df. The persisting share at w is
    gap_w / gap_end with a delta-method standard error from the same clustered covariance
    (the two gaps share participants, so their covariance counts).

    Parameters
    ----------
    scores : DataFrame
        Wide scores (``participant``, ``wave``, ``treated``, ``construct``).
    construct : str
        Score column.
    end_wave : int, optional
        The end of the programme (default the first wave after baseline).
    baseline : int, optional
        Baseline wave (default the first).
    level : float
        Confidence level.

    Returns
    -------
    DurabilityResult
        Protocol result; a share whose end-of-programme gap's CI includes 0 is flagged in its
        note and in ``warnings`` (a ratio to a gap that may be zero is not interpretable).

    Raises
    ------
    ModelError
        Missing columns, or no participant of one arm scored at baseline and ``end_wave``.
    """
    import statsmodels.api as sm

    require_columns(scores, ["participant", "wave", "treated", construct], "durability")
    base = baseline_wave(scores, baseline)
    waves = sorted(int(w) for w in scores["wave"].unique() if w > base)
    if not waves:
        raise ModelError("durability: the data have no wave after the baseline")
    end = waves[0] if end_wave is None else int(end_wave)
    if end not in waves:
        raise ModelError(f"durability: end_wave {end} is not a wave after baseline {base}")
    parts = [paired_change(scores, construct, base, w, keep=["treated"]).assign(wave=w)
             for w in waves]
    data = pd.concat(parts, ignore_index=True)
    notes_global: list[str] = []
    usable = []
    for w in waves:
        arms = data.loc[data["wave"] == w, "treated"].value_counts()
        if arms.get(1, 0) >= 2 and arms.get(0, 0) >= 2:
            usable.append(w)
        else:
            notes_global.append(f"wave {w}: an arm has fewer than 2 participants scored at "
                                "baseline and this wave; its gap is not estimable")
    if end not in usable:
        raise ModelError(f"durability: the end-of-programme wave {end} lacks participants of "
                         f"an arm scored at baseline too; choose another end_wave")
    data = data[data["wave"].isin(usable)].reset_index(drop=True)
    cols = {}
    for w in usable:
        ind = (data["wave"] == w).astype(float)
        cols[f"mean change wave {w}"] = ind
        cols[f"gap wave {w}"] = ind * data["treated"]
    x = pd.DataFrame(cols)
    groups = pd.factorize(data["participant"])[0]
    fit = sm.OLS(data["change"].to_numpy(float), x.to_numpy(float)).fit(
        cov_type="cluster", cov_kwds={"groups": groups, "use_correction": True})
    beta = pd.Series(fit.params, index=x.columns)
    vcov = pd.DataFrame(fit.cov_params(), index=x.columns, columns=x.columns)
    g = int(groups.max()) + 1
    df = float(g - 1)
    terms, est, se, ok, notes = [], [], [], [], []
    for w in waves:
        name = f"gap wave {w}"
        terms.append(name)
        if w in usable:
            est.append(beta[name])
            se.append(math.sqrt(vcov.loc[name, name]))
            ok.append(True)
            notes.append("end of programme" if w == end else "")
        else:
            est.append(math.nan), se.append(math.nan), ok.append(False)
            notes.append("not estimable: an arm lacks participants scored at baseline and here")
    b_end = beta[f"gap wave {end}"]
    se_end = math.sqrt(vcov.loc[f"gap wave {end}", f"gap wave {end}"])
    crit = sps.t.ppf(0.5 + level / 2, df)
    unstable = abs(b_end) < crit * se_end
    if unstable:
        notes_global.append(
            f"the end-of-programme gap (wave {end}) is not distinguishable from 0 at level "
            f"{level}; the persisting shares are ratios to a gap that may be 0 and are not "
            "interpretable")
    for w in waves:
        if w == end:
            continue
        name = f"persisting share wave {w}"
        terms.append(name)
        if w not in usable:
            est.append(math.nan), se.append(math.nan), ok.append(False)
            notes.append("not estimable: the gap at this wave is not estimable")
            continue
        b_w = beta[f"gap wave {w}"]
        grad = np.array([1 / b_end, -b_w / b_end**2])
        sub = vcov.loc[[f"gap wave {w}", f"gap wave {end}"], [f"gap wave {w}", f"gap wave {end}"]]
        est.append(b_w / b_end)
        se.append(float(math.sqrt(grad @ sub.to_numpy() @ grad)))
        ok.append(True)
        notes.append(f"delta method; relative to wave {end}"
                     + ("; end-of-programme gap not distinguishable from 0" if unstable else ""))
    rec = make_record(
        "difference between arms in mean change from baseline (least squares)", data,
        {"participant": g},
        "clustered by participant, CR1 (G/(G-1)(N-1)/(N-K)), t with G-1 df; delta method "
        "for shares", notes_global)
    return DurabilityResult(
        outcome=construct, terms=tuple(terms), estimate=tuple(float(v) for v in est),
        std_error=tuple(float(v) for v in se), df=tuple(df for _ in terms),
        estimable=tuple(ok), notes=tuple(notes), roles=tuple("effect" for _ in terms),
        record=rec, notes_global=tuple(notes_global),
        method=(f"Durability of the change in {construct}: the difference between the "
                f"arms in mean change from wave {base} at wave {end} (end of the programme) "
                f"and at each later wave, with participant-clustered standard errors, and the "
                f"share of the wave-{end} gap remaining at each follow-up (delta method)."),
    )


# ----------------------------------------------------------------------------- all together
@dataclass(frozen=True)
class ChangeTables:
    """Everything "change that matters to people" for one construct (see :func:`change_tables`).

    Attributes
    ----------
    reliable_change : DataFrame
        Shares improved / unchanged / worsened, by ``arm``, then by ``dialogue`` and ``side``
        (column ``grouping`` says which).
    durability : DurabilityResult
        Gaps at each wave and persisting shares.
    hedges_g : DataFrame
        Hedges' g between the arms per wave.
    dz : DataFrame
        Within-person d_z from baseline to the end of the programme, per arm.
    subgroups : SubgroupEffects
        Arm differences by subgroup at the end of the programme (Holm, BH).
    balance, dropout, stayers_leavers, ipw, mice : DataFrame
        Attrition and balance tables (``models.attrition``); ``mice`` is None when skipped.
    """

    reliable_change: pd.DataFrame
    durability: DurabilityResult
    hedges_g: pd.DataFrame
    dz: pd.DataFrame
    subgroups: SubgroupEffects
    balance: pd.DataFrame
    dropout: pd.DataFrame
    stayers_leavers: pd.DataFrame
    ipw: pd.DataFrame
    mice: pd.DataFrame | None


def change_tables(scores: pd.DataFrame, reliability: pd.DataFrame | float, construct: str, *,
                  end_wave: int | None = None, follow_up: int | None = None,
                  by: Sequence[str] = ("side", "dialogue"),
                  covariates: Sequence[str] | None = None, mice: bool = True,
                  seed: int = 0) -> ChangeTables:
    """Reliable change, durability, effect sizes, subgroups and attrition for one construct.

    Parameters
    ----------
    scores : DataFrame
        Wide scores of :meth:`trackii_eval.Study.scores`.
    reliability : DataFrame or float
        :meth:`trackii_eval.Study.reliability`, or the construct's reliability.
    construct : str
        The construct.
    end_wave : int, optional
        End of the programme (default the first wave after baseline).
    follow_up : int, optional
        The follow-up wave of the attrition analyses (default the last wave).
    by : sequence of str
        Subgroup columns.
    covariates : sequence of str, optional
        Baseline balance covariates (default the construct and ``side``).
    mice : bool
        Run the multiple-imputation sensitivity analysis (a few seconds).
    seed : int
        Seed of the imputations.

    Returns
    -------
    ChangeTables

    Raises
    ------
    ModelError
        As the functions called.
    """
    from .attrition import (
        balance_table,
        dropout_by_wave,
        ipw_sensitivity,
        mice_sensitivity,
        stayers_vs_leavers,
    )

    require_columns(scores, ["participant", "wave", "treated", construct], "change_tables")
    base = baseline_wave(scores, None)
    later = sorted(int(w) for w in scores["wave"].unique() if w > base)
    if not later:
        raise ModelError("change_tables: the data have no wave after the baseline")
    end = later[0] if end_wave is None else int(end_wave)
    last = later[-1] if follow_up is None else int(follow_up)
    covs = list(covariates) if covariates is not None else [construct, "side"]
    rc = reliable_change(scores, construct, reliability, wave=end)
    shares = [reliable_change_shares(rc, by=["arm"]).assign(grouping="arm")]
    for col in ("dialogue", "side"):
        if col in rc.columns:
            shares.append(reliable_change_shares(rc, by=["arm", col]).assign(grouping=col))
    return ChangeTables(
        reliable_change=pd.concat(shares, ignore_index=True),
        durability=durability(scores, construct, end_wave=end),
        hedges_g=hedges_g_by_wave(scores, construct),
        dz=dz_within(scores, construct, base, end),
        subgroups=subgroup_effects(scores, construct, end, by=by),
        balance=balance_table(scores, covs),
        dropout=dropout_by_wave(scores, construct),
        stayers_leavers=stayers_vs_leavers(scores, covs, last),
        ipw=ipw_sensitivity(scores, construct, last, predictors=covs),
        mice=mice_sensitivity(scores, construct, last, predictors=covs, seed=seed)
        if mice else None,
    )


def durability_from_growth(fit: Any, times: Mapping[int, float], end_wave: int, *,
                           during_term: str = "time:arm[T.dialogue]",
                           after_term: str = "post_time:arm[T.dialogue]",
                           level: float = 0.95) -> DurabilityResult:
    """Durability from a piecewise growth model: the model-implied gap at each wave.

    For ``y ~ (time + post_time) * arm + (time | participant)`` (the analysis plan's
    ``<construct>_durability`` model; post_time = max(time - t_end, 0)) the gap between the
    arms at time t, relative to the baseline gap, is
    b_during * t + b_after * max(t - t_end, 0). Gaps come from ``fit.lincom`` (Satterthwaite
    df); the persisting share gap(t) / gap(t_end) gets a delta-method standard error from
    ``fit.vcov`` with a normal reference. The model-free counterpart is :func:`durability`;
    where the two disagree, the straight lines of the growth model do not describe the data.

    Parameters
    ----------
    fit : GrowthFit
        A live piecewise growth fit (``lincom`` and ``vcov``).
    times : mapping wave -> time
        The time of each wave in the model's units (e.g. the ``waves`` table).
    end_wave : int
        The wave at the end of the programme (t_end = ``times[end_wave]``).
    during_term, after_term : str
        The fit's time x arm and post_time x arm coefficients.
    level : float
        Confidence level.

    Returns
    -------
    DurabilityResult
        Terms ``gap wave w`` for each wave after baseline and ``persisting share wave w`` for
        each wave after ``end_wave``.

    Raises
    ------
    ModelError
        A term the fit lacks, ``end_wave`` not in ``times``, or a zero end-of-programme gap.
    """
    names = list(fit.vcov.index)
    for term in (during_term, after_term):
        if term not in names:
            raise ModelError(f"durability_from_growth: the fit has no term {term!r} "
                             f"(terms: {', '.join(names)}); fit the piecewise model "
                             "y ~ (time + post_time) * arm + (time | participant)")
    if end_wave not in times:
        raise ModelError(f"durability_from_growth: end_wave {end_wave} is not in times")
    t_end = float(times[end_wave])
    t0 = min(times.values())
    waves = sorted(w for w, t in times.items() if t > t0)

    def weights(w: int) -> dict[str, float]:
        t = float(times[w]) - t0
        return {during_term: t, after_term: max(float(times[w]) - t_end, 0.0)}

    rows = [fit.lincom(weights(w), level=level, name=f"gap wave {w}") for w in waves]
    gaps = pd.concat(rows, ignore_index=True)
    terms = gaps["term"].tolist()
    est = gaps["estimate"].tolist()
    se = gaps["std_error"].tolist()
    dfs = gaps["df"].tolist()
    notes = ["end of programme" if w == end_wave else "" for w in waves]
    vcov = fit.vcov.loc[[during_term, after_term], [during_term, after_term]].to_numpy()
    beta = fit.tidy().set_index("term").loc[[during_term, after_term], "estimate"].to_numpy()
    a_end = np.array([weights(end_wave)[during_term], weights(end_wave)[after_term]])
    g_end = float(a_end @ beta)
    if g_end == 0:
        raise ModelError("durability_from_growth: the end-of-programme gap is exactly 0")
    for w in waves:
        if times[w] <= t_end:
            continue
        a_w = np.array([weights(w)[during_term], weights(w)[after_term]])
        g_w = float(a_w @ beta)
        grad = a_w / g_end - g_w * a_end / g_end**2  # d(g_w / g_end) / d beta
        terms.append(f"persisting share wave {w}")
        est.append(g_w / g_end)
        se.append(float(math.sqrt(grad @ vcov @ grad)))
        dfs.append(math.nan)
        notes.append(f"delta method; relative to wave {end_wave}")
    rec = fit.record
    return DurabilityResult(
        outcome=str(getattr(fit, "formula", "")).split("~")[0].strip(), terms=tuple(terms),
        estimate=tuple(float(v) for v in est), std_error=tuple(float(v) for v in se),
        df=tuple(float(v) for v in dfs), estimable=tuple(True for _ in terms),
        notes=tuple(notes), roles=tuple("effect" for _ in terms), record=rec,
        notes_global=tuple(rec.warnings),
        method=("Durability from the piecewise growth model: model-implied gaps between the "
                f"arms at each wave (Satterthwaite df) and the share of the wave-{end_wave} "
                "gap remaining at later waves (delta method)."),
    )
