"""Power, power curves and minimal detectable effects by simulation, in parallel.

Replicates are cut into tasks of about 100 ms of work (a deterministic function of the design,
never of the machine or the number of workers) and run by joblib: local processes by default,
or a Dask cluster (joblib's ``dask`` backend) when a scheduler address or a
``distributed.Client`` is given. Replicate r of sample size n always draws from
``SeedSequence(seed, spawn_key=(n, r))``, so the same seed gives identical results whatever
the number of workers or the backend.

References
----------
Green, P. and MacLeod, C. J. (2016). SIMR: an R package for power analysis of generalized
linear mixed models by simulation. Methods in Ecology and Evolution 7(4), 493-498 (the
simulate-refit-test loop, which we run on the growth engine's refit path).

Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference.
JASA 22(158), 209-212 (the Monte-Carlo interval of a power estimate).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from trackii_eval.errors import ModelError
from trackii_eval.power.design import PowerDesign, SimulationBatch, run_batch
from trackii_eval.power.theory import power_from_se

__all__ = [
    "PowerCurve",
    "PowerPoint",
    "mde_from_point",
    "minimal_detectable_effect",
    "power_curve",
    "simulate_power",
    "wilson_interval",
]

# Seconds of work a task should take: large enough that scheduling overhead (~1 ms locally,
# ~several ms on Dask) stays small, small enough for a live progress bar and load balancing.
TASK_SECONDS = 0.1


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n.

    Returns
    -------
    (lower, upper)
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _reps_per_task(design: PowerDesign) -> int:
    # Estimated cost of one replicate: ~1 ms of refit (pattern-compressed, independent of the
    # number of participants) + drawing the outcome + per-row work; MNAR designs rebuild the
    # statistics each time. Deterministic on purpose: the task layout never depends on timing.
    rows = 2 * design.n_per_arm * len(design.times)
    if design.mnar or design.dialogues_per_arm > 0:
        # One replicate at a time on the warm refit path (MNAR: statistics rebuilt per draw).
        cost = 3e-3 + 2e-7 * rows + (1.5e-6 * rows if design.mnar else 0.0)
    else:
        # Vectorised refits (models.growth.batch): ~0.3 ms each plus drawing the outcome.
        cost = 3e-4 + 1e-7 * rows
    return max(1, int(TASK_SECONDS / cost))


@dataclass(frozen=True)
class PowerPoint:
    """Simulated power of one design (one sample size, one effect).

    Attributes
    ----------
    design : PowerDesign
    n_sims : int
        Replicates.
    power : float
        Share of replicates whose two-sided Wald test rejects at ``design.alpha``.
    ci : tuple of float
        95% Wilson interval of ``power`` (Monte-Carlo error).
    closed_form : float
        Power from the GLS information (:mod:`.theory`), NaN where no closed form applies.
    mean_estimate, sd_estimate, mean_se : float
        Of the effect estimate across replicates (under the design's effect).
    closed_form_se : float
    n_unconverged, n_fallback : int
        Refits whose convergence check failed; refits that the warm-started quick path
        handed to the full optimiser (a boundary or slow case: their result is as exact, only
        slower; not an error).
    estimates, ses : ndarray
        Per replicate (effect 0 added back for MCAR designs, see ``SimulationBatch``).
    """

    design: PowerDesign
    n_sims: int
    power: float
    ci: tuple[float, float]
    closed_form: float
    mean_estimate: float
    sd_estimate: float
    mean_se: float
    closed_form_se: float
    n_unconverged: int
    n_fallback: int
    estimates: np.ndarray = field(repr=False)
    ses: np.ndarray = field(repr=False)
    shift_invariant: bool = field(default=True, repr=False)

    def power_at(self, effect: float) -> float:
        """Simulated power at another effect size (MCAR designs: exact, no refit)."""
        if not self.shift_invariant:
            raise ModelError(
                "power_at needs an MCAR design: with outcome-dependent dropout the design "
                "changes with the effect; run simulate_power with that effect"
            )
        z = norm.ppf(1 - self.design.alpha / 2)
        est = self.estimates - self.design.effect + effect
        return float(np.mean(np.abs(est) / self.ses > z))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no per-replicate arrays)."""
        return {
            "n_per_arm": self.design.n_per_arm,
            "effect": self.design.effect,
            "n_sims": self.n_sims,
            "power": self.power,
            "ci_low": self.ci[0],
            "ci_high": self.ci[1],
            "closed_form": None if math.isnan(self.closed_form) else self.closed_form,
            "mean_estimate": self.mean_estimate,
            "sd_estimate": self.sd_estimate,
            "mean_se": self.mean_se,
            "closed_form_se": None if math.isnan(self.closed_form_se) else self.closed_form_se,
            "n_unconverged": self.n_unconverged,
            "n_fallback": self.n_fallback,
        }


@dataclass(frozen=True)
class PowerCurve:
    """Power over sample sizes (one :class:`PowerPoint` per ``n_per_arm``)."""

    points: tuple[PowerPoint, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per sample size."""
        return pd.DataFrame([p.to_dict() for p in self.points])

    def plot(self, path: str | None = None, target: float = 0.8) -> Any:
        """Figure of the curve (see :func:`trackii_eval.power.plot.plot_power_curve`)."""
        from trackii_eval.power.plot import plot_power_curve

        return plot_power_curve(self, path=path, target=target)


# ---------------------------------------------------------------------- execution
def _client(scheduler: Any) -> Any:
    if scheduler is None:
        return None
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - dependency declared in pyproject
        raise ModelError("scheduler given but dask.distributed is not installed") from exc
    return scheduler if isinstance(scheduler, Client) else Client(scheduler)


def _progress(total: int, desc: str, show: bool | None) -> Any:
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="refit", file=sys.stderr, leave=False)


def _execute(
    jobs: list[tuple[PowerDesign, int, int, int]],
    n_jobs: int,
    scheduler: Any,
    progress: bool | None,
    desc: str,
) -> list[SimulationBatch]:
    total = sum(stop - start for _, _, start, stop in jobs)
    bar = _progress(total, desc, progress)
    out: list[SimulationBatch] = []
    try:
        if scheduler is None and (n_jobs == 1 or len(jobs) == 1):
            # One task (or one worker asked for): starting worker processes would cost more
            # than the work.
            for job in jobs:
                b = run_batch(*job)
                out.append(b)
                if bar is not None:
                    bar.update(b.estimate.size)
            return out
        from joblib import Parallel, delayed, parallel_config

        client = _client(scheduler)
        own_client = client is not None and client is not scheduler
        backend = "dask" if client is not None else "loky"
        kwargs: dict[str, Any] = {} if client is not None else {"n_jobs": n_jobs}
        try:
            with parallel_config(backend=backend, **kwargs):
                gen = Parallel(return_as="generator")(delayed(run_batch)(*job) for job in jobs)
                for b in gen:
                    out.append(b)
                    if bar is not None:
                        bar.update(b.estimate.size)
        finally:
            if own_client:  # a client we opened from an address: close it, not the cluster
                client.close()
        return out
    finally:
        if bar is not None:
            bar.close()


def _jobs(design: PowerDesign, n_sims: int, seed: int) -> list[tuple[PowerDesign, int, int, int]]:
    per = _reps_per_task(design)
    return [(design, seed, s, min(n_sims, s + per)) for s in range(0, n_sims, per)]


def _point(design: PowerDesign, batches: Sequence[SimulationBatch], n_sims: int) -> PowerPoint:
    batches = sorted(batches, key=lambda b: b.start)
    est = np.concatenate([b.estimate for b in batches])
    se = np.concatenate([b.se for b in batches])
    conv = np.concatenate([b.converged for b in batches])
    fb = np.concatenate([b.fallback for b in batches])
    if not design.mnar:
        est = est + design.effect
    z = norm.ppf(1 - design.alpha / 2)
    k = int(np.sum(np.abs(est) / se > z))
    cf_se = design.closed_form_se()
    cf = power_from_se(design.effect, cf_se, design.alpha) if not design.mnar else math.nan
    return PowerPoint(
        design=design,
        n_sims=n_sims,
        power=k / n_sims,
        ci=wilson_interval(k, n_sims),
        closed_form=float(cf),
        mean_estimate=float(est.mean()),
        sd_estimate=float(est.std(ddof=1)) if n_sims > 1 else math.nan,
        mean_se=float(se.mean()),
        closed_form_se=cf_se if not design.mnar else math.nan,
        n_unconverged=int(np.sum(~conv)),
        n_fallback=int(np.sum(fb)),
        estimates=est,
        ses=se,
        shift_invariant=not design.mnar,
    )


def simulate_power(
    design: PowerDesign,
    n_sims: int = 1000,
    *,
    seed: int = 0,
    n_jobs: int = -1,
    scheduler: Any = None,
    progress: bool | None = None,
) -> PowerPoint:
    """Power of one design by simulation: draw, refit, Wald-test, count.

    Parameters
    ----------
    design : PowerDesign
    n_sims : int
        Replicates (Monte-Carlo error of a power near 0.8: ±0.025 at 1,000).
    seed : int
        Root seed; identical results for identical seeds on any number of workers.
    n_jobs : int
        Local worker processes (joblib; -1 = all cores, 1 = in this process).
    scheduler : str or distributed.Client, optional
        Dask scheduler address (``"tcp://host:8786"``) or client: run the tasks there.
    progress : bool, optional
        Progress bar on stderr; default on when stderr is a terminal.

    Returns
    -------
    PowerPoint

    Raises
    ------
    ModelError
        If the design is invalid (one line naming every problem).
    """
    if n_sims < 1:
        raise ModelError(f"n_sims must be at least 1, got {n_sims}")
    batches = _execute(_jobs(design, n_sims, seed), n_jobs, scheduler, progress,
                       f"power n={design.n_per_arm}")
    return _point(design, batches, n_sims)


def power_curve(
    design: PowerDesign,
    sizes: Iterable[int],
    n_sims: int = 1000,
    *,
    seed: int = 0,
    n_jobs: int = -1,
    scheduler: Any = None,
    progress: bool | None = None,
) -> PowerCurve:
    """Power over sample sizes (participants per arm), each with its Monte-Carlo interval.

    All tasks of all sizes go to the workers at once. Parameters as :func:`simulate_power`.

    Returns
    -------
    PowerCurve
    """
    designs = [design.with_n(int(n)) for n in sorted(set(int(s) for s in sizes))]
    if not designs:
        raise ModelError("power_curve: give at least one sample size")
    jobs = [j for d in designs for j in _jobs(d, n_sims, seed)]
    batches = _execute(jobs, n_jobs, scheduler, progress, "power curve")
    by_n: dict[int, list[SimulationBatch]] = {}
    pos = 0
    for d in designs:
        k = len(_jobs(d, n_sims, seed))
        by_n[d.n_per_arm] = batches[pos : pos + k]
        pos += k
    return PowerCurve(tuple(_point(d, by_n[d.n_per_arm], n_sims) for d in designs))


def minimal_detectable_effect(
    design: PowerDesign,
    target: float = 0.8,
    n_sims: int = 1000,
    *,
    seed: int = 0,
    n_jobs: int = -1,
    scheduler: Any = None,
    progress: bool | None = None,
    tol: float = 1e-3,
) -> dict[str, float]:
    """Smallest effect the design detects with probability ``target`` (root of power - target).

    MCAR designs: one set of refits gives the exact simulated power at every effect (the
    estimate shifts by the effect, the standard error does not), so the root is found by
    bisection on that function; the Monte-Carlo interval comes from where the Wilson bounds
    of the power cross the target. Outcome-dependent (MNAR) dropout changes the design with
    the effect: each bisection step reruns the simulation with common random numbers.

    Returns
    -------
    dict
        ``mde``, ``ci_low``, ``ci_high`` (effect units), ``closed_form`` (from the GLS
        standard error: (z_{1-α/2} + z_target) · se), ``n_sims``.
    """
    if not 0 < target < 1:
        raise ModelError(f"target power must be in (0, 1), got {target}")
    if not design.mnar:
        pt = simulate_power(design, n_sims, seed=seed, n_jobs=n_jobs, scheduler=scheduler,
                            progress=progress)
        return mde_from_point(pt, target, tol)
    cache: dict[float, float] = {}

    def pw(e: float) -> float:
        if e not in cache:
            cache[e] = simulate_power(
                replace(design, effect=e), n_sims, seed=seed, n_jobs=n_jobs,
                scheduler=scheduler, progress=progress,
            ).power
        return cache[e]

    # Each step is a full simulation (common random numbers across steps).
    mde = _root(pw, target, 2.0 * max(abs(design.effect), 0.1), max(tol, 0.01))
    return {"mde": mde, "ci_low": math.nan, "ci_high": math.nan, "closed_form": math.nan,
            "n_sims": n_sims, "target": target}


def _root(fn: Any, target: float, hi: float, tol: float) -> float:
    """Smallest e in [0, ∞) with fn(e) >= target, by bisection (inf if none below 2^6 hi)."""
    lo = 0.0
    k = 0
    while fn(hi) < target:
        lo, hi = hi, 2 * hi
        k += 1
        if k > 6:
            return math.inf
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if fn(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def mde_from_point(pt: PowerPoint, target: float = 0.8, tol: float = 1e-4) -> dict[str, float]:
    """Minimal detectable effect from the refits of an MCAR design's :class:`PowerPoint`.

    The simulated power at effect e is ``pt.power_at(e)`` exactly (no refit); the interval is
    where the Wilson bounds of the power cross ``target``; ``closed_form`` is
    (z_{1-α/2} + z_target) times the GLS standard error.

    Returns
    -------
    dict with ``mde``, ``ci_low``, ``ci_high``, ``closed_form``, ``n_sims``, ``target``
    """
    d = pt.design
    n = pt.n_sims
    hi = 4.0 * float(np.median(pt.ses))

    def count(e: float) -> int:
        return round(pt.power_at(e) * n)

    z = norm.ppf(1 - d.alpha / 2)
    cf_se = d.closed_form_se()
    return {
        "mde": _root(pt.power_at, target, hi, tol),
        "ci_low": _root(lambda e: wilson_interval(count(e), n)[1], target, hi, tol),
        "ci_high": _root(lambda e: wilson_interval(count(e), n)[0], target, hi, tol),
        "closed_form": float((z + norm.ppf(target)) * cf_se),
        "n_sims": n,
        "target": target,
    }
