"""Cumulative-link mixed models against R's ordinal::clmm and an independent quadrature.

Fixtures: ``tests/fixtures/clmm/make_fixtures.R`` (ordinal's public ``wine`` data and simulated
panels: random slope, a rare top category, a near-singular fit), read without R.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, special, stats

from trackii_eval.errors import ModelError, UnsupportedModelError
from trackii_eval.models.clmm import ClmmFit, clmm
from trackii_eval.models.clmm._engine import Problem, loglik_and_gradient, marginal_loglik
from trackii_eval.models.clmm.api import _design
from trackii_eval.models.results import TIDY_COLUMNS, ModelResult, result_from_dict

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "clmm"
CASES = json.loads((FIX / "cases.json").read_text())


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIX / name)


@pytest.fixture(scope="module")
def fits() -> dict[str, ClmmFit]:
    return {name: clmm(c["formula"], _data(c["data"]), link=c["link"], nAGQ=c["nAGQ"])
            for name, c in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_agrees_with_ordinal_clmm(fits: dict[str, ClmmFit], name: str) -> None:
    ref, fit = CASES[name], fits[name]
    # never worse than R's optimum by more than 1e-3
    assert fit.loglik >= ref["logLik"] - 1e-3
    assert fit.loglik == pytest.approx(ref["logLik"], abs=5e-3)
    # clmm names thresholds "1|2"; effects are named by formulaic (armdialogue -> arm[T.dialogue])
    assert fit.threshold_names == tuple(ref["terms"][:fit.thresholds.size])
    assert_allclose(fit.estimates, ref["estimate"], atol=2e-3, rtol=1e-3)
    se = np.sqrt(np.diag(fit.vcov.to_numpy()))
    assert_allclose(se, ref["std_error"], rtol=2e-3)
    assert_allclose(fit.Sigma, np.reshape(ref["vcov"], fit.Sigma.shape), atol=2e-3, rtol=2e-3)
    assert fit.converged


def test_random_slope_boundary_is_flagged(fits: dict[str, ClmmFit]) -> None:
    fit = fits["slope_laplace"]
    corr = fit.random.dropna(subset=["corr"])["corr"].iloc[0]
    assert abs(corr) == pytest.approx(1.0, abs=1e-6)   # R's clmm lands there too
    assert fit.boundary
    assert any("boundary" in w and "correlation" in w and "nAGQ" in w for w in fit.warnings)
    assert "Laplace" in fit.method and "Laplace" in fit.describe()


def test_agq_for_random_slopes_improves_on_laplace() -> None:
    data = _data("slope.csv")
    lap = clmm("rating ~ time * arm + (time | participant)", data)
    agq = clmm("rating ~ time * arm + (time | participant)", data, nAGQ=3)
    assert "3^2 = 9 product nodes" in agq.method
    # the quadrature likelihood at its optimum is at least its value at the Laplace optimum
    prob = _problem("rating ~ time * arm + (time | participant)", data)
    at_laplace, _ = marginal_loglik(prob, lap.thresholds, lap.beta, lap.Lambda, n_agq=3)
    assert agq.loglik >= at_laplace - 1e-6
    assert agq.converged


def _problem(formula: str, data: pd.DataFrame, link: str = "logit") -> Problem:
    d = _design(formula, data)
    return Problem(d.y, d.X, d.Z, d.group, d.n_groups, len(d.categories), link)


def _cluster_lik(y: np.ndarray, X: np.ndarray, Z: np.ndarray, theta: np.ndarray,
                 beta: np.ndarray, b: np.ndarray, link: str) -> float:
    # Independent of the engine: the category probability straight from the model's definition.
    cdf = special.expit if link == "logit" else special.ndtr
    cut = np.concatenate(([-np.inf], theta, [np.inf]))
    eta = X @ beta + Z @ b
    return float(np.prod(cdf(cut[y + 1] - eta) - cdf(cut[y] - eta)))


def test_quadrature_random_intercept_matches_scipy_quad(fits: dict[str, ClmmFit]) -> None:
    fit = fits["wine_agq10"]
    c = CASES["wine_agq10"]
    prob = _problem(c["formula"], _data(c["data"]))
    per, _ = marginal_loglik(prob, fit.thresholds, fit.beta, fit.Lambda, n_agq=10,
                             per_cluster=True)
    sd = math.sqrt(fit.Sigma[0, 0])
    for g in range(prob.n_groups):
        rows = prob.group == g
        val, _ = integrate.quad(
            lambda b, r=rows: _cluster_lik(prob.y[r], prob.X[r], prob.Z[r], fit.thresholds,
                                           fit.beta, np.array([b]), "logit")
            * stats.norm.pdf(b, 0, sd), -12 * sd, 12 * sd, epsabs=0, epsrel=1e-11, limit=200)
        assert per[g] == pytest.approx(math.log(val), abs=1e-7)
    # and the sum is the reported log-likelihood at the optimum
    assert per.sum() == pytest.approx(fit.loglik, abs=1e-8)


def test_quadrature_random_slope_matches_scipy_dblquad(fits: dict[str, ClmmFit]) -> None:
    # The 2-D product rule around the conditional mode against scipy's adaptive dblquad, at the
    # random-slope fit's thresholds and effects with a non-singular covariance (the fitted one
    # has correlation 1, which would make the integral one-dimensional).
    fit = fits["slope_laplace"]
    c = CASES["slope_laplace"]
    prob = _problem(c["formula"], _data(c["data"]))
    L = np.linalg.cholesky(np.array([[0.5, 0.1], [0.1, 0.2]]))
    per, _ = marginal_loglik(prob, fit.thresholds, fit.beta, L, n_agq=9, per_cluster=True)
    for g in (42,):
        rows = prob.group == g

        def f(u2: float, u1: float, r: np.ndarray = rows) -> float:
            b = L @ np.array([u1, u2])
            return (_cluster_lik(prob.y[r], prob.X[r], prob.Z[r], fit.thresholds, fit.beta,
                                 b, "logit") * math.exp(-0.5 * (u1 * u1 + u2 * u2)) / (2 * math.pi))

        val, _ = integrate.dblquad(f, -8, 8, -8, 8, epsabs=0, epsrel=1e-5)
        assert per[g] == pytest.approx(math.log(val), abs=1e-5)
    # every cluster: a dense tensor Gauss-Legendre rule on [-8, 8]^2 (no mode, no Hermite)
    x, w = special.roots_legendre(120)
    x, w = 8 * x, 8 * w
    U = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    W = np.outer(w, w).ravel() * stats.norm.pdf(U).prod(axis=1)
    B = U @ L.T
    for g in range(0, prob.n_groups, 15):
        r = prob.group == g
        cut = np.concatenate(([-np.inf], fit.thresholds, [np.inf]))
        eta = (prob.X[r] @ fit.beta)[None, :] + B @ prob.Z[r].T
        lik = np.prod(special.expit(cut[prob.y[r] + 1] - eta) - special.expit(cut[prob.y[r]] - eta),
                      axis=1)
        assert per[g] == pytest.approx(math.log(W @ lik), abs=1e-6)


def test_laplace_is_one_point_quadrature() -> None:
    data = _data("rare.csv")
    prob = _problem("rating ~ time + arm + (1 | participant)", data)
    theta, beta, L = np.array([-1.4, 1.3, 3.7]), np.array([0.25, -0.16]), np.array([[1.3]])
    lap, _ = marginal_loglik(prob, theta, beta, L, n_agq=1)
    one, modes = marginal_loglik(prob, theta, beta, L, n_agq=1, per_cluster=True)
    assert lap == pytest.approx(one.sum())
    assert modes.converged


def test_probit_marginal_probabilities_have_closed_form(fits: dict[str, ClmmFit]) -> None:
    # Under the probit link, integrating over b ~ N(0, s^2) gives
    # P(Y <= k) = Phi((theta_k - x'beta) / sqrt(1 + s^2)) exactly.
    fit = fits["rare_probit"]
    new = pd.DataFrame({"time": [0.0, 1.0], "arm": ["comparison", "dialogue"]})
    new["arm"] = pd.Categorical(new["arm"], categories=["comparison", "dialogue"])
    probs = fit.probabilities(new)
    eta = np.array([0.0, fit.beta[0] + fit.beta[1]])
    cum = stats.norm.cdf((fit.thresholds[None, :] - eta[:, None]) / math.sqrt(1 + fit.Sigma[0, 0]))
    want = np.diff(np.column_stack([np.zeros(2), cum, np.ones(2)]), axis=1)
    got = probs.pivot(columns="category", values="probability", index="time").to_numpy()
    assert_allclose(got, want, atol=1e-9)
    inside = (probs["ci_low"] < probs["probability"]) & (probs["probability"] < probs["ci_high"])
    assert inside.all()
    cond = fit.probabilities(new, marginal=False)
    assert_allclose(cond.groupby("time")["probability"].sum(), 1.0)


def test_results_protocol_round_trip(fits: dict[str, ClmmFit]) -> None:
    fit = fits["slope_laplace"]
    assert isinstance(fit, ModelResult)
    tab = fit.tidy(level=0.9)
    assert list(tab.columns) == list(TIDY_COLUMNS)
    assert set(tab.loc[tab["role"] == "effect", "term"]) == {"arm[T.dialogue]",
                                                             "time:arm[T.dialogue]"}
    back = result_from_dict(json.loads(json.dumps(fit.to_dict())))
    pd.testing.assert_frame_equal(back.tidy(level=0.9), tab)
    assert back.summary() == fit.summary()
    assert back.to_dict() == fit.to_dict()
    row = fit.lincom({"time": 1.0, "time:arm[T.dialogue]": 1.0}, name="dialogue slope")
    v = fit.vcov.loc[["time", "time:arm[T.dialogue]"], ["time", "time:arm[T.dialogue]"]]
    assert row["std_error"].iloc[0] == pytest.approx(math.sqrt(v.to_numpy().sum()))
    with pytest.raises(ModelError, match="unknown term"):
        fit.lincom({"nope": 1.0})


def test_bad_input_is_refused_with_one_line() -> None:
    data = _data("wine.csv")
    with pytest.raises(ModelError, match="link must be"):
        clmm("rating ~ temp + (1 | judge)", data, link="cauchit")
    with pytest.raises(ModelError, match="nAGQ"):
        clmm("rating ~ temp + (1 | judge)", data, nAGQ=0)
    with pytest.raises(UnsupportedModelError, match="one random-effects term"):
        clmm("rating ~ temp + (1 | judge) + (1 | contact)", data)
    with pytest.raises(ModelError, match="not in the data"):
        clmm("score ~ temp + (1 | judge)", data)
    bad = data.assign(rating=pd.Categorical(data["rating"], ordered=False))
    with pytest.raises(ModelError, match="unordered"):
        clmm("rating ~ temp + (1 | judge)", bad)
    frac = data.assign(rating=data["rating"] + 0.5 * (data.index == 3))
    with pytest.raises(ModelError, match="non-integer"):
        clmm("rating ~ temp + (1 | judge)", frac)


def test_missing_rows_are_left_out_and_counted() -> None:
    data = _data("wine.csv").astype({"rating": float})
    data.loc[[0, 5], "rating"] = np.nan
    fit = clmm("rating ~ temp + contact + (1 | judge)", data)
    assert fit.nobs == len(data) - 2 and fit.n_dropped == 2
    assert any("2 row(s)" in w for w in fit.warnings)


@pytest.mark.parametrize(("case", "n_agq"), [("wine_laplace", 1), ("wine_probit", 4),
                                             ("slope_laplace", 1), ("slope_laplace", 3)])
def test_exact_gradient_matches_differences(case: str, n_agq: int) -> None:
    # The optimiser's gradient (implicit differentiation through the conditional modes and the
    # moving quadrature nodes) against central differences of the log-likelihood itself.
    c = CASES[case]
    prob = _problem(c["formula"], _data(c["data"]), c["link"])
    K1, p, q = prob.n_cat - 1, prob.p, prob.q
    pos = [(r, r) for r in range(q)] + [(r, s) for r in range(q) for s in range(r)]
    theta = np.linspace(-1.5, 1.5 + 0.5 * K1, K1)
    vec = np.concatenate([theta, np.full(p, 0.2), [0.8, 0.3, 0.2][:len(pos)]])

    def unpack(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        L = np.zeros((q, q))
        for i, (r, s) in enumerate(pos):
            L[r, s] = v[K1 + p + i]
        return v[:K1], v[K1:K1 + p], L

    ll, grad, _ = loglik_and_gradient(prob, *unpack(vec), n_agq=n_agq)
    assert ll == pytest.approx(marginal_loglik(prob, *unpack(vec), n_agq=n_agq)[0], abs=1e-9)
    h = 1e-5
    fd = [(marginal_loglik(prob, *unpack(vec + h * e), n_agq=n_agq)[0]
           - marginal_loglik(prob, *unpack(vec - h * e), n_agq=n_agq)[0]) / (2 * h)
          for e in np.eye(len(vec))]
    assert_allclose(grad, fd, atol=1e-5, rtol=1e-6)


def test_quadrature_leaves_the_laplace_boundary(fits: dict[str, ClmmFit]) -> None:
    # Laplace (ours and clmm's: see the fixture) puts the intercept-slope correlation at +1;
    # the quadrature likelihood, which converges as points are added, has an interior optimum.
    lap = fits["laplace_boundary"]
    assert lap.boundary and "nAGQ > 1" in " ".join(lap.warnings)
    data = _data("laplace_boundary.csv")
    f = "rating ~ time + (time | participant)"
    agq7, agq15 = clmm(f, data, nAGQ=7), clmm(f, data, nAGQ=15)
    corr7 = agq7.random.dropna(subset=["corr"])["corr"].iloc[0]
    corr15 = agq15.random.dropna(subset=["corr"])["corr"].iloc[0]
    assert not agq7.boundary and not agq15.boundary
    assert 0.0 < corr7 < 0.8 and corr15 == pytest.approx(corr7, abs=0.02)
    assert agq15.loglik == pytest.approx(agq7.loglik, abs=5e-3)
    assert "7^2 = 49 product nodes" in agq7.method and agq7.converged
    prob = _problem(f, data)
    at_boundary, _ = marginal_loglik(prob, lap.thresholds, lap.beta, lap.Lambda, n_agq=15)
    assert agq15.loglik > at_boundary + 0.2


def test_transformed_terms_and_missing_covariates() -> None:
    data = _data("rare.csv")
    data.loc[3, "time"] = np.nan
    fit = clmm("rating ~ I(time ** 2) + C(arm) + (1 | participant)", data)
    assert fit.nobs == len(data) - 1
    assert fit.fixed_names == ("I(time ** 2)", "C(arm)[T.dialogue]")
    with pytest.raises(ModelError, match="not in the data"):
        clmm("rating ~ dose + (1 | participant)", data)


def test_summary_prints_no_none_or_nan(fits: dict[str, ClmmFit]) -> None:
    # the random-effects table of a random-intercept fit has no second term and no correlation
    for fit in fits.values():
        text, page = fit.summary(), fit.summary_html()
        assert "None" not in text and "nan" not in text.lower()
        assert "None" not in page and ">nan<" not in page.lower()
