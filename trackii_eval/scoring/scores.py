"""Allen-Sharp construct scores per participant and wave.

A construct score is the weighted mean of its answered, keyed items, each first put on the POMP
scale (percent of maximum possible, 0-100; Cohen, Cohen, Aiken & West 1999) so that items on
different scales (a 0-100 thermometer beside 7-point agreement items) can be averaged. Reverse
keyed items are flipped (``100 - POMP``). Below the construct's minimum share of answered items
the score is missing, and the row says why.

References
----------
Cohen, P., Cohen, J., Aiken, L. S., & West, S. G. (1999). The problem of units and the
circumstance for POMP. Multivariate Behavioral Research, 34(3), 315-346.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Instrument, StudyConfig
from ..errors import ScoringError

__all__ = ["SCORE_COLUMNS", "keyed_items", "score_responses", "scores_wide"]

SCORE_COLUMNS = [
    "participant", "wave", "time", "arm", "side", "dialogue", "output", "construct",
    "score", "n_answered", "n_items", "status", "baseline", "change",
]


def keyed_items(responses: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Add ``pomp`` (keyed, 0-100) and ``weight`` columns to long responses."""
    items = instrument.items
    # dict lookups, not a Python function per answer: this runs on every response
    item = responses["item"]
    unknown = sorted(set(item.unique()) - set(items))
    if unknown:
        raise ScoringError(
            f"responses hold item(s) {unknown[:5]} that the instrument does not define; "
            "check instrument.yaml against the stored waves and ingest again"
        )
    lo = item.map({i: instrument.scales[it.scale].min for i, it in items.items()}).astype(float)
    hi = item.map({i: instrument.scales[it.scale].max for i, it in items.items()}).astype(float)
    rev = item.map({i: it.reverse for i, it in items.items()}).astype(bool)
    pomp = (responses["value"].astype(float) - lo) / (hi - lo) * 100.0
    pomp = pomp.where(~rev, 100.0 - pomp)
    weight = item.map({i: it.weight for i, it in items.items()}).astype(float)
    return responses.assign(pomp=pomp, weight=weight)


def score_responses(
    responses: pd.DataFrame, instrument: Instrument, config: StudyConfig
) -> pd.DataFrame:
    """Score long responses into the tidy participant x wave x construct table.

    Parameters
    ----------
    responses
        Long responses with columns participant, wave, time, arm, side, dialogue, construct,
        item, value, missing_code (as :meth:`Store.active_responses` returns them).
    instrument, config
        The codebook (scales, keys, weights, minimum answered share) and the study design.

    Returns
    -------
    pandas.DataFrame
        One row per participant, wave and construct, columns :data:`SCORE_COLUMNS`; ``score``
        is POMP 0-100 (or the raw unit for constructs scored ``raw``), ``status`` is
        ``"scored"`` or ``"too_few_items"``, ``change`` is the difference from the
        participant's own baseline (first wave) score.
    """
    # Items that were not asked (absent) do not count; a declared missing code counts as asked.
    asked = responses[responses["missing_code"].fillna("") != "not asked"]
    # constructs asked only of some arms or at some waves produce no score elsewhere
    keep = np.ones(len(asked), dtype=bool)
    for cname, con in instrument.constructs.items():
        in_construct = (asked["construct"] == cname).to_numpy()
        if con.asked_of is not None:
            keep &= ~in_construct | asked["arm"].isin(con.asked_of).to_numpy()
        if con.waves is not None:
            keep &= ~in_construct | asked["wave"].isin(con.waves).to_numpy()
    asked = asked[keep]
    keyed = keyed_items(asked, instrument)
    # behavioural measures (counts, amounts, yes/no) keep their own units
    raw_scored = keyed["construct"].map(
        {c: k.scoring == "raw" for c, k in instrument.constructs.items()}
    ).astype(bool)
    keyed["pomp"] = keyed["pomp"].where(~raw_scored, keyed["value"].astype(float))
    keyed["wpomp"] = keyed["pomp"] * keyed["weight"]
    keyed["wanswered"] = keyed["weight"].where(keyed["pomp"].notna(), 0.0)
    keys = ["participant", "wave", "time", "arm", "side", "dialogue", "construct"]
    grouped = keyed.groupby(keys, dropna=False, sort=True)
    out = grouped.agg(
        wsum=("wpomp", "sum"), wanswered=("wanswered", "sum"),
        n_answered=("pomp", "count"), n_present=("item", "count"),
    ).reset_index()
    n_items = {c: len(con.items) for c, con in instrument.constructs.items()}
    weights = {c: sum(i.weight for i in con.items) for c, con in instrument.constructs.items()}
    need = {c: con.min_answered for c, con in instrument.constructs.items()}
    out["n_items"] = out["construct"].map(n_items)
    share = out["wanswered"] / out["construct"].map(weights)
    ok = share + 1e-12 >= out["construct"].map(need)
    out["score"] = np.where(ok & (out["wanswered"] > 0), out["wsum"] / out["wanswered"], np.nan)
    out["status"] = np.where(ok, "scored", "too_few_items")
    out["output"] = out["construct"].map({c: k.output for c, k in instrument.constructs.items()})
    first = config.waves[0].index
    base = out[out["wave"] == first].set_index(["participant", "construct"])["score"]
    out["baseline"] = pd.MultiIndex.from_frame(out[["participant", "construct"]]).map(
        lambda k: base.get(k, np.nan)
    ).astype(float)
    out["change"] = out["score"] - out["baseline"]
    return out[SCORE_COLUMNS].sort_values(["construct", "participant", "wave"]).reset_index(
        drop=True
    )


def scores_wide(scores: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """One row per participant and wave, a column per construct, plus model covariates.

    Adds ``post_time`` (years since the programme ended, 0 before) and ``treated`` (1 for the
    dialogue arm) so growth and panel models can be written directly against the table.
    """
    keys = ["participant", "wave", "time", "arm", "side", "dialogue"]
    # comparison people sit in no dialogue; a placeholder keeps them through the reshape
    # (as text: a column without any dialogue arrives as float NaN)
    filled = scores.assign(dialogue=scores["dialogue"].astype(object).fillna("\x00"))
    wide = filled.set_index([*keys, "construct"])["score"].unstack("construct")
    wide.columns.name = None
    wide = wide.reset_index()
    wide["dialogue"] = wide["dialogue"].replace("\x00", None)
    wide = wide[wide[[c for c in wide.columns if c not in keys]].notna().any(axis=1)]
    t_end = config.program_end_time
    wide["post_time"] = np.maximum(wide["time"] - t_end, 0.0) if t_end is not None else 0.0
    wide["treated"] = (wide["arm"] != config.comparison_arm).astype(int)
    # a categorical arm with the comparison arm as the reference level
    levels = [config.comparison_arm] if config.comparison_arm else []
    levels += [a.id for a in config.arms if a.id not in levels]
    wide["arm"] = pd.Categorical(wide["arm"], categories=levels)
    return wide.sort_values(["participant", "wave"]).reset_index(drop=True)
