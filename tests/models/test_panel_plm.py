"""Event-study estimates and clustered standard errors against R's plm (tests/fixtures/plm).

The fixtures are made by ``tests/fixtures/plm/make_fixtures.R`` (plm 2.6, sandwich 3.0); the
clustered conventions are plm's ``vcovHC(..., cluster = "group")`` with ``type = "HC0"``,
``"HC1"`` and ``"sss"`` (Stata's xtreg, fe vce(cluster)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats as sps

from trackii_eval.errors import ModelError
from trackii_eval.models import panel as panel_mod
from trackii_eval.models.panel import cluster_scale, event_study

FIX = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = json.loads((FIX / "plm" / "expected.json").read_text())
CASE = FIX / "cases" / "event-study-arm-missing-at-a-wave"
CONVENTIONS = {"sss": "se_sss", "hc1": "se_HC1", "none": "se_HC0"}


def _r_terms(names: list[str]) -> list[str]:
    return [n.replace("dialogue_wave", "dialogue:wave") for n in names]


@pytest.mark.parametrize("name", ["sim_T6", "sim_T2"])
@pytest.mark.parametrize("small", list(CONVENTIONS))
def test_event_study_matches_plm_twoways_within_and_clustered_se(name: str, small: str) -> None:
    data = pd.read_csv(FIX / "plm" / f"{name}.csv")
    exp = EXPECTED[name]
    fit = event_study(data, "y", small=small)
    tab = fit.tidy().set_index("term")
    terms = _r_terms(list(exp["coef"]))
    assert list(tab.index) == terms
    assert_allclose(tab.loc[terms, "estimate"], list(exp["coef"].values()), rtol=1e-9)
    assert_allclose(tab.loc[terms, "std_error"], list(exp[CONVENTIONS[small]].values()),
                    rtol=1e-8)
    assert fit.record.n_obs == exp["nobs"]
    assert fit.record.n_groups == {"participant": exp["n_groups"]}
    # t reference with G - 1 df, as Stata and fixest use for clustered inference
    g = exp["n_groups"]
    assert (tab["df"] == g - 1).all()
    t = tab["estimate"] / tab["std_error"]
    assert_allclose(tab["p_value"], 2 * sps.t.sf(np.abs(t), g - 1), rtol=1e-10)


def test_clustered_se_no_longer_counts_participant_effects() -> None:
    # The old factor counted the participant effects nested in the clusters: with 6 waves its
    # SEs were ~11% too large and with 2 waves ~46% (issue 12). Ours equal plm's to 1e-8.
    for name, too_large in (("sim_T6", 1.10), ("sim_T2", 1.40)):
        data = pd.read_csv(FIX / "plm" / f"{name}.csv")
        ours = np.array(event_study(data, "y", small="hc1").std_error)
        plm = np.array(list(EXPECTED[name]["se_HC1"].values()))
        assert np.abs(ours / plm - 1).max() < 1e-8
        assert (plm * too_large > ours).all()


def test_cluster_scale_conventions() -> None:
    assert cluster_scale("sss", 200, 2, 10) == pytest.approx(10 / 9 * 199 / 198)
    assert cluster_scale("sss", 200, 2, 10, n_stata_extra=1) == pytest.approx(10 / 9 * 199 / 198)
    # xtreg, fe with two slopes counts K' = 3 (the constant it reports)
    assert cluster_scale("stata", 200, 2, 10, n_stata_extra=1) == pytest.approx(
        10 / 9 * 199 / 197)
    assert cluster_scale("hc1", 200, 2, 10) == pytest.approx(200 / 198)
    assert cluster_scale("none", 200, 2, 10) == 1.0
    with pytest.raises(ModelError, match="at least 2 clusters"):
        cluster_scale("sss", 10, 1, 1)
    with pytest.raises(ModelError, match="convention"):
        cluster_scale("HC3", 10, 1, 5)


# ----------------------------------------------------------------- coverage (shared case)
def test_case_no_comparison_at_wave3_reports_it_not_estimable() -> None:
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    fit = event_study(data, "perceptions", small="hc1")
    tab = fit.tidy().set_index("term")
    exp = EXPECTED["case_a_no_comparison_w3"]
    # plm's two-way within estimator: 6.3950 and 6.4275
    assert_allclose(tab.loc[["dialogue:wave2", "dialogue:wave4"], "estimate"],
                    [6.3950, 6.4275], atol=5e-5)
    assert_allclose(tab.loc[["dialogue:wave2", "dialogue:wave4"], "estimate"],
                    list(exp["coef"].values()), rtol=1e-9)
    assert_allclose(tab.loc[["dialogue:wave2", "dialogue:wave4"], "std_error"],
                    list(exp["se_HC1"].values()), rtol=1e-8)
    w3 = tab.loc["dialogue:wave3"]
    assert not w3["estimable"] and np.isnan(w3["estimate"])
    assert "no comparison participant observed at wave 3" in w3["note"]
    assert any("wave3" in w and "not estimable" in w for w in fit.warnings)


def test_stata_convention_differs_from_sss_only_by_the_constant_and_wave_dummies() -> None:
    data = pd.read_csv(FIX / "plm" / "sim_T6.csv")
    sss = np.array(event_study(data, "y").std_error)
    stata = np.array(event_study(data, "y", small="stata").std_error)
    n, k = EXPECTED["sim_T6"]["nobs"], 5
    # xtreg y i.wave##i.treated, fe: K' = 5 effects + 5 wave dummies + constant
    assert_allclose(stata / sss, np.sqrt((n - k) / (n - k - 6)), rtol=1e-12)


def test_case_no_dialogue_at_wave3_is_not_a_library_error() -> None:
    data = pd.read_csv(CASE / "b_no_dialogue_w3.csv")
    fit = event_study(data, "perceptions")
    tab = fit.tidy().set_index("term")
    assert tab["estimable"].tolist() == [True, False, True]
    assert "no dialogue participant observed at wave 3" in tab.loc["dialogue:wave3", "note"]
    assert np.isfinite(tab.loc[["dialogue:wave2", "dialogue:wave4"], "std_error"]).all()


def test_no_variation_in_treatment_is_not_estimable() -> None:
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    data = data[data["treated"] == 1]
    fit = event_study(data, "perceptions")
    tab = fit.tidy()
    assert not tab["estimable"].any()
    assert tab["note"].str.contains("no variation in treatment").all()


def test_baseline_without_an_arm_makes_every_effect_not_estimable() -> None:
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    data = data[~((data["wave"] == 1) & (data["treated"] == 0))]
    tab = event_study(data, "perceptions").tidy()
    assert not tab["estimable"].any()
    assert tab["note"].str.contains("baseline wave 1").all()


def test_single_wave_is_reported_not_estimable() -> None:
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    fit = event_study(data[data["wave"] == 1], "perceptions")
    assert fit.tidy().empty
    assert any("only wave 1" in w and "not estimable" in w for w in fit.warnings)


def test_a_wave_without_the_outcome_keeps_its_term_not_estimable() -> None:
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    data.loc[data["wave"] == 4, "perceptions"] = np.nan  # e.g. the item was not asked
    tab = event_study(data, "perceptions").tidy().set_index("term")
    assert list(tab.index) == ["dialogue:wave2", "dialogue:wave3", "dialogue:wave4"]
    assert tab["estimable"].tolist() == [True, False, False]
    assert "'perceptions' was not observed at wave 4" in tab.loc["dialogue:wave4", "note"]
    data.loc[data["wave"] == 1, "perceptions"] = np.nan
    tab = event_study(data, "perceptions").tidy()
    assert not tab["estimable"].any()
    assert tab["note"].str.contains("not observed at the baseline wave 1").all()


def test_treatment_changing_within_a_person_is_a_model_error() -> None:
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    data.loc[data.index[0], "treated"] = 1 - data.loc[data.index[0], "treated"]
    with pytest.raises(ModelError, match="changes within a participant"):
        event_study(data, "perceptions")


def test_library_exception_becomes_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from linearmodels.panel import PanelOLS

    def broken(*args, **kwargs):
        raise ValueError("exog does not have full column rank")

    monkeypatch.setattr(PanelOLS, "fit", broken)
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    with pytest.raises(ModelError, match=r"cannot identify the model.*full column rank"):
        event_study(data, "perceptions")


def test_library_warnings_are_kept_on_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    from linearmodels.panel import PanelOLS

    real = PanelOLS.fit

    def noisy(self, *args, **kwargs):
        warnings.warn("something the library noticed\nover two lines", UserWarning, stacklevel=1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PanelOLS, "fit", noisy)
    data = pd.read_csv(CASE / "a_no_comparison_w3.csv")
    fit = event_study(data, "perceptions")
    assert "UserWarning: something the library noticed over two lines" in fit.warnings
    assert panel_mod.PanelFit.from_dict(fit.to_dict()).warnings == fit.warnings
