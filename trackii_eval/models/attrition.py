"""Attrition and balance: who was compared with whom, who left, and does it matter.

* :func:`balance_table` -- baseline balance between the arms with standardized mean
  differences (SMD), flagged above a threshold (0.1 by convention; Austin 2009).
* :func:`dropout_by_wave` -- participants scored per wave and arm, retention and dropout.
* :func:`stayers_vs_leavers` -- baseline differences between those scored at a wave and those
  not, per arm.
* :func:`ipw_sensitivity` -- the arm difference in change from baseline at a wave, unweighted
  and weighted by the inverse probability of being observed (logistic model on baseline
  covariates and arm).
* :func:`mice_sensitivity` -- the same contrast after multiple imputation by chained
  equations (statsmodels ``MICE``; Rubin's rules), a second sensitivity analysis that does not
  discard participants with a missed wave.

Input is the wide score table of :meth:`trackii_eval.Study.scores`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import ModelError
from .effects import baseline_wave, require_columns

__all__ = [
    "balance_table",
    "dropout_by_wave",
    "ipw_sensitivity",
    "mice_sensitivity",
    "stayers_vs_leavers",
]


def _missing_text(s: pd.Series) -> pd.Series:
    # The comparison arm's dialogue is "" or "\x00" in the wide scores: missing.
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        return s.where(s.astype(str).str.strip(" \x00") != "")
    return s


def _smd_rows(a: pd.DataFrame, b: pd.DataFrame, covariates: Sequence[str],
              labels: tuple[str, str], threshold: float) -> list[dict]:
    """SMD rows comparing group ``a`` with ``b`` for each covariate (categorical: per level)."""
    rows = []
    for cov in covariates:
        xa, xb = _missing_text(a[cov]), _missing_text(b[cov])
        numeric = pd.api.types.is_numeric_dtype(xa) and pd.api.types.is_numeric_dtype(xb)
        if numeric:
            items = [(cov, "", xa.dropna().astype(float), xb.dropna().astype(float))]
        else:
            levels = sorted(set(xa.dropna()) | set(xb.dropna()), key=str)
            items = [(cov, str(lv), (xa.dropna() == lv).astype(float),
                      (xb.dropna() == lv).astype(float)) for lv in levels]
        for name, level, va, vb in items:
            binary = set(np.unique(np.r_[va, vb])) <= {0.0, 1.0}
            ma, mb = va.mean(), vb.mean()
            if binary:
                # Austin (2009), eq. 2: pooled Bernoulli variance
                var_a, var_b = ma * (1 - ma), mb * (1 - mb)
            else:
                var_a, var_b = va.var(ddof=1), vb.var(ddof=1)
            pooled = math.sqrt((var_a + var_b) / 2)
            smd = (ma - mb) / pooled if pooled > 0 else math.nan
            rows.append({
                "variable": name, "level": level, "type": "binary" if binary else "continuous",
                f"n_{labels[0]}": len(va), f"mean_{labels[0]}": ma,
                f"sd_{labels[0]}": math.sqrt(var_a) if len(va) > 1 else math.nan,
                f"n_{labels[1]}": len(vb), f"mean_{labels[1]}": mb,
                f"sd_{labels[1]}": math.sqrt(var_b) if len(vb) > 1 else math.nan,
                "smd": smd, "imbalanced": bool(abs(smd) > threshold) if np.isfinite(smd)
                else False,
            })
    return rows


def balance_table(scores: pd.DataFrame, covariates: Sequence[str], *,
                  baseline: int | None = None, threshold: float = 0.1) -> pd.DataFrame:
    """Baseline balance between the dialogue and the comparison arm.

    SMD = (mean_dialogue - mean_comparison) / sqrt((s²_dialogue + s²_comparison) / 2) with
    sample variances for continuous covariates and p(1 - p) for binary ones (0/1 scores and
    each level of a categorical covariate); Austin (2009), as ``cobalt::bal.tab`` and
    ``tableone``'s SMD. An |SMD| above ``threshold`` is flagged.

    Parameters
    ----------
    scores : DataFrame
        Wide scores (``wave``, ``treated`` and the covariates).
    covariates : sequence of str
        Baseline columns: construct scores, or categorical columns (side, sector ...).
    baseline : int, optional
        Baseline wave (default the first).
    threshold : float
        |SMD| above which a covariate is flagged ``imbalanced``.

    Returns
    -------
    DataFrame
        One row per covariate (per level for a categorical one): ``variable``, ``level``,
        ``type``, ``n_/mean_/sd_dialogue``, ``n_/mean_/sd_comparison``, ``smd``,
        ``imbalanced``. Means of binary rows are shares.

    Raises
    ------
    ModelError
        Missing columns, or an arm without baseline rows.

    References
    ----------
    Austin, P. C. (2009). Balance diagnostics for comparing the distribution of baseline
    covariates between treatment groups in propensity-score matched samples. Statistics in
    Medicine 28(25), 3083-3107.
    """
    require_columns(scores, ["wave", "treated", *covariates], "balance_table")
    at = scores[scores["wave"] == baseline_wave(scores, baseline)]
    a, b = at[at["treated"] == 1], at[at["treated"] == 0]
    if a.empty or b.empty:
        raise ModelError("balance_table: an arm has no baseline rows; balance needs both arms")
    return pd.DataFrame(_smd_rows(a, b, covariates, ("dialogue", "comparison"), threshold))


def dropout_by_wave(scores: pd.DataFrame, construct: str | None = None, *,
                    baseline: int | None = None) -> pd.DataFrame:
    """Participants scored per wave and arm, with retention relative to baseline.

    Parameters
    ----------
    scores : DataFrame
        Wide scores.
    construct : str, optional
        Count a participant at a wave only if this construct is scored (default: any row).
    baseline : int, optional
        Baseline wave.

    Returns
    -------
    DataFrame
        One row per arm and wave: ``arm`` (dialogue / comparison), ``wave``, ``n_baseline``
        (scored at baseline), ``n_scored`` (scored at the wave), ``n_retained`` (scored at
        baseline and at the wave), ``retention`` (n_retained / n_baseline) and ``dropout``
        (1 - retention).
    """
    require_columns(scores, ["participant", "wave", "treated",
                             *([construct] if construct else [])], "dropout_by_wave")
    rows_ok = scores if construct is None else scores[scores[construct].notna()]
    base = baseline_wave(scores, baseline)
    out = []
    for treated, label in ((1, "dialogue"), (0, "comparison")):
        arm = rows_ok[rows_ok["treated"] == treated]
        at_base = set(arm.loc[arm["wave"] == base, "participant"])
        for wave in sorted(scores["wave"].unique()):
            here = set(arm.loc[arm["wave"] == wave, "participant"])
            kept = len(here & at_base)
            ret = kept / len(at_base) if at_base else math.nan
            out.append({"arm": label, "wave": int(wave), "n_baseline": len(at_base),
                        "n_scored": len(here), "n_retained": kept, "retention": ret,
                        "dropout": 1 - ret})
    return pd.DataFrame(out)


def stayers_vs_leavers(scores: pd.DataFrame, covariates: Sequence[str], wave: int, *,
                       baseline: int | None = None, threshold: float = 0.1) -> pd.DataFrame:
    """Baseline differences between participants scored at ``wave`` and those not, per arm.

    Parameters
    ----------
    scores : DataFrame
        Wide scores.
    covariates : sequence of str
        Baseline columns compared (as in :func:`balance_table`).
    wave : int
        The follow-up wave that defines staying.
    baseline : int, optional
        Baseline wave.
    threshold : float
        |SMD| flag threshold.

    Returns
    -------
    DataFrame
        :func:`balance_table` columns with ``stayers`` / ``leavers`` in place of the arms, an
        ``arm`` column first, and ``p_value`` (Welch t test for continuous, Fisher's exact
        test for binary rows) -- a description, not a test of missingness at random.
    """
    require_columns(scores, ["participant", "wave", "treated", *covariates],
                    "stayers_vs_leavers")
    base = baseline_wave(scores, baseline)
    at = scores[scores["wave"] == base]
    present = set(scores.loc[scores["wave"] == wave, "participant"])
    rows = []
    for treated, label in ((1, "dialogue"), (0, "comparison")):
        arm = at[at["treated"] == treated]
        stay = arm[arm["participant"].isin(present)]
        leave = arm[~arm["participant"].isin(present)]
        for row in _smd_rows(stay, leave, covariates, ("stayers", "leavers"), threshold):
            row = {"arm": label, **row}
            row["p_value"] = _row_test(stay, leave, row)
            rows.append(row)
    return pd.DataFrame(rows)


def _row_test(a: pd.DataFrame, b: pd.DataFrame, row: dict) -> float:
    xa, xb = _missing_text(a[row["variable"]]).dropna(), _missing_text(b[row["variable"]]).dropna()
    if len(xa) < 2 or len(xb) < 2:
        return math.nan
    if row["type"] == "binary":
        if row["level"]:
            xa, xb = xa == row["level"], xb == row["level"]
        ka, kb = int((xa.astype(float) == 1).sum()), int((xb.astype(float) == 1).sum())
        return float(sps.fisher_exact([[ka, len(xa) - ka], [kb, len(xb) - kb]])[1])
    return float(sps.ttest_ind(xa.astype(float), xb.astype(float), equal_var=False).pvalue)


def _analysis_frame(scores: pd.DataFrame, construct: str, wave: int, base: int,
                    predictors: Sequence[str]) -> pd.DataFrame:
    """One row per participant scored at baseline: baseline, follow-up (NaN if missing),
    ``observed``, ``treated`` and the baseline predictors (categoricals as 0/1 dummies)."""
    cols = ["participant", "treated", construct, *[p for p in predictors if p != construct]]
    b = scores.loc[scores["wave"] == base, cols].dropna(subset=[construct])
    f = scores.loc[scores["wave"] == wave, ["participant", construct]].dropna()
    frame = b.merge(f, on="participant", how="left", suffixes=("", "_followup"))
    frame = frame.rename(columns={construct: "baseline", f"{construct}_followup": "followup"})
    frame["observed"] = frame["followup"].notna().astype(int)
    design = []
    for p in predictors:
        name = "baseline" if p == construct else p
        col = _missing_text(frame[name])
        if pd.api.types.is_numeric_dtype(col):
            design.append(col.astype(float).rename(name))
        else:
            design.append(pd.get_dummies(col, prefix=name, drop_first=True, dtype=float))
    x = pd.concat(design, axis=1) if design else pd.DataFrame(index=frame.index)
    x = x.loc[:, ~x.columns.duplicated()]
    out = pd.concat([frame[["participant", "treated", "baseline", "followup", "observed"]],
                     x.drop(columns=["baseline"], errors="ignore")], axis=1)
    if out.drop(columns=["followup"]).isna().any().any():
        bad = out.drop(columns=["followup"]).columns[
            out.drop(columns=["followup"]).isna().any()].tolist()
        raise ModelError(f"attrition model: baseline predictor(s) {', '.join(bad)} have missing "
                         "values; choose predictors scored for everyone at baseline")
    return out.reset_index(drop=True)


def ipw_sensitivity(scores: pd.DataFrame, construct: str, wave: int, *,
                    predictors: Sequence[str] | None = None, baseline: int | None = None,
                    level: float = 0.95, stabilized: bool = True) -> pd.DataFrame:
    """The arm difference in change from baseline, unweighted and inverse-probability weighted.

    P(scored at ``wave`` | baseline predictors, arm) is a logistic regression (statsmodels
    ``GLM(Binomial)``) on everyone scored at baseline; the stayers are weighted by 1 / p̂
    (times the marginal share observed when ``stabilized``), so that, if dropout is at random
    given the predictors, they stand for everyone who started (Seaman & White 2013). The
    contrast is weighted least squares of ``change ~ treated`` with HC1 robust standard
    errors (as ``lm(weights=)`` + ``sandwich::vcovHC(type = "HC1")``), which treats the
    weights as known -- conservative for the ATE (Lunceford & Davidian 2004).

    Parameters
    ----------
    scores : DataFrame
        Wide scores.
    construct : str
        Outcome construct.
    wave : int
        Follow-up wave.
    predictors : sequence of str, optional
        Baseline predictors of dropout (default: the construct's own baseline score and
        ``side``); ``treated`` is always included.
    baseline : int, optional
        Baseline wave.
    level : float
        Confidence level.
    stabilized : bool
        Multiply the weights by the marginal probability of being observed.

    Returns
    -------
    DataFrame
        Two rows (``analysis`` = ``complete cases``, ``inverse probability weighted``):
        ``estimate``, ``std_error``, ``ci_low``, ``ci_high``, ``n``, ``max_weight``.

    Raises
    ------
    ModelError
        Missing columns or predictors missing at baseline; fewer than 2 stayers in an arm.

    References
    ----------
    Seaman, S. R. and White, I. R. (2013). Review of inverse probability weighting for dealing
    with missing data. Statistical Methods in Medical Research 22(3), 278-295.
    """
    import statsmodels.api as sm

    preds = list(predictors) if predictors is not None else [construct, "side"]
    require_columns(scores, ["participant", "wave", "treated", construct, *preds],
                    "ipw_sensitivity")
    base = baseline_wave(scores, baseline)
    frame = _analysis_frame(scores, construct, wave, base, preds)
    xcols = [c for c in frame.columns if c not in ("participant", "followup", "observed")]
    xp = sm.add_constant(frame[xcols].astype(float), has_constant="add")
    ps = sm.GLM(frame["observed"], xp, family=sm.families.Binomial()).fit()
    p_hat = ps.predict(xp)
    stay = frame[frame["observed"] == 1].copy()
    for arm in (0, 1):
        if (stay["treated"] == arm).sum() < 2:
            raise ModelError(f"ipw_sensitivity: fewer than 2 participants of an arm are scored "
                             f"at baseline and wave {wave}")
    w = 1 / p_hat[stay.index]
    if stabilized:
        w = w * frame["observed"].mean()
    stay["change"] = stay["followup"] - stay["baseline"]
    xs = sm.add_constant(stay[["treated"]].astype(float))
    z = sps.norm.ppf(0.5 + level / 2)
    rows = []
    for label, weights in (("complete cases", np.ones(len(stay))),
                           ("inverse probability weighted", w.to_numpy())):
        fit = sm.WLS(stay["change"], xs, weights=weights).fit(cov_type="HC1")
        est, se = float(fit.params["treated"]), float(fit.bse["treated"])
        rows.append({"analysis": label, "estimate": est, "std_error": se,
                     "ci_low": est - z * se, "ci_high": est + z * se, "n": len(stay),
                     "max_weight": float(np.max(weights))})
    return pd.DataFrame(rows)


def mice_sensitivity(scores: pd.DataFrame, construct: str, wave: int, *,
                     predictors: Sequence[str] | None = None, baseline: int | None = None,
                     n_imputations: int = 20, n_burnin: int = 10, k_pmm: int = 5,
                     seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """The arm difference at ``wave`` after multiple imputation by chained equations.

    Everyone scored at baseline is kept; the missing follow-up scores are imputed by
    predictive mean matching from the baseline score, the arm and the other predictors
    (statsmodels ``MICEData``), the analysis model ``followup ~ treated + baseline + ...``
    (ANCOVA) is fitted to each completed data set and pooled by Rubin's rules
    (statsmodels ``MICE``; as R ``mice(method = "pmm") |> with(lm(...)) |> pool()``).
    Because it adjusts for the baseline score the ANCOVA contrast is not numerically the same
    as the change-score contrast of :func:`ipw_sensitivity`; the complete-case ANCOVA is
    reported beside it for comparison.

    Parameters
    ----------
    scores : DataFrame
        Wide scores.
    construct : str
        Outcome construct.
    wave : int
        Follow-up wave.
    predictors : sequence of str, optional
        Baseline covariates of the imputation and analysis models (default the construct's
        baseline score and ``side``).
    baseline : int, optional
        Baseline wave.
    n_imputations, n_burnin : int
        Completed data sets pooled, and chained-equation cycles before the first.
    k_pmm : int
        Donors of predictive mean matching (5, as R ``mice``'s ``donors``).
    seed : int
        Random seed (numpy global state is saved and restored).
    level : float
        Confidence level (normal reference, as statsmodels pools).

    Returns
    -------
    DataFrame
        Two rows (``analysis`` = ``complete cases (ANCOVA)``, ``multiple imputation
        (ANCOVA)``): ``estimate``, ``std_error``, ``ci_low``, ``ci_high``, ``n``,
        ``n_imputed``, ``fraction_missing_info`` (MI row).

    Raises
    ------
    ModelError
        Missing columns or predictors missing at baseline; no follow-up scores at ``wave``.
    """
    import statsmodels.api as sm
    from statsmodels.imputation import mice

    preds = list(predictors) if predictors is not None else [construct, "side"]
    require_columns(scores, ["participant", "wave", "treated", construct, *preds],
                    "mice_sensitivity")
    base = baseline_wave(scores, baseline)
    frame = _analysis_frame(scores, construct, wave, base, preds)
    if frame["observed"].sum() < 3:
        raise ModelError(f"mice_sensitivity: fewer than 3 participants scored at wave {wave}")
    data = frame.drop(columns=["participant", "observed"]).astype(float)
    data.columns = [_safe(c) for c in data.columns]
    rhs = " + ".join(c for c in data.columns if c != "followup")
    formula = f"followup ~ {rhs}"
    z = sps.norm.ppf(0.5 + level / 2)
    cc = sm.OLS.from_formula(formula, data.dropna()).fit()
    rows = [{"analysis": "complete cases (ANCOVA)", "estimate": float(cc.params["treated"]),
             "std_error": float(cc.bse["treated"]), "n": int(frame["observed"].sum()),
             "n_imputed": 0, "fraction_missing_info": math.nan}]
    # statsmodels' MICE draws from numpy's legacy global generator and takes no Generator:
    # seed it for reproducibility and give the caller's state back afterwards.
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(seed)  # noqa: NPY002
        # 5 donors as R mice's pmm (statsmodels' default 20 pulls imputations towards the
        # mean: on the reference panel it gave 3.39 where R gives 4.02)
        imp = mice.MICEData(data, k_pmm=k_pmm, rng=np.random.RandomState(seed))
        res = mice.MICE(formula, sm.OLS, imp).fit(n_burnin=n_burnin,
                                                   n_imputations=n_imputations)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    idx = list(res.model.exog_names).index("treated")
    rows.append({"analysis": "multiple imputation (ANCOVA)", "estimate": float(res.params[idx]),
                 "std_error": float(res.bse[idx]), "n": len(frame),
                 "n_imputed": int(len(frame) - frame["observed"].sum()),
                 "fraction_missing_info": float(res.frac_miss_info[idx])})
    out = pd.DataFrame(rows)
    out["ci_low"] = out["estimate"] - z * out["std_error"]
    out["ci_high"] = out["estimate"] + z * out["std_error"]
    return out[["analysis", "estimate", "std_error", "ci_low", "ci_high", "n", "n_imputed",
                "fraction_missing_info"]]


def _safe(name: str) -> str:
    # patsy needs plain identifiers; dummies like "side_South" already are, others are cleaned
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(name))
