"""Benchmark: simulation-based power on the growth engine's refit path, beside lme4's refit().

Design (the issue's example, scaled to the refit benchmark's size): growth model
``y ~ time * arm + (time | participant)``, 250 participants per arm, 8 yearly waves, 20%
attrition a wave (MCAR, so the design's statistics are reused), slope difference 0.06 SD/year.
We time ``simulate_power`` with 1,000 replicates on one core (``n_jobs=1``: simulation + refit +
Wald test per replicate) and on all local cores, and lme4's ``refit(m, newresp)`` on the first
100 of the same responses inside R in the same run, and compare the effect estimates.

Run: ``python -m benchmarks.power``. Environment: ``TRACKII_BENCH_POWER_SIMS`` (default 1000),
``TRACKII_BENCH_R_REFITS`` (default 100), ``TRACKII_BENCH_SKIP_R=1``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import env_int, run_r
from trackii_eval.power import PowerDesign, simulate_power
from trackii_eval.power.design import _frame, prepare

_R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$participant <- factor(d$participant)
Y <- as.matrix(read.csv(args[2], header = FALSE))
m <- lmer(y ~ time * arm + (time | participant), data = d, REML = TRUE)
est <- numeric(ncol(Y))
t <- system.time(for (k in seq_len(ncol(Y))) est[k] <- fixef(refit(m, newresp = Y[, k]))[4])
writeLines(jsonlite::toJSON(list(per_refit = t[["elapsed"]] / ncol(Y), est = est),
                            digits = NA, auto_unbox = TRUE), args[3])
"""


def _responses(design: PowerDesign, seed: int, k: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The first k simulated responses of the power run (as run_batch draws them)."""
    prep = prepare(design, seed)
    ys = []
    for r in range(k):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(design.n_per_arm, r)))
        ys.append(prep.sim.draw(rng).ravel()[prep.rows])
    df = _frame(design, prep.lay, prep.rows, prep.model.y)
    return df, np.array(ys)


def main() -> None:
    """Run the power benchmark and print a table."""
    n_sims = env_int("TRACKII_BENCH_POWER_SIMS", 1000)
    n_r = env_int("TRACKII_BENCH_R_REFITS", 100)
    skip_r = os.environ.get("TRACKII_BENCH_SKIP_R", "") == "1"
    design = PowerDesign(n_per_arm=250, times=tuple(float(t) for t in range(8)), effect=0.06,
                         slope_sd=0.1, icc=0.5, attrition=0.2)
    seed = 1
    t0 = time.perf_counter()
    prep = prepare(design, seed)
    setup = time.perf_counter() - t0
    simulate_power(design, 20, seed=seed, n_jobs=1, progress=False)  # warm-up
    t0 = time.perf_counter()
    pt = simulate_power(design, n_sims, seed=seed, n_jobs=1, progress=False)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    pt_all = simulate_power(design, n_sims, seed=seed, n_jobs=-1, progress=False)
    allc = time.perf_counter() - t0
    assert np.array_equal(pt.estimates, pt_all.estimates)

    print("power benchmark: y ~ time * arm + (time | participant), 2 x 250 participants, "
          "8 waves, 20% attrition/wave (MCAR), REML, Wald test of time:arm")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    print(f"design setup (frame, statistics, template fit, warm Hessian, once): "
          f"{setup * 1e3:.0f} ms; {prep.model.stats.K} measurement patterns, "
          f"{prep.model.nobs} rows")
    header = f"{'engine':<40} {'refits':>7} {'ms/refit':>9} {'total s':>8} {'vs ours':>8}"
    print(header)
    print("-" * len(header))
    print(f"{'trackii simulate_power, 1 core':<40} {n_sims:>7} {one / n_sims * 1e3:>9.2f} "
          f"{one:>8.2f} {'1.0':>8}")
    print(f"{'trackii simulate_power, all cores':<40} {n_sims:>7} {allc / n_sims * 1e3:>9.2f} "
          f"{allc:>8.2f} {allc / one:>8.2f}")
    print(f"power {pt.power:.3f} (95% MC interval {pt.ci[0]:.3f}-{pt.ci[1]:.3f}); closed form "
          f"{pt.closed_form:.3f}; refits needing the full optimiser: {pt.n_fallback}; "
          f"unconverged: {pt.n_unconverged}")
    if skip_r or shutil.which("Rscript") is None:
        print("lme4: skipped (" + ("TRACKII_BENCH_SKIP_R=1" if skip_r else "Rscript not found")
              + ")")
        return
    df, ys = _responses(design, seed, min(n_r, n_sims))
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        df[["participant", "time", "arm", "y"]].to_csv(w / "d.csv", index=False)
        pd.DataFrame(ys.T).to_csv(w / "y.csv", index=False, header=False, float_format="%.17g")
        (w / "r.R").write_text(_R_SCRIPT)
        lme = run_r(w / "r.R", [str(w / "d.csv"), str(w / "y.csv"), str(w / "o.json")],
                    w / "o.json")
    if lme is None:
        return
    ours = pt.estimates[: ys.shape[0]] - design.effect  # responses above are at effect 0
    diff = float(np.max(np.abs(ours - np.asarray(lme["est"]))))
    print(f"{'lme4 refit(m, newresp)':<40} {ys.shape[0]:>7} {lme['per_refit'] * 1e3:>9.2f} "
          f"{lme['per_refit'] * n_sims:>8.2f} {lme['per_refit'] * n_sims / one:>8.1f}")
    print(f"max |time:arm estimate, ours - lme4| over {ys.shape[0]} responses: {diff:.2e} "
          "(lme4 total s extrapolated to the same number of refits)")


if __name__ == "__main__":
    main()
