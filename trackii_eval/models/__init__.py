"""Models of change.

``models.growth``: mixed-effects growth models (own engine, exact as lme4);
``models.panel``: panel models against the comparison arm (linearmodels). Import the functions
from their modules, or from the top level (``trackii_eval.growth``, ``trackii_eval.event_study``);
this package does not re-export them, so that ``trackii_eval.models.growth`` stays the module.
"""
