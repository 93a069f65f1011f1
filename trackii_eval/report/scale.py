"""On which scale a fitted model's effect terms are printed.

A linear model's coefficient is a difference in the outcome's own units, printed after the
unit's factor (×100 for a yes/no share). A generalized or cumulative-link model's coefficient
is on its link scale (log odds, log rate, probit); multiplied by a unit factor and labelled
"percentage points" it would be a wrong number. Such terms are printed as ratios
(``exp`` of the estimate and of both interval ends; the p-value is the link-scale test's),
or, for a probit link, as a shift on the latent standard-normal scale. The decision reads
the stored fit's ``kind``, ``family`` and ``link``, never the model's name.

References: McCullagh & Nelder (1989), *Generalized Linear Models*, ch. 4-6; Agresti (2010),
*Analysis of Ordinal Categorical Data*, ch. 3 (cumulative odds ratios).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DIFFERENCE", "EffectScale", "effect_scale"]


@dataclass(frozen=True)
class EffectScale:
    """How a model's effect terms are printed.

    ``kind`` is ``"difference"`` (outcome units, times the unit's factor), ``"ratio"``
    (``exp`` of the link-scale value; 1 = no difference) or ``"latent"`` (the link-scale value
    as is, in latent standard deviations). ``column`` heads the table column of the values,
    ``name`` names the scale in sentences.
    """

    kind: str
    column: str = ""
    name: str = ""

    @property
    def difference(self) -> bool:
        """True when the values are differences in the outcome's units."""
        return self.kind == "difference"

    @property
    def null(self) -> float:
        """The value meaning "no difference" on this scale."""
        return 1.0 if self.kind == "ratio" else 0.0

    def value(self, x: Any, factor: float = 1.0) -> float | None:
        """A stored link-scale (or outcome-scale) value on the printed scale.

        ``factor`` (the unit's) applies to differences only; ``None`` when ``x`` is missing or
        not finite.
        """
        if x is None:
            return None
        try:
            v = float(x)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v):
            return None
        if self.kind == "difference":
            return factor * v
        if self.kind == "ratio":
            return math.exp(v) if v < 700 else None  # beyond float range: not printable
        return v


DIFFERENCE = EffectScale("difference")

_GLMM = {("binomial", "logit"): EffectScale("ratio", "Odds ratio", "odds ratio"),
         ("poisson", "log"): EffectScale("ratio", "Rate ratio", "rate ratio")}
_CLMM = {"logit": EffectScale("ratio", "Odds ratio", "cumulative odds ratio"),
         "probit": EffectScale("latent", "Latent shift (probit, SD)",
                               "shift on the latent probit scale, in standard deviations")}
_IDENTITY = {None, "", "identity"}


def effect_scale(res: dict[str, Any]) -> EffectScale:
    """The printing scale of a stored model result (``{"spec": ..., "fit": ...}``).

    Raises
    ------
    ValueError
        The fit has a link this report cannot print on an interpretable scale (a loud
        refusal rather than a link-scale number passed off as a difference).
    """
    fit = res.get("fit") or {}
    spec = res.get("spec") or {}
    kind = fit.get("kind") or spec.get("kind")
    if kind == "glmm":
        family = fit.get("family") or spec.get("family") or "binomial"
        link = fit.get("link") or {"binomial": "logit", "poisson": "log"}.get(family)
        scale = _GLMM.get((family, link))
    elif kind == "clmm":
        scale = _CLMM.get(fit.get("link") or spec.get("link") or "logit")
    elif fit.get("link") in _IDENTITY and fit.get("family") in (None, "gaussian"):
        return DIFFERENCE
    else:
        scale = None
    if scale is None:
        name = spec.get("name", "?")
        raise ValueError(
            f"model '{name}' ({kind}, family {fit.get('family') or spec.get('family')}, link "
            f"{fit.get('link') or spec.get('link')}): the report knows no interpretable scale "
            "for its coefficients; print it by hand from its stored fit, or drop it from the "
            "plan")
    return scale
