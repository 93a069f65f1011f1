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
    "ParticipantList",
    "Scale",
    "StudyConfig",
    "Wave",
    "category_key",
    "config_warnings",
    "load_instrument",
    "load_study_config",
]

Output = Literal["perceptions", "relationships", "moderation", "ideas", "behaviour"]
Phase = Literal["baseline", "in_process", "post", "follow_up"]
FileFormat = Literal["csv", "excel", "spss", "stata", "qualtrics", "kobo"]
ModeratorType = Literal["outsider-neutral", "international", "insider-partial"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _LocatedError(ValueError):
    """A rule broken by one entry of a mapping or list: ``loc`` is the entry's key path.

    Pydantic reports a model validator's error at the model itself (for a whole file: line 1,
    "(top level)"); the loader uses ``loc`` to point at the entry's own line instead.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def category_key(value: Any) -> str:
    """Canonical text of a categorical value, for matching across waves and formats.

    ``1``, ``1.0``, ``"1"`` and ``" 1 "`` are the same category; text is compared without
    case and surrounding space (``"a"`` and ``"A "`` are the same side).
    """
    if isinstance(value, bool):
        return str(value).casefold()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return " ".join(text.split()).casefold()
    return str(int(number)) if number.is_integer() else text


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
            for k, item in enumerate(construct.items):
                loc = ("constructs", cname, "items", k)
                if item.id in seen:
                    raise _LocatedError(
                        loc,
                        f"item '{item.id}' appears in construct '{seen[item.id]}' and in "
                        f"construct '{cname}'; an item belongs to one construct"
                    )
                seen[item.id] = cname
                if item.scale not in self.scales:
                    raise _LocatedError(
                        loc,
                        f"construct '{cname}', item '{item.id}': scale '{item.scale}' is not "
                        f"declared under scales (declared: {', '.join(sorted(self.scales))})"
                    )
                scale = self.scales[item.scale]
                if not isinstance(item.reverse, bool) and item.reverse != scale.min + scale.max:
                    raise _LocatedError(
                        loc,
                        f"construct '{cname}', item '{item.id}': reverse key {item.reverse:g} "
                        f"does not fit scale '{item.scale}' ({scale.min:g}-{scale.max:g}); "
                        f"reverse scoring on it subtracts from {scale.min + scale.max:g}, or "
                        "write reverse: true"
                    )
        participant_columns = {self.participant.id, self.participant.arm, self.participant.side,
                               self.participant.dialogue, self.participant.submitted_at}
        for wave, mapping in self.renames.items():
            for column, item_id in mapping.items():
                if item_id not in seen:
                    hint = ""
                    if item_id in participant_columns or item_id in _ROLE_WORDS:
                        hint = (f"; '{item_id}' is a participant column, not an item: name it "
                                f"for this wave in study.yaml under the wave's columns: "
                                f"(e.g. columns: {{code: {column}}})")
                    raise _LocatedError(
                        ("renames", wave, column),
                        f"renames[{wave}]: column '{column}' is mapped to unknown item "
                        f"'{item_id}'{hint}",
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
    # the first wave fielded after the dialogue began (staggered difference-in-differences:
    # the dialogue's cohort); optional, read only by the analysis plan's `did` models
    start_wave: int | None = Field(default=None, ge=1)


class Arm(_Frozen):
    """A study arm; exactly one is the comparison arm."""

    id: str
    label: str = ""
    comparison: bool = False


# words an evaluator uses for the participant code column, besides the configured names
_ROLE_WORDS = frozenset({"code", "pcode", "participant_code", "id"})
# participant roles every study has; others are declared under ``attributes:``
PARTICIPANT_ROLES = ("code", "arm", "side", "dialogue", "submitted_at")


class Wave(_Frozen):
    """One fielding of the survey.

    ``file`` may be left out while the export has not arrived: the wave is then *planned*,
    shown as such and skipped by ingest. ``columns`` names this wave's participant columns
    (role -> column in the file: ``code``, ``arm``, ``side``, ``dialogue``, ``submitted_at`` or
    an attribute declared under the study's ``attributes``); ``recode`` maps this wave's values
    of a categorical participant column to the declared categories (``side: {1: A, 2: B}``).
    A ``recode`` key may be the raw value or its SPSS/Stata value label; values it does not
    name get their value label.
    """

    index: int = Field(ge=1)
    label: str
    phase: Phase
    date: dt.date
    file: str | None = None
    format: FileFormat | None = None
    sheet: str | int | None = None
    header_row: int | None = Field(default=None, ge=1)
    # text encoding of a CSV export (or of strings in an old SPSS/Stata file); default detected
    encoding: str | None = None
    window: tuple[dt.date, dt.date] | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    recode: dict[str, dict[str | int | float | bool, str]] = Field(default_factory=dict)

    @property
    def planned(self) -> bool:
        """True while the wave has no file (declared, not yet fielded or not yet exported)."""
        return self.file is None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        import codecs

        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r}; use a Python codec name "
                                 "such as 'utf-8', 'cp1252' or 'cp1254'") from None
        return value


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
    #: A record with an earlier person within one element that cannot be linked without
    #: guessing is quarantined for review (true, the safe default) or stored as a new person
    #: and listed in linkage_review.csv (false).
    review_possible_matches: bool = True
    #: Whether people may join after the baseline wave. If not (the default), every record
    #: after baseline that looks like a new person is counted in the linkage summary and
    #: listed for review.
    late_entrants: bool = False

    @model_validator(mode="after")
    def _sgic_needs_code(self) -> Linkage:
        if self.method == "sgic" and (not self.column or not self.elements):
            raise ValueError("linkage by sgic needs the code's column and its elements")
        return self


class ParticipantList(_Frozen):
    """The evaluator's own list of participants (enrolment list): code -> attributes.

    Read at ingest from CSV, Excel, SPSS or Stata; codes are pseudonymized with the study's
    key and the list itself is never stored. ``columns`` maps roles (``arm``, ``side``,
    ``dialogue`` or a declared attribute) to the list's columns; by default a column named
    like the role is used.
    """

    file: str
    code: str = "code"
    sheet: str | int | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    recode: dict[str, dict[str | int | float | bool, str]] = Field(default_factory=dict)


class Privacy(_Frozen):
    """Disclosure control settings for everything published."""

    # Numbers describing fewer people are suppressed (trackii_eval.disclosure); statistical
    # offices use 3 to 10: 10 by default, and never below 5 for participants at risk.
    min_cell_size: int = Field(default=10, ge=5)


class Funding(_Frozen):
    """What a funder paid per dialogue and the targets it set (read only by the dashboard).

    ``costs`` maps dialogue ids to the amount spent on each (in ``currency``); ``targets`` are
    optional results the funder wanted: ``cost_per_participant``,
    ``cost_per_additional_improver`` (currency, per reliable improver beyond the comparison
    group's rate; ``cost_per_reliable_improver`` is its former name, read the same way),
    ``reliable_improver_share`` (0-1), ``perception_gap`` (POMP points at the end of the
    programme).
    """

    currency: str = Field(default="EUR", min_length=1)
    costs: dict[str, float] = Field(default_factory=dict)
    targets: dict[Literal["cost_per_participant", "cost_per_additional_improver",
                          "cost_per_reliable_improver", "cost_per_transferred_idea",
                          "reliable_improver_share", "perception_gap"],
                  float] = Field(default_factory=dict)

    @field_validator("costs")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for d, amount in value.items():
            if not amount > 0:
                raise ValueError(f"funding.costs.{d}: a cost must be positive, got {amount}")
        return value


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
    participants: ParticipantList | None = None
    # further participant attributes (sector, role, gender, cohort): name -> declared
    # categories, or null to accept any value
    attributes: dict[str, list[str] | None] = Field(default_factory=dict)
    linkage: Linkage = Linkage()
    context_events: list[ContextEvent] = Field(default_factory=list)
    privacy: Privacy = Privacy()
    # The study's one time zone (IANA name): every submission time is converted into it before
    # any wave-window check, and times written without a zone are taken as study-local.
    timezone: str = "UTC"
    # costs per dialogue and a funder's targets (the portfolio dashboard); None: not declared
    funding: Funding | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as "
                             "'UTC' or 'Asia/Beirut'") from None
        return value

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
            raise _LocatedError(("program_end_wave",),
                                f"program_end_wave {self.program_end_wave} is not a wave index")
        for i, dialogue in enumerate(self.dialogues):
            if dialogue.start_wave is not None and dialogue.start_wave not in indices:
                raise _LocatedError(("dialogues", i, "start_wave"),
                                    f"start_wave {dialogue.start_wave} of dialogue "
                                    f"{dialogue.id} is not a wave index")
        roles = set(PARTICIPANT_ROLES) | set(self.attributes)
        for name in self.attributes:
            if name in PARTICIPANT_ROLES:
                raise _LocatedError(("attributes", name),
                                    f"attributes.{name}: '{name}' is a participant column of "
                                    "every study; declare only further attributes here")
        for i, wave in enumerate(self.waves):
            for role in wave.columns:
                if role not in roles:
                    raise _LocatedError(
                        ("waves", i, "columns", role),
                        f"waves[{i}].columns: '{role}' is not a participant role (roles: "
                        f"{', '.join(sorted(roles))}; declare further ones under attributes:)",
                    )
            for role, mapping in wave.recode.items():
                self._check_recode(("waves", i, "recode", role), role, mapping)
        if self.funding is not None:
            known = {d.id for d in self.dialogues}
            for d in self.funding.costs:
                if d not in known:
                    raise _LocatedError(("funding", "costs", d),
                                        f"funding.costs: '{d}' is not a dialogue of the study "
                                        f"(dialogues: {', '.join(sorted(known))})")
        if self.participants is not None:
            for role in self.participants.columns:
                if role not in roles - {"code", "submitted_at"}:
                    raise _LocatedError(
                        ("participants", "columns", role),
                        f"participants.columns: '{role}' is not an attribute (use arm, side, "
                        "dialogue or one declared under attributes:)",
                    )
            for role, mapping in self.participants.recode.items():
                self._check_recode(("participants", "recode", role), role, mapping)
        return self

    def categories(self, role: str) -> list[str] | None:
        """Declared categories of a participant role (``None``: any value is accepted)."""
        if role == "arm":
            return [a.id for a in self.arms]
        if role == "dialogue":
            return [d.id for d in self.dialogues]
        if role == "side":
            return list(dict.fromkeys(s for d in self.dialogues for s in d.sides))
        return self.attributes.get(role)

    def _check_recode(self, loc: tuple[str | int, ...], role: str,
                      mapping: dict[Any, str]) -> None:
        where = format_loc(loc)
        if role not in ("arm", "side", "dialogue") and role not in self.attributes:
            raise _LocatedError(loc, f"{where}: '{role}' is not a categorical participant "
                                     "column (arm, side, dialogue or a declared attribute)")
        allowed = self.categories(role)
        if allowed is None:
            return
        for value, target in mapping.items():
            if target not in allowed:
                raise _LocatedError(
                    (*loc, value),
                    f"{where}: {value} is recoded to '{target}', which is not a declared "
                    f"{role} (declared: {', '.join(allowed)})",
                )

    @property
    def fielded_waves(self) -> list[Wave]:
        """The waves that have a file (planned waves are left out)."""
        return [w for w in self.waves if not w.planned]

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


def _line(lines: dict[Loc, int], loc: Loc) -> int | None:
    # YAML keys are text in the line map (``1:`` under renames) but numbers in pydantic's loc
    texts = tuple(str(p) for p in loc)
    for end in range(len(loc), 0, -1):
        for candidate in (loc[:end], texts[:end]):
            if candidate in lines:
                return lines[candidate]
    return line_of(lines, ())


def _raise_validation(path: Path, lines: dict[Loc, int], exc: ValidationError) -> None:
    messages = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _LocatedError):
            loc = (*loc, *cause.loc)
        line = _line(lines, loc)
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
        if wave.file is not None and not (root / wave.file).is_file():
            line = line_of(lines, ("waves", i, "file"))
            problems.append(
                f"{path}:{line}: waves[{i}].file: file not found: {wave.file} "
                f"(looked in {root}; if the export has not arrived yet, leave file: out and "
                "the wave is planned)"
            )
    if config.participants is not None and not (root / config.participants.file).is_file():
        line = line_of(lines, ("participants", "file"))
        problems.append(f"{path}:{line}: participants.file: file not found: "
                        f"{config.participants.file} (looked in {root})")
    for key in ("instrument", "ideas", "roster"):
        name = getattr(config, key)
        if name is not None and not (root / name).is_file():
            line = line_of(lines, (key,))
            problems.append(f"{path}:{line}: {key}: file not found: {name} (looked in {root})")
    if problems:
        raise ConfigError("\n".join(problems))
    return config, lines


def config_warnings(config: StudyConfig, lines: dict[Loc, int] | None = None,
                    path: str | Path = "study.yaml", *, today: dt.date | None = None
                    ) -> list[str]:
    """Things in a valid study configuration that deserve a look but block nothing.

    A wave with a file but dated in the future (a wrong date or the wrong file), a wave whose
    date falls outside its own fielding window, and a planned wave whose date has passed.

    Returns
    -------
    list of str
        One line each, ``file:line: key: what``.
    """
    today = today or dt.date.today()
    lines = lines or {}
    out = []
    for i, wave in enumerate(config.waves):
        def at(key: str, i: int = i) -> str:
            line = line_of(lines, ("waves", i, key))
            return f"{path}:{line}" if line else str(path)
        if not wave.planned and wave.date > today:
            out.append(f"{at('date')}: waves[{i}].date: wave {wave.index} has a file but is "
                       f"dated {wave.date}, in the future; check the date and the file")
        if wave.window is not None and not wave.window[0] <= wave.date <= wave.window[1]:
            out.append(f"{at('window')}: waves[{i}].window: wave {wave.index}'s date "
                       f"{wave.date} is outside its own window {wave.window[0]} to "
                       f"{wave.window[1]}")
        if wave.planned and wave.date < today:
            out.append(f"{at('date')}: waves[{i}]: wave {wave.index} is planned (no file:) but "
                       f"dated {wave.date}, in the past; add its file when the export arrives")
    return out
