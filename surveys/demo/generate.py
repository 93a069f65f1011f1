"""Regenerate the simulated demo study: ``python surveys/demo/generate.py``.

Seeded: the same seed writes the same files. Reads study.yaml and instrument.yaml beside it,
writes waves/*.csv, ideas.csv and truth.json (every simulated effect).
"""

from pathlib import Path

from trackii_eval.simulate import DemoTruth, write_demo_study

SEED = 20221
if __name__ == "__main__":
    write_demo_study(Path(__file__).parent, DemoTruth(), seed=SEED)
