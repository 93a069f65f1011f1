"""One publication for several studies: each study's cells under its own table prefix.

The report's table builders register cells as ``(table, key)``; two studies registering into
one :class:`~trackii_eval.report.disclose.Publication` would collide (both have a
``("response", (1, "dialogue"))``). :func:`scoped` gives each study a view whose tables are
named ``"<study>/<table>"`` while relations, the protection step and the decision stay those of
the one shared publication, so everything published together is protected together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

from ..disclosure import CellId, Disclosure, TableSet
from ..errors import ReportError
from ..report.disclose import Publication

__all__ = ["cell_id", "prefer_published", "scoped"]


class _ScopedTables:
    """A :class:`TableSet` view that prefixes the table of every cell it registers."""

    def __init__(self, tables: TableSet, scope: str) -> None:
        self._tables, self._scope = tables, scope

    def _t(self, table: str) -> str:
        return f"{self._scope}/{table}"

    def count(self, table: str, key: Sequence[Hashable], value: float, *,
              cost: float | None = None) -> CellId:
        return self._tables.count(self._t(table), key, value, cost=cost)

    def hidden(self, table: str, key: Sequence[Hashable], value: float) -> CellId:
        return self._tables.hidden(self._t(table), key, value)

    def statistic(self, table: str, key: Sequence[Hashable], n: int, **kw: Any) -> CellId:
        return self._tables.statistic(self._t(table), key, n, **kw)

    def share(self, table: str, key: Sequence[Hashable], numerator: float, denominator: int,
              **kw: Any) -> CellId:
        return self._tables.share(self._t(table), key, numerator, denominator, **kw)

    def extreme(self, table: str, key: Sequence[Hashable], n: int) -> CellId:
        return self._tables.extreme(self._t(table), key, n)

    def text(self, table: str, key: Sequence[Hashable]) -> CellId:
        return self._tables.text(self._t(table), key)

    def __getattr__(self, name: str) -> Any:  # relations take cell ids: no prefix needed
        return getattr(self._tables, name)


class _ScopedPublication(Publication):
    """A study's view of a shared publication (see :func:`scoped`)."""

    def __init__(self, parent: Publication, scope: str) -> None:  # no super(): shares state
        self.k = parent.k
        self.tables = _ScopedTables(parent.tables, scope)  # type: ignore[assignment]
        self._parent = parent
        # every number handed out is kept where the shared publication keeps them
        self.shown = getattr(parent, "shown", [])

    def __getattr__(self, name: str) -> Any:  # anything else the publication keeps: shared
        if name == "_parent":
            raise AttributeError(name)
        return getattr(self._parent, name)

    @property  # type: ignore[override]
    def result(self) -> Disclosure | None:
        return self._parent.result

    def protect(self, *, allow_free_text: bool = False) -> Disclosure:
        raise ReportError("a study's view of a joint publication cannot be protected on its "
                          "own; protect the shared publication once")


def scoped(publication: Publication, scope: str) -> Publication:
    """A view of ``publication`` registering every cell under table ``"<scope>/<table>"``.

    Parameters
    ----------
    publication : Publication
        The shared publication (one disclosure decision for everything in it).
    scope : str
        The study id.

    Returns
    -------
    Publication
        Registers into ``publication``; its :class:`Shown` values print by the shared decision.
    """
    return _ScopedPublication(publication, scope)


def cell_id(publication: Publication, table: str, key: Sequence[Hashable]) -> CellId:
    """The id a cell ``(table, key)`` registered through ``publication`` has (scope included)."""
    tables = publication.tables
    name = tables._t(table) if isinstance(tables, _ScopedTables) else table
    return (name, tuple(key))


def prefer_published(publication: Publication, cid: CellId, factor: float = 10.0) -> None:
    """Make complementary suppression avoid count ``cid`` (cost ``factor * (1 + value)``).

    For counts another published number is divided by (costs per reliable improver): when a
    small neighbour must be protected, the integer program then hides a cheaper cell of the
    same relation instead, where one exists. Only the choice among protecting patterns
    changes; the protection itself does not.
    """
    cells = publication.tables.cells
    cell = cells[cid]
    if cell.kind != "count":
        return
    cells[cid] = dataclasses.replace(cell, cost=factor * (1.0 + float(cell.value or 0)))
