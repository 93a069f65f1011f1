"""Numerical core of the cumulative-link mixed model: conditional modes, Laplace and AGQ.

Model (the parameterisation of R's ``ordinal::clmm``, Christensen 2019)::

    P(Y_ij <= k | b_i) = F(theta_k - x_ij' beta - z_ij' b_i),   b_i = L u_i,  u_i ~ N(0, I_q)

with ``F`` the logistic or standard normal CDF, ``theta_1 < ... < theta_{K-1}`` the thresholds
and ``L`` the lower-triangular Cholesky factor of the random-effect covariance ``Sigma = L L'``.

Clusters (participants) are independent, so the marginal log-likelihood is a sum of per-cluster
q-dimensional integrals. For every cluster the conditional mode ``u_hat`` of
``h_i(u) = l_i(u) - u'u/2`` is found by Newton's method **vectorised over clusters** (numpy
arrays of shape (G, q) and (G, q, q); no n x n matrix is ever formed): ``l_i`` is concave in
``u`` for the log-concave logit and probit links, so Newton converges from any start.

* Laplace: ``l_i(u_hat) - u_hat'u_hat/2 - log det(H_i)/2`` with ``H_i = -d2 h_i / du du'`` the
  exact conditional Hessian (as ``ordinal:::getNLA``, which uses the observed, not the expected,
  information).
* Adaptive Gauss-Hermite quadrature (AGQ, Liu & Pierce 1994; Pinheiro & Bates 1995): the
  product rule on ``K^q`` nodes ``u = u_hat + sqrt(2) C t`` with ``C C' = H_i^{-1}`` (the
  Cholesky factor of the inverse conditional Hessian), so q = 2 (random intercept and slope)
  is integrated as accurately as a random intercept; ``K = 1`` is the Laplace approximation.

References
----------
Christensen, R. H. B. (2019). ordinal: Regression Models for Ordinal Data. R package
(``clmm``; ``getNLA``, ``update.u``, ``getNAGQ``).
Liu, Q. and Pierce, D. A. (1994). A note on Gauss-Hermite quadrature. Biometrika 81, 624-629.
Pinheiro, J. C. and Bates, D. M. (1995). Approximations to the log-likelihood function in the
nonlinear mixed-effects model. JCGS 4, 12-35.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["Problem", "category_probs", "link_parts", "marginal_loglik"]

# A finite stand-in for +-infinity at the outer "thresholds" theta_0 and theta_K: every CDF is
# exactly 0 or 1 there and every density and its derivative exactly 0 (no inf * 0 = nan).
_BIG = 1e6
_SQRT2PI = math.sqrt(2.0 * math.pi)


def link_parts(link: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CDF, upper tail, density and density derivative of the link's latent distribution.

    Parameters
    ----------
    link : {"logit", "probit"}
    x : ndarray

    Returns
    -------
    F, S, f, fprime : ndarray
        ``F(x)``, ``1 - F(x)`` computed without cancellation, ``F'(x)`` and ``F''(x)``.
    """
    if link == "logit":
        F = special.expit(x)
        S = special.expit(-x)
        f = F * S
        return F, S, f, f * (S - F)
    F = special.ndtr(x)
    S = special.ndtr(-x)
    f = np.exp(-0.5 * x * x) / _SQRT2PI
    return F, S, f, -x * f


@dataclass
class Problem:
    """The data of one fit in the engine's layout.

    Attributes
    ----------
    y : ndarray of int, shape (n,)
        Category codes 0..K-1.
    X : ndarray, shape (n, p)
        Fixed-effects design without an intercept (the thresholds play its part).
    Z : ndarray, shape (n, q)
        Random-effects design (1 for a random intercept, time for a slope).
    group : ndarray of int, shape (n,)
        Cluster code 0..G-1 of each observation.
    n_groups : int
    n_cat : int
        Number of categories K.
    link : {"logit", "probit"}
    """

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    group: np.ndarray
    n_groups: int
    n_cat: int
    link: str

    def __post_init__(self) -> None:
        # Observations sorted by cluster allow one np.add.reduceat per sum (much faster than
        # a bincount per column); unsorted data fall back to bincount.
        g = np.asarray(self.group)
        self.starts: np.ndarray | None = None
        if len(g) and np.all(np.diff(g) >= 0) and g[0] == 0 and g[-1] == self.n_groups - 1 \
                and len(np.unique(g)) == self.n_groups:
            self.starts = np.flatnonzero(np.r_[True, np.diff(g) > 0])

    def gsum(self, x: np.ndarray) -> np.ndarray:
        """Sum an (n, ...) array within clusters -> (G, ...)."""
        if self.starts is not None:
            return np.add.reduceat(x, self.starts, axis=0)
        n = x.shape[0]
        flat = x.reshape(n, -1)
        out = np.stack([np.bincount(self.group, weights=flat[:, j], minlength=self.n_groups)
                        for j in range(flat.shape[1])], axis=1)
        return out.reshape(self.n_groups, *x.shape[1:])

    def threshold_beta_design(self, n_par: int) -> tuple[np.ndarray, np.ndarray]:
        """d a / d psi and d c / d psi in the threshold and beta columns, (n, n_par) each
        (computed once per problem; the covariance-factor columns are left 0)."""
        cached = getattr(self, "_ab_design", None)
        if cached is not None and cached[0].shape[1] == n_par:
            return cached
        n, K1, p = len(self.y), self.n_cat - 1, self.X.shape[1]
        Ga = np.zeros((n, n_par))
        Gc = np.zeros((n, n_par))
        up, lo = self.y < K1, self.y >= 1
        Ga[np.flatnonzero(up), self.y[up]] = 1.0
        Gc[np.flatnonzero(lo), self.y[lo] - 1] = 1.0
        Ga[:, K1:K1 + p] = -self.X
        Gc[:, K1:K1 + p] = -self.X
        self._ab_design = (Ga, Gc)
        return Ga, Gc

    @property
    def q(self) -> int:
        """Random effects per cluster."""
        return int(self.Z.shape[1])

    @property
    def p(self) -> int:
        """Fixed effects (beyond the thresholds)."""
        return int(self.X.shape[1])


def _obs_terms(prob: Problem, theta: np.ndarray, eta: np.ndarray, order: int):
    """Per-observation log p and its first (and second) derivative in eta.

    ``eta`` has shape (..., n); the thresholds bracketing each observation's category are
    ``theta_y`` (upper, a) and ``theta_{y-1}`` (lower, c).
    """
    ext = np.concatenate(([-_BIG], theta, [_BIG]))
    a = ext[prob.y + 1] - eta
    c = ext[prob.y] - eta
    Fa, Sa, fa, dfa = link_parts(prob.link, a)
    Fc, Sc, fc, dfc = link_parts(prob.link, c)
    # Both bounds in the upper tail: difference of survival functions keeps the digits of a
    # rare top category; otherwise the difference of CDFs keeps those of a rare bottom one.
    p = np.where(c > 0, Sc - Sa, Fa - Fc)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(p)
        if order == 0:
            return logp, None, None
        d1 = -(fa - fc) / p
        if order == 1:
            return logp, d1, None
        d2 = (dfa - dfc) / p - d1 * d1
    return logp, d1, d2


def _group_sum(prob: Problem, values: np.ndarray) -> np.ndarray:
    """Sum ``values`` (..., n) within clusters -> (..., G)."""
    if prob.starts is not None:
        return np.add.reduceat(values, prob.starts, axis=-1)
    if values.ndim == 1:
        return np.bincount(prob.group, weights=values, minlength=prob.n_groups)
    flat = values.reshape(-1, values.shape[-1])
    out = np.empty((flat.shape[0], prob.n_groups))
    for k in range(flat.shape[0]):
        out[k] = np.bincount(prob.group, weights=flat[k], minlength=prob.n_groups)
    return out.reshape(*values.shape[:-1], prob.n_groups)


@dataclass
class Modes:
    """Conditional modes and curvature at one parameter value."""

    u: np.ndarray          # (G, q) conditional modes of the standardised random effects
    h: np.ndarray          # (G,) l_i(u_hat) - u_hat'u_hat / 2
    H: np.ndarray          # (G, q, q) negative Hessian of h_i at the mode
    chol: np.ndarray       # (G, q, q) Cholesky factor of H
    iterations: int
    converged: bool


def conditional_modes(prob: Problem, theta: np.ndarray, beta: np.ndarray, Lam: np.ndarray,
                      u0: np.ndarray | None = None, tol: float = 1e-10,
                      max_iter: int = 50) -> Modes:
    """Newton's method for every cluster's conditional mode at once.

    Parameters
    ----------
    prob : Problem
    theta, beta : ndarray
        Thresholds (K-1,) and fixed effects (p,).
    Lam : ndarray, shape (q, q)
        Lower-triangular factor of the random-effect covariance.
    u0 : ndarray, shape (G, q), optional
        Starting values (warm start from the previous evaluation).

    Returns
    -------
    Modes
        With ``converged`` False when some cluster's Newton step did not shrink below ``tol``
        (never happened in tests: the objective is strictly concave).
    """
    G, q = prob.n_groups, prob.q
    off = prob.X @ beta
    ZL = prob.Z @ Lam                      # row k: z_k' L, so that z_k' b = (z_k' L) u
    u = np.zeros((G, q)) if u0 is None else u0.copy()
    eye = np.eye(q)
    pairs = [(r, s) for r in range(q) for s in range(r + 1)]

    def evaluate(u: np.ndarray, order: int):
        eta = off + np.einsum("nq,nq->n", ZL, u[prob.group]) if q > 1 else off + ZL[:, 0] * u[
            prob.group, 0]
        logp, d1, d2 = _obs_terms(prob, theta, eta, order)
        h = _group_sum(prob, logp) - 0.5 * np.einsum("gq,gq->g", u, u)
        return h, d1, d2

    converged = False
    it = 0
    h, d1, d2 = evaluate(u, 2)
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        grad = np.stack([_group_sum(prob, d1 * ZL[:, r]) for r in range(q)], axis=1) - u
        H = np.empty((G, q, q))
        for r, s in pairs:
            v = _group_sum(prob, -d2 * ZL[:, r] * ZL[:, s])
            H[:, r, s] = v
            H[:, s, r] = v
        H += eye
        step = grad / H[:, :, 0] if q == 1 else np.linalg.solve(H, grad[..., None])[..., 0]
        # Step halving per cluster (rarely needed: h_i is strictly concave).
        factor = np.ones(G)
        for _ in range(30):
            u_new = u + factor[:, None] * step
            h_new, d1n, d2n = evaluate(u_new, 2)
            bad = ~(h_new >= h - 1e-12 * np.abs(h))
            if not bad.any():
                break
            factor = np.where(bad, factor * 0.5, factor)
        u, h, d1, d2 = u_new, h_new, d1n, d2n
        if np.max(np.abs(factor[:, None] * step)) < tol:
            converged = True
            break
    H = np.empty((G, q, q))
    for r, s in pairs:
        v = _group_sum(prob, -d2 * ZL[:, r] * ZL[:, s])
        H[:, r, s] = v
        H[:, s, r] = v
    H += eye
    return Modes(u=u, h=h, H=H, chol=np.linalg.cholesky(H), iterations=it, converged=converged)


def _gh_grid(n_agq: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Product Gauss-Hermite nodes (M, q) and log weights (M,) for weight exp(-|t|^2)."""
    x, w = np.polynomial.hermite.hermgauss(n_agq)
    grids = np.meshgrid(*([x] * q), indexing="ij")
    wgrids = np.meshgrid(*([np.log(w)] * q), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    logw = np.sum(np.stack([g.ravel() for g in wgrids], axis=1), axis=1)
    return nodes, logw


def marginal_loglik(prob: Problem, theta: np.ndarray, beta: np.ndarray, Lam: np.ndarray,
                    n_agq: int = 1, u0: np.ndarray | None = None,
                    per_cluster: bool = False) -> tuple[float | np.ndarray, Modes]:
    """Laplace (``n_agq=1``) or adaptive Gauss-Hermite marginal log-likelihood.

    Parameters
    ----------
    prob : Problem
    theta, beta, Lam : ndarray
        Thresholds, fixed effects and covariance factor (see :func:`conditional_modes`).
    n_agq : int
        Quadrature points per random-effect dimension (product rule: ``n_agq ** q`` nodes per
        cluster). 1 gives the Laplace approximation.
    u0 : ndarray, optional
        Warm start for the conditional modes.
    per_cluster : bool
        Return the (G,) per-cluster contributions instead of their sum.

    Returns
    -------
    loglik : float or ndarray
        ``-inf`` when the thresholds are not increasing.
    modes : Modes
    """
    if np.any(np.diff(theta) <= 0) or not np.all(np.isfinite(theta)):
        raise ValueError("thresholds must be finite and increasing")
    modes = conditional_modes(prob, theta, beta, Lam, u0=u0)
    logdet = 2.0 * np.sum(np.log(np.diagonal(modes.chol, axis1=1, axis2=2)), axis=1)
    if n_agq <= 1:
        contrib = modes.h - 0.5 * logdet
        return (contrib if per_cluster else float(contrib.sum())), modes
    q = prob.q
    nodes, logw = _gh_grid(n_agq, q)                     # (M, q), (M,)
    # C with C C' = H^{-1}: C = inv(R)' for H = R R' (R lower) -> C = R^{-T}.
    Rinv = np.linalg.inv(modes.chol)                     # (G, q, q) lower
    C = np.transpose(Rinv, (0, 2, 1))                    # upper; C C' = R^{-T} R^{-1} = H^{-1}
    U = modes.u[None, :, :] + math.sqrt(2.0) * np.einsum("gij,mj->mgi", C, nodes)  # (M, G, q)
    off = prob.X @ beta
    ZL = prob.Z @ Lam
    eta = off[None, :] + np.einsum("nq,mnq->mn", ZL, U[:, prob.group, :])
    logp, _, _ = _obs_terms(prob, theta, eta, 0)
    h = _group_sum(prob, logp) - 0.5 * np.einsum("mgq,mgq->mg", U, U)      # (M, G)
    terms = h + logw[:, None] + np.sum(nodes * nodes, axis=1)[:, None]
    log_det_C = -0.5 * logdet
    contrib = special.logsumexp(terms, axis=0) + log_det_C - 0.5 * q * math.log(math.pi)
    return (contrib if per_cluster else float(contrib.sum())), modes


def category_probs(link: str, theta: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """P(Y = k) for each row of ``eta`` (n,) -> (n, K) at the given linear predictor."""
    ext = np.concatenate(([-_BIG], theta, [_BIG]))
    cum = link_parts(link, ext[None, :] - eta[:, None])[0]
    return np.diff(cum, axis=1)


def _obs_derivs(prob: Problem, theta: np.ndarray, eta: np.ndarray,
                first_only: bool = False) -> dict[str, np.ndarray]:
    """Per-observation derivatives of log p(a, c) up to third order (for the gradient).

    With ``a = theta_y - eta`` and ``c = theta_{y-1} - eta``: ``la, lc`` (first derivatives of
    log p in a and c), ``D = la + lc`` (so d log p / d eta = -D), ``w = D^2 - N2`` (minus the
    second derivative in eta), and the partial derivatives ``Da, Dc, wa, wc``.
    """
    ext = np.concatenate(([-_BIG], theta, [_BIG]))
    a = ext[prob.y + 1] - eta
    c = ext[prob.y] - eta
    Fa, Sa, fa, dfa = link_parts(prob.link, a)
    Fc, Sc, fc, dfc = link_parts(prob.link, c)
    if first_only:  # at quadrature nodes only log p and its first derivatives are needed
        p = np.where(c > 0, Sc - Sa, Fa - Fc)
        with np.errstate(divide="ignore", invalid="ignore"):
            la, lc = fa / p, -fc / p
            return {"logp": np.log(p), "la": la, "lc": lc, "D": la + lc}
    if prob.link == "logit":
        ddfa = fa * (Sa - Fa) ** 2 - 2 * fa * fa
        ddfc = fc * (Sc - Fc) ** 2 - 2 * fc * fc
    else:
        ddfa = (a * a - 1) * fa
        ddfc = (c * c - 1) * fc
    p = np.where(c > 0, Sc - Sa, Fa - Fc)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(p)
        la, lc = fa / p, -fc / p
        D = la + lc
        N2 = (dfa - dfc) / p
        Da = (dfa - D * fa) / p
        Dc = (-dfc + D * fc) / p
        N2a = (ddfa - N2 * fa) / p
        N2c = (-ddfc + N2 * fc) / p
    return {"logp": logp, "la": la, "lc": lc, "D": D, "w": D * D - N2, "Da": Da, "Dc": Dc,
            "wa": 2 * D * Da - N2a, "wc": 2 * D * Dc - N2c}


def loglik_and_gradient(prob: Problem, theta: np.ndarray, beta: np.ndarray, Lam: np.ndarray,
                        n_agq: int = 1, u0: np.ndarray | None = None
                        ) -> tuple[float, np.ndarray, Modes]:
    """Laplace/AGQ log-likelihood and its exact gradient in (theta, beta, Lambda entries).

    The conditional modes depend on the parameters; their derivative follows from the implicit
    function theorem, ``du/dpsi = H^{-1} d grad_u / dpsi``, and enters through the curvature
    (Laplace: ``-1/2 tr(H^{-1} dH/dpsi)``) and, for quadrature, through the moving nodes
    ``u_hat + sqrt(2) C t`` (``dC`` from the derivative of the Cholesky factor, Murray 2016).

    Returns
    -------
    loglik : float
    gradient : ndarray, shape (K-1 + p + q(q+1)/2,)
        Order: thresholds, fixed effects, the diagonal of Lambda, then its lower triangle by
        rows (the order of ``clmm``'s optimiser parameters).
    modes : Modes

    References
    ----------
    Murray, I. (2016). Differentiation of the Cholesky decomposition. arXiv:1602.07527.
    """
    q = prob.q
    K1, p = prob.n_cat - 1, prob.p
    lam_pos = [(r, r) for r in range(q)] + [(r, s) for r in range(q) for s in range(r)]
    P = K1 + p + len(lam_pos)
    modes = conditional_modes(prob, theta, beta, Lam, u0=u0)
    u, H, R = modes.u, modes.H, modes.chol
    grp = prob.group
    V = prob.Z @ Lam                                    # (n, q): v_k = Lambda' z_k
    uk = u[grp]                                         # (n, q)
    eta = prob.X @ beta + np.einsum("nq,nq->n", V, uk)
    d = _obs_derivs(prob, theta, eta)
    # partial derivatives of a and c at fixed u, (n, P): constant in theta and beta columns
    Ga0, Gc0 = prob.threshold_beta_design(P)
    Ga = Ga0.copy()
    for i, (r, s) in enumerate(lam_pos):
        Ga[:, K1 + p + i] = -prob.Z[:, r] * uk[:, s]
    Gc = Gc0.copy()
    Gc[:, K1 + p:] = Ga[:, K1 + p:]

    gsum = prob.gsum

    # d grad_u / dpsi at fixed u, (G, q, P)
    dDk = d["Da"][:, None] * Ga + d["Dc"][:, None] * Gc          # (n, P)
    contrib = -V[:, :, None] * dDk[:, None, :]                    # (n, q, P)
    for i, (r, s) in enumerate(lam_pos):
        contrib[:, s, K1 + p + i] -= d["D"] * prob.Z[:, r]
    dg = gsum(contrib)
    du = np.linalg.solve(H, dg)                                   # (G, q, P)
    vdu = (V[:, :, None] * du[grp]).sum(axis=1)
    da = Ga - vdu
    dc = Gc - vdu
    wprime = d["wa"][:, None] * da + d["wc"][:, None] * dc        # (n, P)
    # dH/dpsi per cluster, (G, q, q, P)
    dHk = wprime[:, None, None, :] * (V[:, :, None] * V[:, None, :])[..., None]
    for i, (r, s) in enumerate(lam_pos):
        # w (dv v' + v dv'), dv = z_r e_s
        t = d["w"] * prob.Z[:, r]
        dHk[:, s, :, K1 + p + i] += t[:, None] * V
        dHk[:, :, s, K1 + p + i] += t[:, None] * V
    dH = gsum(dHk)
    Hinv = np.linalg.inv(H)
    trace = np.einsum("gij,gjip->gp", Hinv, dH)                   # tr(H^-1 dH), (G, P)
    logdet = 2.0 * np.sum(np.log(np.diagonal(R, axis1=1, axis2=2)), axis=1)
    if n_agq <= 1:
        env = (d["la"][:, None] * Ga + d["lc"][:, None] * Gc).sum(axis=0)
        ll = float(np.sum(modes.h - 0.5 * logdet))
        return ll, env - 0.5 * trace.sum(axis=0), modes
    nodes, logw = _gh_grid(n_agq, q)                              # (M, q)
    Rinv = np.linalg.inv(R)
    C = np.transpose(Rinv, (0, 2, 1))
    # dR = R Phi(R^-1 dH R^-T); dC = -C dR' C
    X_ = np.einsum("gij,gjkp,glk->gilp", Rinv, dH, Rinv)
    tril = np.tril(np.ones((q, q)))
    tril[np.diag_indices(q)] = 0.5
    dR = np.einsum("gij,gjkp->gikp", R, X_ * tril[None, :, :, None])
    dC = -np.einsum("gij,gkjp,gkl->gilp", C, dR, C)
    s2 = math.sqrt(2.0)
    U = u[None] + s2 * np.einsum("gij,mj->mgi", C, nodes)          # (M, G, q)
    Uk = U[:, grp, :]                                               # (M, n, q)
    eta_m = (prob.X @ beta)[None] + np.einsum("nq,mnq->mn", V, Uk)
    ll_total = 0.0
    dm = _obs_derivs(prob, theta, eta_m, first_only=True)
    h = _group_sum(prob, dm["logp"])
    h -= 0.5 * np.einsum("mgq,mgq->mg", U, U)
    terms = h + logw[:, None] + np.sum(nodes * nodes, axis=1)[:, None]
    lse = special.logsumexp(terms, axis=0)
    pi = np.exp(terms - lse[None])                                  # (M, G)
    ll_total = float(np.sum(lse - 0.5 * logdet - 0.5 * q * math.log(math.pi)))
    # d/dpsi of log sum_m exp(terms_m) = sum_m pi_m [dh/dpsi(u_m) + grad_u h(u_m)' du_m/dpsi];
    # the sums over nodes are taken per observation first, so that only (n, P) arrays remain.
    pik = pi[:, grp]                                                # (M, n)
    LA = np.sum(pik * dm["la"], axis=0)                             # (n,)
    LC = np.sum(pik * dm["lc"], axis=0)
    dh = LA[:, None] * Ga0 + LC[:, None] * Gc0                      # theta, beta columns
    LD = pik * (dm["la"] + dm["lc"])                                # (M, n)
    for i, (r, s_) in enumerate(lam_pos):
        dh[:, K1 + p + i] = -prob.Z[:, r] * np.sum(LD * Uk[:, :, s_], axis=0)
    grad_u = np.stack([_group_sum(prob, -dm["D"] * V[None, :, j]) for j in range(q)],
                      axis=-1) - U                                  # (M, G, q)
    pg = np.einsum("mg,mgi->gi", pi, grad_u)                        # (G, q)
    A = np.einsum("mg,mgi,mj->gij", pi, grad_u, nodes)              # (G, q, q)
    grad = (-0.5 * trace.sum(axis=0) + dh.sum(axis=0)
            + np.einsum("gi,gip->p", pg, du) + s2 * np.einsum("gij,gijp->p", A, dC))
    return ll_total, grad, modes
