"""The results protocol: every result type satisfies it and survives to_dict/from_dict exactly;
compare() sets the demo plan's fits side by side; the report reads only the protocol."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from trackii_eval.errors import ModelError
from trackii_eval.models.growth import growth
from trackii_eval.models.growth.results import GrowthFit
from trackii_eval.models.panel import PanelFit, event_study
from trackii_eval.models.panel_estimators import panel
from trackii_eval.models.results import (
    TIDY_COLUMNS,
    ModelResult,
    compare,
    result_from_dict,
    term_role,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SLEEP = pd.read_csv(FIX / "lme4" / "sleepstudy" / "data.csv")
GRUNFELD = pd.read_csv(FIX / "plm" / "grunfeld.csv")
CASE_A = pd.read_csv(FIX / "cases" / "event-study-arm-missing-at-a-wave" /
                     "a_no_comparison_w3.csv")


def _crossed() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for p in range(30):
        u = rng.normal(0, 2)
        for r in range(8):
            rows.append({"participant": f"p{p}", "rater": f"r{r}", "t": r / 7,
                         "y": 10 + u + rng.normal(0, 1) + 0.5 * r / 7 + rng.normal(0, 1)})
    return pd.DataFrame(rows)


def _growth_arm() -> pd.DataFrame:
    data = CASE_A.rename(columns={"perceptions": "y"}).copy()
    data["time"] = data["wave"] - 1.0
    data["arm"] = np.where(data["treated"] == 1, "dialogue", "comparison")
    return data


def _fits() -> dict[str, ModelResult]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fallback = growth("y ~ t + (1 | participant) + (1 | rater)", _crossed())
    return {
        "growth_reml": growth("Reaction ~ Days + (Days | Subject)", SLEEP),
        "growth_ml_arm": growth("y ~ time * arm + (1 | participant)", _growth_arm(), reml=False),
        "growth_statsmodels": fallback,
        "event_study_not_estimable": event_study(CASE_A, "perceptions"),
        "within_twoways": panel(GRUNFELD, "inv", ["value", "capital"], entity="firm",
                                time="year", time_effects=True),
        "random_classic": panel(GRUNFELD, "inv", ["value", "capital"], estimator="random",
                                entity="firm", time="year", vcov="classic"),
        "first_difference": panel(GRUNFELD, "inv", ["value", "capital"],
                                  estimator="first_difference", entity="firm", time="year"),
    }


FITS = _fits()


@pytest.mark.parametrize("name", list(FITS))
def test_every_result_type_round_trips_losslessly(name: str) -> None:
    fit = FITS[name]
    assert isinstance(fit, ModelResult)
    text = json.dumps(fit.to_dict(), allow_nan=False)  # plain JSON, no NaN tokens
    back = result_from_dict(json.loads(text))
    assert type(back) is type(fit)
    assert back.to_dict() == fit.to_dict()
    for level in (0.95, 0.8):
        pd.testing.assert_frame_equal(back.tidy(level=level), fit.tidy(level=level))
    assert back.summary() == fit.summary()
    assert back.summary_html() == fit.summary_html()
    assert back.describe() == fit.describe()
    assert back.record == fit.record
    assert back.warnings == fit.warnings


@pytest.mark.parametrize("name", list(FITS))
def test_tidy_has_the_fixed_columns_and_honours_level(name: str) -> None:
    fit = FITS[name]
    wide, narrow = fit.tidy(level=0.99), fit.tidy(level=0.5)
    assert tuple(wide.columns) == TIDY_COLUMNS
    ok = wide["estimable"].to_numpy()
    assert ((wide["ci_high"] - wide["ci_low"])[ok] > (narrow["ci_high"] - narrow["ci_low"])[ok]
            ).all()
    assert_allclose(wide["statistic"][ok], (wide["estimate"] / wide["std_error"])[ok])
    with pytest.raises(ModelError, match="level"):
        fit.tidy(level=95)


def test_fit_record_names_data_code_and_convergence() -> None:
    rec = FITS["growth_reml"].record
    assert rec.converged and rec.n_obs == 180 and rec.n_groups == {"Subject": 18}
    assert rec.n_evals and rec.tolerances["gradient"] > 0
    assert len(rec.data_fingerprint) == 64
    assert {"trackii_eval", "numpy", "scipy", "pandas"} <= set(rec.versions)
    # the same data give the same fingerprint, other data another one
    again = growth("Reaction ~ Days + (Days | Subject)", SLEEP.sample(frac=1, random_state=1)
                   .sort_index())
    assert again.record.data_fingerprint == rec.data_fingerprint
    other = growth("Reaction ~ Days + (Days | Subject)", SLEEP.iloc[:-10])
    assert other.record.data_fingerprint != rec.data_fingerprint
    statsmodels_rec = FITS["growth_statsmodels"].record
    assert statsmodels_rec.engine == "statsmodels"
    assert any("statsmodels" in w for w in statsmodels_rec.warnings)


def test_roles_mark_the_arm_contrasts() -> None:
    assert term_role("time:arm[T.dialogue]") == "effect"
    assert term_role("arm[T.dialogue]") == "effect"
    assert term_role("C(arm, Treatment('comparison'))[T.dialogue]:time") == "effect"
    assert term_role("time") == term_role("Intercept") == term_role("armour") == "other"
    tab = FITS["growth_ml_arm"].tidy().set_index("term")
    assert tab["role"].to_dict() == {"Intercept": "other", "arm[T.dialogue]": "effect",
                                     "time": "other", "time:arm[T.dialogue]": "effect"}
    assert set(FITS["event_study_not_estimable"].tidy()["role"]) == {"effect"}


def test_lincom_equals_the_hand_computed_combination() -> None:
    es = FITS["event_study_not_estimable"]
    row = es.lincom({"dialogue:wave2": 1, "dialogue:wave4": -1}, name="w2 - w4").iloc[0]
    cov = np.array(es.vcov)
    assert row["estimate"] == pytest.approx(es.estimate[0] - es.estimate[2])
    assert row["std_error"] == pytest.approx(np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))
    blocked = es.lincom({"dialogue:wave3": 1}).iloc[0]
    assert not blocked["estimable"] and "not estimable" in blocked["note"]
    with pytest.raises(ModelError, match="not terms of this model"):
        es.lincom({"time": 1})
    g = FITS["growth_ml_arm"]
    gl = g.lincom({"time": 1, "time:arm[T.dialogue]": 1}).iloc[0]
    ref = g.contrast({"time": 1, "time:arm[T.dialogue]": 1}).iloc[0]
    assert gl["estimate"] == pytest.approx(ref["estimate"])
    assert gl["df"] == pytest.approx(ref["df"]) and gl["role"] == "effect"


def test_result_from_dict_refuses_unknown_kinds_and_schemas() -> None:
    rec = FITS["within_twoways"].to_dict()
    with pytest.raises(ModelError, match="kind 'no_such_kind'"):
        result_from_dict({**rec, "kind": "no_such_kind"})
    with pytest.raises(ModelError, match="schema 99"):
        result_from_dict({**rec, "schema": 99})
    assert isinstance(result_from_dict(rec), PanelFit)
    assert isinstance(result_from_dict(FITS["growth_reml"].to_dict()), GrowthFit)


def test_compare_sets_models_side_by_side() -> None:
    fe = panel(GRUNFELD, "inv", ["value", "capital"], entity="firm", time="year",
               vcov="classic")
    re = FITS["random_classic"]
    cmp = compare({"FE": fe, "RE": re}, show="ci")
    table = cmp.table
    assert list(table.columns) == ["FE", "RE"]
    assert table.loc["(Intercept)", "FE"] == "" and table.loc["(Intercept)", "RE"] != ""
    low, high = fe.tidy().set_index("term").loc["value", ["ci_low", "ci_high"]]
    assert table.loc["value", "FE"].endswith(f"[{low:.3f}, {high:.3f}]")
    assert table.loc["Observations"].tolist() == ["200", "200"]
    assert "different data" not in cmp.to_text()
    assert "<table" in cmp.to_html()
    mixed = compare([FITS["event_study_not_estimable"], FITS["growth_reml"]])
    assert mixed.table.loc["dialogue:wave3", "(1)"] == "not estimable"
    assert "different data" in mixed.to_text()
    with pytest.raises(ModelError):
        compare({})


def test_compare_on_the_demo_plan_fits(demo_run) -> None:
    study, _, results, _ = demo_run
    live = results.compare()
    assert list(live.table.columns) == list(results.fits)
    # every fitted model's effect terms appear, and every cell of an effect names a number
    effects = results.compare(roles=["effect"])
    for name, fit in results.fits.items():
        tab = fit.tidy()
        for term in tab.loc[tab["role"] == "effect", "term"]:
            assert effects.table.loc[term, name] != ""
        assert live.table.loc["Observations", name] == str(fit.record.n_obs)
    # the stored JSON gives the same table: the store keeps the fits losslessly
    stored = {name: result_from_dict(res["fit"]) for name, res in study.store.results().items()
              if "fit" in res}
    again = compare({name: stored[name] for name in results.fits})
    pd.testing.assert_frame_equal(again.table, live.table)
    print(effects.to_text())


def test_report_shows_effects_and_headline_contrasts_from_the_protocol(demo_run) -> None:
    _, _, results, report = demo_run
    text = Path(report).read_text(encoding="utf-8")
    assert "gap in yearly change after the programme" in text
    for fit in results.fits.values():
        for term in fit.tidy().query("role == 'effect'")["term"]:
            assert term in text


@pytest.mark.parametrize("name", list(FITS))
def test_summaries_show_the_table_record_and_warnings(name: str) -> None:
    fit = FITS[name]
    text, page = fit.summary(), fit.summary_html()
    fp = fit.record.data_fingerprint[:16]
    assert fp in text and fp in page
    assert "<table" in page and "<script" not in page
    for term in fit.tidy()["term"]:
        assert term in text
    for w in fit.warnings:
        assert w.split(":")[0] in text


def test_report_rows_come_from_stored_json_through_the_protocol() -> None:
    import pandas as pd

    from trackii_eval.errors import ReportError
    from trackii_eval.report.build import _effect_rows, _headline
    from trackii_eval.report.disclose import Publication

    fit = FITS["event_study_not_estimable"]
    stored = {"es": {"kind": "event_study", "spec": {"name": "es", "label": "by wave",
                                                     "outcome": "perceptions",
                                                     "headline": True},
                     "fit": json.loads(json.dumps(fit.to_dict()))}}
    # the rows hold numbers registered for disclosure control; .text is what would print
    scores = pd.DataFrame(columns=["construct", "score", "arm", "participant", "wave"])
    pub = Publication(5)

    def text(value: object) -> object:
        return getattr(value, "text", value)

    rows = {r["term"]: r for r in _effect_rows(stored, scores, pub)}
    assert list(rows) == ["dialogue:wave2", "dialogue:wave3", "dialogue:wave4"]
    assert text(rows["dialogue:wave2"]["estimate"]) == f"{fit.estimate[0]:.2f}"
    assert text(rows["dialogue:wave3"]["estimate"]) == "not estimable"
    assert "no comparison participant" in text(rows["dialogue:wave3"]["ci"])
    head = _headline(stored, None, scores, pub)  # type: ignore[arg-type]
    assert [r["label"] for r in head["rows"]] == list(rows)
    stale = {"old": {**stored["es"], "fit": {"effects": []}}}
    with pytest.raises(ReportError, match="refit"):
        _effect_rows(stale, scores, pub)
