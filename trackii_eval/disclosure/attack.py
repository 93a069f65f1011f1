"""The attacker: how far can a suppressed count be pinned down from everything published?

For each suppressed cell ``p`` the attacker solves two linear programs over the whole system
(Fischetti & Salazar 2001, "Solving the cell suppression problem on tabular data with linear
constraints", *Management Science* 47(7); Hundepool et al. 2012, sec. 4.3.2, "audit")::

    lo_p = min x_p,  hi_p = max x_p
    subject to  A x = b,  x_i = a_i for every published cell,  x_i >= 0 for every suppressed one

(the LP relaxation: integrality is ignored, as in tau-Argus' audit). The attacker knows every
relation registered in the :class:`~trackii_eval.disclosure.tables.TableSet`, every published
value, and that counts are not negative; suppressed cells all carry one marker, so the attacker
cannot tell primary from complementary suppressions.

Protection interval rule
------------------------
A cell of ``v`` people with ``0 < v < k`` is protected when ``[lo, hi]`` contains ``[0, k]``:
the attacker can neither rule out that nobody is in the cell (``lo <= 0``) nor that it holds a
publishable ``k`` or more people (``hi >= k``). In the usual notation this is the lower and upper
protection level ``LPL = v`` and ``UPL = k - v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from .tables import CellId, LinearSystem

__all__ = ["Finding", "attacker_interval", "audit", "protection_levels"]

TOL = 1e-6


@dataclass(frozen=True)
class Finding:
    """A sensitive cell the attacker can narrow: its attacker interval misses ``[0, k]``."""

    cell: CellId
    value: float
    low: float
    high: float
    k: int

    def __str__(self) -> str:
        table, key = self.cell
        exact = " (recovered exactly)" if self.high - self.low < TOL else ""
        return (f"table {table!r}, cell {key!r}: an attacker bounds it to "
                f"[{self.low:g}, {self.high:g}]{exact}, inside the protection interval "
                f"[0, {self.k}]")


def protection_levels(value: float, k: int) -> tuple[float, float]:
    """Lower and upper protection levels ``(LPL, UPL) = (v, k - v)`` of a count ``v``."""
    return float(value), float(k) - float(value)


def attacker_interval(system: LinearSystem, suppressed: np.ndarray, j: int,
                      upper: np.ndarray | None = None) -> tuple[float, float]:
    """``(min, max)`` of cell ``j`` given everything published; ``max`` may be ``inf``.

    Parameters
    ----------
    system : LinearSystem
    suppressed : ndarray of bool (m,)
        Cells not published (hidden cells must be ``True``).
    j : int
        Column of the cell attacked.
    upper : ndarray (m,), optional
        Upper bounds the attacker knows for the cells (default: none).

    Raises
    ------
    RuntimeError
        If the LP is infeasible: the system does not hold at the true values, which
        :class:`TableSet` prevents.
    """
    if not suppressed[j]:
        return float(system.values[j]), float(system.values[j])
    # Published cells are constants: move them to the right-hand side and keep only the
    # suppressed cells and the relations that still contain one (the others hold anyway).
    free = np.flatnonzero(suppressed)
    known = ~suppressed
    A = system.A
    rhs = system.b - A[:, known] @ system.values[known] if A.shape[0] else np.zeros(0)
    rows = np.flatnonzero(np.abs(A[:, free]).sum(axis=1) > 0) if A.shape[0] else []
    A_free = A[np.ix_(rows, free)] if len(rows) else None
    b_free = rhs[rows] if len(rows) else None
    bounds = [(0.0, None if upper is None else float(upper[i])) for i in free]
    c = np.zeros(len(free))
    c[int(np.searchsorted(free, j))] = 1.0
    out = []
    for sign in (1.0, -1.0):
        res = linprog(sign * c, A_eq=A_free, b_eq=b_free, bounds=bounds, method="highs")
        if res.status == 3:  # unbounded: only possible upwards
            out.append(np.inf)
            continue
        if res.status != 0:
            raise RuntimeError(f"attacker LP for {system.ids[j]!r} failed: {res.message}")
        out.append(sign * res.fun)
    return out[0], out[1]


def audit(system: LinearSystem, suppressed: np.ndarray, k: int,
          cells: list[int] | None = None) -> list[Finding]:
    """Attack every sensitive suppressed cell; return those not protected.

    Parameters
    ----------
    system : LinearSystem
    suppressed : ndarray of bool (m,)
    k : int
        Minimum cell size; sensitive cells are those with ``0 < value < k``.
    cells : list of int, optional
        Columns to attack (default: every suppressed cell with ``0 < value < k``).

    Returns
    -------
    list of Finding
        Empty when every sensitive cell's attacker interval contains ``[0, k]``.
    """
    if cells is None:
        cells = [j for j in range(len(system.ids))
                 if suppressed[j] and 0 < system.values[j] < k]
    findings = []
    for j in cells:
        if not suppressed[j]:
            findings.append(Finding(system.ids[j], system.values[j], system.values[j],
                                    system.values[j], k))
            continue
        lo, hi = attacker_interval(system, suppressed, j)
        if lo > TOL or hi < k - TOL:
            findings.append(Finding(system.ids[j], system.values[j], lo, hi, k))
    return findings
