"""Fixtures for the privacy tests: the demo's identifier needles, a copy of its outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ..conftest import DEMO


@pytest.fixture(scope="session")
def demo_needles():
    from trackii_eval.privacy.audit import study_needles

    return study_needles(DEMO)


@pytest.fixture()
def demo_outputs(demo_run, tmp_path: Path) -> Path:
    """A copy of the demo's outputs as `trackii-eval run` leaves them (store checkpointed)."""
    study, summary, _results, _report = demo_run
    study.store.execute("CHECKPOINT")
    out = tmp_path / "outputs"
    shutil.copytree(study.out, out)
    wal = out / f"{study.config.id}.duckdb.wal"
    if wal.exists():
        wal.unlink()
    if len(summary.problems):  # as the command line writes it
        summary.problems.to_csv(out / "ingest_problems.csv", index=False)
    return out
