"""The frozen study context every stage reads: configuration, instrument, analysis plan.

A stage is a function ``stage(store, context, ...)``: the store holds what earlier stages made,
the context says what the study is. Neither the context nor the stages know the
:class:`~trackii_eval.study.Study` façade, so each stage runs on any store (a DuckDB file or
``':memory:'``) and dependencies point one way (ingest -> store -> score -> model -> report).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Instrument, StudyConfig, load_instrument, load_study_config

if TYPE_CHECKING:
    from ..analysis import AnalysisPlan

__all__ = ["REPORT_ONLY", "StudyContext", "canonical_hash", "load_context"]

#: Keys of study.yaml only the report reads; changing them does not make scores stale.
REPORT_ONLY = ("name", "description", "context_events", "privacy", "funding")


def canonical_hash(obj: Any) -> str:
    """SHA-256 (hex) of a JSON-serialisable object in canonical form (sorted keys, no spaces).

    Two equal configurations hash equal whatever the order or layout of their YAML files.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StudyContext:
    """What a study is, frozen: nothing a stage does can change it.

    Parameters
    ----------
    root
        The study folder (wave files are named relative to it).
    out
        Where outputs go (report, manifest, linkage review file, problem table).
    config, instrument
        The validated ``study.yaml`` and ``instrument.yaml``.
    plan
        The analysis plan the model stage fits; ``None`` means the default plan built from the
        study design (:func:`trackii_eval.analysis.default_plan`). The report stage with
        ``plan=None`` reports whichever plan was fitted last; with a plan it refuses results
        of another plan.
    plan_source
        Where the plan came from (a file path), for the report and manifest.
    study_file
        The name of the study's YAML file in ``root``.
    """

    root: Path
    out: Path
    config: StudyConfig
    instrument: Instrument
    plan: AnalysisPlan | None = None
    plan_source: str | None = None
    study_file: str = "study.yaml"

    @property
    def study_id(self) -> str:
        """The study's id (``study.yaml: id``)."""
        return self.config.id

    @property
    def config_hash(self) -> str:
        """SHA-256 of the study configuration *and* instrument (as the report has always shown)."""
        return hashlib.sha256(
            self.config.model_dump_json().encode() + self.instrument.model_dump_json().encode()
        ).hexdigest()

    @property
    def study_hash(self) -> str:
        """SHA-256 of the study configuration that scores and models depend on (canonical JSON).

        Leaves out what only the report reads (:data:`REPORT_ONLY`: name, description, context
        events, disclosure settings), so tuning ``min_cell_size`` re-renders the report
        without re-scoring; those are recorded with the report run and in the manifest.
        """
        return canonical_hash(self.config.model_dump(mode="json", exclude=set(REPORT_ONLY)))

    @property
    def instrument_hash(self) -> str:
        """SHA-256 of the validated instrument (canonical JSON)."""
        return canonical_hash(self.instrument.model_dump(mode="json"))

    def resolved_plan(self) -> AnalysisPlan:
        """The plan the model stage fits: the given one, or the study's default plan."""
        from ..analysis import default_plan

        return self.plan if self.plan is not None else default_plan(self.config, self.instrument)

    @property
    def plan_name(self) -> str:
        """How the report names the plan: its file, or ``default plan``."""
        if self.plan_source:
            return self.plan_source
        if self.plan is None:
            return "default plan (built from study.yaml)"
        return "plan given in Python"

    def with_plan(self, plan: AnalysisPlan | None, source: str | None = None) -> StudyContext:
        """A copy of this context with another analysis plan."""
        return dataclasses.replace(self, plan=plan, plan_source=source)

    def input_files(self) -> dict[str, Path]:
        """Every input file of the study by role: ``study``, ``instrument``, ``wave <i>``,
        ``ideas``, ``roster``, the plan file (``plan``) and the evaluator's linkage decisions
        (``linkage decisions``) where there are any."""
        files = {"study": self.root / self.study_file,
                 "instrument": self.root / self.config.instrument}
        for w in self.config.fielded_waves:  # a planned wave has no file yet
            files[f"wave {w.index}"] = self.root / w.file
        if self.config.participants is not None:
            files["participant list"] = self.root / self.config.participants.file
        if self.config.ideas:
            files["ideas"] = self.root / self.config.ideas
        if self.config.roster:
            files["roster"] = self.root / self.config.roster
        if self.plan_source:
            files["plan"] = Path(self.plan_source)
        # the evaluator's linkage decisions are an input of ingest (SGIC studies)
        decisions = self.out / "linkage_review.csv"
        if self.config.linkage.method == "sgic" and decisions.is_file():
            files["linkage decisions"] = decisions
        return files


def load_context(path: str | Path, *, out: str | Path | None = None,
                 plan: str | Path | None = None) -> StudyContext:
    """Load and validate a study folder into a frozen :class:`StudyContext`.

    Parameters
    ----------
    path
        The study folder (or its ``study.yaml``).
    out
        Output folder; default ``build/<study id>``.
    plan
        An analysis plan YAML; default: the study's default plan.

    Raises
    ------
    ConfigError
        Naming file, line and key of every problem.
    """
    from ..analysis import load_plan

    path = Path(path)
    study_yaml = path if path.suffix in {".yaml", ".yml"} else path / "study.yaml"
    config, _ = load_study_config(study_yaml)
    instrument = load_instrument(study_yaml.parent / config.instrument)
    out_dir = Path(out) if out is not None else Path("build") / config.id
    loaded = load_plan(plan) if plan is not None else None
    return StudyContext(study_yaml.parent, out_dir, config, instrument, loaded,
                        None if plan is None else str(plan), study_yaml.name)
