"""Measurement invariance on everyone: FIML (lavaan's missing = "ml") against lavaan.

Fixtures: tests/fixtures/lavaan/make_fiml.R (expected_fiml.json; attrition.csv simulates
dropout after waves 1 and 2 that depends on the wave-1 score, plus blank answers).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackii_eval.errors import ScoringError
from trackii_eval.scoring.invariance import (
    InvarianceResult,
    _em_saturated,
    _fiml_m2ll,
    _patterns,
    measurement_invariance,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lavaan"
EXPECTED = json.loads((FIXTURES / "expected_fiml.json").read_text())
ITEMS = ["i1", "i2", "i3", "i4"]
ALL_LEVELS = ("configural", "metric", "scalar", "strict")
# lavaan stops its EM (h1) and optimiser at its own tolerances: measured differences are
# < 1e-8 relative in chi-square and < 2e-6 in SRMR.
TOL_CHISQ_REL = 1e-6
TOL_INDEX = 1e-5


@pytest.fixture(scope="module")
def fits() -> dict[str, InvarianceResult]:
    out = {}
    for name in ("drift", "attrition"):
        data = pd.read_csv(FIXTURES / f"{name}.csv")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FIML leaves no one out: nothing to warn about
            out[name] = measurement_invariance(data, items=ITEMS, levels=ALL_LEVELS)
    return out


@pytest.mark.parametrize("dataset", ["drift", "attrition"])
@pytest.mark.parametrize("level", ALL_LEVELS)
def test_fiml_matches_lavaan_missing_ml(
    fits: dict[str, InvarianceResult], dataset: str, level: str
) -> None:
    exp = EXPECTED[dataset][level]
    res = fits[dataset]
    row = res.table.set_index("model").loc[level]
    assert res.n == exp["nobs"] and res.missing == "ml"
    assert row["converged"] and exp["converged"]
    assert row["npar"] == exp["npar"] and row["df"] == exp["df"]
    assert row["chisq"] == pytest.approx(exp["chisq"], rel=TOL_CHISQ_REL)
    assert row["p"] == pytest.approx(exp["pvalue"], abs=TOL_INDEX)
    for ours, theirs in [("cfi", "cfi"), ("tli", "tli"), ("rmsea", "rmsea"),
                         ("rmsea_ci_low", "rmsea.ci.lower"), ("rmsea_ci_high", "rmsea.ci.upper"),
                         ("srmr", "srmr")]:
        assert row[ours] == pytest.approx(exp[theirs], abs=TOL_INDEX), ours


@pytest.mark.parametrize("dataset", ["drift", "attrition"])
def test_unrestricted_loglik_matches_lavaan(dataset: str) -> None:
    data = pd.read_csv(FIXTURES / f"{dataset}.csv")
    wide = data.pivot(index="participant", columns="wave", values=ITEMS)
    wide = wide[[(i, w) for w in sorted(data["wave"].unique()) for i in ITEMS]]
    pats = _patterns(wide.to_numpy(dtype=float))
    mu, sigma, ok = _em_saturated(pats)
    assert ok
    exp = EXPECTED[dataset]["configural"]
    assert -0.5 * _fiml_m2ll(sigma, mu, pats) == pytest.approx(exp["unrestricted.logl"],
                                                               abs=1e-6)
    # lavaan's chi-square is the likelihood ratio against this unrestricted model.
    assert 2 * (exp["unrestricted.logl"] - exp["logl"]) == pytest.approx(exp["chisq"], rel=1e-9)


def test_everyone_counts_where_listwise_keeps_the_stayers(
    fits: dict[str, InvarianceResult],
) -> None:
    data = pd.read_csv(FIXTURES / "attrition.csv")
    with pytest.warns(UserWarning, match="listwise"):
        lw = measurement_invariance(data, items=ITEMS, missing="listwise")
    fiml = fits["attrition"]
    assert fiml.n == 400 and fiml.n_dropped == 0
    assert lw.n + lw.n_dropped == 400 and lw.n < 200  # attrition decides who is checked
    assert "Full-information ML on everyone who answered: n = 400" in fiml.summary()
    # Complete data: FIML is ordinary ML (same table as listwise).
    full = pd.read_csv(FIXTURES / "invariant.csv")
    a = measurement_invariance(full, items=ITEMS)
    b = measurement_invariance(full, items=ITEMS, missing="listwise")
    cols = ["chisq", "df", "cfi", "tli", "rmsea", "srmr"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols], check_exact=False, rtol=1e-7)


def test_fiml_refuses_pairs_never_answered_together() -> None:
    data = pd.read_csv(FIXTURES / "invariant.csv")
    # Nobody answers wave 3 except people who skipped wave 2 entirely.
    w2 = data["wave"] == 2
    w3 = data["wave"] == 3
    first = data["participant"].isin(data["participant"].unique()[:200])
    data.loc[w2 & first, ITEMS] = np.nan
    data.loc[w3 & ~first, ITEMS] = np.nan
    with pytest.raises(ScoringError, match="no participant answered both"):
        measurement_invariance(data, items=ITEMS)
    with pytest.raises(ScoringError, match="missing must be"):
        measurement_invariance(data, items=ITEMS, missing="pairwise")  # type: ignore[arg-type]
