"""Link the same people across survey waves by participant ID or self-generated code (SGIC).

Panel surveys of Track II dialogues often cannot store names. Participants instead give an
assigned participant ID or a *self-generated identification code* (SGIC) that they can rebuild
at every wave from stable facts, e.g. two letters of their mother's first name, their birth
month, two letters of their birthplace and their birth year (``MA05JE87``). The study declares
the code as a list of named elements with their lengths (:class:`CodeSpec`).

Such codes are mistyped and misremembered. Published SGIC studies report 2-3 % false matches
with naive exact matching and only 50-75 % of people matched after a year [1]_ [2]_ [3]_. This
module does better by combining the rules below, each chosen to avoid *wrong* links first and
missed links second: a wrong link silently corrupts every longitudinal estimate (and merges two
people's answers), while a missed link only loses a data point or costs the evaluator a look.

1. **Normalisation** (:meth:`CodeSpec.parse`): Unicode NFKD with accents and invisible
   characters removed, case folded, separators dropped; a digit element typed with fewer
   digits between separators is zero-padded (``ma-5-je-87``); OCR/typing confusions are fixed
   *only where the element kind makes them unambiguous*: ``o`` -> ``0`` and ``i``/``l`` ->
   ``1`` in digit elements, ``0`` -> ``o`` in letter elements (``1`` in a letter element could
   be ``i`` or ``l``, so it is left alone). Codes that cannot be split into the declared
   elements are never matched (reason ``malformed_code``).
2. **Blocking** by side and dialogue: the same code in another side or dialogue (or a dialogue
   record vs a comparison-group record without dialogue) is never a match, exact or fuzzy.
3. **Exact before fuzzy.** A record is linked *exactly* to the one earlier person who gave the
   same code. Failing that, it is linked *fuzzily* to the one earlier person whose code agrees
   on all elements but one, the remaining element being one *slip* away: for letter (and
   "any") elements one substitution, insertion, deletion or adjacent transposition [4]_; for
   digit elements the number off by one (``09``/``10``), one digit replaced by its neighbour
   on the number row, or two digits swapped (plain edit distance would make every month from
   01 to 09 "one typo" from every other). ``max_element_edits=None`` accepts any value in that
   element; ``0`` turns fuzzy matching off.
4. **A person's own slips are weak evidence.** Per person and element, the values given so
   far are counted; a code outvoted on some element (a one-off slip) still matches exactly
   but only as a fuzzy-grade candidate, and fuzzy matches are made only against the person's
   prevailing codes.
5. **Never guess.** A record is *ambiguous*, listed for the evaluator and not linked, when:
   two or more persons are equally good candidates (``tied_candidates``; linking would merge
   them or pick one at random); its exact match has another person one slip away who has not
   answered this wave, or the two could be swapped (``near_neighbour``); its fuzzy match has
   another person differing in one element by more than a slip (``near_neighbour``); another
   record of the same wave claims the same person (``same_wave_conflict``: a person answers
   a wave once); its only candidate was also a candidate of a still unresolved record
   (``contested_person``); or it agrees with its candidate only on values so common in the
   block that another person would agree by chance (``common_code``: the expected number of
   such persons, from value-specific frequencies as in frequency-based Fellegi-Sunter
   matching [5]_ [6]_, exceeds ``max_chance_agreement``). An unresolved record with the same
   code as a new record also makes it ambiguous: it may be a person of its own.

Waves are processed in ascending order; a record is matched against the persons formed by all
earlier waves (so a person who skipped a wave is still found), never against records of its own
wave, and nothing from a later wave is used, so adding a wave never changes earlier links.
Candidate search uses hash indexes on the exact code and on the code with one element masked,
per side+dialogue block, so linking is O(n * number of elements), not O(n**2) [7]_.

Evaluator decisions (:func:`read_decisions`) override the algorithm: ``new`` makes a record a
new person; a record ID links the record to that record's person (whichever of the two is
later follows the earlier one). Decisions are applied first in each wave and reserve their
person, so re-running with the same decisions file gives the same persons. Linking a record to
a record of another side, or to one of its own wave, is refused.

A person's key is the JSON array text ``[side, dialogue, canonical_code, ordinal]``: the
normalised side and dialogue (blocks), the normalised code of the person's earliest record
(``"?"`` + the raw code's normalisation if a decision made a person of a malformed code), and
an ordinal that tells apart two people of one block who gave the same code (ordered by wave,
then record ID, so it never changes when waves are added). Keys contain code material and must
be HMAC-ed (:meth:`trackii_eval.ingest.pseudonym.PseudonymKey.pseudonymize`, e.g. with
``namespace="linkage-person"``) before anything is shown or stored;
:meth:`LinkageResult.with_pseudonyms` and :meth:`LinkageResult.to_review_file` do that.

References
----------
.. [1] Yurek, L. A., Vasey, J. and Sullivan Havens, D. (2008). The use of self-generated
   identification codes in longitudinal research. Evaluation Review 32(5), 435-452.
   https://doi.org/10.1177/0193841X08316676
.. [2] Schnell, R., Bachteler, T. and Reiher, J. (2010). Improving the use of self-generated
   identification codes. Evaluation Review 34(5), 391-418.
   https://doi.org/10.1177/0193841X10387576
.. [3] Audette, L. M., Hammond, M. S. and Rochester, N. K. (2020). Methodological issues with
   coding participants in anonymous psychological longitudinal studies. Educational and
   Psychological Measurement 80(1), 163-185. https://doi.org/10.1177/0013164419843576
.. [4] Damerau, F. J. (1964). A technique for computer detection and correction of spelling
   errors. Communications of the ACM 7(3), 171-176. https://doi.org/10.1145/363958.363994
.. [5] Fellegi, I. P. and Sunter, A. B. (1969). A theory for record linkage. Journal of the
   American Statistical Association 64(328), 1183-1210. https://doi.org/10.2307/2286061
.. [6] Winkler, W. E. (1989). Frequency-based matching in Fellegi-Sunter model of record
   linkage. Proceedings of the Section on Survey Research Methods, American Statistical
   Association, 778-783.
.. [7] Christen, P. (2012). Data Matching: Concepts and Techniques for Record Linkage, Entity
   Resolution, and Duplicate Detection. Springer (blocking, ch. 4; clerical review, ch. 7).
   https://doi.org/10.1007/978-3-642-31164-2
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import re
import tempfile
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import IngestError
from .pseudonym import normalise_id

__all__ = [
    "AMBIGUITY_REASONS",
    "EXAMPLE_SGIC",
    "REVIEW_COLUMNS",
    "CodeElement",
    "CodeSpec",
    "LinkageResult",
    "link_records",
    "read_decisions",
    "score_linkage",
    "simulate_sgic_panel",
]

ElementKind = Literal["letters", "digits", "any"]

#: Why a record was left for the evaluator (the ``reason`` column of ``ambiguous``).
AMBIGUITY_REASONS: dict[str, str] = {
    "malformed_code": "the code cannot be split into the declared elements",
    "tied_candidates": "two or more earlier persons (or a still unresolved record with the "
    "same code) match equally well; linking would merge them or pick one at random",
    "near_neighbour": "another person who has not answered this wave is within one element "
    "of the code, so the record may be that person's mistyped answer",
    "same_wave_conflict": "another record of the same wave claims the same person (a person "
    "answers a wave once)",
    "common_code": "the code agrees with the candidate only on values so common in this "
    "side/dialogue that another person could share them by chance",
    "possible_match": "no person is one slip away, but a person differs in one element by "
    "more (listed because review_possible_matches=True)",
    "contested_person": "the only candidate person is also a candidate of an unresolved record "
    "of an earlier wave",
}

#: Columns of the evaluator's review file (:meth:`LinkageResult.to_review_file`).
REVIEW_COLUMNS = [
    "record_id", "wave", "reason", "explanation", "differing_element", "candidates",
    "candidate_persons", "decision",
]
_NEW = "new"
# Joins lists inside one CSV cell; record IDs of the form "wave3.csv:row 17" never contain it.
_LIST_SEP = " ; "

# Confusions fixed only where the element's kind makes the intended character certain.
_TO_DIGIT = str.maketrans({"o": "0", "i": "1", "l": "1"})
_TO_LETTER = str.maketrans({"0": "o"})
_NON_WORD = re.compile(r"[\W_]+")


# ----------------------------------------------------------------------------- code spec


@dataclass(frozen=True)
class CodeElement:
    """One element of a self-generated code: a name, a length and a kind.

    Parameters
    ----------
    name
        What the element is, e.g. ``"birth_month"``; shown to evaluators (its value never is).
    length
        Number of characters.
    kind
        ``"letters"``, ``"digits"`` or ``"any"``; decides which typing confusions are fixed,
        whether a short digit element may be zero-padded, and what counts as one slip.

    References
    ----------
    .. [1] Yurek, L. A., Vasey, J. and Sullivan Havens, D. (2008). The use of self-generated
       identification codes in longitudinal research. Evaluation Review 32(5), 435-452.
    """

    name: str
    length: int
    kind: ElementKind = "any"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise IngestError("a code element needs a non-empty name")
        if not isinstance(self.length, int) or self.length < 1:
            raise IngestError(f"code element '{self.name}': length must be a positive integer")
        if self.kind not in ("letters", "digits", "any"):
            raise IngestError(
                f"code element '{self.name}': kind must be letters, digits or any, not "
                f"'{self.kind}'"
            )


@dataclass(frozen=True)
class CodeSpec:
    """The declared structure of a self-generated identification code.

    Parameters
    ----------
    elements
        The elements in the order they are written.

    References
    ----------
    .. [1] Schnell, R., Bachteler, T. and Reiher, J. (2010). Improving the use of
       self-generated identification codes. Evaluation Review 34(5), 391-418.
    """

    elements: tuple[CodeElement, ...]

    def __post_init__(self) -> None:
        elements = tuple(self.elements)
        if not elements:
            raise IngestError("a code spec needs at least one element")
        names = [e.name for e in elements]
        if len(set(names)) != len(names):
            raise IngestError(f"code element names must be unique, got {names}")
        object.__setattr__(self, "elements", elements)
        # A digit element may lack leading zeros ("ma5je87") when letters follow it; a short
        # last element is more likely cut off than missing a zero, so it must be complete.
        pattern = "".join(
            rf"(\d{{1,{e.length}}})" if e.kind == "digits" and i < len(elements) - 1
            else rf"(\d{{{e.length}}})" if e.kind == "digits"
            else rf"([^\W\d_]{{{e.length}}})" if e.kind == "letters"
            else rf"(\w{{{e.length}}})"
            for i, e in enumerate(elements)
        )
        object.__setattr__(self, "_flexible", re.compile(pattern))
        ends = list(itertools.accumulate(e.length for e in elements))
        object.__setattr__(self, "_slices", list(zip([0, *ends[:-1]], ends, strict=True)))
        object.__setattr__(self, "_tables", [
            _TO_DIGIT if e.kind == "digits" else _TO_LETTER if e.kind == "letters" else None
            for e in elements
        ])

    @classmethod
    def from_config(
        cls, elements: Iterable[CodeElement | Mapping[str, Any] | Sequence[Any]]
    ) -> CodeSpec:
        """Build a spec from a study's declaration.

        Parameters
        ----------
        elements
            Each a :class:`CodeElement`, a mapping ``{name, length, kind?}`` (as in
            ``study.yaml``) or a tuple ``(name, length[, kind])``.

        Returns
        -------
        CodeSpec
            The spec.

        References
        ----------
        .. [1] Yurek, L. A., Vasey, J. and Sullivan Havens, D. (2008). The use of
           self-generated identification codes in longitudinal research. Evaluation Review
           32(5), 435-452.
        """
        out = []
        for i, el in enumerate(elements):
            if isinstance(el, CodeElement):
                out.append(el)
            elif isinstance(el, Mapping):
                unknown = set(el) - {"name", "length", "kind"}
                if unknown or "name" not in el or "length" not in el:
                    raise IngestError(
                        f"code element {i + 1}: expected keys name, length and optionally kind"
                    )
                out.append(CodeElement(el["name"], el["length"], el.get("kind", "any")))
            else:
                out.append(CodeElement(*el))
        return cls(tuple(out))

    @property
    def names(self) -> list[str]:
        """Element names in order."""
        return [e.name for e in self.elements]

    @property
    def total_length(self) -> int:
        """Characters in a well-formed code, separators excluded."""
        return sum(e.length for e in self.elements)

    def parse(self, raw: object) -> tuple[str, ...] | None:
        """Normalise a raw code and split it into its elements; ``None`` if impossible.

        See the module docstring for the normalisation rules. Parsing tries, in order: the
        written separators (if they split the code into exactly as many parts as there are
        elements), the declared positions (if the length is right), and a pattern that lets a
        digit element be shorter than declared (zero-padded).

        Parameters
        ----------
        raw
            The code as typed; anything that is not a non-empty string is malformed.

        Returns
        -------
        tuple of str or None
            Normalised element values, or ``None`` for a malformed code.

        References
        ----------
        .. [1] Unicode Standard Annex #15: Unicode Normalization Forms.
        """
        if not isinstance(raw, str):
            return None
        if raw.isascii():
            text = raw.lower()  # the common case; casefold and NFKD change nothing here
        else:
            text = unicodedata.normalize("NFKD", raw)
            text = "".join(
                ch for ch in text if unicodedata.category(ch) not in ("Mn", "Cf")
            ).casefold()
        elements = self.elements
        parts = [text] if text.isalnum() else [p for p in _NON_WORD.split(text) if p]
        values: list[str] | None = None
        if len(parts) == len(elements) > 1:
            padded = [
                p.zfill(e.length) if e.kind == "digits" and p.isdigit() else p
                for p, e in zip(parts, elements, strict=True)
            ]
            if all(len(p) == e.length for p, e in zip(padded, elements, strict=True)):
                values = padded
        joined = parts[0] if len(parts) == 1 else "".join(parts)
        if values is None and len(joined) == self.total_length:
            values = [joined[a:b] for a, b in self._slices]  # type: ignore[attr-defined]
        if values is None:
            m = self._flexible.fullmatch(joined)  # type: ignore[attr-defined]
            if m is None:
                return None
            values = [
                g.zfill(e.length) if e.kind == "digits" else g
                for g, e in zip(m.groups(), elements, strict=True)
            ]
        return tuple(
            v.translate(t) if t is not None else v
            for v, t in zip(values, self._tables, strict=True)  # type: ignore[attr-defined]
        )


#: The example code from the SGIC literature: mother's first name (2 letters), birth month
#: (2 digits), birthplace (2 letters), birth year (2 digits).
EXAMPLE_SGIC = CodeSpec((
    CodeElement("mother_first_name", 2, "letters"),
    CodeElement("birth_month", 2, "digits"),
    CodeElement("birthplace", 2, "letters"),
    CodeElement("birth_year", 2, "digits"),
))


@lru_cache(maxsize=65536)
def _within_one_edit(a: str, b: str) -> bool:
    """True if ``a`` and ``b`` differ by at most one edit (substitution, indel, transposition)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2 and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


# Digit keys next to each other on the number row ("1234567890").
_DIGIT_ROW = "1234567890"


@lru_cache(maxsize=65536)
def _digits_close(a: str, b: str) -> bool:
    """True if two digit strings differ by one plausible slip.

    Plain edit distance is nearly meaningless for two-digit numbers (every month from 01 to 09
    is one substitution from every other), so for digit elements a slip is: the number off by
    one (``09``/``10``, ``87``/``88``), one digit replaced by its neighbour on the number row,
    or two adjacent digits swapped (``87``/``78``).
    """
    if a == b:
        return True
    if len(a) != len(b) or not (a.isdigit() and b.isdigit()):
        return _within_one_edit(a, b)
    if abs(int(a) - int(b)) == 1:
        return True
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) == 1:
        i = diff[0]
        return abs(_DIGIT_ROW.index(a[i]) - _DIGIT_ROW.index(b[i])) == 1
    return (
        len(diff) == 2 and diff[1] == diff[0] + 1
        and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    )


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, repr=False, eq=False)
class LinkageResult:
    """The outcome of :func:`link_records`. Every record is in exactly one of: linked
    (``links.method`` in exact/fuzzy/decision), new (``links.method == "new"``) or ambiguous.

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
        ``n_new``, ``n_ambiguous``, ``n_singletons`` (persons with one record),
        ``n_baseline_persons``, ``n_decided`` (records settled by an evaluator decision, as a
        link or as a new person) and ``match_rate_by_wave`` (wave -> share of baseline
        persons linked to a record of that wave).
    per_wave
        The same per wave: records, exact, fuzzy, decision, new, ambiguous, ``linked_share``
        (linked records / records) and ``match_rate`` (relative to baseline persons).
    decisions
        The evaluator decisions that were applied (``record_id``, ``decision``, ``source``).
    element_names
        Names of the code elements (empty for participant-ID linkage).

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
        return LinkageResult(
            person, links, amb, self.stats, self.per_wave, self.decisions, self.element_names
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
        for a in self.ambiguous.itertuples(index=False):
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


# ----------------------------------------------------------------------------- linking


class _Persons:
    """Persons formed so far, with hash indexes for exact and one-element-masked codes.

    Index keys are strings built once per distinct (block, code), so Python caches their
    hashes. Per person and element, the number of records giving each value is kept: a code
    whose values are all the most frequent (ties included) is *supported*; a code outvoted on
    some element is a one-off slip of that person and only weak evidence for linking.
    """

    def __init__(self, n_elements: int) -> None:
        self.n_elements = n_elements
        self.key: list[str] = []
        # exact key -> {person: earliest record index with that code}
        self.exact: dict[str, dict[int, int]] = defaultdict(dict)
        # masked key -> {(person, value of the masked element): earliest record index}
        self.masked: dict[str, dict[tuple[int, str], int]] = defaultdict(dict)
        self.counts: list[list[dict[str, int]]] = []
        self.codes: list[dict[str, tuple[str, ...]]] = []  # exact key -> code, per person
        self.supp: list[set[str]] = []  # exact keys of the person's supported codes
        self.n_records: list[int] = []
        self.key_count: dict[str, int] = defaultdict(int)

    def new(self, base: tuple[str, ...]) -> int:
        # JSON array text: unambiguous whatever the side, dialogue or code contain.
        head = "[" + ",".join(_json_str(x) for x in base)
        self.key_count[head] += 1
        self.key.append(f"{head},{self.key_count[head]}]")
        self.counts.append([{} for _ in range(self.n_elements)])
        self.codes.append({})
        self.supp.append(set())
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
            known[keys.exact] = code
            self.exact[keys.exact][person] = rec
            for i, mkey in enumerate(keys.masked):
                self.masked[mkey][(person, code[i])] = rec
        if len(known) == 1:
            self.supp[person] = {keys.exact}
        else:
            top = [max(c.values()) for c in counts]
            self.supp[person] = {
                k for k, c in known.items()
                if all(counts[j][v] == top[j] for j, v in enumerate(c))
            }


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
    max_element_edits: int | None = 1,
    guard_near_neighbours: bool = True,
    max_chance_agreement: float = 0.05,
    review_possible_matches: bool = False,
) -> LinkageResult:
    """Link records of the same person across waves.

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
    max_element_edits
        For a fuzzy match, how far the one differing element may be from the person's value:
        ``1`` (default) one slip as defined in the module docstring (per element kind);
        ``None`` any value; ``0`` no fuzzy matching at all.
    guard_near_neighbours
        Leave a record ambiguous when another person who has not answered this wave could be
        its author through a single slip (see the module docstring). Turning this off links
        more records and makes wrong links more likely.
    max_chance_agreement
        Largest acceptable expected number of *other* persons of the block who would agree
        with the record as well as its candidate does, by chance (from value frequencies over
        the block's records so far). ``inf`` turns the check off.
    review_possible_matches
        Also list, as ``possible_match``, records that would become new persons although a
        person differs from them in one element by more than a slip (more review work,
        fewer missed links and no phantom persons from a badly mistyped element).

    Returns
    -------
    LinkageResult
        Links, ambiguous records and statistics.

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
    .. [2] Christen, P. (2012). Data Matching. Springer (blocking, ch. 4).
    .. [3] Damerau, F. J. (1964). Communications of the ACM 7(3), 171-176.
    """
    if spec is not None and not isinstance(spec, CodeSpec):
        spec = CodeSpec.from_config(spec)
    if max_element_edits not in (0, 1, None):
        raise IngestError("max_element_edits must be 0, 1 or None")
    # Linking allocates hundreds of thousands of small dicts and tuples, none in reference
    # cycles; the cyclic garbage collector would rescan them over and over (a third of the
    # run time at 100k records) for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _link(records, spec, decisions, max_element_edits, guard_near_neighbours,
                     max_chance_agreement, review_possible_matches)
    finally:
        if gc_was_enabled:
            gc.enable()


def _link(
    records: pd.DataFrame, spec: CodeSpec | None, decisions: pd.DataFrame | None,
    max_element_edits: int | None, guard_near_neighbours: bool, max_chance_agreement: float,
    review_possible_matches: bool,
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
        n_el, names, fuzzy_on = 1, (), False

        def parse(c: object) -> tuple[str, ...] | None:
            return (normalise_id(c),) if isinstance(c, str) and normalise_id(c) else None
    else:
        n_el, names = len(spec.elements), tuple(spec.names)
        fuzzy_on = max_element_edits != 0
        parse = spec.parse
    codes = [
        parsed[c] if c in parsed else parsed.setdefault(c, parse(c))
        if isinstance(c, str) else None
        for c in raw_codes
    ]
    # Index keys, shared by every record with the same block and code.
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
    # How close the one differing element must be for a fuzzy candidate, per element kind.
    closeness: list[Callable[[str, str], bool]] = [
        (lambda a, b: True) if max_element_edits is None
        else _digits_close if e.kind == "digits" else _within_one_edit
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

    def base_key(r: int) -> tuple[str, str, str]:
        code, raw = codes[r], raw_codes[r]
        if code is not None:
            canonical = "".join(code)
        else:  # a malformed code made a person by decision; "?" keeps it apart
            canonical = "?" + (normalise_id(raw) if isinstance(raw, str) else "")
        return (*blocks[r], canonical)

    Ring = dict[int, tuple[int | None, int]]

    def candidates(r: int) -> tuple[dict[int, int], Ring, Ring]:
        """Earlier persons near record ``r``, in three rings.

        ``exact``: person -> record, the code equals one of the person's supported codes.
        ``near``: person -> (element, record), the code is one slip (in one element) from a
        supported code of the person, or equals an outvoted code (element ``None``); these
        are fuzzy link candidates. ``far``: person -> (element, record), any other person
        within one element, whatever the difference; never linked, only rivals.
        """
        code, k = codes[r], keys[r]
        exact: dict[int, int] = {}
        near: Ring = {}
        far: Ring = {}
        supp = persons.supp
        for p, rec in persons.exact.get(k.exact, {}).items():
            if k.exact in supp[p]:
                exact[p] = rec
            elif fuzzy_on:
                near[p] = (None, rec)
            else:
                far[p] = (None, rec)
        for i, mkey in enumerate(k.masked):
            hit = persons.masked.get(mkey)
            if not hit:
                continue
            close, mine = closeness[i], code[i]
            for (p, value), rec in hit.items():
                if value == mine or p in exact or p in near:
                    continue
                # keys[rec].exact is the person's code that has this value.
                if fuzzy_on and close(value, mine) and keys[rec].exact in supp[p]:
                    near[p] = (i, rec)
                    far.pop(p, None)
                else:
                    far.setdefault(p, (i, rec))
        return exact, near, far

    # Unresolved records of earlier waves may be persons of their own: a record with the same
    # code is never linked past them ("shadows"), and the persons they could be are
    # "shadowed": never the target of a fuzzy link until the evaluator has decided.
    shadow_exact: dict[str, list[int]] = defaultdict(list)
    shadowed: set[int] = set()
    wave_ambiguous: list[int] = []
    wave_shadowed: set[int] = set()
    # Value frequencies per block and element over the records of waves up to the current
    # one (never later waves, so adding a wave does not change how earlier waves linked).
    value_counts: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    block_records: dict[int, int] = defaultdict(int)
    block_persons: dict[int, int] = defaultdict(int)
    block_wave: dict[int, int] = defaultdict(int)
    close_mass: dict[tuple[int, int, str], int] = {}

    def chance(r: int, skip: int | None, p: int) -> float:
        """Expected number of persons other than ``p`` agreeing with record ``r`` by chance.

        Agreement means: every element but ``skip`` equal, and ``skip`` within one slip but
        not equal. Value-specific frequencies (over the block's records so far, leaving out
        ``r`` and ``p``'s own records) make agreement on rare values strong evidence and on
        common values weak evidence, as in frequency-based Fellegi-Sunter matching.
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
            # The share of values one slip from the record's is at most 1: below the
            # threshold already, so skip summing it (most blocks are small).
            return e
        close, v = closeness[skip], code[skip]
        ck = (bid, skip, v)
        if ck not in close_mass:
            close_mass[ck] = sum(
                c for u, c in value_counts[(bid, skip)].items() if u != v and close(u, v)
            )
        k = close_mass[ck] - sum(c for u, c in own[skip].items() if u != v and close(u, v))
        return e * max(k, 0) / total

    def amb(r: int, reason: str, ex: Mapping[int, int] | None = None,
            fz: Ring | None = None, shadows: Sequence[int] = ()) -> None:
        ambiguous.append(_amb(r, reason, ex or {}, fz or {}, rids, waves, persons, names,
                              shadows))
        wave_ambiguous.append(r)
        wave_shadowed.update(ex or {})
        wave_shadowed.update(fz or {})

    wave_members: dict[int, list[int]] = defaultdict(list)
    for r in sorted(range(n), key=lambda i: (waves[i], rids[i])):
        wave_members[int(waves[r])].append(r)

    for w in sorted(wave_members):
        members = wave_members[w]
        block_wave.clear()
        close_mass.clear()
        for r in members:
            if codes[r] is not None:
                block_records[bids[r]] += 1
                block_wave[bids[r]] += 1
                for j, v in enumerate(codes[r]):
                    value_counts[(bids[r], j)][v] += 1
        reserved: dict[int, int] = {}  # person -> record holding it by decision
        new_records: list[int] = []
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
        rings: dict[int, tuple[dict[int, int], Ring, Ring]] = {}
        exact_claims: dict[int, list[int]] = defaultdict(list)
        for r in members:
            if decided[r]:
                continue
            if codes[r] is None:
                amb(r, "malformed_code")
                continue
            rings[r] = exact, near, _ = candidates(r)
            shadows = shadow_exact.get(keys[r].exact, ())
            if shadows and (exact or near):
                amb(r, "tied_candidates", exact, near, shadows)
            elif len(exact) > 1:
                amb(r, "tied_candidates", exact)
            elif len(exact) == 1:
                exact_claims[next(iter(exact))].append(r)

        # 3. Exact pairs: one exact candidate person, claimed exactly by no other record of
        # this wave and not held by a decision, on a code not so common that another person
        # could share it by chance.
        pairs: dict[int, int] = {}
        for p, rs in exact_claims.items():
            if p in reserved or len(rs) > 1:
                for r in rs:
                    amb(r, "same_wave_conflict", rings[r][0])
            elif chance(rs[0], None, p) > max_chance_agreement:
                amb(rs[0], "common_code", rings[rs[0]][0])
            else:
                pairs[p] = rs[0]
        # A person who answered this wave (exact pair or decision) is "explained": no other
        # record of the wave can be them. An exact pair stands only if every other person one
        # slip away from the record is explained; otherwise the record may be that person's
        # mistyped answer. (Two neighbours who each answer with their own code are not
        # suspected of being swapped: that needs two slips, each onto the other's code.)
        # Dropping a pair un-explains its person, so iterate to a fixed point.
        explained = set(pairs) | set(reserved)
        changed = guard_near_neighbours
        while changed:
            changed = False
            for p, r in list(pairs.items()):
                rivals = {q: v for q, v in rings[r][1].items() if q not in explained}
                if rivals:
                    amb(r, "near_neighbour", rings[r][0], rivals)
                    del pairs[p]
                    explained.discard(p)
                    changed = True
        for p, r in pairs.items():
            method[r], matched_rec[r] = "exact", rids[rings[r][0][p]]
            accepted.append((r, p))

        # 4. Fuzzy: records without an exact candidate, against unexplained persons.
        settled = set(wave_ambiguous) | {r for r, _ in accepted}
        paired = set(pairs.values())
        exactly_claimed = {
            q for r, (exact, _, _) in rings.items() if r not in paired for q in exact
        }
        fuzzy_claims: dict[int, list[int]] = defaultdict(list)
        for r, (exact, near, far) in rings.items():
            if exact or r in settled:
                continue
            cands = {q: v for q, v in near.items() if q not in explained}
            rivals = {q: v for q, v in far.items() if q not in explained}
            if not cands:
                # Nobody unexplained is one slip away: a new person (also when the close
                # persons already answered this wave).
                if rivals and review_possible_matches:
                    amb(r, "possible_match", {}, rivals)
                else:
                    new_records.append(r)
            elif len(cands) > 1:
                amb(r, "tied_candidates", {}, cands)
            elif rivals and guard_near_neighbours:
                # Another person is within one element too, by a bigger difference.
                amb(r, "near_neighbour", {}, {**cands, **rivals})
            elif cands.keys() & exactly_claimed:
                amb(r, "same_wave_conflict", {}, cands)
            elif cands.keys() & shadowed:
                amb(r, "contested_person", {}, cands)
            else:
                fuzzy_claims[next(iter(cands))].append(r)
        for p, rs in fuzzy_claims.items():
            if len(rs) > 1:
                for r in rs:
                    amb(r, "same_wave_conflict", {}, {p: rings[r][1][p]})
                continue
            r = rs[0]
            el, rec = rings[r][1][p]
            if chance(r, el, p) > max_chance_agreement:
                amb(r, "common_code", {}, {p: (el, rec)})
                continue
            # el is None for an exact match on a code the person used once and then outvoted.
            method[r] = "fuzzy" if el is not None else "exact"
            matched_el[r] = names[el] if el is not None else None
            matched_rec[r] = rids[rec]
            accepted.append((r, p))

        # 5. Commit: new persons in record-ID order (stable ordinals), then index the codes.
        # Nothing of this wave was visible to its own records, so the order within a wave
        # never matters.
        for r in sorted(new_records, key=lambda i: rids[i]):
            p = persons.new(base_key(r))
            block_persons[bids[r]] += 1
            method[r] = "new"
            accepted.append((r, p))
        for r, p in accepted:
            person_of[r] = p
            persons.add_code(p, codes[r], keys[r], r)
        for r in wave_ambiguous:
            if keys[r] is not None:
                shadow_exact[keys[r].exact].append(r)
        shadowed |= wave_shadowed
        wave_ambiguous.clear()
        wave_shadowed.clear()

    return _assemble(frame, rids, waves, person_of, persons, method, matched_el, matched_rec,
                     decided, ambiguous, applied, names)


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
    shadows: Sequence[int] = (),
) -> dict[str, Any]:
    cands: list[tuple[int | None, int, str | None]] = [
        (p, rec, None) for p, rec in sorted(exact.items())
    ]
    cands += [(p, rec, None if el is None else names[el]) for p, (el, rec) in sorted(fuzzy.items())]
    cands += [(None, rec, None) for rec in shadows]
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
    applied: pd.DataFrame, names: tuple[str, ...],
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
        seen = set(person_of[in_w & ok].tolist()) & base_persons
        n_w = int(in_w.sum())
        linked = counts["exact"] + counts["fuzzy"] + counts["decision"]
        rows.append({
            "wave": w, "records": n_w, **counts, "ambiguous": n_amb,
            "linked_share": linked / n_w if n_w else float("nan"),
            "match_rate": len(seen) / len(base_persons) if base_persons else float("nan"),
        })
    per_wave = pd.DataFrame(rows, columns=["wave", "records", "exact", "fuzzy", "decision",
                                           "new", "ambiguous", "linked_share", "match_rate"])
    sizes = np.bincount(person_of[ok], minlength=len(persons.key)) if len(persons.key) else []
    stats = {
        "n_records": len(rids),
        "n_persons": len(persons.key),
        "n_exact": int(per_wave["exact"].sum()),
        "n_fuzzy": int(per_wave["fuzzy"].sum()),
        "n_decision": int(per_wave["decision"].sum()),
        "n_new": int(per_wave["new"].sum()),
        "n_ambiguous": len(amb),
        "n_singletons": int(np.sum(np.asarray(sizes) == 1)),
        "n_baseline_persons": len(base_persons),
        "n_decided": int(decided.sum()),
        "match_rate_by_wave": dict(zip(per_wave["wave"].tolist(),
                                       per_wave["match_rate"].astype(float).tolist(),
                                       strict=True)),
    }
    return LinkageResult(person, links, amb, stats, per_wave, applied.reset_index(drop=True),
                         names)


# ----------------------------------------------------------------------------- evaluation


def score_linkage(records: pd.DataFrame, person: pd.Series, truth: pd.Series) -> dict[str, Any]:
    """Compare a linkage with the true persons (for simulations and audits).

    Parameters
    ----------
    records
        The linked records (``record_id`` and ``wave`` are used).
    person
        record_id -> predicted person (missing for unresolved records), e.g.
        :attr:`LinkageResult.person`, or a naive linkage to compare with.
    truth
        record_id -> true person.

    Returns
    -------
    dict
        ``false_links`` (records joined to a person whose earliest record belongs to someone
        else), ``false_link_rate`` (per linked record), ``false_pairs`` (record pairs wrongly
        in one person), ``true_links`` (records that should join an earlier record),
        ``correct_links``, ``recall``, ``unresolved`` and ``match_rate_by_wave`` /
        ``achievable_by_wave`` (share of baseline persons correctly linked to / truly present
        in each wave).

    References
    ----------
    .. [1] Christen, P. (2012). Data Matching, ch. 7 (measuring linkage quality). Springer.
    """
    df = pd.DataFrame({
        "record_id": records["record_id"].to_numpy(dtype=object),
        "wave": records["wave"].to_numpy(),
    })
    df["pred"] = person.reindex(df["record_id"]).to_numpy(dtype=object)
    df["true"] = truth.reindex(df["record_id"]).to_numpy(dtype=object)
    df = df.sort_values(["wave", "record_id"], kind="stable")
    resolved = df[df["pred"].notna()]
    # The truth of each predicted person's earliest record (drop_duplicates keeps missing values,
    # unlike groupby "first", which would skip an unresolved earliest record).
    first_true_of_pred = resolved["pred"].map(
        resolved.drop_duplicates("pred").set_index("pred")["true"])
    is_first_pred = ~resolved.duplicated("pred")
    linked = resolved[~is_first_pred]
    false_links = int((linked["true"] != first_true_of_pred[~is_first_pred]).sum())
    pair_counts = resolved.groupby(["pred", "true"], sort=False).size()
    group_sizes = resolved.groupby("pred", sort=False).size()
    same_pairs = int((pair_counts * (pair_counts - 1) // 2).sum())
    all_pairs = int((group_sizes * (group_sizes - 1) // 2).sum())
    first_pred_of_true = df["true"].map(df.drop_duplicates("true").set_index("true")["pred"])
    is_first_true = ~df.duplicated("true")
    later = df[~is_first_true]
    ok = later["pred"].notna() & (later["pred"] == first_pred_of_true[~is_first_true])
    baseline = df["wave"].min()
    base_true = set(df.loc[df["wave"] == baseline, "true"])
    rate, achievable = {}, {}
    good = set(later.loc[ok, "record_id"]) | set(df.loc[df["wave"] == baseline, "record_id"])
    for w, sub in df.groupby("wave"):
        in_base = sub[sub["true"].isin(base_true)]
        achievable[int(w)] = len(in_base) / len(base_true) if base_true else float("nan")
        rate[int(w)] = (float(in_base["record_id"].isin(good).sum() / len(base_true))
                        if base_true else float("nan"))
    return {
        "false_links": false_links,
        "false_link_rate": false_links / len(linked) if len(linked) else 0.0,
        "false_pairs": all_pairs - same_pairs,
        "true_links": len(later),
        "correct_links": int(ok.sum()),
        "recall": float(ok.sum() / len(later)) if len(later) else float("nan"),
        "unresolved": int(df["pred"].isna().sum()),
        "match_rate_by_wave": rate,
        "achievable_by_wave": achievable,
    }


# ----------------------------------------------------------------------------- simulation

_MOTHER_NAMES = [
    "MA", "SA", "FA", "RA", "LE", "HA", "NA", "YA", "DA", "RI", "SH", "AY", "MI", "ZA", "AM",
    "NO", "TA", "KA", "EL", "RU", "ES", "BA", "GA", "HU", "IM", "JA", "LI", "OR", "AD", "AN",
]
_PLACES = {
    0: ["NE", "PO", "HI", "RI", "VA", "GR", "ST", "LA", "MO", "BE", "CA", "FO", "WE", "KI"],
    1: ["SO", "BA", "DU", "AL", "MA", "QA", "TE", "OA", "ZE", "HA", "KU", "FA", "RA", "BE"],
}
# Neighbouring keys on a QWERTY keyboard (typing errors are mostly adjacent keys) and digits.
_KEY_NEIGHBOURS = {
    "A": "QSZ", "B": "VGHN", "C": "XDFV", "D": "SERFCX", "E": "WSDR", "F": "DRTGVC",
    "G": "FTYHBV", "H": "GYUJNB", "I": "UJKO", "J": "HUIKMN", "K": "JIOLM", "L": "KOP",
    "M": "NJK", "N": "BHJM", "O": "IKLP", "P": "OL", "Q": "WA", "R": "EDFT", "S": "AWEDXZ",
    "T": "RFGY", "U": "YHJI", "V": "CFGB", "W": "QASE", "X": "ZSDC", "Y": "TGHU", "Z": "ASX",
    "0": "9", "1": "2", "2": "13", "3": "24", "4": "35", "5": "46", "6": "57", "7": "68",
    "8": "79", "9": "80",
}


def _zipf_weights(k: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** s
    return w / w.sum()


def simulate_sgic_panel(
    n: int = 1000,
    waves: int = 4,
    typo_rate: float = 0.08,
    seed: int = 0,
    *,
    attrition: float = 0.15,
    late_joiners: float = 0.03,
    shared_code_rate: float = 0.01,
    format_noise: float = 0.3,
    dialogue_size: int = 24,
    comparison_share: float = 0.3,
    sides: tuple[str, str] = ("North", "South"),
) -> tuple[pd.DataFrame, pd.Series]:
    """Simulate SGIC panel records with realistic errors, and the true person of each record.

    Persons belong to one side and either a dialogue (about ``dialogue_size`` people, both
    sides) or the comparison group (no dialogue: large blocks, where chance coincidences of
    codes concentrate). Codes follow :data:`EXAMPLE_SGIC`; mothers' names, birthplaces and
    birth years are drawn from skewed distributions, so near-identical codes occur by chance
    as they do in real communities, and ``shared_code_rate`` of persons are given exactly the
    code of another person of their block. At each later wave a person is missing with
    probability ``attrition`` and ``late_joiners * n`` new persons appear. Each record has,
    with probability ``typo_rate``, exactly one error: an adjacent-key substitution in one
    element, the birth month off by one, two characters of one element swapped, or one
    element answered differently (another birthplace spelling, a nickname). With probability
    ``format_noise`` a record is also written differently without being wrong (case,
    separators, a month without its leading zero between separators, the letter O for zero).

    Parameters
    ----------
    n
        Persons at baseline.
    waves
        Number of waves (1, 2, ...).
    typo_rate
        Share of records with one error.
    seed
        Seed of the random generator; the same seed gives the same panel.
    attrition, late_joiners, shared_code_rate, format_noise, dialogue_size, comparison_share,
    sides
        See above.

    Returns
    -------
    records : pandas.DataFrame
        ``record_id`` (``"wave<k>.csv:row <r>"``), ``wave``, ``code``, ``side``, ``dialogue``.
    truth : pandas.Series
        record_id -> true person (``"T000001"``, ...), named ``truth``.

    References
    ----------
    .. [1] Schnell, R., Bachteler, T. and Reiher, J. (2010). Improving the use of
       self-generated identification codes. Evaluation Review 34(5), 391-418 (error types).
    .. [2] Audette, L. M., Hammond, M. S. and Rochester, N. K. (2020). Educational and
       Psychological Measurement 80(1), 163-185.
    """
    rng = np.random.default_rng(seed)
    name_p = _zipf_weights(len(_MOTHER_NAMES), 0.9)
    place_p = _zipf_weights(len(_PLACES[0]), 1.1)

    n_dialogue = max(1, round(n * (1 - comparison_share) / dialogue_size))

    def new_people(k: int) -> list[dict[str, Any]]:
        # Drawn in bulk: one generator call per attribute, not per person.
        side = rng.integers(2, size=k)
        in_dialogue = rng.random(k) >= comparison_share
        dialogue = rng.integers(n_dialogue, size=k) + 1
        name = rng.choice(len(_MOTHER_NAMES), size=k, p=name_p)
        month = rng.integers(1, 13, size=k)
        place = rng.choice(len(_PLACES[0]), size=k, p=place_p)
        year = np.clip(np.round(rng.normal(1978, 11, size=k)), 1940, 2004).astype(int)
        return [
            {
                "side": sides[side[i]],
                "dialogue": f"D{dialogue[i]}" if in_dialogue[i] else None,
                "code": [_MOTHER_NAMES[name[i]], f"{month[i]:02d}", _PLACES[side[i]][place[i]],
                         f"{year[i] % 100:02d}"],
                "s": int(side[i]),
            }
            for i in range(k)
        ]

    people = new_people(n)
    by_block: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for i, person in enumerate(people):
        by_block[(person["side"], person["dialogue"])].append(i)
    # Two people of one block sharing a code by chance (more often than one would think).
    for i in range(n):
        if rng.random() < shared_code_rate:
            same = [j for j in by_block[(people[i]["side"], people[i]["dialogue"])] if j != i]
            if same:
                people[i]["code"] = list(people[same[int(rng.integers(len(same)))]]["code"])
    present = [set(range(n))]
    for _ in range(1, waves):
        joiners = [len(people) + k for k in range(int(rng.binomial(n, late_joiners)))]
        people.extend(new_people(len(joiners)))
        stay = {i for i in range(len(people) - len(joiners)) if rng.random() >= attrition}
        present.append(stay | set(joiners))

    def erroneous(code: list[str], s: int) -> list[str]:
        out = list(code)
        kind = rng.choice(["substitute", "month_off", "swap", "element"],
                          p=[0.4, 0.2, 0.15, 0.25])
        el = int(rng.integers(4))
        if kind == "month_off":
            m = int(out[1])
            m = m - 1 if m == 12 or (m > 1 and rng.random() < 0.5) else m + 1
            out[1] = f"{m:02d}"
        elif kind == "swap" and out[el][0] != out[el][1]:
            out[el] = out[el][::-1]
        elif kind == "element":
            pool = (_MOTHER_NAMES if el == 0 else _PLACES[s] if el == 2 else
                    [f"{k:02d}" for k in (range(1, 13) if el == 1 else range(100))])
            choices = [v for v in pool if v != out[el]]
            out[el] = choices[int(rng.integers(len(choices)))]
        else:
            pos = int(rng.integers(2))
            ch = out[el][pos]
            nb = _KEY_NEIGHBOURS[ch]
            out[el] = (out[el][:pos] + nb[int(rng.integers(len(nb)))] + out[el][pos + 1 :])
        return out

    def written(code: list[str]) -> str:
        if rng.random() >= format_noise:
            return "".join(code)
        parts = list(code)
        if rng.random() < 0.3:
            parts[1] = parts[1].replace("0", "O") if parts[1].startswith("0") else parts[1]
        sep = str(rng.choice(["", " ", "-", " - ", "."]))
        if sep and parts[1].startswith("0") and rng.random() < 0.5:
            parts[1] = parts[1][1:]
        text = sep.join(parts)
        return text.lower() if rng.random() < 0.5 else text

    rows, truth = [], []
    for w in range(1, waves + 1):
        ids = sorted(present[w - 1])
        row_numbers = rng.permutation(len(ids)) + 2  # row 1 is the header
        for pid, row in zip(ids, row_numbers, strict=True):
            person = people[pid]
            code = person["code"]
            if rng.random() < typo_rate:
                code = erroneous(code, person["s"])
            rid = f"wave{w}.csv:row {row}"
            rows.append({"record_id": rid, "wave": w, "code": written(code),
                         "side": person["side"], "dialogue": person["dialogue"]})
            truth.append((rid, f"T{pid + 1:06d}"))
    records = pd.DataFrame(rows, columns=["record_id", "wave", "code", "side", "dialogue"])
    records = records.sort_values(["wave", "record_id"], kind="stable").reset_index(drop=True)
    truth_s = pd.Series(dict(truth), name="truth")
    truth_s.index.name = "record_id"
    return records, truth_s.reindex(records["record_id"])
