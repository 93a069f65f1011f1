"""Constructs of one or two items: scored, with reliability reported as what it can be.

Case files: tests/fixtures/cases/single-item-constructs-crash-score (a copy of the shared case;
every construct has one item, a 0-100 feeling thermometer), where ``score`` used to crash.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackii_eval.scoring.by_wave import ONE_ITEM_NOTE
from trackii_eval.scoring.reliability import RELIABILITY_COLUMNS, ReliabilityWarning, reliability
from trackii_eval.study import Study

CASE = Path(__file__).resolve().parents[1] / "fixtures" / "cases" / (
    "single-item-constructs-crash-score")


def test_one_item_constructs_are_scored_and_reliability_is_not_applicable(
    tmp_path: Path, key
) -> None:
    study = Study.load(CASE, out=tmp_path / "out")
    try:
        study.ingest(key)
        scores = study.scores(long=True)
        rel = study.reliability()
        items = study.store.query("SELECT * FROM item_statistics")
    finally:
        study.close()
    # A 0-100 thermometer is its own POMP score: the answers in wave1.csv and wave2.csv.
    waves = {w: pd.read_csv(CASE / f"wave{w}.csv") for w in (1, 2)}
    assert (scores["status"] == "scored").all()
    assert len(scores) == 8
    got = sorted(scores.loc[scores["wave"] == 2, "score"])
    np.testing.assert_allclose(got, sorted(waves[2]["therm_other"]), atol=1e-9)
    np.testing.assert_allclose(
        sorted(scores.loc[scores["wave"] == 2, "change"]),
        sorted(waves[2]["therm_other"] - waves[1]["therm_other"]), atol=1e-9)
    # One reliability row per wave, saying why there are no coefficients; not a low-reliability
    # flag.
    assert rel[["construct", "wave"]].values.tolist() == [["perceptions", 1], ["perceptions", 2]]
    assert (rel["note"] == ONE_ITEM_NOTE).all()
    assert (rel["k"] == 1).all() and (rel["n"] == 4).all()
    assert not rel["flag"].any()
    assert rel[["alpha", "omega_total", "omega_ci_low"]].isna().all().all()
    assert set(RELIABILITY_COLUMNS) <= set(rel.columns)
    assert items.empty  # no item-rest statistics for one item, but the table exists


def test_two_items_alpha_is_spearman_brown_and_omega_is_not_identified() -> None:
    rng = np.random.default_rng(3)
    f = rng.normal(size=200)
    x = pd.DataFrame({"a": f + rng.normal(size=200), "b": f + rng.normal(size=200)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = reliability(x, n_boot=100).iloc[0]
    assert any(issubclass(w.category, ReliabilityWarning) for w in caught)
    r = float(np.corrcoef(x["a"], x["b"])[0, 1])
    assert row["alpha_std"] == pytest.approx(2 * r / (1 + r), abs=1e-12)
    assert np.isnan(row["omega_total"])
    assert "Spearman-Brown" in row["note"] and "not identified" in row["note"]


def test_default_plan_fits_only_the_outputs_the_instrument_measures() -> None:
    # The case's instrument has a perceptions construct and no relationships construct: the
    # default plan must not ask for a model of an outcome that cannot exist.
    from trackii_eval.analysis import default_plan

    study = Study.load(CASE)
    outcomes = {m.outcome for m in default_plan(study.config, study.instrument).models}
    assert outcomes == {"perceptions"}


def test_no_default_model_is_one_clear_error_not_a_validation_crash() -> None:
    # An instrument whose constructs are named otherwise (as `init` may draft them): the default
    # plan has nothing to fit and says what to do, instead of an internal ValidationError.
    from trackii_eval.analysis import default_plan
    from trackii_eval.errors import ModelError

    study = Study.load(CASE)
    con = study.instrument.constructs["perceptions"]
    other = study.instrument.model_copy(update={"constructs": {"feelings": con}})
    with pytest.raises(ModelError, match="write an analysis plan"):
        default_plan(study.config, other)
