"""Within, random-effects, first-difference, between and pooled estimators and the Hausman test
against R's plm on the Grunfeld data (tests/fixtures/plm/make_fixtures.R)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from trackii_eval.errors import ModelError
from trackii_eval.models.panel_estimators import hausman, panel

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "plm"
EXPECTED = json.loads((FIX / "expected.json").read_text())
GRUNFELD = pd.read_csv(FIX / "grunfeld.csv")
KW = {"entity": "firm", "time": "year"}


def _fit(**kwargs):
    return panel(GRUNFELD, "inv", ["value", "capital"], **KW, **kwargs)


@pytest.mark.parametrize(("estimator", "key"), [
    ("within", "grunfeld_within"), ("random", "grunfeld_random"),
    ("first_difference", "grunfeld_fd"), ("between", "grunfeld_between"),
    ("pooled", "grunfeld_pooling"),
])
def test_estimators_match_plm_with_classic_se(estimator: str, key: str) -> None:
    fit = _fit(estimator=estimator, vcov="classic")
    exp = EXPECTED[key]
    tab = fit.tidy().set_index("term")
    assert list(tab.index) == list(exp["coef"])
    assert_allclose(tab["estimate"], list(exp["coef"].values()), rtol=1e-10)
    assert_allclose(tab["std_error"], list(exp["se_classic"].values()), rtol=1e-10)
    assert fit.record.n_obs == exp["nobs"]


@pytest.mark.parametrize(("time_effects", "key"), [(False, "grunfeld_within"),
                                                   (True, "grunfeld_twoways")])
@pytest.mark.parametrize(("small", "se"), [("sss", "se_sss"), ("hc1", "se_HC1"),
                                           ("none", "se_HC0")])
def test_within_clustered_se_match_plm_vcovhc(time_effects: bool, key: str, small: str,
                                              se: str) -> None:
    fit = _fit(time_effects=time_effects, small=small)
    exp = EXPECTED[key]
    assert_allclose(fit.estimate, list(exp["coef"].values()), rtol=1e-10)
    assert_allclose(fit.std_error, list(exp[se].values()), rtol=1e-10)
    assert set(fit.tidy()["df"]) == {exp["n_groups"] - 1}


def test_hausman_matches_phtest_on_grunfeld() -> None:
    test = hausman(_fit(vcov="classic"), _fit(estimator="random", vcov="classic"))
    exp = EXPECTED["grunfeld_hausman"]
    # published: chi2 = 2.3304, df = 2, p-value = 0.3119
    assert test.statistic == pytest.approx(2.3304, abs=5e-5)
    assert test.statistic == pytest.approx(exp["statistic"], rel=1e-9)
    assert test.df == exp["df"] == 2
    assert test.p_value == pytest.approx(exp["p_value"], rel=1e-9)
    assert test.positive_definite and test.note == ""
    assert "chi2(2) = 2.3304" in test.summary()


def test_hausman_reports_a_non_positive_definite_difference() -> None:
    fe = _fit(vcov="classic")
    re = _fit(estimator="random", vcov="classic")
    # an RE covariance larger than FE's in one direction: V_FE - V_RE is indefinite
    cov = np.array(re.vcov)
    cov[1, 1] *= 5
    bad_re = dataclasses.replace(re, vcov=tuple(map(tuple, cov)))
    test = hausman(fe, bad_re)
    assert not test.positive_definite
    assert "not positive definite" in test.note


def test_hausman_refuses_clustered_or_mismatched_fits() -> None:
    with pytest.raises(ModelError, match="vcov='classic'"):
        hausman(_fit(), _fit(estimator="random", vcov="classic"))
    other = panel(GRUNFELD.iloc[:-20], "inv", ["value", "capital"], vcov="classic", **KW)
    with pytest.raises(ModelError, match="different data"):
        hausman(other, _fit(estimator="random", vcov="classic"))


def test_bad_requests_are_model_errors() -> None:
    with pytest.raises(ModelError, match="estimator must be one of"):
        _fit(estimator="gmm")
    with pytest.raises(ModelError, match="only for the within"):
        _fit(estimator="random", time_effects=True)
    with pytest.raises(ModelError, match="not in the data"):
        panel(GRUNFELD, "inv", ["nope"], **KW)
    with pytest.raises(ModelError, match="only one period"):
        panel(GRUNFELD[GRUNFELD["year"] == 1935], "inv", ["value"], **KW)
    with pytest.raises(ModelError, match="cannot identify"):
        # a regressor constant within firms is absorbed by the firm effects
        panel(GRUNFELD.assign(k=GRUNFELD["firm"] * 1.0), "inv", ["value", "k"], **KW)
