"""Effect sizes with confidence intervals, and effects by subgroup ("for whom").

Input is the wide score table of :meth:`trackii_eval.Study.scores` (one row per participant x
wave; columns ``participant``, ``wave``, ``treated`` (1 = dialogue arm, 0 = comparison arm),
``side``, ``dialogue`` and one column per construct).

* :func:`hedges_g_by_wave` -- Hedges' g between the arms at each wave (pingouin), with the
  Hedges & Olkin (1985) normal-approximation interval.
* :func:`dz_within` -- the within-person standardized change d_z = mean(diff) / sd(diff)
  per arm, with the exact noncentral-t interval (Cumming & Finch 2001; as ``MBESS::ci.sm``).
* :func:`growth_effect_size` -- Feingold's (2009) standardized growth effect
  d = b * duration / SD_baseline from a growth fit's time x arm coefficient.
* :func:`subgroup_effects` -- the arm difference in change from baseline within each level of
  side, dialogue, sector or role, with Holm and Benjamini-Hochberg adjusted p-values and the
  columns a forest plot needs (:meth:`SubgroupEffects.forest`).

:class:`EffectTable` is the small results-protocol class (``tidy``, ``record``, ``to_dict``)
shared by the subgroup effects here and the durability estimates of ``models.change``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

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

__all__ = [
    "EffectTable",
    "SubgroupEffects",
    "dz_within",
    "growth_effect_size",
    "hedges_g_by_wave",
    "pooled_baseline_sd",
    "subgroup_effects",
]


# ----------------------------------------------------------------------------- helpers
def require_columns(scores: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Refuse a score table that lacks ``columns`` (one line, naming them)."""
    missing = [c for c in columns if c not in scores.columns]
    if missing:
        raise ModelError(
            f"{what}: the score table has no column(s) {', '.join(missing)}; pass the wide "
            "scores of Study.scores() (participant, wave, treated, side, dialogue, constructs)"
        )


def baseline_wave(scores: pd.DataFrame, wave: int | None) -> int:
    """The given baseline wave, or the first wave in the data."""
    return int(scores["wave"].min()) if wave is None else int(wave)


def paired_change(scores: pd.DataFrame, construct: str, base: int, wave: int,
                  keep: Sequence[str] = ()) -> pd.DataFrame:
    """One row per participant with a score at ``base`` and at ``wave``.

    Columns: ``participant``, ``baseline``, ``followup``, ``change`` (followup - baseline)
    and the participant-level columns in ``keep`` (taken from the baseline row).
    """
    cols = ["participant", construct, *keep]
    b = scores.loc[scores["wave"] == base, cols].dropna(subset=[construct])
    f = scores.loc[scores["wave"] == wave, ["participant", construct]].dropna()
    out = b.merge(f, on="participant", suffixes=("_b", "_f"))
    out = out.rename(columns={f"{construct}_b": "baseline", f"{construct}_f": "followup"})
    out["change"] = out["followup"] - out["baseline"]
    for col in keep:
        # The comparison arm belongs to no dialogue; the wide scores mark that with "" or
        # "\x00" (scoring.scores_wide's grouping sentinel): both mean missing here.
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].where(out[col].astype(str).str.strip(" \x00") != "")
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class EffectTable:
    """A table of estimates that follows the results protocol.

    Attributes
    ----------
    outcome : str
        The construct.
    terms, estimate, std_error, df, estimable, notes, roles : tuples, one entry per term
        ``df`` NaN means a normal reference distribution.
    record : FitRecord
        How the table was computed (estimator, vcov convention, n, fingerprint).
    extra : dict of str -> tuple
        Further per-term columns (``n_dialogue``, ``p_holm`` ...), kept by :meth:`tidy`.
    method : str
        The methods-section sentence.
    notes_global : tuple of str
        Warnings a reader must see.
    """

    kind: ClassVar[str] = "effect_table"

    outcome: str
    terms: tuple[str, ...]
    estimate: tuple[float, ...]
    std_error: tuple[float, ...]
    df: tuple[float, ...]
    estimable: tuple[bool, ...]
    notes: tuple[str, ...]
    roles: tuple[str, ...]
    record: FitRecord
    extra: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    method: str = ""
    notes_global: tuple[str, ...] = ()

    @property
    def warnings(self) -> list[str]:
        """Problems a reader must see."""
        return list(self.notes_global)

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """The :data:`~trackii_eval.models.results.TIDY_COLUMNS`, then the ``extra`` columns."""
        tab = tidy_frame(list(self.terms), self.estimate, self.std_error, self.df, level,
                         estimable=self.estimable, role=list(self.roles),
                         note=list(self.notes))
        for name, values in self.extra.items():
            tab[name] = list(values)
        return tab

    def lincom(self, weights: Mapping[str, float], level: float = 0.95,
               name: str = "") -> pd.DataFrame:
        """Not offered: the terms are separate estimates without a joint covariance.

        Raises
        ------
        ModelError
            Always, naming what to use instead.
        """
        raise ModelError(f"{self.kind}: terms have no joint covariance; combine them in the "
                         "model that produced them (growth or panel fit)")

    def describe(self) -> str:
        """One methods-section sentence."""
        return self.method

    def summary(self) -> str:
        """Text for people."""
        lines = [f"{self.kind.replace('_', ' ').capitalize()}: {self.outcome}",
                 self.tidy().to_string(index=False), *self.record.lines()]
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def summary_html(self) -> str:
        """The summary as an HTML fragment (the protocol's columns)."""
        tab = self.tidy()
        return summary_html_layout(f"{self.kind}: {self.outcome}", self.record,
                                   tab[list(tab.columns[:11])], self.warnings)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON form (NaN as None)."""
        return {
            "kind": self.kind, "schema": SCHEMA_VERSION, "outcome": self.outcome,
            "terms": list(self.terms),
            "estimate": [json_number(v) for v in self.estimate],
            "std_error": [json_number(v) for v in self.std_error],
            "df": [json_number(v) for v in self.df],
            "estimable": [bool(v) for v in self.estimable], "notes": list(self.notes),
            "roles": list(self.roles), "record": self.record.to_dict(),
            "extra": {k: [json_number(v) for v in vals] for k, vals in self.extra.items()},
            "method": self.method, "notes_global": list(self.notes_global),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EffectTable:
        """Inverse of :meth:`to_dict`."""
        return cls(
            outcome=data["outcome"], terms=tuple(data["terms"]),
            estimate=tuple(as_float(v) for v in data["estimate"]),
            std_error=tuple(as_float(v) for v in data["std_error"]),
            df=tuple(as_float(v) for v in data["df"]),
            estimable=tuple(bool(v) for v in data["estimable"]),
            notes=tuple(data["notes"]), roles=tuple(data["roles"]),
            record=FitRecord.from_dict(data["record"]),
            extra={k: tuple(math.nan if v is None else v for v in vals)
                   for k, vals in data["extra"].items()},
            method=data.get("method", ""), notes_global=tuple(data.get("notes_global", ())),
        )


register_result(EffectTable)


@register_result
@dataclass(frozen=True)
class SubgroupEffects(EffectTable):
    """Arm differences in change from baseline by subgroup (see :func:`subgroup_effects`)."""

    kind: ClassVar[str] = "subgroup_effects"

    def forest(self, level: float = 0.95) -> pd.DataFrame:
        """The data a forest plot needs, one row per subgroup.

        Columns: ``variable``, ``level``, ``label``, ``estimate``, ``ci_low``, ``ci_high``,
        ``n_dialogue``, ``n_comparison``, ``p_value``, ``p_holm``, ``p_bh``, ``estimable``.
        """
        tab = self.tidy(level)
        return pd.DataFrame({
            "variable": tab["variable"], "level": tab["level"], "label": tab["term"],
            "estimate": tab["estimate"], "ci_low": tab["ci_low"], "ci_high": tab["ci_high"],
            "n_dialogue": tab["n_dialogue"], "n_comparison": tab["n_comparison"],
            "p_value": tab["p_value"], "p_holm": tab["p_holm"], "p_bh": tab["p_bh"],
            "estimable": tab["estimable"],
        })


def make_record(estimator: str, frame: pd.DataFrame, n_groups: dict[str, int], vcov: str,
                warnings: Sequence[str] = ()) -> FitRecord:
    """A closed-form :class:`FitRecord` for a table computed on ``frame``."""
    return FitRecord(
        estimator=estimator, engine="trackii", optimizer="closed form", tolerances={},
        n_evals=None, converged=True, warnings=tuple(warnings),
        versions=package_versions("statsmodels", "pingouin"),
        data_fingerprint=data_fingerprint(frame.reset_index(drop=True)),
        n_obs=len(frame), n_groups=n_groups, vcov=vcov,
    )


# ----------------------------------------------------------------------------- effect sizes
def hedges_g_by_wave(scores: pd.DataFrame, construct: str, *, level: float = 0.95,
                     waves: Sequence[int] | None = None) -> pd.DataFrame:
    """Hedges' g between the dialogue and the comparison arm at each wave.

    g = J * (mean_dialogue - mean_comparison) / s_pooled with J = 1 - 3 / (4 (n1 + n2) - 9)
    (``pingouin.compute_effsize(eftype="hedges")``); the interval is g +/- t * se with
    se = sqrt((n1 + n2) / (n1 n2) + g^2 / (2 (n1 + n2))) (Hedges & Olkin 1985, eq. 5.15) and t
    the quantile of the t distribution with n1 + n2 - 2 df (``pingouin.compute_esci``, as R
    ``effsize::cohen.d(noncentral = FALSE)``). Positive g: the dialogue arm scores higher.

    Parameters
    ----------
    scores : DataFrame
        Wide scores (``wave``, ``treated``, ``construct``).
    construct : str
        Score column.
    level : float
        Confidence level.
    waves : sequence of int, optional
        Waves to report (default all).

    Returns
    -------
    DataFrame
        One row per wave: ``wave``, ``n_dialogue``, ``n_comparison``, ``mean_dialogue``,
        ``mean_comparison``, ``g``, ``se``, ``ci_low``, ``ci_high``, ``note``. A wave where an
        arm has fewer than 2 scores gets NaN and a note.

    Raises
    ------
    ModelError
        Missing columns or ``level`` outside (0, 1).
    """
    import pingouin as pg

    require_columns(scores, ["wave", "treated", construct], "hedges_g_by_wave")
    _check_level(level)
    rows = []
    for wave in waves if waves is not None else sorted(scores["wave"].unique()):
        at = scores[scores["wave"] == wave]
        x = at.loc[at["treated"] == 1, construct].dropna().to_numpy(float)
        y = at.loc[at["treated"] == 0, construct].dropna().to_numpy(float)
        row = {"wave": int(wave), "n_dialogue": len(x), "n_comparison": len(y),
               "mean_dialogue": x.mean() if len(x) else math.nan,
               "mean_comparison": y.mean() if len(y) else math.nan}
        if len(x) < 2 or len(y) < 2:
            rows.append({**row, "g": math.nan, "se": math.nan, "ci_low": math.nan,
                         "ci_high": math.nan,
                         "note": "not estimable: an arm has fewer than 2 scores at this wave"})
            continue
        g = float(pg.compute_effsize(x, y, eftype="hedges"))
        n1, n2 = len(x), len(y)
        se = math.sqrt((n1 + n2) / (n1 * n2) + g**2 / (2 * (n1 + n2)))
        lo, hi = pg.compute_esci(stat=g, nx=n1, ny=n2, eftype="hedges", confidence=level,
                                 decimals=12)
        rows.append({**row, "g": g, "se": se, "ci_low": float(lo), "ci_high": float(hi),
                     "note": ""})
    return pd.DataFrame(rows)


def dz_within(scores: pd.DataFrame, construct: str, wave_from: int, wave_to: int, *,
              by: str = "treated", level: float = 0.95) -> pd.DataFrame:
    """Within-person standardized change d_z per group, with the exact interval.

    d_z = mean(d) / sd(d) for d = score(wave_to) - score(wave_from) of participants scored at
    both waves (Cohen 1988; Lakens 2013, eq. 7). The interval inverts the noncentral t
    distribution of t = d_z sqrt(n) with n - 1 df (Cumming & Finch 2001; as
    ``MBESS::ci.sm``), which keeps its coverage in small groups where the normal
    approximation does not.

    Parameters
    ----------
    scores : DataFrame
        Wide scores.
    construct : str
        Score column.
    wave_from, wave_to : int
        The two waves.
    by : str
        Participant-level grouping column (default ``treated``: 1 dialogue, 0 comparison).
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        One row per group: ``by`` value, ``n``, ``mean_change``, ``sd_change``, ``dz``,
        ``ci_low``, ``ci_high``, ``note`` (NaN with a note when n < 3 or sd = 0).

    Raises
    ------
    ModelError
        Missing columns, equal waves or ``level`` outside (0, 1).
    """
    require_columns(scores, ["participant", "wave", by, construct], "dz_within")
    _check_level(level)
    if wave_from == wave_to:
        raise ModelError("dz_within: wave_from and wave_to must differ")
    pairs = paired_change(scores, construct, wave_from, wave_to, keep=[by])
    rows = []
    for value, grp in pairs.groupby(by, sort=True, observed=True):
        d = grp["change"].to_numpy(float)
        n = len(d)
        sd = d.std(ddof=1) if n > 1 else math.nan
        row = {by: value, "n": n, "mean_change": d.mean(), "sd_change": sd}
        if n < 3 or not sd > 0:
            rows.append({**row, "dz": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                         "note": "not estimable: fewer than 3 pairs or no variation in change"})
            continue
        dz = d.mean() / sd
        lo, hi = _nct_interval(dz * math.sqrt(n), n - 1, level)
        rows.append({**row, "dz": dz, "ci_low": lo / math.sqrt(n), "ci_high": hi / math.sqrt(n),
                     "note": ""})
    return pd.DataFrame(rows)


def _nct_interval(t: float, df: float, level: float) -> tuple[float, float]:
    # Noncentrality parameters whose distribution puts t at the upper / lower tail quantile.
    alpha = (1 - level) / 2

    def f(ncp: float, target: float) -> float:
        p = sps.nct.cdf(t, df, ncp)
        # far in the tails scipy's nct can return NaN; the limit there is 1 (ncp << t) or 0
        return (1.0 if ncp < t else 0.0) - target if not np.isfinite(p) else p - target

    def solve(target: float) -> float:
        # the interval of the ncp is about t +/- z sqrt(1 + t^2 / (2 df)); bracket it widely
        width = 8 * math.sqrt(1 + t * t / (2 * df)) + 1
        return float(optimize.brentq(f, t - width, t + width, args=(target,), xtol=1e-12))

    return solve(1 - alpha), solve(alpha)


def growth_effect_size(fit: Any, term: str, duration: float, sd_baseline: float, *,
                       level: float = 0.95) -> pd.DataFrame:
    """Feingold's (2009) standardized growth effect of a growth model's time x arm term.

    d = b * duration / SD, with b the difference in slopes between the arms (score units per
    unit of time), ``duration`` the length of the programme in the same time units and SD the
    pooled within-arm standard deviation of the raw baseline scores (Feingold 2009, eq. 3;
    its CI is the coefficient's CI scaled the same way, Feingold 2015). The result is on the
    scale of Cohen's d for a classical two-group comparison at the end of the programme.

    Parameters
    ----------
    fit : ModelResult
        A fit with ``tidy(level=)`` (e.g. a :class:`~trackii_eval.models.growth.GrowthFit`).
    term : str
        The time x arm coefficient, e.g. ``"time:arm[T.dialogue]"``.
    duration : float
        Programme length in the time units of the model.
    sd_baseline : float
        Pooled baseline SD (see :func:`pooled_baseline_sd`).
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        One row: ``term``, ``slope_difference``, ``duration``, ``sd_baseline``, ``d``,
        ``ci_low``, ``ci_high``.

    Raises
    ------
    ModelError
        ``term`` not in the fit, not estimable, or a non-positive SD or duration.
    """
    if not sd_baseline > 0 or not duration > 0:
        raise ModelError("growth_effect_size: sd_baseline and duration must be positive")
    tab = fit.tidy(level=level).set_index("term")
    if term not in tab.index:
        raise ModelError(f"growth_effect_size: the fit has no term {term!r} "
                         f"(terms: {', '.join(tab.index)})")
    row = tab.loc[term]
    if not bool(row["estimable"]):
        raise ModelError(f"growth_effect_size: {term!r} is not estimable: {row['note']}")
    k = duration / sd_baseline
    return pd.DataFrame([{
        "term": term, "slope_difference": row["estimate"], "duration": duration,
        "sd_baseline": sd_baseline, "d": row["estimate"] * k, "ci_low": row["ci_low"] * k,
        "ci_high": row["ci_high"] * k,
    }])


def pooled_baseline_sd(scores: pd.DataFrame, construct: str,
                       baseline: int | None = None) -> float:
    """Pooled within-arm SD of the baseline scores: sqrt(sum (n_j - 1) s_j^2 / (N - 2))."""
    require_columns(scores, ["wave", "treated", construct], "pooled_baseline_sd")
    at = scores[scores["wave"] == baseline_wave(scores, baseline)]
    num, den = 0.0, 0
    for _, grp in at.groupby("treated"):
        v = grp[construct].dropna()
        if len(v) > 1:
            num += (len(v) - 1) * v.var(ddof=1)
            den += len(v) - 1
    if den == 0:
        raise ModelError(f"pooled_baseline_sd: no arm has 2 baseline scores of {construct}")
    return math.sqrt(num / den)


# ----------------------------------------------------------------------------- for whom
def subgroup_effects(scores: pd.DataFrame, construct: str, wave: int, *,
                     by: Sequence[str] = ("side", "dialogue"), baseline: int | None = None,
                     level: float = 0.95) -> SubgroupEffects:
    """The arm difference in change from baseline within each subgroup, with adjusted p.

    For each level of each variable in ``by`` (side, dialogue, sector, role ...): the mean
    change from ``baseline`` to ``wave`` in the dialogue arm minus that in the comparison
    arm, with the Welch standard error and Welch-Satterthwaite df (as
    ``scipy.stats.ttest_ind(equal_var=False)`` and R's ``t.test``). Where the comparison arm
    does not carry the variable (dialogue: comparison participants belong to none) each
    level is compared with the whole comparison arm, and the note says so. p-values are
    adjusted over all rows together by Holm (family-wise error) and Benjamini-Hochberg (false
    discovery rate) with ``statsmodels.stats.multitest.multipletests`` (as R's
    ``p.adjust``).

    Parameters
    ----------
    scores : DataFrame
        Wide scores.
    construct : str
        Score column.
    wave : int
        Follow-up wave.
    by : sequence of str
        Participant-level columns to split by.
    baseline : int, optional
        Baseline wave (default the first).
    level : float
        Confidence level.

    Returns
    -------
    SubgroupEffects
        Protocol result; ``tidy()`` adds ``variable``, ``level``, ``n_dialogue``,
        ``n_comparison``, ``p_holm``, ``p_bh``; ``forest()`` gives the forest-plot data.

    Raises
    ------
    ModelError
        Missing columns, or no subgroup with data.
    """
    from statsmodels.stats.multitest import multipletests

    require_columns(scores, ["participant", "wave", "treated", construct, *by],
                    "subgroup_effects")
    _check_level(level)
    base = baseline_wave(scores, baseline)
    pairs = paired_change(scores, construct, base, wave, keep=["treated", *by])
    comp_all = pairs.loc[pairs["treated"] == 0]
    terms, est, se, dfs, ok, notes, var_col, lvl_col, n1s, n0s = ([] for _ in range(10))
    for var in by:
        comp_has = comp_all[var].notna().any()
        for value in sorted(pairs.loc[pairs["treated"] == 1, var].dropna().unique(), key=str):
            x = pairs.loc[(pairs["treated"] == 1) & (pairs[var] == value), "change"]
            y = comp_all.loc[comp_all[var] == value, "change"] if comp_has else comp_all["change"]
            note = "" if comp_has else f"compared with the whole comparison arm (it has no {var})"
            terms.append(f"{var}={value}")
            var_col.append(var)
            lvl_col.append(str(value))
            n1s.append(len(x))
            n0s.append(len(y))
            if len(x) < 2 or len(y) < 2:
                est.append(math.nan), se.append(math.nan), dfs.append(math.nan)
                ok.append(False)
                notes.append("not estimable: an arm has fewer than 2 participants scored at "
                             "both waves in this subgroup")
                continue
            v1, v0 = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
            est.append(float(x.mean() - y.mean()))
            se.append(math.sqrt(v1 + v0))
            dfs.append((v1 + v0) ** 2 / (v1**2 / (len(x) - 1) + v0**2 / (len(y) - 1)))
            ok.append(True)
            notes.append(note)
    if not terms:
        raise ModelError(f"subgroup_effects: no dialogue-arm participant has {construct} at "
                         f"waves {base} and {wave}")
    tab = tidy_frame(terms, est, se, dfs, level)
    p = tab["p_value"].to_numpy()
    holm = np.full(len(p), np.nan)
    bh = np.full(len(p), np.nan)
    finite = np.isfinite(p)
    if finite.any():
        holm[finite] = multipletests(p[finite], method="holm")[1]
        bh[finite] = multipletests(p[finite], method="fdr_bh")[1]
    rec = make_record("difference in mean change between arms by subgroup (Welch)", pairs,
                      {"participant": int(pairs["participant"].nunique())},
                      "Welch (unequal variances), Welch-Satterthwaite df")
    return SubgroupEffects(
        outcome=construct, terms=tuple(terms), estimate=tuple(est), std_error=tuple(se),
        df=tuple(dfs), estimable=tuple(ok), notes=tuple(notes),
        roles=tuple("effect" for _ in terms), record=rec,
        extra={"variable": tuple(var_col), "level": tuple(lvl_col), "n_dialogue": tuple(n1s),
               "n_comparison": tuple(n0s), "p_holm": tuple(holm), "p_bh": tuple(bh)},
        method=(f"Differences between the arms in mean change of {construct} from wave {base} "
                f"to wave {wave}, by {', '.join(by)}; Welch t intervals; p-values adjusted "
                "by Holm and by Benjamini-Hochberg over all subgroups."),
    )


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ModelError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
