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
    "KeyMismatchError",
    "KeyMissingError",
    "ModelError",
    "ReportError",
    "ScoringError",
    "StaleResultError",
    "StoreError",
    "TrackIIEvalError",
    "TrackIIEvalWarning",
    "UnsupportedModelError",
    "warning_line",
]


class TrackIIEvalError(Exception):
    """Root of every error trackii_eval raises on purpose."""


class ConfigError(TrackIIEvalError):
    """study.yaml, instrument.yaml or an analysis plan is malformed or inconsistent."""


class IngestError(TrackIIEvalError):
    """A wave file cannot be read or belongs to the wrong wave; the store is left unchanged."""


class KeyMissingError(IngestError):
    """No pseudonymization key is available."""


class KeyMismatchError(IngestError):
    """The pseudonymization key is not the key the store was made with; nothing was changed.

    The message names both key fingerprints (never the key) and points to key rotation
    (``trackii-eval rekey``).
    """


class StoreError(TrackIIEvalError):
    """The study store is missing, from another study, or inconsistent."""


class StaleResultError(StoreError):
    """A stored output was made from inputs that have changed since (run the stage again)."""


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


class EngineFallbackWarning(TrackIIEvalWarning):
    """A model was fitted by a fallback engine with fewer guarantees (e.g. statsmodels MixedLM
    instead of the lme4-exact growth engine: no Satterthwaite df)."""


def warning_line(message: Warning | str, category: type[Warning] | None = None) -> str:
    """A library warning as the project's one-line message (no traceback, no file path).

    Warnings whose meaning is known are translated (linearmodels' ``AbsorbingEffectWarning``
    lists the variables the fixed effects absorbed); any other keeps its first non-empty line,
    prefixed by its category's name unless it is one of trackii_eval's own.

    Parameters
    ----------
    message
        The warning (or its text).
    category
        Its class; default ``type(message)``.
    """
    category = category or (type(message) if isinstance(message, Warning) else UserWarning)
    text = str(message)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if category.__name__ == "AbsorbingEffectWarning":
        names = ", ".join(lines[1:]) if len(lines) > 1 else "(not named)"
        return (f"the participant and wave fixed effects absorb {names}; dropped from the "
                "model (it does not vary within participants or within waves)")
    first = lines[0] if lines else category.__name__
    if issubclass(category, TrackIIEvalWarning):
        return first
    return f"{category.__name__}: {first}"
