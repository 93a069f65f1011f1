"""Parametric-bootstrap percentile intervals (as lme4's ``confint(method = "boot")``).

Each replicate simulates a response from the fitted model (new random effects and residuals),
refits by swapping the response into the precomputed sufficient statistics (no pass over the
design, no formula parsing) and starts the optimiser at the fitted θ.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§5.4, ``bootMer``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trackii_eval.models.growth.results import parameter_vector

if TYPE_CHECKING:
    from trackii_eval.models.growth.model import GrowthModel, NativeBackend
    from trackii_eval.models.growth.results import GrowthFit

__all__ = ["bootstrap_confint", "simulate_responses"]


def simulate_responses(
    model: GrowthModel, fit: GrowthFit, n_sim: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n_sim`` responses from the fitted model (shape (n_sim, nobs)).

    Parameters
    ----------
    model : GrowthModel
        The model the fit came from.
    fit : GrowthFit
        Supplies β, θ and σ.
    n_sim : int
        Number of responses.
    rng : numpy.random.Generator
        Random source.

    Returns
    -------
    ndarray
    """
    d = model.design
    lam = np.zeros((d.Z.shape[1],) * 2)
    for t, (r, c) in zip(fit.theta, d.theta_pos, strict=False):
        lam[r, c] = t
    mu = model.X @ np.asarray(fit.beta)
    G = len(d.group_levels)
    out = np.empty((n_sim, mu.size))
    for k in range(n_sim):
        b = rng.standard_normal((G, lam.shape[0])) @ (fit.sigma * lam).T
        y = mu + np.einsum("ij,ij->i", d.Z, b[d.group]) + fit.sigma * rng.standard_normal(mu.size)
        if d.has_outer:
            assert d.outer_of_group is not None and d.outer_levels is not None
            assert d.Zo is not None
            lamo = np.zeros((d.Zo.shape[1],) * 2)
            for t, (r, c) in zip(fit.theta[len(d.theta_pos):], d.theta_pos_outer, strict=True):
                lamo[r, c] = t
            bo = rng.standard_normal((len(d.outer_levels), lamo.shape[0])) @ (fit.sigma * lamo).T
            y += np.einsum("ij,ij->i", d.Zo, bo[d.outer_of_group[d.group]])
        out[k] = y
    return out


def bootstrap_confint(
    backend: NativeBackend, fit: GrowthFit, level: float, n_boot: int, seed: int | None
) -> pd.DataFrame:
    """Percentile intervals from ``n_boot`` parametric-bootstrap refits.

    Parameters
    ----------
    backend : NativeBackend
        The fit's backend (model and criterion).
    fit : GrowthFit
        The fitted model.
    level : float
        Coverage.
    n_boot : int
        Number of replicates.
    seed : int, optional
        Seed for reproducibility.

    Returns
    -------
    pandas.DataFrame
        Indexed by parameter: estimate, ci_low, ci_high; ``attrs`` holds ``n_boot`` and
        ``n_unconverged`` (replicates whose optimiser check failed; kept, as lme4 keeps them).

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """
    model = backend.model
    rng = np.random.default_rng(seed)
    ys = simulate_responses(model, fit, n_boot, rng)
    est = fit.parameter_estimates()
    draws = np.empty((n_boot, est.size))
    n_bad = 0
    st0 = backend.fdev.stats
    df_res = st0.n - st0.p if fit.reml else st0.n
    for k in range(n_boot):
        stats = st0.with_response(ys[k], model.X, model.design.Z, model.design.group,
                                  model.design.Zo)
        fdev, ev, info = model.optimise(stats, fit.reml, start=np.array(fit.theta))
        n_bad += int(not info.converged)
        sigma = float(np.sqrt(ev.r2 / df_res))
        draws[k] = parameter_vector(model._varcomps(fdev, ev.theta, sigma), sigma, ev.beta)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(draws, [alpha, 1.0 - alpha], axis=0)
    out = pd.DataFrame(
        {"estimate": est, "ci_low": low, "ci_high": high},
        index=pd.Index(fit.parameter_names(), name="parameter"),
    )
    out.attrs["n_boot"] = n_boot
    out.attrs["n_unconverged"] = n_bad
    return out
