"""Checks and reshaping shared by the difference-in-differences estimators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import ModelError

__all__ = ["StaggeredPanel", "staggered_panel"]


@dataclass(frozen=True)
class StaggeredPanel:
    """A balanced panel in wide form, one row per unit.

    Attributes
    ----------
    y : ndarray, shape (n_units, n_periods)
        Outcome by unit and period (no missing values).
    periods : ndarray, shape (n_periods,)
        Sorted period values (numeric).
    cohort : ndarray, shape (n_units,)
        First treated period of each unit; ``inf`` for never treated.
    cluster : ndarray, shape (n_units,)
        Cluster code of each unit (the unit itself when not clustered).
    n_clusters : int
    warnings : list of str
        What was dropped and why.
    long : pandas.DataFrame
        The balanced long data (entity, time, outcome, cohort, cluster) for regressions.
    n_units_data : int
        Units in the data before balancing (``len(y)`` of them are kept).
    """

    y: np.ndarray
    periods: np.ndarray
    cohort: np.ndarray
    cluster: np.ndarray
    n_clusters: int
    warnings: list[str]
    long: pd.DataFrame
    n_units_data: int = 0


def staggered_panel(data: pd.DataFrame, outcome: str, *, entity: str, time: str, cohort: str,
                    cluster: str | None, what: str) -> StaggeredPanel:
    """Validate a long panel with a treatment-cohort column and balance it.

    ``cohort`` holds the first period in which a unit is treated; 0 or missing means never
    treated (R ``did``'s ``gname`` convention). Units observed in only some periods are
    dropped (R ``did`` with ``panel = TRUE`` does the same), and so are units treated in the
    first period (no pre-treatment observation); both are reported in ``warnings``.

    Raises
    ------
    ModelError
        Missing columns, non-numeric periods or cohorts, a cohort or cluster that changes
        within a unit, a duplicated unit-period, fewer than two periods, no never- or
        not-yet-treated comparison, or no treated unit left.
    """
    cols = [c for c in dict.fromkeys((entity, time, outcome, cohort, cluster)) if c]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ModelError(f"{what}: column(s) {', '.join(missing)} not in the data")
    frame = data[cols].copy()
    as_number = pd.to_numeric(frame[cohort], errors="coerce")
    bad = as_number.isna() & frame[cohort].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ModelError(f"{what}: column '{cohort}' must hold the first treated wave as a number "
                         f"(0 or empty for never treated); row {row} is not a number")
    frame[cohort] = as_number.fillna(0.0)
    for col in (time, cohort):
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise ModelError(f"{what}: column '{col}' must be numeric (wave numbers)")
    if frame[time].isna().any():
        raise ModelError(f"{what}: column '{time}' has missing values; drop those rows first")
    if frame.duplicated([entity, time]).any():
        raise ModelError(f"{what}: some unit appears twice at the same '{time}'; keep one row "
                         "per unit and period")
    if (frame.groupby(entity)[cohort].nunique() > 1).any():
        raise ModelError(f"{what}: '{cohort}' (first treated period) changes within a unit; it "
                         "must be one value per unit (0 for never treated)")
    if cluster and (frame.groupby(entity)[cluster].nunique(dropna=False) > 1).any():
        raise ModelError(f"{what}: cluster column '{cluster}' changes within a unit; units must "
                         "be nested in clusters")
    warns: list[str] = []
    periods = np.sort(frame[time].unique()).astype(float)
    if len(periods) < 2:
        raise ModelError(f"{what}: only one period; difference-in-differences needs at least two")
    complete = frame.dropna(subset=[outcome])
    n_units = frame[entity].nunique()
    counts = complete.groupby(entity)[time].nunique()
    keep = counts.index[counts == len(periods)]
    if len(keep) < n_units:
        warns.append(f"{n_units - len(keep)} of {n_units} units lack '{outcome}' at some "
                     "period and were dropped (balanced panel, as R did with panel = TRUE): "
                     f"{len(keep)} of {n_units} units kept")
    complete = complete[complete[entity].isin(keep)]
    g = complete.groupby(entity)[cohort].first()
    early = g.index[(g > 0) & (g <= periods[0])]
    if len(early):
        warns.append(f"{len(early)} units treated in the first period {periods[0]:g} were "
                     "dropped (no pre-treatment observation)")
        complete = complete[~complete[entity].isin(early)]
    if complete.empty:
        raise ModelError(f"{what}: no unit observed at every period; nothing to estimate")
    wide = complete.pivot(index=entity, columns=time, values=outcome).sort_index()
    wide = wide[sorted(wide.columns)]
    g = complete.groupby(entity)[cohort].first().reindex(wide.index).to_numpy(float)
    g = np.where(g <= 0, np.inf, g)
    if np.isinf(g).all():
        raise ModelError(f"{what}: no treated unit (every '{cohort}' is 0 or missing)")
    if np.isfinite(g).all() and (g <= periods[-1]).all() and len(np.unique(g)) == 1:
        raise ModelError(f"{what}: every unit starts treatment at {g[0]:g}; there is no "
                         "never- or not-yet-treated comparison")
    if cluster:
        cl = complete.groupby(entity)[cluster].first().reindex(wide.index)
        if cl.isna().any():
            lacking = cl.isna().to_numpy()
            n_never = int((lacking & np.isinf(g)).sum())
            who = (f"; {n_never} of them are never-treated (comparison) units, which belong "
                   f"to no {cluster}" if n_never else "")
            raise ModelError(f"{what}: cluster column '{cluster}' is missing for "
                             f"{int(lacking.sum())} units of the {len(wide)} kept in the "
                             f"balanced panel ({n_units} in the data){who}. Give every unit a "
                             "cluster (e.g. comparison participants their recruitment group, "
                             "or each its own code as a singleton cluster) or cluster by unit "
                             "(leave cluster unset)")
        codes = pd.factorize(cl)[0]
    else:
        codes = np.arange(len(wide))
    long = complete.sort_values([entity, time]).reset_index(drop=True)
    return StaggeredPanel(y=wide.to_numpy(float), periods=periods, cohort=g, cluster=codes,
                          n_clusters=int(codes.max() + 1), warnings=warns, long=long,
                          n_units_data=int(n_units))
