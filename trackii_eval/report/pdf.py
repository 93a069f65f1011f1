"""The impact report as PDF: the same HTML, laid out for print by WeasyPrint.

The PDF is made from the HTML the report stage wrote (so it carries exactly the numbers that
passed disclosure control), with a print stylesheet added on top of the report's own: A4 pages,
each section (``<h2>``) on a new page, figures and table rows kept whole, table headers repeated
across pages, the report's title at the head and "Page n of N" at the foot of every page.

WeasyPrint uses the system's Pango (Debian: ``libpango-1.0-0``, ``libpangoft2-1.0-0``); Quarto
and LaTeX are not needed. Only ``data:`` URLs and files inside the report's folder are read: a
report that refers to anything else is refused, never printed with a hole in it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import ReportError

__all__ = ["PRINT_CSS", "report_pages", "write_pdf", "write_report_pdfs"]

#: Added after the report's own styles (WeasyPrint renders the ``print`` media type, so the
#: report's ``@media print`` rules apply as well).
PRINT_CSS = """
@page {
  size: A4;
  margin: 18mm 15mm 20mm 15mm;
  @top-left { content: string(report-title); font-size: 8pt; color: #555; }
  @bottom-right { content: "Page " counter(page) " of " counter(pages);
                  font-size: 8pt; color: #555; }
}
@page :first { @top-left { content: none; } }
html { font-size: 9.5pt; }
body { max-width: none; margin: 0; padding: 0; }
h1 { string-set: report-title content(); }
h2 { break-before: page; }
h1, h2, h3, h4 { break-after: avoid; }
figure, img, svg, pre, blockquote, tr, .headline { break-inside: avoid; }
thead { display: table-header-group; }
table { font-size: 8pt; max-width: 100%; }
th, td { padding: .2em .4em; }
code { white-space: normal; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; }
svg { max-width: 100%; }
a { color: inherit; }
"""

_LOGGER = "weasyprint"


def report_pages(report: str | Path) -> list[Path]:
    """The report and every local HTML page it links to, directly or through a linked page.

    Parameters
    ----------
    report
        The report's HTML file.

    Returns
    -------
    list of Path
        Resolved paths, the report first, then the linked pages in the order first linked.

    Raises
    ------
    ReportError
        The report, or a page it links to, does not exist.
    """
    first = Path(report).resolve()
    if not first.is_file():
        raise ReportError(f"{first}: no report there; run `trackii-eval report` first")
    pages, queue = [first], [first]
    while queue:
        page = queue.pop(0)
        for href in re.findall(r'href="([^"#?]+\.html)["#?]', page.read_text(encoding="utf-8")):
            parsed = urlparse(href)
            if parsed.scheme not in ("", "file"):
                continue
            target = (page.parent / unquote(parsed.path)).resolve()
            if not target.is_file():
                raise ReportError(f"{page}: links to {href}, which does not exist; render the "
                                  "report again")
            if target not in pages:
                pages.append(target)
                queue.append(target)
    return pages


def _fetcher(root: Path) -> Any:  # a URLFetcher subclass (WeasyPrint imported lazily)
    from weasyprint.urls import URLFetcher

    class _LocalOnly(URLFetcher):
        """Reads ``data:`` URLs and files under ``root``; refuses everything else."""

        def fetch(self, url, headers=None):  # type: ignore[no-untyped-def]
            parsed = urlparse(url)
            if parsed.scheme == "file":
                path = Path(unquote(parsed.path)).resolve()
                if not path.is_relative_to(root):
                    raise ValueError(f"{url}: outside the report's folder {root}")
            elif parsed.scheme != "data":
                raise ValueError(f"{url}: the report must be self-contained (no {parsed.scheme}:)")
            return super().fetch(url, headers)

    return _LocalOnly(timeout=5)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _errors() -> Iterator[list[str]]:
    """WeasyPrint logs a resource it could not load (and draws a hole); collect those errors."""
    handler = _Collect()
    logger = logging.getLogger(_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def write_pdf(html: str | Path, pdf: str | Path | None = None) -> Path:
    """Render one HTML page of the report to PDF with the print stylesheet.

    Parameters
    ----------
    html
        The HTML file (self-contained: figures inline or as files in its folder).
    pdf
        The PDF to write; default: ``html`` with the suffix ``.pdf``.

    Returns
    -------
    Path
        The PDF written (A4; at least one page).

    Raises
    ------
    ReportError
        WeasyPrint or the system's Pango is missing (the message says what to install), or a
        figure, stylesheet or font the page refers to could not be loaded (nothing is written).
    """
    html = Path(html).resolve()
    pdf = html.with_suffix(".pdf") if pdf is None else Path(pdf)
    if not html.is_file():
        raise ReportError(f"{html}: no report there; run `trackii-eval report` first")
    try:
        import weasyprint
    except ImportError as exc:
        raise ReportError("the PDF report needs WeasyPrint: pip install 'weasyprint>=70,<71'"
                          ) from exc
    except OSError as exc:  # WeasyPrint found, the Pango it loads through cffi not
        raise ReportError(f"WeasyPrint cannot load the system's Pango ({exc}); install it "
                          "with `apt-get install -y libpango-1.0-0 libpangoft2-1.0-0`") from exc
    with _errors() as errors:
        document = weasyprint.HTML(filename=str(html), url_fetcher=_fetcher(html.parent),
                                   media_type="print")
        rendered = document.render(stylesheets=[weasyprint.CSS(string=PRINT_CSS)])
    if errors:
        raise ReportError(f"{html.name}: the PDF would miss content: " + "; ".join(errors[:3])
                          + " (the report must be self-contained; render it again)")
    pdf.parent.mkdir(parents=True, exist_ok=True)
    rendered.write_pdf(pdf)
    return pdf


def write_report_pdfs(report: str | Path) -> list[Path]:
    """A PDF beside the report and beside every local page it links to (per-dialogue reports).

    Parameters
    ----------
    report
        The report's HTML file, as the report stage wrote it.

    Returns
    -------
    list of Path
        The PDFs, in the order of :func:`report_pages` (the report's first).

    Raises
    ------
    ReportError
        As :func:`report_pages` and :func:`write_pdf`.
    """
    return [write_pdf(page) for page in report_pages(report)]
