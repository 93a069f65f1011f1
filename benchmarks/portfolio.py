"""Benchmark: a pooled portfolio ingested, scored and fitted on one machine.

A simulated portfolio (:func:`trackii_eval.portfolio.generate.write_portfolio`: participants x
8 waves x 40 items, a few problems sprinkled in) is written to a temporary folder, then each
stage runs in its own Python process so that its peak memory is its own (the process's
maximum resident set size, ``getrusage``; interpreter and imports included):

* ``generate``: the wave CSV files (not part of the end-to-end figure);
* ``ingest``: :func:`trackii_eval.ingest.bulk.ingest_bulk` into a DuckDB store file
  (read, validate, pseudonymize, write long responses);
* ``score``: :func:`trackii_eval.portfolio.score.score_sql` (POMP construct scores in SQL);
* ``fit``: the growth model ``score ~ time * treated + (time | participant)`` of the
  perceptions construct (:func:`trackii_eval.models.growth.growth`).

Run: ``python -m benchmarks.portfolio --participants 100000`` (32 million responses; the goal
is at most 2 minutes for ingest + score + fit and at most 4 GB peak memory per stage).
``make bench`` runs a smaller portfolio, ``TRACKII_BENCH_PORTFOLIO_N`` participants (default
10,000: 3.2 million responses). DuckDB is held to ``--memory-limit`` (default 2GB) and spills
beyond it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import env_int

STAGES = ("generate", "ingest", "score", "fit")
GOAL_SECONDS = 120.0
GOAL_MB = 4096.0


def run_stage(stage: str, folder: Path, participants: int, memory_limit: str) -> dict:
    """Run one stage in this process; its wall time and the process's peak RSS (MB)."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = before.ru_utime + before.ru_stime
    extra: dict = {}
    store_path = folder / "out" / "portfolio.duckdb"
    if stage == "generate":
        from trackii_eval.portfolio.generate import write_portfolio

        write_portfolio(folder / "study", participants, 8, 40, bad_share=1e-4)
        extra["csv_mb"] = round(sum(f.stat().st_size for f in
                                    (folder / "study" / "waves").iterdir()) / 2**20, 1)
    else:
        from trackii_eval.ingest.pseudonym import PseudonymKey
        from trackii_eval.pipeline.context import load_context
        from trackii_eval.store import Store

        ctx = load_context(folder / "study")
        store = Store(store_path, ctx.config.id)
        store.execute(f"SET memory_limit = '{memory_limit}'")
        if stage == "ingest":
            from trackii_eval.ingest.bulk import ingest_bulk

            key = PseudonymKey(bytes(range(32)))  # a fixed benchmark key, never a real one
            summary = ingest_bulk(store, ctx, key)
            extra["responses"] = int(store.query("SELECT count(*) AS n FROM responses")["n"][0])
            extra["problems"] = len(summary.problems)
        elif stage == "score":
            from trackii_eval.portfolio.score import score_sql

            extra["scores"] = score_sql(store, ctx.instrument, ctx.config)
        elif stage == "fit":
            from trackii_eval.models.growth import growth

            frame = store.query(
                "SELECT participant, time, score, "
                f"(arm <> '{ctx.config.comparison_arm}')::INTEGER AS treated FROM scores "
                "WHERE construct = 'perceptions' AND score IS NOT NULL")
            fit = growth("score ~ time * treated + (time | participant)", frame)
            extra["rows"] = len(frame)
            extra["time:treated"] = round(float(fit.fixed.loc["time:treated", "estimate"]), 3)
        store.close()
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024  # KB on Linux
    # CPU seconds (all threads): on a shared machine wall time also counts others' work
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    return {"stage": stage, "seconds": round(seconds, 2), "cpu_s": round(cpu, 1),
            "peak_mb": round(peak_mb), **extra}


def _in_subprocess(stage: str, folder: Path, participants: int, memory_limit: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.portfolio", "--stage", stage, "--folder",
           str(folder), "--participants", str(participants), "--memory-limit", memory_limit]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(participants: int | None = None, memory_limit: str = "2GB") -> list[dict]:
    """Run every stage on a fresh portfolio and print time and peak memory per stage."""
    n = participants if participants is not None else env_int("TRACKII_BENCH_PORTFOLIO_N",
                                                              10_000)
    print(f"portfolio: {n:,} participants x 8 waves x 40 items = {n * 320:,} responses; "
          f"DuckDB memory_limit {memory_limit}; {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory(prefix="trackii_portfolio_") as tmp:
        for stage in STAGES:
            row = _in_subprocess(stage, Path(tmp), n, memory_limit)
            rows.append(row)
            extra = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                              for k, v in row.items() if k not in ("stage", "seconds",
                                                                   "peak_mb", "cpu_s"))
            print(f"  {stage:9} {row['seconds']:7.1f} s wall {row['cpu_s']:7.1f} s CPU  "
                  f"peak {row['peak_mb']:6,} MB  {extra}", flush=True)
        size = sum(f.stat().st_size for f in (Path(tmp) / "out").iterdir()) / 2**20
    total = sum(r["seconds"] for r in rows if r["stage"] != "generate")
    cpu = sum(r["cpu_s"] for r in rows if r["stage"] != "generate")
    peak = max(r["peak_mb"] for r in rows)
    print(f"  end to end (ingest + score + fit): {total:.1f} s wall, {cpu:.1f} s CPU "
          f"(goal {GOAL_SECONDS:.0f} s at 32M); peak {peak:,} MB "
          f"(goal {GOAL_MB:,.0f} MB); store {size:,.0f} MB")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=None,
                        help="participants (x 8 waves x 40 items); 100000 = 32M responses")
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.folder, args.participants,
                                   args.memory_limit)))
    else:
        main(args.participants, args.memory_limit)
