"""Property: over generated linked panel tables, an attacker's LP recovers no suppressed small
cell and cannot narrow it inside its protection interval [0, k].

The attacker here is written independently of trackii_eval.disclosure: it builds its own
equations from the generated tables (per-wave margins and grand totals, and a table pooled over
waves) and solves min/max of each cell with scipy's linprog, knowing every published value and
that counts are not negative.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from trackii_eval.disclosure import TableSet, protect


@st.composite
def linked_tables(draw):
    waves = draw(st.integers(2, 3))
    rows = cols = 2  # small tables keep 1,000 examples affordable (~0.07 s each)
    small = st.integers(0, 4)
    large = st.integers(5, 40)
    cell = st.one_of(large, large, small)
    x = np.array(draw(st.lists(cell, min_size=waves * rows * cols,
                               max_size=waves * rows * cols))).reshape(waves, rows, cols)
    pooled = draw(st.booleans())
    pattern = draw(st.booleans())
    k = draw(st.sampled_from([5, 6]))
    return x, pooled, pattern, k


def _build(x: np.ndarray, pooled: bool):
    """Cells as {name: value} and relations as lists of (coefficient, name), built by hand."""
    waves, rows, cols = x.shape
    cells: dict[tuple, int] = {}
    relations: list[list[tuple[float, tuple]]] = []
    for w in range(waves):
        for i in range(rows):
            for j in range(cols):
                cells[(w, i, j)] = int(x[w, i, j])
        for i in range(rows):
            cells[(w, i, "T")] = int(x[w, i].sum())
            relations.append([(-1, (w, i, "T"))] + [(1, (w, i, j)) for j in range(cols)])
        for j in range(cols):
            cells[(w, "T", j)] = int(x[w, :, j].sum())
            relations.append([(-1, (w, "T", j))] + [(1, (w, i, j)) for i in range(rows)])
        cells[(w, "T", "T")] = int(x[w].sum())
        relations.append([(-1, (w, "T", "T"))] + [(1, (w, i, "T")) for i in range(rows)])
        relations.append([(-1, (w, "T", "T"))] + [(1, (w, "T", j)) for j in range(cols)])
    if pooled:  # the same table summed over waves ("ever in the panel"), printed too
        for i in range(rows):
            for j in range(cols):
                cells[("all", i, j)] = int(x[:, i, j].sum())
                relations.append([(-1, ("all", i, j))] + [(1, (w, i, j)) for w in range(waves)])
    return cells, relations


def _attack(cells, relations, hidden: set, target) -> tuple[float, float]:
    """min and max of ``target`` over non-negative values of the hidden cells."""
    names = sorted(hidden, key=str)
    col = {n: i for i, n in enumerate(names)}
    A = np.zeros((len(relations), len(names)))
    b = np.zeros(len(relations))
    for r, rel in enumerate(relations):
        for coef, n in rel:
            if n in col:
                A[r, col[n]] += coef
            else:
                b[r] -= coef * cells[n]
    c = np.zeros(len(names))
    c[col[target]] = 1
    lo = linprog(c, A_eq=A, b_eq=b, bounds=(0, None), method="highs")
    hi = linprog(-c, A_eq=A, b_eq=b, bounds=(0, None), method="highs")
    assert lo.status == 0 and hi.status in (0, 3)
    return lo.fun, (np.inf if hi.status == 3 else -hi.fun)


@settings(max_examples=int(os.environ.get("TRACKII_DISCLOSURE_EXAMPLES", 1000)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(linked_tables())
def test_attacker_cannot_narrow_any_small_cell(case) -> None:
    x, pooled, pattern, k = case
    cells, relations = _build(x, pooled)
    ts = TableSet()
    for name, value in cells.items():
        ts.count("t", name, value)
    for rel in relations:
        ts.relation({("t", n): coef for coef, n in rel})
    if pattern:  # the same cell keeps one status in every wave
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                ts.same_pattern([("t", (w, i, j)) for w in range(x.shape[0])])
    result = protect(ts, k)
    hidden = {n for n in cells if result.hidden(("t", n))}
    for name, value in cells.items():
        if 0 < value < k:
            assert name in hidden, name
            lo, hi = _attack(cells, relations, hidden, name)
            assert lo <= 1e-6 and hi >= k - 1e-6, (name, value, lo, hi)
    if pattern:
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                assert len({(w, i, j) in hidden for w in range(x.shape[0])}) == 1
