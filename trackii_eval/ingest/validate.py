"""Validate one wave file against the instrument, collecting every problem in one pass.

Problems are data (one row each: file, row as the user sees it, column, masked value, rule,
scope), in the spirit of pandera's lazy validation. Scopes:

* ``column``: an unknown column; nothing of it is stored.
* ``row``: the whole row is quarantined (no participant code, duplicate submission, answered
  outside the wave's window, unknown arm/side/dialogue).
* ``cell``: one value is quarantined (outside the scale, text where a number belongs); the rest
  of the row is stored and the cell counts as missing with the code ``quarantined``.

Rows read = rows stored + rows quarantined, always.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Instrument, StudyConfig, Wave
from .pseudonym import normalise_id
from .readers import RawTable
from .readers.base import canonical_text, ingest_error
from .readers.kobo import resolve_group_paths
from .rules import Rule

__all__ = ["PROBLEM_COLUMNS", "ValidatedWave", "mask", "study_local_times", "to_study_time",
           "validate_wave"]

PROBLEM_COLUMNS = ["file", "wave", "row", "column", "value", "rule", "scope", "message"]

# kept for callers that look descriptions up by code; the registry is `Rule`
RULES = {rule.value: rule.description for rule in Rule}


def mask(value: Any) -> str:
    """Show enough of an identifier to find it in the file, never enough to identify anyone."""
    text = "" if value is None else str(value)
    if len(text) <= 2:
        return "*" * len(text)
    return f"{text[0]}{'*' * (len(text) - 2)}{text[-1]}" if len(text) < 6 else f"{text[:1]}***"


@dataclass(frozen=True)
class ValidatedWave:
    """What survives validation, still keyed by raw participant code (never stored as is)."""

    responses: pd.DataFrame  # raw_id, item, construct, value, missing_code, row
    submissions: pd.DataFrame  # raw_id, row, submitted_at, finished, is_test, excluded_reason
    attributes: pd.DataFrame  # raw_id, arm, side, dialogue
    problems: pd.DataFrame  # PROBLEM_COLUMNS
    rows_read: int
    rows_quarantined: int

    @property
    def rows_stored(self) -> int:
        """Rows written to the store."""
        return self.rows_read - self.rows_quarantined


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    try:
        return float(str(value).strip().replace(",", "."))
    except ValueError:
        return None


def validate_wave(
    raw: RawTable, wave: Wave, config: StudyConfig, instrument: Instrument, *, display_name: str,
    id_column: str | None = None,
) -> ValidatedWave:
    """Check a wave file cell by cell against the study and the instrument.

    Parameters
    ----------
    raw
        The file as read.
    wave, config, instrument
        What the file must conform to.
    display_name
        How messages name the file (relative to the study folder).
    id_column
        The column that identifies participants, if not the instrument's participant id (a
        self-generated code); the participant id column is then an identifier, never stored.

    Returns
    -------
    ValidatedWave
        Stored and quarantined rows; rows read = rows stored + rows quarantined. Identifiers
        and attributes are in one canonical text form whatever the reader (`canonical_text`);
        submission times are tz-naive in the study's time zone (``config.timezone``).

    Raises
    ------
    IngestError
        For a file-level problem, in one line naming the file, the rule and what to do: the
        participant-code column is missing, no column is an item, or the header is below the
        row read as the header (``header_row:``). Nothing of the file is stored.
    """
    cols = instrument.participant
    if id_column is not None and id_column != cols.id:
        cols = cols.model_copy(update={"id": id_column})
    items = instrument.items
    column_map = instrument.column_map(wave.index)
    data = raw.data
    codes_frame = raw.missing_codes
    if raw.format == "kobo":
        # Kobo groups joined with "-" or "." (grp_id-pid): map them onto the expected names
        wanted = [cols.id, cols.arm, cols.side, cols.dialogue, cols.submitted_at or "",
                  *column_map]
        moved = resolve_group_paths([str(c) for c in data.columns], wanted)
        if moved:
            data = data.rename(columns=moved)
            if codes_frame is not None:
                codes_frame = codes_frame.rename(columns=moved)
    _require_columns(data, cols.id, column_map, display_name, wave.header_row or 1,
                     _header_further_down(data, raw.row_numbers, {cols.id, *column_map}))
    problems: list[dict[str, Any]] = []

    def problem(row: int, column: str, value: Any, rule: str, scope: str, detail: str = "") -> None:
        problems.append({
            "file": display_name, "wave": wave.index, "row": int(row), "column": column,
            "value": value, "rule": rule, "scope": scope,
            "message": Rule(rule).description + (f": {detail}" if detail else ""),
        })

    # Columns: items, participant columns, identifiers, platform metadata, or unknown.
    known = {cols.id, cols.arm, cols.side, cols.dialogue, *config.attributes}
    if cols.submitted_at:
        known.add(cols.submitted_at)
    identifier_cols = set(instrument.identifiers) | set(raw.identifier_columns)
    identifier_cols.add(instrument.participant.id)
    ignored = set(instrument.ignore_columns) | set(raw.metadata_columns) | identifier_cols
    # column names sit on the first row of every format unless the study says otherwise
    header_row = wave.header_row or 1
    item_columns: dict[str, str] = {}
    for column in data.columns:
        if column in column_map:
            item_columns[column] = column_map[column]
        elif column not in known and column not in ignored:
            problem(header_row, column, None, "unknown_item", "column",
                    "add it to instrument.yaml (items or renames) or to ignore_columns")

    arms = {a.id for a in config.arms}
    dialogues = {d.id: d for d in config.dialogues}
    all_sides = list(dict.fromkeys(s for d in config.dialogues for s in d.sides))
    window = wave.window
    quarantined_rows: set[int] = set()
    seen_ids: dict[str, int] = {}
    submissions, attributes, responses = [], [], []
    kept: list[tuple[int, str, int]] = []
    records = data.to_dict(orient="records")
    metas = raw.row_meta.to_dict(orient="records") if raw.row_meta is not None else None
    missing_codes = {str(k).strip().casefold(): v for k, v in instrument.missing_codes.items()}
    utc_flags = raw.submitted_utc if raw.submitted_utc is not None else np.zeros(raw.n_rows, bool)

    for pos in range(raw.n_rows):
        row_no = int(raw.row_numbers[pos])
        rec = records[pos]
        meta = metas[pos] if metas is not None else None
        # one text form whatever the reader: 1001.0 from SPSS/Stata is "1001" from a CSV
        raw_id = canonical_text(rec.get(cols.id))
        if raw_id is None:
            problem(row_no, cols.id, None, "missing_participant_code", "row")
            quarantined_rows.add(pos)
            continue
        arm = canonical_text(rec.get(cols.arm))
        side = canonical_text(rec.get(cols.side))
        dialogue = canonical_text(rec.get(cols.dialogue))
        row_bad = False
        if cols.arm in data.columns and arm not in arms:
            problem(row_no, cols.arm, arm, "unknown_arm", "row",
                    f"declared arms: {', '.join(sorted(arms))}")
            row_bad = True
        if dialogue is not None and dialogue not in dialogues:
            problem(row_no, cols.dialogue, dialogue, "unknown_dialogue", "row",
                    f"declared dialogues: {', '.join(sorted(dialogues))}")
            row_bad = True
        elif side is not None and dialogue is not None and side not in dialogues[dialogue].sides:
            problem(row_no, cols.side, side, "unknown_side", "row",
                    f"sides of {dialogue}: {', '.join(dialogues[dialogue].sides)}")
            row_bad = True
        elif side is not None and dialogue is None and side not in all_sides:
            problem(row_no, cols.side, side, "unknown_side", "row",
                    f"declared sides: {', '.join(all_sides)}; map this wave's values under "
                    "recode: in study.yaml")
            row_bad = True
        submitted = _submitted_at(rec, meta, cols.submitted_at, config.timezone,
                                  bool(utc_flags[pos]))
        if submitted is _UNPARSEABLE:
            problem(row_no, cols.submitted_at or "submitted_at",
                    str(rec.get(cols.submitted_at))[:30],
                    "not_a_date", "cell", "the response date is kept as unknown")
            submitted = None
        if window is not None and submitted is not None and not pd.isna(submitted):
            if not (pd.Timestamp(window[0]) <= submitted < pd.Timestamp(window[1])
                    + pd.Timedelta(days=1)):
                problem(row_no, cols.submitted_at or "submitted_at", str(submitted)[:10],
                        "outside_wave_window", "row", f"window {window[0]} to {window[1]}")
                row_bad = True
        # the person a code names: codes that normalise alike ("a-012", "A 012") are one
        # participant (the same pseudonym), so a second such row is a duplicate submission
        person = (normalise_id(raw_id) or raw_id) if raw_id is not None else None
        if not row_bad and person in seen_ids:
            problem(row_no, cols.id, mask(raw_id), "duplicate_submission", "row",
                    f"first answered on row {seen_ids[person]}; keep one and re-ingest with "
                    "--replace, or leave the first")
            row_bad = True
        if row_bad:
            quarantined_rows.add(pos)
            continue
        seen_ids[person] = row_no
        finished = None if meta is None else meta.get("finished")
        is_test = bool(meta.get("is_test")) if meta is not None else False
        excluded = None
        if is_test:
            excluded = "test response" + (
                f" ({meta.get('test_reason')})" if meta.get("test_reason") else ""
            )
        elif finished is not None and not pd.isna(finished) and not bool(finished):
            excluded = "unfinished response"
        submissions.append({
            "raw_id": raw_id, "row": row_no, "submitted_at": submitted,
            "finished": None if finished is None or pd.isna(finished) else bool(finished),
            "is_test": is_test, "excluded_reason": excluded,
        })
        attributes.append({"raw_id": raw_id, "arm": arm, "side": side, "dialogue": dialogue})
        kept.append((pos, raw_id, row_no))

    # Item cells, column by column over the kept rows (plain arrays: no per-cell pandas access).
    kept_pos = np.array([k[0] for k in kept], dtype=int)
    kept_ids = [k[1] for k in kept]
    kept_rows = [k[2] for k in kept]
    construct_of = {i: instrument.construct_of(i) for i in set(item_columns.values())}
    for column, item_id in item_columns.items():
        item = items[item_id]
        scale = instrument.scales[item.scale]
        values = data[column].to_numpy(dtype=object)[kept_pos]
        if codes_frame is not None and column in codes_frame.columns:
            codes = codes_frame[column].to_numpy(dtype=object)[kept_pos]
        else:
            codes = np.full(len(kept_pos), None, dtype=object)
        for value, code, raw_id, row_no in zip(values, codes, kept_ids, kept_rows, strict=True):
            number, code = _cell(value, code, scale, missing_codes)
            if code == "not_a_number":
                problem(row_no, column, str(value)[:40], "not_a_number", "cell",
                        f"expected a number on {scale.min:g}-{scale.max:g}")
                code = "quarantined"
            elif code == "outside_scale":
                problem(row_no, column, f"{number:g}", "outside_scale", "cell",
                        f"scale {item.scale} is {scale.min:g}-{scale.max:g}")
                code, number = "quarantined", None
            responses.append((raw_id, item_id, construct_of[item_id], number, code, row_no))

    for column, rule, declared in ((cols.side, "unknown_side",
                                    {x for d in config.dialogues for x in d.sides}),
                                   (cols.arm, "unknown_arm", arms),
                                   (cols.dialogue, "unknown_dialogue", set(dialogues))):
        hint = _encoding_hint(raw, wave, [p["value"] for p in problems if p["rule"] == rule],
                              declared)
        if hint:
            problem(header_row, column, None, "encoding_suspect", "file", hint)
    problem_frame = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
    return ValidatedWave(
        responses=pd.DataFrame.from_records(
            responses, columns=["raw_id", "item", "construct", "value", "missing_code", "row"]
        ),
        submissions=pd.DataFrame(
            submissions,
            columns=["raw_id", "row", "submitted_at", "finished", "is_test", "excluded_reason"],
        ),
        attributes=pd.DataFrame(attributes, columns=["raw_id", "arm", "side", "dialogue"]),
        problems=problem_frame,
        rows_read=raw.n_rows,
        rows_quarantined=len(quarantined_rows),
    )


_CODE_HINT = ("partic", "code", "respondent", "pid", "sgic", "person")


def _encoding_hint(raw: RawTable, wave: Wave, failing: list[Any], declared: set[str]
                   ) -> str | None:
    """When many values of a declared category fail to match and some are not plain ASCII,
    the file was probably decoded with the wrong encoding (a Windows-1254 file read as
    Windows-1252 turns "Doğu" into "Doðu"). Name the likely encoding, as charset-normalizer
    ranks them, preferring one under which the declared values appear in the file."""
    odd = [v for v in failing if isinstance(v, str) and not v.isascii()]
    many = len(failing) >= max(3, 0.1 * raw.n_rows)
    if not many or not odd or raw.format not in ("csv", "kobo", "qualtrics"):
        return None
    try:
        data = raw.path.read_bytes()
    except OSError:
        return None
    from charset_normalizer import from_bytes  # deferred: only needed on this path

    def hits(encoding: str) -> int:
        text = data.decode(encoding, errors="replace")
        return sum(text.count(v) for v in declared if not v.isascii())

    candidates = [m.encoding for m in from_bytes(data)]
    for name in ("cp1254", "cp1250", "cp1251", "cp1253", "cp1256", "iso8859_9", "utf_8"):
        if name not in candidates:
            candidates.append(name)  # the Windows code pages, when the detector is unsure
    scored = [(hits(c), -i, c) for i, c in enumerate(candidates)]
    best_hits, _, best = max(scored)
    current = wave.encoding or "detected"
    if best_hits == 0:
        best = candidates[0] if candidates else "unknown"
    return (f"{len(failing)} values match no declared one, and some are not plain text; the "
            f"file's encoding ({current}) may be wrong: it is likely {best}. Set encoding: "
            f"{best} for this wave in study.yaml and ingest again")


def _closest(name: str, columns: list[str], hints: tuple[str, ...] = ()) -> str:
    """The header names nearest to ``name``, for a message (column names are not data).

    Spelling first (difflib), then names that look like what is missing (``hints``: a
    participant code column is often "participant_no" or "Q2_code"); platform metadata
    (``_uuid``) last.
    """
    folded = {c.casefold(): c for c in columns}
    own = [c for c in folded if not c.startswith("_")]
    near = difflib.get_close_matches(name.casefold(), own, n=3, cutoff=0.5)
    near += [c for c in own if any(h in c for h in (name.casefold(), *hints))
             and c not in near]
    if not near:
        near = difflib.get_close_matches(name.casefold(), list(folded), n=3, cutoff=0.4)
    if not near:
        return "no header name is close"
    return "closest: " + ", ".join(repr(folded[n]) for n in near[:4])


def _header_further_down(data: pd.DataFrame, row_numbers: np.ndarray,
                         expected: set[str]) -> int | None:
    """The row number of a data row that looks like the real header (title rows above it).

    Only compares cells with expected column names, so no cell value reaches a message.
    """
    for pos in range(min(len(data), 30)):
        cells = {str(v).strip() for v in data.iloc[pos].tolist() if isinstance(v, str)}
        if len(cells & expected) >= min(2, len(expected)):
            return int(row_numbers[pos])
    return None


def _require_columns(data: pd.DataFrame, id_column: str, column_map: dict[str, str],
                     display_name: str, header_row: int, real_header: int | None = None) -> None:
    """A missing required column is one file-level error, not one problem per row."""
    columns = [str(c) for c in data.columns]
    if real_header is not None and (id_column not in data.columns
                                    or not any(c in column_map for c in columns)):
        raise ingest_error(
            Path(display_name),
            f"the column names are on row {real_header}, not on row {header_row}; rule "
            "header_not_on_first_row",
            f"Add header_row: {real_header} to this wave in study.yaml; the file was not "
            "ingested",
        )
    if id_column not in data.columns:
        raise ingest_error(
            Path(display_name),
            f"row {header_row} (header) has no participant-code column {id_column!r} "
            f"({_closest(id_column, columns, _CODE_HINT)}); rule missing_required_column",
            "Rename the column in the file, or name it in instrument.yaml (participant: id:); "
            "the file was not ingested",
        )
    if not any(c in column_map for c in columns):
        raise ingest_error(
            Path(display_name),
            f"row {header_row} (header) names no item of the instrument "
            f"(e.g. {_closest(next(iter(column_map), ''), columns)}); "
            "rule missing_required_column",
            "Check header_row: for this wave, or map the columns with renames: in "
            "instrument.yaml; the file was not ingested",
        )


def _cell(value: Any, code: Any, scale: Any, missing_codes: dict[str, str]
          ) -> tuple[float | None, str | None]:
    """Classify one item cell: (number, None), (None, missing code) or a rule name as code."""
    if code is not None and not (isinstance(code, float) and math.isnan(code)):
        return None, str(code)  # declared missing by the file format (SPSS/Stata)
    if _is_blank(value):
        return None, missing_codes.get("", "missing")
    key = str(value).strip().casefold()
    if key in missing_codes:
        return None, missing_codes[key]
    number = _as_number(value)
    if number is None:
        number = _label_value(scale.labels, str(value))
        if number is None:
            return None, "not_a_number"
    if not (scale.min <= number <= scale.max):
        as_code = f"{number:g}"
        if as_code in missing_codes:  # e.g. -99 typed as a number
            return None, missing_codes[as_code]
        return number, "outside_scale"
    return number, None


def _label_value(labels: dict[int, str], text: str) -> float | None:
    """Accept a scale point given by its label (exports that write labels, not codes)."""
    folded = text.strip().casefold()
    for value, label in labels.items():
        if label.casefold() == folded:
            return float(value)
    return None


def to_study_time(stamp: Any, zone: str, *, is_utc: bool) -> pd.Timestamp:
    """A submission time as a tz-naive time in the study's zone.

    Parameters
    ----------
    stamp : Any
        A time: tz-aware (converted), tz-naive UTC (``is_utc``; converted) or tz-naive as
        written (taken as study-local, unchanged).
    zone : str
        The study's IANA time zone (``study.yaml`` ``timezone:``).
    is_utc : bool
        Whether a tz-naive `stamp` is UTC.

    Returns
    -------
    pd.Timestamp
        tz-naive, study-local.
    """
    ts = pd.Timestamp(stamp)
    if ts.tzinfo is None and is_utc:
        ts = ts.tz_localize("UTC")
    if ts.tzinfo is not None:
        ts = ts.tz_convert(zone).tz_localize(None)
    return ts


def study_local_times(raw: RawTable, zone: str) -> pd.Series:
    """The file's row submission times (row_meta), tz-naive in the study's zone."""
    times = raw.row_meta["submitted_at"] if raw.row_meta is not None else pd.Series(
        pd.NaT, index=raw.data.index)
    flags = raw.submitted_utc if raw.submitted_utc is not None else np.zeros(len(times), bool)
    return pd.Series([pd.NaT if pd.isna(t) else to_study_time(t, zone, is_utc=bool(f))
                      for t, f in zip(times, flags, strict=True)], index=times.index,
                     dtype="datetime64[ns]")


def _submitted_at(
    rec: dict[str, Any], meta: dict[str, Any] | None, column: str | None, zone: str = "UTC",
    is_utc: bool = False,
) -> pd.Timestamp | None:
    value = None
    from_meta = False
    if meta is not None and meta.get("submitted_at") is not None and not pd.isna(
        meta["submitted_at"]
    ):
        value, from_meta = meta["submitted_at"], True
    elif column and column in rec and not _is_blank(rec[column]):
        value = rec[column]
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return _UNPARSEABLE
    if pd.isna(ts) or not 1900 <= ts.year <= 2200:
        return _UNPARSEABLE
    # times with a zone are converted into the study's; times without one are study-local
    return to_study_time(ts, zone, is_utc=from_meta and is_utc)


# a sentinel: the row has a date, but it is not one we can read
_UNPARSEABLE: Any = pd.Timestamp("1677-09-22")
