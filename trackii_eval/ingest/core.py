"""Ingest: read -> validate -> pseudonymize -> link -> store, one wave file at a time.

A file-level error (unreadable file, wrong wave, changed file without ``replace``) stops that
file and changes nothing in the store; everything else is stored or quarantined with a reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..config import StudyConfig, Wave
from ..errors import IngestError
from ..store import Store
from .attributes import (
    apply_participant_list,
    prepare_wave,
    store_wave_attributes,
    wave_attributes,
)
from .readers import RawTable, read_table, read_wave
from .readers.base import canonical_text
from .rules import Rule
from .sgic import apply_links, link_study
from .validate import (
    PROBLEM_COLUMNS,
    ValidatedWave,
    mask,
    study_local_times,
    to_study_time,
    validate_wave,
)

if TYPE_CHECKING:
    from ..pipeline.context import StudyContext
    from .pseudonym import PseudonymKey

__all__ = ["FileOutcome", "IngestSummary", "ingest_study"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one wave file."""

    file: str
    wave: int
    status: str  # "ingested", "unchanged", "replaced", "planned" (no file yet)
    rows_read: int
    rows_stored: int
    rows_quarantined: int
    problems: int


@dataclass(frozen=True)
class IngestSummary:
    """Result of ingesting a study: per-file counts and every problem found.

    ``problems`` are this run's; ``open_problems`` every open problem of every active file
    version in the store, whichever run found it (what ``ingest_problems.csv`` lists).
    """

    files: list[FileOutcome]
    problems: pd.DataFrame
    key_fingerprint: str
    linkage: pd.DataFrame | None = None
    linkage_review_file: Path | None = None
    open_problems: pd.DataFrame | None = None
    timezone: str = "UTC"
    # records stored as new people but listed in linkage_review.csv for a decision
    n_listed: int = 0

    @property
    def table(self) -> pd.DataFrame:
        """Per-file counts; rows read = rows stored + rows quarantined in every row."""
        return pd.DataFrame([f.__dict__ for f in self.files])

    @property
    def empty_waves(self) -> list[FileOutcome]:
        """Files that had rows but of which nothing was stored (every row quarantined)."""
        return [f for f in self.files if f.rows_read > 0 and f.rows_stored == 0]

    @property
    def n_open(self) -> int:
        """Open problems in the store (this run's when the store was not asked)."""
        frame = self.open_problems if self.open_problems is not None else self.problems
        return len(frame)

    def error_lines(self) -> list[str]:
        """Error-level lines: a wave whose rows were all quarantined vanishes from every
        figure, which nobody would notice in a table of counts."""
        return [f"ERROR: {f.file}: wave {f.wave}: all {f.rows_read} rows quarantined, nothing "
                "of this wave is stored and it is missing from every figure; rule "
                "all_rows_quarantined. Fix the problems listed in ingest_problems.csv and "
                "ingest again" for f in self.empty_waves]

    def problem_lines(self) -> list[str]:
        """One line per problem: ``file:row:column: rule (value)``, identifiers masked."""
        out = []
        for p in self.problems.itertuples(index=False):
            value = "" if p.value is None or pd.isna(p.value) else f" ({p.value})"
            out.append(f"{p.file}:{p.row}:{p.column}: {p.message}{value}")
        return out

    def report_lines(self) -> list[str]:
        """`problem_lines` with the rule's code and what to do, one line per problem."""
        out = []
        for line, rule in zip(self.problem_lines(), self.problems["rule"], strict=True):
            try:
                fix = Rule(rule).fix
            except ValueError:
                fix = "see the message"
            # a message that already says what to do is not told twice
            out.append(f"{line} [rule {rule}]" if fix in line else f"{line} [rule {rule}; {fix}]")
        return out

    def summary(self) -> str:
        """Text for people."""
        lines = [f"{'file':32} {'wave':>4} {'status':>10} {'read':>6} {'stored':>6} "
                 f"{'quarantined':>11}"]
        for f in self.files:
            lines.append(f"{f.file:32} {f.wave:>4} {f.status:>10} {f.rows_read:>6} "
                         f"{f.rows_stored:>6} {f.rows_quarantined:>11}")
        lines.append(f"{len(self.problems)} problem(s) found in this run, {self.n_open} open in "
                     f"the store; key fingerprint {self.key_fingerprint}")
        lines.append(f"times compared in the study time zone {self.timezone}")
        lines.extend(self.error_lines())
        if self.linkage is not None:
            lines.append("linkage by self-generated code, per wave:")
            lines.append(self.linkage.to_string(index=False))
            if self.linkage_review_file is not None:
                lines.append(f"ambiguous links to decide: {self.linkage_review_file}")
        return "\n".join(lines)


def ingest_study(store: Store, ctx: StudyContext, key: PseudonymKey, *,
                 replace: bool = False) -> IngestSummary:
    """Ingest every wave file of the study ``ctx`` into ``store``.

    The key is not checked against the store here: the ingest stage
    (:func:`trackii_eval.pipeline.stages.ingest`) refuses a mismatched key before this runs,
    and records the run.

    Parameters
    ----------
    store
        The study store (a file or ``':memory:'``).
    ctx
        The frozen study context (configuration, instrument, study folder, output folder).
    key
        The pseudonymization key; raw participant codes are HMAC-ed with it before storing.
    replace
        Allow a changed file for an already-ingested wave to replace the stored version (which
        stays in the store, inactive, and can be restored).

    Raises
    ------
    IngestError
        For a file-level problem; files before it stay ingested, the failing one changes nothing.
    """
    config, instrument = ctx.config, ctx.instrument
    outcomes, all_problems = [], []
    times = config.wave_time()
    with store.transaction():
        for w in config.waves:
            store.execute(
                "INSERT INTO waves VALUES (?, ?, ?, ?, ?) ON CONFLICT (wave) DO UPDATE SET "
                "label = excluded.label, phase = excluded.phase, date = excluded.date, "
                "time = excluded.time",
                [w.index, w.label, w.phase, w.date, times[w.index]],
            )
    linkage = link_study(ctx, key) if config.linkage.method == "sgic" else None
    # a changed link (a new decision, a new wave's records) rewrites every wave's pseudonyms
    relink = linkage is not None and store.get_meta("linkage_fingerprint") not in (
        None, linkage.fingerprint)
    for wave in config.waves:
        if wave.planned:  # declared without its file yet: shown, never blocking
            outcomes.append(FileOutcome("(planned)", wave.index, "planned", 0, 0, 0, 0))
            continue
        # the file's hash is taken before reading, so an unchanged file is not parsed again
        raw = linkage.raws[wave.index] if linkage else None
        sha = raw.sha256 if raw is not None else _file_sha(ctx.root / wave.file)
        if relink and raw is not None:
            with store.transaction():
                # by wave too: two waves may be byte-identical files (same sha256)
                for table in ("responses", "submissions", "quarantine", "files"):
                    store.execute(f"DELETE FROM {table} WHERE sha256 = ? AND wave = ?",
                                  [raw.sha256, wave.index])
        previous = store.query(
            "SELECT sha256 FROM files WHERE wave = ? AND active", [wave.index]
        )
        known = store.query("SELECT sha256 FROM files WHERE wave = ?", [wave.index])
        if sha is not None and sha in set(previous["sha256"]):
            counts = store.query(
                "SELECT rows_read, rows_stored, rows_quarantined FROM files WHERE sha256 = ? "
                "AND active", [sha]
            ).iloc[0]
            outcomes.append(FileOutcome(wave.file, wave.index, "unchanged", int(counts.iloc[0]),
                                        int(counts.iloc[1]), int(counts.iloc[2]), 0))
            continue
        if raw is None:
            raw = prepare_wave(read_wave(ctx.root, wave), wave, config, instrument)
        if len(previous) and not replace:
            raise IngestError(
                f"{wave.file}: wave {wave.index} was already ingested from a different version "
                "of this file (content changed); re-run with --replace to replace it (the old "
                "version stays in the store and can be restored)"
            )
        _check_wave_dates(raw, wave, config, instrument.participant.submitted_at)
        if linkage is not None:
            validated, pseudo = apply_links(linkage, wave.index, wave.file)
        else:
            validated = validate_wave(raw, wave, config, instrument, display_name=wave.file)
            ids = pd.Series(pd.concat(
                [validated.submissions["raw_id"], validated.attributes["raw_id"]]).unique())
            pseudo = dict(zip(ids, key.pseudonymize_many(ids), strict=True))
            validated = _check_code_links(store, validated, pseudo, wave, ctx)
        validated, attributes = wave_attributes(raw, validated, config, wave)
        sha = raw.sha256
        with store.transaction():
            if len(previous):
                store.execute("UPDATE files SET active = false WHERE wave = ?", [wave.index])
            if sha in set(known["sha256"]):  # restoring an earlier version
                store.execute("UPDATE files SET active = true WHERE sha256 = ?", [sha])
            else:
                _write_wave(store, validated, pseudo, wave.index, sha)
                store_wave_attributes(store, attributes, pseudo)
                store.append("files", pd.DataFrame([{
                    "file": wave.file, "wave": wave.index, "sha256": sha, "format": raw.format,
                    "rows_read": validated.rows_read, "rows_stored": validated.rows_stored,
                    "rows_quarantined": validated.rows_quarantined,
                    "ingested_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    "key_fingerprint": key.fingerprint, "active": True,
                }]))
                problems = validated.problems.assign(sha256=sha)
                store.append("quarantine", problems[[*PROBLEM_COLUMNS[:4], "value", "rule",
                                                     "scope", "message", "sha256"]])
            store.set_meta("key_fingerprint", key.fingerprint)
        outcomes.append(FileOutcome(
            wave.file, wave.index, "replaced" if len(previous) else "ingested",
            validated.rows_read, validated.rows_stored, validated.rows_quarantined,
            len(validated.problems),
        ))
        all_problems.append(validated.problems)
    if linkage is not None:
        with store.transaction():
            store.set_meta("linkage_fingerprint", linkage.fingerprint)
            store.replace_table("linkage", linkage.summary())
    if config.participants is not None:
        all_problems.append(apply_participant_list(store, ctx, key, linkage))
    if config.ideas:
        _ingest_ideas(store, ctx.root / config.ideas)
    if config.roster:
        code_map = None if linkage is None else linkage.code_pseudonyms
        all_problems.append(_ingest_roster(store, ctx, key, config.roster, code_map))
    problems = (pd.concat(all_problems, ignore_index=True) if all_problems
                else pd.DataFrame(columns=PROBLEM_COLUMNS))
    return IngestSummary(outcomes, problems, key.fingerprint,
                         None if linkage is None else linkage.summary(),
                         None if linkage is None else linkage.review_file,
                         open_problems=store.open_problems(), timezone=config.timezone,
                         n_listed=0 if linkage is None else len(linkage.result.listed))


def _check_wave_dates(raw: RawTable, wave: Wave, config: StudyConfig, column: str | None) -> None:
    """Refuse a file whose responses were mostly given in another wave's fielding window.

    A file exported for the wrong wave would otherwise be quarantined row by row ("outside the
    window"); saying which wave it looks like is what the evaluator needs.
    """
    dates = study_local_times(raw, config.timezone) if raw.row_meta is not None else None
    if (dates is None or dates.isna().all()) and column and column in raw.data.columns:
        dates = pd.Series([_local_or_nat(v, config.timezone) for v in raw.data[column]],
                          dtype="datetime64[ns]")
    if dates is None:
        return
    _check_dates_in_windows(dates, wave, config)


def _check_dates_in_windows(dates: pd.Series, wave: Wave, config: StudyConfig) -> None:
    """The refusal of `_check_wave_dates`, given the file's study-local response times."""
    dates = pd.to_datetime(dates, errors="coerce").dropna()
    if len(dates) < 5 or wave.window is None:
        return

    def share_in(w: Wave) -> float:
        lo, hi = pd.Timestamp(w.window[0]), pd.Timestamp(w.window[1]) + pd.Timedelta(days=1)
        return float(((dates >= lo) & (dates < hi)).mean())

    own = share_in(wave)
    if own >= 0.5:
        return
    others = {w.index: share_in(w) for w in config.waves if w.window is not None
              and w.index != wave.index}
    best = max(others, key=others.get) if others else None
    if best is not None and others[best] > 0.5:
        raise IngestError(
            f"{wave.file}: looks like the export of wave {best}, not wave {wave.index}: "
            f"{100 * others[best]:.0f}% of its responses fall in wave {best}'s window and "
            f"{100 * own:.0f}% in wave {wave.index}'s; check the file names in study.yaml"
        )


def _file_sha(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read (the reader then says why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _local_or_nat(value: object, zone: str) -> pd.Timestamp:
    try:
        return pd.NaT if value is None else to_study_time(value, zone, is_utc=False)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def _check_code_links(store: Store, validated: ValidatedWave, pseudo: dict[str, str],
                      wave: Wave, ctx: StudyContext) -> ValidatedWave:
    """Checks that stand in for the fuzzy linker where a participant code is the person.

    A record whose side, arm or dialogue contradicts what the same code said in an earlier
    wave is quarantined (rule ``conflicting_attributes``): a mistyped code that landed on
    someone else would otherwise merge two people silently. After baseline, in a study
    without late entrants, a code nobody used before is stored but reported (rule
    ``unexpected_new_code``, an open problem that ``--strict`` refuses): a mistyped code
    would otherwise split one person in two without a word.
    """
    config, cols = ctx.config, ctx.instrument.participant
    known = store.query("SELECT participant, arm, side, dialogue, first_wave FROM participants")
    known = known[known["first_wave"] != wave.index].set_index("participant")
    attrs = validated.attributes.assign(participant=validated.attributes["raw_id"].map(pseudo))
    rows = validated.submissions.groupby("raw_id")["row"].min()
    problems: list[dict[str, object]] = []
    bad: set[str] = set()
    for rec in attrs.to_dict(orient="records"):
        person = rec["participant"]
        if person not in known.index:
            continue
        for role in ("side", "arm", "dialogue"):
            new, old = rec.get(role), known.at[person, role]
            if pd.isna(new) or pd.isna(old) or str(new) == str(old):
                continue
            bad.add(rec["raw_id"])
            problems.append({"file": wave.file, "wave": wave.index,
                             "row": int(rows.get(rec["raw_id"], 0)),
                             "column": getattr(cols, role), "value": str(new)[:40],
                             "rule": Rule.conflicting_attributes.value,
                             "scope": Rule.conflicting_attributes.scope,
                             "message": f"{Rule.conflicting_attributes.description}: "
                                        f"earlier waves say {old}"})
            break
    baseline = min((w.index for w in config.fielded_waves), default=wave.index)
    if not config.linkage.late_entrants and wave.index > baseline and len(known):
        fresh = attrs[~attrs["participant"].isin(known.index) & ~attrs["raw_id"].isin(bad)]
        for raw_id in fresh["raw_id"]:
            problems.append({"file": wave.file, "wave": wave.index,
                             "row": int(rows.get(raw_id, 0)), "column": cols.id,
                             "value": mask(str(raw_id)),
                             "rule": Rule.unexpected_new_code.value,
                             "scope": Rule.unexpected_new_code.scope,
                             "message": Rule.unexpected_new_code.description})
    if not problems:
        return validated
    keep = ~validated.submissions["raw_id"].isin(bad)
    return dataclasses.replace(
        validated,
        submissions=validated.submissions[keep],
        responses=validated.responses[~validated.responses["raw_id"].isin(bad)],
        attributes=validated.attributes[~validated.attributes["raw_id"].isin(bad)],
        problems=pd.concat([validated.problems, pd.DataFrame(problems, columns=PROBLEM_COLUMNS)],
                           ignore_index=True),
        rows_quarantined=validated.rows_quarantined + int((~keep).sum()),
    )


def _write_wave(store: Store, validated: ValidatedWave, pseudo: dict[str, str], wave: int,
                sha: str) -> None:
    subs = validated.submissions.assign(
        participant=validated.submissions["raw_id"].map(pseudo), wave=wave, sha256=sha
    ).drop(columns="raw_id")
    # the file name is not identifying; rows let an evaluator find a response in their export
    subs["file"] = None
    store.append("submissions", subs)
    resp = validated.responses.assign(
        participant=validated.responses["raw_id"].map(pseudo), wave=wave, sha256=sha
    ).drop(columns="raw_id")
    store.append("responses", resp)
    attrs = validated.attributes.assign(
        participant=validated.attributes["raw_id"].map(pseudo), first_wave=wave
    ).drop(columns="raw_id")
    existing = store.query("SELECT participant FROM participants")
    new = attrs[~attrs["participant"].isin(existing["participant"])]
    store.append("participants", new[["participant", "arm", "side", "dialogue", "first_wave"]])


def _ingest_roster(store: Store, ctx: StudyContext, key: PseudonymKey, name: str,
                   code_map: dict[str, str] | None = None) -> pd.DataFrame:
    """Store who named whom as a contact, pseudonymized on both ends.

    Rows naming someone who is not a participant of the study, a wave the study does not
    have, or a strength that is not a number are quarantined with their reason.
    """
    raw = read_table(ctx.root / name)
    id_col = ctx.instrument.participant.id
    needed = ["wave", id_col, "contact_code", "strength"]
    missing = [c for c in needed if c not in raw.data.columns]
    if missing:
        raise IngestError(f"{name}: roster lacks column(s) {', '.join(missing)} "
                          f"(expected {', '.join(needed)})")
    known = set(store.query("SELECT participant FROM participants")["participant"])
    waves = {w.index for w in ctx.config.waves}
    data = raw.data
    codes = pd.concat([data[id_col], data["contact_code"]]).map(canonical_text).dropna()
    unique = pd.Series(codes.unique())
    if code_map is None:
        pseudo = dict(zip(unique, key.pseudonymize_many(unique), strict=True))
    else:  # a study linked by self-generated code: assigned codes were mapped at linkage
        pseudo = {c: code_map[c] for c in unique if c in code_map}
    who = data[id_col].map(lambda c: pseudo.get(canonical_text(c)))
    whom = data["contact_code"].map(lambda c: pseudo.get(canonical_text(c)))
    wave = pd.to_numeric(data["wave"], errors="coerce")
    strength = pd.to_numeric(data["strength"], errors="coerce")
    bad_wave = ~wave.isin(list(waves))
    bad_who = ~bad_wave & ~who.isin(known)
    bad_whom = ~bad_wave & ~bad_who & ~whom.isin(known)
    bad_strength = ~bad_wave & ~bad_who & ~bad_whom & strength.isna()
    problems = []
    for rule, column, mask_rows, show in (
        ("unknown_wave", "wave", bad_wave, lambda v: str(v)),
        ("unknown_participant", id_col, bad_who, mask),
        ("unknown_participant", "contact_code", bad_whom, mask),
        ("not_a_number", "strength", bad_strength, lambda v: str(v)[:20]),
    ):
        for pos in np.flatnonzero(mask_rows.to_numpy()):
            w = wave.iloc[pos]
            problems.append({
                "file": name, "wave": None if pd.isna(w) else int(w),
                "row": int(raw.row_numbers[pos]), "column": column,
                "value": show(data[column].iloc[pos]), "rule": rule, "scope": "row",
                "message": Rule(rule).description + (
                    ": tie strength" if rule == "not_a_number" else ""),
            })
    ok = ~(bad_wave | bad_who | bad_whom | bad_strength)
    ties = pd.DataFrame({
        "wave": wave[ok].astype(int), "participant": who[ok], "contact": whom[ok],
        "strength": strength[ok].astype(float),
    })
    frame = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
    with store.transaction():
        store.execute("DELETE FROM ties")
        store.append("ties", ties)
        store.execute("DELETE FROM quarantine WHERE file = ?", [name])
        store.append("quarantine", frame.assign(sha256=raw.sha256))
    return frame




def _ingest_ideas(store: Store, path: Path) -> None:
    raw = read_table(path, format="csv")
    frame = raw.data.rename(columns=str.strip)
    needed = ["idea_id", "dialogue", "workshop", "proposed_by", "status"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise IngestError(f"{path.name}: idea log lacks column(s) {', '.join(missing)}")
    frame = frame[needed].copy()
    frame["workshop"] = pd.to_numeric(frame["workshop"], errors="coerce").astype("Int64")
    with store.transaction():
        store.execute("DELETE FROM ideas")
        store.append("ideas", frame)
