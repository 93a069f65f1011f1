"""Benchmark: trackii_eval's glmm vs lme4::glmer, in the same run.

Data: 1,000 participants × 5 waves (``TRACKII_BENCH_GLMM_N`` to change), a yes/no outcome
from ``logit P = -0.5 + 0.2 time + 0.1 arm + 0.3 time·arm + u0 + u1 time`` with
u0 ~ N(0, 1.2²), u1 ~ N(0, 0.4²). Models:

* ``y ~ time * arm + (1 | participant)``, Laplace (nAGQ = 1);
* the same by adaptive Gauss–Hermite quadrature, nAGQ = 10;
* ``y ~ time * arm + (time | participant)`` (random slope), Laplace.

ours: wall time of ``glmm(...)`` (formula parsing, the fit, the Hessian for the standard
errors and the convergence checks), best of ``TRACKII_BENCH_REPEATS`` (default 3); glmer:
``system.time(glmer(...))`` inside R on data already in memory, best of the same number;
both as wall-clock and as CPU time (user + system).
dlogLik = our log-likelihood minus glmer's on glmer's scale (positive: ours is higher).
``TRACKII_BENCH_SKIP_R=1`` skips R.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import env_int, run_r
from trackii_eval.models.glmm import glmm

MODELS = [
    ("random intercept, Laplace", "y ~ time * arm + (1 | participant)", 1),
    ("random intercept, nAGQ=10", "y ~ time * arm + (1 | participant)", 10),
    ("random slope, Laplace", "y ~ time * arm + (time | participant)", 1),
]

_R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$participant <- factor(d$participant)
reps <- as.integer(args[3])
forms <- list(y ~ time * arm + (1 | participant), y ~ time * arm + (1 | participant),
              y ~ time * arm + (time | participant))
nagq <- c(1L, 10L, 1L)
out <- list()
for (k in seq_along(forms)) {
  best <- Inf
  best_cpu <- Inf
  for (i in seq_len(reps)) {
    gc()
    t <- system.time(m <- suppressMessages(glmer(forms[[k]], data = d, family = binomial,
                                                 nAGQ = nagq[k])))
    best <- min(best, t[["elapsed"]])
    best_cpu <- min(best_cpu, t[["user.self"]] + t[["sys.self"]])
  }
  out[[k]] <- list(time = best, cpu = best_cpu, loglik = as.numeric(logLik(m)),
                   fixef = unname(fixef(m)))
}
writeLines(jsonlite::toJSON(list(models = out, lme4 = as.character(packageVersion("lme4"))),
                            digits = NA, auto_unbox = TRUE), args[2])
"""


def simulate(n: int, waves: int = 5, seed: int = 2026) -> pd.DataFrame:
    """The benchmark panel (see module docs)."""
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"participant": np.repeat(np.arange(n), waves),
                      "time": np.tile(np.arange(waves) / 2.0, n)})
    treated = rng.integers(0, 2, n)[d["participant"]]
    d["arm"] = np.where(treated == 1, "dialogue", "comparison")
    u0, u1 = rng.normal(0, 1.2, n), rng.normal(0, 0.4, n)
    p = d["participant"].to_numpy()
    eta = (-0.5 + 0.2 * d["time"] + 0.1 * treated + 0.3 * d["time"] * treated + u0[p]
           + u1[p] * d["time"])
    d["y"] = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return d


def main() -> None:
    """Run the benchmark and print a table."""
    n = env_int("TRACKII_BENCH_GLMM_N", 1000)
    repeats = env_int("TRACKII_BENCH_REPEATS", 3)
    have_r = shutil.which("Rscript") is not None and os.environ.get("TRACKII_BENCH_SKIP_R") != "1"
    d = simulate(n)
    print(f"glmm benchmark: {n} participants x 5 waves, logistic; best of {repeats}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glmm(MODELS[0][1], simulate(50, seed=1))  # warm-up: imports and first calls
        ours = []
        for _, formula, nagq in MODELS:
            best, best_cpu, fit = np.inf, np.inf, None
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                fit = glmm(formula, d, family="binomial", nAGQ=nagq)
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
            ours.append((best, best_cpu, fit))
    lme = None
    if have_r:
        with tempfile.TemporaryDirectory() as tmp:
            csv, out, script = Path(tmp) / "d.csv", Path(tmp) / "r.json", Path(tmp) / "b.R"
            d.to_csv(csv, index=False)
            script.write_text(_R_SCRIPT)
            lme = run_r(script, [str(csv), str(out), str(repeats)], out)
    header = (f"{'model':<28} {'ours s':>8} {'glmer s':>8} {'ratio':>6} {'ours cpu':>8} "
              f"{'glmer cpu':>9} {'ratio':>6} {'dlogLik':>10} {'max|dbeta|':>10}")
    print(header)
    print("-" * len(header))
    for k, (label, _, nagq) in enumerate(MODELS):
        t_ours, c_ours, fit = ours[k]
        assert fit is not None
        if lme is not None:
            r = lme["models"][k]
            ll = fit.loglik if nagq == 1 else fit.loglik_saturated_relative
            print(f"{label:<28} {t_ours:>8.3f} {r['time']:>8.3f} {r['time'] / t_ours:>6.1f} "
                  f"{c_ours:>8.3f} {r['cpu']:>9.3f} {r['cpu'] / c_ours:>6.1f} "
                  f"{ll - r['loglik']:>+10.2e} "
                  f"{np.max(np.abs(np.asarray(fit.beta) - r['fixef'])):>10.1e}")
        else:
            print(f"{label:<28} {t_ours:>8.3f} {'-':>8} {'-':>6} {c_ours:>8.3f}")
    print("ratio = glmer / ours (wall clock, then CPU time: on a busy machine CPU time is the "
          "steadier comparison). dlogLik: ours minus glmer's (glmer's scale; positive = ours "
          "higher). glmer's Laplace criterion uses IRLS weights one iteration old, ours the "
          "exact Laplace approximation, hence small positive differences for Laplace fits.")


if __name__ == "__main__":
    main()
