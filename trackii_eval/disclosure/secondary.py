"""Complementary (secondary) suppression: the cheapest set of extra cells to hide.

The cell suppression problem as a mixed-integer program (Fischetti & Salazar 2001, "Solving
the cell suppression problem on tabular data with linear constraints", *Management Science*
47(7), 1008-1027; Hundepool et al. 2012, *Statistical Disclosure Control*, sec. 4.3), solved
by ``scipy.optimize.milp`` (HiGHS):

* binary ``s_i = 1`` when cell ``i`` is suppressed; minimise ``sum(cost_i * s_i)``;
* ``s_i = 1`` for primary and hidden cells; one status within each same-pattern group;
* for every sensitive cell ``p`` (a suppressed count with ``0 < a_p < k``) and each direction,
  an attacker's witness: a vector ``y`` of moves away from the true values ``a`` with
  ``A y = 0`` (every relation still holds), ``-a_i s_i <= y_i <= U s_i`` (only suppressed cells
  move, and counts stay non-negative), and ``y_p >= UPL`` (upwards) or ``y_p <= -LPL``
  (downwards).

A witness exists exactly when the attacker's LP interval for ``p`` reaches ``a_p + UPL``
(resp. ``a_p - LPL``), so the program's solutions are the protected patterns. The protection
interval rule is the range rule ``[0, k]``: ``LPL = a_p``, ``UPL = k - a_p`` (see
:mod:`.attack`). ``U`` is a finite upper move (``max(a) + k``): protection against this bounded
attacker implies protection against the unbounded attacker of :func:`.attack.audit`, which
:func:`~trackii_eval.disclosure.protect` runs again on the result.

Witnesses are restricted to the cells connected to ``p`` through relations, which keeps the
program small when the published tables fall into independent groups. Before building it, the
relaxation with only necessary conditions (each relation of a small cell, on its own, must let
it move by its protection levels) is solved and attacked: when its optimum is already
protected it is optimal for the full program, which is then skipped.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from ..errors import DisclosureError
from .attack import audit, protection_levels
from .tables import LinearSystem

__all__ = ["SuppressionRun", "complementary_suppression", "components"]


@dataclass(frozen=True)
class SuppressionRun:
    """Outcome of :func:`complementary_suppression`."""

    suppressed: np.ndarray  # bool (m,)
    cost: float
    seconds: float
    n_variables: int
    n_constraints: int
    audited: bool = False  # already checked by :func:`.attack.audit`


def components(system: LinearSystem) -> np.ndarray:
    """Label of each cell's connected component in the graph of shared relations, shape (m,)."""
    m = len(system.ids)
    parent = list(range(m))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for row in system.A:
        nz = np.flatnonzero(row)
        for j in nz[1:]:
            ra, rb = find(int(nz[0])), find(int(j))
            if ra != rb:
                parent[ra] = rb
    return np.array([find(i) for i in range(m)])


def _group_rows(system: LinearSystem, m: int) -> list[LinearConstraint]:
    """``s_a == s_b`` for consecutive members of each same-pattern group."""
    g_r, g_c, g_v = [], [], []
    n_g = 0
    for g in system.groups:
        for x, y in itertools.pairwise(g):
            g_r += [n_g, n_g]
            g_c += [x, y]
            g_v += [1.0, -1.0]
            n_g += 1
    if not n_g:
        return []
    return [LinearConstraint(sparse.csr_array((g_v, (g_r, g_c)), shape=(n_g, m)), 0.0, 0.0)]


def _necessary_rows(system: LinearSystem, sensitive: list[int], k: int,
                    ) -> tuple[list[np.ndarray], list[float]]:
    """One-relation protection conditions (necessary, so the relaxation stays a relaxation).

    Moving ``p`` by ``u`` in relation ``sum_j c_j x_j = b`` must be offset by the other
    suppressed cells of that relation: a cell whose coefficient has the sign that requires it to
    fall can offer at most ``|c_j| a_j`` (counts stay non-negative), the others any amount. So
    ``sum_j min(cap_j, |c_p| u) s_j >= |c_p| u`` for each relation and direction.
    """
    rows, rhs = [], []
    a = system.values
    for p in sensitive:
        lpl, upl = protection_levels(a[p], k)
        for r in np.flatnonzero(system.A[:, p]):
            c = system.A[r]
            for direction, need in ((1.0, upl), (-1.0, lpl)):
                total = abs(c[p]) * need
                # p moves by direction*need; cell j must move so that c_j y_j offsets it:
                # falling is needed when c_j has the sign of direction * c_p.
                falls = np.sign(c) == np.sign(direction * c[p])
                cap = np.where(falls, np.abs(c) * a, total)
                row = np.where(c != 0, np.minimum(cap, total), 0.0)
                row[p] = 0.0
                rows.append(row)
                rhs.append(total)
    return rows, rhs


def complementary_suppression(system: LinearSystem, primary: np.ndarray, k: int, *,
                              time_limit: float = 120.0) -> SuppressionRun:
    """Choose the cheapest complementary suppressions protecting every sensitive cell.

    Parameters
    ----------
    system : LinearSystem
        The published counts and their relations.
    primary : ndarray of bool (m,)
        Primary-suppressed cells (hidden cells are always suppressed).
    k : int
        Minimum cell size; sensitive cells are suppressed cells with ``0 < value < k``.
    time_limit : float
        Seconds for the integer program.

    Returns
    -------
    SuppressionRun

    Raises
    ------
    DisclosureError
        If no pattern protects every sensitive cell, or HiGHS finds no pattern in time:
        nothing may then be published.
    """
    start = time.perf_counter()
    m = len(system.ids)
    a = system.values
    fixed = primary | system.hidden
    sensitive = [j for j in range(m) if fixed[j] and 0 < a[j] < k]
    cost = np.where(system.hidden, 0.0, system.cost)  # hidden cells are never published
    if not sensitive:
        return SuppressionRun(fixed.copy(), float(cost @ fixed), time.perf_counter() - start,
                              m, 0)
    group_rows = _group_rows(system, m)
    # First the relaxation with only a necessary condition (a small cell shares each of its
    # relations with another suppressed cell). If its optimum already withstands the attacker,
    # it is optimal for the full problem too (a relaxation's optimum that is feasible is
    # optimal); this settles most tables in one small program.
    nec, nec_rhs = _necessary_rows(system, sensitive, k)
    cons = list(group_rows)
    if nec:
        cons.append(LinearConstraint(sparse.csr_array(np.array(nec)), np.array(nec_rhs) - 1e-9,
                                     np.inf))
    res = milp(cost, integrality=np.ones(m), bounds=Bounds(fixed.astype(float), np.ones(m)),
               constraints=cons, options={"time_limit": time_limit})
    if res.x is not None:
        s = res.x > 0.5
        if not audit(system, s, k, cells=sensitive):
            return SuppressionRun(s, float(cost @ s), time.perf_counter() - start, m,
                                  len(nec), audited=True)
    comp = components(system)
    rows_A = [np.flatnonzero(system.A[r]) for r in range(system.A.shape[0])]
    row_comp = np.array([comp[nz[0]] if len(nz) else -1 for nz in rows_A])

    # Variable layout: s (m binaries), then one block of witness moves per (cell, direction).
    lo_bounds = [fixed.astype(float)]
    hi_bounds = [np.ones(m)]
    eq_r, eq_c, eq_v = [], [], []  # A y = 0 rows
    ln_r, ln_c, ln_v = [], [], []  # linking rows: y - U s <= 0 and -y - a s <= 0
    n_eq = n_ln = 0
    offset = m
    for p in sensitive:
        cells = np.flatnonzero(comp == comp[p])
        pos = {int(c): i for i, c in enumerate(cells)}
        rel = np.flatnonzero(row_comp == comp[p])
        lpl, upl = protection_levels(a[p], k)
        for up, need in ((True, upl), (False, lpl)):
            # Moves of at most `need` (a tight big-M): a witness that moves p by `need` along
            # sums of cells never needs larger moves elsewhere; if some system did, limiting
            # the witness only asks for more suppression, never less protection.
            lo = -np.minimum(a[cells], need)
            hi = np.full(len(cells), float(need))
            if up:
                lo[pos[p]] = hi[pos[p]] = upl
            else:
                lo[pos[p]] = hi[pos[p]] = -lpl
            lo_bounds.append(lo)
            hi_bounds.append(hi)
            for r in rel:
                for c in rows_A[r]:
                    eq_r.append(n_eq)
                    eq_c.append(offset + pos[int(c)])
                    eq_v.append(system.A[r, c])
                n_eq += 1
            for i, c in enumerate(cells):
                if fixed[c]:
                    continue  # s_c = 1: the bounds on y_c already say it all
                ln_r += [n_ln, n_ln, n_ln + 1, n_ln + 1]
                ln_c += [offset + i, int(c), offset + i, int(c)]
                ln_v += [1.0, -hi[i], -1.0, lo[i]]
                n_ln += 2
            offset += len(cells)
    n_var = offset
    constraints = []
    if n_eq:
        constraints.append(LinearConstraint(
            sparse.csr_array((eq_v, (eq_r, eq_c)), shape=(n_eq, n_var)), 0.0, 0.0))
    if n_ln:
        constraints.append(LinearConstraint(
            sparse.csr_array((ln_v, (ln_r, ln_c)), shape=(n_ln, n_var)), -np.inf, 0.0))
    n_g = 0
    for g in group_rows:
        A_g = g.A
        n_g += A_g.shape[0]
        constraints.append(LinearConstraint(
            sparse.hstack([A_g, sparse.csr_array((A_g.shape[0], n_var - m))]).tocsr(), 0.0, 0.0))
    c = np.concatenate([cost, np.zeros(n_var - m)])
    integrality = np.concatenate([np.ones(m), np.zeros(n_var - m)])
    res = milp(c, integrality=integrality,
               bounds=Bounds(np.concatenate(lo_bounds), np.concatenate(hi_bounds)),
               constraints=constraints, options={"time_limit": time_limit})
    if res.x is None:
        raise DisclosureError(
            "disclosure: no suppression pattern protects every small cell "
            f"({res.message.strip()}); publish fewer linked tables or coarser categories")
    s = res.x[:m] > 0.5
    return SuppressionRun(s, float(cost @ s), time.perf_counter() - start, n_var,
                          n_eq + n_ln + n_g)
