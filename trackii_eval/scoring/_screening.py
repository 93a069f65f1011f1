"""Internal: what every reliability function checks first: arguments, groups, items, layouts.

Screening follows psych: items never answered or without variance are left out (with a warning
and a note), rows with nothing answered are counted in ``n``.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackii_eval.errors import ScoringError, TrackIIEvalWarning

__all__ = [
    "OMEGA_METHODS",
    "ReliabilityWarning",
    "ScaleData",
    "as_list",
    "check_options",
    "group_rng",
    "groups",
    "item_block",
    "long_to_wide",
    "screen",
]

OMEGA_METHODS = ("ml", "minres")


class ReliabilityWarning(TrackIIEvalWarning):
    """A reliability statistic was computed on less than the data given, or could not be."""



@dataclass
class ScaleData:
    """The items of one scale after psych's screening, and what the screening did."""

    x: np.ndarray
    names: list[str]
    n_rows: int
    constant: list[str]
    notes: list[str]


def screen(block: pd.DataFrame, *, grouped: bool) -> ScaleData:
    """Drop items that cannot enter the covariance matrix, recording why."""
    notes: list[str] = []
    # One conversion to numbers; columns are then picked by position (cheaper than per-column
    # pandas access, which adds up over many construct-waves).
    names = [str(c) for c in block.columns]
    x_all = block.to_numpy(dtype=float, na_value=np.nan)
    answered = ~np.isnan(x_all)
    is_empty = ~answered.any(axis=0)
    empty = [nm for nm, e in zip(names, is_empty, strict=True) if e]
    if empty and not grouped:
        # In a by-group, an all-missing column is an item of another scale; alone it is news.
        msg = f"items never answered were left out: {', '.join(empty)}"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        notes.append(msg)
    keep = np.flatnonzero(~is_empty)
    x = x_all[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(x, axis=0, ddof=1) if x.shape[0] > 1 else np.full(x.shape[1], np.nan)
    constant = [names[j] for j, sd_j in zip(keep, sd, strict=True) if not (sd_j > 0)]
    if constant:
        msg = f"items without variance were left out, as psych::alpha does: {', '.join(constant)}"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        notes.append(msg)
    used_idx = keep[sd > 0]
    used = [names[j] for j in used_idx]
    xs = x_all[:, used_idx]
    n_empty = int(np.all(np.isnan(xs), axis=1).sum()) if used else block.shape[0]
    if n_empty and used:
        msg = (
            f"{n_empty} row(s) answered none of the items; they are counted in n (Feldt bounds, "
            "standard error) as psych::alpha counts them"
        )
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        notes.append(msg)
    return ScaleData(x=xs, names=used, n_rows=block.shape[0], constant=constant, notes=notes)


def as_list(by: str | Sequence[str] | None) -> list[str]:
    """A column name or names as a list (empty for None)."""
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def item_block(items: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The item columns (all but ``by``), checked to be numeric."""
    if not isinstance(items, pd.DataFrame):
        raise ScoringError(f"items must be a pandas DataFrame, got {type(items).__name__}")
    missing = [b for b in by if b not in items.columns]
    if missing:
        raise ScoringError(f"by: column(s) {missing} not in the items table")
    cols = [c for c in items.columns if c not in by]
    if not cols:
        raise ScoringError("items: no item columns besides the by columns")
    bad = [
        str(c)
        for c, dtype in zip(items.columns, items.dtypes, strict=True)
        if c not in by
        and not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))
    ]
    if bad:
        raise ScoringError(
            f"items: column(s) {bad} are not numeric; keyed item responses must be numbers "
            "(pass grouping columns in by=)"
        )
    return items[cols]


def check_options(ci: float, omega_ci: str, n_boot: int, omega_method: str) -> None:
    """Raise ScoringError naming the first option of :func:`reliability` out of range."""
    if not 0.0 < ci < 1.0:
        raise ScoringError(f"ci must be strictly between 0 and 1, got {ci}")
    if omega_ci not in ("bootstrap", "none"):
        raise ScoringError(f"omega_ci must be 'bootstrap' or 'none', got {omega_ci!r}")
    if omega_method not in OMEGA_METHODS:
        raise ScoringError(f"omega_method must be one of {OMEGA_METHODS}, got {omega_method!r}")
    if omega_ci == "bootstrap" and n_boot < 100:
        raise ScoringError(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")


def groups(items: pd.DataFrame, by: list[str]) -> list[tuple[tuple[Hashable, ...], pd.DataFrame]]:
    """(key, rows) per group of ``by`` (one group of all rows without ``by``), sorted by key."""
    if not by:
        return [((), items)]
    nan_keys = items[by].isna().any(axis=1)
    if nan_keys.any():
        warnings.warn(
            f"{int(nan_keys.sum())} row(s) with a missing value in a by column were left out",
            ReliabilityWarning,
            stacklevel=3,
        )
    grouped = items.loc[~nan_keys].groupby(by, sort=True, observed=True, dropna=True)
    return [(key if isinstance(key, tuple) else (key,), frame) for key, frame in grouped]


def group_rng(seed: int | None, key: tuple[Hashable, ...]) -> np.random.Generator:
    """A generator per group, derived from the seed and the group's own key.

    A group's bootstrap interval then does not depend on which other groups are in the call.
    """
    if seed is None:
        return np.random.default_rng()
    tag = zlib.crc32(repr(key).encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), tag]))


def long_to_wide(
    responses: pd.DataFrame,
    *,
    id_cols: Sequence[str],
    by: Sequence[str],
    item_col: str,
    value_col: str,
) -> pd.DataFrame:
    """Pivot one-answer-per-row responses to one row per id x group, one column per item."""
    if not isinstance(responses, pd.DataFrame):
        raise ScoringError(f"responses must be a pandas DataFrame, got {type(responses).__name__}")
    needed = [*id_cols, *by, item_col, value_col]
    missing = [c for c in needed if c not in responses.columns]
    if missing:
        raise ScoringError(f"responses: column(s) {missing} not found")
    overlap = set(id_cols) & set(by)
    if overlap:
        raise ScoringError(f"responses: column(s) {sorted(overlap)} are in both id_cols and by")
    if not pd.api.types.is_numeric_dtype(responses[value_col]) or pd.api.types.is_bool_dtype(
        responses[value_col]
    ):
        raise ScoringError(f"responses: column {value_col!r} must hold numeric keyed answers")
    # An absent answer and a missing value mean the same here; a row exists only for an id that
    # answered at least one item of the group.
    kept = responses.loc[responses[value_col].notna(), needed]
    index = [*by, *id_cols]
    dup = kept.duplicated(subset=[*index, item_col])
    if dup.any():
        raise ScoringError(
            f"responses: {int(dup.sum())} answer(s) repeat an (id, {', '.join(by)}, item) "
            "combination; each participant answers an item once per group"
        )
    wide = kept.set_index([*index, item_col])[value_col].unstack(item_col)
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index(level=list(by)).reset_index(drop=True)
