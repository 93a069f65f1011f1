"""The two response families of the GLMM engine, with their canonical links.

Each family gives, for a linear predictor η, the per-observation log-likelihood *without* its
constant, the score ∂ℓ/∂η and the weight -∂²ℓ/∂η² (for a canonical link the observed and
expected information coincide, so the Laplace approximation of glmer and the Newton step use
the same weight). The constants (binomial coefficients, log y!) are kept apart: they enter the
reported log-likelihood once, as R's ``family()$aic`` does, and never the optimisation.

References
----------
McCullagh, P. and Nelder, J. A. (1989). Generalized Linear Models, 2nd ed. Chapman & Hall
(ch. 2.2, canonical links; ch. 4 and 6, binomial and Poisson likelihoods).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln, xlogy

from trackii_eval.errors import ModelError

__all__ = ["FAMILIES", "Family", "get_family"]


@dataclass(frozen=True)
class Family:
    """A GLM family with its canonical link.

    Attributes
    ----------
    name : str
        ``"binomial"`` (logit link) or ``"poisson"`` (log link).
    link : str
        The link's name.
    ratio : str
        What ``exp(coefficient)`` is: ``"odds ratio"`` or ``"rate ratio"``.
    """

    name: str
    link: str
    ratio: str

    def kernel(self, eta: np.ndarray, y: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Log-likelihood per observation without its constant.

        ``y`` is the number of successes (binomial) or the count (Poisson); ``m`` the number of
        trials (binomial) or the prior weight (Poisson). Shapes broadcast (``eta`` may be
        ``(n, K)`` with ``y``, ``m`` as ``(n, 1)``).
        """
        if self.name == "binomial":
            return y * eta - m * np.logaddexp(0.0, eta)
        return m * (y * eta - np.exp(eta))

    def score_weight(
        self, eta: np.ndarray, y: np.ndarray, m: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Kernel log-likelihood, ∂ℓ/∂η and the weight -∂²ℓ/∂η² per observation."""
        if self.name == "binomial":
            p = expit(eta)
            ll = y * eta - m * np.logaddexp(0.0, eta)
            return ll, y - m * p, m * p * (1.0 - p)
        mu = np.exp(eta)
        return m * (y * eta - mu), m * (y - mu), m * mu

    def weight_derivative(self, eta: np.ndarray, m: np.ndarray) -> np.ndarray:
        """d w / d η: the derivative of the weight (needed for the Laplace gradient)."""
        if self.name == "binomial":
            p = expit(eta)
            return m * p * (1.0 - p) * (1.0 - 2.0 * p)
        return m * np.exp(eta)

    def constant(self, y: np.ndarray, m: np.ndarray) -> float:
        """The log-likelihood's constant (``log C(m, y)``; ``-m log y!``)."""
        if self.name == "binomial":
            return float(np.sum(gammaln(m + 1) - gammaln(y + 1) - gammaln(m - y + 1)))
        return float(-np.sum(m * gammaln(y + 1)))

    def saturated(self, y: np.ndarray, m: np.ndarray) -> float:
        """Log-likelihood of the saturated model (μ = y), constant included.

        glmer's adaptive-quadrature fits report a log-likelihood *relative* to this value (their
        deviance is a sum of deviance residuals), so it is needed to compare with them.
        """
        if self.name == "binomial":
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(m > 0, y / np.where(m > 0, m, 1.0), 0.0)
            ll = xlogy(y, p) + xlogy(m - y, 1.0 - p)
        else:
            ll = m * (xlogy(y, y) - y)
        return float(np.sum(ll)) + self.constant(y, m)

    def inverse_link(self, eta: np.ndarray) -> np.ndarray:
        """Mean per trial (probability) or rate for a linear predictor."""
        return expit(eta) if self.name == "binomial" else np.exp(eta)

    def check(self, y: np.ndarray, m: np.ndarray, response: str) -> None:
        """Refuse responses the family cannot model, naming the first offending row."""
        bad = ~np.isfinite(y) | (y < 0)
        if self.name == "binomial":
            bad |= (y > m + 1e-9) | (np.abs(y - np.round(y)) > 1e-6 * np.maximum(1, m))
            rule = ("a binomial response must be 0/1, or a number of successes between 0 and "
                    "the number of trials (cbind(successes, failures), trials= or weights= "
                    "with a proportion)")
        else:
            bad |= np.abs(y - np.round(y)) > 1e-9
            rule = "a Poisson response must be a count (a whole number >= 0)"
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ModelError(
                f"response {response!r}, analysis row {row + 1}: value {float(y[row]):g} "
                f"breaks the rule: {rule}; recode the outcome or choose another family"
            )


FAMILIES = {
    "binomial": Family("binomial", "logit", "odds ratio"),
    "poisson": Family("poisson", "log", "rate ratio"),
}


def get_family(name: str) -> Family:
    """The family called ``name`` (``"binomial"`` or ``"poisson"``).

    Raises
    ------
    ModelError
        Any other name.
    """
    key = str(name).lower()
    if key not in FAMILIES:
        raise ModelError(
            f"family {name!r} is not supported; use 'binomial' (logistic, yes/no or "
            "successes of trials) or 'poisson' (counts)"
        )
    return FAMILIES[key]
