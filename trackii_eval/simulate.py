"""Simulated Track II evaluations with known effects.

The demo study in ``surveys/demo`` is written by :func:`write_demo_study` from the committed
``study.yaml`` and ``instrument.yaml``; tests call the same code with other effects to check that
the estimators follow the truth rather than one number. Every value in the raw files is
simulated; identifier columns carry marked canary values so tests can prove none leaks.

The data-generating model, on the POMP (0-100) scale of each construct, for participant *i*
at time *t* (years since baseline), with programme end *T*:

``mu_i(t) = b0_i + b1_i t + arm_i * (gain * min(t, T) - fade * max(0, t - T))``

with correlated normal ``(b0_i, b1_i)`` and residual noise; items are noisy, rounded, clipped
readings of the construct (reverse-keyed items flipped). A piecewise growth model
``score ~ (time + post_time) * arm + (time | participant)`` with
``post_time = max(0, time - T)`` therefore has true coefficients ``time:arm = gain`` and
``post_time:arm = -(gain + fade)``.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Instrument, StudyConfig, load_instrument, load_study_config

__all__ = ["ConstructTruth", "DemoTruth", "simulate_study", "write_demo_study"]


@dataclass(frozen=True)
class ConstructTruth:
    """True trajectory parameters of one construct (POMP 0-100 scale)."""

    baseline_mean: float
    baseline_sd: float
    comparison_slope: float
    slope_sd: float
    gain_per_year: float
    fade_per_year: float
    residual_sd: float
    intercept_slope_corr: float = -0.2


@dataclass(frozen=True)
class DemoTruth:
    """Every effect simulated in a study; written to ``truth.json`` next to the wave files."""

    n_per_dialogue: int = 50
    n_comparison: int = 80
    perceptions: ConstructTruth = ConstructTruth(
        baseline_mean=42.0, baseline_sd=11.0, comparison_slope=-0.5, slope_sd=2.0,
        gain_per_year=9.0, fade_per_year=2.0, residual_sd=5.0,
    )
    relationships: ConstructTruth = ConstructTruth(
        baseline_mean=30.0, baseline_sd=10.0, comparison_slope=0.0, slope_sd=1.5,
        gain_per_year=16.0, fade_per_year=1.0, residual_sd=6.0,
    )
    # behavioural outcomes, on a 0-100 latent scale turned into each measure's own units:
    # counts are Poisson with mean latent/10, yes/no Bernoulli(latent/100), tokens the latent
    behaviour: dict[str, ConstructTruth] = field(default_factory=lambda: {
        "cross_contacts": ConstructTruth(
            baseline_mean=15.0, baseline_sd=6.0, comparison_slope=0.0, slope_sd=1.0,
            gain_per_year=12.0, fade_per_year=1.0, residual_sd=4.0),
        "donation_other": ConstructTruth(
            baseline_mean=22.0, baseline_sd=8.0, comparison_slope=0.0, slope_sd=1.0,
            gain_per_year=6.0, fade_per_year=1.0, residual_sd=6.0),
        "joint_activity": ConstructTruth(
            baseline_mean=15.0, baseline_sd=8.0, comparison_slope=0.0, slope_sd=1.0,
            gain_per_year=20.0, fade_per_year=3.0, residual_sd=5.0),
    })
    # mean moderation rating (POMP) per dialogue, in study.yaml order
    moderation_means: tuple[float, ...] = (80.0, 70.0, 58.0)
    # per-dialogue deviation of the perception gain per year during the programme, in
    # study.yaml order (empty: every dialogue has the same gain); the truth file then states
    # each dialogue's gap at the end of the programme (heterogeneity a portfolio meta-analysis
    # estimates as tau^2)
    perception_gain_by_dialogue: tuple[float, ...] = ()
    ideas_mean: float = 55.0
    # attrition: logit P(drop at wave w | present at w-1) = a + b*(w-2) + c*z_baseline_perception
    attrition_intercept: float = -2.6
    attrition_per_wave: float = 0.35
    attrition_baseline_perception: float = -0.6
    attrition_comparison_shift: float = 0.4
    intermittent_miss: float = 0.04
    item_missing: float = 0.03
    item_noise_likert: float = 0.7
    item_noise_thermometer: float = 7.0
    sgic_typo_rate: float = 0.06
    tie_same_side: float = 0.08
    tie_cross_baseline: float = 0.01
    tie_cross_program: float = 0.06
    tie_cross_after: float = 0.03
    tie_persistence: float = 0.6
    ideas_per_workshop: float = 4.0
    workshops_per_dialogue: int = 4
    idea_status_probs: dict[str, float] = field(
        default_factory=lambda: {
            "proposed": 0.45, "developed": 0.3, "transferred": 0.17, "adopted": 0.08,
        }
    )

    def with_perception_effect(self, gain: float, fade: float | None = None) -> DemoTruth:
        """A copy with another true perception gain (and fade)."""
        p = replace(
            self.perceptions,
            gain_per_year=gain,
            fade_per_year=self.perceptions.fade_per_year if fade is None else fade,
        )
        return replace(self, perceptions=p)


def _latent(
    rng: np.random.Generator, truth: ConstructTruth, n: int, times: np.ndarray,
    treated: np.ndarray, t_end: float,
) -> tuple[np.ndarray, np.ndarray]:
    cov = np.array([
        [truth.baseline_sd**2, truth.intercept_slope_corr * truth.baseline_sd * truth.slope_sd],
        [truth.intercept_slope_corr * truth.baseline_sd * truth.slope_sd, truth.slope_sd**2],
    ])
    b = rng.multivariate_normal([truth.baseline_mean, truth.comparison_slope], cov, size=n)
    during = np.minimum(times, t_end)
    after = np.maximum(times - t_end, 0.0)
    effect = truth.gain_per_year * during - truth.fade_per_year * after
    mu = b[:, [0]] + b[:, [1]] * times[None, :] + treated[:, None] * effect[None, :]
    y = mu + rng.normal(0.0, truth.residual_sd, size=mu.shape)
    return y, b[:, 0]


def _items_from_latent(
    rng: np.random.Generator, latent: np.ndarray, instrument: Instrument, construct: str,
    truth: DemoTruth,
) -> dict[str, np.ndarray]:
    """Noisy item readings of a 0-100 latent score, on each item's own scale."""
    out = {}
    items = instrument.constructs[construct].items
    # loadings vary by item but average exactly 1, so the keyed item mean tracks the latent
    # score one to one and the simulated effects are effects on the POMP score scale
    loadings = rng.uniform(0.85, 1.15, size=len(items))
    loadings = loadings / loadings.mean()
    for item, loading in zip(items, loadings, strict=True):
        scale = instrument.scales[item.scale]
        width = scale.max - scale.min
        pomp = 50.0 + loading * (latent - 50.0)
        if width > 20:  # thermometer-like: 0-100 points
            noise = truth.item_noise_thermometer
            raw = scale.min + pomp / 100.0 * width + rng.normal(0.0, noise, latent.shape)
        else:
            raw = scale.min + pomp / 100.0 * width
            # noise in scale points, comparable across 5- and 7-point scales
            raw = raw + rng.normal(0.0, truth.item_noise_likert * width / 6, latent.shape)
        value = np.clip(np.rint(raw), scale.min, scale.max)
        if item.reverse:
            value = scale.max + scale.min - value
        out[item.id] = value
    return out


def _behaviour_from_latent(
    rng: np.random.Generator, latent: np.ndarray, instrument: Instrument, construct: str
) -> dict[str, np.ndarray]:
    """Behavioural measures in their own units from a 0-100 latent propensity."""
    out = {}
    for item in instrument.constructs[construct].items:
        scale = instrument.scales[item.scale]
        if scale.max - scale.min == 1:
            value = (rng.random(latent.shape) < latent / 100.0).astype(float)
        elif scale.max > 100:  # a count
            value = rng.poisson(latent / 10.0).astype(float)
        else:
            value = np.rint(latent)
        out[item.id] = np.clip(value, scale.min, scale.max)
    return out


_MOTHERS = ["MA", "FA", "AM", "SA", "LE", "NA", "RU", "HA", "ZE", "EL", "DI", "MI", "KA", "YA"]
_PLACES = ["KA", "BE", "TI", "AL", "NO", "SU", "RA", "DO", "MO", "GA"]


def _sgic(rng: np.random.Generator) -> str:
    """A self-generated code: mother's name (2 letters), birth month, birthplace, birth year."""
    return (f"{rng.choice(_MOTHERS)}{rng.integers(1, 13):02d}{rng.choice(_PLACES)}"
            f"{rng.integers(50, 100):02d}")


def _sgic_as_typed(rng: np.random.Generator, code: str, typo_rate: float) -> tuple[str, bool]:
    """The code as a participant types it: sometimes one slip, sometimes other formatting."""
    chars = list(code)
    typo = rng.random() < typo_rate
    if typo:
        kind = rng.integers(0, 3)
        if kind == 0:  # birth month off by one
            month = int(code[2:4])
            month = month + 1 if month < 12 else month - 1
            chars[2:4] = list(f"{month:02d}")
        elif kind == 1:  # two letters of the birthplace swapped
            chars[4], chars[5] = chars[5], chars[4]
        else:  # a neighbouring key in the mother's name
            chars[1] = {"A": "S", "E": "R", "I": "O", "U": "Y"}.get(chars[1], "E")
    text = "".join(chars)
    if rng.random() < 0.3:
        text = text.lower() if rng.random() < 0.5 else f"{text[:2]}-{text[2:4]}-{text[4:]}"
    return text, typo


def _raw_id(rng: np.random.Generator, i: int) -> str:
    letters = "".join(rng.choice(list(string.ascii_uppercase), size=4))
    return f"CNRY-{i:04d}-{letters}"


def simulate_study(
    config: StudyConfig, instrument: Instrument, truth: DemoTruth | None = None, *, seed: int = 1
) -> dict[str, Any]:
    """Simulate the raw wave exports of a study.

    Parameters
    ----------
    config, instrument
        The study design and codebook the exports must follow.
    truth
        The effects to simulate; :class:`DemoTruth` defaults if omitted.
    seed
        Seed of the random generator; the same seed gives the same files.

    Returns
    -------
    dict
        ``waves``: wave index -> raw DataFrame (as exported, identifiers included);
        ``ideas``: the idea log; ``truth``: a JSON-serialisable description of every effect;
        ``people``: the simulated people (internal; used by tests as ground truth).
    """
    truth = truth or DemoTruth()
    rng = np.random.default_rng(seed)
    times_by_wave = config.wave_time()
    wave_ids = [w.index for w in config.waves]
    times = np.array([times_by_wave[w] for w in wave_ids])
    t_end = config.program_end_time if config.program_end_time is not None else times[-1]
    comparison = config.comparison_arm
    treated_arm = config.treated_arm

    rows = []
    for d_idx, dialogue in enumerate(config.dialogues):
        for j in range(truth.n_per_dialogue):
            rows.append((treated_arm, dialogue.id, dialogue.sides[j % 2], d_idx))
    if comparison is not None:
        for j in range(truth.n_comparison):
            dialogue = config.dialogues[j % len(config.dialogues)]
            # comparison people come from the same communities, but sit in no dialogue
            rows.append((comparison, None, dialogue.sides[(j // 3) % 2], -1))
    people = pd.DataFrame(rows, columns=["arm", "dialogue", "side", "dialogue_index"])
    n = len(people)
    people["raw_id"] = [_raw_id(rng, i + 1) for i in range(n)]
    people["sgic"] = [_sgic(rng) for _ in range(n)]
    treated = (people["arm"] == treated_arm).to_numpy(dtype=float)

    perc, perc_b0 = _latent(rng, truth.perceptions, n, times, treated, t_end)
    if truth.perception_gain_by_dialogue:
        # added without drawing random numbers, so studies without it are unchanged
        offsets = np.array([truth.perception_gain_by_dialogue[i] if i >= 0 else 0.0
                            for i in people["dialogue_index"]])
        perc = perc + (treated * offsets)[:, None] * np.minimum(times, t_end)[None, :]
    rel, _ = _latent(rng, truth.relationships, n, times, treated, t_end)
    latent = {"perceptions": perc, "relationships": rel}
    mod_mean = np.array(
        [truth.moderation_means[i] if i >= 0 else np.nan for i in people["dialogue_index"]]
    )
    latent["moderation"] = mod_mean[:, None] + rng.normal(0, 14.0, size=(n, len(times)))
    person_idea = rng.normal(truth.ideas_mean, 15.0, size=n)
    latent["ideas"] = person_idea[:, None] + rng.normal(0, 7.0, size=(n, len(times)))

    # response pattern: everyone answers baseline; monotone dropout depending on baseline
    # perceptions (MAR given the baseline), plus occasional missed waves
    # attrition depends on the *observed* baseline attitude (missing at random given it)
    z = (perc[:, 0] - perc[:, 0].mean()) / perc[:, 0].std()
    present = np.ones((n, len(times)), dtype=bool)
    active = np.ones(n, dtype=bool)
    for w in range(1, len(times)):
        logit = (
            truth.attrition_intercept + truth.attrition_per_wave * (w - 1)
            + truth.attrition_baseline_perception * z
            + truth.attrition_comparison_shift * (1 - treated)
        )
        drop = rng.random(n) < 1 / (1 + np.exp(-logit))
        active &= ~drop
        present[:, w] = active & (rng.random(n) >= truth.intermittent_miss)

    item_values: dict[str, np.ndarray] = {}
    for cname, construct in instrument.constructs.items():
        if construct.scoring == "raw" and cname in truth.behaviour:
            b, _ = _latent(rng, truth.behaviour[cname], n, times, treated, t_end)
            item_values.update(_behaviour_from_latent(rng, np.clip(b, 0, 100), instrument, cname))
            continue
        if cname in latent:
            item_values.update(
                _items_from_latent(rng, np.clip(latent[cname], 0, 100), instrument, cname, truth)
            )

    cols = instrument.participant
    missing_tokens = [k for k in instrument.missing_codes if k.strip()]
    waves: dict[int, pd.DataFrame] = {}
    for w_pos, wave in enumerate(config.waves):
        idx = np.flatnonzero(present[:, w_pos])
        frame: dict[str, Any] = {}
        frame["ResponseId"] = [f"R_{rng.integers(16**8):08x}" for _ in idx]
        frame[cols.id] = people["raw_id"].to_numpy()[idx]
        if config.linkage.method == "sgic" and config.linkage.column:
            typed = [_sgic_as_typed(rng, people["sgic"][i], truth.sgic_typo_rate) for i in idx]
            frame[config.linkage.column] = [t[0] for t in typed]
        frame["name"] = [f"CANARY Name {people['raw_id'][i][-4:]}" for i in idx]
        frame["email"] = [f"canary.{people['raw_id'][i][-4:].lower()}@example.invalid" for i in idx]
        frame["phone"] = [f"+999 555 01{i:04d}" for i in idx]
        frame["ip_address"] = [f"198.51.100.{(i % 250) + 1}" for i in idx]
        frame["latitude"] = np.round(rng.uniform(-80, 80, size=len(idx)), 6)
        frame["longitude"] = np.round(rng.uniform(-170, 170, size=len(idx)), 6)
        submitted = [
            pd.Timestamp(wave.date) + pd.Timedelta(days=int(d))
            for d in rng.integers(0, 21, size=len(idx))
        ]
        if cols.submitted_at:
            frame[cols.submitted_at] = [s.strftime("%Y-%m-%d %H:%M") for s in submitted]
        frame[cols.arm] = people["arm"].to_numpy()[idx]
        frame[cols.side] = people["side"].to_numpy()[idx]
        frame[cols.dialogue] = people["dialogue"].fillna("").to_numpy()[idx]
        renames = {v: k for k, v in instrument.renames.get(wave.index, {}).items()}
        for construct in instrument.constructs.values():
            asked = np.ones(len(idx), dtype=bool)
            if construct.asked_of is not None:
                asked = people["arm"].isin(construct.asked_of).to_numpy()[idx]
            if construct.waves is not None and wave.index not in construct.waves:
                continue
            for item in construct.items:
                values = item_values[item.id][idx, w_pos].astype(object)
                values[~asked] = None
                miss = (rng.random(len(idx)) < truth.item_missing) & asked
                codes = rng.choice(["", *missing_tokens], size=len(idx)) if missing_tokens else ""
                values[miss] = np.asarray(codes, dtype=object)[miss] if missing_tokens else None
                values = [
                    None if v is None or v == "" else (int(v) if isinstance(v, float) else v)
                    for v in values
                ]
                frame[renames.get(item.id, item.id)] = values
        waves[wave.index] = pd.DataFrame(frame)

    ideas = _simulate_ideas(rng, config, truth)
    roster = _simulate_roster(rng, config, truth, people, present)
    truth_doc = _truth_document(config, truth, seed, t_end, times_by_wave, present, people)
    people = people.assign(baseline_perception=perc_b0)
    return {"waves": waves, "ideas": ideas, "roster": roster, "truth": truth_doc,
            "people": people}


def _simulate_ideas(
    rng: np.random.Generator, config: StudyConfig, truth: DemoTruth
) -> pd.DataFrame:
    records = []
    statuses = list(truth.idea_status_probs)
    probs = np.array(list(truth.idea_status_probs.values()))
    for dialogue in config.dialogues:
        k = 0
        for workshop in range(1, truth.workshops_per_dialogue + 1):
            for _ in range(rng.poisson(truth.ideas_per_workshop)):
                k += 1
                proposed_by = rng.choice([dialogue.sides[0], dialogue.sides[1], "both"],
                                         p=[0.3, 0.3, 0.4])
                records.append({
                    "idea_id": f"{dialogue.id}-{k:02d}",
                    "dialogue": dialogue.id,
                    "workshop": workshop,
                    "proposed_by": proposed_by,
                    "status": rng.choice(statuses, p=probs / probs.sum()),
                })
    return pd.DataFrame(records)


def _simulate_roster(
    rng: np.random.Generator, config: StudyConfig, truth: DemoTruth, people: pd.DataFrame,
    present: np.ndarray,
) -> pd.DataFrame:
    """Who names whom as a working contact, per wave, within each dialogue.

    Cross-side ties are rare at baseline and form during the workshops; ties persist from one
    wave to the next with probability ``tie_persistence``.
    """
    records = []
    wave_ids = [w.index for w in config.waves]
    end = config.program_end_wave or wave_ids[-1]
    for d in config.dialogues:
        members = np.flatnonzero((people["dialogue"] == d.id).to_numpy())
        sides = people["side"].to_numpy()[members]
        previous: set[tuple[int, int]] = set()
        for w_pos, w in enumerate(wave_ids):
            p_cross = truth.tie_cross_baseline if w == wave_ids[0] else (
                truth.tie_cross_program if w <= end else truth.tie_cross_after)
            current: set[tuple[int, int]] = set()
            for a_pos, a in enumerate(members):
                if not present[a, w_pos]:
                    continue
                for b_pos, b in enumerate(members):
                    if a == b:
                        continue
                    same = sides[a_pos] == sides[b_pos]
                    if (a, b) in previous and rng.random() < truth.tie_persistence:
                        current.add((a, b))
                    elif rng.random() < (truth.tie_same_side if same else p_cross):
                        current.add((a, b))
            for a, b in sorted(current):
                records.append({
                    "wave": w, "participant_code": people["raw_id"][a],
                    "contact_code": people["raw_id"][b], "strength": int(rng.integers(1, 4)),
                })
            previous = current
    return pd.DataFrame(records, columns=["wave", "participant_code", "contact_code",
                                          "strength"])


def _truth_document(
    config: StudyConfig, truth: DemoTruth, seed: int, t_end: float,
    times_by_wave: dict[int, float], present: np.ndarray, people: pd.DataFrame,
) -> dict[str, Any]:
    arm = config.treated_arm
    p = truth.perceptions
    r = truth.relationships
    return {
        "seed": seed,
        "scale": "POMP 0-100",
        "program_end_time": t_end,
        "wave_time": times_by_wave,
        "n_participants": {a: int((people["arm"] == a).sum()) for a in people["arm"].unique()},
        "responses_per_wave": {
            str(w): int(present[:, i].sum()) for i, w in enumerate(times_by_wave)
        },
        "effects": {
            "perceptions": {
                "gain_per_year_during_program": p.gain_per_year,
                "fade_per_year_after_program": p.fade_per_year,
                "comparison_slope_per_year": p.comparison_slope,
                "baseline_mean": p.baseline_mean,
                "model_terms": {
                    f"time:arm[T.{arm}]": p.gain_per_year,
                    f"post_time:arm[T.{arm}]": -(p.gain_per_year + p.fade_per_year),
                    "time": p.comparison_slope,
                },
                "gap_at_each_wave": {
                    str(w): p.gain_per_year * min(t, t_end) - p.fade_per_year * max(0.0, t - t_end)
                    for w, t in times_by_wave.items()
                },
            },
            "perceptions_by_dialogue": {
                d.id: {
                    "gain_per_year_during_program": p.gain_per_year + off,
                    "gap_at_program_end": (p.gain_per_year + off) * t_end,
                }
                for d, off in zip(config.dialogues, truth.perception_gain_by_dialogue
                                  or (0.0,) * len(config.dialogues), strict=True)
            },
            "relationships": {
                "gain_per_year_during_program": r.gain_per_year,
                "fade_per_year_after_program": r.fade_per_year,
            },
            "behaviour": {
                name: {
                    "gain_per_year_during_program_latent": b.gain_per_year,
                    "fade_per_year_after_program_latent": b.fade_per_year,
                    "units": "latent 0-100; counts = Poisson(latent/10), yes/no = "
                             "Bernoulli(latent/100), tokens = latent",
                }
                for name, b in truth.behaviour.items()
            },
            "moderation_mean_by_dialogue": dict(
                zip([d.id for d in config.dialogues], truth.moderation_means, strict=False)
            ),
        },
        "attrition": {
            "depends_on": "baseline perceptions (lower -> more likely to leave) and arm",
            "logit_intercept": truth.attrition_intercept,
            "logit_per_wave": truth.attrition_per_wave,
            "logit_per_sd_baseline_perception": truth.attrition_baseline_perception,
            "logit_comparison_shift": truth.attrition_comparison_shift,
        },
        "parameters": asdict(truth),
    }


def write_demo_study(study_dir: str | Path, truth: DemoTruth | None = None, *, seed: int = 1
                     ) -> dict[str, Any]:
    """Write simulated wave files, idea log and ``truth.json`` for the study in ``study_dir``.

    ``study.yaml`` and ``instrument.yaml`` must already be there: the simulation follows them.
    """
    study_dir = Path(study_dir)
    instrument = load_instrument(study_dir / "instrument.yaml")
    config, _ = _load_config_without_file_check(study_dir / "study.yaml")
    sim = simulate_study(config, instrument, truth, seed=seed)
    for wave in config.waves:
        path = study_dir / wave.file
        path.parent.mkdir(parents=True, exist_ok=True)
        sim["waves"][wave.index].to_csv(path, index=False)
    if config.ideas:
        sim["ideas"].to_csv(study_dir / config.ideas, index=False)
    if config.roster:
        sim["roster"].to_csv(study_dir / config.roster, index=False)
    (study_dir / "truth.json").write_text(json.dumps(sim["truth"], indent=2, default=str) + "\n")
    return sim


def _load_config_without_file_check(path: Path) -> tuple[StudyConfig, Any]:
    # the wave files do not exist yet when the generator runs for the first time
    from pydantic import ValidationError

    from ._yaml import load_yaml

    data, lines = load_yaml(path)
    try:
        return StudyConfig.model_validate(data), lines
    except ValidationError:
        return load_study_config(path)  # raises the located, readable ConfigError
