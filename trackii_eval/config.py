"""The study and its instrument as validated configuration (``study.yaml``, ``instrument.yaml``).

Both files are validated once, at load, by pydantic models; every error names the file, the
line and the key, and says which rule was broken. Nothing downstream re-checks configuration.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._yaml import Loc, format_loc, line_of, load_yaml
from .errors import ConfigError

__all__ = [
    "Arm",
    "Construct",
    "ContextEvent",
    "Dialogue",
    "Instrument",
    "Item",
    "Moderator",
    "Scale",
    "StudyConfig",
    "Wave",
    "load_instrument",
    "load_study_config",
]

Output = Literal["perceptions", "relationships", "moderation", "ideas", "behaviour"]
Phase = Literal["baseline", "in_process", "post", "follow_up"]
FileFormat = Literal["csv", "excel", "spss", "stata", "qualtrics", "kobo"]
ModeratorType = Literal["outsider-neutral", "international", "insider-partial"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ----------------------------------------------------------------------------- instrument


class Scale(_Frozen):
    """A response scale: numeric range and optional labels for its points."""

    min: float
    max: float
    labels: dict[int, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _range(self) -> Scale:
        if not self.max > self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        return self


class Item(_Frozen):
    """One survey item, on a declared scale, possibly reverse keyed."""

    id: str
    text: str = ""
    scale: str
    # true, or the number reverse scoring subtracts from (scale min + max, e.g. 8 on 1-7)
    reverse: bool | float = False
    weight: float = Field(default=1.0, gt=0)
    source: str = ""


class Construct(_Frozen):
    """A scale scored as the (weighted) mean of its keyed items."""

    output: Output
    label: str = ""
    items: list[Item]
    min_answered: float = Field(default=0.5, gt=0, le=1)
    reliability_threshold: float = Field(default=0.7, ge=0, le=1)
    asked_of: list[str] | None = None
    waves: list[int] | None = None
    kind: Literal["attitude", "behaviour"] = "attitude"
    scoring: Literal["pomp", "raw"] = "pomp"

    @field_validator("items")
    @classmethod
    def _nonempty(cls, items: list[Item]) -> list[Item]:
        if not items:
            raise ValueError("a construct needs at least one item")
        return items

    @model_validator(mode="after")
    def _raw_scoring(self) -> Construct:
        if self.scoring == "raw":
            for item in self.items:
                if item.reverse:
                    raise ValueError(
                        f"item '{item.id}': reverse keying needs POMP scoring; a construct "
                        "scored on its raw values (counts, amounts, yes/no) cannot reverse items"
                    )
        return self


class ParticipantColumns(_Frozen):
    """Which wave-file columns identify the participant and carry their attributes."""

    id: str = "participant_code"
    arm: str = "arm"
    side: str = "side"
    dialogue: str = "dialogue"
    submitted_at: str | None = "submitted_at"


class Instrument(_Frozen):
    """The codebook: constructs, items, scales, missing codes and per-wave renames."""

    name: str = ""
    scales: dict[str, Scale]
    missing_codes: dict[str, str] = Field(default_factory=dict)
    identifiers: list[str] = Field(default_factory=list)
    participant: ParticipantColumns = ParticipantColumns()
    constructs: dict[str, Construct]
    renames: dict[int, dict[str, str]] = Field(default_factory=dict)
    ignore_columns: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Instrument:
        seen: dict[str, str] = {}
        for cname, construct in self.constructs.items():
            for item in construct.items:
                if item.id in seen:
                    raise ValueError(
                        f"item '{item.id}' appears in construct '{seen[item.id]}' and in "
                        f"construct '{cname}'; an item belongs to one construct"
                    )
                seen[item.id] = cname
                if item.scale not in self.scales:
                    raise ValueError(
                        f"construct '{cname}', item '{item.id}': scale '{item.scale}' is not "
                        f"declared under scales (declared: {', '.join(sorted(self.scales))})"
                    )
                scale = self.scales[item.scale]
                if not isinstance(item.reverse, bool) and item.reverse != scale.min + scale.max:
                    raise ValueError(
                        f"construct '{cname}', item '{item.id}': reverse key {item.reverse:g} "
                        f"does not fit scale '{item.scale}' ({scale.min:g}-{scale.max:g}); "
                        f"reverse scoring on it subtracts from {scale.min + scale.max:g}, or "
                        "write reverse: true"
                    )
        for wave, mapping in self.renames.items():
            for column, item_id in mapping.items():
                if item_id not in seen:
                    raise ValueError(
                        f"renames[{wave}]: column '{column}' is mapped to unknown item '{item_id}'"
                    )
        return self

    @property
    def items(self) -> dict[str, Item]:
        """All items by id."""
        return {item.id: item for c in self.constructs.values() for item in c.items}

    def construct_of(self, item_id: str) -> str:
        """Name of the construct an item belongs to."""
        for cname, construct in self.constructs.items():
            if any(item.id == item_id for item in construct.items):
                return cname
        raise KeyError(item_id)

    def column_map(self, wave: int) -> dict[str, str]:
        """Map from a wave file's column names to canonical item ids."""
        mapping = {item_id: item_id for item_id in self.items}
        mapping.update(self.renames.get(wave, {}))
        return mapping


# ----------------------------------------------------------------------------- study


class Moderator(_Frozen):
    """A member of a dialogue's moderation team (no names: roles only)."""

    role: str = "facilitator"
    type: ModeratorType
    native_language: bool = False


class Dialogue(_Frozen):
    """One Track II process."""

    id: str
    name: str
    track: Literal["1.5", "2", "3"] = "2"
    sides: list[str] = Field(min_length=2, max_length=2)
    objectives: str = ""
    moderators: list[Moderator] = Field(default_factory=list)


class Arm(_Frozen):
    """A study arm; exactly one is the comparison arm."""

    id: str
    label: str = ""
    comparison: bool = False


class Wave(_Frozen):
    """One fielding of the survey."""

    index: int = Field(ge=1)
    label: str
    phase: Phase
    date: dt.date
    file: str
    format: FileFormat | None = None
    sheet: str | int | None = None
    header_row: int | None = Field(default=None, ge=1)
    window: tuple[dt.date, dt.date] | None = None


class ContextEvent(_Frozen):
    """A dated event outside the dialogue that may move everyone's perceptions."""

    date: dt.date
    label: str


class CodeElementSpec(_Frozen):
    """One element of a self-generated identification code (its value is never shown)."""

    name: str
    length: int = Field(ge=1)
    kind: Literal["letters", "digits", "any"] = "any"


class Linkage(_Frozen):
    """How the same person is found across waves.

    ``id``: by the participant code column, exactly. ``sgic``: by a self-generated
    identification code in ``column``, exact matches first, then codes within one slip of one
    element, never guessing ambiguous cases; the evaluator's decisions file resolves those.
    """

    method: Literal["id", "sgic"] = "id"
    column: str | None = None
    elements: list[CodeElementSpec] = Field(default_factory=list)
    decisions: str = "linkage_decisions.csv"

    @model_validator(mode="after")
    def _sgic_needs_code(self) -> Linkage:
        if self.method == "sgic" and (not self.column or not self.elements):
            raise ValueError("linkage by sgic needs the code's column and its elements")
        return self


class Privacy(_Frozen):
    """Disclosure control settings for everything published."""

    # Numbers describing fewer people are suppressed (trackii_eval.disclosure); statistical
    # offices use 3 to 10: 10 by default, and never below 5 for participants at risk.
    min_cell_size: int = Field(default=10, ge=5)


class StudyConfig(_Frozen):
    """What the study is: dialogues, arms, waves and their files."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    name: str
    description: str = ""
    instrument: str = "instrument.yaml"
    dialogues: list[Dialogue] = Field(min_length=1)
    arms: list[Arm] = Field(min_length=1)
    waves: list[Wave] = Field(min_length=1)
    program_end_wave: int | None = None
    ideas: str | None = None
    roster: str | None = None
    linkage: Linkage = Linkage()
    context_events: list[ContextEvent] = Field(default_factory=list)
    privacy: Privacy = Privacy()

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        indices = [w.index for w in self.waves]
        if indices != sorted(set(indices)):
            raise ValueError(f"wave indices must be unique and increasing, got {indices}")
        dates = [w.date for w in self.waves]
        if dates != sorted(dates):
            raise ValueError("wave dates must increase with the wave index")
        if sum(a.comparison for a in self.arms) > 1:
            raise ValueError("at most one arm can be the comparison arm")
        if self.program_end_wave is not None and self.program_end_wave not in indices:
            raise ValueError(f"program_end_wave {self.program_end_wave} is not a wave index")
        return self

    @property
    def comparison_arm(self) -> str | None:
        """Id of the comparison arm, if any."""
        return next((a.id for a in self.arms if a.comparison), None)

    @property
    def treated_arm(self) -> str:
        """Id of the (first) dialogue arm."""
        return next(a.id for a in self.arms if not a.comparison)

    def wave_time(self) -> dict[int, float]:
        """Years since baseline of each wave, from the fielding dates."""
        base = self.waves[0].date
        return {w.index: round((w.date - base).days / 365.25, 4) for w in self.waves}

    @property
    def program_end_time(self) -> float | None:
        """Years since baseline at which the programme ended."""
        if self.program_end_wave is None:
            return None
        return self.wave_time()[self.program_end_wave]


# ----------------------------------------------------------------------------- loading


def _raise_validation(path: Path, lines: dict[Loc, int], exc: ValidationError) -> None:
    messages = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        line = line_of(lines, loc)
        where = f"{path}:{line}" if line else str(path)
        msg = err["msg"].removeprefix("Value error, ")
        key = format_loc(loc)
        messages.append(f"{where}: {key}: {msg}")
    raise ConfigError("\n".join(messages)) from None


def _load(path: Path, model: type[BaseModel]) -> tuple[Any, dict[Loc, int]]:
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        _raise_validation(path, lines, exc)
        raise  # unreachable; keeps type checkers happy


def load_instrument(path: str | Path) -> Instrument:
    """Load and validate an ``instrument.yaml``.

    Raises
    ------
    ConfigError
        Naming the file, line and key of every problem found.
    """
    instrument, _ = _load(Path(path), Instrument)
    return instrument


def load_study_config(path: str | Path) -> tuple[StudyConfig, dict[Loc, int]]:
    """Load and validate a ``study.yaml``; also check that the files it names exist.

    Returns
    -------
    (StudyConfig, dict)
        The configuration and the key-path -> line map used for later messages.
    """
    path = Path(path)
    config, lines = _load(path, StudyConfig)
    root = path.parent
    problems = []
    for i, wave in enumerate(config.waves):
        if not (root / wave.file).is_file():
            line = line_of(lines, ("waves", i, "file"))
            problems.append(
                f"{path}:{line}: waves[{i}].file: file not found: {wave.file} "
                f"(looked in {root})"
            )
    for key in ("instrument", "ideas", "roster"):
        name = getattr(config, key)
        if name is not None and not (root / name).is_file():
            line = line_of(lines, (key,))
            problems.append(f"{path}:{line}: {key}: file not found: {name} (looked in {root})")
    if problems:
        raise ConfigError("\n".join(problems))
    return config, lines
