"""Difference-in-differences for staggered entry (dialogues starting at different waves).

``callaway_santanna`` (group-time ATT and aggregations), the result type ``DidFit``
(``kind == "did"``) and few-cluster inference (``wild``).
"""

from .callaway import callaway_santanna
from .regression import bacon_decomposition, imputation_did, sun_abraham, twfe_did
from .result import DidFit

__all__ = ["DidFit", "bacon_decomposition", "callaway_santanna", "imputation_did", "sun_abraham",
           "twfe_did"]
