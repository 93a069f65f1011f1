"""CR2 (Bell-McCaffrey) standard errors with Satterthwaite df against R clubSandwich."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackii_eval.errors import ModelError
from trackii_eval.models.cr2 import cr2, within_design
from trackii_eval.models.did import sun_abraham, twfe_did
from trackii_eval.models.panel import event_study

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "clubsandwich"
EXPECTED = json.loads((HERE / "expected.json").read_text())
TERMS = [f"dialogue_wave{w}" for w in (2, 3, 4)]


@pytest.fixture(scope="module")
def es() -> pd.DataFrame:
    return pd.read_csv(HERE / "es_panel.csv")


@pytest.fixture(scope="module")
def did() -> pd.DataFrame:
    return pd.read_csv(HERE / "did_panel.csv")


def _close(row: pd.Series, ref: dict) -> None:
    assert row["estimate"] == pytest.approx(ref["estimate"], rel=1e-9)
    assert row["std_error"] == pytest.approx(ref["se"], rel=1e-9)
    assert row["df"] == pytest.approx(ref["df"], rel=1e-8)
    assert row["p_value"] == pytest.approx(ref["p_value"], rel=1e-7)


@pytest.mark.parametrize("cluster", ["group", None])
def test_event_study_cr2_matches_clubsandwich(es: pd.DataFrame, cluster: str | None) -> None:
    fit = event_study(es, "y", small="cr2", cluster=cluster)
    tab = fit.tidy().set_index("term")
    for source in ("lm", "plm") if cluster else ("lm",):
        ref = EXPECTED[f"es_{source}_cluster_{cluster or 'participant'}"]
        for term in TERMS:
            _close(tab.loc[term.replace("_wave", ":wave")], ref[term])
    assert "CR2" in fit.record.vcov and "Satterthwaite" in fit.record.vcov
    if cluster:
        assert fit.record.n_groups == {"participant": 64, "group": 6}
        # six clusters leave about four degrees of freedom, far from CR1's G - 1 = 5 only
        # in name: the reference distribution is what changes the interval
        assert (tab["df"] < 4.5).all()


@pytest.mark.parametrize("cluster", ["group", None])
def test_twfe_did_cr2_matches_clubsandwich(did: pd.DataFrame, cluster: str | None) -> None:
    fit = twfe_did(did, "y", cluster=cluster, inference="cr2")
    row = fit.tidy().iloc[0]
    for source in ("lm", "plm"):
        _close(row, EXPECTED[f"did_{source}_cluster_{cluster or 'participant'}"]["D"])


def test_contrast_df_matches_linear_contrast(es: pd.DataFrame) -> None:
    frame = es.assign(**{t: es["treated"] * (es["wave"] == int(t[-1])) for t in TERMS})
    x, y, names = within_design(frame, "participant", "wave", TERMS, "y")
    fit = cr2(x, y, frame["group"].to_numpy())
    c = np.zeros(len(names))
    c[:3] = 1 / 3
    ref = EXPECTED["es_lm_cluster_group_mean"]
    assert float(c @ fit.beta) == pytest.approx(ref["estimate"], rel=1e-9)
    assert float(np.sqrt(c @ fit.vcov @ c)) == pytest.approx(ref["se"], rel=1e-9)
    assert fit.contrast_df(c) == pytest.approx(ref["df"], rel=1e-8)
    # lincom of the fit uses the smallest df of the terms it combines (conservative)
    es_fit = event_study(es, "y", small="cr2", cluster="group")
    row = es_fit.lincom({t.replace("_wave", ":wave"): 1 / 3 for t in TERMS}).iloc[0]
    assert row["std_error"] == pytest.approx(ref["se"], rel=1e-9)
    assert row["df"] == pytest.approx(min(es_fit.df))


def test_cr2_is_unbiased_under_the_working_model() -> None:
    # Bell-McCaffrey: with independent errors of variance 1, E[V_CR2] = (X'X)^-1 exactly.
    # V_CR2(y) is a quadratic form in y whose mean over e ~ N(0, I) is the sum of V_CR2 over
    # the unit vectors (E[ee'] = I = sum_k e_k e_k'): an exact expectation, no simulation.
    rng = np.random.default_rng(3)
    n_cl, m = 4, 6
    cluster = np.repeat(np.arange(n_cl), m)
    x = np.column_stack([np.ones(n_cl * m), rng.normal(size=n_cl * m),
                         (cluster < 2).astype(float)])
    expected = sum(cr2(x, e, cluster).vcov for e in np.eye(len(cluster)))
    np.testing.assert_allclose(expected, np.linalg.inv(x.T @ x), rtol=1e-9, atol=1e-12)
    # CR1 (CR0 times G/(G-1)(N-1)/(N-K)) is not: it misses the truth on this design
    h = x @ np.linalg.inv(x.T @ x) @ x.T
    resid = np.eye(len(cluster)) - h
    bread = np.linalg.inv(x.T @ x)
    cr0 = sum(bread @ x[cluster == j].T @ resid[np.ix_(cluster == j, cluster == j)]
              @ x[cluster == j] @ bread for j in range(n_cl))
    scale = n_cl / (n_cl - 1) * (len(cluster) - 1) / (len(cluster) - 3)
    assert not np.allclose(np.diag(cr0 * scale), np.diag(bread), rtol=0.02)


def test_cr2_refusals(es: pd.DataFrame, did: pd.DataFrame) -> None:
    with pytest.raises(ModelError, match="offered with small='cr2'"):
        event_study(es, "y", cluster="group")
    gap = es.assign(group=es["group"].where(es["treated"] == 1))
    with pytest.raises(ModelError, match="have no 'group'"):
        event_study(gap, "y", small="cr2", cluster="group")
    with pytest.raises(ModelError, match="offered for twfe_did and the event study"):
        sun_abraham(did, "y", cluster="group", inference="cr2")
    with pytest.raises(ModelError, match="at least 2 clusters"):
        cr2(np.ones((4, 1)), np.arange(4.0), np.zeros(4))
