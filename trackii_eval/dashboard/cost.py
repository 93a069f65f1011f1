"""Cost-effectiveness of dialogues, with the effect's uncertainty carried through.

For a dialogue that cost ``C`` (``funding.costs`` in study.yaml):

- cost per participant: ``C / N`` with ``N`` the dialogue's baseline respondents (exact);
- cost per transferred idea: ``C / I`` with ``I`` the ideas transferred or adopted (exact);
- cost per reliable improver: ``C / R`` with ``R`` the participants whose change reached the
  reliable change index at the end of the programme (observed, exact);
- cost per *additional* reliable improver, the effect-based ratio: ``C / (n (p_d - p_c))``, with
  ``p_d`` and ``p_c`` the improver shares of the dialogue and of the comparison arm at that
  wave and ``n`` the dialogue's participants measured then. Its uncertainty is carried through
  by simulation: ``p_d`` and ``p_c`` are drawn from their Jeffreys posteriors
  ``Beta(x + 1/2, n - x + 1/2)`` (independent groups), the ratio computed per draw, and the 2.5%
  and 97.5% quantiles reported. Where the interval of ``p_d - p_c`` reaches zero the ratio is
  unbounded above (no improver beyond the comparison group's rate cannot be ruled out), and the
  upper limit is reported as infinite rather than as a misleadingly large number.

Targets (``funding.targets``) are met when the whole 95% interval is on the right side, missed
when it is wholly on the wrong side, and otherwise "uncertain".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["RatioInterval", "cost_per_additional_improver", "target_status"]


@dataclass(frozen=True)
class RatioInterval:
    """A cost ratio with its simulation interval (currency units; ``inf`` = unbounded)."""

    estimate: float
    low: float
    high: float
    draws: int


def cost_per_additional_improver(cost: float, n_dialogue: int, improved_dialogue: int,
                                 n_comparison: int, improved_comparison: int, *,
                                 draws: int = 20000, seed: int = 14) -> RatioInterval:
    """Cost per reliable improver beyond the comparison group's rate, with a 95% interval.

    Parameters
    ----------
    cost : float
        What the dialogue cost (> 0).
    n_dialogue, improved_dialogue : int
        Dialogue participants measured at the wave, and how many reliably improved.
    n_comparison, improved_comparison : int
        The same for the comparison arm.
    draws : int
        Simulation draws.
    seed : int
        Seed of the generator (the result is reproducible).

    Returns
    -------
    RatioInterval
        ``estimate`` from the observed shares (``inf`` when the dialogue's share does not
        exceed the comparison arm's); ``low`` and ``high`` the 2.5% and 97.5% quantiles of the
        simulated ratio, with non-positive excess counted as ``inf``.

    Raises
    ------
    ValueError
        A non-positive cost or group size, or more improvers than people.
    """
    if not cost > 0 or n_dialogue <= 0 or n_comparison <= 0:
        raise ValueError("cost and group sizes must be positive")
    if not (0 <= improved_dialogue <= n_dialogue and 0 <= improved_comparison <= n_comparison):
        raise ValueError("improvers must be between 0 and the group size")
    rng = np.random.default_rng(seed)
    pd_ = rng.beta(improved_dialogue + 0.5, n_dialogue - improved_dialogue + 0.5, draws)
    pc = rng.beta(improved_comparison + 0.5, n_comparison - improved_comparison + 0.5, draws)
    excess = n_dialogue * (pd_ - pc)
    ratio = np.where(excess > 0, cost / np.where(excess > 0, excess, 1.0), np.inf)
    observed = n_dialogue * (improved_dialogue / n_dialogue - improved_comparison / n_comparison)
    est = cost / observed if observed > 0 else math.inf
    # order statistics, not interpolation: infinite draws must stay infinite
    lo = np.quantile(ratio, 0.025, method="lower")
    hi = np.quantile(ratio, 0.975, method="higher")
    return RatioInterval(float(est), float(lo), float(hi), draws)


def target_status(low: float, high: float, target: float, *, lower_is_better: bool) -> str:
    """``"met"``, ``"missed"`` or ``"uncertain"``: where the interval lies against the target."""
    if lower_is_better:
        if high <= target:
            return "met"
        if low > target:
            return "missed"
    else:
        if low >= target:
            return "met"
        if high < target:
            return "missed"
    return "uncertain"
