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
3. **The deciding rule.** Each record is compared with the *persons* formed by earlier waves
   in its block (every code a person has given counts). The *fuzzy radius* is one element:
   codes that agree on all elements but at most one, whatever the difference in that one.

   a. **Exact code.** The code is a code of exactly one person P: linked to P, unless another
      record of this wave also typed it (``same_wave_conflict``), two records of one earlier
      wave typed it (``shared_code``: two people may use it), or a person Q within one element
      of the code is neither *typed* (someone typed Q's code exactly in this wave) nor
      *accounted for* (a record of this wave whose candidates, leaving out typed persons, are
      Q alone) -- then the record may be Q's slip (``near_neighbour``). The code of two or
      more persons is never linked (``tied_candidates``).
   b. **No exact code.** Exactly one person within one element, and no earlier record still
      waiting for review within one element: linked to that person (``fuzzy``), *whatever the
      characters*, unless another record of this wave claims them (``same_wave_conflict``).
      Two or more persons: review (``several_candidates``, listed nearest first: keyboard
      slips -- one substitution, insertion, deletion or adjacent transposition in letters
      [4]_; a number off by one, a neighbour on the number row or two swapped digits in
      digits -- rank candidates and never exclude the only one). An unresolved record within
      one element: review (``near_unresolved``). Nobody within one element: a new person.
   c. **Never a silent new person.** A record with anyone within the fuzzy radius is linked
      or quarantined (``review_possible_matches=True``, the default) -- never stored as new.
      With ``review_possible_matches=False`` it is stored as new and *listed* in the review
      file (``possible_match``). In a study without late entrants (``late_entrants=False``)
      every record after baseline that becomes a new person is listed (``unexpected_new``)
      and counted per wave (``per_wave["new_unexpected"]``). With late entrants, a unique
      candidate differing by more than a slip may be a newcomer (``slip_or_newcomer``), and a
      match on values so common in the block that a newcomer would agree by chance is held
      (``common_code``: frequency-based Fellegi-Sunter agreement [5]_ [6]_ above
      ``max_chance_agreement``), and a new person within two elements of someone is listed
      (``possible_split``: a newcomer, or a person typed with two errors).
4. **Ambiguity stays local.** A record left for review is not a person: it never becomes a
   rival that holds back another person's exactly typed code, and no decision cascades within
   a wave (a person typed exactly counts as present whatever becomes of that record). It only
   holds back later records *without* an exact match that are within one element of it.
5. **Never guess.** A record that cannot be linked by these rules is quarantined (rule
   ``ambiguous_link``) and listed for the evaluator in ``linkage_review.csv`` with its
   candidates (record IDs and pseudonyms, never code values). ``fuzzy=False`` links exact
   codes only (records near a person are then held as ``possible_match``).

Measured on simulated panels (``python -m benchmarks.linkage``; figures in the README): no
wrong link except after two coincident errors that no code-based linkage can see (e.g. two
people of one wave each typing exactly the other's code), and no person split without a
review line.

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

from .codes import EXAMPLE_SGIC, CodeElement, CodeSpec
from .evaluate import score_linkage, simulate_sgic_panel
from .link import link_records
from .result import AMBIGUITY_REASONS, REVIEW_COLUMNS, LinkageResult, read_decisions

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
