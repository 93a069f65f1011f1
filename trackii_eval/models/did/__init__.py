"""Difference-in-differences for staggered entry (dialogues starting at different waves).

- ``callaway_santanna``: group-time ATT(g, t) with never- or not-yet-treated controls and the
  simple, group, dynamic and calendar aggregations (exact as R ``did``, analytic SEs);
- ``sun_abraham``: interaction-weighted event study;
- ``imputation_did``: Borusyak-Jaravel-Spiess imputation (single-pre-wave caveat);
- ``twfe_did``: static two-way FE with its Goodman-Bacon decomposition (``bacon_decomposition``);
- ``did_overview``: all of them side by side;
- every fit's ``pretest``: the joint Wald test of the leads;
- ``cluster="dialogue", inference="wild"``: few-cluster inference (``models.did.wild``).

Every function takes long data with a ``cohort`` column: the first wave of the unit's
dialogue, 0 for the comparison arm. All return :class:`DidFit` (``kind == "did"``), which
follows the results protocol.
"""

from .callaway import callaway_santanna
from .overview import did_overview
from .regression import bacon_decomposition, imputation_did, sun_abraham, twfe_did
from .result import DidFit

__all__ = ["DidFit", "bacon_decomposition", "callaway_santanna", "did_overview",
           "imputation_did", "sun_abraham", "twfe_did"]
