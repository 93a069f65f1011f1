"""CR2 (Bell-McCaffrey) cluster-robust covariance with Satterthwaite degrees of freedom.

With few clusters -- three dialogues -- the usual clustered sandwich (CR1, ``models.panel``)
is biased downwards and its t(G - 1) reference is too optimistic. CR2 scales each cluster's
residuals by the inverse symmetric square root of ``I - H_jj`` (the cluster's block of the
residual-maker), which makes the sandwich unbiased when the errors are independent and
homoskedastic, and tests each coefficient or contrast against a t distribution whose degrees
of freedom are estimated by Satterthwaite's approximation under that working model
(Bell & McCaffrey 2002; Pustejovsky & Tipton 2018). With a few clusters, and above all with
few *treated* clusters, these df are small (often 2-5) and the interval is honest about it.

Fixed effects: unit effects are nested in the clusters (a participant belongs to one
dialogue) and are absorbed by demeaning within unit; effects that are not nested (waves)
stay in the design as dummies, as clubSandwich's ``vcovCR`` does for ``plm`` two-way fits
(its augmented model matrix). For a nested effect the absorbed computation equals the one
with the dummies in the design and the Moore-Penrose square root that clubSandwich uses
(P&T 2018, section 3): both act identically on the within-unit subspace where the
residuals live. Checked against R clubSandwich 0.5.8 (``vcovCR(type = "CR2")``,
``coef_test(test = "Satterthwaite")``, ``linear_contrast``) on lm and plm fits:
``tests/fixtures/clubsandwich``.

References
----------
Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear
regression with multi-stage samples. Survey Methodology, 28(2), 169-181.
Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance
estimation and hypothesis testing in fixed effects models. Journal of Business & Economic
Statistics, 36(4), 672-683.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ModelError

__all__ = ["CR2", "cr2", "within_design"]


@dataclass(frozen=True)
class CR2:
    """A CR2 fit of least squares on an (absorbed) design.

    Attributes
    ----------
    beta : ndarray, shape (k,)
        Coefficients of the design's columns.
    vcov : ndarray, shape (k, k)
        CR2 covariance.
    df : ndarray, shape (k,)
        Satterthwaite df of each coefficient.
    n_clusters : int
    """

    beta: np.ndarray
    vcov: np.ndarray
    df: np.ndarray
    n_clusters: int
    _bread: np.ndarray
    _x: np.ndarray
    _blocks: tuple[np.ndarray, ...]
    _adjust: tuple[np.ndarray, ...]

    def contrast_df(self, c: np.ndarray) -> float:
        """Satterthwaite df of the linear combination ``c @ beta`` (P&T 2018, eq. 11).

        Under the working model (independent errors of equal variance) c'Vc = e'GG'e with
        g_j = (I - H)[:, cluster j] A_j X_j M c; its mean is tr(G'G) and its variance
        2 tr((G'G)^2), and df = 2 mean^2 / variance.
        """
        c = np.asarray(c, dtype=float)
        mc = self._bread @ c
        x = self._x
        cols = []
        for idx, a in zip(self._blocks, self._adjust, strict=True):
            u = a @ (x[idx] @ mc)
            g = -x @ (self._bread @ (x[idx].T @ u))
            g[idx] += u
            cols.append(g)
        gmat = np.column_stack(cols)
        s = gmat.T @ gmat
        denom = float((s**2).sum())
        return float(np.trace(s) ** 2 / denom) if denom > 0 else np.nan


def _inv_sqrt_psd(b: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse of the symmetric square root of a PSD matrix."""
    vals, vecs = np.linalg.eigh((b + b.T) / 2)
    tol = max(vals.max(initial=0.0), 1.0) * 1e-10 * len(vals)
    inv = np.where(vals > tol, 1 / np.sqrt(np.clip(vals, tol, None)), 0.0)
    return (vecs * inv) @ vecs.T


def cr2(x: np.ndarray, y: np.ndarray, cluster: np.ndarray) -> CR2:
    """Least squares of ``y`` on ``x`` with CR2 covariance and Satterthwaite df.

    Parameters
    ----------
    x : ndarray, shape (n, k)
        Design, fixed effects nested in the clusters already absorbed (see
        :func:`within_design`); full column rank.
    y : ndarray, shape (n,)
        Outcome, absorbed the same way.
    cluster : ndarray, shape (n,)
        Cluster label of each row.

    Returns
    -------
    CR2

    Raises
    ------
    ModelError
        Fewer than two clusters, or a rank-deficient design.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    codes, _ = pd.factorize(pd.Series(cluster), sort=True)
    g = int(codes.max()) + 1 if len(codes) else 0
    if g < 2:
        raise ModelError(f"CR2 standard errors need at least 2 clusters, got {g}")
    xtx = x.T @ x
    if np.linalg.matrix_rank(xtx) < x.shape[1]:
        raise ModelError("CR2: the design is rank deficient after absorbing the fixed effects")
    bread = np.linalg.inv(xtx)
    beta = bread @ (x.T @ y)
    e = y - x @ beta
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    blocks = tuple(np.split(order, bounds))
    meat = np.zeros_like(xtx)
    adjust = []
    for idx in blocks:
        xj = x[idx]
        a = _inv_sqrt_psd(np.eye(len(idx)) - xj @ bread @ xj.T)
        adjust.append(a)
        v = xj.T @ (a @ e[idx])
        meat += np.outer(v, v)
    vcov = bread @ meat @ bread
    out = CR2(beta=beta, vcov=vcov, df=np.full(x.shape[1], np.nan), n_clusters=g,
              _bread=bread, _x=x, _blocks=blocks, _adjust=tuple(adjust))
    df = np.array([out.contrast_df(np.eye(x.shape[1])[i]) for i in range(x.shape[1])])
    object.__setattr__(out, "df", df)
    return out


def within_design(frame: pd.DataFrame, unit: str, time: str, regressors: list[str],
                  outcome: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unit-demeaned design of a two-way fixed-effects model: the regressors and T - 1 time
    dummies (time effects are not nested in unit clusters, so they stay in the design).

    Parameters
    ----------
    frame : DataFrame
        Long data without missing values in the columns used.
    unit, time : str
        Unit (absorbed) and time (dummies) columns.
    regressors : list of str
        Columns whose coefficients are wanted (first in the design).
    outcome : str

    Returns
    -------
    x, y : ndarray
        Demeaned design and outcome.
    names : list of str
        Column names of ``x`` (the regressors, then ``time=<t>`` dummies).
    """
    times = sorted(frame[time].unique())
    dummies = pd.DataFrame({f"{time}={t}": (frame[time] == t).astype(float)
                            for t in times[1:]}, index=frame.index)
    design = pd.concat([frame[regressors].astype(float), dummies], axis=1)
    design[outcome + "__y"] = frame[outcome].astype(float)
    demeaned = design - design.groupby(frame[unit].to_numpy()).transform("mean")
    y = demeaned.pop(outcome + "__y").to_numpy()
    return demeaned.to_numpy(), y, list(demeaned.columns)
