"""Engine internals: the profiled criterion against a dense reference, the analytic gradient
against finite differences, the two statistics layouts, batched algebra, refits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from trackii_eval.models.growth import GrowthModel, growth
from trackii_eval.models.growth.deviance import ProfiledDeviance, spd_inverse_logdet
from trackii_eval.models.growth.satterthwaite import richardson_jacobian
from trackii_eval.models.growth.simulate import simulate_panel
from trackii_eval.models.growth.stats import compute_stats

POS2 = [(0, 0), (1, 0), (1, 1)]


def _toy(seed: int = 1, G: int = 30, D: int = 5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), rng.integers(1, 6, G))
    n = g.size
    t = rng.integers(0, 4, n).astype(float)
    X = np.column_stack([np.ones(n), t, rng.normal(size=n)])
    Z = np.column_stack([np.ones(n), t])
    outer = rng.integers(0, D, G)
    outer = np.unique(outer, return_inverse=True)[1]
    y = rng.normal(size=n) + 0.5 * t + rng.normal(size=G)[g] + rng.normal(size=D)[outer][g]
    return y, X, Z, g, G, outer


def _dense(theta, y, X, Z, g, G, outer, reml):
    """Textbook marginal-likelihood criterion with explicit n x n matrices."""
    n, p = X.shape
    q = Z.shape[1]
    lam = np.zeros((q, q))
    for t, (r, c) in zip(theta, POS2, strict=False):
        lam[r, c] = t
    Zf = np.zeros((n, G * q))
    for a in range(q):
        Zf[np.arange(n), g * q + a] = Z[:, a]
    V = np.eye(n) + Zf @ np.kron(np.eye(G), lam @ lam.T) @ Zf.T
    if outer is not None:
        od = outer[g]
        V += theta[-1] ** 2 * (od[:, None] == od[None, :])
    Vi = np.linalg.inv(V)
    xvx = X.T @ Vi @ X
    beta = np.linalg.solve(xvx, X.T @ Vi @ y)
    e = y - X @ beta
    r2 = e @ Vi @ e
    dfr = n - p if reml else n
    d = np.linalg.slogdet(V)[1] + dfr * (1 + np.log(2 * np.pi * r2 / dfr))
    if reml:
        d += np.linalg.slogdet(xvx)[1]
    return d, beta


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("mode", ["cell", "group"])
@pytest.mark.parametrize("reml", [True, False])
def test_criterion_matches_dense_reference_and_gradient_matches_fd(nested, mode, reml):
    y, X, Z, g, G, outer = _toy()
    st = compute_stats(y, X, Z, g, G, outer if nested else None, mode=mode)
    assert st.mode == mode
    f = ProfiledDeviance(st, POS2, nested)
    theta = np.array([0.7, -0.3, 0.4] + ([0.5] if nested else []))
    ev = f(theta, reml, gradient=True)
    dd, bb = _dense(theta, y, X, Z, g, G, outer if nested else None, reml)
    assert_allclose(ev.deviance, dd, rtol=0, atol=1e-9)
    assert_allclose(ev.beta, bb, rtol=1e-10, atol=1e-12)
    # analytic gradient vs Richardson finite differences, profiled and at fixed sigma
    fd = richardson_jacobian(lambda th: np.array([f(th, reml).deviance]), theta)[0]
    assert_allclose(ev.gradient, fd, rtol=1e-6, atol=1e-6)
    ev_s = f(theta, reml, gradient=True, sigma=1.3)
    fd_s = richardson_jacobian(lambda th: np.array([f(th, reml, sigma=1.3).deviance]), theta)[0]
    assert_allclose(ev_s.gradient, fd_s, rtol=1e-6, atol=1e-6)


def test_gradient_at_boundary_and_for_one_term():
    y, X, Z, g, G, _ = _toy(seed=3)
    st = compute_stats(y, X, Z[:, :1], g, G)
    f = ProfiledDeviance(st, [(0, 0)], False)
    for th in (np.array([0.0]), np.array([2.5])):
        fd = richardson_jacobian(lambda t: np.array([f(t, True).deviance]), th)[0]
        assert_allclose(f(th, True, gradient=True).gradient, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_batched_spd_inverse(q):
    rng = np.random.default_rng(q)
    B = rng.normal(size=(7, q, q))
    A = B @ B.transpose(0, 2, 1) + np.eye(q)
    inv, logdet = spd_inverse_logdet(A.reshape(7, -1), q)
    assert_allclose(inv.reshape(7, q, q), np.linalg.inv(A), rtol=1e-10, atol=1e-12)
    assert_allclose(logdet, np.linalg.slogdet(A)[1], rtol=1e-12)


def test_cell_and_group_layouts_give_the_same_fit():
    df = simulate_panel(120, 6, missing=0.2, n_dialogues=10, seed=5)
    formula = "y ~ wave * treated + (wave | participant) + (1 | dialogue)"
    a = GrowthModel(formula, df, mode="cell").fit()
    b = GrowthModel(formula, df, mode="group").fit()
    assert_allclose(a.deviance, b.deviance, atol=1e-8)
    assert_allclose(a.theta, b.theta, atol=1e-5)
    assert_allclose(a.fixed.to_numpy(), b.fixed.to_numpy(), rtol=1e-5, atol=1e-7)


def test_transform_equals_recomputed_statistics():
    y, X, Z, g, G, outer = _toy(seed=4)
    for out in (None, outer):
        st = compute_stats(y, X, Z, g, G, out, mode="cell")
        m = st.m
        k, b = 1, 0.37
        keep = [i for i in range(m) if i != k]
        P = np.eye(m)[:, keep]
        P[k, -1] = -b
        direct = compute_stats(y - b * X[:, k], np.delete(X, k, axis=1), Z, g, G, out, "cell")
        tr = st.transform(P, st.p - 1)
        th = np.array([0.6, 0.1, 0.3] + ([0.4] if out is not None else []))
        f1 = ProfiledDeviance(tr, POS2, out is not None)(th, False)
        f2 = ProfiledDeviance(direct, POS2, out is not None)(th, False)
        assert_allclose(f1.deviance, f2.deviance, atol=1e-9)
        assert_allclose(f1.beta, f2.beta, rtol=1e-10)


def test_refit_equals_a_fresh_fit_and_is_cheap_to_call():
    df = simulate_panel(80, 5, missing=0.1, seed=6)
    model = GrowthModel("y ~ wave * treated + (wave | participant)", df)
    rng = np.random.default_rng(0)
    y_new = model.y + rng.normal(size=model.nobs)
    refit = model.refit(y_new)
    fresh_df = df.dropna(subset=["y"]).copy()
    fresh_df["y"] = y_new
    fresh = growth("y ~ wave * treated + (wave | participant)", fresh_df)
    assert_allclose(refit.deviance, fresh.deviance, atol=1e-8)
    assert_allclose(refit.fixed.to_numpy(), fresh.fixed.to_numpy(), rtol=1e-5, atol=1e-8)
    with pytest.raises(Exception, match="responses"):
        model.refit(y_new[:-1])


def test_optimizer_leaves_the_zero_variance_saddle():
    # A bounded quasi-Newton run from lme4's start reaches slope sd = 0 on this data set and
    # stops there (zero projected gradient); the true optimum is interior (lme4 agrees:
    # theta = 1.60187, -0.05774, 0.22727, REML criterion 22670.05).
    df = simulate_panel(500, seed=1)
    fit = growth("y ~ wave * treated + (wave | participant)", df)
    assert_allclose(fit.theta, [1.60187334, -0.05773753, 0.22726994], atol=1e-4)
    assert_allclose(fit.deviance, 22670.05, atol=1e-2)
    assert not fit.singular and fit.converged


def test_unsorted_rows_and_string_ids_do_not_change_the_fit():
    df = simulate_panel(60, 5, missing=0.1, seed=7)
    a = growth("y ~ wave * arm + (wave | participant)", df)
    shuffled = df.sample(frac=1.0, random_state=3)
    shuffled["participant"] = "id-" + shuffled["participant"].astype(str)
    b = growth("y ~ wave * arm + (wave | participant)", shuffled)
    assert_allclose(a.deviance, b.deviance, atol=1e-8)
    assert_allclose(a.fixed.to_numpy(), b.fixed.to_numpy(), rtol=1e-6, atol=1e-9)
    assert list(b.fixed.index) == ["Intercept", "wave", "arm[T.dialogue]", "wave:arm[T.dialogue]"]
    ra, rb = a.ranef(), b.ranef()
    rb.index = [int(s[3:]) for s in rb.index]
    assert_allclose(ra.to_numpy(), rb.loc[ra.index].to_numpy(), rtol=1e-5, atol=1e-8)


def test_single_observation_groups_and_irregular_times():
    rng = np.random.default_rng(8)
    G = 70
    n_i = rng.integers(1, 6, G)
    pid = np.repeat(np.arange(G), n_i)
    t = rng.uniform(0, 3, pid.size)  # irregular times: nearly every participant its own pattern
    y = 10 + 0.5 * t + rng.normal(size=G)[pid] + 0.3 * rng.normal(size=G)[pid] * t
    y += rng.normal(size=pid.size)
    df = pd.DataFrame({"participant": pid, "t": t, "y": y})
    a = GrowthModel("y ~ t + (t | participant)", df, mode="group").fit()
    b = GrowthModel("y ~ t + (t | participant)", df, mode="cell").fit()
    assert_allclose(a.deviance, b.deviance, atol=1e-8)
    assert a.ngroups == {"participant": G}


@pytest.mark.parametrize("mode", ["cell", "group"])
@pytest.mark.parametrize("reml", [True, False])
def test_outer_random_slopes_against_a_dense_reference(mode, reml):
    """(time | participant) + (time | dialogue): the Woodbury route against explicit n x n V."""
    y, X, Z, g, G, outer = _toy(seed=5, G=40, D=6)
    st = compute_stats(y, X, Z, g, G, outer, mode=mode, Zo=Z)
    f = ProfiledDeviance(st, POS2, True, POS2)
    theta = np.array([0.7, -0.3, 0.4, 0.6, 0.25, 0.35])
    ev = f(theta, reml, gradient=True)
    # Dense: V = I + Z_P blockdiag(ΛΛ') Z_P' + Z_D blockdiag(Λ_oΛ_o') Z_D'.
    n, p = X.shape
    lam, lamo = np.zeros((2, 2)), np.zeros((2, 2))
    for t, (r, c) in zip(theta[:3], POS2, strict=True):
        lam[r, c] = t
    for t, (r, c) in zip(theta[3:], POS2, strict=True):
        lamo[r, c] = t
    od = outer[g]
    D = int(outer.max()) + 1
    Zp, Zd = np.zeros((n, 2 * G)), np.zeros((n, 2 * D))
    for a in range(2):
        Zp[np.arange(n), g * 2 + a] = Z[:, a]
        Zd[np.arange(n), od * 2 + a] = Z[:, a]
    V = (np.eye(n) + Zp @ np.kron(np.eye(G), lam @ lam.T) @ Zp.T
         + Zd @ np.kron(np.eye(D), lamo @ lamo.T) @ Zd.T)
    Vi = np.linalg.inv(V)
    xvx = X.T @ Vi @ X
    beta = np.linalg.solve(xvx, X.T @ Vi @ y)
    e = y - X @ beta
    r2 = e @ Vi @ e
    dfr = n - p if reml else n
    dd = np.linalg.slogdet(V)[1] + dfr * (1 + np.log(2 * np.pi * r2 / dfr))
    if reml:
        dd += np.linalg.slogdet(xvx)[1]
    assert_allclose(ev.deviance, dd, rtol=0, atol=1e-9)
    assert_allclose(ev.beta, beta, rtol=1e-10, atol=1e-12)
    fd = richardson_jacobian(lambda th: np.array([f(th, reml).deviance]), theta)[0]
    assert_allclose(ev.gradient, fd, rtol=1e-6, atol=1e-6)
    fd_s = richardson_jacobian(lambda th: np.array([f(th, reml, sigma=1.3).deviance]), theta)[0]
    assert_allclose(f(theta, reml, gradient=True, sigma=1.3).gradient, fd_s, rtol=1e-6, atol=1e-6)
    # BLUPs: b = D Z' V^-1 e on the relative scale (σ cancels in the conditional mode).
    b, bo = f.blups(ev)
    ve = Vi @ e
    assert_allclose(b, (np.kron(np.eye(G), lam @ lam.T) @ Zp.T @ ve).reshape(G, 2), atol=1e-9)
    assert_allclose(bo, (np.kron(np.eye(D), lamo @ lamo.T) @ Zd.T @ ve).reshape(D, 2), atol=1e-9)
