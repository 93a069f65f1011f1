"""Few-cluster inference: the wild cluster bootstrap (Webb weights).

Why the wild cluster bootstrap and not CR2 (Bell-McCaffrey): Track II studies have a handful of
dialogues, and the clustered sandwich then has G - 1 (or fewer) degrees of freedom whatever its
small-sample factor. CR2 with Bell-McCaffrey / Satterthwaite degrees of freedom fixes the bias
of the sandwich for least-squares coefficients, but the Callaway-Sant'Anna and imputation
estimators are not one least-squares fit, while every estimator here has an influence function
that the wild (multiplier) bootstrap perturbs cluster by cluster — what R ``did`` does with
``clustervars``. Rademacher weights give only 2^G distinct draws (8 with three dialogues), so
Webb's six-point distribution (6^G) is used (Webb 2023; MacKinnon, Nielsen & Webb 2023). With
fewer than about 10 clusters every method is rough; the fit warns.

References
----------
Webb, M. D. (2023). Reworking wild bootstrap-based inference for clustered errors. Canadian
Journal of Economics, 56(3), 839-858.
Cameron, A. C., Gelbach, J. B., & Miller, D. L. (2008). Bootstrap-based improvements for
inference with clustered errors. Review of Economics and Statistics, 90(3), 414-427.
"""

from __future__ import annotations

import numpy as np

__all__ = ["webb_weights"]

_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])


def webb_weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draws of Webb's six-point distribution (mean 0, variance 1), equally likely values
    ±sqrt(3/2), ±1, ±sqrt(1/2).

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int

    Returns
    -------
    ndarray of ``shape``
    """
    return _WEBB[rng.integers(0, 6, size=shape)]
