"""Models of change.

``models.growth``: mixed-effects growth models (own engine, exact as lme4);
``models.panel``: the event study against the comparison arm and the project's clustered-SE
convention (linearmodels); ``models.panel_estimators``: within, random effects, first
differences, between, pooled and the Hausman test; ``models.results``: the results protocol
every fit follows (``tidy``, ``record``, ``summary``, ``to_dict``/``from_dict``, ``compare``).
Import the functions from their modules, or from the top level (``trackii_eval.growth``,
``trackii_eval.event_study``, ``trackii_eval.panel``, ``trackii_eval.compare``); this package
does not re-export them, so that ``trackii_eval.models.growth`` stays the module.
"""
