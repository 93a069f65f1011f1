"""Regression-based DiD for staggered entry: static TWFE with its Goodman-Bacon decomposition,
the Sun & Abraham interaction-weighted event study and the Borusyak-Jaravel-Spiess imputation
estimator.

All three work on a balanced panel (``staggered_panel``) with a cohort column (first treated
period; 0 never). Standard errors are cluster-robust by unit, or by ``cluster`` (e.g. the
dialogue), with the project's convention (``models.panel``: "sss", G/(G-1)(N-1)/(N-K), K the
estimated coefficients, not the swept-out fixed effects; t with G-1 df); with
``inference="wild"`` the per-cluster scores are perturbed with Webb weights instead (few
clusters; see ``models.did.wild``).

Why show TWFE beside the robust estimators: with staggered entry and effects that grow with
exposure, the static TWFE coefficient is a weighted average of all 2x2 comparisons, including
"later vs earlier treated" ones that use already-treated units as controls (Goodman-Bacon 2021);
their weights can make it far from, even of the opposite sign to, any average effect. The
decomposition in ``info["bacon"]`` shows each comparison's estimate and weight; they sum to the
TWFE coefficient exactly.

References
----------
Goodman-Bacon, A. (2021). Difference-in-differences with variation in treatment timing. Journal
of Econometrics, 225(2), 254-277.
Sun, L., & Abraham, S. (2021). Estimating dynamic treatment effects in event studies with
heterogeneous treatment effects. Journal of Econometrics, 225(2), 175-199.
Borusyak, K., Jaravel, X., & Spiess, J. (2024). Revisiting event-study designs: robust and
efficient estimation. Review of Economic Studies, 91(6), 3253-3285.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from ...errors import ModelError
from ..panel import cluster_scale
from ..results import FitRecord, data_fingerprint, package_versions
from ._data import StaggeredPanel, staggered_panel
from .result import DidFit
from .wild import wcr_twfe, webb_weights

__all__ = ["bacon_decomposition", "imputation_did", "sun_abraham", "twfe_did"]

Inference = Literal["analytic", "wild", "cr2"]


def _fmt(v: float) -> str:
    return f"{v:g}"


def _demean2(x: np.ndarray) -> np.ndarray:
    """Two-way within transformation of (n_units, n_periods[, k]) arrays (balanced panel)."""
    return (x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True)
            + x.mean(axis=(0, 1), keepdims=True))


def _vcov(infl: np.ndarray, panel: StaggeredPanel, inference: Inference, n_params: int,
          cluster: str | None, n_boot: int, seed: int) -> tuple[np.ndarray, float, str, list[str]]:
    """Covariance of estimates from per-unit influence functions ``infl`` (n_units, k)."""
    n = infl.shape[0]
    sums = np.zeros((panel.n_clusters, infl.shape[1]))
    np.add.at(sums, panel.cluster, infl)
    g = panel.n_clusters
    who = cluster or "unit"
    warns = []
    if inference == "analytic":
        scale = cluster_scale("sss", int(panel.y.size), n_params, g)
        vcov = sums.T @ sums / n**2 * scale
        text = f"clustered by {who} (G/(G-1)(N-1)/(N-K) as plm 'sss'); t({g - 1})"
        df = float(g - 1)
    else:
        rng = np.random.default_rng(seed)
        draws = webb_weights(rng, (n_boot, g)) @ sums / n
        vcov = np.atleast_2d(np.cov(draws, rowvar=False))
        text = f"wild cluster bootstrap by {who}, Webb weights, {n_boot} draws, seed {seed}"
        df = float(g - 1)
    if cluster and g < 30:
        warns.append(f"only {g} clusters: cluster-robust inference is unreliable with few "
                     "clusters; " + ("wild cluster bootstrap used, still rough below about 10"
                                     if inference == "wild" else "use inference='wild'"))
    return vcov, df, text, warns


def _check(inference: str, cluster: str | None, what: str, cr2: bool = False) -> None:
    allowed = {"analytic", "wild", "cr2"} if cr2 else {"analytic", "wild"}
    if inference == "cr2" and not cr2:
        raise ModelError(f"{what}: inference='cr2' (Bell-McCaffrey) corrects the sandwich of "
                         "one least-squares fit and is offered for twfe_did and the event "
                         "study; use inference='wild' here")
    if inference not in allowed:
        raise ModelError(f"{what}: inference must be one of {', '.join(sorted(allowed))}, not "
                         f"{inference!r}")
    if inference == "wild" and not cluster:
        raise ModelError(f"{what}: inference='wild' resamples clusters; name the cluster column "
                         "(e.g. cluster='dialogue')")


def _ols_influence(X: np.ndarray, e: np.ndarray, n_units: int, n_periods: int) -> np.ndarray:
    """Per-unit influence functions n (X'X)^{-1} sum_t x_it e_it of OLS coefficients.

    X : (n_units * n_periods, k) within-transformed regressors, unit-major order.
    """
    bread = np.linalg.pinv(X.T @ X)
    scores = (X * e[:, None]).reshape(n_units, n_periods, -1).sum(axis=1)
    return n_units * scores @ bread


def _fit(estimator: str, outcome: str, panel: StaggeredPanel, terms: list[str],
         est: np.ndarray, vcov: np.ndarray, df: float, text: str, warns: list[str],
         roles: list[str], notes: list[str], method: str, cluster: str | None,
         pretest: dict | None = None, info: dict | None = None) -> DidFit:
    n_groups = {"unit": len(panel.cohort)}
    if cluster:
        n_groups[cluster] = int(panel.n_clusters)
    record = FitRecord(
        estimator=estimator, engine="trackii", optimizer="closed form", tolerances={},
        n_evals=None, converged=True, warnings=tuple([*panel.warnings, *warns]),
        versions=package_versions(), data_fingerprint=data_fingerprint(panel.long),
        n_obs=int(panel.y.size), n_groups=n_groups, vcov=text)
    se = np.sqrt(np.clip(np.diag(vcov), 0, None))
    return DidFit(
        outcome=outcome, estimator=estimator, terms=tuple(terms),
        estimate=tuple(float(v) for v in est), std_error=tuple(float(v) for v in se),
        df=(df,) * len(terms), estimable=(True,) * len(terms), roles=tuple(roles),
        notes=tuple(notes), vcov=tuple(tuple(float(v) for v in r) for r in vcov),
        record=record, method=method, pretest=pretest or {}, info=info or {})


def _wald(est: np.ndarray, vcov: np.ndarray, idx: np.ndarray, what: str) -> dict:
    if len(idx) == 0:
        return {"note": "no lead to test: no cohort has two or more pre-treatment waves (with a "
                        "single pre-treatment wave parallel trends cannot be tested)"}
    v = vcov[np.ix_(idx, idx)]
    if np.linalg.matrix_rank(v) < len(idx):
        return {"note": "the covariance of the leads is singular; no Wald test", "df": len(idx)}
    w = float(est[idx] @ np.linalg.solve(v, est[idx]))
    return {"statistic": w, "df": len(idx), "p_value": float(sps.chi2.sf(w, len(idx))),
            "note": f"joint Wald test that all {what} are zero"}


# ----------------------------------------------------------------------------- TWFE + Bacon
def twfe_did(data: pd.DataFrame, outcome: str, *, entity: str = "participant",
             time: str = "wave", cohort: str = "cohort", cluster: str | None = None,
             inference: Inference = "analytic", n_boot: int = 999, seed: int = 12345) -> DidFit:
    """Static two-way fixed-effects DiD with a time-varying treatment, and its Goodman-Bacon
    decomposition.

    ``y_it = a_i + l_t + beta D_it + e_it`` with ``D_it = 1{t >= cohort_i}``.

    Parameters
    ----------
    data, outcome, entity, time, cohort, cluster, n_boot, seed
        As :func:`trackii_eval.models.did.callaway_santanna`.
    inference : {"analytic", "wild", "cr2"}
        Clustered standard errors (CR1, t(G-1)); ``"wild"``: the restricted wild cluster
        bootstrap-t gives p and CI (:func:`~trackii_eval.models.did.wild.wcr_twfe`);
        ``"cr2"``: Bell-McCaffrey CR2 standard error with Satterthwaite degrees of freedom
        (:mod:`trackii_eval.models.cr2`, matches R clubSandwich). Which for few clusters
        (three dialogues): CR2 is analytic, needs no seed and reports how few effective df
        the data give (often 2-5), so its interval is honest without resampling; the WCR
        bootstrap imposes the null and keeps its size best when only one or two clusters
        are treated, but with 3 clusters it has only 6^3 = 216 distinct draws. Both are
        offered; report CR2 for the interval and the WCR p-value as a check.

    Returns
    -------
    DidFit
        One term ``D`` (role effect); ``info["bacon"]`` the 2x2 comparisons (type, treated
        and control cohorts, estimate, weight), which sum to ``beta`` exactly. With
        ``"cr2"`` ``df`` is the Satterthwaite df and the record's ``vcov`` says so.

    Raises
    ------
    ModelError
        Bad columns or design, or no variation in treatment after the fixed effects.

    Examples
    --------
    R: ``fixest::feols(y ~ D | id + wave, cluster = ~id)``; ``bacondecomp::bacon()``.
    """
    what = f"static TWFE DiD of '{outcome}'"
    _check(inference, cluster, what, cr2=True)
    panel = staggered_panel(data, outcome, entity=entity, time=time, cohort=cohort,
                            cluster=cluster, what=what)
    n, T = panel.y.shape
    D = (panel.periods[None, :] >= panel.cohort[:, None]).astype(float)
    Dt, yt = _demean2(D), _demean2(panel.y)
    vd = float((Dt**2).sum())
    if vd < 1e-12:
        raise ModelError(f"{what}: the treatment does not vary after unit and period effects")
    beta = float((Dt * yt).sum() / vd)
    e = (yt - beta * Dt).ravel()
    infl = _ols_influence(Dt.reshape(-1, 1), e, n, T)
    vcov, df, text, warns = _vcov(infl, panel, "analytic", 1, cluster, n_boot, seed)
    wild: dict = {}
    if inference == "cr2":
        vcov, df, text = _cr2_twfe(panel, D, cluster)
        warns = [w.replace("use inference='wild'", "CR2 with Satterthwaite df used")
                 for w in warns]
    if inference == "wild":
        # few clusters: the restricted wild cluster bootstrap-t gives the p-value and the
        # interval; the standard error shown stays the analytic clustered one
        wild = {"D": wcr_twfe(Dt, yt, panel.cluster, panel.n_clusters, n_boot=n_boot,
                              seed=seed, scale=cluster_scale("sss", n * T, 1,
                                                             panel.n_clusters))}
        text += (f"; p-value and 95% CI from the restricted wild cluster bootstrap-t (WCR, "
                 f"Webb weights, {n_boot} draws, seed {seed})")
    bacon = bacon_decomposition(panel)
    total = sum(r["weight"] * r["estimate"] for r in bacon)
    if abs(total - beta) > 1e-8 * max(1.0, abs(beta)):  # the identity must hold exactly
        warns.append(f"Goodman-Bacon decomposition sums to {total:.6g}, not the TWFE "
                     f"{beta:.6g}; decomposition not reliable for this design")
    forbidden = sum(r["weight"] for r in bacon if r["type"] == "later vs earlier treated")
    note = (f"{forbidden:.0%} of the weight is on later-vs-earlier-treated comparisons (already "
            "treated units as controls); biased if effects change with exposure"
            if forbidden > 0 else "")
    if forbidden > 0:
        warns.append("static TWFE with staggered entry: " + note + "; compare with "
                     "callaway_santanna / sun_abraham / imputation_did")
    return _fit("Static two-way fixed-effects DiD", outcome, panel, ["D"], np.array([beta]),
                vcov, df, text, warns, ["effect"], [note],
                "unit and period fixed effects, D = 1 from the first treated wave on",
                cluster, info={"bacon": bacon, "wild": wild})


def _cr2_twfe(panel: StaggeredPanel, D: np.ndarray,
              cluster: str | None) -> tuple[np.ndarray, float, str]:
    """CR2 covariance and Satterthwaite df of the static TWFE coefficient
    (:mod:`trackii_eval.models.cr2`; unit effects absorbed, period dummies in the design)."""
    from ..cr2 import cr2, within_design

    n, T = panel.y.shape
    long = pd.DataFrame({"unit": np.repeat(np.arange(n), T), "period": np.tile(panel.periods, n),
                         "D": D.ravel(), "y": panel.y.ravel(),
                         "cluster": np.repeat(panel.cluster, T)})
    x, y, _ = within_design(long, "unit", "period", ["D"], "y")
    fit = cr2(x, y, long["cluster"].to_numpy())
    df = float(fit.df[0])
    who = cluster or "unit"
    text = (f"CR2 (Bell-McCaffrey) clustered by {who}, {fit.n_clusters} clusters; t with "
            f"Satterthwaite df {df:.2f} (Pustejovsky-Tipton), as R clubSandwich")
    return fit.vcov[:1, :1], df, text


def bacon_decomposition(panel: StaggeredPanel) -> list[dict]:
    """Goodman-Bacon (2021, Theorem 1) decomposition of the static TWFE coefficient.

    Parameters
    ----------
    panel : StaggeredPanel
        Balanced panel (units treated before the first period already dropped).

    Returns
    -------
    list of dict
        One per 2x2 comparison: ``type`` ("treated vs never treated", "earlier vs later
        treated", "later vs earlier treated"), ``treated``, ``control`` (cohort, ``inf`` as
        None for never treated), ``estimate``, ``weight``; the weights sum to 1.
    """
    y, periods, G = panel.y, panel.periods, panel.cohort
    T = len(periods)
    cohorts = sorted(g for g in set(G[np.isfinite(G)]) if g <= periods[-1])
    never = ~np.isin(G, cohorts)
    share = {g: float((G == g).mean()) for g in cohorts}
    n_u = float(never.mean())
    dbar = {g: float((periods >= g).mean()) for g in cohorts}
    D = (periods[None, :] >= G[:, None]).astype(float)
    vd = float((_demean2(D) ** 2).mean())

    def mean(mask_units: np.ndarray, mask_t: np.ndarray) -> float:
        return float(y[np.ix_(mask_units, mask_t)].mean())

    rows = []
    for k in cohorts:
        uk = G == k
        pre_k, post_k = periods < k, periods >= k
        if n_u > 0:
            nk = share[k] / (share[k] + n_u)
            w = (share[k] + n_u) ** 2 * nk * (1 - nk) * dbar[k] * (1 - dbar[k]) / vd
            est = ((mean(uk, post_k) - mean(uk, pre_k))
                   - (mean(never, post_k) - mean(never, pre_k)))
            rows.append({"type": "treated vs never treated", "treated": k, "control": None,
                         "estimate": est, "weight": w})
        for ell in cohorts:
            if ell <= k:
                continue
            ul = G == ell
            mid = (periods >= k) & (periods < ell)
            post_l = periods >= ell
            nkl = share[k] / (share[k] + share[ell])
            dk, dl = dbar[k], dbar[ell]
            w_k = (((share[k] + share[ell]) * (1 - dl)) ** 2 * nkl * (1 - nkl)
                   * (dk - dl) / (1 - dl) * (1 - dk) / (1 - dl) / vd)
            w_l = ((((share[k] + share[ell]) * dk) ** 2) * nkl * (1 - nkl)
                   * dl / dk * (dk - dl) / dk / vd)
            est_k = ((mean(uk, mid) - mean(uk, pre_k)) - (mean(ul, mid) - mean(ul, pre_k)))
            est_l = ((mean(ul, post_l) - mean(ul, mid)) - (mean(uk, post_l) - mean(uk, mid)))
            rows.append({"type": "earlier vs later treated", "treated": k, "control": ell,
                         "estimate": est_k, "weight": w_k})
            rows.append({"type": "later vs earlier treated", "treated": ell, "control": k,
                         "estimate": est_l, "weight": w_l})
    del T
    return rows


# ----------------------------------------------------------------------------- Sun & Abraham
def sun_abraham(data: pd.DataFrame, outcome: str, *, entity: str = "participant",
                time: str = "wave", cohort: str = "cohort", cluster: str | None = None,
                inference: Inference = "analytic", n_boot: int = 999,
                seed: int = 12345) -> DidFit:
    """Sun & Abraham (2021) interaction-weighted event study.

    Regresses the outcome on unit and period fixed effects and a full set of cohort x
    relative-period indicators (relative period -1 omitted), with the never-treated as the
    control cohort (or, without never-treated units, the last-treated cohort, keeping only
    periods before it is treated); each event-time effect is the average of the cohort-specific
    coefficients weighted by the cohorts' shares of units, the weights treated as fixed (as
    ``fixest::sunab`` and ``aggregate``). ``overall`` averages the post-treatment
    cohort-period coefficients weighted by cohort size (fixest's ``att``).

    Parameters
    ----------
    data, outcome, entity, time, cohort, cluster, inference, n_boot, seed
        As :func:`trackii_eval.models.did.callaway_santanna`.

    Returns
    -------
    DidFit
        Terms ``event:e`` (e != -1; leads role "other") and ``overall``; ``pretest`` the joint
        Wald test of the leads.

    Raises
    ------
    ModelError
        Bad columns or design.

    Examples
    --------
    R: ``fixest::feols(y ~ sunab(cohort, wave) | id + wave, cluster = ~id)``.
    """
    what = f"Sun-Abraham event study of '{outcome}'"
    _check(inference, cluster, what)
    panel = staggered_panel(data, outcome, entity=entity, time=time, cohort=cohort,
                            cluster=cluster, what=what)
    periods, G = panel.periods, panel.cohort
    warns: list[str] = []
    never = ~(G <= periods[-1])
    if not never.any():
        last = float(G.max())
        keep_t = periods < last
        warns.append(f"no never-treated unit: the last-treated cohort ({last:g}) is the "
                     f"control and periods from {last:g} on are dropped")
        y = panel.y[:, keep_t]
        per = periods[keep_t]
        control = G == last
    else:
        y, per, control = panel.y, periods, never
    n, T = y.shape
    cells = []  # (cohort, period): every cell of a treated cohort but its last pre-period
    for g in sorted(set(G[~control])):
        ref = per[per < g].max()
        cells += [(g, t) for t in per if t != ref]
    X = np.zeros((n, T, len(cells)))
    for j, (g, t) in enumerate(cells):
        X[G == g, np.searchsorted(per, t), j] = 1.0
    Xt = _demean2(X).reshape(n * T, -1)
    yt = _demean2(y).ravel()
    delta, *_ = np.linalg.lstsq(Xt, yt, rcond=None)
    e = yt - Xt @ delta
    infl_delta = _ols_influence(Xt, e, n, T)
    rel = [round(float(t - g)) for g, t in cells]
    share = {g: float((G == g).mean()) for g in set(G[~control])}
    terms, rows = [], []
    for ev in sorted(set(rel)):
        idx = [j for j, r in enumerate(rel) if r == ev]
        w = np.zeros(len(cells))
        tot = sum(share[cells[j][0]] for j in idx)
        for j in idx:
            w[j] = share[cells[j][0]] / tot
        terms.append(f"event:{ev}")
        rows.append(w)
    post = [j for j, r in enumerate(rel) if r >= 0]
    w = np.zeros(len(cells))
    tot = sum(share[cells[j][0]] for j in post)
    for j in post:
        w[j] = share[cells[j][0]] / tot
    terms.append("overall")
    rows.append(w)
    W = np.array(rows)
    est = W @ delta
    vcov_d, df, text, w2 = _vcov(infl_delta, panel, inference, len(cells), cluster, n_boot, seed)
    vcov = W @ vcov_d @ W.T
    lead_idx = np.array([i for i, t in enumerate(terms) if t.startswith("event:-")], dtype=int)
    roles = ["other" if t.startswith("event:-") else "effect" for t in terms]
    notes = ["pre-treatment (lead)" if t.startswith("event:-") else "" for t in terms]
    return _fit("Sun-Abraham interaction-weighted event study", outcome, panel, terms, est,
                vcov, df, text, warns + w2, roles, notes,
                "unit and period fixed effects, cohort x relative-period interactions "
                "(relative period -1 omitted), weighted by cohort shares",
                cluster, pretest=_wald(est, vcov, lead_idx, "leads (event time < -1)"),
                info={"cells": [[float(g), float(t)] for g, t in cells],
                      "cell_estimates": [float(v) for v in delta]})


# ----------------------------------------------------------------------------- imputation
def _twoway_solver(mask: np.ndarray, what: str):
    """Least squares of unit + period effects on the cells where ``mask`` (n, T) is 1.

    Returns ``solve(r, s)`` giving unit effects ``a`` (n[, k]) and period effects ``l``
    (T[, k], first period 0) from the unit sums ``r`` and period sums ``s`` of the outcome
    over those cells: the normal equations [[diag(n_i), M],[M', diag(m_t)]] solved by
    eliminating the unit block (Schur complement, T-1 x T-1), so the cost is O(n T^2).

    Raises
    ------
    ModelError
        A period (after the first) without any untreated observation, or a unit without one.
    """
    n_i = mask.sum(axis=1)
    if (n_i == 0).any():
        raise ModelError(f"{what}: {int((n_i == 0).sum())} units have no untreated "
                         "observation to fit their unit effect")
    B = mask[:, 1:]
    schur = np.diag(B.sum(axis=0)) - B.T @ (B / n_i[:, None])
    if B.shape[1] and np.linalg.matrix_rank(schur) < B.shape[1]:
        raise ModelError(f"{what}: some period has no untreated observation (every unit treated "
                         "by then); the imputation needs a never- or not-yet-treated unit in "
                         "each period")

    def solve(r: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r2 = r if r.ndim == 2 else r[:, None]
        s2 = (s if s.ndim == 2 else s[:, None])[1:]
        lam = (np.linalg.solve(schur, s2 - B.T @ (r2 / n_i[:, None])) if B.shape[1]
               else np.zeros((0, r2.shape[1])))
        a = (r2 - B @ lam) / n_i[:, None]
        lam = np.vstack([np.zeros((1, r2.shape[1])), lam])
        return (a[:, 0], lam[:, 0]) if r.ndim == 1 else (a, lam)

    return solve


def imputation_did(data: pd.DataFrame, outcome: str, *, entity: str = "participant",
                   time: str = "wave", cohort: str = "cohort", cluster: str | None = None,
                   inference: Inference = "analytic", n_boot: int = 999,
                   seed: int = 12345) -> DidFit:
    """Borusyak, Jaravel & Spiess (2024) imputation estimator.

    Unit and period effects are fitted on the untreated observations only (never treated, and
    treated units before their first treated period); each treated observation's untreated
    outcome is imputed from them and its effect is ``y - y0_hat``. Reported: the average over
    all treated observations (``overall``) and per event time (``event:e``, e >= 0). The
    estimator is linear in the outcomes, ``sum v_it y_it``; its standard error is BJS's
    conservative one (Theorem 3): ``sum_c (sum_{it in c} v_it e_it)^2`` with untreated
    residuals and, for treated observations, the deviation of each effect from its cohort x
    event-time mean.

    Caveat: a cohort with a single pre-treatment wave has its unit effects fitted from one
    observation each, so its imputed outcomes rest entirely on parallel trends between that
    wave and later ones, and no pre-trend test is possible for it (the fit notes it).

    Parameters
    ----------
    data, outcome, entity, time, cohort, cluster, inference, n_boot, seed
        As :func:`trackii_eval.models.did.callaway_santanna`.

    Returns
    -------
    DidFit

    Raises
    ------
    ModelError
        Bad columns or design; a treated unit without any untreated observation is dropped
        earlier (``staggered_panel``).

    Examples
    --------
    Stata: ``did_imputation y id wave cohort, horizons(0/3)``; R: ``didimputation``.
    """
    what = f"imputation DiD of '{outcome}'"
    _check(inference, cluster, what)
    panel = staggered_panel(data, outcome, entity=entity, time=time, cohort=cohort,
                            cluster=cluster, what=what)
    y, periods, G = panel.y, panel.periods, panel.cohort
    n, T = y.shape
    unit = np.repeat(np.arange(n), T)
    tix = np.tile(np.arange(T), n)
    treated = (periods[tix] >= G[unit])
    ev = np.where(treated, np.round(periods[tix] - G[unit]), np.nan)
    untreated = (~treated).reshape(n, T).astype(float)  # M: untreated mask, (n, T)
    solve = _twoway_solver(untreated, what)
    yv = y.ravel()
    # unit and period effects on the untreated observations
    a_hat, l_hat = solve((untreated * y).sum(axis=1), (untreated * y).sum(axis=0))
    fitted = (a_hat[:, None] + l_hat[None, :]).ravel()
    tau = yv[treated] - fitted[treated]
    resid0 = yv[~treated] - fitted[~treated]
    g1, e1 = G[unit][treated], ev[treated]
    cell_mean = pd.Series(tau).groupby([g1, e1]).transform("mean").to_numpy()
    resid1 = tau - cell_mean
    terms, rows = [], []
    evs = sorted(set(e1))
    for e_ in evs:
        w1 = (e1 == e_).astype(float)
        terms.append(f"event:{int(e_)}")
        rows.append(w1 / w1.sum())
    terms.append("overall")
    rows.append(np.full(len(tau), 1.0 / len(tau)))
    W1 = np.array(rows)  # (k, n_treated)
    est = W1 @ tau
    # weights on untreated outcomes: tau_w = w1'y1 - w1' Z1 (Z0'Z0)^-1 Z0' y0, i.e. minus the
    # fitted two-way effects of a regression whose "outcome sums" are w1's unit and period sums
    wfull = np.zeros((len(terms), n * T))
    wfull[:, treated] = W1
    wfull = wfull.reshape(len(terms), n, T)
    a_w, l_w = solve(wfull.sum(axis=2).T, wfull.sum(axis=1).T)  # (n, k), (T, k)
    V0 = -(a_w[:, None, :] + l_w[None, :, :]).reshape(n * T, -1)[~treated].T
    contrib = np.zeros((n * T, len(terms)))
    contrib[treated] = (W1 * resid1).T
    contrib[~treated] = (V0 * resid0).T
    per_unit = contrib.reshape(n, T, -1).sum(axis=1) * n  # influence-function scale
    if inference == "analytic":
        sums = np.zeros((panel.n_clusters, len(terms)))
        np.add.at(sums, panel.cluster, per_unit)
        vcov = sums.T @ sums / n**2
        g = panel.n_clusters
        df = float(g - 1) if cluster else np.nan
        text = (f"BJS conservative, clustered by {cluster or 'unit'}"
                + (f"; t({g - 1})" if cluster else "; normal"))
        w2 = ([f"only {g} clusters: cluster-robust inference is unreliable with few "
               "clusters; use inference='wild'"] if cluster and g < 30 else [])
    else:
        vcov, df, text, w2 = _vcov(per_unit, panel, "wild", 0, cluster, n_boot, seed)
    warns = list(w2)
    n_pre = {g: int((periods < g).sum()) for g in sorted(set(G[np.isfinite(G)]))
             if g <= periods[-1]}
    single = [g for g, k in n_pre.items() if k == 1]
    if single:
        warns.append(f"cohort(s) {', '.join(_fmt(g) for g in single)} have a single "
                     "pre-treatment wave: their unit effects come from one observation, the "
                     "imputation rests on parallel trends alone and no pre-trend can be tested "
                     "for them")
    roles = ["effect"] * len(terms)
    pretest = _bjs_pretest(y, periods, G, untreated, solve, panel, cluster)
    return _fit("Borusyak-Jaravel-Spiess imputation DiD", outcome, panel, terms, est, vcov, df,
                text, warns, roles, [""] * len(terms),
                "unit and period effects fitted on untreated observations, effects imputed "
                "for treated ones; equal weight per treated observation", cluster,
                pretest=pretest, info={"single_pre_wave_cohorts": [float(g) for g in single]})


def _bjs_pretest(y: np.ndarray, periods: np.ndarray, G: np.ndarray, untreated: np.ndarray,
                 solve, panel: StaggeredPanel, cluster: str | None) -> dict:
    """BJS (2024, section 4.4) pre-trend test: on the untreated observations only, regress the
    outcome on unit and period effects and lead indicators 1{t - g = -k}, k = 1..K, with K one
    less than the most pre-treatment waves any cohort has (a cohort's earliest waves anchor its
    unit effect); joint cluster-robust Wald test that the leads are zero."""
    n, T = y.shape
    pos_g = np.array([np.searchsorted(periods, g) if np.isfinite(g) and g <= periods[-1]
                      else -1 for g in G])
    max_pre = int(pos_g.max()) if (pos_g > 0).any() else 0
    K = max_pre - 1
    if K < 1:
        return {"note": "no lead to test: no cohort has two or more pre-treatment waves (with a "
                        "single pre-treatment wave parallel trends cannot be tested)"}
    tpos = np.arange(T)[None, :]
    leads = np.stack([((pos_g[:, None] - tpos) == k) & (pos_g[:, None] > 0)
                      for k in range(1, K + 1)], axis=-1).astype(float) * untreated[..., None]
    keep = leads.sum(axis=(0, 1)) > 0
    leads = leads[..., keep]
    # residualise outcome and leads on the two-way effects over the untreated cells (FWL)
    cols = np.concatenate([y[..., None], leads], axis=-1) * untreated[..., None]
    a, lam = solve(cols.sum(axis=1), cols.sum(axis=0))
    res = (cols - a[:, None, :] - lam[None, :, :]) * untreated[..., None]
    yr, X = res[..., 0].ravel(), res[..., 1:].reshape(n * T, -1)
    xtx = X.T @ X
    if X.shape[1] == 0 or np.linalg.matrix_rank(xtx) < X.shape[1]:
        return {"note": "the leads are collinear with the unit and period effects; no test"}
    b = np.linalg.solve(xtx, X.T @ yr)
    e = yr - X @ b
    infl = _ols_influence(X, e, n, T)
    vcov, *_ = _vcov(infl, panel, "analytic", X.shape[1], cluster, 0, 0)
    w = float(b @ np.linalg.solve(vcov, b))
    k = int(X.shape[1])
    return {"statistic": w, "df": k, "p_value": float(sps.chi2.sf(w, k)),
            "note": f"BJS pre-trend test: {k} leads on untreated observations, joint Wald"}
