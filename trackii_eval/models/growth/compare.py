"""Which growth model do the data support? Likelihood-ratio tests on ML fits, AIC and BIC.

:func:`compare_growth` is lme4's ``anova(m1, m2, ...)`` for any number of growth fits of the
same response on the same rows, with the information criteria's differences and Akaike weights
beside it, and a nesting check that lme4 leaves to the user.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§5.2.1, ``anova``).

Burnham, K. P. and Anderson, D. R. (2002). Model Selection and Multimodel Inference, 2nd ed.
Springer (§2.9, Akaike weights).

Self, S. G. and Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood estimators and
likelihood ratio tests under nonstandard conditions. JASA 82(398), 605-610.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from trackii_eval.errors import ModelError
from trackii_eval.models.growth.results import GrowthFit

__all__ = ["compare_growth"]

COLUMNS = [
    "formula", "criterion", "npar", "aic", "bic", "loglik", "deviance", "chisq", "df",
    "p_value", "nested", "delta_aic", "delta_bic", "aic_weight",
]


def _random_terms(fit: GrowthFit) -> set[tuple[str, str, str]]:
    # (group, term, term2) of every variance and covariance: what the random part estimates.
    rnd = fit.random
    rnd = rnd[rnd["group"] != "Residual"]
    return {
        (str(g), str(t), "" if pd.isna(t2) else str(t2))
        for g, t, t2 in zip(rnd["group"], rnd["term"], rnd["term2"], strict=True)
    }


def _nested(small: GrowthFit, big: GrowthFit) -> bool:
    """True when ``small``'s fixed effects and random terms are all in ``big``.

    Term names are compared as the fits name them, so a reparametrised model (other coding,
    centred time) counts as not nested even where it is: the test is then not reported, a loud
    rather than a silent outcome.
    """
    return set(small.fixed_names) <= set(big.fixed_names) and _random_terms(
        small
    ) <= _random_terms(big)


def compare_growth(
    fits: Mapping[str, GrowthFit] | Sequence[GrowthFit],
) -> pd.DataFrame:
    """Compare growth models of one response: sequential LRTs on ML fits, AIC, BIC.

    As lme4's ``anova(m1, m2, ...)``: REML fits are refitted by maximum likelihood (REML
    criteria of models with different fixed effects are not comparable), models are sorted by
    their number of parameters, and each row's likelihood-ratio test is against the row above.

    Parameters
    ----------
    fits : mapping of name to GrowthFit, or sequence of GrowthFit
        At least two fits of the same response on the same rows (names default to formulas).

    Returns
    -------
    pandas.DataFrame
        One row per model, index ``model`` (the name), fewest parameters first, columns:

        ``formula``; ``criterion`` (always ``"ML"``); ``npar`` (fixed effects + θ + σ);
        ``aic``, ``bic``, ``loglik``, ``deviance`` of the ML fit; ``chisq`` = max(0, deviance
        of the row above - this deviance), ``df`` (difference in npar) and ``p_value`` (χ²) of
        the test against the row above, NaN on the first row and where the row above is not
        nested in this one; ``nested`` (row above nested in this one; NaN on the first row);
        ``delta_aic``, ``delta_bic`` (difference to the smallest value: 0 marks the model each
        criterion prefers); ``aic_weight`` (Akaike weight, exp(-Δ/2) normalised over the rows).

        ``attrs["notes"]`` lists what was done (ML refits) and every caveat;
        ``attrs["prefer"]`` maps ``"aic"``, ``"bic"`` and ``"lrt"`` to the preferred model's
        name (``"lrt"``: stepping up from the smallest model while each test against the row
        above is significant at 5%).

    Raises
    ------
    ModelError
        Fewer than two fits, an object that is not a GrowthFit, different numbers of rows or
        different responses, or two models with the same number of parameters in a test.

    Notes
    -----
    When the larger model adds variance parameters the null value is on the boundary of the
    parameter space and the χ² p-value is conservative (Self and Liang 1987); the note says so.
    AIC and BIC need no nesting.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.

    Burnham, K. P. and Anderson, D. R. (2002). Model Selection and Multimodel Inference.
    Springer.
    """
    if isinstance(fits, Mapping):
        named = [(str(k), v) for k, v in fits.items()]
    else:
        named = [(getattr(f, "formula", str(i)), f) for i, f in enumerate(fits)]
    if len(named) < 2:
        raise ModelError("compare_growth needs at least two growth fits to compare")
    for name, f in named:
        if not isinstance(f, GrowthFit):
            raise ModelError(f"model {name!r} is not a growth fit; compare_growth compares "
                             "GrowthFit objects returned by growth()")
    if len({n for n, _ in named}) != len(named):
        raise ModelError("two models have the same name; give each a distinct name")
    base_name, base = named[0]
    for name, f in named[1:]:
        if f.nobs != base.nobs:
            raise ModelError(
                f"models {base_name!r} and {name!r} use different numbers of rows ({base.nobs} vs "
                f"{f.nobs}: a column of one has missing values the other does not read); fit "
                "both to the same rows (drop incomplete rows first) before comparing"
            )
        sig_a = base._backend.signature() if base._backend is not None else None
        sig_b = f._backend.signature() if f._backend is not None else None
        if sig_a is not None and sig_b is not None and not np.array_equal(sig_a["y"], sig_b["y"]):
            raise ModelError(f"models {base_name!r} and {name!r} were fitted to different "
                             "responses; a likelihood comparison needs the same response")
    notes: list[str] = []
    refitted = [n for n, f in named if f.reml]
    if refitted:
        notes.append(
            "refitted by maximum likelihood before comparing (as lme4's anova): "
            + ", ".join(refitted)
        )
    ml = [(n, f._backend.refit_ml(f) if f.reml else f) for n, f in named]
    npar = [len(f.fixed_names) + f.theta.size + 1 for _, f in ml]
    order = np.argsort(npar, kind="stable")
    ml = [ml[i] for i in order]
    npar = [npar[i] for i in order]
    k = len(ml)
    chisq = np.full(k, np.nan)
    ddf = np.full(k, np.nan)
    pval = np.full(k, np.nan)
    nested = np.full(k, np.nan, dtype=object)
    for i in range(1, k):
        (n0, f0), (n1, f1) = ml[i - 1], ml[i]
        if npar[i] == npar[i - 1]:
            raise ModelError(
                f"models {n0!r} and {n1!r} have the same number of parameters ({npar[i]}); a "
                "likelihood-ratio test needs nested models that differ in size"
            )
        is_nested = _nested(f0, f1)
        nested[i] = is_nested
        if not f1.converged or not f0.converged:
            notes.append(f"{n1 if not f1.converged else n0!r} did not converge; its test is "
                         "unreliable")
        if not is_nested:
            notes.append(f"{n0!r} is not nested in {n1!r} (its terms are not all in the larger "
                         "model): no likelihood-ratio test; compare them by AIC/BIC")
            continue
        chisq[i] = max(0.0, f0.deviance - f1.deviance)
        ddf[i] = npar[i] - npar[i - 1]
        pval[i] = float(sps.chi2.sf(chisq[i], ddf[i]))
        if f1.deviance > f0.deviance + 1e-6:
            notes.append(f"{n1!r} has a higher deviance than the smaller {n0!r}: a fit did not "
                         "reach its optimum")
        if _random_terms(f0) != _random_terms(f1):
            notes.append(f"{n1!r} adds variance parameters to {n0!r}: the null value is on the "
                         "boundary and the χ² p-value is conservative (Self and Liang 1987)")
    aic = np.array([f.aic for _, f in ml])
    bic = np.array([f.bic for _, f in ml])
    d_aic, d_bic = aic - aic.min(), bic - bic.min()
    w = np.exp(-0.5 * d_aic)
    out = pd.DataFrame(
        {
            "formula": [f.formula for _, f in ml],
            "criterion": ["ML"] * k,
            "npar": npar,
            "aic": aic,
            "bic": bic,
            "loglik": [f.loglik for _, f in ml],
            "deviance": [f.deviance for _, f in ml],
            "chisq": chisq,
            "df": ddf,
            "p_value": pval,
            "nested": nested,
            "delta_aic": d_aic,
            "delta_bic": d_bic,
            "aic_weight": w / w.sum(),
        },
        index=pd.Index([n for n, _ in ml], name="model"),
    )
    lrt_pick = ml[0][0]
    for i in range(1, k):
        if nested[i] is not True or not pval[i] < 0.05:
            break
        lrt_pick = ml[i][0]
    out.attrs["notes"] = notes
    out.attrs["prefer"] = {
        "aic": str(out.index[int(np.argmin(aic))]),
        "bic": str(out.index[int(np.argmin(bic))]),
        "lrt": lrt_pick,
    }
    return out
