"""Benchmark: the demo portfolio dashboard's build time, file size and load time.

Runs ingest, score and model of both simulated studies (``surveys/demo``, ``surveys/coast``)
with their plans, then times :func:`trackii_eval.dashboard.build_dashboard` by step
(registering the dashboard's and both reports' numbers, one joint disclosure decision,
rendering the reports, the charts and the HTML), reports the size of ``dashboard.html``
(plain and gzipped; the vega bundle alone for scale) and its load time in headless Chromium
from ``file://`` with the network closed: until vega-embed has rendered every chart
(``performance.now()`` at the end of rendering, median of the repeats).

Run: ``python -m benchmarks.dashboard``. Environment: ``TRACKII_BENCH_DASHBOARD_REPEATS``
(default 5). Needs Chromium and chromedriver for the load time (skipped with a note if absent).
"""

from __future__ import annotations

import gzip
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import env_int

ROOT = Path(__file__).resolve().parent.parent


def _run_study(name: str, out: Path, key) -> None:
    from trackii_eval.pipeline import ingest, load_context, model, score
    from trackii_eval.store import Store

    ctx = load_context(ROOT / "surveys" / name, out=out, plan=ROOT / "analysis" / f"{name}.yaml")
    out.mkdir(parents=True, exist_ok=True)
    with Store(out / f"{name}.duckdb", ctx.study_id, create=True) as store:
        ingest(store, ctx, key)
        score(store, ctx)
        model(store, ctx)


def _load_times(path: Path, repeats: int, tmp: Path) -> list[float] | str:
    try:
        from tests.browser.harness import CHROMEDRIVER, CHROMIUM, start_chromium
    except ImportError as exc:  # pragma: no cover - dev extra missing
        return f"browser harness not importable ({exc})"
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return "Chromium or chromedriver not installed"
    from selenium.webdriver.support.ui import WebDriverWait

    driver = start_chromium(tmp / "profile")
    try:
        out = []
        for _ in range(repeats):
            driver.get("about:blank")
            driver.get(path.resolve().as_uri())
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready || ''") == "1")
            out.append(float(driver.execute_script("return document.body.dataset.readyMs")))
        return out
    finally:
        driver.quit()


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    repeats = env_int("TRACKII_BENCH_DASHBOARD_REPEATS", 5)
    from trackii_eval.dashboard import build as b
    from trackii_eval.ingest.pseudonym import load_key, write_key
    from trackii_eval.pipeline.provenance import last_run

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_key(tmp / "bench.key")
        key = load_key(tmp / "bench.key")
        t0 = time.perf_counter()
        for name in ("demo", "coast"):
            _run_study(name, tmp / name, key)
        t1 = time.perf_counter()
        print(f"two studies ingested, scored and modelled: {t1 - t0:.1f} s")
        studies = b.load_portfolio([(ROOT / "surveys" / n, tmp / n) for n in ("demo", "coast")])
        try:
            a = time.perf_counter()
            dash = b.portfolio_tables(studies)
            reg = time.perf_counter()
            result = dash.publication.protect()
            prot = time.perf_counter()
            for s in studies:
                sid = s.context.study_id
                b.render_reports(s.store, s.context, tmp / "out" / "reports" / sid /
                                 "report.html", model_run=last_run(s.store, "model"),
                                 tables=dash.reports[sid])
            rep = time.perf_counter()
            bundle = b._bundle()
            bun = time.perf_counter()
            full = b.build_dashboard(studies, tmp / "out")  # end to end (bundle now cached)
            end = time.perf_counter()
        finally:
            for s in studies:
                s.store.close()
        print(f"register {reg - a:.2f} s, protect {prot - reg:.2f} s "
              f"({len(result.system.ids)} counts, {result.counts['primary']} primary, "
              f"{result.counts['secondary']} complementary suppressions), render both reports "
              f"{rep - prot:.2f} s, build the vega bundle {bun - rep:.2f} s; build_dashboard "
              f"end to end (bundle cached) {end - bun:.2f} s")
        path = full.paths["dashboard"]
        raw = path.read_bytes()
        print(f"dashboard.html: {len(raw) / 1e6:.2f} MB ({len(gzip.compress(raw)) / 1e6:.2f} MB "
              f"gzipped), of which the vega/vega-lite/vega-embed bundle "
              f"{len(bundle.encode()) / 1e6:.2f} MB")
        times = _load_times(path, repeats, tmp)
        if isinstance(times, str):
            print(f"load time: not measured ({times})")
        else:
            print(f"load time in headless Chromium (file://, network closed), until every "
                  f"chart is rendered: median {statistics.median(times):.0f} ms "
                  f"(min {min(times):.0f}, max {max(times):.0f}; {len(times)} loads)")


if __name__ == "__main__":
    main()
