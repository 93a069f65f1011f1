"""Provenance: what every stage run was made from, and whether its output is still current.

Each stage run is one row of the store's ``runs`` table: its inputs (file SHA-256 taken before
reading, configuration, instrument and plan hashes, key fingerprint, code and package
versions, seeds) and its outputs (fingerprints of what it wrote). A later stage compares the
fingerprints it depends on with the current ones, so it never reads stale output:

- scores are current while the ingested data (:func:`data_fingerprint`), the study
  configuration and the instrument are those they were made from;
- model results are current while the scores are current and are the scores they were fitted
  to.

Fingerprints are hashes; none is derived from a raw identifier or the key itself (the key
fingerprint is :attr:`~trackii_eval.ingest.pseudonym.PseudonymKey.fingerprint`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata
import json
import platform
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import KeyMismatchError

if TYPE_CHECKING:
    from ..store import Store
    from .context import StudyContext

__all__ = [
    "PACKAGES",
    "RunRecord",
    "check_key",
    "code_fingerprint",
    "data_fingerprint",
    "file_sha256",
    "frame_fingerprint",
    "input_hashes",
    "last_run",
    "record_run",
    "results_problem",
    "scores_problem",
    "stored_key_fingerprint",
    "versions",
]

#: The packages whose versions can change a number in a report.
PACKAGES = ("numpy", "pandas", "scipy", "statsmodels", "linearmodels", "duckdb", "pydantic",
            "formulaic", "matplotlib", "jinja2")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_hashes(ctx: StudyContext) -> dict[str, str | None]:
    """SHA-256 of every input file of the study by role (``None`` for a missing file).

    Taken *before* a stage reads the files, so the record names the bytes that were there when
    the run started.
    """
    return {role: file_sha256(p) if p.is_file() else None
            for role, p in ctx.input_files().items()}


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 over the package's own source files and templates (catches uncommitted edits)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in {".py", ".html"} and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


@functools.cache
def versions() -> dict[str, str]:
    """Versions of Python, trackii_eval (with its code fingerprint) and the numeric packages."""
    from .. import __version__

    out = {"python": platform.python_version(), "trackii_eval": __version__,
           "trackii_eval_code": code_fingerprint()[:16]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's columns and values (row order included)."""
    h = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    if len(frame):
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(store: Store) -> str:
    """Fingerprint of everything ingest wrote that scoring reads.

    Active file versions (by content hash), participants, the idea log, the roster ties and
    the linkage: a re-ingest that changes any of them changes the fingerprint, so scores made
    before it are stale. Responses and submissions belong to a file version (its SHA-256), so
    the list of active versions stands for them.
    """
    parts = []
    for sql in (
        "SELECT wave, sha256 FROM files WHERE active",
        "SELECT * FROM participants",
        "SELECT * FROM ideas",
        "SELECT * FROM ties",
    ):
        row = store.query(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(CAST(t AS VARCHAR), chr(10) "
            f"ORDER BY CAST(t AS VARCHAR)), '')) AS h FROM ({sql}) t"
        ).iloc[0]
        parts.append(f"{int(row['n'])}:{row['h']}")
    parts.append(store.get_meta("linkage_fingerprint") or "")
    parts.append(store.get_meta("key_fingerprint") or "")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """One recorded stage run."""

    run_id: str
    stage: str
    started_at: dt.datetime
    finished_at: dt.datetime
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the manifest)."""
        return {"run_id": self.run_id, "stage": self.stage,
                "started_at": self.started_at.isoformat(timespec="seconds"),
                "finished_at": self.finished_at.isoformat(timespec="seconds"),
                "inputs": self.inputs, "outputs": self.outputs}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def record_run(store: Store, stage: str, inputs: dict[str, Any], outputs: dict[str, Any], *,
               started_at: dt.datetime | None = None, run_id: str | None = None) -> RunRecord:
    """Append a run of ``stage`` to the store's ``runs`` table and return it.

    The caller wraps this in the same transaction as the stage's writes, so a run is recorded
    if and only if its outputs are stored.
    """
    run = RunRecord(run_id or new_run_id(stage), stage, started_at or _now(), _now(),
                    inputs, outputs)
    store.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)", [
        run.run_id, stage, run.started_at, run.finished_at,
        json.dumps(inputs, sort_keys=True, default=str),
        json.dumps(outputs, sort_keys=True, default=str),
    ])
    return run


def new_run_id(stage: str) -> str:
    """A new, unique run id: ``<stage>-<UTC time>-<random>``."""
    return f"{stage}-{_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def last_run(store: Store, stage: str) -> RunRecord | None:
    """The latest recorded run of ``stage``, or ``None``."""
    if not store.has_table("runs"):
        return None
    rows = store.query(
        "SELECT * FROM runs WHERE stage = ? ORDER BY finished_at DESC, started_at DESC LIMIT 1",
        [stage],
    )
    if rows.empty:
        return None
    r = rows.iloc[0]
    return RunRecord(str(r["run_id"]), stage, r["started_at"].to_pydatetime(),
                     r["finished_at"].to_pydatetime(), json.loads(r["inputs"]),
                     json.loads(r["outputs"]))


def stored_key_fingerprint(store: Store) -> str | None:
    """The fingerprint of the key the store's pseudonyms were made with (``None``: no data)."""
    fp = store.get_meta("key_fingerprint")
    if fp:
        return fp
    found = store.query("SELECT DISTINCT key_fingerprint FROM files "
                        "WHERE key_fingerprint IS NOT NULL")
    return None if found.empty else str(found["key_fingerprint"].iloc[0])


def check_key(store: Store, fingerprint: str) -> None:
    """Refuse a key that is not the one the store's pseudonyms were made with.

    A different key would give every participant a new pseudonym: earlier waves could no
    longer be linked to new ones, and the old pseudonyms would stay beside the new.

    Raises
    ------
    KeyMismatchError
        Naming both fingerprints (never the key); nothing in the store has changed.
    """
    stored = stored_key_fingerprint(store)
    if stored is not None and stored != fingerprint:
        raise KeyMismatchError(
            f"{'in-memory store' if store.in_memory else store.path}: the key given (fingerprint "
            f"{fingerprint}) is not the key this store was made with (fingerprint {stored}); "
            "nothing was changed. Use the store's key, or rotate keys with `trackii-eval rekey`"
        )


def scores_problem(store: Store, ctx: StudyContext) -> str | None:
    """Why the stored scores cannot be used as they are, or ``None`` if they are current."""
    run = last_run(store, "score")
    if run is None or not store.has_table("scores"):
        return "no scores yet"
    now = {"data": data_fingerprint(store), "study": ctx.study_hash,
           "instrument": ctx.instrument_hash}
    changed = [what for what, value in now.items() if run.inputs.get(what) != value]
    if not changed:
        return None
    names = {"data": "the ingested data", "study": "study.yaml", "instrument": "the instrument"}
    return (f"the scores were made before {' and '.join(names[c] for c in changed)} changed "
            f"(score run {run.run_id})")


def results_problem(store: Store, ctx: StudyContext) -> str | None:
    """Why the stored model results cannot be reported, or ``None`` if they are current."""
    run = last_run(store, "model")
    if run is None:
        return "no model results yet"
    stale_scores = scores_problem(store, ctx)
    if stale_scores is not None:
        return f"the model results were fitted to scores that are out of date: {stale_scores}"
    score_run = last_run(store, "score")
    assert score_run is not None  # scores_problem checked it
    if run.inputs.get("scores") != score_run.outputs.get("scores"):
        return (f"the model results (run {run.run_id}) were fitted to other scores than the "
                f"current ones (run {score_run.run_id})")
    if ctx.plan is not None:
        from .context import canonical_hash

        wanted = canonical_hash(ctx.plan.model_dump(mode="json"))
        if run.inputs.get("plan_hash") != wanted:
            return (f"the stored results are of plan {run.inputs.get('plan_name')} (hash "
                    f"{str(run.inputs.get('plan_hash'))[:12]}), not of {ctx.plan_name} (hash "
                    f"{wanted[:12]})")
    return None
