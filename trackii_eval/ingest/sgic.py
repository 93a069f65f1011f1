"""Ingest with self-generated identification codes: link every wave's records, then pseudonymize.

Linking needs the raw codes of every wave at once (a typo is only a typo next to the person's
other records), so a study that links by SGIC reads and validates all its wave files first,
links them (:func:`~trackii_eval.ingest.linkage.link_records`), and only then writes. A record
left ambiguous is never guessed: its row is quarantined (rule ``ambiguous_link``) and listed in
the linkage review file next to the store, where the evaluator decides; the next ingest reads
the decisions and re-links.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .attributes import prepare_wave
from .linkage import CodeSpec, LinkageResult, link_records, read_decisions
from .readers import RawTable, read_wave
from .readers.base import canonical_text
from .validate import PROBLEM_COLUMNS, ValidatedWave, validate_wave

if TYPE_CHECKING:
    from ..pipeline.context import StudyContext
    from .pseudonym import PseudonymKey

__all__ = ["LINKAGE_REVIEW_FILE", "SgicLinkage", "link_study"]

LINKAGE_REVIEW_FILE = "linkage_review.csv"


@dataclass(frozen=True)
class SgicLinkage:
    """All waves read, validated and linked; pseudonyms per wave and row."""

    raws: dict[int, RawTable]
    validated: dict[int, ValidatedWave]
    result: LinkageResult
    pseudonyms: dict[tuple[int, int], str]  # (wave, row) -> pseudonym
    fingerprint: str  # changes when any link changes
    review_file: Path | None
    # assigned participant code -> pseudonym, where the wave files carry both (for rosters)
    code_pseudonyms: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per wave: records linked exactly, fuzzily, by decision, new, ambiguous (quarantined),
        possible matches stored as new, and ``new_unexpected``: records that look like new
        people after baseline although the study declares no late entrants."""
        # Short names: the table is printed on an 80-column terminal.
        return self.result.per_wave.drop(columns="linked_share").rename(columns={
            "possible_match": "possible", "new_unexpected": "unexpected"})


def link_study(ctx: StudyContext, key: PseudonymKey) -> SgicLinkage:
    """Read, validate and link every wave of an SGIC study (nothing is written to the store).

    ``ctx`` is the frozen study context (or anything with its ``config``, ``instrument``,
    ``root`` and ``out``).
    """
    config, instrument = ctx.config, ctx.instrument
    spec = CodeSpec.from_config([e.model_dump() for e in config.linkage.elements])
    raws, validated, records = {}, {}, []
    for wave in config.fielded_waves:  # planned waves (no file yet) wait
        raw = prepare_wave(read_wave(ctx.root, wave), wave, config, instrument)
        checked = validate_wave(raw, wave, config, instrument, display_name=wave.file,
                                id_column=config.linkage.column)
        raws[wave.index], validated[wave.index] = raw, checked
        subs = checked.submissions.merge(checked.attributes, on="raw_id", how="left")
        for row in subs.itertuples(index=False):
            records.append({
                "record_id": f"{wave.file}:row {row.row}", "wave": wave.index,
                "code": row.raw_id, "side": row.side or "(none)", "dialogue": row.dialogue,
            })
    frame = pd.DataFrame(records, columns=["record_id", "wave", "code", "side", "dialogue"])
    review_path = ctx.out / LINKAGE_REVIEW_FILE
    decisions = read_decisions(review_path) if review_path.exists() else None
    result = link_records(frame, spec, decisions=decisions,
                          review_possible_matches=config.linkage.review_possible_matches,
                          late_entrants=config.linkage.late_entrants)
    persons = result.person.dropna()
    unique = pd.Series(persons.unique())
    hashed = dict(zip(unique, key.pseudonymize_many(unique, namespace="linkage-person"),
                      strict=True))
    row_of = {r["record_id"]: (r["wave"], int(r["record_id"].rsplit(" ", 1)[1]))
              for r in records}
    pseudonyms = {row_of[rid]: hashed[p] for rid, p in persons.items()}
    fingerprint = hashlib.sha256(
        "\n".join(f"{w}:{r}:{p}" for (w, r), p in sorted(pseudonyms.items())).encode()
    ).hexdigest()
    code_pseudonyms = _code_pseudonyms(ctx, raws, pseudonyms)
    review_file = None
    if len(result.ambiguous) or len(result.decisions) or len(result.listed):
        review_file = result.to_review_file(
            review_path, lambda k: key.pseudonymize(k, namespace="linkage-person"),
            overwrite=True,
        )
    elif review_path.exists():
        review_path.unlink()
    return SgicLinkage(raws, validated, result, pseudonyms, fingerprint, review_file,
                       code_pseudonyms)


def _code_pseudonyms(ctx: StudyContext, raws: dict[int, RawTable],
                     pseudonyms: dict[tuple[int, int], str]) -> dict[str, str]:
    """Assigned codes whose every linked record agrees on one person (others are dropped)."""
    column = ctx.instrument.participant.id
    seen: dict[str, set[str]] = {}
    for wave, raw in raws.items():
        if column not in raw.data.columns:
            continue
        for code, row in zip(raw.data[column], raw.row_numbers, strict=True):
            person = pseudonyms.get((wave, int(row)))
            text = canonical_text(code)  # the roster's codes use the same canonical form
            if person is not None and text:
                seen.setdefault(text, set()).add(person)
    return {code: next(iter(p)) for code, p in seen.items() if len(p) == 1}


def apply_links(linkage: SgicLinkage, wave: int, display_name: str
                ) -> tuple[ValidatedWave, dict[str, str]]:
    """Quarantine the wave's ambiguous records and map its raw codes to pseudonyms."""
    checked = linkage.validated[wave]
    subs = checked.submissions
    linked = [(wave, int(r)) in linkage.pseudonyms for r in subs["row"]]
    ambiguous = subs[[not x for x in linked]]
    pseudo = {
        raw_id: linkage.pseudonyms[(wave, int(row))]
        for raw_id, row in zip(subs["raw_id"], subs["row"], strict=True)
        if (wave, int(row)) in linkage.pseudonyms
    }
    if ambiguous.empty:
        return checked, pseudo
    reasons = linkage.result.ambiguous.set_index("record_id")["reason"]
    problems: list[dict[str, Any]] = []
    for row in ambiguous["row"]:
        reason = reasons.get(f"{display_name}:row {row}", "unresolved")
        problems.append({
            "file": display_name, "wave": wave, "row": int(row), "column": "(linkage)",
            "value": None, "rule": "ambiguous_link", "scope": "row",
            "message": f"participant could not be linked without guessing ({reason}); decide "
                       f"in {LINKAGE_REVIEW_FILE} next to the store and ingest again",
        })
    drop = set(ambiguous["raw_id"])
    return dataclasses.replace(
        checked,
        submissions=subs[~subs["raw_id"].isin(drop)],
        attributes=checked.attributes[~checked.attributes["raw_id"].isin(drop)],
        responses=checked.responses[~checked.responses["raw_id"].isin(drop)],
        problems=pd.concat([checked.problems, pd.DataFrame(problems, columns=PROBLEM_COLUMNS)],
                           ignore_index=True),
        rows_quarantined=checked.rows_quarantined + len(ambiguous),
    ), pseudo
