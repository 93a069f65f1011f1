"""Benchmark: omega total's one-factor ML fit and its bootstrap, against psych in R.

Times, on the agreeableness items of ``psych::bfi`` (tests/fixtures/psych/bfi_items.csv, A1
reversed, 2800 rows with missing answers) and on a 230-row, 8-item demo-sized scale:

* the point fit (``reliability(..., omega_ci="none")``'s omega: ML from k + 2 starts), and
  ``psych::omega(x, nfactors = 1, fm = "ml")`` on the same rows, timed inside R;
* a 200-replicate percentile bootstrap (``reliability``'s default in the pipeline), and 200
  calls of ``psych::omega`` on resampled rows in R (what a psych user would write).

Times are CPU seconds (user + system) on both sides, so that other load on a shared machine
does not count (``make bench`` holds BLAS to one thread). Run: ``python -m benchmarks.omega``.
Environment: ``TRACKII_BENCH_SKIP_R=1``, ``TRACKII_BENCH_OMEGA_REPEATS`` (default 5; the median
is printed).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import env_int, run_r
from trackii_eval.scoring.moments import pairwise_moments
from trackii_eval.scoring.omega import bootstrap_omega, omega_point

ROOT = Path(__file__).resolve().parent.parent
BFI = ROOT / "tests" / "fixtures" / "psych" / "bfi_items.csv"
N_BOOT = 200

_R_SCRIPT = r"""
suppressPackageStartupMessages({library(psych); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
x <- read.csv(args[1])
n_boot <- as.integer(args[3])
fit <- function(d) suppressWarnings(suppressMessages(
  omega(d, nfactors = 1, fm = "ml", plot = FALSE)))$omega.tot
om <- fit(x)
reps <- 5
cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
t_point <- cpu(system.time(for (i in seq_len(reps)) fit(x))) / reps
set.seed(1)
t_boot <- cpu(system.time(b <- vapply(seq_len(n_boot), function(i)
  fit(x[sample.int(nrow(x), replace = TRUE), ]), numeric(1))))
writeLines(toJSON(list(omega = om, point_s = t_point, boot_s = t_boot,
                       q = unname(quantile(b, c(0.025, 0.975)))),
                  digits = NA, auto_unbox = TRUE), args[2])
"""


def _demo_like(seed: int = 5) -> pd.DataFrame:
    """230 respondents x 8 items on a 0-100 scale, 5% missing, like the demo's perceptions."""
    rng = np.random.default_rng(seed)
    lam = np.array([0.85, 0.8, 0.78, 0.75, 0.7, 0.66, 0.6, 0.55])
    x = rng.normal(size=(230, 1)) * lam + rng.normal(size=(230, 8)) * np.sqrt(1 - lam**2)
    x = np.clip(np.round(x * 20 + 50), 0, 100)
    x[rng.random(x.shape) < 0.05] = np.nan
    return pd.DataFrame(x, columns=[f"q{i + 1}" for i in range(8)])


def _bfi_agreeableness() -> pd.DataFrame:
    x = pd.read_csv(BFI)[[f"A{i}" for i in range(1, 6)]].astype(float)
    x["A1"] = 7 - x["A1"]
    return x


def _ours(x: pd.DataFrame, repeats: int) -> dict[str, float]:
    arr = x.to_numpy(dtype=float)
    r = pairwise_moments(arr).cor
    point = omega_point(r, "ml", True)
    t_point, t_boot = [], []
    for i in range(repeats):
        t0 = time.process_time()
        point = omega_point(pairwise_moments(arr).cor, "ml", True)
        t1 = time.process_time()
        reps = bootstrap_omega(arr, point, "ml", N_BOOT, np.random.default_rng(i), True)
        t2 = time.process_time()
        t_point.append(t1 - t0)
        t_boot.append(t2 - t1)
    q = np.quantile(reps[np.isfinite(reps)], [0.025, 0.975])
    return {"omega": point.value, "point_s": statistics.median(t_point),
            "boot_s": statistics.median(t_boot), "q": list(q)}


def main() -> None:
    """Time ours and psych's on two scales and print a table."""
    repeats = env_int("TRACKII_BENCH_OMEGA_REPEATS", 5)
    skip_r = os.environ.get("TRACKII_BENCH_SKIP_R", "") == "1" or shutil.which("Rscript") is None
    print(f"omega benchmark: one-factor ML point fit and {N_BOOT}-replicate bootstrap, CPU ms")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    header = (f"{'scale':<26} {'engine':<16} {'omega':>8} {'point ms':>9} {'boot ms':>9} "
              f"{'boot CI':>17} {'psych/ours':>11}")
    print(header)
    print("-" * len(header))
    for name, x in [("bfi agreeableness 2800x5", _bfi_agreeableness()),
                    ("demo-like 230x8", _demo_like())]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = _ours(x, repeats)
        ci = f"[{ours['q'][0]:.4f}, {ours['q'][1]:.4f}]"
        print(f"{name:<26} {'trackii_eval':<16} {ours['omega']:>8.5f} "
              f"{ours['point_s'] * 1e3:>9.1f} {ours['boot_s'] * 1e3:>9.1f} {ci:>17} {'':>11}")
        if skip_r:
            print(f"{'':<26} {'psych: skipped':<16}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            x.to_csv(tmp_path / "x.csv", index=False)
            (tmp_path / "omega.R").write_text(_R_SCRIPT)
            res = run_r(tmp_path / "omega.R",
                        [str(tmp_path / "x.csv"), str(tmp_path / "out.json"), str(N_BOOT)],
                        tmp_path / "out.json")
        if res is None:
            continue
        ci = f"[{res['q'][0]:.4f}, {res['q'][1]:.4f}]"
        ratio = f"{res['point_s'] / ours['point_s']:.0f}x/{res['boot_s'] / ours['boot_s']:.0f}x"
        print(f"{'':<26} {'psych::omega':<16} {res['omega']:>8.5f} {res['point_s'] * 1e3:>9.1f} "
              f"{res['boot_s'] * 1e3:>9.1f} {ci:>17} {ratio:>11}")
    print("psych/ours: point fit / bootstrap time ratio; bootstrap CIs differ by Monte Carlo "
          "error only (different resamples).")


if __name__ == "__main__":
    main()
