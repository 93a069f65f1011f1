"""Idea-log metrics equal hand-computed values."""

from __future__ import annotations

import pandas as pd
import pytest

from trackii_eval.scoring.ideas import idea_metrics


def test_hand_computed() -> None:
    log = pd.DataFrame({
        "dialogue": ["A", "A", "A", "A", "B"],
        "workshop": [1, 1, 3, 3, 2],
        "proposed_by": ["North", "both", "both", "South", "both"],
        "status": ["proposed", "transferred", "adopted", "developed", "proposed"],
    })
    out = idea_metrics(log).set_index("dialogue")
    assert out.loc["A", "n_ideas"] == 4
    assert out.loc["A", "n_workshops"] == 3  # workshop 2 produced nothing but happened
    assert out.loc["A", "ideas_per_workshop"] == pytest.approx(4 / 3)
    assert out.loc["A", "cross_side_share"] == pytest.approx(0.5)
    assert out.loc["A", "transferred_share"] == pytest.approx(0.5)  # transferred + adopted
    assert out.loc["A", "adopted_share"] == pytest.approx(0.25)
    assert out.loc["B", "ideas_per_workshop"] == pytest.approx(0.5)


def test_demo_rates_near_simulated(demo_run) -> None:
    study = demo_run[0]
    metrics = study.store.query("SELECT * FROM idea_metrics")
    assert set(metrics["dialogue"]) == {"D1", "D2", "D3"}
    # simulated: 4 ideas per workshop (Poisson), 40% joint, 25% transferred or adopted
    pooled = metrics["n_ideas"].sum() / metrics["n_workshops"].sum()
    assert 2.5 < pooled < 5.5
    assert 0.2 < (metrics["cross_side_share"] * metrics["n_ideas"]).sum() / metrics[
        "n_ideas"].sum() < 0.6
