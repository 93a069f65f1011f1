"""Regenerate the simulated coast study: ``python surveys/coast/generate.py``.

The second study of the demo portfolio (see ``trackii-eval dashboard``). Seeded: the same seed
writes the same files. Reads study.yaml and instrument.yaml beside it, writes waves/*.csv,
ideas.csv, roster.csv and truth.json (every simulated effect).

Its perception gain is 12 POMP points a year over nine months of workshops (a gap of 9 points
at the end of the programme, as in the demo study, reached faster) fading by 4 points a year;
the two dialogues differ by +-1.5 points a year.
"""

from dataclasses import replace
from pathlib import Path

from trackii_eval.simulate import ConstructTruth, DemoTruth, write_demo_study

SEED = 20232
TRUTH = replace(
    DemoTruth(),
    n_per_dialogue=44,
    n_comparison=60,
    perceptions=ConstructTruth(
        baseline_mean=36.0, baseline_sd=12.0, comparison_slope=0.5, slope_sd=2.0,
        gain_per_year=12.0, fade_per_year=4.0, residual_sd=5.0),
    perception_gain_by_dialogue=(1.5, -1.5),
    moderation_means=(74.0, 63.0),
    idea_status_probs={"proposed": 0.4, "developed": 0.3, "transferred": 0.2, "adopted": 0.1},
)

if __name__ == "__main__":
    write_demo_study(Path(__file__).parent, TRUTH, seed=SEED)
