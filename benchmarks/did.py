"""Benchmark: difference-in-differences speed, and the size of few-cluster tests.

1. Time of each estimator (Callaway-Sant'Anna with its four aggregations, static TWFE with the
   Goodman-Bacon decomposition, Sun-Abraham, imputation) on a staggered panel of 2,000
   participants x 6 waves.
2. Rejection rate at the 5% level, under no effect, of the static TWFE coefficient's test
   clustered by dialogue: analytic CR ("sss", t(G-1)) against the restricted wild cluster
   bootstrap-t (WCR, Webb weights) and CR2 with Satterthwaite df, with G dialogues of which
   three start (waves 1-3) and the others never do; dialogue-by-wave shocks make the
   clustering matter.

Run: ``python -m benchmarks.did``. Environment: ``TRACKII_BENCH_DID_REPS`` (default 200).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from benchmarks._common import env_int
from trackii_eval.models.did import callaway_santanna, imputation_did, sun_abraham, twfe_did
from trackii_eval.models.did._data import staggered_panel
from trackii_eval.models.did.regression import _demean2
from trackii_eval.models.did.wild import wcr_twfe


def panel(seed: int, n_clusters: int, per_cluster: int, waves: int = 5,
          shock_sd: float = 0.5) -> pd.DataFrame:
    """Dialogues 0-2 start at waves 1-3, the others never; no treatment effect."""
    rng = np.random.default_rng(seed)
    n = n_clusters * per_cluster
    cl = np.repeat(np.arange(n_clusters), per_cluster)
    start = np.where(cl < 3, cl + 1, 0)
    shocks = rng.normal(0, shock_sd, (n_clusters, waves))
    y = (rng.normal(size=(n, 1)) + 0.2 * np.arange(waves)[None, :] + shocks[cl]
         + rng.normal(size=(n, waves)))
    return pd.DataFrame({"participant": np.repeat(np.arange(n), waves),
                         "wave": np.tile(np.arange(waves), n),
                         "cohort": np.repeat(start, waves), "dialogue": np.repeat(cl, waves),
                         "y": y.ravel()})


def main() -> None:
    big = panel(1, n_clusters=20, per_cluster=100, waves=6)
    for name, fn in (("callaway_santanna", callaway_santanna), ("twfe_did", twfe_did),
                     ("sun_abraham", sun_abraham), ("imputation_did", imputation_did)):
        t0 = time.perf_counter()
        fn(big, "y")
        print(f"{name:18s} 2,000 participants x 6 waves: {time.perf_counter() - t0:6.2f} s")
    reps = env_int("TRACKII_BENCH_DID_REPS", 200)
    for g in (4, 6, 10):
        rej_cr = rej_wcr = rej_cr2 = 0
        for s in range(reps):
            d = panel(s, n_clusters=g, per_cluster=20)
            rej_cr += twfe_did(d, "y", cluster="dialogue").tidy()["p_value"].iloc[0] < 0.05
            rej_cr2 += twfe_did(d, "y", cluster="dialogue",
                                inference="cr2").tidy()["p_value"].iloc[0] < 0.05
            p = staggered_panel(d, "y", entity="participant", time="wave", cohort="cohort",
                                cluster="dialogue", what="benchmark")
            D = (p.periods[None, :] >= p.cohort[:, None]).astype(float)
            res = wcr_twfe(_demean2(D), _demean2(p.y), p.cluster, p.n_clusters, n_boot=399,
                           seed=s, ci=False)
            rej_wcr += res["p_value"] < 0.05
        print(f"G = {g:2d} dialogues (3 treated), {reps} replications, nominal 5%: "
              f"analytic CR t(G-1) rejects {rej_cr / reps:.1%}, CR2 Satterthwaite "
              f"{rej_cr2 / reps:.1%}, WCR bootstrap-t {rej_wcr / reps:.1%}")


if __name__ == "__main__":
    main()
