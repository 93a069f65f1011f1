"""The linking algorithm (see the package docstring for the deciding rule)."""

from __future__ import annotations

import gc
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...errors import IngestError
from ..pseudonym import normalise_id
from .codes import CodeElement, CodeSpec, _digits_close, _within_one_edit
from .result import _NEW, LinkageResult

# ----------------------------------------------------------------------------- linking


class _Persons:
    """Persons formed so far, with hash indexes for exact and one-element-masked codes.

    Index keys are strings built once per distinct (block, code), so Python caches their
    hashes. Every code a person has given is indexed (their own slips included): a later
    record near any of them is near the person.
    """

    def __init__(self, n_elements: int) -> None:
        self.n_elements = n_elements
        self.key: list[str] = []
        # exact key -> {person: earliest record index with that code}
        self.exact: dict[str, dict[int, int]] = defaultdict(dict)
        # masked key -> {(person, value of the masked element): earliest record index}
        self.masked: dict[str, dict[tuple[int, str], int]] = defaultdict(dict)
        self.counts: list[list[dict[str, int]]] = []
        self.codes: list[set[str]] = []  # exact keys of the person's codes
        self.n_records: list[int] = []
        self.key_count: dict[str, int] = defaultdict(int)

    def new(self, base: tuple[str, ...]) -> int:
        # JSON array text: unambiguous whatever the side, dialogue or code contain.
        head = "[" + ",".join(_json_str(x) for x in base)
        self.key_count[head] += 1
        self.key.append(f"{head},{self.key_count[head]}]")
        self.counts.append([{} for _ in range(self.n_elements)])
        self.codes.append(set())
        self.n_records.append(0)
        return len(self.key) - 1

    def add_code(self, person: int, code: tuple[str, ...] | None, keys: _Keys | None,
                 rec: int) -> None:
        if code is None or keys is None:
            return
        self.n_records[person] += 1
        counts = self.counts[person]
        for j, v in enumerate(code):
            counts[j][v] = counts[j].get(v, 0) + 1
        known = self.codes[person]
        if keys.exact not in known:
            # Index a code the first time the person gives it (most people repeat theirs);
            # the record kept is the earliest with that code.
            known.add(keys.exact)
            self.exact[keys.exact][person] = rec
            for i, mkey in enumerate(keys.masked):
                self.masked[mkey][(person, code[i])] = rec


_json_str = json.encoder.encode_basestring  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Keys:
    exact: str
    masked: tuple[str, ...]


def _validate_records(records: pd.DataFrame) -> pd.DataFrame:
    required = ["record_id", "wave", "code", "side"]
    missing = [c for c in required if c not in records.columns]
    if missing:
        raise IngestError(f"linkage input: missing column(s) {', '.join(missing)}")
    frame = records.reset_index(drop=True)
    rid = frame["record_id"].tolist()
    bad = [i for i, v in enumerate(rid) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise IngestError(
            "linkage input: column record_id is empty or not text in row(s) "
            + ", ".join(str(i) for i in bad[:10])
        )
    if len(set(rid)) != len(rid):
        seen: set[str] = set()
        dup = sorted({v for v in rid if v in seen or seen.add(v)})  # type: ignore[func-returns-value]
        raise IngestError(
            "linkage input: column record_id must be unique; repeated: " + ", ".join(dup[:10])
        )
    waves = pd.to_numeric(frame["wave"], errors="coerce").to_numpy(dtype=float)
    bad_wave = [r for r, w in zip(rid, waves, strict=True) if not np.isfinite(w) or w != int(w)]
    if bad_wave:
        raise IngestError(
            "linkage input: column wave must be an integer; bad for record(s) "
            + ", ".join(bad_wave[:10])
        )
    sides = frame["side"].tolist()
    bad_side = [
        r for r, x in zip(rid, sides, strict=True) if not isinstance(x, str) or not x.strip()
    ]
    if bad_side:
        raise IngestError(
            "linkage input: column side is empty for record(s) " + ", ".join(bad_side[:10])
        )
    dialogues = frame["dialogue"].tolist() if "dialogue" in frame.columns else [None] * len(rid)
    # Few distinct sides and dialogues: normalise each once.
    norm = {v: normalise_id(v) for v in {*sides, *(d for d in dialogues if isinstance(d, str))}}
    return pd.DataFrame({
        "record_id": np.array(rid, dtype=object),
        "wave": waves.astype(np.int64),
        "code": frame["code"].to_numpy(dtype=object),
        "side": np.array([norm[x] for x in sides], dtype=object),
        "dialogue": np.array(
            [norm[d] if isinstance(d, str) else "" for d in dialogues], dtype=object
        ),
    })


def _prepare_decisions(
    decisions: pd.DataFrame | None, rec_index: dict[str, int], waves: np.ndarray,
    sides: list[str],
) -> tuple[dict[int, str], dict[int, list[tuple[int, str]]], pd.DataFrame]:
    """Turn decisions into per-record constraints.

    Returns ``forced_new`` (record -> source), ``forced_links`` (record -> [(earlier record,
    source)]) and the applied decisions.
    """
    empty = pd.DataFrame(columns=["record_id", "decision", "source"])
    if decisions is None or len(decisions) == 0:
        return {}, {}, empty
    missing = [c for c in ("record_id", "decision") if c not in decisions.columns]
    if missing:
        raise IngestError(f"decisions: missing column(s) {', '.join(missing)}")
    frame = decisions.reset_index(drop=True)
    sources = (
        frame["source"].astype(str).tolist() if "source" in frame.columns
        else [f"decisions row {i + 1}" for i in range(len(frame))]
    )
    forced_new: dict[int, str] = {}
    forced_links: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for record, decision, source in zip(frame["record_id"], frame["decision"], sources,
                                        strict=True):
        record, decision = str(record).strip(), str(decision).strip()
        if record not in rec_index:
            raise IngestError(
                f"{source}: column record_id: record '{record}' is not among the records being "
                "linked (was its wave file changed or removed?)"
            )
        r = rec_index[record]
        if decision.casefold() == _NEW:
            forced_new[r] = source
            continue
        if decision not in rec_index:
            raise IngestError(
                f"{source}: column decision: '{decision}' is neither 'new' nor a known record ID"
            )
        t = rec_index[decision]
        if t == r:
            raise IngestError(f"{source}: column decision links record '{record}' to itself")
        if waves[t] == waves[r]:
            raise IngestError(
                f"{source}: column decision links two records of wave {waves[r]} ('{record}' and "
                f"'{decision}'); a person answers a wave once"
            )
        if sides[t] != sides[r]:
            raise IngestError(
                f"{source}: column decision links records from different sides ('{record}' and "
                f"'{decision}'); a person does not change side"
            )
        # The later record follows the earlier one, whichever of the two carries the decision.
        later, earlier = (r, t) if waves[r] > waves[t] else (t, r)
        forced_links[later].append((earlier, source))
    clash = [r for r in forced_new if r in forced_links]
    if clash:
        r = clash[0]
        raise IngestError(
            f"{forced_new[r]} and {forced_links[r][0][1]}: column decision: a record cannot be "
            "both a new person and linked to an earlier record"
        )
    applied = frame.assign(source=sources)[["record_id", "decision", "source"]].copy()
    applied["record_id"] = applied["record_id"].astype(str).str.strip()
    applied["decision"] = [
        _NEW if str(d).strip().casefold() == _NEW else str(d).strip() for d in applied["decision"]
    ]
    return forced_new, dict(forced_links), applied

def link_records(
    records: pd.DataFrame,
    spec: CodeSpec | Iterable[CodeElement | Mapping[str, Any] | Sequence[Any]] | None = None,
    *,
    decisions: pd.DataFrame | None = None,
    fuzzy: bool = True,
    review_possible_matches: bool = True,
    late_entrants: bool = True,
    max_chance_agreement: float = 0.05,
) -> LinkageResult:
    """Link records of the same person across waves.

    The deciding rule is in the docstring of :mod:`trackii_eval.ingest.linkage`. In short,
    against the persons of earlier waves in the record's side and dialogue: an exact code is
    linked to its one person; otherwise the one person within one element (any difference in
    that element) is linked; no one within one element makes a new person; everything else
    goes to review.

    Parameters
    ----------
    records
        Columns ``record_id`` (unique opaque text such as ``"wave3.csv:row 17"``), ``wave``
        (int), ``code`` (the raw code or participant ID), ``side`` (text) and optionally
        ``dialogue`` (text or missing; records without a dialogue form their own block per
        side).
    spec
        The self-generated code's declared elements; ``None`` means ``code`` is an assigned
        participant ID, matched exactly after :func:`~trackii_eval.ingest.pseudonym.normalise_id`
        (no fuzzy matching: an assigned ID with a typo is another ID).
    decisions
        Evaluator decisions as returned by :func:`read_decisions`.
    fuzzy
        Link codes that differ from one person's in one element. ``False``: exact matches
        only (records near a person are then still never new persons without a review line).
    review_possible_matches
        ``True`` (the safe default): a record with an earlier person within one element that
        cannot be linked without guessing is quarantined for review. ``False``: such a record
        is stored as a new person and listed (reason ``possible_match``) in the review file,
        and an exact match is not held back for an absent near neighbour.
    late_entrants
        Whether people may join after the baseline wave. If not, every record after baseline
        that becomes a new person is listed (reason ``unexpected_new``) and counted per wave
        in ``per_wave["new_unexpected"]``.
    max_chance_agreement
        With ``late_entrants``: largest acceptable expected number of *other* persons of the
        block who would agree with the record as well as its candidate does, by chance (from
        value frequencies over the block's records so far, as in frequency-based
        Fellegi-Sunter matching); ``inf`` turns the check off. Without late entrants every
        person who could agree is known and already a candidate, so no check is needed.

    Returns
    -------
    LinkageResult
        Links, records for review, records listed and statistics.

    Raises
    ------
    IngestError
        For malformed input (missing columns, duplicate or empty record IDs, non-integer
        waves, missing sides) and for decisions that refer to unknown records, contradict
        each other or break the one-record-per-wave rule; messages name the decision's file
        and row.

    References
    ----------
    .. [1] Schnell, R., Bachteler, T. and Reiher, J. (2010). Improving the use of
       self-generated identification codes. Evaluation Review 34(5), 391-418.
    .. [2] Christen, P. (2012). Data Matching. Springer (blocking, ch. 4; clerical review,
       ch. 7).
    """
    if spec is not None and not isinstance(spec, CodeSpec):
        spec = CodeSpec.from_config(spec)
    # Linking allocates hundreds of thousands of small dicts and tuples, none in reference
    # cycles; the cyclic garbage collector would rescan them over and over for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _link(records, spec, decisions, fuzzy, review_possible_matches, late_entrants,
                     max_chance_agreement)
    finally:
        if gc_was_enabled:
            gc.enable()


Ring = dict[int, tuple[int | None, int]]


def _link(
    records: pd.DataFrame, spec: CodeSpec | None, decisions: pd.DataFrame | None,
    fuzzy_on: bool, review: bool, late_entrants: bool, max_chance_agreement: float,
) -> LinkageResult:
    frame = _validate_records(records)
    n = len(frame)
    rids: list[str] = frame["record_id"].tolist()
    waves = frame["wave"].to_numpy()
    sides: list[str] = frame["side"].tolist()
    raw_codes: list[object] = frame["code"].tolist()
    blocks = list(zip(sides, frame["dialogue"].tolist(), strict=True))
    block_id: dict[tuple[str, str], int] = {}
    bids = [block_id.setdefault(b, len(block_id)) for b in blocks]
    # Parse each distinct raw code once: most people give the same code at every wave.
    parsed: dict[object, tuple[str, ...] | None] = {}
    if spec is None:
        n_el, names = 1, ()
        fuzzy_on = False

        def parse(c: object) -> tuple[str, ...] | None:
            return (normalise_id(c),) if isinstance(c, str) and normalise_id(c) else None
    else:
        n_el, names = len(spec.elements), tuple(spec.names)
        parse = spec.parse
    codes = [
        parsed[c] if c in parsed else parsed.setdefault(c, parse(c))
        if isinstance(c, str) else None
        for c in raw_codes
    ]
    key_cache: dict[tuple[int, tuple[str, ...]], _Keys] = {}

    def make_keys(bid: int, code: tuple[str, ...]) -> _Keys:
        head = f"{bid}\x1f"
        masked = tuple(
            f"{head}{i}\x1f" + "\x1e".join((*code[:i], "", *code[i + 1 :]))
            for i in range(n_el)
        ) if n_el > 1 else ()
        return _Keys(head + "\x1e".join(code), masked)

    keys: list[_Keys | None] = [
        None if code is None
        else key_cache[(bid, code)] if (bid, code) in key_cache
        else key_cache.setdefault((bid, code), make_keys(bid, code))
        for bid, code in zip(bids, codes, strict=True)
    ]
    # What one slip is, per element kind: only used to RANK candidates and to weigh chance
    # agreement, never to exclude the only candidate.
    slip: list[Callable[[str, str], bool]] = [
        _digits_close if e.kind == "digits" else _within_one_edit
        for e in (spec.elements if spec is not None else ())
    ]
    rec_index = {r: i for i, r in enumerate(rids)}
    forced_new, forced_links, applied = _prepare_decisions(decisions, rec_index, waves, sides)

    persons = _Persons(n_el)
    person_of = np.full(n, -1, dtype=np.int64)
    method: list[str | None] = [None] * n
    matched_el: list[str | None] = [None] * n
    matched_rec: list[str | None] = [None] * n
    decided = np.zeros(n, dtype=bool)
    ambiguous: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    # Unresolved records of earlier waves, indexed like persons: a record without an exact
    # match that is near one of them may be the same person, so it is not linked past them.
    pending_exact: dict[str, list[int]] = defaultdict(list)
    pending_masked: dict[str, list[int]] = defaultdict(list)
    # Codes typed by two records of one wave that both matched a person exactly: two people
    # may use that code, so a later exact match on it is not made alone.
    shared_codes: dict[str, list[int]] = defaultdict(list)
    # With late entrants: persons indexed by their codes with two elements masked, to list
    # new records that may be a person split off by two errors (``possible_split``).
    two_masked: dict[tuple[Any, ...], dict[int, int]] = defaultdict(dict)

    def _two_masked(code: tuple[str, ...], bid: int) -> list[tuple[Any, ...]]:
        return [(bid, i, j, *(v for k, v in enumerate(code) if k not in (i, j)))
                for i in range(len(code)) for j in range(i + 1, len(code))]

    def base_key(r: int) -> tuple[str, str, str]:
        code, raw = codes[r], raw_codes[r]
        if code is not None:
            canonical = "".join(code)
        else:  # a malformed code made a person by decision; "?" keeps it apart
            canonical = "?" + (normalise_id(raw) if isinstance(raw, str) else "")
        return (*blocks[r], canonical)

    def candidates(r: int) -> tuple[dict[int, int], Ring, list[int], set[int]]:
        """Earlier persons and unresolved records within one element of record ``r``.

        ``exact``: person -> record, the person has given this very code. ``near``: person ->
        (element, record), another person whose code differs from this one in one element
        (a slip-sized difference preferred where the person has several codes). ``pend``:
        unresolved records of earlier waves with this code or one element from it.
        ``slipped``: the persons of ``near`` one slip away (see :mod:`.codes`).
        """
        code, k = codes[r], keys[r]
        exact = dict(persons.exact.get(k.exact, {}))
        near: Ring = {}
        slipped: set[int] = set()
        pend = list(pending_exact.get(k.exact, ()))
        for i, mkey in enumerate(k.masked):
            pend.extend(pending_masked.get(mkey, ()))
            hit = persons.masked.get(mkey)
            if not hit:
                continue
            mine = code[i]
            for (p, value), rec in hit.items():
                if value == mine or p in exact or p in slipped:
                    continue
                if slip[i](value, mine):
                    slipped.add(p)
                    near[p] = (i, rec)
                elif p not in near:
                    near[p] = (i, rec)
        # Rank: persons one slip away first (keyboard rules order candidates, never
        # exclude one).
        near = dict(sorted(near.items(), key=lambda kv: (kv[0] not in slipped, kv[0])))
        return exact, near, sorted(set(pend)), slipped

    # Value frequencies per block and element over the records of waves up to the current
    # one (never later waves, so adding a wave does not change how earlier waves linked).
    value_counts: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    block_records: dict[int, int] = defaultdict(int)
    block_persons: dict[int, int] = defaultdict(int)
    block_wave: dict[int, int] = defaultdict(int)

    def chance(r: int, skip: int | None, p: int) -> float:
        """Expected number of persons other than ``p`` agreeing with record ``r`` by chance.

        Agreement means every element but ``skip`` equal (and ``skip`` as close as ``p``'s:
        one slip, or merely different). Value-specific frequencies over the block's records
        so far, leaving out ``r`` and ``p``'s own records, make agreement on rare values
        strong evidence and on common values weak evidence (Winkler 1989).
        """
        bid, code = bids[r], codes[r]
        own = persons.counts[p]
        total = block_records[bid] - 1 - persons.n_records[p]
        if total <= 0:
            return 0.0
        e = float(max(block_persons[bid] - 1, block_wave[bid] - 1, 0))
        for j, v in enumerate(code):
            if j != skip:
                k = value_counts[(bid, j)].get(v, 0) - 1 - own[j].get(v, 0)
                e *= max(k, 0) / total
        if skip is None or e <= max_chance_agreement:
            return e  # the share for the differing element is at most 1
        v = code[skip]
        close = slip[skip] if any(slip[skip](u, v) for u in own[skip] if u != v) else None
        k = sum(c for u, c in value_counts[(bid, skip)].items()
                if u != v and (close is None or close(u, v)))
        k -= sum(c for u, c in own[skip].items() if u != v and (close is None or close(u, v)))
        return e * max(k, 0) / total

    def hold(r: int, reason: str, ex: Mapping[int, int] | None = None,
             fz: Ring | None = None, pend: Sequence[int] = (), *,
             may_store: bool = True) -> None:
        """Quarantine ``r`` for review, or (review off and ``may_store``) store and list it."""
        row = _amb(r, reason, ex or {}, fz or {}, rids, waves, persons, names, pend)
        if review or not may_store:
            ambiguous.append(row)
            wave_held.append(r)
        else:
            listed.append({**row, "reason": "possible_match", "held_for": reason})
            listed_now.add(r)
            new_records.append(r)

    wave_members: dict[int, list[int]] = defaultdict(list)
    for r in sorted(range(n), key=lambda i: (waves[i], rids[i])):
        wave_members[int(waves[r])].append(r)
    baseline = min(wave_members) if wave_members else None

    for w in sorted(wave_members):
        members = wave_members[w]
        block_wave.clear()
        for r in members:
            if codes[r] is not None:
                block_records[bids[r]] += 1
                block_wave[bids[r]] += 1
                for j, v in enumerate(codes[r]):
                    value_counts[(bids[r], j)][v] += 1
        reserved: dict[int, int] = {}  # person -> record holding it by decision
        new_records: list[int] = []
        wave_held: list[int] = []
        listed_now: set[int] = set()
        accepted: list[tuple[int, int]] = []

        # 1. Decisions first: they are the evaluator's word and reserve their persons.
        for r in members:
            if r in forced_new:
                decided[r] = True
                new_records.append(r)
            elif r in forced_links:
                p, earlier, source = _decided_person(r, forced_links[r], person_of, rids)
                if p in reserved:
                    raise IngestError(
                        f"{source}: column decision links '{rids[r]}' to the person that "
                        f"'{rids[reserved[p]]}' of the same wave is also linked to; a person "
                        "answers a wave once"
                    )
                reserved[p] = r
                decided[r] = True
                method[r], matched_rec[r] = "decision", rids[earlier]
                accepted.append((r, p))

        # 2. Candidates of every other record among the persons of earlier waves.
        rings: dict[int, tuple[dict[int, int], Ring, list[int], set[int]]] = {}
        exact_claims: dict[int, list[int]] = defaultdict(list)
        inexact: list[int] = []
        for r in members:
            if decided[r]:
                continue
            if codes[r] is None:
                hold(r, "malformed_code", may_store=False)
                continue
            rings[r] = exact, near, pend, _ = candidates(r)
            if len(exact) > 1:
                hold(r, "tied_candidates", exact, may_store=False)
            elif len(exact) == 1:
                exact_claims[next(iter(exact))].append(r)
            else:
                inexact.append(r)

        # 3. Exact matches. A person whose code was typed exactly in this wave counts as
        # present ("typed"), whatever becomes of that record: this keeps the decision about
        # one record from cascading to the next (ambiguity stays local). A person is also
        # accounted for by a record of this wave that can be nobody else: its candidates
        # (exact, or else within one element), leaving out typed persons, are that person.
        typed = set(exact_claims) | set(reserved)
        accounted: set[int] = set()
        wanted: dict[int, int] = defaultdict(int)  # records of this wave that could be q
        for exact, near, _, _ in rings.values():
            left = [q for q in (exact or near) if q not in typed]
            if len(left) == 1:
                accounted.add(left[0])
            for q in exact or near:
                wanted[q] += 1
        for p, rs in exact_claims.items():
            if p in reserved or len(rs) > 1:
                for r in rs:
                    hold(r, "same_wave_conflict", rings[r][0], may_store=False)
                    if len(rs) > 1:
                        shared_codes[keys[r].exact].append(r)
                continue
            r = rs[0]
            if shared_codes.get(keys[r].exact):
                hold(r, "shared_code", rings[r][0], pend=shared_codes[keys[r].exact],
                     may_store=False)
                continue
            # The record could be the mistyped answer of a person one element away who is
            # neither typed nor accounted for in this wave. Only persons count here, never
            # unresolved records of earlier waves.
            rivals = {q: v for q, v in rings[r][1].items()
                      if q not in typed and q not in accounted}
            if rivals and review:
                hold(r, "near_neighbour", rings[r][0], rivals)
            elif late_entrants and chance(r, None, p) > max_chance_agreement:
                hold(r, "common_code", rings[r][0])
            else:
                method[r], matched_rec[r] = "exact", rids[rings[r][0][p]]
                accepted.append((r, p))

        # 4. No exact match: the persons (and unresolved records) within one element decide.
        fuzzy_claims: dict[int, list[int]] = defaultdict(list)
        for r in inexact:
            _, near, pend, slipped = rings[r]
            if not near and not pend:
                new_records.append(r)
            elif not fuzzy_on:
                hold(r, "possible_match", {}, near, pend)
            elif pend:
                hold(r, "near_unresolved", {}, near, pend)
            elif len(near) > 1:
                hold(r, "several_candidates", {}, near)
            elif next(iter(near)) in typed:
                hold(r, "same_wave_conflict", {}, near)
            elif late_entrants and next(iter(near)) not in slipped:
                # With newcomers possible, a difference bigger than a slip may as well be a
                # newcomer with a similar code: not a guess to make.
                hold(r, "slip_or_newcomer", {}, near)
            else:
                fuzzy_claims[next(iter(near))].append(r)
        for p, rs in fuzzy_claims.items():
            # Another record of this wave could be this person too (even one held for review
            # or claiming several): linking either would be a guess.
            if len(rs) > 1 or wanted[p] > 1:
                for r in rs:
                    hold(r, "same_wave_conflict", {}, {p: rings[r][1][p]})
                continue
            r = rs[0]
            el, rec = rings[r][1][p]
            if late_entrants and chance(r, el, p) > max_chance_agreement:
                hold(r, "common_code", {}, {p: (el, rec)})
                continue
            method[r] = "fuzzy"
            matched_el[r] = names[el] if el is not None else None
            matched_rec[r] = rids[rec]
            accepted.append((r, p))

        # 5. Commit: new persons in record-ID order (stable ordinals), then index the codes.
        # Nothing of this wave was visible to its own records, so the order within a wave
        # never matters.
        for r in sorted(new_records, key=lambda i: rids[i]):
            later = w != baseline and not decided[r] and r not in listed_now
            if later and not late_entrants:
                listed.append({**_amb(r, "unexpected_new", {}, {}, rids, waves, persons,
                                      names), "held_for": None})
            elif later and n_el > 2:
                # A newcomer, or a person whose code now differs in two elements (a typo at
                # baseline and another now): list it when someone is within two elements.
                near2 = {q: (None, rec) for key in _two_masked(codes[r], bids[r])
                         for q, rec in two_masked.get(key, {}).items()}
                if near2:
                    listed.append({**_amb(r, "possible_split", {}, near2, rids, waves, persons,
                                          names), "held_for": None})
            p = persons.new(base_key(r))
            block_persons[bids[r]] += 1
            method[r] = "new"
            accepted.append((r, p))
        for r, p in accepted:
            person_of[r] = p
            persons.add_code(p, codes[r], keys[r], r)
            if late_entrants and codes[r] is not None and n_el > 2:
                for key in _two_masked(codes[r], bids[r]):
                    two_masked[key].setdefault(p, r)
        for r in wave_held:
            if keys[r] is not None:
                pending_exact[keys[r].exact].append(r)
                for mkey in keys[r].masked:
                    pending_masked[mkey].append(r)

    return _assemble(frame, rids, waves, person_of, persons, method, matched_el, matched_rec,
                     decided, ambiguous, listed, applied, names, late_entrants)


def _decided_person(
    r: int, links: list[tuple[int, str]], person_of: np.ndarray, rids: list[str]
) -> tuple[int, int, str]:
    """The person the evaluator linked record ``r`` to (all its links must agree)."""
    targets = []
    for earlier, source in links:
        p = int(person_of[earlier])
        if p < 0:
            raise IngestError(
                f"{source}: column decision: record '{rids[earlier]}' is itself unresolved "
                "(ambiguous) in this run; decide it too, then re-run"
            )
        targets.append((p, earlier, source))
    if len({t[0] for t in targets}) > 1:
        raise IngestError(
            f"{', '.join(sorted({t[2] for t in targets}))}: column decision links record "
            f"'{rids[r]}' to records of different persons; link those earlier records to "
            "each other first"
        )
    return targets[0]


def _amb(
    r: int, reason: str, exact: Mapping[int, int], fuzzy: Mapping[int, tuple[int | None, int]],
    rids: list[str], waves: np.ndarray, persons: _Persons, names: tuple[str, ...],
    pending: Sequence[int] = (),
) -> dict[str, Any]:
    cands: list[tuple[int | None, int, str | None]] = [
        (p, rec, None) for p, rec in sorted(exact.items())
    ]
    # In the order given: candidates one slip away first (the ranking).
    cands += [(p, rec, None if el is None else names[el]) for p, (el, rec) in fuzzy.items()]
    cands += [(None, rec, None) for rec in pending]
    return {
        "record_id": rids[r],
        "wave": int(waves[r]),
        "reason": reason,
        "candidates": tuple(rids[rec] for _, rec, _ in cands),
        "candidate_persons": tuple(None if p is None else persons.key[p] for p, _, _ in cands),
        "differing_elements": tuple(el for _, _, el in cands),
    }


def _assemble(
    frame: pd.DataFrame, rids: list[str], waves: np.ndarray, person_of: np.ndarray,
    persons: _Persons, method: list[str | None], matched_el: list[str | None],
    matched_rec: list[str | None], decided: np.ndarray, ambiguous: list[dict[str, Any]],
    listed: list[dict[str, Any]], applied: pd.DataFrame, names: tuple[str, ...],
    late_entrants: bool,
) -> LinkageResult:
    keys = np.array([*persons.key, None], dtype=object)
    person_keys = keys[np.where(person_of >= 0, person_of, len(persons.key))]
    person = pd.Series(person_keys, index=pd.Index(rids, name="record_id"), name="person",
                       dtype=object)
    ok = person_of >= 0
    links = pd.DataFrame({
        "record_id": np.array(rids, dtype=object)[ok],
        "wave": waves[ok],
        "person": person_keys[ok],
        "method": np.array(method, dtype=object)[ok],
        "matched_element": np.array(matched_el, dtype=object)[ok],
        "matched_record": np.array(matched_rec, dtype=object)[ok],
        "decided": decided[ok],
    })
    amb = pd.DataFrame(ambiguous, columns=["record_id", "wave", "reason", "candidates",
                                           "candidate_persons", "differing_elements"])
    links = links.sort_values(["wave", "record_id"], kind="stable").reset_index(drop=True)
    amb = amb.sort_values(["wave", "record_id"], kind="stable").reset_index(drop=True)
    lst = pd.DataFrame(listed, columns=["record_id", "wave", "reason", "candidates",
                                        "candidate_persons", "differing_elements", "held_for"])
    lst = lst.sort_values(["wave", "record_id"], kind="stable").reset_index(drop=True)

    # Statistics, per wave and overall.
    wave_values = sorted(set(waves.tolist()))
    baseline = wave_values[0] if wave_values else None
    base_persons = set(person_of[(waves == baseline) & ok].tolist()) if wave_values else set()
    rows = []
    meth = np.array(method, dtype=object)
    for w in wave_values:
        in_w = waves == w
        counts = {m: int(np.sum(in_w & (meth == m))) for m in ("exact", "fuzzy", "decision",
                                                               "new")}
        n_amb = int(np.sum(amb["wave"] == w))
        n_possible = int(np.sum((lst["wave"] == w) & (lst["reason"] == "possible_match")))
        seen = set(person_of[in_w & ok].tolist()) & base_persons
        n_w = int(in_w.sum())
        linked = counts["exact"] + counts["fuzzy"] + counts["decision"]
        rows.append({
            "wave": w, "records": n_w, **counts, "ambiguous": n_amb,
            "possible_match": n_possible,
            # Records that became new persons although the study declares no entrants after
            # baseline: each is a person typed beyond recognition, or someone unexpected.
            "new_unexpected": counts["new"] if (w != baseline and not late_entrants) else 0,
            "linked_share": linked / n_w if n_w else float("nan"),
            "match_rate": len(seen) / len(base_persons) if base_persons else float("nan"),
        })
    per_wave = pd.DataFrame(rows, columns=["wave", "records", "exact", "fuzzy", "decision",
                                           "new", "ambiguous", "possible_match",
                                           "new_unexpected", "linked_share", "match_rate"])
    sizes = np.bincount(person_of[ok], minlength=len(persons.key)) if len(persons.key) else []
    stats = {
        "n_records": len(rids),
        "n_persons": len(persons.key),
        "n_exact": int(per_wave["exact"].sum()),
        "n_fuzzy": int(per_wave["fuzzy"].sum()),
        "n_decision": int(per_wave["decision"].sum()),
        "n_new": int(per_wave["new"].sum()),
        "n_ambiguous": len(amb),
        "n_listed": len(lst),
        "n_new_unexpected": int(per_wave["new_unexpected"].sum()),
        "n_singletons": int(np.sum(np.asarray(sizes) == 1)),
        "n_baseline_persons": len(base_persons),
        "n_decided": int(decided.sum()),
        "match_rate_by_wave": dict(zip(per_wave["wave"].tolist(),
                                       per_wave["match_rate"].astype(float).tolist(),
                                       strict=True)),
    }
    return LinkageResult(person, links, amb, stats, per_wave, applied.reset_index(drop=True),
                         names, lst)

