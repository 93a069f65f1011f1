"""Per-item statistics of keyed items: item-rest correlation, alpha if deleted, floor/ceiling.

The values psych's ``alpha(x)$item.stats`` and ``$alpha.drop`` give, from the pairwise-complete
covariance matrix.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from trackii_eval.errors import ScoringError

from ._screening import ReliabilityWarning, as_list, groups, item_block, long_to_wide, screen
from .alpha import alpha_from_cor, alpha_from_cov
from .moments import cov2cor, pairwise_moments

__all__ = ["ITEM_STATISTICS_COLUMNS", "item_statistics", "item_statistics_long"]

#: Columns of :func:`item_statistics` after the ``by`` columns, in order.
ITEM_STATISTICS_COLUMNS: tuple[str, ...] = (
    "item",
    "n",
    "mean",
    "sd",
    "floor_share",
    "ceiling_share",
    "r_drop",
    "alpha_if_deleted",
    "alpha_std_if_deleted",
    "note",
)



def _floor_ceiling_bound(bound: float | Mapping[str, float] | None, item: str) -> float | None:
    if bound is None:
        return None
    if isinstance(bound, Mapping):
        value = bound.get(item)
        return None if value is None else float(value)
    return float(bound)


def item_statistics(
    items: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    scale_min: float | Mapping[str, float] | None = None,
    scale_max: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per-item statistics of keyed items: item-rest correlation, alpha if deleted, floor/ceiling.

    Parameters
    ----------
    items : pandas.DataFrame
        As in :func:`reliability`: one column per keyed item, one row per response, plus any
        grouping columns named in `by`.
    by : str or sequence of str, optional
        Grouping columns; statistics are computed within each group.
    scale_min, scale_max : float or mapping of item name to float, optional
        The lowest and highest response options. Needed for ``floor_share`` and
        ``ceiling_share`` (NaN without them); an answer outside them is an error.

    Returns
    -------
    pandas.DataFrame
        The `by` columns, then ``item``, ``n`` (answers), ``mean``, ``sd`` (n - 1 denominator),
        ``floor_share`` and ``ceiling_share`` (share of answers at the lowest/highest option),
        ``r_drop`` (correlation of the item with the sum of the other items, psych ``r.drop``),
        ``alpha_if_deleted`` and ``alpha_std_if_deleted`` (psych ``alpha.drop`` ``raw_alpha``
        and ``std.alpha``) and ``note``. Items without variance keep their descriptive columns
        with NaN correlations, and are left out of the other items' statistics, as psych does.

    Raises
    ------
    ScoringError
        On the conditions of :func:`reliability`, or an answer outside
        [`scale_min`, `scale_max`].

    Notes
    -----
    ``r_drop`` and the alpha-if-deleted values come from the pairwise-complete covariance matrix,
    as psych computes them. With two items, alpha of the single remaining item is undefined and
    reported as NaN; psych instead prints the regression slope ``C12 / C22`` in that slot.

    In R: ``psych::alpha(x)$item.stats`` (``n``, ``mean``, ``sd``, ``r.drop``) and
    ``psych::alpha(x)$alpha.drop``.

    References
    ----------
    .. [1] Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests.
       Psychometrika, 16(3), 297-334.
    .. [2] Revelle, W. (2022). psych: Procedures for psychological, psychometric, and
       personality research (R package version 2.2.9).
    """
    by_cols = as_list(by)
    item_block(items, by_cols)
    rows: list[dict[str, object]] = []
    for key, frame in groups(items, by_cols):
        block = item_block(frame, by_cols)
        keys = dict(zip(by_cols, key, strict=True))
        for rec in _item_rows(block, grouped=bool(by_cols), lo=scale_min, hi=scale_max):
            rows.append({**keys, **rec})
    out = pd.DataFrame(rows, columns=[*by_cols, *ITEM_STATISTICS_COLUMNS])
    out["n"] = out["n"].astype("int64")
    out["note"] = out["note"].fillna("")
    return out


def _item_rows(
    block: pd.DataFrame,
    *,
    grouped: bool,
    lo: float | Mapping[str, float] | None,
    hi: float | Mapping[str, float] | None,
) -> list[dict[str, object]]:
    with warnings.catch_warnings():
        # Item-level screening warnings are already raised by reliability(); here the note
        # column carries them.
        warnings.simplefilter("ignore", ReliabilityWarning)
        scale = screen(block, grouped=grouped)
    used = scale.names
    k = len(used)
    stats_by_item: dict[str, dict[str, float]] = {}
    if k >= 2:
        c = pairwise_moments(scale.x).cov
        if np.all(np.isfinite(c)):
            r = cov2cor(c)
            for i, name in enumerate(used):
                rest = np.delete(np.arange(k), i)
                c_rest = c[np.ix_(rest, rest)]
                r_drop = (c[:, i].sum() - c[i, i]) / math.sqrt(c[i, i] * c_rest.sum())
                stats_by_item[name] = {
                    "r_drop": float(r_drop),
                    "alpha_if_deleted": alpha_from_cov(c_rest),
                    "alpha_std_if_deleted": alpha_from_cor(r[np.ix_(rest, rest)]),
                }
    out: list[dict[str, object]] = []
    for col in block.columns:
        name = str(col)
        v = block[col].to_numpy(dtype=float, na_value=np.nan)
        v = v[~np.isnan(v)]
        lo_i, hi_i = _floor_ceiling_bound(lo, name), _floor_ceiling_bound(hi, name)
        if v.size and lo_i is not None and v.min() < lo_i:
            raise ScoringError(f"item {name}: an answer is below scale_min={lo_i}")
        if v.size and hi_i is not None and v.max() > hi_i:
            raise ScoringError(f"item {name}: an answer is above scale_max={hi_i}")
        if grouped and v.size == 0:
            continue  # an item of another scale in this group
        note = ""
        if name in scale.constant:
            note = "no variance: left out of the other items' statistics"
        elif v.size == 0:
            note = "never answered"
        st = stats_by_item.get(name, {})
        if st.get("r_drop", 0.0) < 0:
            note = "correlates negatively with the other items (not reverse-keyed?)"
        out.append(
            {
                "item": name,
                "n": int(v.size),
                "mean": float(v.mean()) if v.size else math.nan,
                "sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                "floor_share": float(np.mean(np.isclose(v, lo_i)))
                if (lo_i is not None and v.size)
                else math.nan,
                "ceiling_share": float(np.mean(np.isclose(v, hi_i)))
                if (hi_i is not None and v.size)
                else math.nan,
                "r_drop": st.get("r_drop", math.nan),
                "alpha_if_deleted": st.get("alpha_if_deleted", math.nan),
                "alpha_std_if_deleted": st.get("alpha_std_if_deleted", math.nan),
                "note": note,
            }
        )
    return out


def item_statistics_long(
    responses: pd.DataFrame,
    *,
    by: str | Sequence[str] = ("construct", "wave"),
    id_cols: str | Sequence[str] = ("participant",),
    item_col: str = "item",
    value_col: str = "value",
    scale_min: float | Mapping[str, float] | None = None,
    scale_max: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """:func:`item_statistics` for long responses (one row per answer).

    Parameters
    ----------
    responses : pandas.DataFrame
        As in :func:`reliability_long`.
    by, id_cols, item_col, value_col
        As in :func:`reliability_long`.
    scale_min, scale_max : float or mapping of item name to float, optional
        As in :func:`item_statistics`.

    Returns
    -------
    pandas.DataFrame
        As :func:`item_statistics`, one row per group x item.

    Raises
    ------
    ScoringError
        As :func:`reliability_long` and :func:`item_statistics`.

    Notes
    -----
    In R: ``psych::alpha(wide_items)$item.stats`` and ``$alpha.drop`` per group.

    References
    ----------
    .. [1] Revelle, W. (2022). psych: Procedures for psychological, psychometric, and
       personality research (R package version 2.2.9).
    """
    by_cols = as_list(by)
    ids = as_list(id_cols)
    wide = long_to_wide(responses, id_cols=ids, by=by_cols, item_col=item_col, value_col=value_col)
    return item_statistics(wide, by=by_cols, scale_min=scale_min, scale_max=scale_max)
