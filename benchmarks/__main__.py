"""Run every benchmark: ``python -m benchmarks`` (or ``make bench``)."""

from __future__ import annotations

import importlib
import sys

SUITES = ["benchmarks.stages", "benchmarks.omega", "benchmarks.growth", "benchmarks.refits",
          "benchmarks.power",
          "benchmarks.linkage", "benchmarks.disclosure", "benchmarks.did",
          "benchmarks.glmm", "benchmarks.clmm",
          "benchmarks.portfolio", "benchmarks.dashboard"]

if __name__ == "__main__":
    chosen = sys.argv[1:] or SUITES
    for name in chosen:
        module = importlib.import_module(name if "." in name else f"benchmarks.{name}")
        print(f"\n=== {module.__name__} ===", flush=True)
        module.main()
