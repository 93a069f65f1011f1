"""Reliability of every construct at every wave, from long responses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..config import Instrument
from .scores import keyed_items

__all__ = ["item_statistics_by_wave", "reliability_by_wave"]

#: What a construct of one item gets instead of reliability coefficients.
ONE_ITEM_NOTE = "not applicable (one item)"


def _wide(group: pd.DataFrame) -> pd.DataFrame:
    """One row per participant, one column per item (POMP), from one construct-wave.

    Rows and columns are sorted (participant, item), as ``pivot_table`` sorts them: the
    bootstrap draws rows by position, so the order is part of the result.
    """
    rows, participants = pd.factorize(group["participant"], sort=True)
    cols, items = pd.factorize(group["item"], sort=True)
    cell = rows * len(items) + cols
    if len(np.unique(cell)) < len(cell):  # one answer per item and wave is the rule; be safe
        return group.pivot_table(index="participant", columns="item", values="pomp")
    values = np.full((len(participants), len(items)), np.nan)
    values[rows, cols] = group["pomp"].to_numpy(dtype=float)
    return pd.DataFrame(values, index=pd.Index(participants, name="participant"),
                        columns=[str(i) for i in items])


def item_statistics_by_wave(responses: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Item-rest correlation, alpha if deleted, floor and ceiling shares per item and wave.

    Items are keyed and on the POMP scale (0 floor, 100 ceiling) as in the scores. Only
    constructs of two or more POMP-scored items are included; with none, the table is empty but
    has its columns.
    """
    from .items import ITEM_STATISTICS_COLUMNS, item_statistics_long

    keyed = keyed_items(responses, instrument)
    multi = [c for c, con in instrument.constructs.items()
             if len(con.items) >= 2 and con.scoring == "pomp"]
    keyed = keyed[keyed["construct"].isin(multi) & keyed["pomp"].notna()]
    if keyed.empty:
        return pd.DataFrame(columns=["construct", "wave", *ITEM_STATISTICS_COLUMNS])
    return item_statistics_long(keyed, value_col="pomp", scale_min=0.0, scale_max=100.0)


def reliability_by_wave(
    responses: pd.DataFrame, instrument: Instrument, *, n_boot: int = 200
) -> pd.DataFrame:
    """Cronbach's alpha and McDonald's omega per construct and wave, on keyed items.

    Items are keyed (reverse items flipped) and put on the POMP scale first, so a reverse-keyed
    item does not lower alpha. Each row carries ``flag`` when alpha or omega is below the
    construct's ``reliability_threshold``. Omega's interval is a percentile bootstrap with
    ``n_boot`` resamples per construct and wave.

    A construct of one item gets a row with its ``n`` and ``k = 1``, no coefficients, no flag
    and the note ``"not applicable (one item)"``: internal consistency needs two items. With
    two items alpha is computed (``alpha_std`` is then the Spearman-Brown coefficient) and omega
    is not (a one-factor model of two items is not identified); the note says so. Constructs
    scored ``raw`` (counts, amounts) and construct-waves with fewer than 3 respondents are left
    out.
    """
    from .reliability import RELIABILITY_COLUMNS, reliability

    columns = ["construct", "wave", *RELIABILITY_COLUMNS, "threshold"]
    keyed = keyed_items(responses, instrument)
    keyed = keyed[keyed["pomp"].notna()]
    rows = []
    for (construct, wave), group in keyed.groupby(["construct", "wave"], sort=True):
        con = instrument.constructs[construct]
        if con.scoring == "raw":
            continue
        wide = _wide(group).dropna(axis=1, how="all").dropna(axis=0, how="all")
        if wide.shape[0] < 3:
            continue
        if len(con.items) < 2 or wide.shape[1] < 2:
            rows.append(_one_item_row(construct, int(wave), wide, con.reliability_threshold,
                                      columns))
            continue
        res = reliability(wide, threshold=con.reliability_threshold, seed=int(wave),
                          n_boot=n_boot)
        res.insert(0, "wave", int(wave))
        res.insert(0, "construct", construct)
        res["threshold"] = con.reliability_threshold
        rows.append(res)
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.concat(rows, ignore_index=True)[columns]


def _one_item_row(
    construct: str, wave: int, wide: pd.DataFrame, threshold: float, columns: list[str]
) -> pd.DataFrame:
    """The reliability row of a construct-wave with a single answered item."""
    asked = len(wide.columns)
    note = ONE_ITEM_NOTE if asked else "no item answered"
    row: dict[str, object] = dict.fromkeys(columns, math.nan)
    row.update(construct=construct, wave=wave, n=int(wide.shape[0]),
               n_complete=int(wide.notna().all(axis=1).sum()), k=asked,
               items=",".join(map(str, wide.columns)), flag=False, note=note,
               threshold=threshold)
    return pd.DataFrame([row], columns=columns)
