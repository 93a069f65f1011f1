"""Primary suppression: the threshold rule on everything that describes fewer than k people.

The rule (Hundepool et al. 2012, sec. 4.2, "minimum frequency rule"): a cell is sensitive when
it is computed from fewer than ``k`` people. Counts of zero are published (they describe nobody).
"""

from __future__ import annotations

from .tables import Cell, CellId

__all__ = ["MIN_THRESHOLD", "check_threshold", "primary_reason", "primary_suppressions"]

MIN_THRESHOLD = 5
"""No study may publish cells of fewer than five people, whatever its study.yaml says."""


def check_threshold(k: int) -> int:
    """Validate the minimum cell size ``k`` (``privacy.min_cell_size`` in study.yaml).

    Raises
    ------
    DisclosureError
        If ``k`` is below :data:`MIN_THRESHOLD`.
    """
    from ..errors import DisclosureError

    if int(k) != k or k < MIN_THRESHOLD:
        raise DisclosureError(
            f"study.yaml: privacy.min_cell_size is {k!r}; it must be a whole number of at least "
            f"{MIN_THRESHOLD} (set it to {MIN_THRESHOLD} or more)")
    return int(k)


def primary_reason(cell: Cell, k: int, *, allow_free_text: bool = False) -> str | None:
    """Why ``cell`` must be suppressed on its own, or ``None`` if it may be published.

    Parameters
    ----------
    cell : Cell
        A registered cell.
    k : int
        Minimum number of people a published number may describe.
    allow_free_text : bool
        The analysis plan opts in to publishing reviewed free-text answers.
    """
    if cell.kind in ("count", "hidden"):
        v = float(cell.value or 0)
        return f"count of fewer than {k} people" if 0 < v < k else None
    if cell.kind in ("statistic", "extreme"):
        return f"describes fewer than {k} people" if (cell.n or 0) < k else None
    if cell.kind == "share":
        den, num = int(cell.n or 0), float(cell.value or 0)
        if den < k:
            return f"percentage of fewer than {k} people"
        if 0 < num < k or 0 < den - num < k:
            return f"percentage counting (or leaving out) fewer than {k} people"
        return None
    if cell.kind == "text":
        return None if allow_free_text else "free text is not published unless the plan opts in"
    raise ValueError(f"unknown cell kind {cell.kind!r}")  # pragma: no cover - Literal


def primary_suppressions(cells: dict[CellId, Cell], k: int, *,
                         allow_free_text: bool = False) -> dict[CellId, str]:
    """Primary-suppressed cells of a table set, each with its reason."""
    out = {}
    for cid, cell in cells.items():
        reason = primary_reason(cell, k, allow_free_text=allow_free_text)
        if reason is not None:
            out[cid] = reason
    return out
