"""Scoring: Allen-Sharp construct scores and their measurement quality."""

from .by_wave import reliability_by_wave
from .scores import SCORE_COLUMNS, keyed_items, score_responses, scores_wide

__all__ = [
    "SCORE_COLUMNS",
    "keyed_items",
    "reliability_by_wave",
    "score_responses",
    "scores_wide",
]
