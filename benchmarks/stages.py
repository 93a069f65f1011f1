"""Benchmark: the time of each stage of ``trackii-eval run`` on the demo study.

Times, in one Python process after imports, ``ingest``, ``score`` (with the per-wave
reliability inside it shown on its own line), ``model`` and ``report`` on ``surveys/demo`` with
``analysis/demo.yaml``, each into a fresh output folder, ``TRACKII_BENCH_STAGE_REPEATS`` times
(default 3; the median is printed), as wall-clock and CPU seconds (CPU time is what to compare
on a shared machine: waiting for a core does not count). Then the whole command,
``python -m trackii_eval run``, in a new process (warm: the second of two runs, so files are in
the page cache and bytecode is compiled), which adds interpreter start-up and imports.

The reference is the same benchmark on another commit's code, in the same run (same machine,
same load): ``TRACKII_BENCH_BASELINE=<git ref>`` (default ``8d2faac``, the commit before the
speed work; ``none`` to skip) is exported with ``git archive`` into a temporary folder and
timed in a subprocess with that folder on ``PYTHONPATH``; the table shows both and their ratio.

Run: ``python -m benchmarks.stages`` (``make bench``). Only the public ``Study`` API is used, so
the benchmark runs on older commits too.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "surveys" / "demo"
PLAN = ROOT / "analysis" / "demo.yaml"
STAGES = ("ingest", "score", "  reliability", "model", "report")


class _Clock:
    """Wall and CPU seconds (CPU: this process; robust to other load on a shared machine)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def _time_stages(work: Path, repeats: int) -> dict[str, list[list[float]]]:
    """[wall, cpu] seconds per stage, ``repeats`` times, for the ``trackii_eval`` on sys.path."""
    import warnings

    from threadpoolctl import threadpool_limits

    from trackii_eval.analysis import load_plan
    from trackii_eval.ingest.pseudonym import load_key, write_key
    from trackii_eval.scoring import reliability_by_wave
    from trackii_eval.study import Study

    key_file = work / "bench.key"
    if not key_file.exists():
        write_key(key_file)
    key = load_key(key_file)
    times: dict[str, list[list[float]]] = {s: [] for s in STAGES}
    for i in range(repeats):
        out = work / f"run{i}"
        shutil.rmtree(out, ignore_errors=True)
        laps = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = Study.load(DEMO, out=out)
            clock = _Clock()
            study.ingest(key)
            laps["ingest"] = clock.lap()
            study.score()
            laps["score"] = clock.lap()
            study.fit_models(load_plan(PLAN))
            laps["model"] = clock.lap()
            study.report()
            laps["report"] = clock.lap()
            # The reliability inside score, on its own (the same call score makes).
            responses = study.store.active_responses()
            with threadpool_limits(limits=1, user_api="blas"):
                clock.lap()
                reliability_by_wave(responses, study.instrument)
                laps["  reliability"] = clock.lap()
            study.close()
        for name in STAGES:
            times[name].append(list(laps[name]))
    return times


def _env(pythonpath: Path) -> dict[str, str]:
    """The environment of a timed process: one BLAS thread, bytecode cached (warm runs)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OPENBLAS_NUM_THREADS": "1"}
    # With PYTHONDONTWRITEBYTECODE every run would recompile the package: not a warm run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _time_cli(work: Path, pythonpath: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -m trackii_eval run`` on the demo (second of two runs)."""
    key_file = work / "bench.key"
    env = _env(pythonpath)
    cmd = [sys.executable, "-m", "trackii_eval", "run", str(DEMO), "--key-file", str(key_file),
           "--plan", str(PLAN)]
    result = (float("nan"), float("nan"))
    for i in range(2):
        out = work / f"cli{i}"
        shutil.rmtree(out, ignore_errors=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        # cwd outside every source tree: `python -m` puts the cwd first on sys.path.
        proc = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True,
                              check=False, cwd=work)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            print(f"  cli run failed ({proc.returncode}): {proc.stderr.decode()[-300:]}",
                  file=sys.stderr)
            return (float("nan"), float("nan"))
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        result = (wall, cpu)
    return result


def _measure(code_root: Path, work: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, cpu) per stage and of the CLI for the code under ``code_root``."""
    env = _env(code_root)
    # This file is loaded by path so that the trackii_eval imported is the one under code_root.
    script = (
        "import importlib.util, json; from pathlib import Path;"
        f"spec = importlib.util.spec_from_file_location('bench_stages', {str(__file__)!r});"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod);"
        "import trackii_eval; print(Path(trackii_eval.__file__).parent.parent);"
        f"print(json.dumps(mod._time_stages(Path({str(work)!r}), {repeats})))"
    )
    # cwd outside every source tree: `python -c` puts the cwd first on sys.path.
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=False, cwd=work)
    if proc.returncode != 0:
        print(f"  stage timing failed: {proc.stderr.strip()[-400:]}", file=sys.stderr)
        return {}
    lines = proc.stdout.strip().splitlines()
    print(f"  timed the code in {lines[0]}")
    times = json.loads(lines[-1])
    med = {k: (statistics.median(v[0] for v in vs), statistics.median(v[1] for v in vs))
           for k, vs in times.items()}
    four = [med[s] for s in ("ingest", "score", "model", "report")]
    med["total (4 stages)"] = (sum(w for w, _ in four), sum(c for _, c in four))
    med["cli run (warm)"] = _time_cli(work, code_root)
    return med


def _export(ref: str, dest: Path) -> Path | None:
    """The tree of ``ref`` under ``dest`` (``git archive``), or None if git cannot."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True,
                             check=False)
    if archive.returncode != 0:
        print(f"  baseline {ref!r} not exported: {archive.stderr.decode().strip()}",
              file=sys.stderr)
        return None
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def main() -> None:
    """Time the stages on this tree and on the baseline commit; print both and the ratio."""
    from benchmarks._common import env_int

    repeats = env_int("TRACKII_BENCH_STAGE_REPEATS", 3)
    baseline = os.environ.get("TRACKII_BENCH_BASELINE", "8d2faac").strip()
    print(f"stage benchmark: demo study, {repeats} repeat(s), median seconds")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "now").mkdir()
        now = _measure(ROOT, tmp_path / "now", repeats)
        before: dict[str, tuple[float, float]] = {}
        if baseline and baseline != "none":
            code = _export(baseline, tmp_path / "baseline_code")
            if code is not None:
                (tmp_path / "before").mkdir()
                before = _measure(code, tmp_path / "before", repeats)
    label = f"at {baseline}" if before else "(no baseline)"
    print(f"{'':<20} {'this tree':>17} {label:>17} {'speed-up':>15}")
    header = f"{'stage':<20} {'wall':>8} {'cpu':>8} {'wall':>8} {'cpu':>8} {'wall':>7} {'cpu':>7}"
    print(header)
    print("-" * len(header))
    nan = (float("nan"), float("nan"))
    for name, (wall, cpu) in now.items():
        b_wall, b_cpu = before.get(name, nan)
        print(f"{name:<20} {wall:>8.2f} {cpu:>8.2f} {b_wall:>8.2f} {b_cpu:>8.2f} "
              f"{b_wall / wall:>6.1f}x {b_cpu / cpu:>6.1f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
