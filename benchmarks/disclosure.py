"""Benchmark: the time disclosure control adds to ``trackii-eval run`` on the demo study.

Runs ingest, score and model once, then times (a) registering every number of the impact
report with its relations, (b) :func:`trackii_eval.disclosure.protect` (primary suppression,
the integer program, the LP attacker's audit) and (c) the whole report, at several minimum cell
sizes; the time of the full ``run`` (ingest to report) is printed for scale.

Run: ``python -m benchmarks.disclosure``. Environment: ``TRACKII_BENCH_DISCLOSURE_REPEATS``
(default 3).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks._common import env_int
from trackii_eval import Study
from trackii_eval.ingest.pseudonym import load_key, write_key
from trackii_eval.report.build import report_tables

DEMO = Path(__file__).resolve().parent.parent / "surveys" / "demo"


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    repeats = env_int("TRACKII_BENCH_DISCLOSURE_REPEATS", 3)
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "bench.key"
        write_key(key)
        study = Study.load(DEMO, out=Path(tmp) / "out")
        t0 = time.perf_counter()
        study.ingest(load_key(key))
        study.score()
        study.fit_models()
        t1 = time.perf_counter()
        study.report()
        t2 = time.perf_counter()
        print(f"demo run: ingest+score+model {t1 - t0:.1f} s, report {t2 - t1:.2f} s "
              f"(total {t2 - t0:.1f} s)")
        for k in (5, 10, 40):
            reg, prot = [], []
            for _ in range(repeats):
                a = time.perf_counter()
                tables = report_tables(study.store, study.context, k)
                b = time.perf_counter()
                result = tables.publication.protect()
                c = time.perf_counter()
                reg.append(b - a)
                prot.append(c - b)
            n = result.counts
            print(f"k={k:>2}: register {min(reg):.2f} s, protect {min(prot):.2f} s "
                  f"({len(result.system.ids)} counts, {result.system.A.shape[0]} relations, "
                  f"{n['primary']} primary, {n['secondary']} complementary suppressions; "
                  f"integer program {result.n_variables} variables)")
        study.close()


if __name__ == "__main__":
    main()
