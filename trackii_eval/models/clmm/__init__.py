"""Cumulative-link mixed models for ordinal items (as R's ``ordinal::clmm``), with adaptive
Gauss-Hermite quadrature also for random slopes.

``clmm(formula, data, link="logit", nAGQ=1)`` returns a :class:`ClmmFit` that follows the
project's results protocol (``tidy``, ``record``, ``summary``, ``to_dict``/``from_dict``).
"""

from trackii_eval.models.clmm.api import clmm
from trackii_eval.models.clmm.result import ClmmFit, VarianceComponent

__all__ = ["ClmmFit", "VarianceComponent", "clmm"]
