"""Columnar ingest for portfolios: plain CSV wave files read and validated by DuckDB.

:func:`ingest_bulk` gives the store the same contents (responses, submissions, participants,
files, quarantine) and reports the same one-line problems (file, row, column, rule) as the
row-wise :func:`~trackii_eval.ingest.core.ingest_study`, for the studies it accepts, at a
fraction of the time and memory (32 million item cells: about 45 s of CPU, 0.6 GB;
``python -m benchmarks.portfolio``).

How it stays identical without re-implementing the rules
    Every rule is a function of a cell's text (an item value, a participant code, an arm) or of
    a few cells of a row. DuckDB reads each file with every column as text, and the project's
    own Python functions (``clean_cell``, ``canonical_text``, ``harmonise_values``, the
    validator's ``_cell`` and ``_submitted_at``, ``mask``, the keyed hash) are applied once per
    *distinct* text (a 7-point item has about ten distinct texts in 100,000 rows; a participant
    code column has one per person); SQL joins the verdicts back to the rows, finds duplicate
    submissions with a window function and writes long responses with ``UNPIVOT``. No Python
    code runs per row or per cell.

What it accepts (anything else is refused in one line that says to use the row-wise ingest)
    Wave files that are plain comma-separated UTF-8 text with the header on row 1, no blank
    lines and no line breaks inside cells (so a row's number is its line number), and no
    Qualtrics or KoboToolbox layout; studies linked by participant code (not by a
    self-generated code), without declared attributes, per-wave column maps or recodes.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import IngestError
from ..store import Store, register_frame
from .attributes import apply_participant_list, harmonise_values
from .core import (
    FileOutcome,
    IngestSummary,
    _check_dates_in_windows,
    _ingest_ideas,
    _ingest_roster,
)
from .pseudonym import normalise_id
from .readers import _ALWAYS_IDENTIFIERS, _GENERIC_TIME_COLUMNS, kobo, qualtrics
from .readers.base import _clean_header, canonical_text, clean_cell, parse_timestamps, zone_stated
from .rules import Rule
from .validate import (
    _UNPARSEABLE,
    PROBLEM_COLUMNS,
    _cell,
    _encoding_hint,
    _header_further_down,
    _require_columns,
    _submitted_at,
    mask,
    to_study_time,
)

if TYPE_CHECKING:
    from ..config import Instrument, StudyConfig, Wave
    from ..pipeline.context import StudyContext
    from .pseudonym import PseudonymKey

__all__ = ["bulk_refusal", "ingest_bulk"]

_RAW = "_bulk_raw"
# stands for an empty cell in joins on a cell's text: private-use characters, and a file that
# holds any is refused (DuckDB 1.x does not take NUL in a string literal)
_NULL = "\ue000(empty)\ue000"
_ROW_RULES = ("missing_participant_code", "unknown_arm", "unknown_dialogue", "unknown_side",
              "not_a_date", "outside_wave_window", "duplicate_submission")


def bulk_refusal(ctx: StudyContext) -> str | None:
    """Why :func:`ingest_bulk` cannot take this study (``None`` if it can).

    Only the study's configuration is checked here; each wave file is checked when read.
    """
    config = ctx.config
    if config.linkage.method == "sgic":
        return "it links waves by a self-generated code (the linker needs the row-wise ingest)"
    if config.attributes:
        return "it declares participant attributes (attributes:)"
    for wave in config.waves:
        if wave.columns or wave.recode:
            return f"wave {wave.index} maps columns or recodes values (columns:/recode:)"
        if wave.planned:
            continue
        if wave.format not in (None, "csv") or Path(wave.file).suffix.lower() != ".csv":
            return f"wave {wave.index}'s file {wave.file} is not a CSV file"
        if wave.header_row not in (None, 1):
            return f"wave {wave.index} has its header on row {wave.header_row}"
        if wave.encoding is not None and wave.encoding.replace("-", "_").lower() not in (
                "utf_8", "utf8"):
            return f"wave {wave.index} is encoded as {wave.encoding}, not UTF-8"
    return None


def ingest_bulk(store: Store, ctx: StudyContext, key: PseudonymKey, *, replace: bool = False
                ) -> IngestSummary:
    """Ingest every wave file of ``ctx`` through DuckDB; same result as ``ingest_study``.

    Parameters
    ----------
    store
        The study store (a file or ``':memory:'``).
    ctx
        The frozen study context; see :func:`bulk_refusal` for what it may hold.
    key
        The pseudonymization key (HMAC-SHA256 of each distinct normalised code).
    replace
        Allow a changed file of an already-ingested wave to replace the stored version.

    Returns
    -------
    IngestSummary
        As :func:`~trackii_eval.ingest.core.ingest_study` returns it (the problems in the
        order of the store's ``open_problems``: wave, file, row).

    Raises
    ------
    IngestError
        The study or a wave file is outside what the bulk path reads (one line: why, and to
        use the row-wise ingest); or any file-level error the row-wise ingest raises
        (missing participant-code column, a file of another wave, a changed file without
        ``replace``). Files before the failing one stay ingested; the failing one changes
        nothing.
    """
    why = bulk_refusal(ctx)
    if why is not None:
        raise IngestError(f"{ctx.config.id}: the bulk ingest cannot read this study: {why}; "
                          "use the row-wise ingest (trackii-eval ingest; Study.ingest "
                          "without bulk=True)")
    config = ctx.config
    outcomes: list[FileOutcome] = []
    all_problems: list[pd.DataFrame] = []
    pseudonyms: dict[str, tuple[str, str]] = {}
    times = config.wave_time()
    with store.transaction():
        for w in config.waves:
            store.execute(
                "INSERT INTO waves VALUES (?, ?, ?, ?, ?) ON CONFLICT (wave) DO UPDATE SET "
                "label = excluded.label, phase = excluded.phase, date = excluded.date, "
                "time = excluded.time",
                [w.index, w.label, w.phase, w.date, times[w.index]],
            )
    for wave in config.waves:
        if wave.planned:
            outcomes.append(FileOutcome("(planned)", wave.index, "planned", 0, 0, 0, 0))
            continue
        path = ctx.root / wave.file
        data = _read_bytes(path)
        sha = hashlib.sha256(data).hexdigest()
        previous = store.query("SELECT sha256 FROM files WHERE wave = ? AND active", [wave.index])
        known = store.query("SELECT sha256 FROM files WHERE wave = ?", [wave.index])
        if sha in set(previous["sha256"]):
            counts = store.query(
                "SELECT rows_read, rows_stored, rows_quarantined FROM files WHERE sha256 = ? "
                "AND active", [sha]).iloc[0]
            outcomes.append(FileOutcome(wave.file, wave.index, "unchanged", int(counts.iloc[0]),
                                        int(counts.iloc[1]), int(counts.iloc[2]), 0))
            continue
        columns = _plain_csv_header(data, wave)
        try:
            wave_out = _BulkWave(store, ctx, wave, path, columns, data, sha)
            if len(previous) and not replace:
                raise IngestError(
                    f"{wave.file}: wave {wave.index} was already ingested from a different "
                    "version of this file (content changed); re-run with --replace to replace "
                    "it (the old version stays in the store and can be restored)")
            with store.transaction():
                if len(previous):
                    store.execute("UPDATE files SET active = false WHERE wave = ?", [wave.index])
                if sha in set(known["sha256"]):
                    store.execute("UPDATE files SET active = true WHERE sha256 = ?", [sha])
                else:
                    problems = wave_out.validate_and_write(key, pseudonyms)
                    store.append("files", pd.DataFrame([{
                        "file": wave.file, "wave": wave.index, "sha256": sha, "format": "csv",
                        "rows_read": wave_out.rows_read, "rows_stored": wave_out.rows_stored,
                        "rows_quarantined": wave_out.rows_quarantined,
                        "ingested_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                        "key_fingerprint": key.fingerprint, "active": True,
                    }]))
                    store.append("quarantine", problems.assign(sha256=sha)[
                        [*PROBLEM_COLUMNS[:4], "value", "rule", "scope", "message", "sha256"]])
                store.set_meta("key_fingerprint", key.fingerprint)
        finally:
            store.execute(f"DROP TABLE IF EXISTS {_RAW}")
        if sha in set(known["sha256"]):
            problems = pd.DataFrame(columns=PROBLEM_COLUMNS)
        outcomes.append(FileOutcome(
            wave.file, wave.index, "replaced" if len(previous) else "ingested",
            wave_out.rows_read, wave_out.rows_stored, wave_out.rows_quarantined, len(problems)))
        all_problems.append(problems)
    if config.participants is not None:
        all_problems.append(apply_participant_list(store, ctx, key, None))
    if config.ideas:
        _ingest_ideas(store, ctx.root / config.ideas)
    if config.roster:
        all_problems.append(_ingest_roster(store, ctx, key, config.roster, None))
    problems = (pd.concat(all_problems, ignore_index=True) if all_problems
                else pd.DataFrame(columns=PROBLEM_COLUMNS))
    return IngestSummary(outcomes, problems, key.fingerprint, open_problems=store.open_problems(),
                         timezone=config.timezone)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path.name}: cannot be read ({exc.strerror}); check the file name "
                          "in study.yaml") from None


def _refuse(wave: Wave, why: str) -> IngestError:
    return IngestError(f"{wave.file}: the bulk ingest reads plain comma-separated UTF-8 CSV "
                       f"files only, and {why}; use the row-wise ingest (trackii-eval ingest; "
                       "Study.ingest without bulk=True) for this study")


def _plain_csv_header(data: bytes, wave: Wave) -> list[str]:
    """The header of a file the bulk path can read exactly as the row-wise reader does."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(wave, "this file is not UTF-8") from None
    if "\x00" in text or "\ue000" in text or ("\r" in text and "\r\n" not in text):
        raise _refuse(wave, "this file has NUL or private-use characters or old Mac line ends")
    first = text.split("\n", 1)[0].rstrip("\r")
    header = next(csv.reader(io.StringIO(first)), [])
    names = [_clean_header(c) for c in header]
    if not names or any(n is None for n in names) or len(set(names)) != len(names):
        raise _refuse(wave, "its first row has empty or repeated column names")
    if len(header) < 2 or first.count(";") >= len(header) or first.count("\t") >= len(header):
        raise _refuse(wave, "its first row does not look comma-separated")
    if qualtrics.looks_like(names) or kobo.looks_like(names):
        raise _refuse(wave, "it is a Qualtrics or KoboToolbox export")
    if "\n\n" in text or "\n\r\n" in text or not text.strip():
        raise _refuse(wave, "it has blank lines")
    return [str(n) for n in names]


class _BulkWave:
    """One wave file in DuckDB: read on construction, validated and written on request."""

    def __init__(self, store: Store, ctx: StudyContext, wave: Wave, path: Path,
                 columns: list[str], data: bytes, sha: str) -> None:
        self.store, self.ctx, self.wave, self.sha = store, ctx, wave, sha
        self.config: StudyConfig = ctx.config
        self.instrument: Instrument = ctx.instrument
        self.columns = columns
        self.path = path
        con = store.connection
        spec = "{" + ", ".join(f"'{_sql_text(c)}': 'VARCHAR'" for c in columns) + "}"
        try:
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE {_RAW} AS SELECT * FROM read_csv(?,
                    header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
                    columns = {spec}, null_padding = false)""",
                        [str(path)])
        except Exception as exc:  # duckdb.Error: a ragged row, an unclosed quote
            raise _refuse(wave, f"DuckDB could not read it as such ({str(exc).splitlines()[0]})"
                          ) from None
        # rowid is the insertion order, which DuckDB keeps for a CSV scan
        self.rows_read = int(con.execute(f"SELECT count(*) FROM {_RAW}").fetchone()[0])
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if lines != self.rows_read + 1:
            raise _refuse(wave, "it has line breaks inside cells, so row numbers would not be "
                          "line numbers")
        self.rows_quarantined = 0
        self._require()

    @property
    def rows_stored(self) -> int:
        return self.rows_read - self.rows_quarantined

    # -- helpers ---------------------------------------------------------------------------
    def _distinct(self, column: str) -> list[str | None]:
        return [r[0] for r in self.store.connection.execute(
            f'SELECT DISTINCT "{_sql_ident(column)}" FROM {_RAW}').fetchall()]

    def _col(self, column: str | None) -> str:
        """A column of the raw table as SQL, NULL when the file has no such column."""
        if column is None or column not in self.columns:
            return "NULL::VARCHAR"
        return f'r."{_sql_ident(column)}"'

    def _register(self, name: str, frame: pd.DataFrame) -> None:
        register_frame(self.store.connection, name, frame)

    def _require(self) -> None:
        """The file-level checks of ``validate_wave`` (participant-code column, any item)."""
        cols = self.instrument.participant
        column_map = self.instrument.column_map(self.wave.index)
        if cols.id in self.columns and any(c in column_map for c in self.columns):
            return
        head = self.store.connection.execute(f"SELECT * FROM {_RAW} LIMIT 30").df()
        head = head.map(clean_cell).astype(object)
        numbers = np.arange(2, 2 + len(head))
        _require_columns(head, cols.id, column_map, self.wave.file, 1,
                         _header_further_down(head, numbers, {cols.id, *column_map}))

    # -- validation ------------------------------------------------------------------------
    def validate_and_write(self, key: PseudonymKey,
                           pseudonyms: dict[str, tuple[str, str]]) -> pd.DataFrame:
        """Validate the wave, write its rows to the store and return its problems.

        ``pseudonyms`` (raw code -> normalised code, pseudonym) is the study's cache, filled
        here.
        """
        config, instrument, wave = self.config, self.instrument, self.wave
        cols = instrument.participant
        con = self.store.connection
        name = wave.file
        problems: list[dict[str, Any]] = []
        cell_problems: list[tuple[int, int, dict[str, Any]]] = []

        def problem(row: int, column: str, value: Any, rule: str, scope: str,
                    detail: str = "") -> dict[str, Any]:
            return {"file": name, "wave": wave.index, "row": int(row), "column": column,
                    "value": value, "rule": rule, "scope": scope,
                    "message": Rule(rule).description + (f": {detail}" if detail else "")}

        column_map = instrument.column_map(wave.index)
        known = {cols.id, cols.arm, cols.side, cols.dialogue, *config.attributes}
        if cols.submitted_at:
            known.add(cols.submitted_at)
        ignored = (set(instrument.ignore_columns) | set(instrument.identifiers)
                   | {c for c in self.columns if c in _ALWAYS_IDENTIFIERS} | {cols.id})
        item_columns: dict[str, str] = {}
        for column in self.columns:
            if column in column_map:
                item_columns[column] = column_map[column]
            elif column not in known and column not in ignored:
                problems.append(problem(1, column, None, "unknown_item", "column",
                                        "add it to instrument.yaml (items or renames) or to "
                                        "ignore_columns"))

        # participant code, arm, side, dialogue: verdicts per distinct text
        id_texts = self._distinct(cols.id) if cols.id in self.columns else [None]
        # object columns: pandas 3 would infer its string dtype and turn None into NaN
        id_map = pd.DataFrame({
            "raw": pd.Series([_NULL if v is None else v for v in id_texts], dtype=object),
            "raw_id": pd.Series([canonical_text(clean_cell(v)) for v in id_texts],
                                dtype=object),
        })
        # the person a code names: codes that normalise alike ("a-012", "A 012") are one
        # participant, so a second such row is a duplicate submission, as in the row-wise path
        id_map["person"] = pd.Series([None if r is None else (normalise_id(r) or r)
                                      for r in id_map["raw_id"]], dtype=object)
        self._register("_bulk_ids", id_map)
        roles = {}
        for role in ("arm", "side", "dialogue"):
            column = getattr(cols, role)
            values = self._distinct(column) if column in self.columns else [None]
            cleaned = pd.Series([clean_cell(v) for v in values], dtype=object)
            if column in self.columns and config.categories(role) is not None:
                cleaned = harmonise_values(cleaned, role, config)
            roles[role] = dict(zip([_NULL if v is None else v for v in values],
                                   [canonical_text(v) for v in cleaned], strict=True))
        combos = con.execute(f"""
            SELECT DISTINCT coalesce({self._col(cols.arm)}, '{_NULL}') AS a,
                   coalesce({self._col(cols.side)}, '{_NULL}') AS s,
                   coalesce({self._col(cols.dialogue)}, '{_NULL}') AS d
            FROM {_RAW} r""").fetchall()
        combo_rows = []
        for a, s, d in combos:
            arm, side, dialogue = roles["arm"][a], roles["side"][s], roles["dialogue"][d]
            found = self._combo_problems(arm, side, dialogue)
            combo_rows.append({"a": a, "s": s, "d": d, "arm": arm, "side": side,
                               "dialogue": dialogue, "combo_bad": bool(found),
                               "combo_problems": found})
        combo_frame = pd.DataFrame(combo_rows)
        self._register("_bulk_combos", combo_frame.drop(columns="combo_problems"))

        # submission times: parsed as the reader does (the whole column, in row order), then
        # each distinct (parsed, zone flag, text) is judged by the validator's own function
        times, m_sql, o_sql = self._times()
        self._register("_bulk_times", times)

        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _bulk_rows AS
            SELECT r.rowid + 2 AS "row", i.raw_id, i.person, c.arm, c.side, c.dialogue,
                   c.a, c.s, c.d, c.combo_bad, t.submitted, t.time_bad, t.tkey
            FROM {_RAW} r
            JOIN _bulk_ids i ON i.raw = coalesce({self._col(cols.id)}, '{_NULL}')
            JOIN _bulk_combos c ON c.a = coalesce({self._col(cols.arm)}, '{_NULL}')
                 AND c.s = coalesce({self._col(cols.side)}, '{_NULL}')
                 AND c.d = coalesce({self._col(cols.dialogue)}, '{_NULL}')
            JOIN _bulk_times t ON t.m = {m_sql} AND t.o = {o_sql}""")
        # duplicate submissions: the first row of a code among rows not already quarantined
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _bulk_rows2 AS
            SELECT *, CASE WHEN raw_id IS NULL OR combo_bad OR time_bad THEN NULL
                           ELSE min("row") OVER (PARTITION BY person, (combo_bad OR time_bad))
                      END AS first_row
            FROM _bulk_rows""")
        con.execute("DROP TABLE _bulk_rows")
        for name_ in ("_bulk_ids", "_bulk_combos", "_bulk_times"):
            con.unregister(name_)

        # row problems: only the (few) rows that have one come back to Python
        time_problems = self._time_problems
        combo_problems = {(r["a"], r["s"], r["d"]): r["combo_problems"] for r in combo_rows}
        bad_rows = con.execute(f"""
            SELECT "row", raw_id, a, s, d, tkey, first_row FROM _bulk_rows2
            WHERE raw_id IS NULL OR combo_bad OR time_bad OR first_row <> "row"
               OR tkey IN ({_int_list(time_problems)})
            ORDER BY "row" """).fetchall()
        quarantined = 0
        for row, raw_id, a, s, d, tkey, first_row in bad_rows:
            if raw_id is None:
                problems.append(problem(row, cols.id, None, "missing_participant_code", "row"))
                quarantined += 1
                continue
            found = [*combo_problems[(a, s, d)], *time_problems.get(tkey, [])]
            for column, value, rule, scope, detail in found:
                problems.append(problem(row, column, value, rule, scope, detail))
            bad = any(p[3] == "row" for p in found)
            if not bad and first_row is not None and first_row != row:
                problems.append(problem(
                    row, cols.id, mask(raw_id), "duplicate_submission", "row",
                    f"first answered on row {first_row}; keep one and re-ingest with "
                    "--replace, or leave the first"))
                bad = True
            quarantined += int(bad)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _bulk_kept AS
            SELECT "row", raw_id, arm, side, dialogue, submitted FROM _bulk_rows2
            WHERE first_row = "row" """)
        con.execute("DROP TABLE _bulk_rows2")
        self.rows_quarantined = quarantined

        # pseudonyms: one keyed hash per distinct code of the study (a code seen in an earlier
        # wave is not hashed again), checked for collisions per wave as pseudonymize_many does
        raw_ids = [r[0] for r in con.execute(
            "SELECT DISTINCT raw_id FROM _bulk_kept").fetchall()]
        fresh = [r for r in raw_ids if r not in pseudonyms]
        if fresh:
            hashed = key.pseudonymize_many(pd.Series(fresh, dtype=object))
            for raw, digest in zip(fresh, hashed, strict=True):
                pseudonyms[raw] = (normalise_id(raw), digest)
        mapped = [pseudonyms[r] for r in raw_ids]
        if len({n for n, _ in mapped}) != len({d for _, d in mapped}):
            raise IngestError(
                "two different participant IDs received the same pseudonym (a 64-bit "
                "collision); report this: linkage would merge two people")
        pseudo = pd.DataFrame({"raw_id": pd.Series(raw_ids, dtype=object),
                               "participant": pd.Series([d for _, d in mapped], dtype=object)})
        self._register("_bulk_pseudo", pseudo)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _bulk_people AS
            SELECT k.*, p.participant FROM _bulk_kept k JOIN _bulk_pseudo p USING (raw_id)""")
        con.unregister("_bulk_pseudo")
        con.execute("DROP TABLE _bulk_kept")

        problems.extend(self._code_link_problems())

        # item cells: a verdict per (column, distinct text), written into the SQL as one CASE
        # per column (a join on the text is ten times slower), then one UNPIVOT of the kept
        # rows into long responses
        missing_codes = {str(k).strip().casefold(): v
                         for k, v in instrument.missing_codes.items()}
        items = instrument.items
        if item_columns:
            listed = ", ".join(f'"{_sql_ident(c)}"' for c in item_columns)
            pairs = con.execute(f"""
                SELECT DISTINCT name, value FROM (UNPIVOT (SELECT {listed} FROM {_RAW})
                ON {listed} INTO NAME name VALUE value)""").fetchall()
            by_column: dict[str, list[str | None]] = {c: [None] for c in item_columns}
            for column, value in pairs:
                by_column[column].append(value)
            selects, names, flagged = [], [], []
            item_case, construct_case = [], []
            for k, (column, item_id) in enumerate(item_columns.items()):
                item = items[item_id]
                scale = instrument.scales[item.scale]
                ident = f'"{_sql_ident(column)}"'
                value_case, code_case = [], []
                for value in by_column[column]:
                    cleaned = clean_cell(value)
                    number, code = _cell(cleaned, None, scale, missing_codes)
                    if code == "not_a_number":
                        flagged.append((column, value, str(cleaned)[:40], "not_a_number",
                                        f"expected a number on {scale.min:g}-{scale.max:g}"))
                        code = "quarantined"
                    elif code == "outside_scale":
                        flagged.append((column, value, f"{number:g}", "outside_scale",
                                        f"scale {item.scale} is {scale.min:g}-{scale.max:g}"))
                        code, number = "quarantined", None
                    test = f"{ident} IS NULL" if value is None else \
                        f"{ident} = '{_sql_text(value)}'"
                    if number is not None:
                        value_case.append(f"WHEN {test} THEN {float(number)!r}::DOUBLE")
                    if code is not None:
                        code_case.append(f"WHEN {test} THEN '{_sql_text(code)}'")
                value_sql = f"CASE {' '.join(value_case)} END" if value_case else "NULL::DOUBLE"
                code_sql = f"CASE {' '.join(code_case)} END" if code_case else "NULL::VARCHAR"
                selects.append(f"{value_sql} AS v{k}, {code_sql} AS m{k}")
                names.append(f"(v{k}, m{k}) AS c{k}")
                item_case.append(f"WHEN 'c{k}' THEN '{_sql_text(item_id)}'")
                construct_case.append(
                    f"WHEN 'c{k}' THEN '{_sql_text(instrument.construct_of(item_id))}'")
            # the table's row order is no result (queries order what they read), and DuckDB
            # writes a fifth faster when it need not keep it
            keep_order = con.execute(
                "SELECT current_setting('preserve_insertion_order')").fetchone()[0]
            con.execute("SET preserve_insertion_order = false")
            try:
                con.execute(f"""
                    INSERT INTO responses (participant, wave, item, construct, value, missing_code,
                                           sha256, "row")
                    SELECT p.participant, ?, CASE u.name {' '.join(item_case)} END,
                           CASE u.name {' '.join(construct_case)} END, u.value, u.code, ?, u."row"
                    FROM (SELECT rowid + 2 AS "row", {', '.join(selects)} FROM {_RAW})
                         UNPIVOT INCLUDE NULLS ((value, code) FOR name IN ({', '.join(names)})) u
                    JOIN _bulk_people p ON p."row" = u."row" """, [wave.index, self.sha])
            finally:
                restore = "true" if str(keep_order).lower() == "true" else "false"
                con.execute(f"SET preserve_insertion_order = {restore}")
            # the quarantined cells, found by their texts in one pass, in the row-wise order
            # (column by column, then by row); an empty cell is never one of them
            verdict = {(c, v): (shown, rule, detail) for c, v, shown, rule, detail in flagged}
            if verdict:
                cols_sql = ", ".join(f'"{_sql_ident(c)}"' for c in dict.fromkeys(
                    c for c, *_ in flagged))
                pairs_sql = ", ".join(f"('{_sql_text(c)}', '{_sql_text(v)}')"
                                      for c, v in verdict)
                position = {c: i for i, c in enumerate(item_columns)}
                for row, column, value in con.execute(f"""
                        SELECT u."row", u.name, u.value
                        FROM (SELECT rowid + 2 AS "row", {cols_sql} FROM {_RAW})
                             UNPIVOT (value FOR name IN ({cols_sql})) u
                        SEMI JOIN _bulk_people p ON p."row" = u."row"
                        WHERE (u.name, u.value) IN ({pairs_sql})""").fetchall():
                    shown, rule, detail = verdict[(column, value)]
                    cell_problems.append((position[column], row,
                                          problem(row, column, shown, rule, "cell", detail)))
            cell_problems.sort(key=lambda x: (x[0], x[1]))
            problems.extend(p for _, _, p in cell_problems)

        # the encoding hint, from the failing values as the row-wise path collects them
        raw_like = SimpleNamespace(n_rows=self.rows_read, format="csv", path=self.path)
        for column, rule, declared in (
                (cols.side, "unknown_side", {x for d in config.dialogues for x in d.sides}),
                (cols.arm, "unknown_arm", {a.id for a in config.arms}),
                (cols.dialogue, "unknown_dialogue", {d.id for d in config.dialogues})):
            hint = _encoding_hint(raw_like, wave, [p["value"] for p in problems
                                                   if p["rule"] == rule], declared)
            if hint:
                problems.append(problem(1, column, None, "encoding_suspect", "file", hint))

        self._write()
        return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)

    def _combo_problems(self, arm: str | None, side: str | None, dialogue: str | None
                        ) -> list[tuple[str, Any, str, str, str]]:
        """The row rules on arm, side and dialogue, as ``validate_wave`` applies them."""
        cols, config = self.instrument.participant, self.config
        arms = {a.id for a in config.arms}
        dialogues = {d.id: d for d in config.dialogues}
        all_sides = list(dict.fromkeys(s for d in config.dialogues for s in d.sides))
        out = []
        if cols.arm in self.columns and arm not in arms:
            out.append((cols.arm, arm, "unknown_arm", "row",
                        f"declared arms: {', '.join(sorted(arms))}"))
        if dialogue is not None and dialogue not in dialogues:
            out.append((cols.dialogue, dialogue, "unknown_dialogue", "row",
                        f"declared dialogues: {', '.join(sorted(dialogues))}"))
        elif side is not None and dialogue is not None and side not in dialogues[dialogue].sides:
            out.append((cols.side, side, "unknown_side", "row",
                        f"sides of {dialogue}: {', '.join(dialogues[dialogue].sides)}"))
        elif side is not None and dialogue is None and side not in all_sides:
            out.append((cols.side, side, "unknown_side", "row",
                        f"declared sides: {', '.join(all_sides)}; map this wave's values under "
                        "recode: in study.yaml"))
        return out

    def _times(self) -> tuple[pd.DataFrame, str, str]:
        """Per distinct (time column text, submitted_at text): the submission time
        (study-local), whether it is outside the window, and a key into
        ``self._time_problems`` (the not_a_date / outside_wave_window problems).

        The reader's `parse_timestamps` and `zone_stated` judge each text on its own (ISO 8601
        per element, the rest ``format="mixed"`` per element; a group that raises fails
        whatever else is in it), so parsing the distinct texts gives every row the time the
        row-wise reader gives it. Returns the table and the two SQL expressions it joins on.
        """
        cols, config, wave = self.instrument.participant, self.config, self.wave
        con = self.store.connection
        lowered = {c.lower(): c for c in self.columns}
        meta_col = next((lowered[n] for n in _GENERIC_TIME_COLUMNS if n in lowered), None)
        own_col = cols.submitted_at if cols.submitted_at in self.columns else None
        m_sql = f"coalesce({self._col(meta_col)}, '{_NULL}')"
        o_sql = f"coalesce({self._col(own_col)}, '{_NULL}')"
        pairs = con.execute(f"SELECT {m_sql} AS m, {o_sql} AS o, count(*) AS n FROM {_RAW} r "
                            "GROUP BY ALL ORDER BY min(r.rowid)").fetchall()
        m_texts = [None if m == _NULL else m for m, _, _ in pairs]
        own = [None if o == _NULL else clean_cell(o) for _, o, _ in pairs]
        counts = np.array([n for _, _, n in pairs], dtype=np.int64)
        if meta_col is not None:
            distinct = list(dict.fromkeys(clean_cell(m) for m in m_texts))
            parsed = dict(zip(distinct, parse_timestamps(distinct), strict=True))
            stated = dict(zip(distinct, zone_stated(distinct), strict=True))
            meta = [parsed[clean_cell(m)] for m in m_texts]
            flags = [bool(stated[clean_cell(m)]) for m in m_texts]
        else:
            meta, flags = [pd.NaT] * len(pairs), [False] * len(pairs)
        window = wave.window
        rows, problems = [], {}
        for k, (m, flag, text) in enumerate(zip(meta, flags, own, strict=True)):
            rec = {own_col: text} if own_col is not None else {}
            submitted = _submitted_at(rec, {"submitted_at": m}, own_col or cols.submitted_at,
                                      config.timezone, flag)
            found = []
            if submitted is _UNPARSEABLE:
                found.append((cols.submitted_at or "submitted_at", str(rec.get(
                    cols.submitted_at))[:30], "not_a_date", "cell",
                    "the response date is kept as unknown"))
                submitted = None
            bad = False
            if window is not None and submitted is not None and not pd.isna(submitted):
                if not (pd.Timestamp(window[0]) <= submitted < pd.Timestamp(window[1])
                        + pd.Timedelta(days=1)):
                    found.append((cols.submitted_at or "submitted_at", str(submitted)[:10],
                                  "outside_wave_window", "row",
                                  f"window {window[0]} to {window[1]}"))
                    bad = True
            if found:
                problems[k] = found
            rows.append((pairs[k][0], pairs[k][1],
                         None if submitted is None or pd.isna(submitted) else submitted, bad, k))
        self._time_problems = problems
        self._check_dates(meta, flags, own, counts)
        table = pd.DataFrame(rows, columns=["m", "o", "submitted", "time_bad", "tkey"])
        table["submitted"] = pd.Series(table["submitted"], dtype="datetime64[ns]")
        table = table.astype({"m": object, "o": object})
        return table, m_sql, o_sql

    def _check_dates(self, meta: list[Any], flags: list[bool], own: list[str | None],
                     counts: np.ndarray) -> None:
        """``ingest_study``'s refusal of a file whose responses fall in another wave."""
        zone = self.config.timezone
        local = pd.Series([pd.NaT if pd.isna(m) else to_study_time(m, zone, is_utc=f)
                           for m, f in zip(meta, flags, strict=True)], dtype="datetime64[ns]")
        column = self.instrument.participant.submitted_at
        if local.isna().all() and column and column in self.columns:
            from .core import _local_or_nat

            local = pd.Series([_local_or_nat(v, zone) for v in own], dtype="datetime64[ns]")
        # one time per row, as the row-wise check sees them (only shares are used)
        dates = pd.Series(np.repeat(local.to_numpy(), counts), dtype="datetime64[ns]")
        _check_dates_in_windows(dates, self.wave, self.config)

    def _code_link_problems(self) -> list[dict[str, Any]]:
        """``_check_code_links`` in SQL: conflicting attributes, unexpected new codes."""
        config, wave, cols = self.config, self.wave, self.instrument.participant
        con = self.store.connection
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _bulk_known AS
            SELECT participant, arm, side, dialogue FROM participants
            WHERE first_wave IS DISTINCT FROM ?""", [wave.index])
        n_known = int(con.execute("SELECT count(*) FROM _bulk_known").fetchone()[0])
        conflicts = con.execute("""
            SELECT p.raw_id, p."row",
                   CASE WHEN p.side <> k.side THEN 'side' WHEN p.arm <> k.arm THEN 'arm'
                        ELSE 'dialogue' END AS role,
                   CASE WHEN p.side <> k.side THEN p.side WHEN p.arm <> k.arm THEN p.arm
                        ELSE p.dialogue END AS new,
                   CASE WHEN p.side <> k.side THEN k.side WHEN p.arm <> k.arm THEN k.arm
                        ELSE k.dialogue END AS old
            FROM _bulk_people p JOIN _bulk_known k USING (participant)
            WHERE p.side <> k.side OR p.arm <> k.arm OR p.dialogue <> k.dialogue
            ORDER BY p."row" """).fetchall()
        out: list[dict[str, Any]] = []
        bad = []
        rule = Rule.conflicting_attributes
        for raw_id, row, role, new, old in conflicts:
            bad.append(raw_id)
            out.append({"file": wave.file, "wave": wave.index, "row": int(row),
                        "column": getattr(cols, role), "value": str(new)[:40],
                        "rule": rule.value, "scope": rule.scope,
                        "message": f"{rule.description}: earlier waves say {old}"})
        baseline = min((w.index for w in config.fielded_waves), default=wave.index)
        if bad:
            self._register("_bulk_bad", pd.DataFrame({"raw_id": pd.Series(bad, dtype=object)}))
            con.execute("DELETE FROM _bulk_people WHERE raw_id IN (SELECT raw_id FROM _bulk_bad)")
            con.unregister("_bulk_bad")
            self.rows_quarantined += len(bad)
        if not config.linkage.late_entrants and wave.index > baseline and n_known:
            new = con.execute("""
                SELECT raw_id, "row" FROM _bulk_people
                WHERE participant NOT IN (SELECT participant FROM _bulk_known)
                ORDER BY "row" """).fetchall()
            nrule = Rule.unexpected_new_code
            for raw_id, row in new:
                out.append({"file": wave.file, "wave": wave.index, "row": int(row),
                            "column": cols.id, "value": mask(str(raw_id)), "rule": nrule.value,
                            "scope": nrule.scope, "message": nrule.description})
        con.execute("DROP TABLE _bulk_known")
        return out

    def _write(self) -> None:
        """Submissions and new participants, as ``_write_wave`` stores them."""
        con, wave = self.store.connection, self.wave
        con.execute("""
            INSERT INTO submissions (participant, wave, sha256, file, "row", submitted_at,
                                     finished, is_test, excluded_reason)
            SELECT participant, ?, ?, NULL, "row", submitted, NULL, false, NULL
            FROM _bulk_people""", [wave.index, self.sha])
        con.execute("""
            INSERT INTO participants (participant, arm, side, dialogue, first_wave)
            SELECT participant, arm, side, dialogue, ? FROM _bulk_people
            WHERE participant NOT IN (SELECT participant FROM participants)""", [wave.index])
        con.execute("DROP TABLE _bulk_people")


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _sql_ident(name: str) -> str:
    return name.replace('"', '""')


def _int_list(keys: dict[int, Any]) -> str:
    return ", ".join(str(int(k)) for k in keys) or "NULL"

