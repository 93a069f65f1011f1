"""Generalized linear mixed models (logistic and Poisson), exact as lme4's ``glmer``.

``glmm(formula, data, family="binomial" | "poisson", nAGQ=1)`` fits the growth engine's
random-effect structures (participant intercepts and slopes, participants nested in
dialogues) by the Laplace approximation or, for a single random intercept, adaptive
Gauss–Hermite quadrature, with the conditional modes found by Newton's method per cluster.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48. doi:10.18637/jss.v067.i01
"""

from trackii_eval.models.glmm.api import glmm
from trackii_eval.models.glmm.results import GlmmFit

__all__ = ["GlmmFit", "glmm"]
