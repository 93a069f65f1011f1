"""Must show (issue 13): re-running on the same inputs gives identical numbers and tables.

The demo is run a second time, as the session's demo run was (the Study API), into a
new folder with the same key, and compared with the session's demo run: every HTML page
(only run ids, generation date and the output folder differ), every CSV byte for byte, the
stored scores, reliability and model results exactly, and the manifest less its run ids and
times. The report rendered once more from the command line (``trackii-eval report --pdf``) is
the same again, with a PDF beside each page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from trackii_eval.cli import app
from trackii_eval.report.pdf import report_pages

from ..conftest import DEMO

RUN_ID = re.compile(r"\b(ingest|score|model|report)-\d{8}T\d{6}-[0-9a-f]{6,}\b")
TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?\b")
GENERATED = re.compile(r"(Generated\s+)\d{4}-\d{2}-\d{2}")
#: manifest keys that name a run or a moment, not a number or a table
VOLATILE = {"run_id", "started_at", "finished_at", "written_at", "score_run", "model_run"}


def _normalise(text: str, out: Path) -> str:
    text = text.replace(str(out.resolve()), "<out>").replace(str(out), "<out>")
    text = RUN_ID.sub(r"\1-<run>", text)
    text = TIMESTAMP.sub("<time>", text)
    return GENERATED.sub(r"\1<date>", text)


def _stable(value: Any, out: Path) -> Any:
    """The manifest without run ids, times and the output folder (the report's own hash
    differs by its run ids, which the HTML comparison covers)."""
    if isinstance(value, dict):
        return {k: _stable(v, out) for k, v in value.items()
                if k not in VOLATILE and not (k == "outputs" and "report" in v)}
    if isinstance(value, list):
        return [_stable(v, out) for v in value]
    return _normalise(value, out) if isinstance(value, str) else value


def _html_pages(first: Path, second: Path, report: str = "report.html") -> list[Path]:
    pages = [p.relative_to(first.resolve()) for p in report_pages(first / report)]
    again = [p.relative_to(second.resolve()) for p in report_pages(second / report)]
    assert pages == again
    assert sorted(p.relative_to(first) for p in first.rglob("*.html")) == \
        sorted(p.relative_to(second) for p in second.rglob("*.html"))
    return pages


def _same_pages(first: Path, second: Path, pages: list[Path]) -> None:
    for rel in pages:
        a = _normalise((first / rel).read_text(encoding="utf-8"), first)
        b = _normalise((second / rel).read_text(encoding="utf-8"), second)
        assert RUN_ID.search(a) is None
        if a != b:
            line = next(i for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(),
                                                         strict=False)) if x != y)
            pytest.fail(f"{rel} differs between runs, first at line {line + 1}:\n"
                        f"{a.splitlines()[line][:300]}\n{b.splitlines()[line][:300]}")


# One test, not several: under pytest-xdist each test may land on another worker, and a
# module fixture would then run the whole pipeline once more on each.
def test_rerun_gives_identical_numbers_and_tables(demo_run, key, key_file: Path,
                                                  tmp_path: Path) -> None:
    from trackii_eval import Study

    first, second = demo_run[3].parent, tmp_path / "rerun"
    again = Study.load(DEMO, out=second)
    try:
        again.ingest(key)
        again.score()
        again.fit_models()
        assert again.report() == second / "report.html"
        # the report pages: identical but for run ids, generation date and output folder
        pages = _html_pages(first, second)
        _same_pages(first, second, pages)
        # every CSV table, byte for byte
        tables = sorted(p.relative_to(first) for p in first.rglob("*.csv"))
        assert tables == sorted(p.relative_to(second) for p in second.rglob("*.csv"))
        assert tables  # at least the linkage review
        for rel in tables:
            assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
        # the stored numbers, exactly
        study = demo_run[0]
        for table in ("scores", "reliability", "item_statistics", "invariance"):
            query = f"SELECT * FROM {table} ORDER BY ALL"
            pd.testing.assert_frame_equal(study.store.query(query), again.store.query(query),
                                          check_exact=True, obj=table)
        assert study.store.results() == again.store.results()
    finally:
        again.close()
    a = json.loads((first / "manifest.json").read_text())
    b = json.loads((second / "manifest.json").read_text())
    assert _stable(a, first) == _stable(b, second)

    # the report rendered again from the command line, with --pdf: the same pages, each
    # with its PDF beside it
    before = {rel: (second / rel).read_text(encoding="utf-8") for rel in pages}
    result = CliRunner().invoke(app, ["report", str(DEMO), "--out", str(second), "--pdf"])
    assert result.exit_code == 0, result.output
    assert "PDF written to" in result.output
    for rel, text in before.items():
        assert _normalise(text, second) == _normalise(
            (second / rel).read_text(encoding="utf-8"), second), rel
        pdf = (second / rel).with_suffix(".pdf")
        assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", pdf
