"""The one registry of ingest problem rules, as pandera names its failure reasons.

Every problem ingest reports, row by row (``ingest_problems.csv``, the ``quarantine`` table) or
as a file-level refusal, names one of these rules. Each rule has a scope (what is set aside),
a short description and what the evaluator can do about it, so a problem line always says the
rule and the fix.

>>> Rule.outside_scale.description
"value outside the item's scale"
>>> Rule("ambiguous_link").scope
'row'
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FILE_LEVEL", "Rule"]


class Rule(StrEnum):
    """An ingest problem rule; the value is the code stored in the ``rule`` column.

    Attributes
    ----------
    scope : str
        ``row`` (the whole row is quarantined), ``cell`` (one value is quarantined, the rest of
        the row stored), ``column`` (nothing of the column is stored), ``file`` (a warning about
        the file as a whole, nothing set aside) or ``refused`` (the file is not ingested).
    description : str
        What is wrong, for the problem line.
    fix : str
        What the evaluator can do.
    """

    scope: str
    description: str
    fix: str

    def __new__(cls, code: str, scope: str, description: str, fix: str) -> Rule:
        member = str.__new__(cls, code)
        member._value_ = code
        member.scope = scope
        member.description = description
        member.fix = fix
        return member

    # -- rows and cells of a wave file (validate.py) ---------------------------------------
    missing_participant_code = (
        "missing_participant_code", "row", "missing participant code",
        "fill in the code in the export, or leave the row out")
    duplicate_submission = (
        "duplicate_submission", "row",
        "duplicate submission (participant already answered this wave)",
        "keep one and re-ingest with --replace, or leave the first")
    outside_wave_window = (
        "outside_wave_window", "row", "answered outside the wave's fielding window",
        "check the wave's window: and the study's timezone: in study.yaml")
    unknown_arm = ("unknown_arm", "row", "arm not declared in study.yaml",
                   "declare the arm in study.yaml or correct the value")
    unknown_dialogue = ("unknown_dialogue", "row", "dialogue not declared in study.yaml",
                        "declare the dialogue in study.yaml or correct the value")
    unknown_side = ("unknown_side", "row", "side not one of the dialogue's sides",
                    "correct the value or the dialogue's sides: in study.yaml")
    outside_scale = ("outside_scale", "cell", "value outside the item's scale",
                     "correct the value, or declare it under missing_codes")
    not_a_number = ("not_a_number", "cell", "text where a number belongs",
                    "correct the value, or declare it under missing_codes")
    not_a_date = ("not_a_date", "cell", "not a date",
                  "write the date as YYYY-MM-DD hh:mm (with its offset if known)")
    unknown_item = ("unknown_item", "column", "column is not an item of the instrument",
                    "add it to instrument.yaml (items or renames) or to ignore_columns")
    encoding_suspect = (
        "encoding_suspect", "file", "many values of a declared category do not match",
        "set encoding: for this wave in study.yaml")
    all_rows_quarantined = (
        "all_rows_quarantined", "file", "every row of the wave was quarantined",
        "fix the problems listed in ingest_problems.csv and ingest again")
    # -- linkage (sgic.py) ------------------------------------------------------------------
    ambiguous_link = (
        "ambiguous_link", "row", "participant could not be linked without guessing",
        "decide in linkage_review.csv next to the store and ingest again")
    # -- linkage by participant code (core.py) ----------------------------------------------
    conflicting_attributes = (
        "conflicting_attributes", "row",
        "side, arm or dialogue differs from this code's earlier waves (a mistyped code may "
        "belong to someone else)",
        "correct the code or the attribute in the export and ingest again with --replace")
    unexpected_new_code = (
        "unexpected_new_code", "file",
        "code matches no participant of earlier waves although the study has no late "
        "entrants (stored as a new participant; a mistyped code splits a person in two)",
        "correct the code in the export and ingest again with --replace, or set "
        "linkage.late_entrants: true in study.yaml if people joined after baseline")
    # -- the contact roster (core.py) -------------------------------------------------------
    unknown_wave = ("unknown_wave", "row", "wave is not a wave of the study",
                    "correct the wave number")
    unknown_participant = (
        "unknown_participant", "row",
        "code is not a linked participant of the study (unknown, or its records are still "
        "ambiguous: see linkage_review.csv)",
        "correct the code, or decide the ambiguous links first")
    # -- the participant list and declared attributes (attributes.py) ----------------------
    missing_code = ("missing_code", "row", "missing participant code in the participant list",
                    "fill in the code in the list, or leave the row out")
    duplicate_code = (
        "duplicate_code", "row",
        "code listed twice in the participant list (the first row is used)",
        "keep one row per participant in the list")
    not_in_study = (
        "not_in_study", "row",
        "code in the participant list matches no participant of the ingested waves",
        "check the code, or the person has not answered yet")
    unknown_category = (
        "unknown_category", "cell", "value is not a declared category",
        "declare the category under attributes: in study.yaml or map it under the wave's "
        "recode:")
    conflicts_with_waves = (
        "conflicts_with_waves", "cell",
        "the participant list and the wave files disagree (the wave files' value is kept; "
        "correct one of them)",
        "correct the list or the wave file")

    # -- whole files: refused, nothing ingested (readers, validate.py) -----------------------
    missing_required_column = (
        "missing_required_column", "refused", "a required column is not in the header",
        "rename the column in the file or name it in instrument.yaml")
    header_not_on_first_row = (
        "header_not_on_first_row", "refused", "the column names are below row 1",
        "add header_row: to the wave in study.yaml")
    formula_without_value = (
        "formula_without_value", "refused", "a formula cell has no stored result",
        "open and save the file in Excel or LibreOffice, or export CSV")
    truncated_file = ("truncated_file", "refused", "the file is cut off",
                      "copy or download the export again")


# Rules that refuse a whole file: they appear in error messages, not in the quarantine table.
FILE_LEVEL: frozenset[Rule] = frozenset(r for r in Rule if r.scope == "refused")
