"""Complementary (secondary) suppression: the cheapest set of extra cells to hide.

The cell suppression problem in the formulation of Fischetti & Salazar (2001, *Management
Science* 47(7), 1008-1027), solved by constraint generation as in tau-Argus' "optimal" method
(Hundepool et al. 2012, sec. 4.3):

* binary ``s_i = 1`` when cell ``i`` is suppressed; minimise ``sum(cost_i * s_i)``;
* ``s_i = 1`` for primary and hidden cells; one status for each same-pattern group;
* for a sensitive cell ``p`` of value ``v``, the attacker (see :mod:`.attack`) must be able to
  move ``x_p`` down by ``LPL = v`` and up by ``UPL = k - v``, i.e. its interval contains
  ``[0, k]`` (the protection interval rule of this package).

For a suppression pattern ``s`` the attacker's largest upward move of ``p`` is the LP
``max y_p  s.t.  A y = 0,  -a_i s_i <= y_i <= U_i s_i``. For any multipliers ``lambda`` of
``A y = 0``, with reduced costs ``d = -e_p - A' lambda``, LP duality bounds it by
``sum_i s_i w_i`` with ``w_i = max(d_i, 0) a_i + max(-d_i, 0) U_i``; so
``sum_i w_i s_i >= UPL`` is a valid inequality, and with the optimal ``lambda`` of a pattern
that under-protects ``p`` it cuts that pattern off (the same for the downward move with
``+e_p``). The loop solves the integer program (``scipy.optimize.milp``, HiGHS), attacks every
sensitive cell, adds the violated cuts, and repeats until no cell can be narrowed. ``U_i`` is a
finite upper move (``max(a) + k``); protection against this bounded attacker implies protection
against the unbounded attacker of :func:`.attack.audit`, which is run once more at the end.

Cheap necessary conditions seed the program: a sensitive cell shares every relation it is in
with at least one other suppressed cell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from ..errors import DisclosureError
from .attack import TOL, protection_levels
from .tables import LinearSystem

__all__ = ["SuppressionRun", "complementary_suppression"]


@dataclass(frozen=True)
class SuppressionRun:
    """Outcome of :func:`complementary_suppression`."""

    suppressed: np.ndarray  # bool (m,)
    rounds: int
    cuts: int
    cost: float
    seconds: float


def _move(system: LinearSystem, s: np.ndarray, j: int, up: bool, upper_move: np.ndarray,
          ) -> tuple[float, np.ndarray]:
    """Largest move of cell ``j`` (up or down) under pattern ``s``, and the cut weights ``w``."""
    m = len(system.ids)
    lo = np.where(s, -system.values, 0.0)
    hi = np.where(s, upper_move, 0.0)
    c = np.zeros(m)
    c[j] = -1.0 if up else 1.0  # minimise -y_j (largest rise) or y_j (largest fall)
    A = system.A
    res = linprog(c, A_eq=A, b_eq=np.zeros(A.shape[0]), bounds=list(zip(lo, hi, strict=True)),
                  method="highs")
    if res.status != 0:
        raise DisclosureError(f"disclosure: attacker LP for {system.ids[j]!r} failed "
                              f"({res.message}); the tables to publish are inconsistent")
    move = -res.fun
    lam = res.eqlin.marginals if A.shape[0] else np.zeros(0)
    # Reduced costs d = c - A' lambda make c'y = d'y on A y = 0, so min c'y >= sum min(d l, d u).
    # Sign conventions of solvers differ: keep the sign whose bound is tight.
    best = None
    for sign in (1.0, -1.0):
        d = c - sign * (A.T @ lam) if A.shape[0] else c
        w_full = np.maximum(d, 0) * system.values + np.maximum(-d, 0) * upper_move
        bound = float(w_full @ s)
        if best is None or abs(bound - move) < abs(best[0] - move):
            best = (bound, w_full)
    assert best is not None
    return move, best[1]


def _necessary_rows(system: LinearSystem, sensitive: list[int]) -> list[np.ndarray]:
    rows = []
    for p in sensitive:
        for r in np.flatnonzero(system.A[:, p]):
            others = (system.A[r] != 0)
            others[p] = False
            if others.any():
                rows.append(others.astype(float))
    return rows


def complementary_suppression(system: LinearSystem, primary: np.ndarray, k: int, *,
                              max_rounds: int = 500, time_limit: float = 120.0,
                              ) -> SuppressionRun:
    """Choose the cheapest complementary suppressions protecting every sensitive cell.

    Parameters
    ----------
    system : LinearSystem
        The published counts and their relations.
    primary : ndarray of bool (m,)
        Primary-suppressed cells (hidden cells are always suppressed).
    k : int
        Minimum cell size; sensitive cells are suppressed cells with ``0 < value < k``.
    max_rounds : int
        Constraint-generation rounds before giving up.
    time_limit : float
        Seconds for the whole search.

    Returns
    -------
    SuppressionRun

    Raises
    ------
    DisclosureError
        If no pattern protects every sensitive cell (the integer program is infeasible) or the
        search does not finish in time: nothing may then be published.
    """
    start = time.perf_counter()
    m = len(system.ids)
    fixed = primary | system.hidden
    sensitive = [j for j in range(m) if fixed[j] and 0 < system.values[j] < k]
    if not sensitive:
        return SuppressionRun(fixed.copy(), 0, 0, float(system.cost[fixed & ~system.hidden].sum()),
                              time.perf_counter() - start)
    upper_move = np.full(m, float(system.values.max()) + k)
    cut_rows: list[np.ndarray] = []
    cut_rhs: list[float] = []
    for row in _necessary_rows(system, sensitive):
        cut_rows.append(row)
        cut_rhs.append(1.0)
    group_rows = []
    for g in system.groups:
        for a, b in zip(g, g[1:], strict=False):
            row = np.zeros(m)
            row[a], row[b] = 1.0, -1.0
            group_rows.append(row)
    # A cell's cost; hidden cells cost nothing (they are never published anyway).
    cost = np.where(system.hidden, 0.0, system.cost)
    lb = fixed.astype(float)
    rounds = 0
    while True:
        rounds += 1
        if rounds > max_rounds or time.perf_counter() - start > time_limit:
            raise DisclosureError(
                f"disclosure: complementary suppression did not finish in {max_rounds} rounds / "
                f"{time_limit:.0f} s ({len(sensitive)} sensitive cells); publish fewer linked "
                "tables or raise privacy.min_cell_size groups (coarser categories)")
        constraints = []
        if cut_rows:
            constraints.append(LinearConstraint(np.array(cut_rows), np.array(cut_rhs), np.inf))
        if group_rows:
            constraints.append(LinearConstraint(np.array(group_rows), 0.0, 0.0))
        res = milp(cost, integrality=np.ones(m), bounds=Bounds(lb, np.ones(m)),
                   constraints=constraints,
                   options={"time_limit": max(1.0, time_limit - (time.perf_counter() - start))})
        if res.x is None:
            raise DisclosureError(
                "disclosure: no suppression pattern protects every small cell "
                f"({res.message}); publish fewer linked tables or coarser categories")
        s = res.x > 0.5
        new = 0
        for p in sensitive:
            lpl, upl = protection_levels(system.values[p], k)
            for up, need in ((True, upl), (False, lpl)):
                move, w = _move(system, s, p, up, upper_move)
                if move < need - TOL:
                    if float(w @ s) < need - TOL:
                        cut_rows.append(w)
                        cut_rhs.append(need)
                    else:
                        # The dual bound is not tight (numerical trouble): fall back to the
                        # weaker but always valid cut "suppress at least one more cell", since
                        # protection only grows with the set of suppressed cells.
                        cut_rows.append((~s).astype(float))
                        cut_rhs.append(1.0)
                    new += 1
        if new == 0:
            return SuppressionRun(s, rounds, len(cut_rows), float(cost @ s),
                                  time.perf_counter() - start)
