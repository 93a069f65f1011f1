"""Must show (issue 13): every page of the demo's report renders in a real headless Chromium,
with no console errors, no missing-value text and alt text on every figure; screenshots kept
in build/test-artefacts/.

The pages are the report, every HTML file written beside it or below it (per-dialogue
reports), and every local HTML page the report links to, so a new page is tested without
changing this test.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from .pages import figure_problems, missing_value_context, missing_value_text


def _report_pages(report: Path) -> list[Path]:
    pages = {report.resolve()}
    pages |= {p.resolve() for p in report.parent.rglob("*.html")}
    for page in list(pages):
        for href in re.findall(r'href="([^"#?]+\.html)', page.read_text(encoding="utf-8")):
            if urlparse(href).scheme in ("", "file"):
                target = (page.parent / unquote(urlparse(href).path)).resolve()
                assert target.exists(), f"{page.name} links to {href}, which was not written"
                pages.add(target)
    return sorted(pages)


@pytest.fixture(scope="module")
def report_pages(demo_run) -> list[Path]:
    return _report_pages(demo_run[3])


def test_every_report_page_renders_cleanly(demo_run, report_pages, open_page) -> None:
    report = demo_run[3]
    assert report.resolve() in report_pages
    problems = []
    for path in report_pages:
        rel = path.relative_to(report.parent.resolve())
        page = open_page(path, str(rel.with_suffix("")))
        where = f"{rel}:"
        if not page.title.strip():
            problems.append(f"{where} no <title>")
        if len(page.text) < 200:
            problems.append(f"{where} rendered only {len(page.text)} characters of text")
        problems += [f"{where} console {e['level']}: {e['message']}" for e in page.errors]
        if missing_value_text(page):
            problems += [f"{where} missing value shown: …{c}…" for c in missing_value_context(page)]
        problems += [f"{where} {p}" for p in figure_problems(page)]
        height = page.driver.execute_script("return document.documentElement.scrollHeight")
        if height < 900:
            problems.append(f"{where} page only {height} px tall")
        assert page.screenshot.stat().st_size > 10_000, f"{where} blank screenshot"
    assert not problems, "\n".join(problems)
