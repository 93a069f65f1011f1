"""Scores computed in DuckDB SQL equal `score_responses` on the store's active responses.

The demo study exercises what a small generated portfolio does not: constructs asked of one
arm or at some waves only, raw-scored behaviour, item weights, reverse keys, "not asked"
cells, excluded (test/unfinished) submissions, too few answered items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.scale._compare import both
from trackii_eval.errors import ScoringError
from trackii_eval.ingest.core import ingest_study
from trackii_eval.pipeline.context import load_context
from trackii_eval.portfolio.generate import write_portfolio
from trackii_eval.portfolio.score import score_sql
from trackii_eval.scoring.scores import score_responses
from trackii_eval.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _check(store: Store, ctx) -> pd.DataFrame:
    expected = score_responses(store.active_responses(), ctx.instrument, ctx.config)
    n = score_sql(store, ctx.instrument, ctx.config, table="scores_sql")
    got = store.query("SELECT * FROM scores_sql")
    assert n == len(expected)
    # same rows in the same order; sums added in another order: equal to 1e-9 POMP points
    pd.testing.assert_frame_equal(expected, got, check_dtype=False, atol=1e-9, rtol=0)
    return got


def test_demo_scores_match_score_responses(key):
    ctx = load_context(ROOT / "surveys" / "demo")
    store = Store(":memory:", ctx.config.id)
    ingest_study(store, ctx, key)
    got = _check(store, ctx)
    assert {"scored", "too_few_items"} <= set(got["status"])
    assert got["change"].notna().any()


def test_portfolio_scores_match_through_the_bulk_path(tmp_path, key):
    root = write_portfolio(tmp_path / "p", 200, 3, 12, n_dialogues=4, bad_share=0.02)
    ctx = load_context(root)
    _, _, bulk, _ = both(root, key)
    got = _check(bulk, ctx)
    # the simulated truth: the dialogue arm gains on the comparison arm over the waves
    gain = got[got["construct"] == "perceptions"].groupby(["arm", "wave"])["score"].mean()
    assert gain["dialogue"].iloc[-1] - gain["dialogue"].iloc[0] > \
        gain["comparison"].iloc[-1] - gain["comparison"].iloc[0] + 3
    assert np.isfinite(got["score"]).any()


def test_an_item_the_instrument_lacks_is_refused_alike(tmp_path, key):
    root = write_portfolio(tmp_path / "p", 30, 2, 4, n_dialogues=2)
    ctx = load_context(root)
    store = Store(":memory:", ctx.config.id)
    ingest_study(store, ctx, key)
    store.execute("UPDATE responses SET item = 'gone' WHERE item = 'i01'")
    with pytest.raises(ScoringError) as a:
        score_responses(store.active_responses(), ctx.instrument, ctx.config)
    with pytest.raises(ScoringError) as b:
        score_sql(store, ctx.instrument, ctx.config)
    assert str(a.value) == str(b.value)
