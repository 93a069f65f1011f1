"""Scores recover the simulated construct means per arm and wave."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from trackii_eval.config import load_instrument
from trackii_eval.scoring import score_responses
from trackii_eval.simulate import DemoTruth

from ..conftest import DEMO


def test_scores_recover_simulated_means(demo_run) -> None:
    study, _, _, _ = demo_run
    truth = json.loads((DEMO / "truth.json").read_text())
    scores = study.scores(long=True)
    perc = scores[(scores["construct"] == "perceptions")]
    params = DemoTruth().perceptions
    t_end = truth["program_end_time"]
    for (arm, wave), group in perc.groupby(["arm", "wave"]):
        t = truth["wave_time"][str(wave)]
        expected = params.baseline_mean + params.comparison_slope * t
        if arm == "dialogue":
            expected += truth["effects"]["perceptions"]["gap_at_each_wave"][str(wave)]
        se = group["score"].std() / np.sqrt(group["score"].count())
        # attrition depends on baseline perceptions, so later waves are selected upwards a bit
        assert abs(group["score"].mean() - expected) < 3.5 * se + (1.5 if wave > 1 else 0), (
            arm, wave, group["score"].mean(), expected)
    assert t_end > 0


def test_keying_and_min_answered() -> None:
    instrument = load_instrument(DEMO / "instrument.yaml")
    items = [i.id for i in instrument.constructs["perceptions"].items]
    rows = []
    for item in items:
        scale = instrument.scales[instrument.items[item].scale]
        value = scale.max  # top of every scale: reverse-keyed items count as 0 after keying
        rows.append(("p1", 1, item, value, None))
        rows.append(("p2", 1, item, None if item != "therm_other" else 50.0,
                     "refused" if item != "therm_other" else None))
    frame = pd.DataFrame(rows, columns=["participant", "wave", "item", "value", "missing_code"])
    frame = frame.assign(time=0.0, arm="dialogue", side="North", dialogue="D1",
                         construct="perceptions")
    from trackii_eval import Study

    config = Study.load(DEMO).config
    out = score_responses(frame, instrument, config).set_index("participant")
    n_rev = sum(instrument.items[i].reverse for i in items)
    assert out.loc["p1", "score"] == (len(items) - n_rev) * 100 / len(items)
    assert out.loc["p2", "status"] == "too_few_items" and np.isnan(out.loc["p2", "score"])
    assert out.loc["p2", "n_answered"] == 1
