"""Models of change.

``models.growth``: mixed-effects growth models (own engine, exact as lme4);
``models.glmm``: logistic and Poisson mixed models (Laplace and adaptive quadrature, as
``lme4::glmer``);
``models.clmm``: cumulative-link mixed models for ordinal items (as ordinal::clmm; Laplace and
adaptive quadrature, also for random slopes);
``models.panel``: the event study against the comparison arm and the project's clustered-SE
convention (linearmodels); ``models.panel_estimators``: within, random effects, first
differences, between, pooled and the Hausman test; ``models.effects`` (effect sizes with CIs,
effects by subgroup), ``models.change`` (reliable change, durability) and ``models.attrition``
(balance, dropout, inverse-probability weighting, multiple imputation): change that matters
to people; ``models.results``: the results protocol
every fit follows (``tidy``, ``record``, ``summary``, ``to_dict``/``from_dict``, ``compare``).
Import the functions from their modules, or from the top level (``trackii_eval.growth``,
``trackii_eval.event_study``, ``trackii_eval.panel``, ``trackii_eval.compare``); this package
does not re-export them, so that ``trackii_eval.models.growth`` stays the module.
"""
