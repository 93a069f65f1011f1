"""A planned study, its simulated outcomes and one batch of refits.

The outcome is on the scale of its baseline standard deviation (SD units): the baseline
variance 1 splits into a participant intercept (``icc``), a dialogue intercept
(``icc_dialogue``) and the residual. Participants have a random slope (``slope_sd`` SD units
per year, correlation ``corr`` with the intercept). The dialogue arm's mean slope exceeds the
comparison arm's by ``effect`` SD units per year (growth design) or its mean jumps by
``effect`` SD units from wave ``did_start`` on (DiD design).

Dropout is monotone: before each wave after baseline a fraction ``attrition`` of those still
in leaves for good. With ``dropout_or == 1`` (missing completely at random) the design is
fixed at the expected proportions (largest-remainder rounding per arm), so every replicate
reuses the design's pattern-compressed sufficient statistics and only the outcome is
simulated. With ``dropout_or != 1`` the odds of leaving before a wave are multiplied by
``dropout_or`` per SD of the outcome the participant *would* report at that wave (missing not
at random: attitudes drive dropout), and each replicate has its own design.

Analysis, as the tool fits these designs: REML growth model
``y ~ time * arm + (time | participant)`` (+ ``(1 | dialogue)``), Wald test of ``time:arm``;
DiD: ``y ~ wave dummies + arm + did + (1 | participant)`` (+ ``(1 | dialogue)``), Wald test of
``did`` (the random-effects form of the two-way fixed-effects estimator; identical to it with
complete data).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from trackii_eval.errors import ModelError
from trackii_eval.models.growth import GrowthModel
from trackii_eval.models.growth.batch import BatchRefitter
from trackii_eval.models.growth.stats import compute_stats
from trackii_eval.power.theory import (
    dropout_pattern_probs,
    pattern_information,
    random_slope_cov,
)

__all__ = ["PowerDesign", "SimulationBatch", "run_batch"]


@dataclass(frozen=True)
class PowerDesign:
    """A planned two-arm longitudinal study.

    Attributes
    ----------
    model : {"growth", "did"}
        Growth model (effect = slope difference, SD units per year) or difference in
        differences (effect = level shift after ``did_start``, SD units).
    n_per_arm : int
        Participants per arm (the sample size a power curve varies).
    dialogues_per_arm : int
        Dialogues (clusters) per arm; 0 for no dialogue level. Participants are spread evenly.
    times : tuple of float
        Measurement times in years (waves and their spacing), first = baseline.
    effect : float
        Effect size (see ``model``).
    icc, icc_dialogue : float
        Shares of the baseline variance between participants and between dialogues.
    slope_sd : float
        SD of participants' slopes, SD units per year.
    corr : float
        Correlation of participants' intercepts and slopes.
    attrition : float
        Per-wave dropout rate after baseline, in [0, 1).
    dropout_or : float
        Odds ratio of dropping out per SD of the (unobserved) current outcome; 1 = MCAR.
    did_start : int
        Index of the first post-start wave (DiD only).
    alpha : float
        Two-sided test level.
    """

    model: Literal["growth", "did"] = "growth"
    n_per_arm: int = 40
    dialogues_per_arm: int = 0
    times: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)
    effect: float = 0.3
    icc: float = 0.5
    icc_dialogue: float = 0.0
    slope_sd: float = 0.1
    corr: float = 0.0
    attrition: float = 0.0
    dropout_or: float = 1.0
    did_start: int = 1
    alpha: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", tuple(float(t) for t in self.times))
        problems = []
        if self.model not in ("growth", "did"):
            problems.append(f"model must be 'growth' or 'did', got {self.model!r}")
        if len(self.times) < 2 or np.any(np.diff(self.times) <= 0):
            problems.append("times must be at least two increasing measurement times (years)")
        if self.n_per_arm < 2:
            problems.append(f"n_per_arm must be at least 2, got {self.n_per_arm}")
        if self.dialogues_per_arm < 0 or (
            self.dialogues_per_arm > 0 and self.n_per_arm < 2 * self.dialogues_per_arm
        ):
            problems.append("dialogues_per_arm must be 0 or leave at least 2 participants each")
        if self.dialogues_per_arm == 1:
            problems.append(
                "dialogues_per_arm = 1 confounds dialogue and arm; use 0 (no dialogue level) "
                "or at least 2"
            )
        if not (0 <= self.icc and 0 <= self.icc_dialogue and self.icc + self.icc_dialogue < 1):
            problems.append("icc and icc_dialogue must be >= 0 with icc + icc_dialogue < 1")
        if self.icc_dialogue > 0 and self.dialogues_per_arm == 0:
            problems.append("icc_dialogue > 0 needs dialogues_per_arm >= 2")
        if self.slope_sd < 0 or not -1 < self.corr < 1:
            problems.append("slope_sd must be >= 0 and corr in (-1, 1)")
        if not 0 <= self.attrition < 1:
            problems.append(f"attrition must be in [0, 1), got {self.attrition}")
        if not self.dropout_or > 0:
            problems.append(f"dropout_or must be > 0, got {self.dropout_or}")
        if self.model == "did" and not 1 <= self.did_start < len(self.times):
            problems.append("did_start must index a wave after baseline")
        if not 0 < self.alpha < 1:
            problems.append(f"alpha must be in (0, 1), got {self.alpha}")
        if problems:
            raise ModelError("power design: " + "; ".join(problems))

    # ------------------------------------------------------------------ derived
    @property
    def resid_var(self) -> float:
        """Residual variance (SD units²)."""
        return 1.0 - self.icc - self.icc_dialogue

    @property
    def mnar(self) -> bool:
        """Whether dropout depends on the outcome."""
        return self.attrition > 0 and self.dropout_or != 1.0

    @property
    def test_term(self) -> str:
        """The fixed effect whose Wald test is counted."""
        return "time:arm" if self.model == "growth" else "did"

    def with_n(self, n_per_arm: int) -> PowerDesign:
        """The same design with another sample size."""
        return replace(self, n_per_arm=int(n_per_arm))

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable record."""
        d = asdict(self)
        d["times"] = list(self.times)
        return d

    def formula(self) -> str:
        """The analysis model's formula."""
        if self.model == "growth":
            f = "y ~ time * arm + (time | participant)"
        else:
            waves = " + ".join(f"w{j}" for j in range(1, len(self.times)))
            f = f"y ~ {waves} + arm + did + (1 | participant)"
        if self.dialogues_per_arm > 0:
            f += " + (1 | dialogue)"
        return f

    def effect_column(self, time: np.ndarray, arm: np.ndarray, wave: np.ndarray) -> np.ndarray:
        """The regressor whose coefficient is the effect (time x arm, or post x arm)."""
        if self.model == "growth":
            return time * arm
        return (wave >= self.did_start) * arm

    # ------------------------------------------------------------------ theory
    def closed_form_se(self) -> float:
        """Standard error of the effect estimate from the GLS information (no simulation).

        Exact for known variance components with complete data or MCAR monotone dropout at
        the expected proportions (see :mod:`.theory`); NaN with a dialogue level.
        """
        if self.dialogues_per_arm > 0:
            return math.nan
        t = np.asarray(self.times)
        W = t.size
        cov = self.corr * math.sqrt(self.icc) * self.slope_sd
        V = random_slope_cov(t, self.icc, self.slope_sd**2, cov, self.resid_var)
        probs = dropout_pattern_probs(W, self.attrition)
        info = np.zeros((4, 4)) if self.model == "growth" else np.zeros((W + 2, W + 2))
        for a in (0.0, 1.0):
            info += pattern_information(self._x_rows(t, a), V, probs, self.n_per_arm)
        return float(math.sqrt(np.linalg.inv(info)[-1, -1]))

    def _x_rows(self, t: np.ndarray, a: float) -> np.ndarray:
        W = t.size
        if self.model == "growth":
            return np.column_stack([np.ones(W), t, np.full(W, a), t * a])
        wav = np.eye(W)[:, 1:]
        post = (np.arange(W) >= self.did_start).astype(float)
        return np.column_stack([np.ones(W), wav, np.full(W, a), post * a])


# ---------------------------------------------------------------------- layout and model
def _allocate(n: int, probs: np.ndarray) -> np.ndarray:
    """Largest-remainder rounding of n * probs to integers summing to n."""
    raw = n * probs
    base = np.floor(raw).astype(int)
    short = n - int(base.sum())
    if short > 0:
        base[np.argsort(-(raw - base), kind="stable")[:short]] += 1
    return base


@dataclass
class _Layout:
    arm: np.ndarray  # (G,) 0/1
    dialogue: np.ndarray  # (G,) codes, or zeros
    last: np.ndarray  # (G,) last visit index under the fixed (MCAR) design


def _layout(design: PowerDesign) -> _Layout:
    n, Dp = design.n_per_arm, design.dialogues_per_arm
    W = len(design.times)
    arm = np.repeat([0, 1], n)
    within = np.tile(np.arange(n), 2)
    dialogue = arm * Dp + (within % Dp) if Dp > 0 else np.zeros(2 * n, dtype=int)
    counts = _allocate(n, dropout_pattern_probs(W, design.attrition))
    # Dropout patterns in blocks of consecutive participants: dialogues cycle within an arm,
    # so every dialogue gets nearly the same mix of patterns.
    last_arm = np.repeat(np.arange(W), counts)
    return _Layout(arm=arm, dialogue=dialogue, last=np.concatenate([last_arm, last_arm]))


def _frame(design: PowerDesign, lay: _Layout, rows: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Long data frame of the given (participant * W + wave) rows."""
    W = len(design.times)
    pid, wave = np.divmod(rows, W)
    t = np.asarray(design.times)[wave]
    arm = lay.arm[pid].astype(float)
    cols: dict[str, np.ndarray] = {"participant": pid, "time": t, "arm": arm}
    if design.model == "did":
        for j in range(1, W):
            cols[f"w{j}"] = (wave == j).astype(float)
        cols["did"] = ((wave >= design.did_start) * arm).astype(float)
    if design.dialogues_per_arm > 0:
        cols["dialogue"] = lay.dialogue[pid]
    cols["y"] = y
    return pd.DataFrame(cols)


class _Simulator:
    """Draws complete outcomes (G x W) for a design at effect 0."""

    def __init__(self, design: PowerDesign, lay: _Layout) -> None:
        self.design = design
        self.lay = lay
        t = np.asarray(design.times)
        self.t = t
        sd_i = math.sqrt(design.icc)
        cov = np.array(
            [[design.icc, design.corr * sd_i * design.slope_sd],
             [design.corr * sd_i * design.slope_sd, design.slope_sd**2]]
        )
        # Cholesky of a PSD 2 x 2 matrix that may be singular (slope_sd = 0).
        l11 = math.sqrt(cov[0, 0])
        l21 = cov[1, 0] / l11 if l11 > 0 else 0.0
        l22 = math.sqrt(max(cov[1, 1] - l21 * l21, 0.0))
        self.L = np.array([[l11, 0.0], [l21, l22]])
        self.sigma = math.sqrt(design.resid_var)
        self.sd_dialogue = math.sqrt(design.icc_dialogue)
        n_dlg = 2 * design.dialogues_per_arm
        self.n_dialogues = n_dlg
        # Marginal SD of the outcome at each wave (for MNAR dropout on the standardised value).
        var_t = (cov[0, 0] + 2 * t * cov[0, 1] + t * t * cov[1, 1] + design.icc_dialogue
                 + design.resid_var)
        self.sd_t = np.sqrt(var_t)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        G = self.lay.arm.size
        W = self.t.size
        b = rng.standard_normal((G, 2)) @ self.L.T
        y = b[:, :1] + b[:, 1:] * self.t[None, :]
        if self.n_dialogues:
            u = rng.standard_normal(self.n_dialogues) * self.sd_dialogue
            y += u[self.lay.dialogue][:, None]
        y += self.sigma * rng.standard_normal((G, W))
        return y

    def dropout(self, y: np.ndarray, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Last visit per participant, MNAR on the standardised outcome at each visit."""
        d = self.design
        G, W = y.shape
        z = (y - mean) / self.sd_t[None, :]
        base = logit(d.attrition)
        u = rng.random((G, W))
        last = np.full(G, W - 1)
        active = np.ones(G, dtype=bool)
        for j in range(1, W):
            p = expit(base + math.log(d.dropout_or) * z[:, j])
            leave = active & (u[:, j] < p)
            last[leave] = j - 1
            active &= ~leave
        return last


@dataclass
class _Prepared:
    design: PowerDesign
    lay: _Layout
    sim: _Simulator
    model: GrowthModel
    rows: np.ndarray  # analysis rows (participant * W + wave) of the model
    effect_col: np.ndarray  # (G, W) effect regressor
    k: int  # index of the tested fixed effect
    reml: bool = True
    full: dict = field(default_factory=dict)


_CACHE: dict[tuple, _Prepared] = {}


def prepare(design: PowerDesign, seed: int) -> _Prepared:
    """Build (once per process) the model and sufficient statistics of a design.

    The template response (for the warm start of every refit) is drawn from a seed derived
    from ``seed`` and the sample size only, so that every worker builds the same template.
    """
    key = (tuple(sorted(design.to_dict().items(), key=lambda kv: kv[0]).__repr__()), seed)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    lay = _layout(design)
    sim = _Simulator(design, lay)
    G, W = lay.arm.size, len(design.times)
    wave = np.tile(np.arange(W), (G, 1))
    tt = np.asarray(design.times)[wave]
    effect_col = design.effect_column(tt, lay.arm[:, None].astype(float), wave)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(design.n_per_arm, 2**31)))
    y_full = sim.draw(rng) + design.effect * effect_col
    if design.mnar:
        obs = np.ones((G, W), dtype=bool)  # MNAR: the complete design, rows chosen per draw
    else:
        obs = wave <= lay.last[:, None]
    rows = np.flatnonzero(obs.ravel())
    model = GrowthModel(design.formula(), _frame(design, lay, rows, y_full.ravel()[rows]))
    model.fit()
    k = model.x_names.index(design.test_term)
    prep = _Prepared(design, lay, sim, model, rows, effect_col, k)
    if len(_CACHE) > 16:
        _CACHE.clear()
    _CACHE[key] = prep
    return prep


# ---------------------------------------------------------------------- one batch
@dataclass
class SimulationBatch:
    """Results of a batch of replicates (arrays of length n_reps).

    ``estimate`` is the effect estimate under effect 0 in the outcome when the design is MCAR
    (the effect regressor is a column of X, so its estimate under effect δ is exactly
    ``estimate + δ`` with the same standard error: power at any δ needs no refit); for MNAR
    designs it is the estimate under the design's effect.
    """

    start: int
    estimate: np.ndarray
    se: np.ndarray
    converged: np.ndarray
    fallback: np.ndarray


def _fit_one(prep: _Prepared, stats, y: np.ndarray) -> tuple[float, float, bool, bool]:
    model = prep.model
    res = model.warm_optimise(stats, prep.reml)
    fallback = res is None
    if res is None:
        _, ev, info = model.optimise(stats, prep.reml, start=model._last_theta)
        ok = info.converged
    else:
        _, ev, info = res
        ok = info.converged
    df_res = stats.n - stats.p if prep.reml else stats.n
    s2 = ev.r2 / df_res
    return float(ev.beta[prep.k]), float(math.sqrt(s2 * ev.C[prep.k, prep.k])), ok, fallback


def _batch_refitter(prep: _Prepared) -> BatchRefitter | None:
    """The vectorised refitter for MCAR designs without a dialogue level (else None)."""
    if prep.design.mnar:
        return None
    if "batch" not in prep.full:
        try:
            prep.full["batch"] = BatchRefitter(prep.model, prep.reml)
        except ModelError:  # outer factor, group-mode statistics or a boundary template fit
            prep.full["batch"] = None
    return prep.full["batch"]


def run_batch(design: PowerDesign, seed: int, start: int, stop: int) -> SimulationBatch:
    """Simulate and refit replicates ``start..stop-1`` of a design.

    Replicate r draws from ``SeedSequence(seed, spawn_key=(n_per_arm, r))``, and the task
    layout (which replicates form a batch) is a function of the design alone, so the results
    do not depend on how many workers, or which backend, run the batches. MCAR designs without
    a dialogue level are refitted all at once (:class:`~trackii_eval.models.growth.batch.
    BatchRefitter`); others one replicate at a time on the warm refit path.
    """
    prep = prepare(design, seed)
    sim, lay = prep.sim, prep.lay
    G, W = lay.arm.size, len(design.times)
    m = stop - start
    est, se = np.empty(m), np.empty(m)
    conv, fb = np.empty(m, dtype=bool), np.empty(m, dtype=bool)
    model = prep.model
    batch = _batch_refitter(prep)
    if batch is not None:
        Y = np.empty((m, prep.rows.size))
        for i, r in enumerate(range(start, stop)):
            rng = np.random.default_rng(
                np.random.SeedSequence(seed, spawn_key=(design.n_per_arm, r)))
            Y[i] = sim.draw(rng).ravel()[prep.rows]
        res = batch.refit(Y)
        k = prep.k
        return SimulationBatch(start=start, estimate=res.beta[:, k].copy(),
                               se=np.sqrt(res.vcov_beta[:, k, k]), converged=res.converged,
                               fallback=res.fallback)
    updater = model.response_updater
    if design.mnar:
        d = model.design
        X, Z, grp = model.X, d.Z, d.group
        og = d.outer_of_group
        Zo = d.Zo
        # Mean outcome of each arm at each wave (for standardising), under the design effect.
        mean = design.effect * prep.effect_col
    for i, r in enumerate(range(start, stop)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(design.n_per_arm, r)))
        y = sim.draw(rng)
        if not design.mnar:
            y_obs = y.ravel()[prep.rows]
            stats = updater.stats_for(y_obs) if updater is not None else model.stats.with_response(
                y_obs, model.X, model.design.Z, model.design.group, model.design.Zo)
        else:
            y = y + mean
            last = sim.dropout(y, mean, rng)
            keep = (np.arange(W)[None, :] <= last[:, None]).ravel()
            stats = compute_stats(
                y.ravel()[keep], X[keep], Z[keep], grp[keep], G,
                og if d.has_outer else None, mode="cell",
                Zo=None if Zo is None else Zo[keep],
            )
        est[i], se[i], conv[i], fb[i] = _fit_one(prep, stats, y)
    return SimulationBatch(start=start, estimate=est, se=se, converged=conv, fallback=fb)
