"""The pipeline: stages over a store and a frozen study context, with provenance.

See :mod:`.stages` (``ingest``, ``score``, ``model``, ``report``), :mod:`.context`
(:class:`StudyContext`), :mod:`.provenance` (run records, freshness, key check) and
:mod:`.manifest` (the run manifest).
"""

from .context import StudyContext, load_context
from .manifest import build_manifest, write_manifest
from .stages import current_scores, ingest, model, report, score

__all__ = ["StudyContext", "build_manifest", "current_scores", "ingest", "load_context", "model",
           "report", "score", "write_manifest"]
