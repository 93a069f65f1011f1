"""Human labels for what the report prints: outcomes, units, waves, arms, model terms.

Everything a reader sees is named from the study configuration, the instrument and the analysis
plan; the code's names (``perceptions_durability``, ``time:arm[T.dialogue]``) appear only in
the report's technical appendix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Instrument, StudyConfig

__all__ = ["POMP", "Labels", "Unit"]

POMP = "percent of maximum possible (POMP)"


@dataclass(frozen=True)
class Unit:
    """How an outcome's numbers read.

    ``factor`` multiplies stored scores and effects before printing (100 for a yes/no share,
    stored as 0/1, printed as a percentage); ``axis`` labels a figure's y axis; ``effect`` names
    the unit of a difference ("points", "percentage points").
    """

    factor: float
    axis: str
    effect: str
    level: str
    digits: int = 1


class Labels:
    """Labels of one study, from its configuration, instrument and stored plan specs.

    Parameters
    ----------
    config, instrument
        The study's configuration and instrument.
    specs
        Plan entries by model name (``spec`` dicts of the stored results).
    """

    def __init__(self, config: StudyConfig, instrument: Instrument,
                 specs: dict[str, dict[str, Any]] | None = None) -> None:
        self.config = config
        self.instrument = instrument
        self.specs = specs or {}
        self.treated = config.treated_arm
        self.comparison = config.comparison_arm

    # -- study -----------------------------------------------------------------------------
    def arm(self, arm: Any) -> str:
        """An arm's label ("Dialogue participants")."""
        for a in self.config.arms:
            if a.id == arm:
                return a.label or a.id
        return str(arm)

    def dialogue(self, dialogue: Any) -> str:
        """A dialogue's name."""
        for d in self.config.dialogues:
            if d.id == dialogue:
                return d.name
        return str(dialogue)

    def wave(self, wave: Any, *, short: bool = False) -> str:
        """"Follow-up year 1 (wave 3)"; ``short``: the wave's label only."""
        for w in self.config.waves:
            if w.index == int(wave):
                return w.label if short else f"{w.label} (wave {w.index})"
        return f"wave {wave}"

    # -- outcomes --------------------------------------------------------------------------
    def construct(self, construct: Any) -> str:
        """An outcome's label from the instrument ("Perceptions of the other side")."""
        con = self.instrument.constructs.get(str(construct))
        return (con.label or str(construct)) if con is not None else str(construct)

    def construct_lower(self, construct: Any) -> str:
        """The label for running text ("perceptions of the other side")."""
        text = self.construct(construct)
        return text[:1].lower() + text[1:] if text[1:2].islower() else text

    def unit(self, construct: Any) -> Unit:
        """The unit of an outcome's scores and effects."""
        con = self.instrument.constructs.get(str(construct))
        if con is None or con.scoring == "pomp":
            return Unit(1.0, "Score, 0–100\n(% of maximum possible)", "points",
                        "points on a 0–100 scale (percent of maximum possible)")
        scale = self.instrument.scales.get(con.items[0].scale)
        lo, hi = (scale.min, scale.max) if scale is not None else (None, None)
        label = re.sub(r"\s*\([^)]*\)\s*$", "", con.label or str(construct))
        if lo == 0 and hi == 1:  # a yes/no answer: its mean is a share
            what = label[:1].lower() + label[1:]
            return Unit(100.0, f"% {what}", "percentage points", "%", 0)
        tail = re.search(r"\(([^)]*)\)\s*$", con.label or "")
        unit = tail.group(1) if tail else "own units"
        if "count" in unit or con.items[0].scale == "count":
            return Unit(1.0, f"{label} (mean count)", "people" if "people" in label.lower()
                        else "counts", "")
        if unit.startswith("of "):  # "tokens given ... (of 100)": the unit is the label's noun
            noun = label.split()[0].lower()
            return Unit(1.0, f"{noun.capitalize()} ({unit})", noun, f"{noun} {unit}")
        return Unit(1.0, f"{label} ({unit})", unit, unit)

    # -- models ----------------------------------------------------------------------------
    def model(self, name: str) -> str:
        """A model's label from the plan (its name only if the plan gives none)."""
        spec = self.specs.get(name, {})
        return spec.get("label") or name.replace("_", " ")

    def outcome_of(self, name: str) -> str:
        """The outcome a model's plan entry names."""
        return str(self.specs.get(name, {}).get("outcome", ""))

    def term(self, name: str, term: str) -> str:
        """A model term as a sentence fragment a reader understands.

        ``arm[T.dialogue]`` -> "Gap at baseline"; ``time:arm[T.dialogue]`` -> "Gap in yearly
        change during the programme"; ``dialogue:wave3`` -> "Gap at Follow-up year 1 (wave 3),
        relative to baseline"; a named contrast keeps its plan label.
        """
        formula = str(self.specs.get(name, {}).get("formula") or "")
        piecewise = "post_time" in formula
        arm = re.escape(str(self.treated))
        if re.fullmatch(rf"arm\[T\.{arm}\]", term):
            return "Gap at baseline (dialogue − comparison)"
        if re.fullmatch(rf"time:arm\[T\.{arm}\]", term):
            return ("Gap in yearly change during the programme" if piecewise
                    else "Gap in yearly change over the study")
        if re.fullmatch(rf"post_time:arm\[T\.{arm}\]", term):
            return "Change in that gap once the programme ended"
        m = re.fullmatch(rf"{arm}:wave(\d+)", term)
        if m:
            return f"Gap at {self.wave(int(m.group(1)))}, change since baseline"
        if term and term[0].islower() and " " in term:
            return term[0].upper() + term[1:]  # a named contrast of the plan
        return term

    def term_wave(self, term: str) -> int | None:
        """The wave an event-study term is about."""
        m = re.fullmatch(rf"{re.escape(str(self.treated))}:wave(\d+)", term)
        return int(m.group(1)) if m else None

    def model_kind(self, name: str) -> str:
        """What kind of estimate a model gives, for table headings."""
        kind = self.specs.get(name, {}).get("kind")
        if kind == "event_study":
            return "Difference-in-differences at each wave"
        if kind == "growth":
            formula = str(self.specs.get(name, {}).get("formula") or "")
            return ("Growth model: change during and after the programme" if "post_time" in
                    formula else "Growth model: linear change over the study")
        return str(kind)
