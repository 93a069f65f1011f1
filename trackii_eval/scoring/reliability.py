"""Internal-consistency reliability of keyed multi-item scales: alpha, omega total, item statistics.

The numbers are meant to be the ones a reviewer gets from R's ``psych`` package on the same
responses, so every choice below that could go two ways follows ``psych`` and says so:

* Missing values: covariances are pairwise-complete (``cov(x, use = "pairwise")``), each pair of
  items using the rows where both were answered, with ``n_ij - 1`` in the denominator.
* ``alpha`` is psych's ``raw_alpha``, computed from that covariance matrix; ``alpha_std`` is
  psych's ``std.alpha``, computed from ``cov2cor`` of the same matrix (each covariance divided by
  the two items' *own* standard deviations over all their answers, not by pair-specific ones).
* ``n`` is the number of rows given, including rows in which no item was answered: psych uses it
  for the Feldt bounds and the standard error, so these rows are counted here too (a warning
  says so; drop such rows first if they are not observations).
* An item without variance is left out with a warning, as psych does, and ``k`` counts the items
  actually used.
* ``omega_total`` is psych's one-factor ``omega(x, nfactors = 1)$omega.tot``: a one-factor model
  fitted to the pairwise-complete *correlation* matrix by maximum likelihood (or minres), and
  ``(1'R1 - sum(u2)) / 1'R1`` with ``u2 = 1 - loading^2``. Like psych, an item loading negatively
  is reversed for omega (``omega_flip=False`` turns this off); unlike psych, this is not silent:
  keyed items should not load negatively, so a warning is raised.

Two data layouts are accepted. Wide: one column per item, one row per response (optionally with
grouping columns named in ``by``) -> :func:`reliability`, :func:`item_statistics`. Long: one row per
answer with id, grouping, item and value columns -> :func:`reliability_long`,
:func:`item_statistics_long`, which pivot to wide and call the wide functions.

The computation is split along its ideas: :mod:`.moments` (pairwise-complete moments),
:mod:`.alpha`, :mod:`.one_factor` (the one-factor fit), :mod:`.omega` (omega and its bootstrap),
:mod:`.items` (item statistics) and :mod:`._screening` (checks and layouts); this module holds
the scale-level table and re-exports the public names.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from ._screening import (
    ReliabilityWarning,
    ScaleData,
    as_list,
    check_options,
    group_rng,
    groups,
    item_block,
    long_to_wide,
    screen,
)
from .alpha import alpha_asymptotic_variance, alpha_from_cor, alpha_from_cov, feldt_interval
from .items import ITEM_STATISTICS_COLUMNS, item_statistics, item_statistics_long
from .moments import cov2cor, pairwise_moments
from .omega import bootstrap_omega, omega_point

__all__ = [
    "ITEM_STATISTICS_COLUMNS",
    "RELIABILITY_COLUMNS",
    "ReliabilityWarning",
    "item_statistics",
    "item_statistics_long",
    "reliability",
    "reliability_long",
]

#: Columns of :func:`reliability` after the ``by`` columns, in order.
RELIABILITY_COLUMNS: tuple[str, ...] = (
    "n",
    "n_complete",
    "k",
    "items",
    "alpha",
    "alpha_ci_low",
    "alpha_ci_high",
    "alpha_se",
    "alpha_std",
    "average_r",
    "omega_total",
    "omega_ci_low",
    "omega_ci_high",
    "flag",
    "note",
)


def _scale_row(
    sd: ScaleData,
    *,
    ci: float,
    omega_ci: str,
    n_boot: int,
    rng: np.random.Generator,
    omega_method: str,
    omega_flip: bool,
) -> dict[str, object]:
    """All scale-level statistics of one screened scale."""
    x = sd.x
    n, k = sd.n_rows, x.shape[1]
    notes = list(sd.notes)
    row: dict[str, object] = {
        "n": n,
        "n_complete": int(np.all(~np.isnan(x), axis=1).sum()) if k else 0,
        "k": k,
        "items": ",".join(sd.names),
    }
    nan_stats = dict.fromkeys(
        (
            "alpha",
            "alpha_ci_low",
            "alpha_ci_high",
            "alpha_se",
            "alpha_std",
            "average_r",
            "omega_total",
            "omega_ci_low",
            "omega_ci_high",
        ),
        math.nan,
    )
    row.update(nan_stats)
    if k < 2:
        msg = f"fewer than 2 items with variance ({k}); reliability is undefined"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        row["note"] = "; ".join([*notes, msg])
        return row
    mom = pairwise_moments(x)
    c = mom.cov
    if not np.all(np.isfinite(c)):
        msg = "some item pairs have fewer than 2 rows answered together; reliability is undefined"
        warnings.warn(msg, ReliabilityWarning, stacklevel=3)
        row["note"] = "; ".join([*notes, msg])
        return row
    alpha = alpha_from_cov(c)
    r_scaled = cov2cor(c)
    low, high = feldt_interval(alpha, n, k, ci)
    q = alpha_asymptotic_variance(c)
    row.update(
        alpha=alpha,
        alpha_ci_low=low,
        alpha_ci_high=high,
        alpha_se=math.sqrt(q / n) if q >= 0 else math.nan,
        alpha_std=alpha_from_cor(r_scaled),
        average_r=float((r_scaled.sum() - k) / (k * (k - 1))),
    )
    if alpha < 0:
        notes.append("alpha is negative: items covary negatively on average (keying?)")
    om = omega_point(mom.cor, omega_method, omega_flip)
    notes.extend(om.notes)
    if om.notes:
        warnings.warn("; ".join(om.notes), ReliabilityWarning, stacklevel=3)
    row["omega_total"] = om.value
    if om.loadings is not None and omega_ci == "bootstrap" and n_boot > 0:
        reps = bootstrap_omega(x, om, omega_method, n_boot, rng, omega_flip)
        good = reps[np.isfinite(reps)]
        if good.size < max(10, int(0.9 * n_boot)):
            msg = f"only {good.size} of {n_boot} bootstrap replicates gave an omega; no interval"
            warnings.warn(msg, ReliabilityWarning, stacklevel=3)
            notes.append(msg)
        else:
            tail = (1.0 - ci) / 2.0
            # R's default quantile (type 7) is numpy's "linear" method.
            row["omega_ci_low"], row["omega_ci_high"] = (
                float(v) for v in np.quantile(good, [tail, 1.0 - tail])
            )
            if good.size < n_boot:
                notes.append(f"omega interval from {good.size} of {n_boot} replicates")
    row["note"] = "; ".join(notes)
    return row


def reliability(
    items: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    ci: float = 0.95,
    omega_ci: Literal["bootstrap", "none"] = "bootstrap",
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold: float | None = None,
    omega_method: Literal["ml", "minres"] = "ml",
    omega_flip: bool = True,
) -> pd.DataFrame:
    """Coefficient alpha and omega total of keyed items, one row per scale (or per group).

    Parameters
    ----------
    items : pandas.DataFrame
        One column per item, one row per response, already keyed (reverse-scored items
        reversed). Missing values are allowed. Every column that is not named in `by` is an item
        and must be numeric.
    by : str or sequence of str, optional
        Grouping columns (e.g. ``["construct", "wave"]``); one result row per group. Within a
        group, item columns with no answer at all are taken to belong to another scale and are
        left out silently.
    ci : float, default 0.95
        Confidence level of the alpha and omega intervals.
    omega_ci : {"bootstrap", "none"}, default "bootstrap"
        ``"bootstrap"``: percentile interval over `n_boot` row resamples, each refitted.
        ``"none"``: no omega interval (NaN bounds), for speed.
    n_boot : int, default 1000
        Bootstrap replicates for the omega interval.
    seed : int or None, default 0
        Seed of the bootstrap. Each group's generator is derived from the seed and the group's
        key, so adding or removing groups does not change another group's interval.
    threshold : float, optional
        If given, ``flag`` is True where alpha or omega total is below it, or alpha is NaN.
    omega_method : {"ml", "minres"}, default "ml"
        How the one-factor model behind omega is fitted: maximum likelihood
        (``psych::omega(fm = "ml")``) or minimum residual (psych's default ``fm = "minres"``).
        ML needs a positive definite pairwise correlation matrix (omega is NaN otherwise, as
        psych then fails); minres does not.
    omega_flip : bool, default True
        Reverse items that load negatively on the factor before computing omega, as
        ``psych::omega`` does by default (``flip = TRUE``); a warning and the ``note`` column
        name the situation, since keyed items should not load negatively. With False, omega is
        that of the items exactly as given (alpha always is).

    Returns
    -------
    pandas.DataFrame
        The `by` columns, then ``n`` (rows, including rows with no item answered, as psych
        counts them), ``n_complete`` (rows with every item answered), ``k`` (items used),
        ``items`` (their names, comma-joined), ``alpha`` (psych ``raw_alpha``),
        ``alpha_ci_low``/``alpha_ci_high`` (Feldt bounds), ``alpha_se`` (asymptotic standard
        error, psych ``ase``), ``alpha_std`` (psych ``std.alpha``), ``average_r``,
        ``omega_total``, ``omega_ci_low``/``omega_ci_high``, ``flag`` (bool) and ``note`` (why a
        value is missing or what was left out; empty when nothing was). ``attrs`` records the
        options used.

    Raises
    ------
    ScoringError
        If `items` is not a DataFrame, a `by` column is missing, an item column is not numeric,
        or an option is out of range.

    Warns
    -----
    ReliabilityWarning
        When items without variance are left out, rows without any answer are counted, a scale
        has fewer than 2 usable items (statistics are NaN), omega cannot be computed, or items
        load negatively.

    Notes
    -----
    Alpha is ``k/(k-1) * (1 - tr(C) / 1'C1)`` for the pairwise-complete covariance matrix ``C``
    (Cronbach, 1951); with missing values this matches ``psych::alpha``'s default
    ``use = "pairwise"``. The interval treats ``(1 - alpha) / (1 - alpha_pop)`` as
    ``F(n - 1, (n - 1)(k - 1))`` (Feldt, Woodruff & Salih, 1987), which is ``psych::alpha.ci``.
    Omega total is computed from a one-factor model fitted to the pairwise-complete correlation
    matrix (McDonald, 1999), as ``psych::omega`` with one factor does; the bootstrap resamples
    rows and refits every replicate (Kelley & Pornprasertmanit, 2016, recommend such intervals).

    In R: ``psych::alpha(x)`` (``$total``, ``$feldt``) and
    ``psych::omega(x, nfactors = 1, fm = "ml")$omega.tot``.

    References
    ----------
    .. [1] Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests.
       Psychometrika, 16(3), 297-334.
    .. [2] Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for
       coefficient alpha. Applied Psychological Measurement, 11(1), 93-103.
    .. [3] van Zyl, J. M., Neudecker, H., & Nel, D. G. (2000). On the distribution of the
       maximum likelihood estimator of Cronbach's alpha. Psychometrika, 65(3), 271-280.
    .. [4] McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
    .. [5] Kelley, K., & Pornprasertmanit, S. (2016). Confidence intervals for population
       reliability coefficients. Psychological Methods, 21(1), 69-92.
    .. [6] Revelle, W. (2022). psych: Procedures for psychological, psychometric, and
       personality research (R package version 2.2.9).

    Examples
    --------
    >>> table = reliability(wide, by=["construct", "wave"], threshold=0.7)  # doctest: +SKIP
    """
    by_cols = as_list(by)
    check_options(ci, omega_ci, n_boot, omega_method)
    item_block(items, by_cols)
    rows: list[dict[str, object]] = []
    for key, frame in groups(items, by_cols):
        block = item_block(frame, by_cols)
        scale = screen(block, grouped=bool(by_cols))
        row = _scale_row(
            scale,
            ci=ci,
            omega_ci=omega_ci,
            n_boot=n_boot,
            rng=group_rng(seed, key),
            omega_method=omega_method,
            omega_flip=omega_flip,
        )
        rows.append({**dict(zip(by_cols, key, strict=True)), **row})
    out = pd.DataFrame(rows, columns=[*by_cols, *RELIABILITY_COLUMNS])
    out["flag"] = _flags(out, threshold)
    out["note"] = out["note"].fillna("")
    for col in ("n", "n_complete", "k"):
        out[col] = out[col].astype("int64")
    out.attrs.update(
        ci=ci,
        omega_ci=omega_ci,
        n_boot=n_boot if omega_ci == "bootstrap" else 0,
        seed=seed,
        threshold=threshold,
        omega_method=omega_method,
        omega_flip=omega_flip,
        alpha_interval="Feldt, Woodruff & Salih (1987)",
    )
    return out


def _flags(table: pd.DataFrame, threshold: float | None) -> pd.Series:
    if threshold is None or table.empty:
        return pd.Series(False, index=table.index, dtype=bool)
    alpha = table["alpha"].astype(float)
    omega = table["omega_total"].astype(float)
    low = (alpha < threshold) | (omega < threshold) | alpha.isna()
    return low.astype(bool)


def reliability_long(
    responses: pd.DataFrame,
    *,
    by: str | Sequence[str] = ("construct", "wave"),
    id_cols: str | Sequence[str] = ("participant",),
    item_col: str = "item",
    value_col: str = "value",
    ci: float = 0.95,
    omega_ci: Literal["bootstrap", "none"] = "bootstrap",
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold: float | None = None,
    omega_method: Literal["ml", "minres"] = "ml",
    omega_flip: bool = True,
) -> pd.DataFrame:
    """:func:`reliability` for long responses: one row per answer, one result row per group.

    Parameters
    ----------
    responses : pandas.DataFrame
        One row per answer, with the `id_cols`, `by`, `item_col` and `value_col` columns, e.g.
        ``participant, wave, construct, item, value``. Values must be keyed. Rows with a missing
        value are treated as not answered.
    by : str or sequence of str, default ("construct", "wave")
        The groups a result row is computed for; a construct's items are the items that occur
        in its group.
    id_cols : str or sequence of str, default ("participant",)
        What identifies one respondent within a group.
    item_col, value_col : str
        The item name and the (keyed, numeric) answer.
    ci, omega_ci, n_boot, seed, threshold, omega_method, omega_flip
        As in :func:`reliability`.

    Returns
    -------
    pandas.DataFrame
        As :func:`reliability` with ``by`` columns first. ``n`` counts the respondents with at
        least one answer in the group.

    Raises
    ------
    ScoringError
        If a column is missing, values are not numeric, or an (id, group, item) answer repeats.

    Notes
    -----
    Pivoting keeps a respondent in a group only if they answered something there, so ``n`` is
    the number of respondents, never padded with empty rows.

    In R: ``psych::alpha(tidyr::pivot_wider(d, names_from = item, values_from = value)[items])``
    per group, and ``psych::omega(..., nfactors = 1, fm = "ml")``.

    References
    ----------
    .. [1] Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for
       coefficient alpha. Applied Psychological Measurement, 11(1), 93-103.
    .. [2] McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
    """
    by_cols = as_list(by)
    ids = as_list(id_cols)
    wide = long_to_wide(responses, id_cols=ids, by=by_cols, item_col=item_col, value_col=value_col)
    return reliability(
        wide,
        by=by_cols,
        ci=ci,
        omega_ci=omega_ci,
        n_boot=n_boot,
        seed=seed,
        threshold=threshold,
        omega_method=omega_method,
        omega_flip=omega_flip,
    )
