"""Few-cluster inference: the wild cluster bootstrap (Webb weights), and where CR2 fits.

Which: with ``cluster="dialogue"`` and ``inference="wild"``,

- the static TWFE coefficient gets the restricted wild cluster bootstrap-t (WCR; Cameron,
  Gelbach & Miller 2008; ``boottest``): p-value of beta = 0 and the interval by inverting the
  test (:func:`wcr_twfe`), the standard error shown stays the analytic clustered one;
- Callaway-Sant'Anna, Sun-Abraham and the imputation estimator get the multiplier (wild)
  bootstrap of their influence functions at the cluster level, as R ``did`` does with
  ``clustervars``, with t(G-1) critical values.

CR2 (Bell-McCaffrey, :mod:`trackii_eval.models.cr2`) is offered beside the WCR bootstrap for
the least-squares fits -- ``twfe_did(inference="cr2")`` and
``event_study(small="cr2", cluster=...)`` -- with Satterthwaite degrees of freedom
(Pustejovsky & Tipton 2018; matches R clubSandwich). Why not for the others: CR2 repairs the
sandwich of *one least-squares fit*; the Callaway-Sant'Anna and imputation estimators are not
one least-squares fit, while every estimator here has per-unit influence functions that a
cluster-level wild bootstrap perturbs directly. For the regression coefficient the WCR
bootstrap-t imposes the null, which keeps its size close to nominal with few (treated)
clusters (MacKinnon & Webb 2018); CR2's small Satterthwaite df do the same analytically.
Rademacher weights give only 2^G distinct draws (8 with three dialogues), so Webb's six-point
distribution (6^G = 216) is used. Below about 10 clusters every method is rough; fits warn,
and with 3 clusters a bootstrap p-value cannot go below about 1/216 in any case.

References
----------
Webb, M. D. (2023). Reworking wild bootstrap-based inference for clustered errors. Canadian
Journal of Economics, 56(3), 839-858.
MacKinnon, J. G., & Webb, M. D. (2018). The wild bootstrap for few (treated) clusters.
Econometrics Journal, 21(2), 114-135.
Cameron, A. C., Gelbach, J. B., & Miller, D. L. (2008). Bootstrap-based improvements for
inference with clustered errors. Review of Economics and Statistics, 90(3), 414-427.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wcr_twfe", "webb_weights"]

_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])


def webb_weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draws of Webb's six-point distribution (mean 0, variance 1), equally likely values
    ±sqrt(3/2), ±1, ±sqrt(1/2).

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int

    Returns
    -------
    ndarray of ``shape``
    """
    return _WEBB[rng.integers(0, 6, size=shape)]


def wcr_twfe(dt: np.ndarray, yt: np.ndarray, cluster: np.ndarray, n_clusters: int, *,
             n_boot: int = 999, seed: int = 12345, level: float = 0.95,
             scale: float = 1.0, ci: bool = True) -> dict[str, float]:
    """Restricted wild cluster bootstrap-t (WCR) for the single coefficient of a two-way FE
    regression, with Webb weights: p-value of beta = 0 and the interval by test inversion.

    Parameters
    ----------
    dt, yt : ndarray, shape (n_units, n_periods)
        Two-way demeaned regressor and outcome (balanced panel).
    cluster : ndarray of int, shape (n_units,)
        Cluster code per unit (units nested in clusters).
    n_clusters : int
    n_boot, seed : int
        Bootstrap draws (the same draws for every null value, so the inverted interval is
        well defined) and seed.
    level : float
        Confidence level of the interval.
    scale : float
        Small-sample factor of the cluster-robust variance (it cancels in the bootstrap-t
        p-value; kept so that the t statistics are the reported ones).

    Returns
    -------
    dict
        ``p_value`` (symmetric, share of |t*| >= |t|), ``ci_low``, ``ci_high``, ``level``,
        ``n_boot``.

    Notes
    -----
    Cameron, Gelbach & Miller (2008), the WCR-t; Roodman, MacKinnon, Nielsen & Webb (2019),
    ``boottest``: the null is imposed on the bootstrap outcomes,
    y* = beta0 d + w_c e(beta0), e(beta0) = y - beta0 d, and each draw's t uses the cluster-
    robust standard error.
    """
    rng = np.random.default_rng(seed)
    w = webb_weights(rng, (n_boot, n_clusters))[:, cluster]  # (B, n_units)
    sxx = float((dt**2).sum())
    member = np.zeros((len(cluster), n_clusters))
    member[np.arange(len(cluster)), cluster] = 1.0
    d_flat = dt

    def t_stat(y: np.ndarray, beta0: float) -> np.ndarray:
        # y: (..., n_units, n_periods) demeaned outcomes; t of beta - beta0, CR by cluster
        b = (y * d_flat).sum(axis=(-2, -1)) / sxx
        resid = y - b[..., None, None] * d_flat
        unit_score = (resid * d_flat).sum(axis=-1)  # (..., n_units)
        sums = unit_score @ member  # (..., n_clusters)
        se = np.sqrt(scale * (sums**2).sum(axis=-1)) / sxx
        return (b - beta0) / se

    q = (d_flat**2).sum(axis=1)  # (n_units,)
    n_units = d_flat.shape[0]

    def p_value(beta0: float) -> float:
        t0 = float(t_stat(yt, beta0))
        e0 = yt - beta0 * d_flat
        # y* = beta0 d + w_c e0, two-way demeaned: e0 has unit means 0 and w is constant
        # within a unit, so only the period means m = w e0 / n leave; in closed form
        # (B x units matrices, no B x units x periods array)
        r = (e0 * d_flat).sum(axis=1)
        m = w @ e0 / n_units  # (B, n_periods)
        b = beta0 + (w @ r) / sxx  # period means drop out: d has period means 0
        score = (beta0 - b)[:, None] * q[None, :] + w * r[None, :] - m @ d_flat.T
        se = np.sqrt(scale * ((score @ member) ** 2).sum(axis=1)) / sxx
        tb = (b - beta0) / se
        return float(np.mean(np.abs(tb) >= abs(t0)))

    beta = float((yt * d_flat).sum() / sxx)
    alpha = 1 - level
    se0 = abs(beta / float(t_stat(yt, 0.0))) if beta != 0 else 1.0

    def bound(direction: float) -> float:
        # the p-value falls as beta0 moves away from beta; bisection on p(beta0) = alpha
        inner, step = beta, se0
        outer = beta + direction * step
        for _ in range(60):
            if p_value(outer) < alpha:
                break
            inner, outer = outer, beta + direction * (step := step * 2)
        else:
            return float(np.inf * direction)
        for _ in range(30):  # to ~1e-9 of the starting step
            mid = 0.5 * (inner + outer)
            if p_value(mid) >= alpha:
                inner = mid
            else:
                outer = mid
        return 0.5 * (inner + outer)

    if not ci:
        return {"p_value": p_value(0.0), "ci_low": np.nan, "ci_high": np.nan, "level": level,
                "n_boot": n_boot}
    return {"p_value": p_value(0.0), "ci_low": bound(-1.0), "ci_high": bound(1.0),
            "level": level, "n_boot": n_boot}
