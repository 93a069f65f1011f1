"""The numeric fast path builds exactly formulaic's matrix, names and column order."""

from __future__ import annotations

import numpy as np
import pytest
from formulaic import model_matrix

from trackii_eval.models.growth.design import _fast_numeric
from trackii_eval.models.growth.simulate import simulate_panel


@pytest.mark.parametrize("rhs", [
    "wave*treated", "1 + wave + treated + wave:treated", "(wave + post) * treated", "0 + wave",
    "treated*wave", "wave + post + wave:post:treated",
])
def test_fast_path_equals_formulaic(rhs: str) -> None:
    data = simulate_panel(50, seed=3)
    data["post"] = np.maximum(data["wave"] - 3, 0.0)
    fast = _fast_numeric(rhs, data)
    assert fast is not None
    X, spec, names = fast
    expected = model_matrix(rhs, data, output="pandas")
    assert names == list(expected.columns)
    np.testing.assert_array_equal(X, expected.to_numpy())
    # the lazily built spec gives the same matrix on new data (used by predict)
    again = spec.get_model_matrix(data.iloc[:7], output="pandas")
    np.testing.assert_array_equal(again.to_numpy(), expected.iloc[:7].to_numpy())


@pytest.mark.parametrize("rhs", ["wave*arm", "wave + I(wave**2)", "np.log(time + 1)"])
def test_other_terms_go_through_formulaic(rhs: str) -> None:
    data = simulate_panel(20, seed=3)
    assert _fast_numeric(rhs, data) is None
