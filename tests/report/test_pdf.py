"""Must show (issue 13): the PDF of the report converts, its pages render to images with
pdftoppm, and it carries the report's headline; print CSS puts each section on a new page and
numbers the pages. Checked with poppler's tools, independently of WeasyPrint."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import tinyhtml5
from PIL import Image

from tests.browser.harness import require_tool
from trackii_eval.errors import ReportError
from trackii_eval.report.pdf import report_pages, write_pdf, write_report_pdfs


def _squeeze(text: str) -> str:
    """Text without whitespace or list bullets, minus signs and dashes as ASCII hyphens."""
    text = text.replace("\u2212", "-").replace("\u2013", "-")
    return re.sub(r"[\s•]+", "", text)


def _page_texts(pdf: Path) -> list[str]:
    pdftotext = require_tool("pdftotext", "poppler-utils")
    out = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True,
                         text=True, check=True).stdout
    return out.split("\f")[:-1] if out.endswith("\f") else out.split("\f")


def _outline(html: Path) -> tuple[str, list[str], str]:
    """The page's <h1>, its <h2>s and its headline block (class or id headline/findings)."""
    root = tinyhtml5.parse(html.read_bytes(), namespace_html_elements=False)

    def text(el) -> str:
        return "".join(el.itertext())

    h1 = text(next(root.iter("h1")))
    h2s = [text(e) for e in root.iter("h2")]
    blocks = [e for e in root.iter() if isinstance(e.tag, str) and re.search(
        r"headline|findings", f"{e.get('class', '')} {e.get('id', '')}")]
    assert blocks, f"{html.name}: no element with class or id 'headline' or 'findings'"
    return h1, h2s, text(blocks[0])


@pytest.fixture(scope="module")
def pdf(demo_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pdf(demo_run[3], tmp_path_factory.mktemp("pdf") / "report.pdf")


def test_pdf_pages_render_to_images(pdf: Path, tmp_path: Path) -> None:
    pdfinfo = require_tool("pdfinfo", "poppler-utils")
    info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True,
                          check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages > 1
    assert re.search(r"^Page size:\s+595\.\d+ x 841\.\d+ pts \(A4\)", info, re.M), info
    pdftoppm = require_tool("pdftoppm", "poppler-utils")
    subprocess.run([pdftoppm, "-r", "30", "-png", str(pdf), str(tmp_path / "page")],
                   check=True, capture_output=True)
    images = sorted(tmp_path.glob("page-*.png"))
    assert len(images) == pages
    for image in images:
        grey = Image.open(image).convert("L")
        assert grey.getextrema()[0] < 200, f"{image.name} is blank"  # some ink on every page


def test_pdf_text_has_the_headline_sections_and_page_numbers(demo_run, pdf: Path) -> None:
    h1, h2s, headline = _outline(demo_run[3])
    assert re.search(r"\d", headline)  # the headline states numbers ...
    pages = _page_texts(pdf)
    # every page is numbered "Page n of N", and every page after the first carries the title
    for n, text in enumerate(pages, start=1):
        lines = [line for line in text.splitlines() if line.strip()]
        assert f"Page {n} of {len(pages)}" in lines, n
        if n > 1:
            assert _squeeze(lines[0]) == _squeeze(h1), (n, lines[0])
    body = [[line for line in text.splitlines() if line.strip()
             and not re.fullmatch(r"Page \d+ of \d+", line.strip())] for text in pages]
    body = [lines[1:] if n else lines for n, lines in enumerate(body)]  # minus running title
    flowing = _squeeze(" ".join(" ".join(lines) for lines in body))
    assert _squeeze(h1) in flowing
    assert _squeeze(headline) in flowing, headline  # ... and the PDF has them, word for word
    # print CSS: each section starts a new page (its heading first under the running title)
    tops = [_squeeze(" ".join(lines[:2])) for lines in body]
    for h2 in h2s:
        assert any(top.startswith(_squeeze(h2)) for top in tops), f"{h2!r} starts mid-page"


def test_no_text_runs_off_the_page(pdf: Path) -> None:
    # a table wider than the page is cut off at its edge by the PDF: every word must lie within
    # the A4 page's content box (15 mm side margins of the print CSS, with rounding)
    pdftotext = require_tool("pdftotext", "poppler-utils")
    xml = subprocess.run([pdftotext, "-bbox", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    width = float(re.search(r'<page width="([\d.]+)"', xml).group(1))
    right = width - 15 / 25.4 * 72 + 1
    words = re.findall(r'xMin="([\d.]+)"[^>]*xMax="([\d.]+)"[^>]*>([^<]*)<', xml)
    assert len(words) > 500
    outside = [w for x0, x1, w in words if float(x1) > right or float(x0) < 15 / 25.4 * 72 - 1]
    assert not outside, f"{len(outside)} words outside the page's content box: {outside[:10]}"


def test_every_linked_page_gets_its_pdf(tmp_path: Path) -> None:
    page = '<!doctype html><title>{0}</title><h1>{0}</h1><p>{1}</p>'
    (tmp_path / "dialogues").mkdir()
    (tmp_path / "report.html").write_text(page.format(
        "Pooled", '<a href="dialogues/D1.html">D1</a> <a href="dialogues/D2.html#top">D2</a> '
        '<a href="https://example.invalid/x.html">elsewhere</a>'))
    (tmp_path / "dialogues" / "D1.html").write_text(page.format(
        "D1", '<a href="../report.html">back</a> <a href="D2.html">D2</a>'))
    (tmp_path / "dialogues" / "D2.html").write_text(page.format("D2", "case study"))
    (tmp_path / "notes.html").write_text(page.format("not linked", ""))
    pdfs = write_report_pdfs(tmp_path / "report.html")
    assert pdfs == [tmp_path / "report.pdf", tmp_path / "dialogues" / "D1.pdf",
                    tmp_path / "dialogues" / "D2.pdf"]
    for pdf, title in zip(pdfs, ["Pooled", "D1", "D2"], strict=True):
        assert _page_texts(pdf)[0].splitlines()[0] == title
    assert not (tmp_path / "notes.pdf").exists()


@pytest.mark.parametrize("src", ["http://example.invalid/figure.png", "file:///etc/hostname",
                                 "missing.png"])
def test_a_report_that_is_not_self_contained_is_refused(tmp_path: Path, src: str) -> None:
    page = tmp_path / "report.html"
    page.write_text(f'<!doctype html><title>t</title><h1>T</h1><img alt="a" src="{src}">')
    with pytest.raises(ReportError, match="the PDF would miss content"):
        write_pdf(page)
    assert not page.with_suffix(".pdf").exists()


def test_a_broken_link_or_missing_report_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no report there"):
        write_pdf(tmp_path / "report.html")
    page = tmp_path / "report.html"
    page.write_text('<!doctype html><title>t</title><a href="dialogues/D1.html">D1</a>')
    with pytest.raises(ReportError, match=r"links to dialogues/D1\.html, which does not exist"):
        report_pages(page)
