"""The :class:`Study`: one evaluation, its configuration, its store and its stages.

Each stage reads the previous stage's output from the store and nothing earlier, so each can be
run and tested on its own::

    study = Study.load("surveys/demo", out="build/demo")
    study.ingest(key)          # wave files -> store (responses, quarantine, provenance)
    study.score()              # store -> scores, reliability (in the store)
    study.fit_models(plan)     # scores -> model results (in the store)
    study.report()             # results -> HTML report
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from threadpoolctl import threadpool_limits

from .config import Instrument, StudyConfig, load_instrument, load_study_config
from .errors import StoreError, TrackIIEvalError
from .store import Store

if TYPE_CHECKING:
    from .analysis import AnalysisPlan, ModelResults
    from .ingest.core import IngestSummary
    from .ingest.pseudonym import PseudonymKey

__all__ = ["Study"]


class Study:
    """A loaded, validated study with its store.

    Use :meth:`Study.load` rather than the constructor.
    """

    def __init__(self, root: Path, config: StudyConfig, instrument: Instrument, out: Path) -> None:
        self.root = root
        self.config = config
        self.instrument = instrument
        self.out = out
        self._store: Store | None = None

    @classmethod
    def load(cls, path: str | Path, *, out: str | Path | None = None) -> Study:
        """Load ``study.yaml`` and ``instrument.yaml`` from a study folder, validated.

        Parameters
        ----------
        path
            The study folder (or its ``study.yaml``).
        out
            Where the store and outputs go; default ``build/<study id>``.

        Raises
        ------
        ConfigError
            Naming file, line and key of every problem.
        """
        path = Path(path)
        study_yaml = path if path.suffix in {".yaml", ".yml"} else path / "study.yaml"
        config, _ = load_study_config(study_yaml)
        instrument = load_instrument(study_yaml.parent / config.instrument)
        out_dir = Path(out) if out is not None else Path("build") / config.id
        return cls(study_yaml.parent, config, instrument, out_dir)

    def __repr__(self) -> str:
        return f"Study({self.config.id!r}, waves={len(self.config.waves)}, out={str(self.out)!r})"

    @property
    def store_path(self) -> Path:
        """The DuckDB file of this study."""
        return self.out / f"{self.config.id}.duckdb"

    @property
    def store(self) -> Store:
        """The open store (opened on first use)."""
        if self._store is None:
            self._store = Store(self.store_path, self.config.id)
        return self._store

    def close(self) -> None:
        """Close the store."""
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def config_hash(self) -> str:
        """SHA-256 of the study and instrument definitions (provenance)."""
        return hashlib.sha256(
            self.config.model_dump_json().encode() + self.instrument.model_dump_json().encode()
        ).hexdigest()

    # -- stages --------------------------------------------------------------------------
    def ingest(self, key: PseudonymKey, *, replace: bool = False) -> IngestSummary:
        """Read, validate, pseudonymize and store every wave file.

        See :func:`trackii_eval.ingest.ingest_study`.
        """
        from .ingest.core import ingest_study

        summary = ingest_study(self, key, replace=replace)
        self.store.set_meta("config_hash", self.config_hash)
        return summary

    def score(self) -> pd.DataFrame:
        """Score every participant-wave and compute reliability; both are stored.

        Returns
        -------
        pandas.DataFrame
            The long score table (see :data:`trackii_eval.scoring.SCORE_COLUMNS`).
        """
        from .scoring import reliability_by_wave, score_responses
        from .scoring.by_wave import item_statistics_by_wave

        responses = self._responses()
        scores = score_responses(responses, self.instrument, self.config)
        # many small matrices: BLAS threads only fight each other here
        with threadpool_limits(limits=1, user_api="blas"):
            rel = reliability_by_wave(responses, self.instrument)
            items = item_statistics_by_wave(responses, self.instrument)
        network = self._network()
        invariance = self._invariance(responses)
        from .scoring.ideas import IDEA_COLUMNS, idea_metrics

        ideas = self.store.query("SELECT * FROM ideas")
        ideas_table = idea_metrics(ideas) if len(ideas) else pd.DataFrame(columns=IDEA_COLUMNS)
        with self.store.transaction():
            self.store.replace_table("scores", scores)
            self.store.replace_table("reliability", rel)
            self.store.replace_table("item_statistics", items)
            self.store.replace_table("network", network)
            self.store.replace_table("invariance", invariance)
            self.store.replace_table("idea_metrics", ideas_table)
        return scores

    def _invariance(self, responses: pd.DataFrame, n_waves: int = 2) -> pd.DataFrame:
        """Longitudinal measurement invariance of each perception construct.

        Fitted on the first ``n_waves`` waves: by default baseline against the first wave after
        it, the contrast that matters most (did the programme change what the items mean?) and
        the one with the most participants who answered every item. The model is listwise
        complete, so each further wave loses people to attrition and item non-response.
        """
        import warnings

        from .scoring.invariance import measurement_invariance
        from .scoring.scores import keyed_items

        tables = []
        waves = [w.index for w in self.config.waves][:n_waves]
        for name, con in self.instrument.constructs.items():
            if con.output != "perceptions" or con.scoring != "pomp" or len(con.items) < 3:
                continue
            keyed = keyed_items(responses[responses["construct"] == name], self.instrument)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = measurement_invariance(
                        keyed, items=[i.id for i in con.items], wave_col="wave",
                        id_col="participant", waves=waves, item_col="item", value_col="pomp",
                    )
                except TrackIIEvalError as exc:
                    tables.append(pd.DataFrame([{"construct": name, "model": "not fitted",
                                                 "decision": str(exc)}]))
                    continue
            table = res.table.assign(construct=name, n=res.n, n_dropped=res.n_dropped,
                                     waves=",".join(map(str, waves)), level=res.level,
                                     notes="; ".join(str(w.message) for w in caught))
            tables.append(table)
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
            columns=["construct", "model", "decision"])

    def _network(self) -> pd.DataFrame:
        from .scoring.network import NETWORK_COLUMNS, network_measures

        ties = self.store.query("SELECT * FROM ties")
        if ties.empty:
            return pd.DataFrame(columns=NETWORK_COLUMNS)
        participants = self.store.query("SELECT participant, side, dialogue FROM participants")
        respondents = self.store.query("""
            SELECT DISTINCT s.participant, s.wave FROM submissions s
            JOIN files f ON f.sha256 = s.sha256 AND f.active WHERE s.excluded_reason IS NULL
        """)
        return network_measures(ties, participants, respondents)

    def _responses(self) -> pd.DataFrame:
        responses = self.store.active_responses()
        if responses.empty:
            raise StoreError(f"{self.store_path}: no responses stored; run ingest first")
        return responses

    def scores(self, *, long: bool = False) -> pd.DataFrame:
        """Construct scores from the store.

        Parameters
        ----------
        long
            Return the tidy long table (participant x wave x construct) instead of the wide one
            (participant x wave, a column per construct, plus ``time``, ``post_time``,
            ``treated`` and a categorical ``arm`` whose reference level is the comparison arm).
        """
        from .scoring import scores_wide

        if not self.store.has_table("scores"):
            self.score()
        scores = self.store.query("SELECT * FROM scores")
        return scores if long else scores_wide(scores, self.config)

    def reliability(self) -> pd.DataFrame:
        """Reliability per construct and wave, as stored by :meth:`score`."""
        if not self.store.has_table("reliability"):
            self.score()
        return self.store.query("SELECT * FROM reliability")

    def fit_models(self, plan: AnalysisPlan | None = None) -> ModelResults:
        """Fit the analysis plan's models to the scores and store their results."""
        from .analysis import default_plan, fit_plan

        with threadpool_limits(limits=1, user_api="blas"):
            return fit_plan(self, plan or default_plan(self.config, self.instrument))

    def report(self, path: str | Path | None = None, **kwargs: Any) -> Path:
        """Render the self-contained HTML impact report from stored results."""
        from .report import render_report

        return render_report(self, path or self.out / "report.html", **kwargs)
