"""Longitudinal invariance vs lavaan (fixtures: tests/fixtures/lavaan/make_fixtures.R)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackii_eval.errors import ScoringError
from trackii_eval.scoring.invariance import (
    INVARIANCE_COLUMNS,
    InvarianceResult,
    measurement_invariance,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lavaan"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
ITEMS = ["i1", "i2", "i3", "i4"]
ALL_LEVELS = ("configural", "metric", "scalar", "strict")

# Same estimator, same sample moments, both optimisers run to convergence: measured relative
# chi-square differences are < 1e-10 and fit-index differences < 1e-7 (SRMR, whose lavaan value
# carries lavaan's own convergence tolerance). The tolerances below are far tighter than the
# 1e-3 of the brief but leave room for platform differences.
TOL_CHISQ_REL = 1e-6
TOL_INDEX = 1e-5


@pytest.fixture(scope="module")
def fits() -> dict[str, InvarianceResult]:
    out = {}
    for name in ("invariant", "drift"):
        data = pd.read_csv(FIXTURES / f"{name}.csv")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out[name] = measurement_invariance(
                data, items=ITEMS, wave_col="wave", id_col="participant", levels=ALL_LEVELS,
                missing="listwise",
            )
        WARNED[name] = [str(w.message) for w in caught]
    return out


WARNED: dict[str, list[str]] = {}


def test_warnings_only_for_listwise_deletion(fits: dict[str, InvarianceResult]) -> None:
    assert WARNED["invariant"] == []
    assert len(WARNED["drift"]) == 1
    assert "101 participant(s)" in WARNED["drift"][0]


@pytest.mark.parametrize("dataset", ["invariant", "drift"])
@pytest.mark.parametrize("level", ALL_LEVELS)
def test_fit_matches_lavaan(fits: dict[str, InvarianceResult], dataset: str, level: str) -> None:
    exp = EXPECTED[dataset][level]
    res = fits[dataset]
    row = res.table.set_index("model").loc[level]
    assert res.n == exp["nobs"]
    assert row["converged"]
    assert row["npar"] == exp["npar"]
    assert row["df"] == exp["df"]
    assert row["chisq"] == pytest.approx(exp["chisq"], rel=TOL_CHISQ_REL)
    assert row["p"] == pytest.approx(exp["pvalue"], abs=TOL_INDEX)
    for ours, theirs in [
        ("cfi", "cfi"),
        ("tli", "tli"),
        ("rmsea", "rmsea"),
        ("rmsea_ci_low", "rmsea.ci.lower"),
        ("rmsea_ci_high", "rmsea.ci.upper"),
        ("srmr", "srmr"),
    ]:
        assert row[ours] == pytest.approx(exp[theirs], abs=TOL_INDEX), ours


def test_invariant_panel_supports_every_level(fits: dict[str, InvarianceResult]) -> None:
    res = fits["invariant"]
    assert res.level == "strict"
    assert res.table["decision"].tolist() == ["baseline", "holds", "holds", "holds"]
    assert list(res.table.columns) == list(INVARIANCE_COLUMNS)


def test_intercept_drift_flags_the_scalar_step(fits: dict[str, InvarianceResult]) -> None:
    res = fits["drift"]
    table = res.table.set_index("model")
    assert table.loc["metric", "decision"] == "holds"
    assert table.loc["scalar", "decision"] == "violated"
    assert table.loc["scalar", "delta_cfi"] < -0.01
    assert table.loc["strict", "decision"] == "not assessed"
    assert res.level == "metric"
    assert res.n_dropped == 400 - res.n
    # The drifting item is the one the mean residuals point at.
    worst_item = res.mean_residuals.abs().max(axis=1).idxmax()
    assert worst_item == "i3"
    text = res.summary()
    assert "Highest level supported: metric." in text
    assert "item i3" in text
    assert "left out for missing answers" in text


def test_one_answer_per_row_input_gives_the_same_fit(fits: dict[str, InvarianceResult]) -> None:
    data = pd.read_csv(FIXTURES / "invariant.csv")
    long = data.melt(id_vars=["participant", "wave"], var_name="item", value_name="answer")
    res = measurement_invariance(long, items=ITEMS, item_col="item", value_col="answer")
    expected = fits["invariant"].table.iloc[:3]
    pd.testing.assert_frame_equal(res.table, expected, check_exact=False, rtol=1e-8)


def _simulate(n: int, drift: float, seed: int) -> pd.DataFrame:
    """Seeded 3-wave, 4-item panel; item q2's intercept moves by `drift` per wave."""
    rng = np.random.default_rng(seed)
    lam = np.array([1.0, 0.9, 0.8, 0.7])
    nu = np.array([3.0, 3.2, 2.9, 3.1])
    means = np.array([0.0, 0.3, 0.5])
    phi = np.array([[1.0, 0.6, 0.5], [0.6, 1.0, 0.6], [0.5, 0.6, 1.0]])
    eta = rng.multivariate_normal(means, phi, size=n)
    item_effect = rng.normal(scale=0.3, size=(n, 4))  # same-item residual covariance over time
    rows = []
    for t in range(3):
        shift = np.array([0.0, drift * t, 0.0, 0.0])
        y = nu + shift + eta[:, [t]] * lam + item_effect + rng.normal(scale=0.6, size=(n, 4))
        frame = pd.DataFrame(y, columns=["q1", "q2", "q3", "q4"])
        frame.insert(0, "wave", f"w{t + 1}")
        frame.insert(0, "participant", np.arange(n))
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def test_simulated_intercept_drift_is_flagged_and_no_drift_is_not() -> None:
    drifting = measurement_invariance(_simulate(500, 0.4, seed=11), items=["q1", "q2", "q3", "q4"])
    assert drifting.table["decision"].tolist() == ["baseline", "holds", "violated"]
    assert drifting.level == "metric"
    steady = measurement_invariance(_simulate(500, 0.0, seed=12), items=["q1", "q2", "q3", "q4"])
    assert steady.level == "scalar"
    assert steady.waves == ("w1", "w2", "w3")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"items": ["i1", "i2"]}, "at least 3 items"),
        ({"items": ITEMS, "waves": [1]}, "at least 2 waves"),
        ({"items": ITEMS, "waves": [1, 9]}, "have no rows"),
        ({"items": ITEMS, "levels": ("metric",)}, "levels must"),
        ({"items": ITEMS, "levels": ("configural", "scalar")}, "levels must"),
        ({"items": [*ITEMS[:3], "nope"]}, "not found"),
        ({"items": ITEMS, "item_col": "item"}, "both item_col and value_col"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    data = pd.read_csv(FIXTURES / "invariant.csv")
    with pytest.raises(ScoringError, match=match):
        measurement_invariance(data, **kwargs)


def test_repeated_participant_wave_rows_raise() -> None:
    data = pd.read_csv(FIXTURES / "invariant.csv")
    data = pd.concat([data, data.iloc[:2]], ignore_index=True)
    with pytest.raises(ScoringError, match="repeat"):
        measurement_invariance(data, items=ITEMS)


def test_too_few_participants_raise() -> None:
    data = pd.read_csv(FIXTURES / "invariant.csv")
    small = data[data["participant"].isin(data["participant"].unique()[:10])]
    with pytest.raises(ScoringError, match="more participants than variables"):
        measurement_invariance(small, items=ITEMS)
