"""The :class:`Study`: a thin façade over the pipeline's stages, its context and its store.

The stages are functions over a store and a frozen study context
(:mod:`trackii_eval.pipeline.stages`); the façade holds the two and calls them::

    study = Study.load("surveys/demo", out="build/demo")
    study.ingest(key)          # wave files -> store (responses, quarantine, provenance)
    study.score()              # store -> scores, reliability (in the store)
    study.fit_models(plan)     # scores -> model results (in the store)
    study.report()             # results -> HTML report and manifest.json

Reading methods never return stale output: :meth:`scores` re-scores when the data, the study
configuration or the instrument changed since the scores were made, and :meth:`fit_models`
fits current scores only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .config import Instrument, StudyConfig
from .pipeline import stages
from .pipeline.context import StudyContext, load_context
from .pipeline.provenance import scores_problem
from .store import Store

if TYPE_CHECKING:
    from .analysis import AnalysisPlan, ModelResults
    from .ingest.core import IngestSummary
    from .ingest.pseudonym import PseudonymKey

__all__ = ["Study"]


class Study:
    """A loaded, validated study with its store.

    Use :meth:`Study.load` rather than the constructor.

    Parameters
    ----------
    context
        The frozen study context.
    store
        An open store to use (e.g. ``Store(":memory:", study_id)``); default: the study's
        DuckDB file in ``context.out``, opened on first use.
    """

    def __init__(self, context: StudyContext, store: Store | None = None) -> None:
        self.context = context
        self._store = store

    @classmethod
    def load(cls, path: str | Path, *, out: str | Path | None = None,
             plan: str | Path | None = None) -> Study:
        """Load ``study.yaml`` and ``instrument.yaml`` (and a plan) from a study folder.

        Parameters
        ----------
        path
            The study folder (or its ``study.yaml``).
        out
            Where the store and outputs go; default ``build/<study id>``.
        plan
            An analysis plan YAML; default: the plan built from the study design.

        Raises
        ------
        ConfigError
            Naming file, line and key of every problem.
        """
        return cls(load_context(path, out=out, plan=plan))

    def __repr__(self) -> str:
        return (f"Study({self.config.id!r}, waves={len(self.config.waves)}, "
                f"out={str(self.out)!r})")

    # -- the context ----------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The study folder."""
        return self.context.root

    @property
    def out(self) -> Path:
        """The output folder (store, report, manifest)."""
        return self.context.out

    @property
    def config(self) -> StudyConfig:
        """The validated ``study.yaml``."""
        return self.context.config

    @property
    def instrument(self) -> Instrument:
        """The validated instrument."""
        return self.context.instrument

    @property
    def config_hash(self) -> str:
        """SHA-256 of the study and instrument definitions (provenance)."""
        return self.context.config_hash

    # -- the store ------------------------------------------------------------------------
    @property
    def store_path(self) -> Path:
        """The DuckDB file of this study."""
        return self.out / f"{self.config.id}.duckdb"

    @property
    def store(self) -> Store:
        """The open store (opened on first use; refused if nothing was ingested yet)."""
        return self._open(create=False)

    def _open(self, *, create: bool) -> Store:
        if self._store is None:
            self._store = Store(self.store_path, self.config.id, create=create)
        return self._store

    def close(self) -> None:
        """Close the store."""
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- stages ---------------------------------------------------------------------------
    def ingest(self, key: PseudonymKey, *, replace: bool = False,
               bulk: bool = False) -> IngestSummary:
        """Read, validate, pseudonymize and store every wave file.

        See :func:`trackii_eval.pipeline.stages.ingest`.
        """
        return stages.ingest(self._open(create=True), self.context, key, replace=replace,
                             bulk=bulk)

    def score(self) -> pd.DataFrame:
        """Score every participant-wave and compute reliability; both are stored.

        See :func:`trackii_eval.pipeline.stages.score`.
        """
        return stages.score(self.store, self.context)

    def scores_stale(self) -> str | None:
        """Why the stored scores are out of date (one line), or ``None`` if they are current."""
        return scores_problem(self.store, self.context)

    def _current(self) -> None:
        if self.scores_stale() is not None:
            self.score()

    def scores(self, *, long: bool = False) -> pd.DataFrame:
        """Construct scores from the store, re-scored first if they are out of date.

        Parameters
        ----------
        long
            Return the tidy long table (participant x wave x construct) instead of the wide one
            (participant x wave, a column per construct, plus ``time``, ``post_time``,
            ``treated`` and a categorical ``arm`` whose reference level is the comparison arm).
        """
        from .scoring import scores_wide

        self._current()
        scores = stages.current_scores(self.store, self.context)
        return scores if long else scores_wide(scores, self.config)

    def reliability(self) -> pd.DataFrame:
        """Reliability per construct and wave, re-scored first if out of date."""
        self._current()
        return self.store.query("SELECT * FROM reliability")

    def fit_models(self, plan: AnalysisPlan | None = None) -> ModelResults:
        """Fit the analysis plan's models to current scores (re-scoring if needed); their
        results replace every stored result.

        Parameters
        ----------
        plan
            The plan to fit; default: the plan the study was loaded with, else the default plan.
        """
        self._current()
        ctx = self.context if plan is None else self.context.with_plan(plan)
        return stages.model(self.store, ctx)

    def report(self, path: str | Path | None = None) -> Path:
        """Render the HTML impact report (and ``manifest.json`` beside it) from stored results.

        See :func:`trackii_eval.pipeline.stages.report`.
        """
        return stages.report(self.store, self.context, path or self.out / "report.html")
