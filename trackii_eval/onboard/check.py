"""``trackii-eval check``: a dry run of ingest that writes nothing.

Validates the configuration and reads every wave file (and the participant list) exactly as
ingest would, then lists what ingest would quarantine, what it would leave for review (links it
will not guess), which records would link to no one, which participants would have no arm, and
which instrument items no file provides. No key is needed and no store is opened: raw codes are
compared in memory only and no code or identifier is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import StudyConfig, config_warnings, load_instrument, load_study_config
from ..errors import IngestError
from ..ingest.attributes import prepare_wave, read_participant_list, wave_attributes
from ..ingest.linkage import CodeSpec, link_records, read_decisions
from ..ingest.pseudonym import normalise_id
from ..ingest.readers import read_wave
from ..ingest.sgic import LINKAGE_REVIEW_FILE
from ..ingest.validate import PROBLEM_COLUMNS, validate_wave

__all__ = ["CheckReport", "check_study"]

# a wave in which most records link to no earlier participant has its codes or blocking
# columns (side, dialogue) coded differently, not a cohort of newcomers
_UNLINKED_WAVE_SHARE = 0.5


@dataclass
class CheckReport:
    """What ingest would do, without doing it.

    Attributes
    ----------
    files : DataFrame
        Per wave: file (or ``planned``), rows read, rows that would be stored and quarantined.
    problems : DataFrame
        Every problem ingest would record (``PROBLEM_COLUMNS``), identifiers masked.
    review : DataFrame
        Per wave: records that would be left for the evaluator's decision (ambiguous links).
    unlinked : DataFrame
        Per wave after the first: records that would start a new participant.
    decisions : list of str
        One line per thing that needs a decision; empty when ingest can run unattended.
    warnings : list of str
        Things to look at that block nothing (dates, planned waves, unused items).
    """

    files: pd.DataFrame
    problems: pd.DataFrame
    review: pd.DataFrame
    unlinked: pd.DataFrame
    decisions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def needs_decision(self) -> bool:
        """True when something must be decided before the study can be ingested as intended."""
        return bool(self.decisions)

    def text(self, max_problems: int = 50) -> str:
        """The report for people."""
        out = ["files:", self.files.to_string(index=False)]
        if len(self.problems):
            out.append(f"would be quarantined or reported ({len(self.problems)}):")
            for p in self.problems.head(max_problems).itertuples(index=False):
                value = "" if p.value is None or pd.isna(p.value) else f" ({p.value})"
                out.append(f"  {p.file}:{p.row}:{p.column}: {p.message}{value}")
            if len(self.problems) > max_problems:
                out.append(f"  ... and {len(self.problems) - max_problems} more")
        if len(self.review):
            out.append(f"left for review ({len(self.review)} record(s), decide in "
                       f"{LINKAGE_REVIEW_FILE} after ingest):")
            for r in self.review.itertuples(index=False):
                out.append(f"  {r.record_id}: {r.reason}")
        if len(self.unlinked) and self.unlinked["new"].sum():
            out.append("records that would link to no earlier participant (new people):")
            out.append(self.unlinked.to_string(index=False))
        for w in self.warnings:
            out.append(f"warning: {w}")
        if self.decisions:
            out.append("needs a decision:")
            out.extend(f"  - {d}" for d in self.decisions)
        else:
            out.append("ok: nothing needs a decision; `trackii-eval run` can go ahead")
        return "\n".join(out)


def check_study(path: str | Path, out: str | Path | None = None) -> CheckReport:
    """Dry-run ingest of a study folder.

    Parameters
    ----------
    path
        The study folder (or its ``study.yaml``).
    out
        The study's output folder (default ``build/<study id>``), where the evaluator's
        linkage decisions from an earlier ingest are read; nothing is written there.

    Returns
    -------
    CheckReport

    Raises
    ------
    ConfigError
        When ``study.yaml`` or ``instrument.yaml`` is invalid (file, line, key, rule).
    IngestError
        When a file cannot be read at all (the message says which and why).
    """
    path = Path(path)
    study_yaml = path if path.suffix in {".yaml", ".yml"} else path / "study.yaml"
    config, lines = load_study_config(study_yaml)
    instrument = load_instrument(study_yaml.parent / config.instrument)
    root = study_yaml.parent
    warnings = config_warnings(config, lines, study_yaml.name)
    sgic = config.linkage.method == "sgic"
    id_column = config.linkage.column if sgic else None
    files, problems, records, seen_items = [], [], [], set()
    decisions: list[str] = []
    for wave in config.waves:
        if wave.planned:
            files.append({"wave": wave.index, "file": "(planned)", "read": 0, "stored": 0,
                          "quarantined": 0})
            continue
        raw = prepare_wave(read_wave(root, wave), wave, config, instrument)
        code_column = id_column or instrument.participant.id
        if code_column not in raw.data.columns:
            # ingest refuses such a file as a whole: say which column to name, and go on
            # checking the other waves
            items = {i.id for c in instrument.constructs.values() for i in c.items}
            near = [c for c in raw.data.columns if c not in items]
            decisions.append(
                f"{wave.file}: no participant code column '{code_column}'; name this wave's "
                f"code column in study.yaml (waves[{config.waves.index(wave)}].columns: "
                f"{{code: ...}}; columns that are not items: {', '.join(map(str, near[:8]))})")
            files.append({"wave": wave.index, "file": wave.file, "read": len(raw.data),
                          "stored": 0, "quarantined": len(raw.data)})
            continue
        try:
            checked = validate_wave(raw, wave, config, instrument, display_name=wave.file,
                                    id_column=id_column)
        except IngestError as exc:  # a file-level refusal: ingest would store nothing of it
            decisions.append(str(exc))
            files.append({"wave": wave.index, "file": wave.file, "read": len(raw.data),
                          "stored": 0, "quarantined": len(raw.data)})
            continue
        checked, _ = wave_attributes(raw, checked, config, wave)
        files.append({"wave": wave.index, "file": wave.file, "read": checked.rows_read,
                      "stored": checked.rows_stored, "quarantined": checked.rows_quarantined})
        problems.append(checked.problems)
        seen_items |= set(checked.responses["item"].unique())
        subs = checked.submissions.merge(checked.attributes, on="raw_id", how="left")
        for row in subs.itertuples(index=False):
            # a comparison participant may have no side: blank, None or NaN alike
            side = row.side if isinstance(row.side, str) and row.side.strip() else "(none)"
            records.append({"record_id": f"{wave.file}:row {row.row}", "wave": wave.index,
                            "code": row.raw_id, "side": side,
                            "dialogue": row.dialogue, "arm": row.arm})
    frame = pd.DataFrame(records, columns=["record_id", "wave", "code", "side", "dialogue",
                                           "arm"])
    review = pd.DataFrame(columns=["record_id", "wave", "reason"])
    unlinked = pd.DataFrame(columns=["wave", "records", "new"])
    person = pd.Series(dtype=object)
    if len(frame):
        spec = (CodeSpec.from_config([e.model_dump() for e in config.linkage.elements])
                if sgic else None)
        review_file = (Path(out) if out is not None else Path("build") / config.id) \
            / LINKAGE_REVIEW_FILE
        decided = read_decisions(review_file) if sgic and review_file.exists() else None
        # the same linkage settings as ingest, so the dry run predicts what ingest does
        result = link_records(frame.drop(columns="arm"), spec, decisions=decided,
                              review_possible_matches=config.linkage.review_possible_matches,
                              late_entrants=config.linkage.late_entrants)
        person = result.person
        review = result.ambiguous[["record_id", "wave", "reason"]]
        per_wave = result.per_wave
        later = per_wave[per_wave["wave"] > per_wave["wave"].min()]
        unlinked = later[["wave", "records", "new"]].reset_index(drop=True)
        for w in later.itertuples(index=False):
            if w.records and w.new / w.records > _UNLINKED_WAVE_SHARE:
                decisions.append(
                    f"wave {w.wave}: {w.new} of {w.records} records link to no one in earlier "
                    "waves; check that its code, side and dialogue columns are named "
                    "(waves[].columns) and coded (recode, value labels) as in the other waves")
    files_frame = pd.DataFrame(files)
    if len(review):  # ingest quarantines what it leaves for review (rule ambiguous_link)
        pending = review.groupby("wave").size()
        extra = files_frame["wave"].map(pending).fillna(0).astype(int)
        files_frame["stored"] -= extra
        files_frame["quarantined"] += extra
    problem_frame = pd.concat([p for p in problems if len(p)] or
                              [pd.DataFrame(columns=PROBLEM_COLUMNS)], ignore_index=True)
    arms = _arms(config, root, frame, person, problem_frame)
    if arms is not None:
        problem_frame = arms[1]
        n_without = arms[0]
        if n_without:
            total = person.dropna().nunique() if len(person) else 0
            decisions.append(
                f"{n_without} of {total} participants would have no arm: the wave files carry "
                "no arm for them" + ("" if config.participants else
                                     "; add a participant list (participants: {file: ...})"))
    rows = problem_frame[problem_frame["scope"].isin(["row", "cell"])]
    if len(rows):
        decisions.append(f"{len(rows)} row or cell problem(s) would be quarantined: correct the "
                         "file or the configuration, or accept the quarantine")
    columns = problem_frame[problem_frame["scope"] == "column"]
    if len(columns):
        names = ", ".join(sorted(set(columns["column"])))
        decisions.append(f"{len(columns)} column(s) are neither items, participant columns "
                         f"nor ignored ({names}): map them in instrument.yaml (items, renames) "
                         "or list them under ignore_columns")
    if len(review):
        decisions.append(f"{len(review)} record(s) would be left for review (ambiguous links)")
    unused = sorted(set(instrument.items) - seen_items)
    if unused and files and any(not w.planned for w in config.waves):
        warnings.append(f"{len(unused)} item(s) of the instrument are in no wave file: "
                        f"{', '.join(unused[:10])}{' ...' if len(unused) > 10 else ''}")
    return CheckReport(files_frame, problem_frame, review, unlinked, decisions,
                       warnings)


def _arms(config: StudyConfig, root: Path, frame: pd.DataFrame, person: pd.Series,
          problems: pd.DataFrame) -> tuple[int, pd.DataFrame] | None:
    """Participants who would end without an arm, and the participant list's problems."""
    if not len(frame) or not len(person):
        return None
    frame = frame.assign(person=frame["record_id"].map(person))
    frame = frame[frame["person"].notna()]
    has_arm = set(frame.loc[frame["arm"].notna(), "person"])
    if config.participants is not None:
        listed, name, _ = read_participant_list(root, config)
        if config.linkage.method == "sgic":
            spec = CodeSpec.from_config([e.model_dump() for e in config.linkage.elements])
            norm = spec.parse
        else:
            def norm(code: object) -> object:
                return normalise_id(str(code).strip())
        by_code: dict[object, set[str]] = {}
        for code, p in zip(frame["code"], frame["person"], strict=True):
            by_code.setdefault(norm(code), set()).add(p)
        extra = []
        for rec in listed.to_dict(orient="records"):
            code = rec["code"]
            found = by_code.get(norm(code)) if code is not None and str(code).strip() else None
            if not found or len(found) != 1:
                extra.append({"file": name, "wave": None, "row": int(rec["row"]),
                              "column": config.participants.code, "value": None,
                              "rule": "not_in_study", "scope": "list",
                              "message": "code in the participant list matches no participant "
                                         "of the wave files"})
                continue
            arm = rec.get("arm")
            if arm is not None and not pd.isna(arm):
                if arm not in config.categories("arm"):
                    extra.append({"file": name, "wave": None, "row": int(rec["row"]),
                                  "column": "arm", "value": str(arm)[:40],
                                  "rule": "unknown_category", "scope": "row",
                                  "message": "value is not a declared category: declared "
                                             f"arms: {', '.join(config.categories('arm'))}"})
                else:
                    has_arm |= found
        if extra:
            problems = pd.concat([problems, pd.DataFrame(extra, columns=PROBLEM_COLUMNS)],
                                 ignore_index=True)
    return len(set(frame["person"]) - has_arm), problems
