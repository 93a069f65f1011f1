"""Models of change: mixed-effects growth (own engine) and panel models (linearmodels)."""

from .growth import GrowthFit, growth, lrt
from .panel import PanelFit, event_study

__all__ = ["GrowthFit", "PanelFit", "event_study", "growth", "lrt"]
