"""One root exception for the whole package, with a branch per pipeline stage.

Every message a user sees names *where* the problem is (file, row or line, column or key) and
*which rule* was broken, and never contains a raw identifier.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConvergenceWarning",
    "DisclosureError",
    "IngestError",
    "KeyMissingError",
    "ModelError",
    "ReportError",
    "ScoringError",
    "StoreError",
    "TrackIIEvalError",
    "TrackIIEvalWarning",
    "UnsupportedModelError",
]


class TrackIIEvalError(Exception):
    """Root of every error trackii_eval raises on purpose."""


class ConfigError(TrackIIEvalError):
    """study.yaml, instrument.yaml or an analysis plan is malformed or inconsistent."""


class IngestError(TrackIIEvalError):
    """A wave file cannot be read or belongs to the wrong wave; the store is left unchanged."""


class KeyMissingError(IngestError):
    """No pseudonymization key is available."""


class StoreError(TrackIIEvalError):
    """The study store is missing, from another study, or inconsistent."""


class ScoringError(TrackIIEvalError):
    """Responses cannot be turned into construct scores."""


class ModelError(TrackIIEvalError):
    """A model cannot be specified or fitted."""


class UnsupportedModelError(ModelError):
    """The model is outside the family an engine supports."""


class ReportError(TrackIIEvalError):
    """A report or dashboard cannot be rendered."""


class DisclosureError(ReportError):
    """Tables to publish cannot be protected, or were registered inconsistently."""


class TrackIIEvalWarning(UserWarning):
    """Root of trackii_eval's warnings."""


class ConvergenceWarning(TrackIIEvalWarning):
    """An optimiser stopped without meeting its convergence criteria."""
