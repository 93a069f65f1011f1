"""Callaway & Sant'Anna (2021) group-time average treatment effects and their aggregations.

:func:`callaway_santanna` estimates ATT(g, t), the average effect at period ``t`` on the units
first treated at period ``g``, for staggered entry (dialogues starting at different waves),
comparing the change in the outcome since the last period before ``g`` with the same change
among never-treated units (``control="never"``) or among units not yet treated by ``t``
(``control="notyet"``). Without covariates the doubly-robust, inverse-probability and
regression estimators of R ``did`` coincide with this difference of mean changes.

Pre-treatment periods use the "varying" base period of R ``did`` (``t-1`` to ``t``), so the
leads are short placebo differences; their joint Wald test is the pre-trend test.

Aggregations (R ``did::aggte``), each with its influence function including the estimation of
the group shares that weight it:

==========  ===========================================================================
simple      average of all post-treatment ATT(g, t), weighted by group size
group       per cohort, the mean over its post-treatment periods; overall: weighted by
            cohort size
dynamic     per event time e = t - g, the cohort-size-weighted mean (event study);
            overall: the mean over e >= 0
calendar    per period, the cohort-size-weighted mean over treated cohorts; overall: the
            mean over periods
==========  ===========================================================================

Standard errors come from the influence functions (R ``did`` with ``bstrap = FALSE``):
``V = Psi' Psi / n^2`` over units, normal reference. With ``cluster=`` the influence functions
are summed within clusters (``V = G/(G-1) sum_c psi_c psi_c' / n^2``, t with G-1 df) — R
``did`` only clusters through its multiplier bootstrap; with few clusters (dialogues: a
handful) ``inference="wild"`` runs the multiplier (wild) bootstrap at the cluster level with
Webb's six-point weights, as R ``did``'s ``mboot`` does with Mammen weights (see
``models.did.wild`` for why Webb); both clustered variants use t(G-1).

References
----------
Callaway, B., & Sant'Anna, P. H. C. (2021). Difference-in-differences with multiple time
periods. Journal of Econometrics, 225(2), 200-230.
Sant'Anna, P. H. C., & Zhao, J. (2020). Doubly robust difference-in-differences estimators.
Journal of Econometrics, 219(1), 101-122.
Callaway, B., & Sant'Anna, P. H. C. (2021). did: Difference in Differences. R package 2.x.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from ...errors import ModelError, TrackIIEvalWarning
from ..results import FitRecord, data_fingerprint, package_versions
from ._data import staggered_panel
from .result import DidFit

__all__ = ["att_covariates", "callaway_santanna"]


def _fmt(v: float) -> str:
    return f"{v:g}"


def _covariate_arrays(data: pd.DataFrame, long: pd.DataFrame, covariates: list[str],
                      entity: str, time: str, periods: np.ndarray,
                      what: str) -> np.ndarray | None:
    """Covariates as an array (n_units, n_periods, k) aligned with the balanced panel."""
    if not covariates:
        return None
    missing = [c for c in covariates if c not in data.columns]
    if missing:
        raise ModelError(f"{what}: covariate column(s) {', '.join(missing)} not in the data")
    for c in covariates:
        if not pd.api.types.is_numeric_dtype(data[c]):
            raise ModelError(f"{what}: covariate '{c}' is not numeric; code it as 0/1 columns "
                             "(one per level but one)")
    units = long[entity].drop_duplicates().to_numpy()  # the panel's (sorted) unit order
    frame = data[data[entity].isin(units)].set_index([entity, time])[covariates]
    grid = pd.MultiIndex.from_product([units, np.sort(long[time].unique())],
                                      names=[entity, time])
    values = frame.reindex(grid)
    if values.isna().any().any():
        col = values.columns[values.isna().any()][0]
        n_bad = int(values[col].isna().groupby(level=0).any().sum())
        raise ModelError(f"{what}: covariate '{col}' is missing for {n_bad} unit(s) of the "
                         "balanced panel at some period; fill it (e.g. carry the baseline "
                         "value) or drop those units")
    return values.to_numpy(float).reshape(len(units), len(periods), len(covariates))


def _logit(x: np.ndarray, d: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression of ``d`` on ``x`` by Newton-Raphson: fitted probabilities and
    (X'WX)^-1 (R ``glm(family = binomial)`` and its ``vcov``)."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(x @ beta, -35, 35)))
        w = p * (1 - p)
        hess = (x * w[:, None]).T @ x
        try:
            step = np.linalg.solve(hess, x.T @ (d - p))
        except np.linalg.LinAlgError:
            raise ModelError(f"{what}: the propensity score model is singular (a covariate is "
                             "constant or collinear among these units)") from None
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        raise ModelError(f"{what}: the propensity score model did not converge (a covariate "
                         "separates treated from comparison units); use est_method='reg'")
    p = 1 / (1 + np.exp(-np.clip(x @ beta, -35, 35)))
    return p, np.linalg.inv((x * (p * (1 - p))[:, None]).T @ x)


def att_covariates(dy: np.ndarray, d: np.ndarray, x: np.ndarray, method: str,
                   what: str = "ATT", trim: float = 0.995) -> tuple[float, np.ndarray, int]:
    """ATT of one 2x2 comparison with covariates, and its influence function.

    The panel estimators of Sant'Anna & Zhao (2020) as R ``DRDID`` computes them (and R
    ``did``'s ``att_gt(est_method = "dr" | "reg")`` calls them per group-time cell):

    - ``"reg"`` (outcome regression, Heckman, Ichimura & Todd 1997): the change ``dy`` is
      regressed on ``x`` among comparison units; ATT = mean over treated units of
      dy - x'b. ``drdid::reg_did_panel``.
    - ``"dr"`` (doubly robust, Sant'Anna & Zhao 2020, eq. 3.1): the same outcome regression
      plus a logistic propensity score p(x); comparison units weighted by p/(1-p)
      (normalised), ATT = mean_treated(dy - x'b) - weighted mean_comparison(dy - x'b);
      consistent if either model is right. ``DRDID::drdid_panel``; comparison units with
      p(x) >= ``trim`` get weight 0 (DRDID's trimming).

    Parameters
    ----------
    dy : ndarray, shape (n,)
        Outcome change from the base period, treated and comparison units of the cell.
    d : ndarray, shape (n,)
        1 treated, 0 comparison.
    x : ndarray, shape (n, k)
        Covariates with a leading column of ones.
    method : {"dr", "reg"}
    what : str
        For messages.
    trim : float
        Propensity score above which comparison units are dropped (``"dr"``).

    Returns
    -------
    att : float
    psi : ndarray, shape (n,)
        Influence function (mean 0; var(psi) / n is the variance of ``att``), accounting for
        the estimation of both working models.
    n_trimmed : int
        Comparison units trimmed.
    """
    n = len(dy)
    ctrl = d == 0
    xc = x[ctrl]
    xtx = xc.T @ xc
    if np.linalg.matrix_rank(xtx) < x.shape[1]:
        raise ModelError(f"{what}: the outcome regression among comparison units is singular "
                         "(a covariate is constant or collinear among them)")
    b = np.linalg.solve(xtx, xc.T @ dy[ctrl])
    resid = dy - x @ b
    w_treat = d.astype(float)
    # asymptotic linear representation of the OLS coefficients (comparison units)
    xpx_inv = np.linalg.inv(xtx / n)
    lin_ols = ((1 - d) * resid)[:, None] * x @ xpx_inv
    n_trim = 0
    if method == "reg":
        att_treat = w_treat * dy
        att_cont = w_treat * (x @ b)
        eta_t = att_treat.mean() / w_treat.mean()
        eta_c = att_cont.mean() / w_treat.mean()
        inf_treat = (att_treat - w_treat * eta_t) / w_treat.mean()
        m1 = (w_treat[:, None] * x).mean(axis=0)
        inf_cont = (att_cont - w_treat * eta_c + lin_ols @ m1) / w_treat.mean()
        return float(eta_t - eta_c), inf_treat - inf_cont, 0
    ps, ps_cov = _logit(x, d.astype(float), what)
    ps = np.minimum(ps, 1 - 1e-6)
    keep = np.where(ctrl, ps < trim, True)
    n_trim = int((~keep).sum())
    w_cont = keep * ps * (1 - d) / (1 - ps)
    att_treat = w_treat * resid
    att_cont = w_cont * resid
    eta_t = att_treat.mean() / w_treat.mean()
    eta_c = att_cont.mean() / w_cont.mean()
    lin_ps = ((d - ps)[:, None] * x) @ (ps_cov * n)
    inf_treat = (att_treat - w_treat * eta_t
                 - lin_ols @ (w_treat[:, None] * x).mean(axis=0)) / w_treat.mean()
    m2 = (w_cont * (resid - eta_c))[:, None] * x
    inf_cont = (att_cont - w_cont * eta_c + lin_ps @ m2.mean(axis=0)
                - lin_ols @ (w_cont[:, None] * x).mean(axis=0)) / w_cont.mean()
    return float(eta_t - eta_c), inf_treat - inf_cont, n_trim


def callaway_santanna(
    data: pd.DataFrame, outcome: str, *, entity: str = "participant", time: str = "wave",
    cohort: str = "cohort", control: Literal["never", "notyet"] = "never",
    cluster: str | None = None, inference: Literal["analytic", "wild"] = "analytic",
    n_boot: int = 999, seed: int = 12345, covariates: Sequence[str] = (),
    est_method: Literal["dr", "reg"] = "dr",
) -> DidFit:
    """Callaway-Sant'Anna ATT(g, t) with the simple, group, dynamic and calendar aggregations.

    Parameters
    ----------
    data : pandas.DataFrame
        Long panel: one row per unit and period.
    outcome : str
        Outcome column.
    entity, time : str
        Unit and period (numeric wave) columns.
    cohort : str
        First period in which the unit is treated (its dialogue's first wave); 0 or missing
        for never treated (R ``did``'s ``gname``).
    control : {"never", "notyet"}
        Comparison units: never treated, or never and not yet treated by ``max(t, base)``.
    cluster : str, optional
        Column of the cluster (e.g. the dialogue) the units are nested in; default: units.
    inference : {"analytic", "wild"}
        Influence-function standard errors (clustered when ``cluster`` is given), or the
        wild (multiplier) cluster bootstrap of the influence functions with Webb weights, as
        R ``did``'s ``mboot`` with ``clustervars`` (covariance of the draws; t with G-1 df).
        With few clusters the t(G-1) reference is what protects the intervals: the
        multiplier draws reproduce the clustered covariance, they do not correct it.
    n_boot, seed : int
        Bootstrap draws and seed (``inference="wild"``).
    covariates : sequence of str
        Numeric covariates under which parallel trends are assumed (R ``did``'s
        ``xformla = ~ x1 + x2``); each unit's value at the base period of each comparison is
        used (time-invariant covariates: their only value). Empty: no covariates.
    est_method : {"dr", "reg"}
        With covariates: the doubly robust estimator (Sant'Anna & Zhao 2020; R ``did``'s
        default) or outcome regression (:func:`att_covariates`). Influence functions account
        for the estimated working models, so standard errors, clustering, the wild bootstrap
        and the aggregations work as without covariates. Not checked against R ``did``
        (not installable here): checked against an independent statsmodels computation of
        the same formulas, a nonparametric bootstrap of the standard errors and a simulated
        panel where only conditional parallel trends hold (tests/models/test_did_covariates.py).

    Returns
    -------
    DidFit
        Terms ``ATT(g=..,t=..)``, ``group:g``, ``event:e``, ``calendar:t`` and the overall
        ``simple``, ``group``, ``dynamic``, ``calendar``; ``vcov`` covers all of them (so
        ``lincom`` is exact); ``pretest`` the joint test of the leads; ``info["aggregates"]``
        the overall ATT per aggregation.

    Raises
    ------
    ModelError
        Bad columns or design (see ``staggered_panel``), an unknown option, or no ATT(g, t)
        that the data can identify.

    Examples
    --------
    R: ``att_gt(yname, tname, idname, gname, data, control_group = "nevertreated",
    bstrap = FALSE)`` then ``aggte(out, type = "simple")``; checked on ``mpdta``
    (tests/fixtures/did).
    """
    what = f"Callaway-Sant'Anna DiD of '{outcome}'"
    if control not in {"never", "notyet"}:
        raise ModelError(f"{what}: control must be 'never' or 'notyet', not {control!r}")
    if inference not in {"analytic", "wild"}:
        raise ModelError(f"{what}: inference must be 'analytic' or 'wild', not {inference!r}")
    if inference == "wild" and not cluster:
        raise ModelError(f"{what}: inference='wild' resamples clusters; name the cluster column "
                         "(e.g. cluster='dialogue')")
    if est_method not in {"dr", "reg"}:
        raise ModelError(f"{what}: est_method must be 'dr' or 'reg', not {est_method!r}")
    covariates = list(covariates)
    panel = staggered_panel(data, outcome, entity=entity, time=time, cohort=cohort,
                            cluster=cluster, what=what)
    y, periods, G = panel.y, panel.periods, panel.cohort
    n = len(G)
    warns = list(panel.warnings)
    # Dropping units to balance the panel changes the estimand's population: a note in
    # fit.warnings alone is easy to miss, so whoever runs the fit is told too.
    for w in panel.warnings:
        warnings.warn(f"{what}: {w}", TrackIIEvalWarning, stacklevel=2)
    xcov = _covariate_arrays(data, panel.long, covariates, entity, time, periods, what)
    n_trimmed = 0
    groups = np.array(sorted(set(G[np.isfinite(G)])))
    groups = groups[groups <= periods[-1]]
    never = np.isinf(G) | (G > periods[-1])
    if control == "never" and not never.any():
        raise ModelError(f"{what}: no never-treated unit; use control='notyet'")

    # ------------------------------------------------------------------ ATT(g, t)
    terms: list[str] = []
    att: list[float] = []
    infl: list[np.ndarray] = []
    gt: list[tuple[float, float]] = []
    notes: list[str] = []
    skipped: list[str] = []
    for g in groups:
        # the last period before g is the base of every post-treatment effect
        g_base = int(np.searchsorted(periods, g)) - 1
        for j in range(1, len(periods)):
            t = periods[j]
            base = g_base if t >= g else j - 1  # "varying" base period for the leads
            treat = G == g
            if control == "never":
                ctrl = never
            else:
                ctrl = (never | (G > max(t, periods[base]))) & (G != g)
            label = f"ATT(g={_fmt(g)},t={_fmt(t)})"
            if ctrl.sum() == 0 or treat.sum() == 0:
                skipped.append(label)
                continue
            dy = y[:, j] - y[:, base]
            n1 = treat.sum() + ctrl.sum()
            psi = np.zeros(n)
            if xcov is not None:
                cell = treat | ctrl
                x = np.column_stack([np.ones(int(cell.sum())), xcov[cell, base, :]])
                est_gt, psi[cell], trimmed = att_covariates(
                    dy[cell], treat[cell].astype(int), x, est_method, f"{what}, {label}")
                n_trimmed += trimmed
            else:
                mu1, mu0 = dy[treat].mean(), dy[ctrl].mean()
                p = treat.sum() / n1
                # influence function of the difference of mean changes on the subsample
                # (the doubly-robust one of Sant'Anna & Zhao without covariates)
                psi[treat] = (dy[treat] - mu1) / p
                psi[ctrl] = -(dy[ctrl] - mu0) / (1 - p)
                est_gt = mu1 - mu0
            terms.append(label)
            att.append(est_gt)
            # rescaled to the whole sample as R did does (n / n1)
            infl.append(psi * n / n1)
            gt.append((g, t))
            notes.append("pre-treatment placebo (lead)" if t < g else "")
    if not terms:
        raise ModelError(f"{what}: no group-time effect is identified (no comparison unit for "
                         f"{', '.join(skipped)})")
    if n_trimmed:
        warns.append(f"{n_trimmed} comparison unit-cells with a propensity score above 0.995 "
                     "got weight 0 (DRDID's trimming): little overlap on the covariates")
    warns += [f"{s} not estimable: no {'never' if control == 'never' else 'never- or not-yet'}"
              "-treated comparison unit at that period" for s in skipped]
    att_v = np.array(att)
    psi_gt = np.column_stack(infl)
    g_arr = np.array([a for a, _ in gt])
    t_arr = np.array([b for _, b in gt])

    # ------------------------------------------------------------------ aggregations
    # group shares P(G = g) over all units (R did: pg), per cohort and per ATT(g, t)
    pg_group = np.array([(G == g).mean() for g in groups])
    pg = np.array([(G == g).mean() for g in g_arr])
    post = t_arr >= g_arr
    agg_terms: list[str] = []
    agg_est: list[float] = []
    agg_psi: list[np.ndarray] = []

    def weighted(keep: np.ndarray) -> tuple[float, np.ndarray]:
        w = pg[keep] / pg[keep].sum()
        est = float(w @ att_v[keep])
        # weights estimated from the cohort shares: their influence function (R did's wif)
        ind = np.column_stack([(G == g).astype(float) for g in g_arr[keep]])
        if1 = (ind - pg[keep]) / pg[keep].sum()
        if2 = np.outer((ind - pg[keep]).sum(axis=1), pg[keep] / pg[keep].sum() ** 2)
        return est, psi_gt[:, keep] @ w + (if1 - if2) @ att_v[keep]

    est, ps = weighted(post)
    simple = (est, ps)
    # group
    g_est, g_psi = [], []
    for g in groups:
        keep = (g_arr == g) & post
        if not keep.any():
            continue
        g_est.append(float(att_v[keep].mean()))
        g_psi.append(psi_gt[:, keep].mean(axis=1))
        agg_terms.append(f"group:{_fmt(g)}")
    agg_est += g_est
    agg_psi += g_psi
    have = np.array([((g_arr == g) & post).any() for g in groups])
    wg = pg_group[have] / pg_group[have].sum()
    ind = np.column_stack([(G == g).astype(float) for g in groups[have]])
    pgh = pg_group[have]
    wif = (ind - pgh) / pgh.sum() - np.outer((ind - pgh).sum(axis=1), pgh / pgh.sum() ** 2)
    group_overall = (float(wg @ np.array(g_est)),
                     np.column_stack(g_psi) @ wg + wif @ np.array(g_est))
    # dynamic (event study)
    e_arr = t_arr - g_arr
    e_est, e_psi, e_vals = [], [], []
    for e in np.unique(e_arr):
        est, ps = weighted(e_arr == e)
        e_est.append(est)
        e_psi.append(ps)
        e_vals.append(e)
        agg_terms.append(f"event:{_fmt(e)}")
    agg_est += e_est
    agg_psi += e_psi
    pos = np.array(e_vals) >= 0
    dynamic = (float(np.mean(np.array(e_est)[pos])),
               np.column_stack(e_psi)[:, pos].mean(axis=1))
    # calendar
    c_est, c_psi = [], []
    for t in np.unique(t_arr[post]):
        est, ps = weighted(post & (t_arr == t))
        c_est.append(est)
        c_psi.append(ps)
        agg_terms.append(f"calendar:{_fmt(t)}")
    agg_est += c_est
    agg_psi += c_psi
    calendar = (float(np.mean(c_est)), np.column_stack(c_psi).mean(axis=1))
    overall = {"simple": simple, "group": group_overall, "dynamic": dynamic,
               "calendar": calendar}

    all_terms = [*terms, *agg_terms, *overall]
    est_all = np.array([*att_v, *agg_est, *(v[0] for v in overall.values())])
    psi_all = np.column_stack([psi_gt, *agg_psi, *(v[1] for v in overall.values())])

    # ------------------------------------------------------------------ inference
    df = np.nan
    if cluster:
        sums = np.zeros((panel.n_clusters, psi_all.shape[1]))
        np.add.at(sums, panel.cluster, psi_all)
    else:
        sums = psi_all
    n_cl = sums.shape[0]
    if inference == "analytic":
        vcov = sums.T @ sums / n**2
        if cluster:
            vcov *= n_cl / (n_cl - 1)
            df = float(n_cl - 1)
            vcov_text = (f"influence function, clustered by {cluster} (G/(G-1)); t({n_cl - 1})")
        else:
            vcov_text = "influence function (R did analytic, bstrap = FALSE); normal"
    else:
        from .wild import webb_weights

        rng = np.random.default_rng(seed)
        draws = webb_weights(rng, (n_boot, n_cl)) @ sums / n
        vcov = np.cov(draws, rowvar=False)
        df = float(n_cl - 1)
        vcov_text = (f"wild cluster (multiplier) bootstrap by {cluster}, Webb weights, "
                     f"{n_boot} draws, seed {seed}; t({n_cl - 1})")
    if cluster and n_cl < 30:
        warns.append(f"only {n_cl} clusters: cluster-robust inference is unreliable with few "
                     "clusters (Cameron & Miller 2015); "
                     + ("intervals from the wild cluster bootstrap, which is the better choice "
                        "but still rough below about 10 clusters"
                        if inference == "wild" else "use inference='wild'"))
    se = np.sqrt(np.clip(np.diag(vcov), 0, None))

    # ------------------------------------------------------------------ pre-trends
    lead = np.array([t < g for g, t in gt])
    pretest: dict[str, object] = {}
    if lead.sum() == 0:
        pretest = {"note": "no lead: no cohort has two pre-treatment periods (a single "
                           "pre-treatment wave cannot test parallel trends)"}
    else:
        idx = np.flatnonzero(lead)
        v_pre = vcov[np.ix_(idx, idx)]
        if np.linalg.matrix_rank(v_pre) < len(idx):
            pretest = {"note": "the covariance of the leads is singular; no Wald test",
                       "df": len(idx)}
        else:
            w = float(att_v[idx] @ np.linalg.solve(v_pre, att_v[idx]))
            pretest = {"statistic": w, "df": len(idx),
                       "p_value": float(sps.chi2.sf(w, len(idx))),
                       "note": "joint Wald test that all leads ATT(g,t), t < g, are zero "
                               "(R did's W)"}

    roles = ["other" if (i < len(terms) and lead[i]) or t.startswith("event:-") else "effect"
             for i, t in enumerate(all_terms)]
    all_notes = [*notes, *("pre-treatment placebo (lead)" if t.startswith("event:-") else ""
                           for t in agg_terms), *([""] * len(overall))]
    waves = {t: int(b) for t, (_, b) in zip(terms, gt, strict=True)}
    # group-time effects without a comparison are reported, not dropped (NaN, not estimable;
    # vcov covers the estimable terms only, in order, as PanelFit's convention)
    k_ok = len(all_terms)
    all_terms += skipped
    est_all = np.concatenate([est_all, np.full(len(skipped), np.nan)])
    se = np.concatenate([se, np.full(len(skipped), np.nan)])
    roles += ["effect"] * len(skipped)
    all_notes += ["not estimable: no comparison unit at that period"] * len(skipped)
    n_groups = {"unit": int(n)}
    if cluster:
        n_groups[cluster] = int(n_cl)
    record = FitRecord(
        estimator="Callaway-Sant'Anna group-time ATT", engine="trackii",
        optimizer="closed form", tolerances={}, n_evals=None, converged=True,
        warnings=tuple(warns), versions=package_versions(),
        data_fingerprint=data_fingerprint(panel.long), n_obs=int(y.size), n_groups=n_groups,
        vcov=vcov_text,
    )
    control_text = "never-treated" if control == "never" else "not-yet-treated"
    return DidFit(
        outcome=outcome, estimator="Callaway-Sant'Anna group-time ATT",
        terms=tuple(all_terms), estimate=tuple(float(v) for v in est_all),
        std_error=tuple(float(v) for v in se), df=(df,) * len(all_terms),
        estimable=tuple(i < k_ok for i in range(len(all_terms))), roles=tuple(roles),
        notes=tuple(all_notes),
        vcov=tuple(tuple(float(v) for v in row) for row in vcov), record=record,
        waves=waves,
        method=f"{control_text} comparison units, varying base period, "
        + (f"{'doubly robust' if est_method == 'dr' else 'outcome regression'} adjustment "
           f"for {', '.join(covariates)} (Sant'Anna & Zhao 2020)" if covariates
           else "no covariates")
        + "; aggregations weighted by cohort size",
        pretest=pretest,
        info={"control": control, "cohorts": [float(g) for g in groups],
              "covariates": covariates, "est_method": est_method if covariates else "",
              "aggregates": {k: float(v[0]) for k, v in overall.items()},
              "n_clusters": int(n_cl), "n_units_data": int(panel.n_units_data),
              "n_units_kept": int(n), "n_units_dropped": int(panel.n_units_data - n)},
    )
