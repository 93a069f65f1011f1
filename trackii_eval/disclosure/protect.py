"""The disclosure-control step: one call between results and everything published."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import DisclosureError
from .attack import Finding, attacker_interval, audit
from .primary import check_threshold, primary_suppressions
from .secondary import complementary_suppression
from .tables import CellId, LinearSystem, TableSet

__all__ = ["MARKER", "Disclosure", "protect"]

MARKER = "x"
"""What every suppressed number is printed as (primary and complementary alike, so that an
attacker cannot tell which cells are small)."""


@dataclass(frozen=True)
class Disclosure:
    """What may be published: the status of every registered cell.

    Attributes
    ----------
    k : int
        Minimum cell size applied.
    status : dict
        ``cell id -> "published" | "primary" | "secondary" | "hidden"``.
    reasons : dict
        ``cell id -> reason`` for each suppressed cell.
    system : LinearSystem
        The linear system protected.
    suppressed : ndarray of bool
        Suppression pattern over ``system.ids``.
    n_variables, n_constraints : int
        Size of the integer program solved.
    seconds : float
        Wall time of the whole step.
    """

    k: int
    status: dict[CellId, str]
    reasons: dict[CellId, str]
    system: LinearSystem
    suppressed: np.ndarray
    n_variables: int = 0
    n_constraints: int = 0
    seconds: float = 0.0
    marker: str = MARKER
    counts: dict[str, int] = field(default_factory=dict)

    def hidden(self, cell: CellId) -> bool:
        """Whether ``cell`` must not be printed (an unregistered cell raises ``KeyError``)."""
        return self.status[cell] != "published"

    def show(self, cell: CellId, text: object) -> str:
        """``text`` if ``cell`` may be published, else the suppression marker."""
        return self.marker if self.hidden(cell) else str(text)

    def interval(self, cell: CellId) -> tuple[float, float]:
        """The attacker's ``(min, max)`` for a count cell given everything published."""
        j = self.system.index(cell)
        if not self.suppressed[j]:
            v = float(self.system.values[j])
            return v, v
        return attacker_interval(self.system, self.suppressed, j)

    def audit(self) -> list[Finding]:
        """Attack every small suppressed count again; empty when all are protected."""
        return audit(self.system, self.suppressed, self.k)


def protect(tables: TableSet, k: int, *, allow_free_text: bool = False,
            time_limit: float = 120.0) -> Disclosure:
    """Primary and complementary suppression of everything in ``tables``, audited.

    Parameters
    ----------
    tables : TableSet
        Every cell about to be published by every output, and their relations.
    k : int
        Minimum cell size (``privacy.min_cell_size``; at least 5).
    allow_free_text : bool
        The analysis plan opts in to publishing reviewed free-text answers.
    time_limit : float
        Seconds allowed for the integer program.

    Returns
    -------
    Disclosure

    Raises
    ------
    DisclosureError
        If ``k`` is below 5, the tables are inconsistent, no pattern protects every small cell,
        or (a bug) the final attacker audit still narrows a cell: nothing may then be published.

    Notes
    -----
    1. Primary suppression (:mod:`.primary`): counts ``0 < n < k``; statistics, extremes and
       percentages of fewer than ``k`` people; free text.
    2. Complementary suppression (:mod:`.secondary`) over all counts and relations at once.
    3. Audit (:mod:`.attack`): every small count's attacker interval must contain ``[0, k]``.
    4. Statistics and percentages computed from a suppressed count are suppressed too.
    """
    start = time.perf_counter()
    k = check_threshold(k)
    primary = primary_suppressions(tables.cells, k, allow_free_text=allow_free_text)
    system = tables.system()
    prim = np.array([cid in primary for cid in system.ids], dtype=bool)
    run = complementary_suppression(system, prim, k, time_limit=time_limit)
    findings = [] if run.audited else audit(system, run.suppressed, k)
    if findings:  # the search guarantees this cannot happen: refuse loudly if it does
        raise DisclosureError("disclosure audit failed: " + "; ".join(map(str, findings[:3])))
    status: dict[CellId, str] = {}
    reasons: dict[CellId, str] = dict(primary)
    for j, cid in enumerate(system.ids):
        if system.hidden[j]:
            status[cid] = "hidden"
        elif prim[j]:
            status[cid] = "primary"
        elif run.suppressed[j]:
            status[cid] = "secondary"
            reasons[cid] = "complementary: would let a small count be computed"
        else:
            status[cid] = "published"
    for cid, cell in tables.cells.items():
        if cid in status:
            continue
        if cid in primary:
            status[cid] = "primary"
        elif any(status.get(d, "published") != "published" for d in cell.depends):
            status[cid] = "secondary"
            reasons[cid] = "computed from a suppressed count"
        else:
            status[cid] = "published"
    counts = {s: sum(v == s for v in status.values())
              for s in ("published", "primary", "secondary", "hidden")}
    return Disclosure(k=k, status=status, reasons=reasons, system=system,
                      suppressed=run.suppressed, n_variables=run.n_variables,
                      n_constraints=run.n_constraints,
                      seconds=time.perf_counter() - start, counts=counts)
