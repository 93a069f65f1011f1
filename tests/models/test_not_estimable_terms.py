"""A factor observed at one level must not make its effect vanish from a mixed model's table.

Before the fix, ``(time + post_time) * arm`` on data holding only the dialogue arm returned
a table without any arm row and no warning: formulaic's reduced-rank coding gives a
one-level factor no column at all. Each fitter (growth, glmm, clmm) must keep every arm term
as a row with ``estimable=False`` and a note naming the reason, as the event study does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from trackii_eval.models.clmm.api import clmm
from trackii_eval.models.glmm.api import glmm
from trackii_eval.models.growth.api import growth

FORMULA_RHS = "(time + post_time) * arm + (1 | participant)"
ARM_TERMS = ["arm", "time:arm", "post_time:arm"]
REASON = "not estimable: arm has one level in the data: dialogue"


@pytest.fixture(scope="module")
def one_arm() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(40):
        b = rng.normal()
        for t in range(4):
            rows.append({"participant": f"p{i}", "time": t, "post_time": max(0, t - 2),
                         "arm": "dialogue", "y": b + 0.3 * t + rng.normal(),
                         "signup": int(rng.random() < 0.4), "ord": int(rng.integers(1, 5))})
    return pd.DataFrame(rows)


def _check(fit, caught) -> None:
    tab = fit.tidy().set_index("term")
    for term in ARM_TERMS:
        assert term in tab.index, f"{term} vanished from tidy()"
        assert not tab.loc[term, "estimable"]
        assert np.isnan(tab.loc[term, "estimate"])
        assert tab.loc[term, "note"] == REASON
        assert tab.loc[term, "role"] == "effect"
    assert tab.loc["time", "estimable"]  # identified terms are unaffected
    assert any(REASON in w for w in fit.warnings)
    assert any(REASON in str(w.message) for w in caught)
    # the rows survive a save/load round trip
    again = type(fit).from_dict(fit.to_dict()).tidy().set_index("term")
    assert again.loc["post_time:arm", "note"] == REASON


def _fit(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = call()
    return fit, caught


def test_growth_keeps_one_level_arm_terms(one_arm: pd.DataFrame) -> None:
    _check(*_fit(lambda: growth(f"y ~ {FORMULA_RHS}", one_arm)))


def test_glmm_keeps_one_level_arm_terms(one_arm: pd.DataFrame) -> None:
    _check(*_fit(lambda: glmm(f"signup ~ {FORMULA_RHS}", one_arm)))


def test_clmm_keeps_one_level_arm_terms(one_arm: pd.DataFrame) -> None:
    _check(*_fit(lambda: clmm(f"ord ~ {FORMULA_RHS}", one_arm)))


def test_two_arms_have_no_extra_rows(one_arm: pd.DataFrame) -> None:
    both = one_arm.assign(arm=np.where(one_arm["participant"].str[1:].astype(int) % 2,
                                       "dialogue", "comparison"))
    tab = growth(f"y ~ {FORMULA_RHS}", both).tidy()
    assert tab["estimable"].all()
    assert sum("arm[" in t for t in tab["term"]) == 3  # arm, time:arm, post_time:arm


def test_aliased_column_is_a_not_estimable_row() -> None:
    rng = np.random.default_rng(3)
    rows = [{"participant": f"p{i}", "time": t, "y": rng.normal() + 0.2 * t}
            for i in range(30) for t in range(3)]
    data = pd.DataFrame(rows)
    data["time2"] = 2 * data["time"]  # aliased with time: lme4 drops it
    fit, _ = _fit(lambda: growth("y ~ time + time2 + (1 | participant)", data))
    tab = fit.tidy().set_index("term")
    assert not tab.loc["time2", "estimable"]
    assert tab.loc["time2", "note"].startswith("not estimable: aliased")


def test_plan_contrast_on_a_vanished_term_is_not_estimable(one_arm: pd.DataFrame) -> None:
    from trackii_eval.analysis import _contrast

    fit, _ = _fit(lambda: growth(f"y ~ {FORMULA_RHS}", one_arm))
    row = _contrast(fit, "gap", {"time:arm": 1.0}).iloc[0]
    assert not row["estimable"] and np.isnan(row["estimate"])
    assert "arm has one level in the data: dialogue" in row["note"]
