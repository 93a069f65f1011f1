"""Random-effects meta-analysis of effects across dialogues (the portfolio summary).

Each dialogue contributes an estimate ``y_i`` with standard error ``s_i``; the model is
``y_i = mu + u_i + e_i`` with ``u_i ~ N(0, tau^2)`` (between-dialogue heterogeneity) and
``e_i ~ N(0, s_i^2)`` (sampling error, taken as known). Estimators of ``tau^2``:

- ``"DL"``: DerSimonian & Laird (1986), method of moments from Cochran's Q;
- ``"REML"``: restricted maximum likelihood by Fisher scoring (Viechtbauer 2005), as
  ``metafor::rma(method = "REML")``.

Inference on ``mu`` is a normal (Wald) interval, or with ``knapp_hartung=True`` the Knapp &
Hartung (2003) adjusted variance with a t(k - 1) interval, as ``metafor::rma(test = "knha")``.
Heterogeneity: Cochran's ``Q`` (df ``k - 1``) and its p-value, ``I^2`` as metafor computes it
(``100 tau^2 / (tau^2 + s^2)`` with the "typical" within-study variance ``s^2`` of Higgins &
Thompson 2002), ``H^2``. Checked against metafor in ``tests/fixtures/meta/make_fixtures.R``.

Own code rather than ``statsmodels.stats.meta_analysis.combine_effects``: that offers DL and
Paule-Mandel but no REML, and its t option scales by a different factor than Knapp-Hartung
(the tests check its DL against ours as well).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = ["MetaResult", "random_effects"]


@dataclass(frozen=True)
class MetaResult:
    """A pooled random-effects estimate and its heterogeneity statistics."""

    method: str
    knapp_hartung: bool
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p: float
    tau2: float
    tau: float
    i2: float
    h2: float
    q: float
    q_df: int
    q_p: float
    weights: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-serialisable dict."""
        d = asdict(self)
        d["weights"] = list(self.weights)
        return d


def _tau2_dl(y: np.ndarray, v: np.ndarray) -> float:
    w = 1 / v
    mu = np.sum(w * y) / w.sum()
    q = float(np.sum(w * (y - mu) ** 2))
    c = w.sum() - np.sum(w**2) / w.sum()
    return max(0.0, (q - (len(y) - 1)) / c) if c > 0 else 0.0


def _tau2_reml(y: np.ndarray, v: np.ndarray, *, tol: float = 1e-10, max_iter: int = 500
               ) -> float:
    # Fisher scoring on the restricted likelihood (Viechtbauer 2005, eq. 16), started at DL
    # and truncated at zero, as metafor does.
    tau2 = _tau2_dl(y, v)
    for _ in range(max_iter):
        w = 1 / (v + tau2)
        mu = np.sum(w * y) / w.sum()
        # P = W - W 1 1' W / sum(W): the REML projection
        py = w * (y - mu)
        trace_p = w.sum() - np.sum(w**2) / w.sum()
        pp_trace = np.sum(w**2) - 2 * np.sum(w**3) / w.sum() + (np.sum(w**2) / w.sum()) ** 2
        step = (float(py @ py) - trace_p) / pp_trace
        new = max(0.0, tau2 + step)
        if abs(new - tau2) < tol * max(1.0, tau2):
            return new
        tau2 = new
    raise RuntimeError("REML estimate of tau^2 did not converge in 500 Fisher scoring steps")


def random_effects(estimates: Any, std_errors: Any, *, method: Literal["DL", "REML"] = "REML",
                   knapp_hartung: bool = False, level: float = 0.95) -> MetaResult:
    """Pool effect estimates under a random-effects model.

    Parameters
    ----------
    estimates : array-like (k,)
        One effect per dialogue, all in the same units (e.g. POMP points).
    std_errors : array-like (k,)
        Their standard errors (> 0).
    method : {"DL", "REML"}
        Estimator of the between-dialogue variance ``tau^2``.
    knapp_hartung : bool
        Knapp-Hartung adjusted standard error and t(k - 1) interval (recommended for few
        dialogues; IntHout et al. 2014).
    level : float
        Confidence level of the interval.

    Returns
    -------
    MetaResult
        ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``p`` of the pooled effect; ``tau2``,
        ``i2`` (percent), ``h2``, ``q`` (Cochran's Q), ``q_df``, ``q_p``; normalised weights.

    Raises
    ------
    ValueError
        Fewer than two estimates, lengths differ, or a standard error is not positive/finite.
    """
    y = np.asarray(estimates, dtype=float)
    s = np.asarray(std_errors, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("estimates and std_errors must be 1-d arrays of one length")
    if len(y) < 2:
        raise ValueError(f"a meta-analysis needs at least two estimates, got {len(y)}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("every estimate must be finite and every standard error positive")
    v = s**2
    k = len(y)
    if method == "DL":
        tau2 = _tau2_dl(y, v)
    elif method == "REML":
        tau2 = _tau2_reml(y, v)
    else:
        raise ValueError(f"method must be 'DL' or 'REML', got {method!r}")
    w_fe = 1 / v
    mu_fe = np.sum(w_fe * y) / w_fe.sum()
    q = float(np.sum(w_fe * (y - mu_fe) ** 2))
    q_p = float(stats.chi2.sf(q, k - 1))
    # I^2 and H^2 from tau^2 and the typical within-study variance (Higgins & Thompson 2002),
    # as metafor reports them for every estimator
    typical = (k - 1) * w_fe.sum() / (w_fe.sum() ** 2 - np.sum(w_fe**2))
    i2 = 100 * tau2 / (tau2 + typical)
    h2 = (tau2 + typical) / typical
    w = 1 / (v + tau2)
    mu = float(np.sum(w * y) / w.sum())
    alpha = 1 - level
    if knapp_hartung:
        se = float(np.sqrt(np.sum(w * (y - mu) ** 2) / ((k - 1) * w.sum())))
        crit = float(stats.t.ppf(1 - alpha / 2, k - 1))
        p = float(2 * stats.t.sf(abs(mu / se), k - 1))
    else:
        se = float(np.sqrt(1 / w.sum()))
        crit = float(stats.norm.ppf(1 - alpha / 2))
        p = float(2 * stats.norm.sf(abs(mu / se)))
    return MetaResult(
        method=method, knapp_hartung=knapp_hartung, k=k, estimate=mu, se=se,
        ci_low=mu - crit * se, ci_high=mu + crit * se, p=p, tau2=float(tau2),
        tau=float(np.sqrt(tau2)), i2=float(i2), h2=float(h2), q=q, q_df=k - 1, q_p=q_p,
        weights=tuple(float(x) for x in w / w.sum()),
    )
