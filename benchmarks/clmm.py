"""Benchmark: trackii_eval's cumulative-link mixed model vs R's ordinal::clmm, same run.

Design: a 5-category item, ``rating ~ time * arm + (1 | participant)``, 1,000 participants x
5 waves (simulated, seed 16), logit link; Laplace and adaptive Gauss-Hermite quadrature with
10 points (``nAGQ = 10``). For each method we report

* ours: wall time of ``clmm(...)`` (best of ``TRACKII_BENCH_REPEATS``, default 3), formula
  coding, standard errors (numerical Hessian) and the result object included;
* clmm: elapsed time of the ``clmm(...)`` call inside R (``system.time``; data in memory);
* the ratio, and the agreement: logLik(ours) - logLik(clmm) (>= -1e-3 required), max |delta|
  of thresholds and effects, and of their SEs, the random-intercept variance.

Run: ``python -m benchmarks.clmm`` (fits clmm in R, about 1.5 minutes) or
``python -m benchmarks.clmm --quick`` (R's numbers from the committed fixture
``tests/fixtures/clmm/bench_1000x5.json``, made on this data by
``tests/fixtures/clmm/bench_clmm.R``). ``TRACKII_BENCH_SKIP_R=1`` is the same as ``--quick``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import env_int, run_r

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "clmm" / "bench_1000x5.json"
R_SCRIPT = ROOT / "tests" / "fixtures" / "clmm" / "bench_clmm.R"
FORMULA = "rating ~ time * arm + (1 | participant)"
METHODS = {"laplace": 1, "agq10": 10}


def simulate_ordinal_panel(n_participants: int, n_waves: int, seed: int = 16) -> pd.DataFrame:
    """A long panel of one 5-category item with a random participant intercept (sd 1.2).

    Thresholds -2, -0.7, 0.6, 1.9; time in years 0..2; effects time 0.2, arm 0.1,
    time x arm 0.4 (clmm's sign convention: positive = higher categories).
    """
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(1, n_participants + 1), n_waves)
    time_ = np.tile(np.linspace(0.0, 2.0, n_waves), n_participants)
    arm = np.repeat(rng.random(n_participants) < 0.5, n_waves)
    b = np.repeat(rng.normal(0.0, 1.2, n_participants), n_waves)
    eta = 0.2 * time_ + 0.1 * arm + 0.4 * time_ * arm + b
    latent = eta + rng.logistic(size=eta.size)
    rating = 1 + np.searchsorted(np.array([-2.0, -0.7, 0.6, 1.9]), latent)
    return pd.DataFrame({"participant": pid, "time": time_,
                         "arm": np.where(arm, "dialogue", "comparison"), "rating": rating})


def main() -> None:
    """Print the comparison table (see the module docstring)."""
    from trackii_eval.models.clmm import clmm

    quick = "--quick" in sys.argv or os.environ.get("TRACKII_BENCH_SKIP_R") == "1"
    repeats = env_int("TRACKII_BENCH_REPEATS", 3)
    data = simulate_ordinal_panel(1000, 5, seed=16)
    data["arm"] = pd.Categorical(data["arm"], categories=["comparison", "dialogue"])
    if quick:
        ref = json.loads(FIXTURE.read_text())
        print(f"clmm timings from {FIXTURE.relative_to(ROOT)} (--quick)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            csv, out = Path(tmp) / "d.csv", Path(tmp) / "r.json"
            data.to_csv(csv, index=False)
            ref = run_r(R_SCRIPT, [str(csv), str(out), ",".join(METHODS)], out)
        if ref is None:
            print("R/ordinal not available: using the committed fixture")
            ref = json.loads(FIXTURE.read_text())
    print(f"{'method':8s} {'ours s':>8s} {'clmm s':>8s} {'ratio':>7s} {'dlogLik':>10s} "
          f"{'max|dcoef|':>10s} {'max|dSE|':>9s} {'var ours':>9s} {'var clmm':>9s}")
    for name, n_agq in METHODS.items():
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            fit = clmm(FORMULA, data, nAGQ=n_agq)
            best = min(best, time.perf_counter() - t0)
        r = ref[name]
        se = np.sqrt(np.diag(fit.vcov.to_numpy()))
        print(f"{name:8s} {best:8.3f} {r['seconds']:8.2f} {r['seconds'] / best:6.0f}x "
              f"{fit.loglik - r['logLik']:10.2e} "
              f"{np.max(np.abs(fit.estimates - np.array(r['estimate']))):10.1e} "
              f"{np.max(np.abs(se - np.array(r['std_error']))):9.1e} "
              f"{fit.Sigma[0, 0]:9.4f} {r['variance']:9.4f}"
              f"{'' if fit.converged else '  NOT CONVERGED'}")


if __name__ == "__main__":
    main()
