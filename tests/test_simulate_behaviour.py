"""The demo simulator's behavioural measures follow the truth it writes, wave by wave.

A newcomer saw the dialogue arm's sign-up share fall at the last wave of the demo (15-24%
against about 33% at wave 4 over seeds 1-3) and suspected the simulator. Truth says the
latent sign-up propensity rises 20 points a year during the programme and fades 3 a year
after, so the dialogue share should go 15, 35, 32, 29, 26% (a little more where the latent
score is clipped at 0). At the demo's size only about 75 dialogue participants answer at
wave 5 (binomial SE about 5 points, drawn anew at each wave), so such a dip is chance; and
attrition depends on baseline perceptions, which are drawn independently of the behavioural
latents, so it does not select on sign-up. These tests check the generator itself at large n
against the truth formula (within 4 Monte Carlo standard errors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trackii_eval.config import load_instrument
from trackii_eval.simulate import DemoTruth, _behaviour_from_latent, _latent

DEMO = Path(__file__).resolve().parents[1] / "surveys" / "demo"
TIMES = np.array([0.0, 0.9993, 2.0014, 3.0007, 4.0])  # the demo's wave times (truth.json)
T_END = 0.9993
N = 200_000


def _truth_mean(construct: str, treated: bool) -> np.ndarray:
    t = DemoTruth().behaviour[construct]
    effect = t.gain_per_year * np.minimum(TIMES, T_END) - t.fade_per_year * np.maximum(
        TIMES - T_END, 0.0)
    return t.baseline_mean + t.comparison_slope * TIMES + (effect if treated else 0.0)


@pytest.mark.parametrize(("construct", "item"), [("joint_activity", "joint_signup"),
                                                 ("cross_contacts", "n_cross_contacts"),
                                                 ("donation_other", "donation_other")])
@pytest.mark.parametrize("treated", [True, False])
def test_behaviour_means_match_truth_each_wave(construct: str, item: str,
                                               treated: bool) -> None:
    instrument = load_instrument(DEMO / "instrument.yaml")
    rng = np.random.default_rng(20221)
    arm = np.full(N, 1.0 if treated else 0.0)
    latent, _ = _latent(rng, DemoTruth().behaviour[construct], N, TIMES, arm, T_END)
    mc = latent.std(axis=0) / np.sqrt(N)
    np.testing.assert_array_less(np.abs(latent.mean(axis=0) - _truth_mean(construct, treated)),
                                 4 * mc)
    clipped = np.clip(latent, 0, 100)
    value = _behaviour_from_latent(rng, clipped, instrument, construct)[item]
    # each measure's units: yes/no = Bernoulli(latent/100), count = Poisson(latent/10),
    # tokens = the latent itself
    scale = {"joint_signup": 0.01, "n_cross_contacts": 0.1, "donation_other": 1.0}[item]
    expected = clipped.mean(axis=0) * scale
    mc = value.std(axis=0) / np.sqrt(N)
    np.testing.assert_array_less(np.abs(value.mean(axis=0) - expected), 4 * mc + 1e-12)
    if item == "joint_signup" and treated:
        share = value.mean(axis=0)
        # up during the programme, then a slow fade: the last wave stays well above baseline
        assert share[1] > share[0] + 0.15
        assert share[4] == pytest.approx(0.26, abs=0.02)
        assert np.all(np.diff(share[1:]) < 0)
