"""The models recover the simulated effects of the demo, and follow a different truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trackii_eval import Study
from trackii_eval.simulate import DemoTruth, write_demo_study

from ..conftest import DEMO

ARM = "arm[T.dialogue]"


def _truth_terms() -> dict[str, float]:
    return json.loads((DEMO / "truth.json").read_text())["effects"]["perceptions"]["model_terms"]


def test_growth_recovers_demo_perception_effect(demo_run) -> None:
    _, _, results, _ = demo_run
    fit = results.fits["perceptions_durability"]
    assert fit.converged
    truth = _truth_terms()
    for term in (f"time:{ARM}", f"post_time:{ARM}"):
        row = fit.fixed.loc[term]
        assert row["ci_low"] <= truth[term] <= row["ci_high"], (term, row, truth[term])


def test_event_study_recovers_gap_at_each_wave(demo_run) -> None:
    _, _, results, _ = demo_run
    gaps = json.loads((DEMO / "truth.json").read_text())["effects"]["perceptions"][
        "gap_at_each_wave"
    ]
    effects = results.fits["perceptions_event_study"].effects.set_index("wave")
    covered = sum(
        effects.loc[w, "ci_low"] <= gaps[str(w)] <= effects.loc[w, "ci_high"] for w in effects.index
    )
    assert covered >= len(effects) - 1  # 95% intervals: one miss in four is allowed


@pytest.mark.parametrize(("gain", "fade"), [(0.0, 0.0), (18.0, 6.0)])
def test_a_different_truth_gives_a_different_estimate(
    tmp_path: Path, key, gain: float, fade: float
) -> None:
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    for name in ("study.yaml", "instrument.yaml"):
        shutil.copy(DEMO / name, study_dir / name)
    sim = write_demo_study(study_dir, DemoTruth().with_perception_effect(gain, fade), seed=7)
    truth = sim["truth"]["effects"]["perceptions"]["model_terms"]
    assert truth[f"time:{ARM}"] == gain
    study = Study.load(study_dir, out=tmp_path / "out")
    study.ingest(key)
    study.score()
    from trackii_eval.analysis import AnalysisPlan, ModelSpec

    plan = AnalysisPlan(
        models=[
            ModelSpec(
                name="p",
                kind="growth",
                outcome="perceptions",
                formula="perceptions ~ (time + post_time) * arm + (time | participant)",
            )
        ]
    )
    fit = study.fit_models(plan).fits["p"]
    demo_estimate = 9.0
    for term in (f"time:{ARM}", f"post_time:{ARM}"):
        row = fit.fixed.loc[term]
        # within 3 standard errors (99.7%): two terms, two truths, no seed picked to pass
        assert abs(row["estimate"] - truth[term]) < 3 * row["std_error"], (term, row.to_dict())
    # and the estimate moved with the truth, away from the demo's value
    assert abs(fit.fixed.loc[f"time:{ARM}", "estimate"] - demo_estimate) > 4
    study.close()
