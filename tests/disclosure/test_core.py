"""Primary rule, the linear system, complementary suppression (against brute force) and the
attacker, on small tables whose answers can be worked out by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trackii_eval.disclosure import (
    TableSet,
    attacker_interval,
    audit,
    check_threshold,
    complementary_suppression,
    primary_reason,
    protect,
)
from trackii_eval.disclosure.tables import Cell
from trackii_eval.errors import DisclosureError


def _linkage_row() -> tuple[TableSet, dict[str, tuple]]:
    """Wave 4 of the demo's linkage table: 147 = 132 + 13 + 0 + 0 + 2."""
    ts = TableSet()
    cells = {c: ts.count("linkage", (4, c), v) for c, v in (
        ("records", 147), ("exact", 132), ("fuzzy", 13), ("decision", 0), ("new", 0),
        ("ambiguous", 2))}
    ts.total(cells["records"], [cells[c] for c in ("exact", "fuzzy", "decision", "new",
                                                   "ambiguous")])
    return ts, cells


def test_threshold_never_below_five() -> None:
    assert check_threshold(5) == 5 and check_threshold(10) == 10
    for k in (0, 3, 4, 4.5):
        with pytest.raises(DisclosureError, match="at least 5"):
            check_threshold(k)


def test_config_rejects_small_min_cell_size(demo_copy) -> None:
    from trackii_eval import Study
    from trackii_eval.config import Privacy
    from trackii_eval.errors import ConfigError

    assert Privacy().min_cell_size == 10
    path = demo_copy / "study.yaml"
    path.write_text(path.read_text().replace("min_cell_size: 5", "min_cell_size: 3"))
    with pytest.raises(ConfigError, match="min_cell_size"):
        Study.load(demo_copy)


@pytest.mark.parametrize(("cell", "suppressed"), [
    (Cell(("t", (1,)), "count", value=0), False),
    (Cell(("t", (1,)), "count", value=4), True),
    (Cell(("t", (1,)), "count", value=5), False),
    (Cell(("t", (1,)), "hidden", value=1), True),
    (Cell(("t", (1,)), "statistic", n=4), True),
    (Cell(("t", (1,)), "statistic", n=5), False),
    (Cell(("t", (1,)), "extreme", n=4), True),
    (Cell(("t", (1,)), "share", value=1, n=132), True),  # 1% of 132: one person
    (Cell(("t", (1,)), "share", value=130, n=132), True),  # all but two people
    (Cell(("t", (1,)), "share", value=66, n=132), False),
    (Cell(("t", (1,)), "share", value=0, n=132), False),
    (Cell(("t", (1,)), "share", value=3, n=4), True),
    (Cell(("t", (1,)), "text"), True),
])
def test_primary_rule(cell: Cell, suppressed: bool) -> None:
    assert (primary_reason(cell, 5) is not None) is suppressed


def test_free_text_only_when_the_plan_opts_in() -> None:
    assert primary_reason(Cell(("t", (1,)), "text"), 5, allow_free_text=True) is None


def test_relations_must_hold_and_cells_must_agree() -> None:
    ts = TableSet()
    a, b = ts.count("t", ("a",), 10), ts.count("t", ("b",), 3)
    total = ts.count("t", ("total",), 14)
    with pytest.raises(DisclosureError, match="does not hold"):
        ts.total(total, [a, b], name="total = a + b")
    assert ts.total(total, [a, b], exact=False) is False  # a candidate that fails is dropped
    with pytest.raises(DisclosureError, match="registered twice"):
        ts.count("t", ("a",), 11)
    with pytest.raises(DisclosureError, match="whole number"):
        ts.count("t", ("c",), 2.5)


def test_issue_recovery_and_its_fix() -> None:
    ts, cells = _linkage_row()
    system = ts.system()
    naive = np.array([cid == cells["ambiguous"] for cid in system.ids])
    j = system.index(cells["ambiguous"])
    assert attacker_interval(system, naive, j) == (2.0, 2.0)  # 147 - 132 - 13 = 2
    findings = audit(system, naive, 5)
    assert len(findings) == 1 and str(findings[0]).endswith("recovered exactly), inside the "
                                                             "protection interval [0, 5]")
    result = protect(ts, 5)
    # the cheapest complement that gives the attacker room: fuzzy (13), not a zero cell
    # (with a zero the attacker would still know ambiguous <= 2)
    assert result.status[cells["fuzzy"]] == "secondary"
    assert result.status[cells["decision"]] == result.status[cells["new"]] == "published"
    assert result.interval(cells["ambiguous"]) == (0.0, 15.0)


def _two_by_three(x: np.ndarray) -> TableSet:
    ts = TableSet()
    r, c = x.shape
    for i, j in itertools.product(range(r), range(c)):
        ts.count("t", (i, j), x[i, j])
    for i in range(r):
        ts.count("t", (i, "T"), x[i].sum())
        ts.total(("t", (i, "T")), [("t", (i, j)) for j in range(c)])
    for j in range(c):
        ts.count("t", ("T", j), x[:, j].sum())
        ts.total(("t", ("T", j)), [("t", (i, j)) for i in range(r)])
    ts.count("t", ("T", "T"), x.sum())
    ts.total(("t", ("T", "T")), [("t", (i, "T")) for i in range(r)])
    return ts


@pytest.mark.parametrize("x", [
    np.array([[20, 30, 2], [25, 40, 35]]),
    np.array([[3, 30, 2], [25, 1, 35]]),
    np.array([[6, 7, 2], [9, 12, 8]]),
])
def test_complementary_suppression_is_optimal(x: np.ndarray) -> None:
    """The integer program's cost equals the cheapest protected pattern found by brute force."""
    ts = _two_by_three(x)
    system = ts.system()
    primary = np.array([0 < v < 5 for v in system.values])
    run = complementary_suppression(system, primary, 5)
    assert audit(system, run.suppressed, 5) == []
    free = [j for j in range(len(system.ids)) if not primary[j]]
    best = np.inf
    for r in range(len(free) + 1):
        for extra in itertools.combinations(free, r):
            s = primary.copy()
            s[list(extra)] = True
            cost = float(system.cost @ s)
            if cost < best and not audit(system, s, 5):
                best = cost
    assert run.cost == pytest.approx(best)


def test_hidden_cells_are_protected_and_patterns_kept() -> None:
    """A never-printed per-wave count of 2 equal to a printed one forces its suppression."""
    ts = TableSet()
    per_rule = ts.hidden("quarantine", ("ambiguous", 4), 2)
    printed = ts.count("files", (4, "quarantined"), 2)
    ts.same(per_rule, printed, exact=True)
    w = [ts.count("resp", (w, "comparison"), n) for w, n in ((1, 80), (2, 3))]
    d = [ts.count("resp", (w, "dialogue"), n) for w, n in ((1, 150), (2, 132))]
    t = [ts.count("resp", (w, "all"), n) for w, n in ((1, 230), (2, 135))]
    for i in range(2):
        ts.total(t[i], [w[i], d[i]])
    ts.same_pattern(w)
    result = protect(ts, 5)
    assert result.status[per_rule] == "hidden" and result.hidden(printed)
    assert result.status[w[1]] == "primary" and result.status[w[0]] == "secondary"
    lo, hi = result.interval(w[1])
    assert lo <= 0 and hi >= 5
    assert result.audit() == []


def test_statistics_of_suppressed_counts_are_suppressed() -> None:
    ts, cells = _linkage_row()
    rate = ts.share("rate", (4,), 13, 147, depends=[cells["fuzzy"]])
    mean = ts.statistic("mean", (4,), 13, depends=())
    result = protect(ts, 5)
    assert result.status[rate] == "secondary" and result.show(rate, "9%") == "x"
    assert result.show(mean, "1.2") == "1.2"
