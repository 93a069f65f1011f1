"""The run manifest: one JSON file beside the outputs that lets a reviewer reproduce a report.

It names every input by SHA-256 (as hashed when ingest started reading), the configuration,
the analysis plan and its hash, the versions of Python, trackii_eval and the numeric packages,
the seeds, the disclosure-control parameters, the key fingerprint (never the key), the stage
runs the outputs came from, and the outputs' own hashes. It holds no pseudonym, raw identifier
or response.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .provenance import file_sha256, last_run, stored_key_fingerprint, versions

if TYPE_CHECKING:
    from ..store import Store
    from .context import StudyContext

__all__ = ["MANIFEST_VERSION", "build_manifest", "write_manifest"]

MANIFEST_VERSION = 1


def build_manifest(store: Store, ctx: StudyContext,
                   outputs: dict[str, Path] | None = None) -> dict[str, Any]:
    """The manifest as a JSON-ready dict (see the module docstring for its content).

    Parameters
    ----------
    store, ctx
        The study store and its frozen context.
    outputs
        Output files by name; each is listed with its SHA-256.
    """
    runs = {stage: last_run(store, stage) for stage in ("ingest", "score", "model")}
    ingest, score, model = runs["ingest"], runs["score"], runs["model"]
    files = {}
    for role, path in ctx.input_files().items():
        recorded = (ingest.inputs.get("files", {}) if ingest else {}).get(role)
        try:
            shown = str(path.relative_to(ctx.root))
        except ValueError:
            shown = str(path)
        files[role] = {"path": shown, "sha256": recorded or (
            file_sha256(path) if path.is_file() else None)}
    return {
        "manifest_version": MANIFEST_VERSION,
        "study": ctx.study_id,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": files,
        "hashes": {"config": ctx.config_hash, "study": ctx.study_hash,
                   "instrument": ctx.instrument_hash},
        "configuration": ctx.config.model_dump(mode="json"),
        "plan": None if model is None else {
            "name": model.inputs.get("plan_name"), "hash": model.inputs.get("plan_hash"),
            "models": model.inputs.get("plan"),
        },
        "versions": versions(),
        "seeds": None if score is None else score.inputs.get("seeds"),
        "disclosure": {"min_cell_size": ctx.config.privacy.min_cell_size},
        "key_fingerprint": stored_key_fingerprint(store),
        # 1 until the first rotation (`trackii-eval rekey`); the store's meta keeps it
        "key_version": int(store.get_meta("key_version") or 1),
        "runs": {stage: None if run is None else run.to_dict() for stage, run in runs.items()},
        "outputs": {name: {"path": p.name, "sha256": file_sha256(p)}
                    for name, p in (outputs or {}).items()},
    }


def write_manifest(store: Store, ctx: StudyContext, path: str | Path, *,
                   report: Path | None = None) -> Path:
    """Write :func:`build_manifest` to ``path`` (pretty JSON) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(store, ctx, {"report": report} if report is not None else None)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n",
                    encoding="utf-8")
    return path
