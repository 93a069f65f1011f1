"""The harness itself catches what the page tests rely on it to catch."""

from __future__ import annotations

from pathlib import Path

from .harness import serve_folder
from .pages import figure_problems, missing_value_text

BAD = """<!doctype html><html><head><title>bad</title></head><body>
<h1>Effects</h1><table><tr><td>nan</td><td>None</td></tr></table>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<svg width="10" height="10"><rect width="10" height="10"/></svg>
<svg role="img" aria-label="A labelled chart" width="10" height="10"></svg>
<script>console.error("boom from the page")</script></body></html>"""

GOOD = """<!doctype html><html><head><title>good</title></head><body>
<h1>None of the people left</h1><p>Gap 5.0 [-0.35, 10.4]</p>
<svg width="10" height="10"><title>Trajectories per arm</title></svg></body></html>"""


def test_console_errors_missing_values_and_alt_text_are_caught(tmp_path: Path,
                                                               open_page) -> None:
    (tmp_path / "bad.html").write_text(BAD)
    page = open_page(tmp_path / "bad.html", "bad")
    assert [e for e in page.errors if "boom from the page" in e["message"]]
    assert page.screenshot.stat().st_size > 0 and page.screenshot.read_bytes()[:4] == b"\x89PNG"
    assert missing_value_text(page) == ["nan", "None"]
    assert len(figure_problems(page)) == 2  # the unlabelled <img> and the unlabelled <svg>


def test_a_clean_page_over_http_passes(tmp_path: Path, open_page) -> None:
    (tmp_path / "good.html").write_text(GOOD)
    with serve_folder(tmp_path) as base:
        page = open_page(base + "good.html", "good")
    assert page.url.startswith("http://localhost:")
    assert page.title == "good" and "Gap 5.0" in page.text
    assert page.errors == []
    assert missing_value_text(page) == []  # "None of the ..." is prose, not a missing value
    assert figure_problems(page) == []


def test_a_missing_local_resource_is_a_console_error(tmp_path: Path, open_page) -> None:
    (tmp_path / "broken.html").write_text(
        '<!doctype html><title>x</title><img alt="chart" src="nowhere.png">')
    page = open_page(tmp_path / "broken.html", "broken")
    assert page.errors  # Chromium logs the failed load as SEVERE
    assert figure_problems(page) == ["img 1 (chart): did not load"]
