"""Panel models of change against the comparison arm (linearmodels).

:func:`event_study` fits the two-way fixed-effects difference-in-differences with one effect
per post-baseline wave (an event study): participant and wave fixed effects absorb stable
differences between people and shocks that hit everyone (elections, escalations), and
``dialogue x wave`` interactions estimate the gap the dialogue opened at each wave relative to
baseline. Standard errors are clustered by participant (Cameron & Miller 2015).

With a single treatment date (everyone starts at baseline) the static TWFE problems described
by Goodman-Bacon (2021) do not arise; staggered designs belong to a later estimator.

References
----------
Wooldridge, J. M. (2010). Econometric Analysis of Cross Section and Panel Data (2nd ed.), ch. 10.
Cameron, A. C., & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
Journal of Human Resources, 50(2), 317-372.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from linearmodels.panel import PanelOLS

from ..errors import ModelError

__all__ = ["PanelFit", "event_study"]


@dataclass(frozen=True)
class PanelFit:
    """Result of a panel model: a tidy effects table and the fit record."""

    outcome: str
    estimator: str
    effects: pd.DataFrame  # index term; estimate, std_error, t, p_value, ci_low, ci_high, wave
    nobs: int
    n_participants: int
    r2_within: float
    cov_type: str
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Text for people."""
        head = (f"{self.estimator}: {self.outcome}; {self.nobs} observations of "
                f"{self.n_participants} participants; SE clustered by {self.cov_type}\n")
        return head + self.effects.round(3).to_string()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "outcome": self.outcome, "estimator": self.estimator,
            "effects": self.effects.reset_index().to_dict(orient="records"),
            "nobs": self.nobs, "n_participants": self.n_participants,
            "r2_within": self.r2_within, "cov_type": self.cov_type, "warnings": self.warnings,
        }


def event_study(
    data: pd.DataFrame, outcome: str, *, entity: str = "participant", wave: str = "wave",
    treated: str = "treated", alpha: float = 0.05,
) -> PanelFit:
    """Two-way fixed-effects event study of the dialogue's effect at each wave.

    Parameters
    ----------
    data
        Wide scores (one row per participant and wave) with the outcome, ``treated`` (0/1) and
        the wave index.
    outcome
        Column to model.
    entity, wave, treated
        Column names.
    alpha
        1 - confidence level of the intervals.

    Returns
    -------
    PanelFit
        One effect per post-baseline wave: the change in the dialogue-comparison gap since
        the first wave.

    Examples
    --------
    The same estimate in Stata: ``xtreg y i.wave##i.treated, fe vce(cluster id)``; in R:
    ``plm(y ~ factor(wave):treated, effect = "twoways", model = "within")`` with clustered
    ``vcovHC(type = "HC1", cluster = "group")``.
    """
    frame = data[[entity, wave, treated, outcome]].dropna()
    if frame.empty:
        raise ModelError(f"event study: no complete observations of '{outcome}'")
    waves = sorted(frame[wave].unique())
    if frame[treated].nunique() < 2:
        raise ModelError(f"event study of '{outcome}': needs both a dialogue and a comparison arm")
    frame = frame.set_index([entity, wave])
    regressors = pd.DataFrame(index=frame.index)
    wave_values = frame.index.get_level_values(wave)
    for w in waves[1:]:
        regressors[f"dialogue:wave{w}"] = ((wave_values == w) * frame[treated]).astype(float)
    model = PanelOLS(frame[outcome], regressors, entity_effects=True, time_effects=True,
                     drop_absorbed=True, check_rank=True)
    res = model.fit(cov_type="clustered", cluster_entity=True)
    ci = res.conf_int(level=1 - alpha)
    effects = pd.DataFrame({
        "estimate": res.params, "std_error": res.std_errors, "t": res.tstats,
        "p_value": res.pvalues, "ci_low": ci["lower"], "ci_high": ci["upper"],
    })
    effects["wave"] = [int(name.removeprefix("dialogue:wave")) for name in effects.index]
    effects.index.name = "term"
    return PanelFit(
        outcome=outcome, estimator="Two-way fixed effects event study (PanelOLS)",
        effects=effects, nobs=int(res.nobs), n_participants=int(res.entity_info["total"]),
        r2_within=float(res.rsquared_within), cov_type="participant",
        warnings=[] if np.isfinite(res.std_errors).all() else ["non-finite standard errors"],
    )
