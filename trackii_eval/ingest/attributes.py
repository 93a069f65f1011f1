"""Participant columns per wave, harmonised categories, and attributes from the evaluator's list.

Three things real studies need that one study-wide column name cannot give:

* :func:`prepare_wave` names each wave's participant columns (the code is ``Q2`` in a Qualtrics
  wave and ``pcode`` in an SPSS wave) and harmonises categorical participant values across
  waves: the wave's ``recode:`` map, SPSS/Stata value labels (``1`` -> ``"A"``), then a case-
  and space-insensitive match to the declared categories. A value that still matches
  nothing is left as it is, so validation reports it (file, row, column, value); it is never
  dropped or unlinked in silence.
* :func:`apply_participant_list` reads the evaluator's own list (code -> arm, dialogue, side,
  sector, ...), pseudonymizes its codes with the study's key (or links them through the
  self-generated code linkage) and fills in the participants' attributes. The list itself is
  never stored.
* :func:`require_arms` turns "no participant has an arm" into an error that says so, instead
  of an empty model frame.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..config import Instrument, StudyConfig, Wave, category_key
from ..errors import IngestError, ModelError
from .readers import RawTable, read_table
from .readers.base import canonical_text
from .rules import Rule
from .validate import PROBLEM_COLUMNS, ValidatedWave, mask

if TYPE_CHECKING:
    from ..pipeline.context import StudyContext
    from ..store import Store
    from .pseudonym import PseudonymKey
    from .sgic import SgicLinkage

__all__ = [
    "ATTRIBUTES_TABLE",
    "apply_participant_list",
    "canonical_column",
    "harmonise_values",
    "prepare_wave",
    "read_participant_list",
    "require_arms",
    "store_wave_attributes",
    "wave_attributes",
]

ATTRIBUTES_TABLE = "participant_attributes"
_CATEGORICAL = ("arm", "side", "dialogue")


def canonical_column(role: str, config: StudyConfig, instrument: Instrument) -> str:
    """The column name validation expects for a participant role.

    ``code`` is the self-generated code column when the study links by one, else the
    instrument's participant id; ``arm``/``side``/``dialogue``/``submitted_at`` are the
    instrument's participant columns; a declared attribute keeps its own name.
    """
    cols = instrument.participant
    if role == "code":
        if config.linkage.method == "sgic" and config.linkage.column:
            return config.linkage.column
        return cols.id
    if role in ("arm", "side", "dialogue"):
        return str(getattr(cols, role))
    if role == "submitted_at":
        return cols.submitted_at or "submitted_at"
    return role


def harmonise_values(values: pd.Series, role: str, config: StudyConfig,
                     labels: dict[Any, str] | None = None,
                     recode: dict[Any, str] | None = None) -> pd.Series:
    """Map a categorical participant column onto the study's declared categories.

    Order: the recode map (keyed by the raw value, or by its label), else the value label
    (SPSS/Stata), then a case- and space-insensitive match to a declared category. Values that
    match nothing are returned as text, unchanged, so that validation reports them; blanks
    stay ``None``.

    Parameters
    ----------
    values
        The column as read (numbers, text or ``None``).
    role
        ``arm``, ``side``, ``dialogue`` or a declared attribute.
    config
        The study (declared categories).
    labels
        ``{value: label}`` of the column, from the file.
    recode
        ``{value in this file: declared category}``; keys compared as canonical text.
    """
    label_map = {category_key(k): v for k, v in (labels or {}).items()}
    recode_map = {category_key(k): v for k, v in (recode or {}).items()}
    declared = config.categories(role)
    by_key = {category_key(c): c for c in declared} if declared is not None else {}

    def one(value: Any) -> Any:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return None
        text = str(value).strip()
        if not text:
            return None
        key = category_key(value)
        if key in recode_map:  # an explicit recode of the raw value wins over its label
            return recode_map[key]
        if key in label_map:
            text = str(label_map[key]).strip()
            key = category_key(text)
            if key in recode_map:
                return recode_map[key]
        return by_key.get(key, text)

    return values.map(one).astype(object)


def prepare_wave(raw: RawTable, wave: Wave, config: StudyConfig,
                 instrument: Instrument) -> RawTable:
    """Apply a wave's participant column names and harmonise its categorical values.

    Called right after reading, before validation and linkage, so everything downstream sees
    the study's canonical column names and categories.

    Raises
    ------
    IngestError
        When a column named under the wave's ``columns:`` is not in the file (with the near
        matches in its header), or the mapping would give two columns the same name.
    """
    renames: dict[str, str] = {}
    for role, column in wave.columns.items():
        target = canonical_column(role, config, instrument)
        if column not in raw.data.columns:
            near = difflib.get_close_matches(column, [str(c) for c in raw.data.columns], n=3,
                                              cutoff=0.5)
            hint = f"; near matches in its header: {', '.join(near)}" if near else ""
            raise IngestError(
                f"{wave.file}: study.yaml names column '{column}' as the {role} of wave "
                f"{wave.index} (waves[].columns), but the file has no such column{hint}"
            )
        if column != target:
            renames[column] = target
    if renames:
        clash = [t for s, t in renames.items() if t in raw.data.columns and t not in renames]
        if clash:
            raise IngestError(
                f"{wave.file}: wave {wave.index} maps a column onto '{clash[0]}', but the file "
                f"already has a column '{clash[0]}'; list it under ignore_columns in "
                "instrument.yaml or map that one instead"
            )
        raw = _rename(raw, renames)
    data = raw.data
    changed = False
    roles = [*_CATEGORICAL, *config.attributes]
    new_data = data.copy()
    for role in roles:
        column = canonical_column(role, config, instrument)
        if column not in data.columns:
            continue
        labels = raw.value_labels.get(column)
        recode = wave.recode.get(role)
        if not labels and not recode and config.categories(role) is None:
            continue
        new_data[column] = harmonise_values(data[column], role, config, labels, recode)
        changed = True
    if not changed:
        return raw
    return dataclasses.replace(raw, data=new_data)


def _rename(raw: RawTable, renames: dict[str, str]) -> RawTable:
    def keys(d: dict[str, Any]) -> dict[str, Any]:
        return {renames.get(k, k): v for k, v in d.items()}

    missing = raw.missing_codes
    if missing is not None:
        missing = missing.rename(columns=renames)
    return dataclasses.replace(
        raw,
        data=raw.data.rename(columns=renames),
        missing_codes=missing,
        source_columns=keys(raw.source_columns),
        column_labels=keys(raw.column_labels),
        value_labels=keys(raw.value_labels),
        metadata_columns=frozenset(renames.get(c, c) for c in raw.metadata_columns),
        identifier_columns=frozenset(renames.get(c, c) for c in raw.identifier_columns),
    )


_ATTRIBUTES_SCHEMA = (f"CREATE TABLE IF NOT EXISTS {ATTRIBUTES_TABLE} (participant VARCHAR, "
                      "attribute VARCHAR, value VARCHAR, source VARCHAR)")


def wave_attributes(raw: RawTable, validated: ValidatedWave, config: StudyConfig, wave: Wave
                    ) -> tuple[ValidatedWave, pd.DataFrame]:
    """Declared attributes (sector, role, ...) a wave file carries for its kept rows.

    A value that is not a declared category is a cell problem (the attribute is left unknown
    for that person, the row is kept).

    Returns
    -------
    (ValidatedWave, DataFrame)
        The wave with those problems added; ``raw_id``, ``attribute``, ``value``.
    """
    names = [a for a in config.attributes if a in raw.data.columns]
    rows: list[dict[str, Any]] = []
    if not names or validated.submissions.empty:
        return validated, pd.DataFrame(rows, columns=["raw_id", "attribute", "value"])
    position = {int(r): i for i, r in enumerate(raw.row_numbers)}
    problems = []
    for raw_id, row in zip(validated.submissions["raw_id"], validated.submissions["row"],
                           strict=True):
        pos = position[int(row)]
        for name in names:
            value = raw.data[name].iloc[pos]
            if value is None or (isinstance(value, float) and pd.isna(value)) or \
                    not str(value).strip():
                continue
            declared = config.categories(name)
            if declared is not None and value not in declared:
                problems.append({
                    "file": wave.file, "wave": wave.index, "row": int(row), "column": name,
                    "value": str(value)[:40], "rule": "unknown_category", "scope": "cell",
                    "message": f"{_LIST_RULES['unknown_category']}: declared {name}: "
                               f"{', '.join(declared)}; map it under the wave's recode:",
                })
                continue
            rows.append({"raw_id": raw_id, "attribute": name, "value": str(value)})
    if problems:
        validated = dataclasses.replace(validated, problems=pd.concat(
            [validated.problems, pd.DataFrame(problems, columns=PROBLEM_COLUMNS)],
            ignore_index=True))
    return validated, pd.DataFrame(rows, columns=["raw_id", "attribute", "value"])


def store_wave_attributes(store: Any, attributes: pd.DataFrame, pseudo: dict[str, str]) -> None:
    """Store a wave's attributes for participants who have no value for them yet.

    The first wave that gives a person an attribute sets it; the participant list, read after
    the waves, overrides it (it is the evaluator's own record).
    """
    if attributes.empty:
        return
    store.execute(_ATTRIBUTES_SCHEMA)
    frame = attributes.assign(participant=attributes["raw_id"].map(pseudo), source="wave")
    frame = frame[frame["participant"].notna()]
    have = store.query(f"SELECT participant, attribute FROM {ATTRIBUTES_TABLE}")
    seen = set(zip(have["participant"], have["attribute"], strict=True))
    frame = frame[[(p, a) not in seen for p, a in zip(frame["participant"], frame["attribute"],
                                                       strict=True)]]
    frame = frame.drop_duplicates(["participant", "attribute"])
    if len(frame):
        store.append(ATTRIBUTES_TABLE, frame[["participant", "attribute", "value", "source"]])


# ----------------------------------------------------------------------------- participant list

# the registry's descriptions, by code (one registry of rules: ingest/rules.py)
_LIST_RULES = {r: Rule(r).description for r in (
    "missing_code", "duplicate_code", "not_in_study", "unknown_category", "conflicts_with_waves")}


def read_participant_list(root: Path, config: StudyConfig) -> tuple[pd.DataFrame, str, RawTable]:
    """Read and check the study's participant list, without pseudonymizing anything.

    Parameters
    ----------
    root
        The study folder.
    config
        The study (its ``participants:`` and declared categories).

    Returns
    -------
    (DataFrame, str, RawTable)
        One column per role found (``arm``, ``side``, ``dialogue``, declared attributes),
        harmonised; ``code`` (raw, in memory only) and ``row`` (as the user sees it); the file
        name for messages; the raw table.

    Raises
    ------
    IngestError
        When the list lacks its code column or a column named under ``participants.columns``.
    """
    spec = config.participants
    if spec is None:
        raise ValueError("the study declares no participant list (participants:)")
    raw = read_table(root / spec.file, sheet=spec.sheet)
    header = [str(c) for c in raw.data.columns]
    if spec.code not in header:
        near = difflib.get_close_matches(spec.code, header, n=3, cutoff=0.5)
        hint = f"; near matches: {', '.join(near)}" if near else ""
        raise IngestError(f"{spec.file}: the participant list has no code column '{spec.code}' "
                          f"(participants.code in study.yaml){hint}")
    roles = [r for r in (*_CATEGORICAL, *config.attributes) if r not in ("code", "submitted_at")]
    out = pd.DataFrame({"code": raw.data[spec.code].to_numpy(dtype=object),
                        "row": raw.row_numbers})
    for role in roles:
        column = spec.columns.get(role, role)
        if column not in header:
            if role in spec.columns:
                raise IngestError(f"{spec.file}: the participant list has no column '{column}' "
                                  f"(participants.columns.{role} in study.yaml)")
            continue
        out[role] = harmonise_values(raw.data[column], role, config,
                                     raw.value_labels.get(column), spec.recode.get(role))
        out.attrs.setdefault("source", {})[role] = column
    return out, spec.file, raw


def apply_participant_list(store: Store, ctx: StudyContext, key: PseudonymKey,
                           linkage: SgicLinkage | None = None) -> pd.DataFrame:
    """Attach the participant list's attributes to the stored participants.

    Codes are pseudonymized with the study's key exactly as wave codes are (or, in a study
    linked by self-generated code, matched to the linked records' codes); the list is read in
    memory and never stored. Arm, side and dialogue fill in what the wave files left empty; a
    disagreement with the wave files is reported and the wave files' value kept. Further
    attributes go to table ``participant_attributes`` (participant, attribute, value).

    Returns
    -------
    DataFrame
        Problems (``PROBLEM_COLUMNS``): the list's file, row, column, masked code or value.
    """
    frame, name, raw = read_participant_list(ctx.root, ctx.config)
    config = ctx.config
    problems: list[dict[str, Any]] = []

    def problem(row: int, column: str, value: Any, rule: str, detail: str = "") -> None:
        problems.append({"file": name, "wave": None, "row": int(row), "column": column,
                         "value": value, "rule": rule, "scope": "row",
                         "message": _LIST_RULES[rule] + (f": {detail}" if detail else "")})

    code_col = config.participants.code if config.participants else "code"
    sources = frame.attrs.get("source", {})
    blank = frame["code"].map(lambda v: v is None or str(v).strip() == "")
    for row in frame.loc[blank, "row"]:
        problem(row, code_col, None, "missing_code")
    frame = frame[~blank].copy()
    # the same canonical text as wave codes: 1001.0 from SPSS is the person 1001 of a CSV
    frame["code"] = frame["code"].map(canonical_text)
    pseudo = _list_pseudonyms(ctx.config, key, linkage, frame["code"])
    frame["participant"] = frame["code"].map(pseudo)
    known = set(store.query("SELECT participant FROM participants")["participant"])
    first: dict[str, int] = {}
    keep = []
    for pos, (code, row, person) in enumerate(zip(frame["code"], frame["row"],
                                                  frame["participant"], strict=True)):
        if person is None or person not in known:
            problem(row, code_col, mask(code), "not_in_study",
                    "check the code, or the person has not answered yet")
            continue
        if person in first:
            problem(row, code_col, mask(code), "duplicate_code", f"first on row {first[person]}")
            continue
        first[person] = int(row)
        keep.append(pos)
    frame = frame.iloc[keep]
    roles = [r for r in (*_CATEGORICAL, *config.attributes) if r in frame.columns]
    for role in roles:
        declared = config.categories(role)
        if declared is None:
            continue
        bad = frame[role].notna() & ~frame[role].isin(declared)
        for row, value in zip(frame.loc[bad, "row"], frame.loc[bad, role], strict=True):
            problem(row, sources.get(role, role), str(value)[:40], "unknown_category",
                    f"declared {role}s: {', '.join(declared)}")
        frame.loc[bad, role] = None
    stored = store.query("SELECT participant, arm, side, dialogue FROM participants")
    stored = stored.set_index("participant")
    updates = []
    for rec in frame.to_dict(orient="records"):
        person = rec["participant"]
        current = stored.loc[person]
        update = {}
        for role in _CATEGORICAL:
            value = rec.get(role)
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue
            have = current[role]
            if have is None or (isinstance(have, float) and pd.isna(have)):
                update[role] = value
            elif have != value:
                problem(rec["row"], sources.get(role, role), str(value)[:40],
                        "conflicts_with_waves", f"the wave files say {have}")
        if update:
            updates.append((person, update))
    attrs = [
        {"participant": rec["participant"], "attribute": role, "value": str(rec[role])}
        for rec in frame.to_dict(orient="records") for role in config.attributes
        if role in frame.columns and rec.get(role) is not None and not pd.isna(rec[role])
    ]
    with store.transaction():
        for person, update in updates:
            sets = ", ".join(f"{k} = ?" for k in update)
            store.execute(f"UPDATE participants SET {sets} WHERE participant = ?",
                          [*update.values(), person])
        store.execute(_ATTRIBUTES_SCHEMA)
        # the list overrides what a wave said for the same person and attribute
        listed = pd.DataFrame(attrs, columns=["participant", "attribute", "value"]).assign(
            source="list")
        keys = set(zip(listed["participant"], listed["attribute"], strict=True))
        waves = store.query(f"SELECT * FROM {ATTRIBUTES_TABLE} WHERE source <> 'list'")
        waves = waves[[(p, a) not in keys for p, a in zip(waves["participant"],
                                                           waves["attribute"], strict=True)]]
        store.execute(f"DELETE FROM {ATTRIBUTES_TABLE}")
        store.append(ATTRIBUTES_TABLE, pd.concat([waves, listed], ignore_index=True))
        store.execute("DELETE FROM quarantine WHERE file = ?", [name])
        result = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
        store.append("quarantine", result.assign(sha256=raw.sha256)[
            [*PROBLEM_COLUMNS[:4], "value", "rule", "scope", "message", "sha256"]])
        store.set_meta("participant_list_sha256", raw.sha256)
    return result


def _list_pseudonyms(config: StudyConfig, key: PseudonymKey, linkage: SgicLinkage | None,
                     codes: pd.Series) -> dict[str, str | None]:
    """Raw list code -> participant pseudonym (``None`` where the code matches no one)."""
    unique = pd.Series(codes.unique())
    if linkage is None:
        return dict(zip(unique, key.pseudonymize_many(unique), strict=True))
    from .linkage import CodeSpec

    spec = CodeSpec.from_config([e.model_dump() for e in config.linkage.elements])
    # a list code names the person whose linked records carry exactly that code (after the
    # code's own normalisation); a code two people share is not guessed
    persons: dict[tuple[str, ...], set[str]] = {}
    for wave, checked in linkage.validated.items():
        for raw_id, row in zip(checked.submissions["raw_id"], checked.submissions["row"],
                               strict=True):
            person = linkage.pseudonyms.get((wave, int(row)))
            parsed = spec.parse(raw_id)
            if person is not None and parsed is not None:
                persons.setdefault(parsed, set()).add(person)
    out: dict[str, str | None] = {}
    for code in unique:
        parsed = spec.parse(code)
        found = persons.get(parsed) if parsed is not None else None
        if not found and code in linkage.code_pseudonyms:
            out[code] = linkage.code_pseudonyms[code]
        else:
            out[code] = next(iter(found)) if found and len(found) == 1 else None
    return out


def require_arms(scores: pd.DataFrame, config: StudyConfig) -> None:
    """Refuse to model a study in which no participant has an arm, and say why.

    Raises
    ------
    ModelError
        When the score table's ``arm`` is empty for every row.
    """
    if "arm" not in scores.columns or len(scores) == 0 or scores["arm"].notna().any():
        return
    where = ("add a participant list to study.yaml (participants: {file: ..., code: ...} "
             "with an arm column)" if config.participants is None else
             f"the participant list {config.participants.file} gave no one an arm: check its "
             "arm column and the codes reported by ingest")
    raise ModelError(
        "no participant has an arm: the wave files carry no arm column "
        f"(or name it per wave under waves[].columns: {{arm: ...}}); {where}"
    )

