"""Everything to be published, as cells and one linear system of their additive relations.

Statistical offices protect linked tables by writing every published count and every additive
relation between counts (margins, totals, the same count printed in two tables, a total over
waves) as one system ``A x = b`` and protecting it as a whole (Hundepool et al. 2012, *Statistical
Disclosure Control*, Wiley, ch. 4; de Wolf 2002 on linked tables). :class:`TableSet` is that
system for trackii_eval: outputs register what they are about to print, then one call of
:func:`trackii_eval.disclosure.protect` decides what may be shown.

Cell kinds
----------
``count``
    A number of people (or of records about people). In the linear system; primary-suppressed
    when ``0 < value < k``.
``hidden``
    A count that is never printed but that the attacker may still write equations with (for
    example, quarantined rows per rule and wave, when only their sums over rules and over waves
    are printed). In the linear system, always unknown to the attacker, and protected like a
    published count when it is small.
``statistic``
    A mean, percentage of a score scale, quantile, change between waves, reliability coefficient
    or model statistic describing ``n`` people. Not in the linear system (it does not add up);
    primary-suppressed when ``n < k``; also suppressed when a count it is computed from is
    suppressed (``depends``).
``share``
    A percentage of people, ``numerator / denominator``: it reveals its numerator once the
    denominator is known, so it is primary-suppressed when the denominator is below ``k`` or
    when the people it counts, or those it leaves out, are fewer than ``k`` (but not none).
``extreme``
    A minimum or maximum: one person's value, so published only for groups of at least ``k``.
``text``
    A free-text answer: never published unless the analysis plan opts in after review.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import DisclosureError

__all__ = ["Cell", "CellId", "LinearSystem", "TableSet"]

CellId = tuple[str, tuple[Hashable, ...]]
"""A cell's identity: ``(table name, key)``, e.g. ``("linkage", (4, "ambiguous"))``."""

Kind = Literal["count", "hidden", "statistic", "share", "extreme", "text"]
SYSTEM_KINDS = ("count", "hidden")


@dataclass(frozen=True)
class Cell:
    """One number (or text) an output wants to publish, with what it describes."""

    id: CellId
    kind: Kind
    value: float | None = None  # counts: the count; shares: the numerator
    n: int | None = None  # people described (statistics); denominator (shares)
    depends: tuple[CellId, ...] = ()
    cost: float | None = None  # information lost by suppressing it; default 1 + value


@dataclass(frozen=True)
class LinearSystem:
    """The attacker's view of the published counts: ``A @ x == b`` with ``x >= 0``.

    Attributes
    ----------
    ids : list of CellId, length m
        The count and hidden cells, in column order.
    values : ndarray (m,)
        Their true values.
    A : ndarray (r, m)
        One row per additive relation.
    b : ndarray (r,)
        Right-hand sides (zero for sums).
    hidden : ndarray of bool (m,)
        Cells never published.
    cost : ndarray (m,)
        Cost of suppressing each cell (default ``1 + value``).
    groups : list of list of int
        Column indices that must share one suppression status (the same pattern across waves).
    names : list of str, length r
        A name per relation, for messages.
    """

    ids: list[CellId]
    values: np.ndarray
    A: np.ndarray
    b: np.ndarray
    hidden: np.ndarray
    cost: np.ndarray
    groups: list[list[int]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def index(self, cell: CellId) -> int:
        """Column of ``cell``; raises ``KeyError`` if it is not a count or hidden cell."""
        return self.ids.index(cell)


class TableSet:
    """Cells of everything published together, and the relations an attacker can use.

    Register every number before rendering anything; then call
    :func:`trackii_eval.disclosure.protect`. Registering the same cell twice with the same value
    returns the same id (so two outputs may share a cell); with a different value it raises
    :class:`~trackii_eval.errors.DisclosureError`.
    """

    def __init__(self) -> None:
        self.cells: dict[CellId, Cell] = {}
        self._relations: list[tuple[dict[CellId, float], float, str]] = []
        self._groups: list[list[CellId]] = []

    # --- cells -----------------------------------------------------------------------------
    def _add(self, cell: Cell) -> CellId:
        old = self.cells.get(cell.id)
        if old is not None:
            if old != cell:
                raise DisclosureError(
                    f"disclosure table {cell.id[0]!r}, cell {cell.id[1]!r}: registered twice with "
                    "different contents; give each printed number its own key")
            return cell.id
        self.cells[cell.id] = cell
        return cell.id

    @staticmethod
    def _count_value(table: str, key: tuple[Hashable, ...], value: float) -> float:
        if value is None or not math.isfinite(float(value)) or float(value) < 0 or (
                float(value) != round(float(value))):
            raise DisclosureError(
                f"disclosure table {table!r}, cell {key!r}: a count must be a whole number >= 0, "
                f"got {value!r}")
        return float(round(float(value)))

    def count(self, table: str, key: Sequence[Hashable], value: float, *,
              cost: float | None = None) -> CellId:
        """Register a published count of people; returns its id."""
        key = tuple(key)
        return self._add(Cell((table, key), "count", self._count_value(table, key, value),
                              cost=cost))

    def hidden(self, table: str, key: Sequence[Hashable], value: float) -> CellId:
        """Register a count that is never printed but takes part in relations."""
        key = tuple(key)
        return self._add(Cell((table, key), "hidden", self._count_value(table, key, value)))

    def statistic(self, table: str, key: Sequence[Hashable], n: int, *,
                  depends: Iterable[CellId] = ()) -> CellId:
        """Register a mean, quantile, change, coefficient or model statistic of ``n`` people."""
        return self._add(Cell((table, tuple(key)), "statistic", n=int(n),
                              depends=tuple(depends)))

    def share(self, table: str, key: Sequence[Hashable], numerator: float, denominator: int, *,
              depends: Iterable[CellId] = ()) -> CellId:
        """Register a percentage of people: ``numerator`` of ``denominator`` people."""
        return self._add(Cell((table, tuple(key)), "share", value=float(numerator),
                              n=int(denominator), depends=tuple(depends)))

    def extreme(self, table: str, key: Sequence[Hashable], n: int) -> CellId:
        """Register a minimum or maximum over ``n`` people."""
        return self._add(Cell((table, tuple(key)), "extreme", n=int(n)))

    def text(self, table: str, key: Sequence[Hashable]) -> CellId:
        """Register a free-text answer."""
        return self._add(Cell((table, tuple(key)), "text"))

    # --- relations -------------------------------------------------------------------------
    def _terms(self, terms: Mapping[CellId, float]) -> dict[CellId, float]:
        out: dict[CellId, float] = {}
        for cid, coef in terms.items():
            cell = self.cells.get(cid)
            if cell is None or cell.kind not in SYSTEM_KINDS:
                raise DisclosureError(
                    f"disclosure relation uses {cid!r}, which is not a registered count; "
                    "register it with TableSet.count or TableSet.hidden first")
            if coef:
                out[cid] = out.get(cid, 0.0) + float(coef)
        return out

    def _holds(self, terms: Mapping[CellId, float], rhs: float) -> bool:
        lhs = sum(coef * float(self.cells[cid].value) for cid, coef in terms.items())
        return abs(lhs - rhs) < 1e-9

    def relation(self, terms: Mapping[CellId, float], rhs: float = 0.0, *, name: str = "") -> None:
        """Add ``sum(coef * cell) == rhs``, a relation that holds by construction.

        Raises
        ------
        DisclosureError
            If the registered values do not satisfy it: then the tables are inconsistent, and
            protecting them against a wrong system could leave a cell recoverable.
        """
        t = self._terms(terms)
        if not self._holds(t, rhs):
            lhs = sum(c * float(self.cells[i].value) for i, c in t.items())
            raise DisclosureError(
                f"disclosure relation {name or t!r} does not hold ({lhs:g} != {rhs:g}): the "
                "tables to publish disagree with each other; fix the table builder")
        if t:
            self._relations.append((t, float(rhs), name))

    def candidate(self, terms: Mapping[CellId, float], rhs: float = 0.0, *, name: str = "") -> bool:
        """Add a relation an attacker might guess, if it holds in these data; returns whether.

        Use for relations that hold for most studies but not by construction (everyone who
        answered a wave has a score, every participant is in a model): if it holds, an attacker
        who tries it will find it, so it is protected against.
        """
        t = self._terms(terms)
        if t and self._holds(t, rhs):
            self._relations.append((t, float(rhs), name))
            return True
        return False

    def total(self, total: CellId, parts: Iterable[CellId], *, name: str = "",
              exact: bool = True) -> bool:
        """``total == sum(parts)``: a margin. ``exact=False`` adds it only if it holds."""
        terms: dict[CellId, float] = {total: -1.0}
        for p in parts:
            terms[p] = terms.get(p, 0.0) + 1.0
        if exact:
            self.relation(terms, name=name)
            return True
        return self.candidate(terms, name=name)

    def same(self, a: CellId, b: CellId, *, name: str = "", exact: bool = False) -> bool:
        """``a == b``: the same count printed twice (by default added only if it holds)."""
        if a == b:
            return True
        return self.total(a, [b], name=name, exact=exact)

    def same_pattern(self, cells: Iterable[CellId]) -> None:
        """Give ``cells`` one suppression status: the same cell of a periodic table, all waves."""
        group = [c for c in cells if c in self.cells and self.cells[c].kind == "count"]
        if len(group) > 1:
            self._groups.append(group)

    # --- the system ------------------------------------------------------------------------
    def system(self) -> LinearSystem:
        """The count and hidden cells and their relations as one :class:`LinearSystem`."""
        ids = [cid for cid, c in self.cells.items() if c.kind in SYSTEM_KINDS]
        col = {cid: j for j, cid in enumerate(ids)}
        values = np.array([self.cells[c].value for c in ids], dtype=float)
        A = np.zeros((len(self._relations), len(ids)))
        b = np.zeros(len(self._relations))
        for r, (terms, rhs, _) in enumerate(self._relations):
            for cid, coef in terms.items():
                A[r, col[cid]] += coef
            b[r] = rhs
        hidden = np.array([self.cells[c].kind == "hidden" for c in ids], dtype=bool)
        # Default cost: the number of people hidden, plus one so that zeros are not free
        # (tau-Argus' default cost function is the cell value).
        cost = np.array([1.0 + float(self.cells[c].value) if self.cells[c].cost is None
                         else float(self.cells[c].cost) for c in ids])
        groups = [[col[c] for c in g] for g in self._groups]
        return LinearSystem(ids=ids, values=values, A=A, b=b, hidden=hidden, cost=cost,
                            groups=groups, names=[n for _, _, n in self._relations])
