"""Ingest: read -> validate -> pseudonymize -> link -> store, one wave file at a time.

A file-level error (unreadable file, wrong wave, changed file without ``replace``) stops that
file and changes nothing in the store; everything else is stored or quarantined with a reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..config import StudyConfig, Wave
from ..errors import IngestError
from ..store import Store
from .readers import RawTable, read_table
from .sgic import apply_links, link_study
from .validate import PROBLEM_COLUMNS, ValidatedWave, mask, validate_wave

if TYPE_CHECKING:
    from ..study import Study
    from .pseudonym import PseudonymKey

__all__ = ["FileOutcome", "IngestSummary", "ingest_study"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one wave file."""

    file: str
    wave: int
    status: str  # "ingested", "unchanged", "replaced"
    rows_read: int
    rows_stored: int
    rows_quarantined: int
    problems: int


@dataclass(frozen=True)
class IngestSummary:
    """Result of ingesting a study: per-file counts and every problem found."""

    files: list[FileOutcome]
    problems: pd.DataFrame
    key_fingerprint: str
    linkage: pd.DataFrame | None = None
    linkage_review_file: Path | None = None

    @property
    def table(self) -> pd.DataFrame:
        """Per-file counts; rows read = rows stored + rows quarantined in every row."""
        return pd.DataFrame([f.__dict__ for f in self.files])

    def problem_lines(self) -> list[str]:
        """One line per problem: ``file:row:column: rule (value)``, identifiers masked."""
        out = []
        for p in self.problems.itertuples(index=False):
            value = "" if p.value is None or pd.isna(p.value) else f" ({p.value})"
            out.append(f"{p.file}:{p.row}:{p.column}: {p.message}{value}")
        return out

    def summary(self) -> str:
        """Text for people."""
        lines = [f"{'file':32} {'wave':>4} {'status':>10} {'read':>6} {'stored':>6} "
                 f"{'quarantined':>11}"]
        for f in self.files:
            lines.append(f"{f.file:32} {f.wave:>4} {f.status:>10} {f.rows_read:>6} "
                         f"{f.rows_stored:>6} {f.rows_quarantined:>11}")
        lines.append(f"{len(self.problems)} problem(s); key fingerprint {self.key_fingerprint}")
        if self.linkage is not None:
            lines.append("linkage by self-generated code, per wave:")
            lines.append(self.linkage.to_string(index=False))
            if self.linkage_review_file is not None:
                lines.append(f"ambiguous links to decide: {self.linkage_review_file}")
        return "\n".join(lines)


def ingest_study(study: Study, key: PseudonymKey, *, replace: bool = False) -> IngestSummary:
    """Ingest every wave file of ``study`` into its store.

    Parameters
    ----------
    study
        The loaded study (configuration, instrument, store).
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
    store = study.store
    config, instrument = study.config, study.instrument
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
    linkage = link_study(study, key) if config.linkage.method == "sgic" else None
    # a changed link (a new decision, a new wave's records) rewrites every wave's pseudonyms
    relink = linkage is not None and store.get_meta("linkage_fingerprint") not in (
        None, linkage.fingerprint)
    for wave in config.waves:
        path = study.root / wave.file
        raw = linkage.raws[wave.index] if linkage else read_table(
            path, format=wave.format, sheet=wave.sheet, header_row=wave.header_row)
        if relink:
            with store.transaction():
                # by wave too: two waves may be byte-identical files (same sha256)
                for table in ("responses", "submissions", "quarantine", "files"):
                    store.execute(f"DELETE FROM {table} WHERE sha256 = ? AND wave = ?",
                                  [raw.sha256, wave.index])
        previous = store.query(
            "SELECT sha256 FROM files WHERE wave = ? AND active", [wave.index]
        )
        known = store.query("SELECT sha256 FROM files WHERE wave = ?", [wave.index])
        if raw.sha256 in set(previous["sha256"]):
            counts = store.query(
                "SELECT rows_read, rows_stored, rows_quarantined FROM files WHERE sha256 = ? "
                "AND active", [raw.sha256]
            ).iloc[0]
            outcomes.append(FileOutcome(wave.file, wave.index, "unchanged", int(counts.iloc[0]),
                                        int(counts.iloc[1]), int(counts.iloc[2]), 0))
            continue
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
        sha = raw.sha256
        with store.transaction():
            if len(previous):
                store.execute("UPDATE files SET active = false WHERE wave = ?", [wave.index])
            if sha in set(known["sha256"]):  # restoring an earlier version
                store.execute("UPDATE files SET active = true WHERE sha256 = ?", [sha])
            else:
                _write_wave(store, validated, pseudo, wave.index, sha)
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
    if config.ideas:
        _ingest_ideas(study, study.root / config.ideas)
    if config.roster:
        code_map = None if linkage is None else linkage.code_pseudonyms
        all_problems.append(_ingest_roster(study, key, config.roster, code_map))
    problems = (pd.concat(all_problems, ignore_index=True) if all_problems
                else pd.DataFrame(columns=PROBLEM_COLUMNS))
    return IngestSummary(outcomes, problems, key.fingerprint,
                         None if linkage is None else linkage.summary(),
                         None if linkage is None else linkage.review_file)


def _check_wave_dates(raw: RawTable, wave: Wave, config: StudyConfig, column: str | None) -> None:
    """Refuse a file whose responses were mostly given in another wave's fielding window.

    A file exported for the wrong wave would otherwise be quarantined row by row ("outside the
    window"); saying which wave it looks like is what the evaluator needs.
    """
    dates = raw.row_meta["submitted_at"] if raw.row_meta is not None else None
    if (dates is None or dates.isna().all()) and column and column in raw.data.columns:
        dates = pd.to_datetime(raw.data[column], errors="coerce", format="mixed")
    if dates is None:
        return
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


def _ingest_roster(study: Study, key: PseudonymKey, name: str,
                   code_map: dict[str, str] | None = None) -> pd.DataFrame:
    """Store who named whom as a contact, pseudonymized on both ends.

    Rows naming someone who is not a participant of the study, a wave the study does not
    have, or a strength that is not a number are quarantined with their reason.
    """
    raw = read_table(study.root / name)
    id_col = study.instrument.participant.id
    needed = ["wave", id_col, "contact_code", "strength"]
    missing = [c for c in needed if c not in raw.data.columns]
    if missing:
        raise IngestError(f"{name}: roster lacks column(s) {', '.join(missing)} "
                          f"(expected {', '.join(needed)})")
    known = set(study.store.query("SELECT participant FROM participants")["participant"])
    waves = {w.index for w in study.config.waves}
    data = raw.data
    codes = pd.concat([data[id_col], data["contact_code"]]).dropna().astype(str).str.strip()
    unique = pd.Series(codes.unique())
    if code_map is None:
        pseudo = dict(zip(unique, key.pseudonymize_many(unique), strict=True))
    else:  # a study linked by self-generated code: assigned codes were mapped at linkage
        pseudo = {c: code_map[c] for c in unique if c in code_map}
    who = data[id_col].map(lambda c: None if c is None else pseudo.get(str(c).strip()))
    whom = data["contact_code"].map(lambda c: None if c is None else pseudo.get(str(c).strip()))
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
                "message": _ROSTER_RULES[rule],
            })
    ok = ~(bad_wave | bad_who | bad_whom | bad_strength)
    ties = pd.DataFrame({
        "wave": wave[ok].astype(int), "participant": who[ok], "contact": whom[ok],
        "strength": strength[ok].astype(float),
    })
    frame = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
    with study.store.transaction():
        study.store.execute("DELETE FROM ties")
        study.store.append("ties", ties)
        study.store.execute("DELETE FROM quarantine WHERE file = ?", [name])
        study.store.append("quarantine", frame.assign(sha256=raw.sha256))
    return frame


_ROSTER_RULES = {
    "unknown_wave": "wave is not a wave of the study",
    "unknown_participant": "code is not a linked participant of the study (unknown, or its "
                           "records are still ambiguous: see linkage_review.csv)",
    "not_a_number": "tie strength is not a number",
}


def _ingest_ideas(study: Study, path: Path) -> None:
    raw = read_table(path, format="csv")
    frame = raw.data.rename(columns=str.strip)
    needed = ["idea_id", "dialogue", "workshop", "proposed_by", "status"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise IngestError(f"{path.name}: idea log lacks column(s) {', '.join(missing)}")
    frame = frame[needed].copy()
    frame["workshop"] = pd.to_numeric(frame["workshop"], errors="coerce").astype("Int64")
    with study.store.transaction():
        study.store.execute("DELETE FROM ideas")
        study.store.append("ideas", frame)
