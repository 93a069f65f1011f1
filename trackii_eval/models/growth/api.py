"""Public entry points: :func:`growth` and :func:`lrt`.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.

Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from trackii_eval.errors import ModelError, TrackIIEvalWarning
from trackii_eval.models.growth.design import prepare
from trackii_eval.models.growth.formula import parse_formula
from trackii_eval.models.growth.model import GrowthModel
from trackii_eval.models.growth.results import GrowthFit
from trackii_eval.models.results import data_fingerprint, package_versions

__all__ = ["growth", "lrt"]


def growth(formula: str, data: pd.DataFrame, reml: bool = True) -> GrowthFit:
    """Fit a linear mixed growth model.

    Parameters
    ----------
    formula : str
        lme4-style formula. Supported natively: ``y ~ fixed + (terms | participant)`` with any
        small number of correlated random terms (``(1 | p)``, ``(time | p)``,
        ``(0 + time | p)``, ``(time + I(time**2) | p)``, ``(time || p)`` for independent
        terms), optionally ``+ (1 | dialogue)``, ``+ (time | dialogue)`` or
        ``+ (time || dialogue)`` (the outer factor's intercept and slopes) with participants
        nested in dialogues. Models with only random intercepts for crossed or more factors
        are fitted by statsmodels MixedLM (noted in ``fit.warnings`` and warned as
        :class:`~trackii_eval.errors.EngineFallbackWarning`); anything else raises
        UnsupportedModelError.
        The fixed part is parsed by formulaic, so strings are treated as categorical and terms
        are named as formulaic names them (``Intercept``, ``arm[T.dialogue]``).
    data : pandas.DataFrame
        Long format, one row per participant and wave. Rows with a missing value in any used
        column are dropped (``fit.n_dropped``).
    reml : bool
        REML (default) or maximum likelihood.

    Returns
    -------
    GrowthFit
        Immutable results: ``fixed``, ``random``, ``theta``, ``deviance``, ``predict`` ...

    Raises
    ------
    ModelError
        Malformed formula, missing columns, no usable rows.
    UnsupportedModelError
        Random-effects structure outside the supported family.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.

    Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests
    in linear mixed effects models. Journal of Statistical Software 82(13), 1-26.

    Examples
    --------
    >>> fit = growth("score ~ time * arm + (time | participant)", data=df)  # doctest: +SKIP
    >>> fit.fixed.loc["time", ["estimate", "std_error", "df", "p_value"]]  # doctest: +SKIP
    """
    prep = prepare(parse_formula(formula), data)
    if prep.structure.kind == "native":
        fit = GrowthModel.from_prepared(prep).fit(reml=reml)
    else:
        from trackii_eval.models.growth.fallback import fit_statsmodels

        fit = fit_statsmodels(prep, reml=reml)
    # The fit record names the data and the code that made it (results protocol).
    return dataclasses.replace(
        fit,
        fingerprint=data_fingerprint(prep.frame.reset_index(drop=True)),
        versions=tuple(package_versions("statsmodels").items()),
    )


def lrt(fit_small: GrowthFit, fit_big: GrowthFit, refit: bool = True) -> pd.DataFrame:
    """Likelihood-ratio test of two nested models fitted to the same data.

    As lme4's ``anova(m1, m2)``: if either fit is REML and ``refit`` is True, both are refitted
    by maximum likelihood first (REML criteria of models with different fixed effects are not
    comparable). With ``refit=False`` REML fits are compared on the REML criterion, which is
    only allowed when the fixed effects are identical.

    Parameters
    ----------
    fit_small, fit_big : GrowthFit
        The restricted and the general model (order is taken from the parameter counts).
    refit : bool
        Refit REML fits by ML before comparing (lme4's default).

    Returns
    -------
    pandas.DataFrame
        One row per model (fewer parameters first): npar, aic, bic, loglik, deviance, chisq,
        df, p_value, criterion ("ML" or "REML"). ``attrs["notes"]`` lists what was done.

    Raises
    ------
    ModelError
        If the fits use different data or REML fits with different fixed effects are compared
        without refitting.

    Notes
    -----
    When the models differ in variance parameters, the null value lies on the boundary and the
    χ² p-value is conservative (Self and Liang 1987).

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48 (§5.2.1).
    """
    fits = [fit_small, fit_big]
    for f in fits:
        if not isinstance(f, GrowthFit):
            raise ModelError("lrt() compares two GrowthFit objects returned by growth()")
    if fit_small.nobs != fit_big.nobs:
        raise ModelError(
            f"the models were fitted to different numbers of observations ({fit_small.nobs} vs "
            f"{fit_big.nobs}); a likelihood-ratio test needs the same rows"
        )
    sigs = [f._backend.signature() if f._backend is not None else None for f in fits]
    if all(s is not None for s in sigs) and not np.array_equal(sigs[0]["y"], sigs[1]["y"]):
        raise ModelError("the two models were fitted to different responses")
    notes: list[str] = []
    same_fixed = fit_small.fixed_names == fit_big.fixed_names
    any_reml = fit_small.reml or fit_big.reml
    if any_reml and refit:
        if not same_fixed:
            msg = (
                "REML fits with different fixed effects are not comparable; both models were "
                "refitted by maximum likelihood (as lme4's anova does)"
            )
            warnings.warn(msg, TrackIIEvalWarning, stacklevel=2)
        else:
            msg = "refitted REML fits by maximum likelihood before comparing (as lme4's anova)"
        notes.append(msg)
        fits = [f._backend.refit_ml(f) if f.reml else f for f in fits]
        criterion = "ML"
    elif any_reml:
        if not (fit_small.reml and fit_big.reml):
            raise ModelError("cannot compare a REML fit with an ML fit without refitting")
        if not same_fixed:
            raise ModelError(
                "REML criteria of models with different fixed effects are not comparable; use "
                "refit=True (ML) or fit both models with reml=False"
            )
        criterion = "REML"
    else:
        criterion = "ML"
    npars = [len(f.fixed_names) + f.theta.size + 1 for f in fits]
    order = np.argsort(npars, kind="stable")
    fits = [fits[i] for i in order]
    npars = [npars[i] for i in order]
    chisq = max(0.0, fits[0].deviance - fits[1].deviance)
    ddf = npars[1] - npars[0]
    if ddf <= 0:
        raise ModelError("the two models have the same number of parameters; they are not nested")
    if fits[1].deviance > fits[0].deviance + 1e-6:
        notes.append(
            "the larger model has a higher deviance than the smaller one: the models may not be "
            "nested or a fit did not converge"
        )
    p = float(sps.chi2.sf(chisq, ddf))
    out = pd.DataFrame(
        {
            "npar": npars,
            "aic": [f.aic for f in fits],
            "bic": [f.bic for f in fits],
            "loglik": [f.loglik for f in fits],
            "deviance": [f.deviance for f in fits],
            "chisq": [np.nan, chisq],
            "df": [np.nan, ddf],
            "p_value": [np.nan, p],
            "criterion": [criterion, criterion],
        },
        index=pd.Index([f.formula for f in fits], name="model"),
    )
    out.attrs["notes"] = notes
    return out
