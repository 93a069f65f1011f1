"""Report tables: one object renders the HTML table and its CSV and LaTeX downloads.

A :class:`Table` holds the cells as registered with disclosure control
(:class:`~trackii_eval.report.disclose.Shown`) or as labels; the downloads are made from the
same protected strings as the HTML, so a suppressed cell is suppressed in every format.
Downloads are ``data:`` URIs inside the HTML (one self-contained file; a browser saves them
under the table's name).
"""

from __future__ import annotations

import base64
import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from ..errors import ReportError
from .disclose import Lazy, Shown

__all__ = ["Table", "check_registered"]

_NUMBER = re.compile(r"\d")


@dataclass
class Table:
    """A table of the report.

    Parameters
    ----------
    id
        HTML id and download file stem (``effects-perceptions``).
    title
        Caption (printed above the table and in the downloads' first line).
    columns
        Column headings.
    rows
        One list of cells per row: :class:`Shown` / :class:`Lazy` (numbers, registered with
        disclosure control) or ``str`` (labels).
    labels
        Indices of label columns (left aligned; may hold numbers that are not data, such as a
        wave's index).
    note
        A sentence under the table (HTML allowed, written by this package).
    groups
        Optional row-group headings: ``{row index: heading}`` (a heading row before that row).
    left
        Left-aligned columns (default: the label columns).
    """

    id: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    labels: tuple[int, ...] = (0,)
    note: str = ""
    groups: dict[int, str] = field(default_factory=dict)
    left: tuple[int, ...] | None = None

    @property
    def _left(self) -> tuple[int, ...]:
        return self.labels if self.left is None else self.left

    def __bool__(self) -> bool:
        return bool(self.rows)

    def text(self) -> list[list[str]]:
        """Every cell as printed (after disclosure control)."""
        return [[_plain(c) for c in row] for row in self.rows]

    def csv(self) -> str:
        """The table as CSV (header row, then the printed cells; group headings as a column)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        heads = sorted(self.groups)
        w.writerow((["group"] if heads else []) + self.columns)
        group = ""
        for i, row in enumerate(self.text()):
            group = self.groups.get(i, group)
            w.writerow(([group] if heads else []) + row)
        return buf.getvalue()

    def latex(self) -> str:
        """The table as a LaTeX ``tabular`` (booktabs) with its caption as a comment."""
        align = "".join("l" if j in self._left else "r" for j in range(len(self.columns)))
        out = [f"% {self.title}", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
               " & ".join(_tex(c) for c in self.columns) + " \\\\", "\\midrule"]
        for i, row in enumerate(self.text()):
            if i in self.groups:
                out.append(f"\\multicolumn{{{len(self.columns)}}}{{l}}"
                           f"{{\\textit{{{_tex(self.groups[i])}}}}} \\\\")
            out.append(" & ".join(_tex(c) for c in row) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", ""]
        return "\n".join(out)

    def html(self) -> Markup:
        """The HTML table with its download links."""
        parts = [f'<table id="{escape(self.id)}">', f"<caption>{escape(self.title)}</caption>",
                 "<thead><tr>"]
        parts += [f'<th{_cls(j, self._left)}>{escape(c)}</th>'
                  for j, c in enumerate(self.columns)]
        parts.append("</tr></thead><tbody>")
        for i, row in enumerate(self.rows):
            if i in self.groups:
                parts.append(f'<tr class="group"><th class="l" colspan="{len(self.columns)}">'
                             f"{escape(self.groups[i])}</th></tr>")
            parts.append("<tr>" + "".join(
                f"<td{_cls(j, self._left)}>{_html(c)}</td>" for j, c in enumerate(row)) +
                "</tr>")
        parts.append("</tbody></table>")
        if self.note:
            parts.append(f'<p class="note">{self.note}</p>')
        parts.append(
            f'<p class="dl">Download this table: <a download="{self.id}.csv" '
            f'href="data:text/csv;charset=utf-8;base64,{_b64(self.csv())}">CSV</a> · '
            f'<a download="{self.id}.tex" href="data:application/x-tex;charset=utf-8;base64,'
            f'{_b64(self.latex())}">LaTeX</a></p>')
        return Markup("\n".join(parts))

    __html__ = html


def check_registered(table: Table) -> None:
    """Refuse a table with a number in a data column that bypassed disclosure control.

    Raises
    ------
    ReportError
        A cell outside the label columns holds digits but is not a registered number.
    """
    for row in table.rows:
        for j, cell in enumerate(row):
            if j in table.labels or isinstance(cell, (Shown, Lazy)):
                continue
            if _NUMBER.search(str(cell)):
                raise ReportError(
                    f"report table '{table.id}', column '{table.columns[j]}': {cell!r} is a "
                    "number that was not registered with disclosure control; register it "
                    "with Publication.count/stat/share")


def _plain(cell: Any) -> str:
    text = str(cell)
    return re.sub(r"<[^>]+>", "", text) if isinstance(cell, Lazy) else text


def _html(cell: Any) -> str:
    if isinstance(cell, Lazy):
        return str(cell)  # trusted HTML built by this package from protected cells
    return str(escape(str(cell)))


def _cls(j: int, labels: tuple[int, ...]) -> str:
    return ' class="l"' if j in labels else ""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
        "−": "$-$", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))
