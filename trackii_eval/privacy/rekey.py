"""Key rotation: re-pseudonymize a study store under a new key, from the source files.

When a pseudonymization key may have leaked (a laptop lost, a key file committed, a team member
leaving), every pseudonym made with it can be re-identified by anyone holding the raw codes.
Rotation replaces them all: the old and the new pseudonym of every participant are computed
from the source files (the raw codes never enter the store, so the store alone cannot be
re-keyed), and every pseudonym in every table of the store, including derived tables and
model results, is rewritten into a new database file that then replaces the old one. Nothing
else changes: responses, scores, links between waves and the evaluator's linkage decisions
(which name records by file and row, never by pseudonym) are the same as before, and the next
ingest with the new key finds every file unchanged.

The rotation is refused, with what to do, when the store does not match the sources (a wave
file changed since ingest, decisions not yet applied) or when the store holds a pseudonym that
the sources do not explain: a store half under one key and half under another would silently
split people in two.

The key's version (1 for the key a store was first ingested with) and fingerprint are recorded
in the store's ``meta`` table (``key_version``, ``key_fingerprint``) and every rotation in the
``key_log`` table and in ``key_rotation.log`` next to the store.

References
----------
.. [1] NIST SP 800-57 Part 1 Rev. 5 (2020). Recommendation for Key Management, section 5.3
   (cryptoperiods) and 8.2.3 (key rotation / re-keying).
.. [2] ISO/IEC 20889:2018, pseudonymization with keyed cryptographic hash functions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from ..errors import KeyMismatchError, StoreError
from .at_rest import private_file

if TYPE_CHECKING:
    from ..ingest.pseudonym import PseudonymKey
    from ..store import Store
    from ._handle import StudyHandle as Study

__all__ = ["KEY_LOG_FILE", "RekeyResult", "key_version", "rekey_store"]

KEY_LOG_FILE = "key_rotation.log"
_PSEUDONYM = re.compile(r"\bP-[0-9a-f]{16}\b")


@dataclass(frozen=True)
class RekeyResult:
    """What a key rotation did."""

    old_fingerprint: str
    new_fingerprint: str
    key_version: int
    pseudonyms: int  # distinct pseudonyms re-keyed
    values_rewritten: int  # cells changed across all tables
    tables: dict[str, int]  # table -> cells changed

    def summary(self) -> str:
        """Text for people (fingerprints only, never keys)."""
        tables = ", ".join(f"{t} {n}" for t, n in sorted(self.tables.items()) if n)
        return (f"re-keyed {self.pseudonyms} pseudonyms ({self.values_rewritten} values: "
                f"{tables or 'none'}); key {self.old_fingerprint} -> {self.new_fingerprint}, "
                f"now key version {self.key_version}")


def key_version(store: Store) -> int:
    """The version of the key the store's pseudonyms are under (1 until the first rotation).

    For run manifests and reports: ``{"key_fingerprint": ..., "key_version": key_version(store)}``.
    """
    value = store.get_meta("key_version")
    return 1 if value is None else int(value)


def _check_current(study: Study) -> None:
    """Refuse unless every wave file is the version the store holds as active."""
    from ..ingest.readers import read_wave

    active = study.store.query("SELECT wave, sha256 FROM files WHERE active")
    by_wave = dict(zip(active["wave"].astype(int), active["sha256"], strict=True))
    if not by_wave:
        raise StoreError(f"{study.store_path}: nothing ingested yet; there are no pseudonyms "
                         "to re-key")
    for wave in study.config.fielded_waves:  # a planned wave has no file yet
        raw = read_wave(study.root, wave)
        if by_wave.get(wave.index) != raw.sha256:
            raise StoreError(
                f"{wave.file}: differs from the version ingested for wave {wave.index}; run "
                "`trackii-eval ingest` with the current key first, then re-key (a rotation "
                "only re-keys what the store already holds)")


def _id_mapping(study: Study, old: PseudonymKey, new: PseudonymKey) -> dict[str, str]:
    """Old -> new pseudonym of every raw participant code in the wave files and roster."""
    from ..ingest.attributes import prepare_wave
    from ..ingest.pseudonym import normalise_id
    from ..ingest.readers import read_table, read_wave
    from ..ingest.readers.base import canonical_text

    column = study.instrument.participant.id
    # read exactly as ingest reads: per-wave column names and the canonical text of codes, so
    # a code is the same person here as in the store (1001.0 from SPSS is 1001)
    frames = [prepare_wave(read_wave(study.root, w), w, study.config, study.instrument).data
              for w in study.config.fielded_waves]
    if study.config.roster:
        frames.append(read_table(study.root / study.config.roster).data)
    codes: set[str] = set()
    for data in frames:
        for col in (column, "contact_code"):
            if col in data.columns:
                texts = (canonical_text(v) for v in data[col])
                codes |= {t for t in texts if t and normalise_id(t)}
    ordered = sorted(codes)
    return dict(zip(old.pseudonymize_many(ordered), new.pseudonymize_many(ordered),
                    strict=True))


def _sgic_mapping(study: Study, old: PseudonymKey, new: PseudonymKey
                  ) -> tuple[dict[str, str], str, object]:
    """Old -> new pseudonym of every linked person, the new linkage fingerprint, the linkage."""
    from ..ingest.sgic import link_study

    # Linking does not depend on the key; it is run with the old key so that its fingerprint
    # can be compared with the store's (same files, same decisions, same links).
    linkage = link_study(study, old)
    stored = study.store.get_meta("linkage_fingerprint")
    if stored is not None and stored != linkage.fingerprint:
        raise StoreError(
            f"{study.store_path}: the links in the store differ from the links the wave files "
            "and linkage decisions give now (new decisions not yet applied?); run "
            "`trackii-eval ingest` with the current key first, then re-key")
    persons = linkage.result.person.dropna()
    unique = sorted(set(persons))
    old_p = old.pseudonymize_many(unique, namespace="linkage-person")
    new_p = new.pseudonymize_many(unique, namespace="linkage-person")
    mapping = dict(zip(old_p, new_p, strict=True))
    new_by_row = {wr: mapping[p] for wr, p in linkage.pseudonyms.items()}
    # the same formula as ingest's, so the next ingest sees the links unchanged
    fingerprint = hashlib.sha256(
        "\n".join(f"{w}:{r}:{p}" for (w, r), p in sorted(new_by_row.items())).encode()
    ).hexdigest()
    return mapping, fingerprint, linkage


def _prepare(study: Study, old_key: PseudonymKey, new_key: PseudonymKey
             ) -> tuple[dict[str, str], str | None, Any, int]:
    """Check the store against the keys and sources; the old -> new pseudonym mapping."""
    store = study.store
    stored_fp = store.get_meta("key_fingerprint")
    if stored_fp is None:
        raise StoreError(f"{study.store_path}: nothing ingested yet; no pseudonyms to re-key")
    if stored_fp != old_key.fingerprint:  # exit 3, as a wrong key at ingest
        raise KeyMismatchError(
            f"{study.store_path}: its pseudonyms were made with the key of fingerprint "
            f"{stored_fp}, not with the old key given (fingerprint {old_key.fingerprint}); pass "
            "the key the store was last ingested or re-keyed with as --old-key-file")
    if new_key == old_key:
        raise StoreError("the new key is the old key; make a new one with `trackii-eval keygen`")
    _check_current(study)
    linkage = None
    new_linkage_fp = None
    if study.config.linkage.method == "sgic":
        mapping, new_linkage_fp, linkage = _sgic_mapping(study, old_key, new_key)
    else:
        mapping = _id_mapping(study, old_key, new_key)
    return mapping, new_linkage_fp, linkage, key_version(store) + 1


def rekey_store(study: Study, old_key: PseudonymKey, new_key: PseudonymKey) -> RekeyResult:
    """Re-pseudonymize ``study``'s store under ``new_key``.

    Parameters
    ----------
    study
        The loaded study; its source files must be the versions the store holds.
    old_key
        The key the store's pseudonyms were made with (checked by fingerprint).
    new_key
        The new key (make it with ``trackii-eval keygen``); it must differ from the old one.

    Returns
    -------
    RekeyResult
        Counts and fingerprints; also recorded in the store and in ``key_rotation.log``.

    Raises
    ------
    StoreError
        If the old key is not the store's, the keys are equal, the sources differ from what was
        ingested, or a pseudonym in the store is not explained by the sources. The store is
        unchanged in every such case.
    """
    try:
        mapping, new_linkage_fp, linkage, version = _prepare(study, old_key, new_key)
    finally:
        study.close()  # the store file is replaced below; reopened on next use
    path = study.store_path
    fd, tmp_name = tempfile.mkstemp(prefix=".rekey-", suffix=".duckdb", dir=path.parent)
    os.close(fd)
    os.unlink(tmp_name)  # DuckDB creates the file itself
    tmp = Path(tmp_name)
    try:
        counts, unmapped = _copy_rekeyed(path, tmp, mapping)
        if unmapped:
            where = ", ".join(f"{t} ({n})" for t, n in sorted(unmapped.items()))
            raise StoreError(
                f"{path}: {sum(unmapped.values())} pseudonymized value(s) in {where} are not "
                "explained by the current source files (a participant whose file was replaced "
                "or removed?); the store was left unchanged. Re-ingest from complete sources "
                "with the current key, then re-key")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        con = duckdb.connect(str(tmp))
        try:
            _record(con, old_key.fingerprint, new_key.fingerprint, version, now,
                    len(mapping), sum(counts.values()), new_linkage_fp)
        finally:
            con.close()
        os.replace(tmp, path)
        private_file(path)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():  # a WAL of the old file would replay old pseudonyms
            wal.unlink()
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            if leftover.exists():
                leftover.unlink()
    if linkage is not None and linkage.review_file is not None:
        linkage.result.to_review_file(
            linkage.review_file,
            lambda k: new_key.pseudonymize(k, namespace="linkage-person"), overwrite=True)
    result = RekeyResult(old_key.fingerprint, new_key.fingerprint, version, len(mapping),
                         sum(counts.values()), counts)
    log = path.parent / KEY_LOG_FILE
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"{now.isoformat(timespec='seconds')}Z {result.summary()}\n")
    private_file(log)
    return result


def _copy_rekeyed(src: Path, dst: Path, mapping: dict[str, str]
                  ) -> tuple[dict[str, int], dict[str, int]]:
    """Copy every table of ``src`` into a new database ``dst`` with pseudonyms replaced.

    Every text and JSON column is rewritten (pseudonyms can sit in derived tables and inside
    serialised model results, not only in ``participant`` columns). Returns the number of
    changed cells per table and the number of cells per table holding a pseudonym-shaped value
    that ``mapping`` does not explain.
    """
    changed: dict[str, int] = {}
    unmapped: dict[str, int] = {}
    state = {"changed": 0, "unmapped": 0}

    def rekey_text(text: str) -> str:
        missing = False

        def sub(m: re.Match[str]) -> str:
            nonlocal missing
            new = mapping.get(m.group(0))
            if new is None:
                missing = True
                return m.group(0)
            return new

        out = _PSEUDONYM.sub(sub, text)
        state["unmapped"] += missing
        state["changed"] += out != text
        return out

    con = duckdb.connect(str(dst))
    try:
        con.create_function("rekey_text", rekey_text, ["VARCHAR"], "VARCHAR",
                            side_effects=True)
        con.execute(f"ATTACH '{_sql_path(src)}' AS src (READ_ONLY)")
        tables = con.execute(
            "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = 'src' "
            "ORDER BY table_name").fetchall()
        for table, ddl in tables:
            con.execute(ddl)  # same columns, types and keys as the original
            cols = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = 'src' AND table_name = ? ORDER BY ordinal_position",
                [table]).fetchall()
            exprs = []
            for name, dtype in cols:
                q = '"' + name.replace('"', '""') + '"'
                if dtype == "VARCHAR":
                    exprs.append(f"rekey_text({q})")
                elif dtype == "JSON":
                    exprs.append(f"rekey_text({q}::VARCHAR)::JSON")
                else:
                    exprs.append(q)
            state["changed"] = state["unmapped"] = 0
            con.execute(f'INSERT INTO "{table}" SELECT {", ".join(exprs)} FROM src."{table}"')
            changed[table] = state["changed"]
            if state["unmapped"]:
                unmapped[table] = state["unmapped"]
        con.execute("DETACH src")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return changed, unmapped


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _record(con: duckdb.DuckDBPyConnection, old_fp: str, new_fp: str, version: int,
            when: dt.datetime, n_pseudonyms: int, n_values: int, linkage_fp: str | None
            ) -> None:
    con.execute("""CREATE TABLE IF NOT EXISTS key_log (
        version INTEGER, fingerprint VARCHAR, previous_fingerprint VARCHAR,
        rotated_at TIMESTAMP, pseudonyms INTEGER, values_rewritten INTEGER)""")
    if con.execute("SELECT count(*) FROM key_log").fetchone()[0] == 0:
        first = con.execute("SELECT min(ingested_at) FROM files").fetchone()[0]
        con.execute("INSERT INTO key_log VALUES (?, ?, NULL, ?, NULL, NULL)",
                    [version - 1, old_fp, first])
    con.execute("INSERT INTO key_log VALUES (?, ?, ?, ?, ?, ?)",
                [version, new_fp, old_fp, when, n_pseudonyms, n_values])
    con.execute("UPDATE files SET key_fingerprint = ?", [new_fp])
    for key, value in (("key_fingerprint", new_fp), ("key_version", str(version)),
                       ("key_rotated_at", when.isoformat(timespec="seconds"))):
        con.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                    "value = excluded.value", [key, value])
    if linkage_fp is not None:
        con.execute("UPDATE meta SET value = ? WHERE key = 'linkage_fingerprint'", [linkage_fp])
    con.execute("CHECKPOINT")


def pseudonyms_in(frame: pd.DataFrame) -> set[str]:
    """Every pseudonym-shaped value in the text columns of ``frame`` (for checks and tests)."""
    found: set[str] = set()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            for value in frame[column].dropna():
                found |= set(_PSEUDONYM.findall(str(value)))
    return found
