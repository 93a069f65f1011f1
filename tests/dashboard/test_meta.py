"""Random-effects meta-analysis against metafor::rma (tests/fixtures/meta/make_fixtures.R)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.meta_analysis import combine_effects

from trackii_eval.dashboard.meta import random_effects

FIX = Path(__file__).parents[1] / "fixtures" / "meta"
CASES = pd.read_csv(FIX / "meta_cases.csv")
REF = pd.read_csv(FIX / "meta_metafor.csv")


@pytest.mark.parametrize("row", REF.to_dict("records"),
                         ids=lambda r: f"{r['case']}-{r['method']}-kh{r['knapp_hartung']}")
def test_matches_metafor(row):
    d = CASES[CASES["case"] == row["case"]]
    res = random_effects(d["yi"], d["sei"], method=row["method"],
                         knapp_hartung=bool(row["knapp_hartung"]))
    for field in ("estimate", "se", "ci_low", "ci_high", "tau2", "i2", "h2", "q"):
        assert getattr(res, field) == pytest.approx(row[field], rel=1e-6, abs=1e-8), field
    assert res.p == pytest.approx(row["p"], rel=1e-5, abs=1e-12)
    assert res.q_p == pytest.approx(row["q_p"], rel=1e-5, abs=1e-30)


def test_dl_matches_statsmodels():
    d = CASES[CASES["case"] == "dialogues"]
    ours = random_effects(d["yi"], d["sei"], method="DL")
    sm = combine_effects(d["yi"].to_numpy(), d["sei"].to_numpy() ** 2, method_re="chi2")
    assert ours.estimate == pytest.approx(sm.mean_effect_re, rel=1e-10)
    assert ours.tau2 == pytest.approx(sm.tau2, rel=1e-10)


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        random_effects([1.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        random_effects([1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="method"):
        random_effects([1.0, 2.0], [1.0, 1.0], method="PM")


def test_coverage_of_the_truth():
    # 400 simulated portfolios of 6 dialogues: the 95% Knapp-Hartung REML interval covers the
    # true mean close to 95% of the time (a check on the whole pipeline, not on one number)
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(400):
        se = rng.uniform(1.0, 3.0, 6)
        y = 9.0 + rng.normal(0, 2.0, 6) + rng.normal(0, se)
        r = random_effects(y, se, method="REML", knapp_hartung=True)
        hits += r.ci_low <= 9.0 <= r.ci_high
    assert 0.91 <= hits / 400 <= 0.99
