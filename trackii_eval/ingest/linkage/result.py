"""The outcome of a linkage run, the evaluator's review file and decisions."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import IngestError

#: Why a record was left for the evaluator (``reason`` in ``ambiguous`` and ``listed``).
AMBIGUITY_REASONS: dict[str, str] = {
    "malformed_code": "the code cannot be split into the declared elements",
    "tied_candidates": "two or more earlier persons gave exactly this code; linking would "
    "merge them or pick one at random",
    "several_candidates": "no one gave exactly this code, and two or more earlier persons are "
    "within one element of it (listed nearest first)",
    "near_unresolved": "an earlier record still waiting for review has this code or one "
    "within one element of it: decide that record first",
    "near_neighbour": "the code is a person's exact code, but another person within one "
    "element of it is not accounted for by any other record of this wave, so the record may "
    "be that person's mistyped answer",
    "shared_code": "the person's exact code, but two records of one earlier wave both typed "
    "it: two people may use this code",
    "same_wave_conflict": "another record of the same wave claims the same person (a person "
    "answers a wave once)",
    "common_code": "the code agrees with the candidate only on values so common in this "
    "side/dialogue that another person could share them by chance",
    "slip_or_newcomer": "one earlier person is within one element, by more than a slip, and "
    "the study has late entrants (linkage.late_entrants: true): a newcomer or that person",
    "possible_match": "stored as a new person although an earlier person is within one "
    "element (review_possible_matches is false); write a record ID to link it",
    "possible_split": "stored as a new person (the study has late entrants), but an earlier "
    "person is within two elements: a newcomer, or that person typed with two errors; write "
    "a record ID to link it, or 'new'",
    "unexpected_new": "stored as a new person after baseline although the study declares no "
    "late entrants (linkage.late_entrants: false); write a record ID to link it, or 'new'",
}

#: Columns of the evaluator's review file (:meth:`LinkageResult.to_review_file`).
REVIEW_COLUMNS = [
    "record_id", "wave", "reason", "explanation", "differing_element", "candidates",
    "candidate_persons", "decision",
]
_NEW = "new"
# Joins lists inside one CSV cell; record IDs of the form "wave3.csv:row 17" never contain it.
_LIST_SEP = " ; "

# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, repr=False, eq=False)
class LinkageResult:
    """The outcome of :func:`link_records`. Every record is in exactly one of: linked
    (``links.method`` in exact/fuzzy/decision), new (``links.method == "new"``) or ambiguous
    (quarantined for review). New records may also be *listed* for review.

    Attributes
    ----------
    person
        record_id -> person key (``<NA>`` for ambiguous records). Person keys contain the
        normalised code: HMAC them before showing or storing them.
    links
        One row per non-ambiguous record: ``record_id``, ``wave``, ``person``, ``method``
        (exact, fuzzy, decision, new), ``matched_element`` (the element that differed, for
        fuzzy links), ``matched_record`` (the earliest record of the person with the code
        that matched, or the record named by a decision) and ``decided`` (an evaluator
        decision made it so).
    ambiguous
        One row per record left for the evaluator: ``record_id``, ``wave``, ``reason`` (a key
        of :data:`AMBIGUITY_REASONS`), ``candidates`` (tuple of record IDs, one per candidate
        person), ``candidate_persons`` (their person keys; ``None`` for an unresolved record
        of an earlier wave), ``differing_elements`` (tuple of element names, ``None`` where
        the code agrees exactly).
    stats
        Counts: ``n_records``, ``n_persons``, ``n_exact``, ``n_fuzzy``, ``n_decision``,
        ``n_new``, ``n_ambiguous``, ``n_listed``, ``n_new_unexpected``, ``n_singletons``
        (persons with one record),
        ``n_baseline_persons``, ``n_decided`` (records settled by an evaluator decision, as a
        link or as a new person) and ``match_rate_by_wave`` (wave -> share of baseline
        persons linked to a record of that wave).
    per_wave
        The same per wave: records, exact, fuzzy, decision, new, ambiguous,
        ``possible_match`` (stored as new but listed, see ``review_possible_matches``),
        ``new_unexpected`` (new persons after baseline in a study without late entrants),
        ``linked_share`` (linked records / records) and ``match_rate`` (relative to baseline
        persons).
    decisions
        The evaluator decisions that were applied (``record_id``, ``decision``, ``source``).
    element_names
        Names of the code elements (empty for participant-ID linkage).
    listed
        Records stored as new persons but listed in the review file, with the columns of
        ``ambiguous`` and ``held_for`` (the reason it would have been quarantined, for
        ``possible_match``).

    References
    ----------
    .. [1] Christen, P. (2012). Data Matching, ch. 7 (measuring quality, clerical review).
       Springer. https://doi.org/10.1007/978-3-642-31164-2
    """

    person: pd.Series
    links: pd.DataFrame
    ambiguous: pd.DataFrame
    stats: dict[str, Any]
    per_wave: pd.DataFrame
    decisions: pd.DataFrame
    element_names: tuple[str, ...] = field(default=())
    listed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["record_id", "wave", "reason", "candidates", "candidate_persons",
                 "differing_elements", "held_for"]))

    def __repr__(self) -> str:
        # Deliberately no data: person keys contain code material.
        s = self.stats
        return (
            f"LinkageResult(records={s['n_records']}, persons={s['n_persons']}, "
            f"exact={s['n_exact']}, fuzzy={s['n_fuzzy']}, decision={s['n_decision']}, "
            f"new={s['n_new']}, ambiguous={s['n_ambiguous']})"
        )

    __str__ = __repr__

    def with_pseudonyms(self, pseudonymize: Callable[[str], str]) -> LinkageResult:
        """Return a copy whose person keys are replaced by ``pseudonymize(key)``.

        Parameters
        ----------
        pseudonymize
            Typically ``functools.partial(key.pseudonymize, namespace="linkage-person")``.

        Returns
        -------
        LinkageResult
            The same result with pseudonymous person keys everywhere.

        References
        ----------
        .. [1] ISO/IEC 20889:2018, pseudonymization with keyed cryptographic hash functions.
        """
        mapping: dict[str, str] = {}

        def pseudo(key: object) -> object:
            if not isinstance(key, str):
                return key
            if key not in mapping:
                mapping[key] = pseudonymize(key)
            return mapping[key]

        person = self.person.map(pseudo)
        links = self.links.assign(person=self.links["person"].map(pseudo))
        amb = self.ambiguous.assign(
            candidate_persons=self.ambiguous["candidate_persons"].map(
                lambda keys: tuple(pseudo(k) for k in keys)
            )
        )
        listed = self.listed.assign(
            candidate_persons=self.listed["candidate_persons"].map(
                lambda keys: tuple(pseudo(k) for k in keys)
            )
        )
        return LinkageResult(
            person, links, amb, self.stats, self.per_wave, self.decisions, self.element_names,
            listed,
        )

    def review_table(self, pseudonymize: Callable[[str], str]) -> pd.DataFrame:
        """The rows :meth:`to_review_file` writes (ambiguous first, then applied decisions).

        Parameters
        ----------
        pseudonymize
            Maps a person key to a pseudonym; applied to every person shown.

        Returns
        -------
        pandas.DataFrame
            Columns as in :data:`REVIEW_COLUMNS`.

        References
        ----------
        .. [1] Christen, P. (2012). Data Matching, ch. 7 (clerical review). Springer.
        """
        rows = []
        # Quarantined records first, then records stored but listed (possible matches and
        # unexpected new persons): every row an evaluator can act on.
        for a in itertools.chain(self.ambiguous.itertuples(index=False),
                                 self.listed.itertuples(index=False)):
            # One entry per candidate, in the same order in every list column. Element NAMES
            # only: a value would be part of someone's code.
            differing = [
                "(unresolved record)" if k is None else "(none: same code)" if e is None else e
                for e, k in zip(a.differing_elements, a.candidate_persons, strict=True)
            ]
            rows.append({
                "record_id": a.record_id,
                "wave": a.wave,
                "reason": a.reason,
                "explanation": AMBIGUITY_REASONS[a.reason],
                "differing_element": _LIST_SEP.join(differing),
                "candidates": _LIST_SEP.join(a.candidates),
                "candidate_persons": _LIST_SEP.join(
                    "(none yet)" if k is None else pseudonymize(k) for k in a.candidate_persons
                ),
                "decision": "",
            })
        by_record = self.links.set_index("record_id")
        for d in self.decisions.itertuples(index=False):
            person = by_record["person"].get(d.record_id)
            rows.append({
                "record_id": d.record_id,
                "wave": by_record["wave"].get(d.record_id),
                "reason": "decided",
                "explanation": "decided by the evaluator; kept so that re-runs apply it again",
                "differing_element": "",
                "candidates": "" if d.decision == _NEW else d.decision,
                "candidate_persons": pseudonymize(person) if isinstance(person, str) else "",
                "decision": d.decision,
            })
        return pd.DataFrame(rows, columns=REVIEW_COLUMNS)

    def to_review_file(
        self,
        path: str | os.PathLike[str],
        pseudonymize: Callable[[str], str],
        *,
        overwrite: bool = False,
    ) -> Path:
        """Write the evaluator's linkage file: ambiguous records plus decisions already made.

        One row per ambiguous record: its ``record_id`` and ``wave``, the ``reason`` (with an
        ``explanation``), the NAME of the element that differs from each candidate (never a
        value), the candidates' record IDs and pseudonymous person keys, and an empty
        ``decision`` column for the evaluator to fill with ``new`` or one candidate's record
        ID. Decisions applied in this run are written back (reason ``decided``) so that
        regenerating the file never loses them. The file is written atomically.

        Parameters
        ----------
        path
            The CSV to write (UTF-8 with a byte-order mark so spreadsheet programs open it
            correctly).
        pseudonymize
            Maps a person key to a pseudonym (person keys contain code material).
        overwrite
            Discard decisions in an existing file at ``path`` that were not applied in this
            run. Without it such a file is refused, so that an evaluator's work is never lost.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        IngestError
            If ``path`` holds decisions this run did not apply (and ``overwrite`` is false).

        References
        ----------
        .. [1] Christen, P. (2012). Data Matching, ch. 7 (clerical review). Springer.
        """
        target = Path(path)
        if target.exists() and not overwrite:
            existing = read_decisions(target)
            applied = dict(zip(self.decisions["record_id"], self.decisions["decision"],
                               strict=True))
            lost = [
                s for r, d, s in existing[["record_id", "decision", "source"]].itertuples(
                    index=False)
                if applied.get(r) != d
            ]
            if lost:
                raise IngestError(
                    f"{target}: holds {len(lost)} decision(s) not applied in this linkage run "
                    f"({', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}); re-run the "
                    "linkage with these decisions first, or pass overwrite=True to discard them"
                )
        table = self.review_table(pseudonymize)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".review-", suffix=".csv", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as fh:
                table.to_csv(fh, index=False)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target


# ----------------------------------------------------------------------------- decisions


def read_decisions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read evaluator decisions from a review file written by :meth:`LinkageResult.to_review_file`.

    Rows with an empty ``decision`` are undecided and skipped. A decision is ``new`` (any
    case) or the record ID of the record to link to. Row numbers in messages count the header
    as row 1, as a spreadsheet shows them.

    Parameters
    ----------
    path
        The review CSV (other columns are ignored; ``record_id`` and ``decision`` are required).

    Returns
    -------
    pandas.DataFrame
        ``record_id``, ``decision`` and ``source`` (``"<file>:row <n>"``), one row per decided
        record.

    Raises
    ------
    IngestError
        If the file is missing or unreadable, a required column is missing, a decided row has
        no record ID, a record is linked to itself, or one record has two different decisions;
        the message names the file, the row and the column.

    References
    ----------
    .. [1] Christen, P. (2012). Data Matching, ch. 7 (clerical review). Springer.
    """
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise IngestError(f"{p}: the linkage decisions file does not exist")
    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise IngestError(f"{p}: cannot read the linkage decisions file as CSV ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("record_id", "decision") if c not in frame.columns]
    if missing:
        raise IngestError(
            f"{name}: missing column(s) {', '.join(missing)} (columns found: "
            f"{', '.join(frame.columns)})"
        )
    out: list[dict[str, str]] = []
    seen: dict[str, tuple[str, str]] = {}
    for i, (record, decision) in enumerate(
        zip(frame["record_id"], frame["decision"], strict=True)
    ):
        source = f"{name}:row {i + 2}"
        record, decision = record.strip(), decision.strip()
        if not decision:
            continue
        if not record:
            raise IngestError(f"{source}: column record_id is empty but a decision is given")
        if decision.casefold() == _NEW:
            decision = _NEW
        elif decision == record:
            raise IngestError(
                f"{source}: column decision links record '{record}' to itself; write 'new' or "
                "the record ID of one candidate"
            )
        if record in seen and seen[record][0] != decision:
            raise IngestError(
                f"{source}: column decision contradicts {seen[record][1]} for record "
                f"'{record}'; keep one decision per record"
            )
        if record not in seen:
            seen[record] = (decision, source)
            out.append({"record_id": record, "decision": decision, "source": source})
    return pd.DataFrame(out, columns=["record_id", "decision", "source"])

