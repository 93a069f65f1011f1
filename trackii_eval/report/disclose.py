"""Numbers an output is about to print, held back until disclosure control has run.

Table builders register each number with a :class:`Publication` and put the returned
:class:`Shown` in their rows; templates print ``{{ cell }}``, which is the number, or the
suppression marker once :meth:`Publication.protect` has decided. Printing a :class:`Shown`
before that raises, so no number can reach an output without passing disclosure control.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from ..disclosure import CellId, Disclosure, TableSet, protect
from ..errors import ReportError

__all__ = ["OBSERVATIONS", "PARTICIPANTS", "Lazy", "Publication", "Shown", "respondents"]

# Quantity keys for :meth:`Publication.count`. The study's participants and participant-waves
# are printed in the flow diagram, the methods and the headline, and again as each model's N;
# a wave's respondents per arm in the response table and again in the durability and attrition
# tables. Wherever the same quantity has the same value it is one number, hidden everywhere or
# nowhere.
PARTICIPANTS = "participants analysed"
OBSERVATIONS = "participant-waves analysed"


def respondents(wave: int, arm: str) -> str:
    """Quantity key of the respondents of ``arm`` at ``wave``."""
    return f"respondents, wave {int(wave)}, arm {arm}"


class Shown:
    """A number to print in cell ``id``: ``str()`` gives ``text`` or the suppression marker."""

    __slots__ = ("id", "pub", "text")

    def __init__(self, pub: Publication, cid: CellId, text: Any) -> None:
        self.pub, self.id, self.text = pub, cid, text

    def __str__(self) -> str:
        if self.pub.result is None:
            raise ReportError(f"report: {self.id!r} printed before disclosure control ran; "
                              "call Publication.protect() before rendering")
        return self.pub.result.show(self.id, self.text)

    @property
    def hidden(self) -> bool:
        """Whether the cell is suppressed (only after :meth:`Publication.protect`)."""
        if self.pub.result is None:
            raise ReportError("report: suppression status asked before disclosure control ran")
        return self.pub.result.hidden(self.id)


class Lazy:
    """Text assembled at render time from :class:`Shown` numbers (``str(fn())``)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], str]) -> None:
        self.fn = fn

    def __str__(self) -> str:
        return str(self.fn())

    def __html__(self) -> str:  # methods paragraphs are trusted HTML built by this package
        return str(self.fn())


class Publication:
    """Everything one set of outputs publishes together, and the decision on it.

    Parameters
    ----------
    k : int
        Minimum cell size (``privacy.min_cell_size``).
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.tables = TableSet()
        self.result: Disclosure | None = None
        # every number handed out, so a test can check that what was printed was registered
        self.shown: list[Shown] = []
        # what each count is a number of ("participants analysed", ...): one quantity printed
        # under several ids must be suppressed everywhere or nowhere (see :meth:`count`)
        self.quantity: dict[CellId, str] = {}
        self._by_quantity: dict[tuple[str, float], CellId] = {}

    def _keep(self, cell: Shown) -> Shown:
        self.shown.append(cell)
        return cell

    def count(self, table: str, key: Sequence[Hashable], value: float, *,
              cost: float | None = None, quantity: str | None = None) -> Shown:
        """A count of people, printed as an integer.

        Parameters
        ----------
        quantity : str, optional
            What the count is a number of, in words shared by every place that prints it
            (e.g. ``"participants analysed"``: the study total and each model's participants).
            Two counts of the same quantity with the same value are the same number printed
            twice, so they are tied by an exact equality relation: suppression then hides both
            or neither. Without it, a total hidden in one place (because it would reveal a
            small cell) could be read off another cell that prints the same number.
        """
        cid = self.tables.count(table, key, value, cost=cost)
        if quantity is not None:
            self.quantity[cid] = quantity
            first = self._by_quantity.setdefault((quantity, float(value)), cid)
            self.tables.same(first, cid, exact=True, name=f"{quantity}: one number, two places")
            self.tables.same_pattern([first, cid])
        return self._keep(Shown(self, cid, int(value)))

    def hidden(self, table: str, key: Sequence[Hashable], value: float) -> CellId:
        """A count that is never printed but that an attacker can write equations with."""
        return self.tables.hidden(table, key, value)

    def stat(self, table: str, key: Sequence[Hashable], n: int, text: Any, *,
             depends: Iterable[CellId] = ()) -> Shown:
        """A statistic of ``n`` people, printed as ``text``."""
        cid = self.tables.statistic(table, key, n, depends=depends)
        return self._keep(Shown(self, cid, text))

    def share(self, table: str, key: Sequence[Hashable], numerator: float, denominator: int,
              text: Any, *, depends: Iterable[CellId] = ()) -> Shown:
        """A percentage: ``numerator`` of ``denominator`` people, printed as ``text``."""
        cid = self.tables.share(table, key, numerator, denominator, depends=depends)
        return self._keep(Shown(self, cid, text))

    def protect(self, *, allow_free_text: bool = False) -> Disclosure:
        """Run disclosure control on everything registered (see :func:`~..disclosure.protect`)."""
        self.result = protect(self.tables, self.k, allow_free_text=allow_free_text)
        return self.result
