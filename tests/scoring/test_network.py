"""Network measures equal hand-computed values on a small roster."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from trackii_eval.scoring.network import network_measures

PEOPLE = pd.DataFrame({
    "participant": ["a1", "a2", "b1", "b2", "b3"],
    "side": ["A", "A", "B", "B", "B"],
    "dialogue": ["D"] * 5,
})
TIES = pd.DataFrame(
    [
        # wave 1: a1->b1 (3), b1->a1 (1), a1->a2 (same side, ignored), a2->b2 (2)
        (1, "a1", "b1", 3), (1, "b1", "a1", 1), (1, "a1", "a2", 3), (1, "a2", "b2", 2),
        # wave 2: a1->b1 persists one way, a2->b3 (1), b3->a2 (2), b2->a1 (3)
        (2, "a1", "b1", 1), (2, "a2", "b3", 1), (2, "b3", "a2", 2), (2, "b2", "a1", 3),
    ],
    columns=["wave", "participant", "contact", "strength"],
)


ALL = pd.DataFrame({"participant": list(PEOPLE["participant"]) * 2, "wave": [1] * 5 + [2] * 5})


def test_hand_computed_measures() -> None:
    out = network_measures(TIES, PEOPLE, ALL).set_index("wave")
    # wave 1: 5 nodes; possible directed cross pairs 2*2*3 = 12; cross ties 3
    w1 = out.loc[1]
    assert w1["n_participants"] == 5
    assert w1["cross_ties"] == 3
    assert w1["cross_density"] == pytest.approx(3 / 12)
    # reciprocated: a1<->b1 (2 of the 3 directed ties)
    assert w1["cross_reciprocity"] == pytest.approx(2 / 3)
    # working (strength >= 2 either way): {a1,b1}, {a2,b2}
    assert w1["working_ties"] == 2
    assert math.isnan(w1["persisting"])
    w2 = out.loc[2]
    assert w2["cross_ties"] == 4
    assert w2["cross_density"] == pytest.approx(4 / 12)
    assert w2["cross_reciprocity"] == pytest.approx(2 / 4)
    # working: {a2,b3} (b3->a2 is 2), {b2,a1} (3); {a1,b1} only strength 1 now
    assert w2["working_ties"] == 2
    # previous pairs {a1,b1}, {a2,b2}; still tied: {a1,b1} -> 1/2
    assert w2["persisting"] == pytest.approx(0.5)


def test_default_nodes_are_those_in_the_roster() -> None:
    out = network_measures(TIES, PEOPLE).set_index("wave")
    # wave 1 roster mentions a1, a2, b1, b2: possible 2*2*2 = 8
    assert out.loc[1, "n_participants"] == 4
    assert out.loc[1, "cross_density"] == pytest.approx(3 / 8)


def test_respondents_restrict_nodes() -> None:
    respondents = pd.DataFrame({"participant": ["a1", "b1", "b2"], "wave": [1, 1, 1]})
    out = network_measures(TIES, PEOPLE, respondents).iloc[0]
    # nodes a1, b1, b2: possible 2*1*2 = 4; ties among them: a1->b1, b1->a1
    assert out["n_participants"] == 3
    assert out["cross_density"] == pytest.approx(2 / 4)
    assert out["cross_reciprocity"] == pytest.approx(1.0)


def test_demo_network_grows_during_programme(demo_run) -> None:
    study = demo_run[0]
    net = study.store.query("SELECT * FROM network")
    by_wave = net.groupby("wave")["cross_density"].mean()
    assert by_wave.loc[2] > 2 * by_wave.loc[1]
