"""Benchmark: linkage of self-generated codes on simulated panels (quality and speed).

Quality: for each typo rate (5 % and 10 % of records with one error) and for studies without
and with late entrants (3 % of the baseline size joining at each later wave), panels of 300
people over 4 waves are simulated with ``simulate_sgic_panel`` (5 % of people given a code
one element from a neighbour's, 1 % an identical code; 15 % attrition per wave) and linked
with the study defaults. Against the simulator's truth we count wrong links (records joined
to another person), people split into two pseudonyms, the share of records quarantined for
review, the share stored but listed, and the match rate (baseline people correctly linked at
each follow-up wave, relative to those truly present). ``silent_*`` counts the errors with
no line in ``linkage_review.csv``.

Speed: CPU time to link 100,000 records (25,000 people x 4 waves, 8 % typos).

Run: ``python -m benchmarks.linkage``. Environment: ``TRACKII_BENCH_LINKAGE_SEEDS``
(default 50), ``TRACKII_BENCH_LINKAGE_N`` (default 300).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from benchmarks._common import env_int
from trackii_eval.ingest.linkage import EXAMPLE_SGIC, link_records
from trackii_eval.ingest.linkage.evaluate import measure_linkage


def quality(seeds: int, n: int) -> pd.DataFrame:
    """One row per (typo rate, late entrants): sums of errors and mean shares over seeds."""
    rows = []
    for typo_rate in (0.05, 0.10):
        for late in (0.0, 0.03):
            per_seed = measure_linkage(range(seeds), typo_rate=typo_rate, n=n, late_joiners=late)
            rows.append({
                "typo_rate": typo_rate, "late_entrants": late > 0, "seeds": seeds,
                "records": int(per_seed["records"].sum()),
                **{c: int(per_seed[c].sum()) for c in
                   ("wrong_links", "silent_wrong_links", "split_persons", "silent_splits")},
                **{c: round(float(per_seed[c].mean()), 4) for c in
                   ("review_share", "listed_share", "match_rate")},
            })
    return pd.DataFrame(rows)


def big_panel(n_persons: int, waves: int, seed: int = 0) -> pd.DataFrame:
    """A large panel built with numpy (the realistic simulator is slower to run)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("ABCDEFGHIJKLMNOPRSTUVWYZ"))
    base = np.stack([
        np.char.add(rng.choice(letters, n_persons), rng.choice(letters, n_persons)),
        np.char.zfill(rng.integers(1, 13, n_persons).astype(str), 2),
        np.char.add(rng.choice(letters[:12], n_persons), rng.choice(letters[:8], n_persons)),
        np.char.zfill(rng.integers(40, 100, n_persons).astype(str), 2),
    ], axis=1)
    side = rng.choice(["North", "South"], n_persons)
    dialogue = np.where(rng.random(n_persons) < 0.3, None,
                        np.char.add("D", rng.integers(1, 400, n_persons).astype(str)))
    frames = []
    for w in range(1, waves + 1):
        codes = base.copy()
        typo = rng.random(n_persons) < 0.08
        el = rng.integers(0, 4, n_persons)
        rows = np.flatnonzero(typo)
        codes[rows, el[rows]] = np.array([c[::-1] for c in codes[rows, el[rows]]])
        frames.append(pd.DataFrame({
            "record_id": [f"wave{w}.csv:row {i + 2}" for i in range(n_persons)],
            "wave": w, "code": ["".join(c) for c in codes], "side": side,
            "dialogue": dialogue,
        }))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    seeds = env_int("TRACKII_BENCH_LINKAGE_SEEDS", 50)
    n = env_int("TRACKII_BENCH_LINKAGE_N", 300)
    table = quality(seeds, n)
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    recs = big_panel(25_000, 4)
    start = time.process_time()
    res = link_records(recs, EXAMPLE_SGIC)
    print(f"linking {len(recs):,} records: {time.process_time() - start:.1f} s CPU "
          f"({res.stats['n_ambiguous']:,} for review)")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
