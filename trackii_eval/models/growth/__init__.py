"""Mixed-effects growth models for longitudinal panels, as exact as lme4 and much faster.

``growth(formula, data, reml=True)`` fits ``y ~ fixed + (terms | participant)`` (optionally
``+ (terms | dialogue)`` with participants nested in dialogues) by minimising the profiled deviance
or REML criterion over the relative covariance factor θ (Bates et al. 2015), with
per-participant sufficient statistics grouped by measurement pattern, an analytic gradient and
L-BFGS-B. Fixed effects get Satterthwaite degrees of freedom as in lmerTest (Kuznetsova et al.
2017). ``compare_growth`` compares growth models by likelihood-ratio tests on ML fits, AIC and
BIC (lme4's ``anova``).

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48. doi:10.18637/jss.v067.i01

Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
doi:10.18637/jss.v082.i13
"""

from trackii_eval.models.growth.api import growth, lrt
from trackii_eval.models.growth.compare import compare_growth
from trackii_eval.models.growth.model import GrowthModel
from trackii_eval.models.growth.optimize import OptimizerInfo
from trackii_eval.models.growth.results import GrowthFit

__all__ = ["GrowthFit", "GrowthModel", "OptimizerInfo", "compare_growth", "growth", "lrt"]
