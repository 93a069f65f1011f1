"""Reliability of every construct at every wave, from long responses."""

from __future__ import annotations

import pandas as pd

from ..config import Instrument
from .scores import keyed_items

__all__ = ["item_statistics_by_wave", "reliability_by_wave"]


def item_statistics_by_wave(responses: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Item-rest correlation, alpha if deleted, floor and ceiling shares per item and wave.

    Items are keyed and on the POMP scale (0 floor, 100 ceiling) as in the scores.
    """
    from .reliability import item_statistics_long

    keyed = keyed_items(responses, instrument)
    multi = [c for c, con in instrument.constructs.items()
             if len(con.items) >= 2 and con.scoring == "pomp"]
    keyed = keyed[keyed["construct"].isin(multi) & keyed["pomp"].notna()]
    if keyed.empty:
        return pd.DataFrame()
    return item_statistics_long(keyed, value_col="pomp", scale_min=0.0, scale_max=100.0)


def reliability_by_wave(
    responses: pd.DataFrame, instrument: Instrument, *, n_boot: int = 200
) -> pd.DataFrame:
    """Cronbach's alpha and McDonald's omega per construct and wave, on keyed items.

    Items are keyed (reverse items flipped) and put on the POMP scale first, so a reverse-keyed
    item does not lower alpha. Constructs with fewer than two items are skipped. Each row carries
    ``flag`` when alpha or omega is below the construct's ``reliability_threshold``. Omega's
    interval is a percentile bootstrap with ``n_boot`` resamples per construct and wave.
    """
    from .reliability import reliability

    keyed = keyed_items(responses, instrument)
    rows = []
    for (construct, wave), group in keyed.groupby(["construct", "wave"], sort=True):
        con = instrument.constructs[construct]
        if len(con.items) < 2 or con.scoring == "raw":
            continue
        wide = group.pivot_table(index="participant", columns="item", values="pomp")
        wide = wide.dropna(axis=1, how="all").dropna(axis=0, how="all")
        if wide.shape[1] < 2 or wide.shape[0] < 3:
            continue
        res = reliability(wide, threshold=con.reliability_threshold, seed=int(wave),
                          n_boot=n_boot)
        res.insert(0, "wave", int(wave))
        res.insert(0, "construct", construct)
        res["threshold"] = con.reliability_threshold
        rows.append(res)
    if not rows:
        return pd.DataFrame(columns=["construct", "wave", "n", "k", "alpha", "flag"])
    return pd.concat(rows, ignore_index=True)
