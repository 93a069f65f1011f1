"""Which growth model: compare_growth against lme4's anova() (tests/fixtures/lme4, the
``anova`` entries of cases.json, made by make_fixtures.R)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from trackii_eval.errors import ModelError
from trackii_eval.models.growth import compare_growth, growth

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"
CASES = json.loads((FIX / "cases.json").read_text())


def _fits(case: str, ids: list[str]) -> dict:
    data = pd.read_csv(FIX / case / "data.csv")
    specs = {s["id"]: s for s in CASES["cases"][case]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {i: growth(specs[i].get("py", specs[i]["r"]), data, reml=specs[i]["reml"])
                for i in ids}


@pytest.mark.parametrize("item", CASES["anova"], ids=lambda it: it["case"])
def test_compare_growth_matches_lme4_anova(item: dict) -> None:
    exp = next(a for a in json.loads((FIX / item["case"] / "expected.json").read_text())
               ["extra"]["anova"] if a["models"] == item["models"])
    tab = compare_growth(_fits(item["case"], item["models"]))
    assert list(tab.index) == exp["order"]
    assert list(tab["npar"]) == exp["npar"]
    for ours, theirs in (("aic", "AIC"), ("bic", "BIC"), ("loglik", "logLik"),
                         ("deviance", "deviance")):
        assert_allclose(tab[ours], exp[theirs], atol=1e-3, rtol=0)
    ref = np.array([np.nan if v is None else v for v in exp["Chisq"]], dtype=float)
    assert_allclose(tab["chisq"], ref, atol=1e-3, rtol=0)
    assert_allclose(tab["df"], np.array([np.nan if v is None else v for v in exp["Df"]], float))
    ref_p = np.array([np.nan if v is None else v for v in exp["p"]], dtype=float)
    assert_allclose(tab["p_value"], ref_p, rtol=1e-3, atol=1e-12)
    assert (tab["criterion"] == "ML").all()
    # Akaike weights from lme4's AIC values.
    w = np.exp(-0.5 * (np.array(exp["AIC"]) - min(exp["AIC"])))
    assert_allclose(tab["aic_weight"], w / w.sum(), atol=1e-6)
    assert tab.attrs["prefer"]["aic"] == exp["order"][int(np.argmin(exp["AIC"]))]
    assert tab.attrs["prefer"]["bic"] == exp["order"][int(np.argmin(exp["BIC"]))]
    assert any("maximum likelihood" in n for n in tab.attrs["notes"])


def test_linear_against_piecewise_reads_as_documented() -> None:
    tab = compare_growth(_fits("compare", ["piecewise_reml", "linear_reml"]))
    assert list(tab.index) == ["linear_reml", "piecewise_reml"]  # fewest parameters first
    assert tab["nested"].iloc[1] is True and np.isnan(tab["chisq"].iloc[0])
    assert tab.loc["piecewise_reml", "df"] == 2
    assert tab[["delta_aic", "delta_bic"]].min().tolist() == [0.0, 0.0]


def test_non_nested_models_get_no_test_and_a_note() -> None:
    data = pd.read_csv(FIX / "compare" / "data.csv")
    a = growth("y ~ time + (time | participant)", data, reml=False)
    b = growth("y ~ post_time + arm + (1 | participant)", data, reml=False)
    tab = compare_growth({"time": a, "post": b})
    assert np.isnan(tab["p_value"]).all() and tab["nested"].iloc[1] is False
    assert any("not nested" in n for n in tab.attrs["notes"])
    assert tab.attrs["prefer"]["lrt"] == tab.index[0]


def test_refusals() -> None:
    data = pd.read_csv(FIX / "compare" / "data.csv")
    a = growth("y ~ time + (time | participant)", data, reml=False)
    with pytest.raises(ModelError, match="at least two"):
        compare_growth([a])
    short = growth("y ~ time + (time | participant)", data.iloc[:600], reml=False)
    with pytest.raises(ModelError, match="different numbers of rows"):
        compare_growth({"a": a, "b": short})
    other = data.assign(y=data["y"] + 1.0)
    with pytest.raises(ModelError, match="different responses"):
        compare_growth({"a": a, "b": growth("y ~ 1 + (time | participant)", other, reml=False)})
    with pytest.raises(ModelError, match="not a growth fit"):
        compare_growth({"a": a, "b": "y ~ time"})  # type: ignore[dict-item]


def test_the_plan_compares_its_growth_models_of_an_outcome(demo_run) -> None:
    """Issue 12: the linear and the piecewise perception models of the demo plan, side by side."""
    _, _, results, _ = demo_run
    tab = results.compare_growth("perceptions")
    assert list(tab.index) == ["perceptions_growth", "perceptions_durability"]
    assert tab["nested"].iloc[1] is True and tab["df"].iloc[1] == 2
    ml = [results.fits[n]._backend.refit_ml(results.fits[n]) for n in tab.index]
    assert_allclose(tab["chisq"].iloc[1], ml[0].deviance - ml[1].deviance, rtol=1e-9)
    assert_allclose(tab["aic"], [f.aic for f in ml], rtol=1e-12)
    with pytest.raises(ModelError, match="name the outcome"):
        results.compare_growth()
