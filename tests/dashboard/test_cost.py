"""Cost-effectiveness: the simulation interval against the delta method, and targets."""

import math

import pytest

from trackii_eval.config import Funding, load_study_config
from trackii_eval.dashboard.cost import cost_per_additional_improver, target_status
from trackii_eval.errors import ConfigError


def test_large_samples_agree_with_the_delta_method():
    # 4000 per arm, 40% vs 20% improve: excess = n (p_d - p_c) = 800 improvers
    cost, n, xd, xc = 1_000_000.0, 4000, 1600, 800
    r = cost_per_additional_improver(cost, n, xd, n, xc, draws=40000)
    assert r.estimate == pytest.approx(cost / 800)
    pd_, pc = xd / n, xc / n
    se_diff = math.sqrt(pd_ * (1 - pd_) / n + pc * (1 - pc) / n)
    # delta method: se(C / (n d)) = C se(d) / (n d^2)
    se = cost * se_diff / (n * (pd_ - pc) ** 2)
    assert r.low == pytest.approx(cost / 800 - 1.96 * se, rel=0.02)
    assert r.high == pytest.approx(cost / 800 + 1.96 * se, rel=0.02)


def test_no_excess_is_unbounded():
    r = cost_per_additional_improver(100_000.0, 40, 8, 60, 12)
    assert math.isinf(r.estimate) and math.isinf(r.high)
    r = cost_per_additional_improver(100_000.0, 40, 14, 60, 12)
    assert math.isfinite(r.estimate) and math.isinf(r.high)  # excess compatible with zero


def test_bad_input():
    with pytest.raises(ValueError):
        cost_per_additional_improver(0.0, 10, 1, 10, 1)
    with pytest.raises(ValueError):
        cost_per_additional_improver(1.0, 10, 11, 10, 1)


def test_target_status():
    assert target_status(100, 200, 250, lower_is_better=True) == "met"
    assert target_status(300, 400, 250, lower_is_better=True) == "missed"
    assert target_status(200, 300, 250, lower_is_better=True) == "uncertain"
    assert target_status(0.35, 0.5, 0.3, lower_is_better=False) == "met"
    assert target_status(0.1, 0.2, 0.3, lower_is_better=False) == "missed"


def test_funding_names_declared_dialogues(tmp_path, demo_copy):
    text = (demo_copy / "study.yaml").read_text()
    text = text.replace("costs: {D1: 210000, D2: 260000, D3: 150000}",
                        "costs: {D1: 210000, D9: 5}")
    (demo_copy / "study.yaml").write_text(text)
    with pytest.raises(ConfigError, match="D9"):
        load_study_config(demo_copy / "study.yaml")
    with pytest.raises(ValueError):
        Funding(costs={"D1": -5})
