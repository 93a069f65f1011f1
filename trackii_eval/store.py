"""The study store: one embedded DuckDB file per study.

Holds pseudonymised responses in long form, participants, waves, quarantine, file provenance,
scores and model results. Raw identifiers never enter it: ingest hashes participant codes with a
keyed HMAC before writing, and direct identifier columns are not read past validation.

Every replaced file version stays in the store (``files.active = false``) so a replacement can be
undone; queries see active versions only.

Every stage run is recorded in ``runs`` (its inputs' fingerprints and its outputs; see
:mod:`trackii_eval.pipeline.provenance`), and each model result carries the id of the run that
made it. ``Store(":memory:", study_id)`` is a throwaway in-memory store (tests, notebooks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from .errors import StoreError

__all__ = ["Store", "register_frame"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS files (
    file VARCHAR, wave INTEGER, sha256 VARCHAR, format VARCHAR,
    rows_read INTEGER, rows_stored INTEGER, rows_quarantined INTEGER,
    ingested_at TIMESTAMP, key_fingerprint VARCHAR, active BOOLEAN
);
CREATE TABLE IF NOT EXISTS waves (
    wave INTEGER PRIMARY KEY, label VARCHAR, phase VARCHAR, date DATE, time DOUBLE
);
CREATE TABLE IF NOT EXISTS participants (
    participant VARCHAR PRIMARY KEY, arm VARCHAR, side VARCHAR, dialogue VARCHAR, first_wave INTEGER
);
CREATE TABLE IF NOT EXISTS submissions (
    participant VARCHAR, wave INTEGER, sha256 VARCHAR, file VARCHAR, row INTEGER,
    submitted_at TIMESTAMP, finished BOOLEAN, is_test BOOLEAN, excluded_reason VARCHAR
);
CREATE TABLE IF NOT EXISTS responses (
    participant VARCHAR, wave INTEGER, item VARCHAR, construct VARCHAR,
    value DOUBLE, missing_code VARCHAR, sha256 VARCHAR, row INTEGER
);
CREATE TABLE IF NOT EXISTS quarantine (
    file VARCHAR, wave INTEGER, sha256 VARCHAR, row INTEGER, "column" VARCHAR,
    value VARCHAR, rule VARCHAR, scope VARCHAR, message VARCHAR
);
CREATE TABLE IF NOT EXISTS ideas (
    idea_id VARCHAR, dialogue VARCHAR, workshop INTEGER, proposed_by VARCHAR, status VARCHAR
);
CREATE TABLE IF NOT EXISTS ties (
    wave INTEGER, participant VARCHAR, contact VARCHAR, strength DOUBLE
);
CREATE TABLE IF NOT EXISTS results (name VARCHAR PRIMARY KEY, kind VARCHAR, payload JSON);
ALTER TABLE results ADD COLUMN IF NOT EXISTS run_id VARCHAR;
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, stage VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
    inputs JSON, outputs JSON
);
"""

MEMORY = ":memory:"


def register_frame(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> list[str]:
    """Register ``frame`` as the view ``name`` on ``con``, on DuckDB 1.x and 2.x alike.

    pandas 3 infers its own string dtype (``str``) for text; DuckDB before 2.0 cannot scan it
    ("Data type 'str' not recognized"), so text columns are handed over as Python objects
    (missing values as ``None``, which DuckDB reads as NULL).

    Parameters
    ----------
    con
        The connection.
    name
        The view name.
    frame
        Any frame; it is not changed.

    Returns
    -------
    list of str
        The text columns without any value: DuckDB types them ``"NULL"``, so a table made from
        the view must cast them to VARCHAR (as :meth:`Store.replace_table` does).
    """
    # object columns are left alone: is_string_dtype would scan every value of them
    text = [c for c in frame.columns if frame[c].dtype != object
            and pd.api.types.is_string_dtype(frame[c])]
    empty = [str(c) for c in text if not frame[c].notna().any()]
    if text:
        frame = frame.astype(dict.fromkeys(text, object))
        for c in text:
            frame[c] = frame[c].where(frame[c].notna(), None)
    con.register(name, frame)
    return empty


class Store:
    """An open study store.

    Parameters
    ----------
    path
        The DuckDB file, or ``":memory:"`` for a store that lives as long as the object.
    study_id
        The study the store belongs to; a store of another study is refused.
    read_only
        Open without write access (reports and dashboards).
    create
        Create the file if it is missing (ingest). With ``create=False`` a missing store is
        refused with a :class:`StoreError` saying to run ingest first, and no file is left
        behind (score, model and report before ingest).

    Raises
    ------
    StoreError
        The store is missing (``read_only`` or ``create=False``) or belongs to another study.
    """

    def __init__(self, path: str | Path, study_id: str, *, read_only: bool = False,
                 create: bool = True) -> None:
        self.in_memory = str(path) == MEMORY
        self.path = Path(path)
        if not self.in_memory and (read_only or not create) and not self.path.exists():
            raise StoreError(
                f"{self.path}: no store yet; run `trackii-eval ingest` for this study first"
            )
        if not self.in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(MEMORY if self.in_memory else str(self.path),
                                   read_only=read_only and not self.in_memory)
        if not read_only:
            self._con.execute(_SCHEMA)
            owner = self.get_meta("study_id")
            if owner is None:
                self.set_meta("study_id", study_id)
            elif owner != study_id:
                raise StoreError(f"{self.path}: this store belongs to study '{owner}', not "
                                 f"'{study_id}'; choose another --out directory")
        self.study_id = study_id
        if not read_only:  # pseudonymized answers: readable by the owner only, at rest
            from .privacy.at_rest import private_file

            private_file(self.path)

    # -- plumbing --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database file."""
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open DuckDB connection, for columnar stages that stream SQL over big tables
        (:mod:`trackii_eval.ingest.bulk`, :mod:`trackii_eval.portfolio`)."""
        return self._con

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a read query and return a DataFrame."""
        return self._con.execute(sql, params or []).df()

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        """Run a statement."""
        self._con.execute(sql, params or [])

    def append(self, table: str, frame: pd.DataFrame) -> None:
        """Append a DataFrame whose columns match the table's (by name)."""
        if frame.empty:
            return
        register_frame(self._con, "_incoming", frame)
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        self._con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming")
        self._con.unregister("_incoming")

    def replace_table(self, table: str, frame: pd.DataFrame) -> None:
        """Replace a derived table (scores, reliability) with ``frame``."""
        empty = register_frame(self._con, "_incoming", frame)
        casts = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in empty)
        columns = f"* REPLACE ({casts})" if casts else "*"
        self._con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {columns} FROM _incoming")
        self._con.unregister("_incoming")

    def transaction(self) -> _Transaction:
        """A context manager: all or nothing."""
        return _Transaction(self._con)

    def has_table(self, table: str) -> bool:
        """Whether a table exists."""
        found = self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchone()
        return bool(found and found[0])

    # -- metadata --------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """Read a metadata value."""
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Write a metadata value."""
        self._con.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    # -- results ---------------------------------------------------------------------------
    def put_result(self, name: str, kind: str, payload: dict[str, Any],
                   run_id: str | None = None) -> None:
        """Store a serialised model result under ``name`` (made by model run ``run_id``)."""
        self._con.execute(
            "INSERT INTO results (name, kind, payload, run_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, payload = excluded.payload, "
            "run_id = excluded.run_id",
            [name, kind, json.dumps(payload, default=_json_default), run_id],
        )

    def replace_results(self, run_id: str,
                        results: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Replace every stored result by ``results`` (name, kind, payload) of one model run.

        Results of models no longer in the plan go; the caller wraps this in a transaction
        with the run record, so a report never sees half of two runs.
        """
        self._con.execute("DELETE FROM results")
        for name, kind, payload in results:
            self.put_result(name, kind, payload, run_id)

    def results(self, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Stored results by name; only those of model run ``run_id`` if given."""
        where, params = ("WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
        rows = self._con.execute(
            f"SELECT name, kind, payload FROM results {where} ORDER BY name", params
        ).fetchall()
        return {name: {"kind": kind, **json.loads(payload)} for name, kind, payload in rows}

    # -- views used downstream -------------------------------------------------------------
    def active_responses(self, *, include_excluded: bool = False) -> pd.DataFrame:
        """Responses from active file versions joined with participant attributes and time."""
        excluded = "" if include_excluded else "AND s.excluded_reason IS NULL"
        return self.query(f"""
            SELECT r.participant, r.wave, w.time, p.arm, p.side, p.dialogue,
                   r.construct, r.item, r.value, r.missing_code
            FROM responses r
            JOIN files f ON f.sha256 = r.sha256 AND f.active
            JOIN submissions s ON s.sha256 = r.sha256 AND s.participant = r.participant
                 AND s.wave = r.wave {excluded}
            JOIN participants p ON p.participant = r.participant
            JOIN waves w ON w.wave = r.wave
            ORDER BY r.participant, r.wave, r.item
        """)

    def open_problems(self) -> pd.DataFrame:
        """Every open ingest problem: those of every active wave-file version, and of the
        other inputs (roster), whichever run found them.

        Returns
        -------
        pd.DataFrame
            Columns file, wave, row, column, value, rule, scope, message (the
            ``ingest_problems.csv`` layout), ordered by wave, file and row.
        """
        return self.query("""
            SELECT q.file, q.wave, q.row, q."column", q.value, q.rule, q.scope, q.message
            FROM quarantine q
            WHERE q.sha256 IN (SELECT sha256 FROM files WHERE active)
               OR q.sha256 NOT IN (SELECT sha256 FROM files)
            ORDER BY q.wave NULLS LAST, q.file, q.row
        """)

    def empty_waves(self) -> pd.DataFrame:
        """Active files that had rows but stored none (every row quarantined): an error-level
        fact for the report, since such a wave is missing from every figure.

        Returns
        -------
        pd.DataFrame
            Columns file, wave, rows_read, rows_quarantined.
        """
        return self.query("""
            SELECT file, wave, rows_read, rows_quarantined FROM files
            WHERE active AND rows_read > 0 AND rows_stored = 0 ORDER BY wave
        """)

    def file_summary(self) -> pd.DataFrame:
        """Rows read, stored and quarantined per active file."""
        return self.query("""
            SELECT file, wave, format, rows_read, rows_stored, rows_quarantined,
                   substr(sha256, 1, 12) AS sha256, key_fingerprint, ingested_at
            FROM files WHERE active ORDER BY wave
        """)


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def __enter__(self) -> None:
        self._con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._con.execute("ROLLBACK" if exc_type else "COMMIT")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
