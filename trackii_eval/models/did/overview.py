"""Static TWFE beside the heterogeneity-robust estimators, so a reader sees when they differ."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .callaway import callaway_santanna
from .regression import imputation_did, sun_abraham, twfe_did

__all__ = ["did_overview"]


def did_overview(data: pd.DataFrame, outcome: str, *, level: float = 0.95,
                 **options: Any) -> pd.DataFrame:
    """One row per estimator of the overall effect of a staggered rollout.

    Parameters
    ----------
    data, outcome
        As :func:`trackii_eval.models.did.callaway_santanna`.
    level : float
        Confidence level.
    **options
        ``entity``, ``time``, ``cohort``, ``cluster``, ``inference``, ``n_boot``, ``seed``,
        passed to every estimator.

    Returns
    -------
    pandas.DataFrame
        Columns ``estimator``, ``term``, ``estimate``, ``std_error``, ``ci_low``, ``ci_high``,
        ``p_value``, ``pretrend_p`` (joint test of the leads, NaN where none), ``note``. The
        static TWFE row's note gives the weight of its later-vs-earlier-treated comparisons
        (Goodman-Bacon) and says whether its estimate lies outside the Callaway-Sant'Anna
        interval.

    Raises
    ------
    ModelError
        As the estimators.
    """
    fits = {
        "Callaway-Sant'Anna (never treated), simple ATT":
            (callaway_santanna(data, outcome, **options), "simple"),
        "Callaway-Sant'Anna (not yet treated), simple ATT":
            (callaway_santanna(data, outcome, control="notyet", **options), "simple"),
        "Sun-Abraham, cohort-weighted ATT": (sun_abraham(data, outcome, **options), "overall"),
        "Borusyak-Jaravel-Spiess imputation, ATT":
            (imputation_did(data, outcome, **options), "overall"),
        "Static two-way fixed effects": (twfe_did(data, outcome, **options), "D"),
    }
    rows = []
    for name, (fit, term) in fits.items():
        r = fit.tidy(level=level).set_index("term").loc[term]
        rows.append({"estimator": name, "term": term, "estimate": r["estimate"],
                     "std_error": r["std_error"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "p_value": r["p_value"],
                     "pretrend_p": fit.pretest.get("p_value", float("nan")),
                     "note": r["note"]})
    table = pd.DataFrame(rows)
    cs = table.iloc[0]
    tw = table.iloc[-1]
    outside = not cs["ci_low"] <= tw["estimate"] <= cs["ci_high"]
    if outside:
        table.loc[table.index[-1], "note"] = (
            (tw["note"] + "; " if tw["note"] else "")
            + "outside the Callaway-Sant'Anna interval: the static TWFE is not a reliable "
            "summary here")
    return table
