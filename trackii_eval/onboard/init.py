"""``trackii-eval init DIR``: draft ``study.yaml`` and ``instrument.yaml`` from a folder of exports.

Everything the drafts say is a guess from the files, and every guess carries a ``# REVIEW``
comment saying what it was guessed from, so that the evaluator reads the draft once, corrects
it, and runs ``trackii-eval check``. What is read:

* every wave export in the folder (CSV, Excel, SPSS ``.sav``, Stata ``.dta``, Qualtrics,
  KoboToolbox), through the same readers ingest uses;
* SPSS/Stata variable labels and the Qualtrics question-text row as item texts, and value labels
  as scale point labels (a scale's range comes from its labels where it has them);
* a KoboToolbox XLSForm (a workbook with ``survey`` and ``choices`` sheets), when present, for
  question labels and choice lists;
* a participant list (a file with a code column and attribute columns but no items).

Guesses: participant columns (code, side, arm, dialogue) by name and label, per wave where a
wave names them differently; identifier columns (names, e-mails, phones, IP addresses,
locations, free text) by name and content; items in different waves with the same question text
under different names as one item (``renames:``); scales from labels, else from the observed
range snapped to a common response format; constructs from name prefixes, refined by the
items' correlations where there are enough responses (items of one prefix that do not correlate
with it move to the construct they do correlate with; constructs whose items correlate are
merged); reverse keys from negative item-rest correlations. No value of any cell is written to
the drafts except category names (sides, arms, dialogues) and scale labels.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import category_key
from ..errors import ConfigError, IngestError
from ..ingest.readers import RawTable, read_table

__all__ = ["Draft", "init_study", "propose"]

_DATA_SUFFIXES = {".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".sav", ".zsav", ".dta"}
# common response formats, smallest first: an item's observed range is snapped to the smallest
# format that contains it (a 7-point item nobody answered 1 or 7 on is still 1-7 only if it
# was seen at 1 or 7 somewhere; otherwise it is reported for review)
_FORMATS = [(0, 1), (1, 2), (1, 3), (1, 4), (0, 4), (1, 5), (0, 5), (1, 7), (0, 6), (0, 10),
            (1, 10), (0, 100)]
_MISSING_NUMBERS = {-99, -98, -97, -96, -88, -77, -9, -8, 99, 98, 999, 998}
_ROLE_NAMES = {
    "code": {"participantcode", "pcode", "code", "participantid", "pid", "respondentid", "idcode",
             "personalcode", "panelcode", "participant", "respondentcode", "externalreference"},
    "sgic": {"sgic", "selfcode", "selfgeneratedcode", "sgiccode", "generatedcode"},
    "side": {"side", "camp", "party", "community"},
    "arm": {"arm", "group", "condition", "treatment", "armid"},
    "dialogue": {"dialogue", "dialog", "process", "dialogueid"},
    "submitted_at": {"submittedat", "date", "submissiondate", "enddate", "recordeddate",
                     "interviewdate", "surveydate", "completed"},
}
_ROLE_LABEL_WORDS = {
    "code": ("participant code", "participant id", "your code", "personal code"),
    "sgic": ("self-generated", "self generated", "first two letters"),
    "side": ("which side", "your side"),
    "arm": ("study arm", "study group"),
    "dialogue": ("which dialogue",),
}
_IDENTIFIER_NAME = re.compile(
    r"(^|_)(first_?name|last_?name|full_?name|surname|name|e_?mail|email_?address|phone|mobile|"
    r"tel|telephone|ip|ip_?address|ipaddress|lat|latitude|lon|lng|longitude|address|street|"
    r"location|gps|geo|birth_?date|dob)($|_)", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")
_ATTRIBUTE_NAMES = {"gender", "sex", "sector", "role", "cohort", "profession", "affiliation",
                    "agegroup", "region", "occupation", "organisation", "organization"}
_IGNORE_NAMES = {"responseid", "_uuid", "uuid", "instanceid", "_id", "_index", "recordid"}
_OUTPUT_WORDS = {
    "moderation": ("mod", "facilitat", "moderat"),
    "ideas": ("idea", "option", "proposal"),
    "relationships": ("contact", "reach", "counterpart", "relation", "network", "friend",
                      "tie"),
}


# ordered response vocabularies of exports that write choice text, not codes (Qualtrics "use
# choice text", Excel sheets typed by hand): the points are numbered from 1 in this order
_VOCABULARIES = [
    ["Strongly disagree", "Disagree", "Somewhat disagree", "Neither agree nor disagree",
     "Somewhat agree", "Agree", "Strongly agree"],
    ["Strongly disagree", "Disagree", "Neither agree nor disagree", "Agree", "Strongly agree"],
    ["Strongly disagree", "Disagree", "Neutral", "Agree", "Strongly agree"],
    ["Never", "Rarely", "Sometimes", "Often", "Always"],
    ["Not at all", "A little", "Somewhat", "Quite a bit", "A great deal"],
]
_VOCAB_MISSING = {"don't know", "dont know", "prefer not to say", "refused", "no answer",
                  "not applicable", "n/a"}


def _vocabulary(values: pd.Series) -> dict[int, str] | None:
    """The smallest known ordered vocabulary holding every text answer of a column, if any."""
    texts = {str(v).strip().casefold() for v in values if not _is_blank(v)} - _VOCAB_MISSING
    if len(texts) < 2:
        return None
    for vocab in sorted(_VOCABULARIES, key=len):
        if texts <= {v.casefold() for v in vocab}:
            return {i: v for i, v in enumerate(vocab, start=1)}
    return None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def _text_key(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


@dataclass
class _Column:
    wave: int
    name: str
    label: str = ""
    value_labels: dict[Any, str] = field(default_factory=dict)
    values: pd.Series | None = None


@dataclass
class Draft:
    """The drafted configuration and what was guessed.

    Attributes
    ----------
    study_yaml, instrument_yaml : str
        The drafts as YAML text, every guess followed by a ``# REVIEW`` comment.
    items : dict
        Item id -> construct, scale (min, max) and reverse key, as proposed.
    constructs : dict
        Construct -> list of item ids.
    review : list of str
        The guesses, one line each (as in the drafts' comments).
    written : list of Path
        The files written (empty when only proposed).
    """

    study_yaml: str
    instrument_yaml: str
    items: dict[str, dict[str, Any]]
    constructs: dict[str, list[str]]
    review: list[str]
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """Text for people: what was written and how many guesses await review."""
        lines = [f"wrote {p}" for p in self.written]
        lines.append(f"{len(self.constructs)} construct(s), {len(self.items)} item(s), "
                     f"{len(self.review)} guess(es) marked '# REVIEW' in the drafts")
        lines.append("next: read every '# REVIEW' line, correct it, then run "
                     "`trackii-eval check` on the folder")
        return "\n".join(lines)


def init_study(path: str | Path, *, overwrite: bool = False) -> Draft:
    """Draft and write ``study.yaml`` and ``instrument.yaml`` into a folder of exports.

    Parameters
    ----------
    path
        The folder holding the wave exports (searched recursively).
    overwrite
        Replace existing drafts; by default an existing ``study.yaml`` or ``instrument.yaml``
        is never overwritten.

    Raises
    ------
    ConfigError
        When the folder has no readable export, or the drafts exist and ``overwrite`` is false.
    """
    root = Path(path)
    targets = [root / "study.yaml", root / "instrument.yaml"]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]}: already exists; move it away or use --force to "
                          "draft over it")
    draft = propose(root)
    targets[0].write_text(draft.study_yaml, encoding="utf-8")
    targets[1].write_text(draft.instrument_yaml, encoding="utf-8")
    draft.written = targets
    return draft


# ----------------------------------------------------------------------------- reading


def _find_files(root: Path) -> tuple[list[Path], Path | None]:
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of exports")
    files, xlsform = [], None
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in _DATA_SUFFIXES or p.name.startswith("."):
            continue
        if p.suffix.lower() in {".xlsx", ".xlsm"} and _is_xlsform(p):
            xlsform = p
            continue
        files.append(p)
    return files, xlsform


def _is_xlsform(path: Path) -> bool:
    try:
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True)
        names = {s.casefold() for s in book.sheetnames}
        book.close()
    except Exception:
        return False
    return {"survey", "choices"} <= names


def _read_xlsform(path: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Question labels by name and choice lists (name -> label) by question name."""
    sheets = pd.read_excel(path, sheet_name=None, dtype=str)
    lower = {k.casefold(): v for k, v in sheets.items()}
    survey, choices = lower["survey"], lower["choices"]
    survey.columns = [str(c).strip().casefold() for c in survey.columns]
    choices.columns = [str(c).strip().casefold() for c in choices.columns]
    label_col = next((c for c in survey.columns if c.startswith("label")), None)
    clabel = next((c for c in choices.columns if c.startswith("label")), None)
    lists: dict[str, dict[str, str]] = defaultdict(dict)
    for rec in choices.to_dict(orient="records"):
        if isinstance(rec.get("list_name"), str) and rec.get("name") is not None:
            lists[rec["list_name"].strip()][str(rec["name"]).strip()] = str(
                rec.get(clabel) or rec["name"]).strip()
    labels, by_question = {}, {}
    for rec in survey.to_dict(orient="records"):
        name, kind = rec.get("name"), str(rec.get("type") or "")
        if not isinstance(name, str):
            continue
        if label_col and isinstance(rec.get(label_col), str):
            labels[name.strip()] = rec[label_col].strip()
        if kind.startswith("select_one"):
            parts = kind.split()
            if len(parts) > 1 and parts[1] in lists:
                by_question[name.strip()] = lists[parts[1]]
    return labels, by_question


def _numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.map(lambda v: v if not isinstance(v, str)
                                    else v.strip().replace(",", ".")), errors="coerce")


def _is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (
        isinstance(v, str) and not v.strip())


# ----------------------------------------------------------------------------- classification


def _role_of(name: str, label: str) -> str | None:
    key = _norm(name)
    for role, names in _ROLE_NAMES.items():
        if key in names:
            return role
    text = label.casefold()
    for role, words in _ROLE_LABEL_WORDS.items():
        if any(w in text for w in words):
            return role
    return None


def _identifier_reason(name: str, label: str, values: pd.Series) -> str | None:
    label_words = "_".join(re.findall(r"[a-z0-9]+", label.casefold()))
    if _IDENTIFIER_NAME.search(name) or (label and _IDENTIFIER_NAME.search(label_words)):
        return "its name or label looks like a direct identifier"
    text = values.dropna().map(str).map(str.strip)
    text = text[text != ""]
    if not len(text):
        return None
    if text.map(lambda v: bool(_EMAIL.match(v))).mean() > 0.5:
        return "its values look like e-mail addresses"
    if text.map(lambda v: bool(_IPV4.match(v))).mean() > 0.5:
        return "its values look like IP addresses"
    numeric = _numeric(text).notna().mean() > 0.8
    if not numeric and text.map(lambda v: bool(_PHONE.match(v))).mean() > 0.5:
        return "its values look like phone numbers"
    if not numeric and text.map(len).mean() > 25 and text.nunique() > 0.5 * len(text):
        return "free text (long, mostly unique answers) can name people"
    return None


@dataclass
class _WaveInfo:
    index: int
    path: Path
    raw: RawTable
    roles: dict[str, str] = field(default_factory=dict)  # role -> column in this file
    items: dict[str, str] = field(default_factory=dict)  # column -> item id
    identifiers: dict[str, str] = field(default_factory=dict)  # column -> reason
    ignore: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)  # further participant attributes
    dates: pd.Series | None = None


def propose(root: Path) -> Draft:
    """Read a folder of exports and propose the study and instrument (nothing is written).

    Returns
    -------
    Draft

    Raises
    ------
    ConfigError
        When the folder holds no readable export.
    """
    root = Path(root)
    files, xlsform = _find_files(root)
    form_labels, form_choices = _read_xlsform(xlsform) if xlsform else ({}, {})
    review: list[str] = []
    raws: list[tuple[Path, RawTable]] = []
    for p in files:
        try:
            raws.append((p, read_table(p)))
        except IngestError as exc:
            review.append(f"{p.name}: not read ({str(exc).splitlines()[0]})")
    if not raws:
        raise ConfigError(f"{root}: no readable wave export (CSV, Excel, SPSS, Stata, "
                          "Qualtrics or KoboToolbox) in this folder")
    waves: list[_WaveInfo] = []
    participant_list: tuple[Path, RawTable, dict[str, str]] | None = None
    for p, raw in raws:
        info = _classify(p, raw, form_labels)
        n_items = sum(1 for c in info.items)
        has_code = "code" in info.roles or "sgic" in info.roles
        if has_code and n_items == 0 and participant_list is None:
            participant_list = (p, raw, info.roles)
            continue
        waves.append(info)
    waves.sort(key=_wave_sort_key)
    for i, w in enumerate(waves, start=1):
        w.index = i
    items, renames, columns = _unify_items(waves, form_labels, form_choices)
    scales, item_scale, missing, scale_notes = _scales(items, columns)
    review += scale_notes
    constructs, reverse, construct_notes = _constructs(items, columns, item_scale, scales)
    review += construct_notes
    constructs = _name_by_output(constructs, item_scale)
    study_yaml, study_notes = _study_yaml(root, waves, participant_list, form_choices)
    review += study_notes
    instrument_yaml = _instrument_yaml(waves, items, columns, scales, item_scale, missing,
                                       constructs, reverse, renames, form_labels)
    review += [line.split("# REVIEW: ", 1)[1] for line in instrument_yaml.splitlines()
               if "# REVIEW: " in line]
    proposed = {
        item: {"construct": c, "scale": (scales[item_scale[item]]["min"],
                                         scales[item_scale[item]]["max"]),
               "reverse": item in reverse}
        for c, members in constructs.items() for item in members
    }
    return Draft(study_yaml, instrument_yaml, proposed, constructs, review)


def _classify(path: Path, raw: RawTable, form_labels: dict[str, str]) -> _WaveInfo:
    info = _WaveInfo(0, path, raw)
    data = raw.data
    meta = set(raw.metadata_columns)
    for column in data.columns:
        name = str(column)
        label = raw.column_labels.get(name, "") or form_labels.get(name, "")
        values = data[name]
        if name in raw.identifier_columns:
            info.identifiers[name] = "the export platform marks it as an identifier"
            continue
        if name in meta or _norm(name) in {_norm(n) for n in _IGNORE_NAMES}:
            info.ignore.append(name)
            continue
        role = _role_of(name, label)
        if role is not None and role not in info.roles:
            info.roles[role] = name
            continue
        reason = _identifier_reason(name, label, values)
        if reason:
            info.identifiers[name] = reason
            continue
        numeric = _numeric(values)
        present = values.map(lambda v: not _is_blank(v))
        share = numeric[present].notna().mean() if present.any() else 0.0
        if _norm(name) in _ATTRIBUTE_NAMES:
            info.attributes.append(name)
            info.roles[name] = name
            continue
        if share >= 0.8 or raw.value_labels.get(name) or _vocabulary(values[present]):
            info.items[name] = name
            continue
        text = values[present].map(lambda v: str(v).strip())
        if present.any() and text.nunique() > 0.8 * len(text) and len(text) >= 5:
            info.identifiers[name] = "mostly unique text (a code or free text)"
        elif present.any() and text.nunique() <= min(12, max(2, len(text) // 2)):
            info.attributes.append(name)  # a few categories: a participant attribute
            info.roles[name] = name
        else:
            info.ignore.append(name)
    if raw.row_meta is not None and raw.row_meta["submitted_at"].notna().any():
        info.dates = pd.to_datetime(raw.row_meta["submitted_at"], errors="coerce")
    elif "submitted_at" in info.roles:
        info.dates = pd.to_datetime(data[info.roles["submitted_at"]], errors="coerce",
                                    format="mixed")
    return info


def _wave_sort_key(w: _WaveInfo) -> tuple[Any, ...]:
    if w.dates is not None and w.dates.notna().any():
        return (0, w.dates.dropna().median(), w.path.name)
    return (1, pd.Timestamp(0), w.path.name)


def _unify_items(waves: list[_WaveInfo], form_labels: dict[str, str],
                 form_choices: dict[str, dict[str, str]]
                 ) -> tuple[list[str], dict[int, dict[str, str]], dict[str, list[_Column]]]:
    """One item id per question: columns with the same question text are the same item."""
    by_text: dict[str, str] = {}
    columns: dict[str, list[_Column]] = defaultdict(list)
    renames: dict[int, dict[str, str]] = defaultdict(dict)
    # names like Q5_1 say nothing; prefer a descriptive name for the item id
    def generic(name: str) -> bool:
        return bool(re.fullmatch(r"(?i)q\d+(_\d+)*|v\d+|var\d+|item\d+", name))

    ordered = sorted(((w, c) for w in waves for c in w.items), key=lambda wc: generic(wc[1]))
    for w, column in ordered:
        label = w.raw.column_labels.get(column, "") or form_labels.get(column, "")
        key = _text_key(label) if len(_text_key(label)) >= 12 else ""
        item = by_text.get(key) if key else None
        if item is None:
            item = column
            if key:
                by_text[key] = item
        w.items[column] = item
        if column != item:
            renames[w.index][column] = item
        labels = dict(w.raw.value_labels.get(column) or {})
        if not labels and column in form_choices:
            labels = {k: v for k, v in form_choices[column].items()}
        if not labels:
            labels = dict(_vocabulary(w.raw.data[column]) or {})
        columns[item].append(_Column(w.index, column, label, labels, w.raw.data[column]))
    items = list(dict.fromkeys(i for w in waves for i in w.items.values()))
    # an item renamed between waves (trust_other_1 in waves 1-2, trust_other_a from wave 3):
    # the same name stem, never in the same wave, and both ranges alike
    def stem(name: str) -> str:
        return re.sub(r"[_\-.]?([0-9]+|[a-z])$", "", name)

    waves_of = {i: {c.wave for c in columns[i]} for i in items}
    for i, later in enumerate(items):
        for first in items[:i]:
            if first not in columns or later not in columns or first == later:
                continue
            if stem(first) != stem(later) or waves_of[first] & waves_of[later]:
                continue
            if max(waves_of[first]) > min(waves_of[later]):
                continue
            siblings = [x for x in items if x not in (first, later) and stem(x) == stem(first)
                        and x in columns]
            if any(not (waves_of[x] >= waves_of[first] | waves_of[later]) for x in siblings):
                continue
            for col in columns.pop(later):
                renames[col.wave][col.name] = first
                columns[first].append(col)
            waves_of[first] |= waves_of[later]
            for w in waves:
                for c, it in w.items.items():
                    if it == later:
                        w.items[c] = first
            break
    items = [i for i in items if i in columns]
    return items, dict(renames), columns


def _scales(items: list[str], columns: dict[str, list[_Column]]
            ) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, str], list[str]]:
    scales: dict[str, dict[str, Any]] = {}
    item_scale: dict[str, str] = {}
    missing: dict[str, str] = {}
    notes: list[str] = []
    texts: Counter[str] = Counter()
    for item in items:
        values, labels = [], {}
        for col in columns[item]:
            nums = _numeric(col.values)
            by_label = {str(t).strip().casefold(): k for k, t in col.value_labels.items()}
            for v, n in zip(col.values, nums, strict=True):
                if _is_blank(v):
                    continue
                if pd.isna(n) and str(v).strip().casefold() in by_label:
                    continue  # choice text of a labelled point: the labels give the range
                if pd.isna(n):
                    texts[str(v).strip()] += 1
                elif n in _MISSING_NUMBERS and not (0 <= n <= 10):
                    missing.setdefault(f"{n:g}", "missing")
                else:
                    values.append(float(n))
            for k, v in col.value_labels.items():
                try:
                    kk = float(k)
                except (TypeError, ValueError):
                    continue
                if kk in _MISSING_NUMBERS and not (0 <= kk <= 10):
                    missing.setdefault(f"{kk:g}", str(v))
                    continue
                if kk < 0:  # a negative labelled value is a missing code ("Refused")
                    missing.setdefault(f"{kk:g}", str(v))
                    continue
                labels[int(kk) if kk.is_integer() else kk] = str(v)
        if labels and len(labels) >= 2:
            lo, hi = min(labels), max(labels)
            basis = "value labels"
        elif values:
            lo, hi = min(values), max(values)
            fits = [f for f in _FORMATS if f[0] <= lo and f[1] >= hi]
            if fits:
                lo, hi = min(fits, key=lambda f: (f[1] - f[0], f[0] != lo))
                basis = "observed range"
            else:
                lo, hi = 0, _nice(hi)
                basis = "observed range (a count or amount?)"
        else:
            lo, hi, basis = 1, 5, "nothing observed"
        if hi <= lo:
            hi = lo + 1
        name = _scale_name(lo, hi, labels)
        if name not in scales:
            scales[name] = {"min": lo, "max": hi, "labels": labels, "basis": basis}
        item_scale[item] = name
    # text where a number belongs is a missing code only when it recurs and is short; a one-off
    # answer typed into a number field can name someone, so it is counted, never copied
    odd = 0
    for text, count in texts.items():
        looks_personal = bool(_EMAIL.match(text) or _IPV4.match(text) or _PHONE.match(text))
        if (count >= 2 or text.casefold() in _VOCAB_MISSING) and len(text) <= 30 \
                and not looks_personal:
            missing.setdefault(text, text.casefold())
        else:
            odd += count
    if odd:
        notes.append(f"{odd} one-off text answer(s) in number items are not shown; ingest "
                     "will report each by file, row and column")
    return scales, item_scale, missing, notes


def _nice(x: float) -> int:
    magnitude = 10 ** max(1, int(math.log10(max(x, 1))))
    return int(math.ceil(x / magnitude) * magnitude)


def _scale_name(lo: float, hi: float, labels: dict[Any, str]) -> str:
    if (lo, hi) == (0, 1):
        return "yesno"
    if (lo, hi) == (0, 100):
        return "range0_100"
    if lo == 0 and hi > 100:
        return f"count{int(hi)}"
    text = " ".join(labels.values()).casefold()
    stem = "agree" if "agree" in text else "points"
    if lo == 1:
        return f"{stem}{int(hi)}"
    return f"{stem}{int(lo)}_{int(hi)}"


def _prefix(item: str) -> str:
    stem = re.sub(r"[_\-.]?\d+[a-z]?$", "", item)
    return re.split(r"[_\-.]", stem)[0].casefold() or stem


def _constructs(items: list[str], columns: dict[str, list[_Column]], item_scale: dict[str, str],
                scales: dict[str, dict[str, Any]]
                ) -> tuple[dict[str, list[str]], set[str], list[str]]:
    """Constructs from name prefixes, refined by correlations; reverse keys from item-rest r."""
    notes: list[str] = []
    groups: dict[str, list[str]] = defaultdict(list)
    for item in items:
        groups[_prefix(item)].append(item)
    # responses per item, aligned by wave and row (rows within a wave are one respondent)
    frame = {}
    for item in items:
        parts = []
        for col in columns[item]:
            nums = _numeric(col.values)
            if col.value_labels:  # choice text written instead of the point's number
                by_label = {str(t).strip().casefold(): k for k, t in col.value_labels.items()}
                as_label = col.values.map(lambda v, m=by_label: m.get(str(v).strip().casefold()))
                nums = nums.fillna(_numeric(as_label))
            s = scales[item_scale[item]]
            nums = nums.where((nums >= s["min"]) & (nums <= s["max"]))
            parts.append(pd.Series(nums.to_numpy(), index=pd.MultiIndex.from_arrays(
                [np.full(len(nums), col.wave), np.arange(len(nums))])))
        frame[item] = pd.concat(parts)
    data = pd.DataFrame(frame)
    corr = data.corr(min_periods=20) if len(data) >= 20 else None
    if corr is not None:
        groups = _refine(groups, corr)
    constructs = {name: members for name, members in groups.items()}
    reverse: set[str] = set()
    if corr is not None:
        for members in constructs.values():
            if len(members) < 3:
                continue
            for item in members:
                rest = [m for m in members if m != item]
                r = corr.loc[item, rest].mean()
                if pd.notna(r) and r < -0.1:
                    reverse.add(item)
    return constructs, reverse, notes


def _refine(groups: dict[str, list[str]], corr: pd.DataFrame) -> dict[str, list[str]]:
    absr = corr.abs()

    def link(a: list[str], b: list[str]) -> float:
        vals = absr.loc[a, b].to_numpy(dtype=float)
        if a == b:
            vals = vals[~np.eye(len(a), dtype=bool)]
        vals = vals[~np.isnan(vals)]
        return float(vals.mean()) if len(vals) else float("nan")

    groups = {k: list(v) for k, v in groups.items()}
    # 1. an item that does not go with its prefix but clearly with another group moves there
    for name in list(groups):
        for item in list(groups.get(name, [])):
            own = [m for m in groups[name] if m != item]
            own_r = link([item], own) if own else float("nan")
            best, best_r = None, 0.0
            for other, members in groups.items():
                if other == name or not members:
                    continue
                r = link([item], members)
                if r > best_r:
                    best, best_r = other, r
            if best is not None and best_r > 0.35 and (math.isnan(own_r) or own_r < 0.2):
                groups[name].remove(item)
                groups[best].append(item)
    groups = {k: v for k, v in groups.items() if v}
    # 2. groups whose items correlate are one construct (average linkage on |r|)
    while True:
        names = list(groups)
        best, best_r = None, 0.35
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                r = link(groups[a], groups[b])
                if r > best_r:
                    best, best_r = (a, b), r
        if best is None:
            break
        a, b = best
        keep, drop = (a, b) if len(groups[a]) >= len(groups[b]) else (b, a)
        groups[keep] += groups.pop(drop)
    # a merged construct is named after its most common prefix
    named: dict[str, list[str]] = {}
    for members in groups.values():
        name = Counter(_prefix(m) for m in members).most_common(1)[0][0]
        while name in named:
            name += "_2"
        named[name] = members
    return named


def _output_of(name: str, members: list[str], item_scale: dict[str, str]) -> tuple[str, bool]:
    """Guess a construct's Allen-Sharp output, and whether it is a behaviour scored raw.

    Yes/no items, counts and lone items on a 0-100 range that correlate with no other item
    (an allocation, a donation) are taken for behaviours; otherwise words in the names decide,
    and perceptions is the default.
    """
    text = " ".join([name, *members]).casefold()
    scales = [item_scale[m] for m in members]
    if all(s == "yesno" or s.startswith("count") for s in scales) \
            or all(m.startswith(("n_", "count", "num")) for m in members) \
            or (len(members) == 1 and scales[0] == "range0_100"):
        return "behaviour", True
    for output, words in _OUTPUT_WORDS.items():
        if any(re.search(rf"(^|[_\s]){w}", text) for w in words):
            return output, False
    return "perceptions", False


def _name_by_output(constructs: dict[str, list[str]], item_scale: dict[str, str]
                    ) -> dict[str, list[str]]:
    """Name the one construct of an Allen-Sharp output after it.

    The default analysis plan models constructs called ``perceptions`` and ``relationships``.
    """
    outputs = {name: _output_of(name, members, item_scale)[0]
               for name, members in constructs.items()}
    per_output = Counter(outputs.values())
    named = {}
    for name, members in constructs.items():
        output = outputs[name]
        if per_output[output] == 1 and output != "behaviour" and output not in constructs:
            name = output
        named[name] = members
    return named


# ----------------------------------------------------------------------------- writing


def _q(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_ .\-/]*", text) and text.casefold() not in {
            "yes", "no", "true", "false", "null", "on", "off"}:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _choice_labels(w: _WaveInfo, column: str, form_choices: dict[str, dict[str, str]]
                   ) -> dict[str, str]:
    """XLSForm choice labels of a Kobo wave's select_one column, where names and labels differ.

    Ingest applies SPSS/Stata value labels itself; Kobo exports carry choice *names*, so a
    wave's ``recode:`` has to say what they mean.
    """
    if w.raw.format != "kobo" or column not in form_choices:
        return {}
    return {name: label for name, label in form_choices[column].items()
            if category_key(name) != category_key(label)}


def _categories(waves: list[_WaveInfo], role: str,
                form_choices: dict[str, dict[str, str]] | None = None
                ) -> tuple[list[str], dict[int, dict[str, str]]]:
    """Declared categories of a role across waves (labels applied) and per-wave recodes."""
    seen: Counter[str] = Counter()
    recodes: dict[int, dict[str, str]] = {}
    for w in waves:
        col = w.roles.get(role)
        if col is None:
            continue
        labels = {category_key(k): v for k, v in (w.raw.value_labels.get(col) or {}).items()}
        choices = _choice_labels(w, col, form_choices or {})
        if choices:
            recodes[w.index] = choices
            labels.update({category_key(k): v for k, v in choices.items()})
        for v in w.raw.data[col]:
            if _is_blank(v):
                continue
            text = str(labels.get(category_key(v), v)).strip()
            seen[text] += 1
    canon: dict[str, str] = {}
    for text, _ in seen.most_common():
        canon.setdefault(category_key(text), text)
    return list(canon.values()), recodes


def _code_shape(codes: pd.Series) -> list[tuple[str, int]]:
    """Most common run pattern of letters and digits in the codes (``AB12CD34`` -> 4 runs)."""
    shapes: Counter[tuple[tuple[str, int], ...]] = Counter()
    for code in codes:
        if _is_blank(code):
            continue
        runs = re.findall(r"[A-Za-z]+|[0-9]+", str(code))
        shapes[tuple(("letters" if r[0].isalpha() else "digits", len(r)) for r in runs)] += 1
    if not shapes:
        return [("any", 2), ("any", 2)]
    return list(shapes.most_common(1)[0][0])


def _study_yaml(root: Path, waves: list[_WaveInfo],
                participant_list: tuple[Path, RawTable, dict[str, str]] | None,
                form_choices: dict[str, dict[str, str]]) -> tuple[str, list[str]]:
    notes: list[str] = []
    out = ["# Drafted by `trackii-eval init` from the exports in this folder. Every line marked",
           "# REVIEW is a guess: read it, correct it, then run `trackii-eval check` here.",
           f"id: {_q(re.sub(r'[^A-Za-z0-9_-]', '-', root.resolve().name) or 'study')}"
           "  # REVIEW: study id (letters, digits, - and _)",
           f"name: {_q(root.resolve().name)}  # REVIEW: the study's name in the report",
           "instrument: instrument.yaml"]
    sides, side_recode = _categories(waves, "side", form_choices)
    dialogues, dialogue_recode = _categories(waves, "dialogue", form_choices)
    dialogues = sorted(dialogues)
    arms, arm_recode = _categories(waves, "arm", form_choices)
    recodes = {"side": side_recode, "dialogue": dialogue_recode, "arm": arm_recode}
    if participant_list is not None:
        plist = _WaveInfo(0, participant_list[0], participant_list[1],
                          roles=dict(participant_list[2]))
        for role, target in (("side", sides), ("dialogue", dialogues), ("arm", arms)):
            extra, _ = _categories([plist], role)
            target += [e for e in extra if category_key(e) not in map(category_key, target)]
    sides = sides or ["A", "B"]
    if len(sides) != 2:
        notes.append(f"sides: {len(sides)} values found; a dialogue has two sides")
    out.append("dialogues:")
    for d in dialogues or ["D1"]:
        out.append(f"  - {{id: {_q(d)}, name: {_q(d)}, sides: [{', '.join(map(_q, sides[:2]))}]}}"
                   "  # REVIEW: name and sides" + (" (no dialogue column found)"
                                                   if not dialogues else ""))
    out.append("arms:")
    comparison = next((a for a in arms if re.search(r"(?i)comp|control|non", a)), None)
    if not arms:
        out.append("  - {id: dialogue}  # REVIEW: no arm column found in the exports; give arms"
                   " in a participant list (participants:)")
        out.append("  - {id: comparison, comparison: true}  # REVIEW")
    for a in arms:
        flag = ", comparison: true" if a == comparison else ""
        out.append(f"  - {{id: {_q(a)}{flag}}}  # REVIEW: "
                   + ("guessed as the comparison arm" if flag else
                      "arm found in the exports or the participant list"))
    out.append("waves:")
    code_role = "sgic" if any("sgic" in w.roles for w in waves) else "code"
    canonical = Counter(w.roles.get(code_role) for w in waves if w.roles.get(code_role))
    code_name = canonical.most_common(1)[0][0] if canonical else "participant_code"
    for i, w in enumerate(waves):
        rel = w.path.relative_to(root).as_posix()
        dates = w.dates.dropna() if w.dates is not None else pd.Series(dtype="datetime64[ns]")
        if len(dates):
            date = dates.median().date()
            window = f", window: [{dates.min().date()}, {dates.max().date()}]"
            why = "date: median response date; window: first and last response"
        else:
            date = dt.date(2000 + i, 1, 1)
            window = ""
            why = "no response dates in the file: set the fielding date"
        phase = "baseline" if i == 0 else ("post" if i == 1 else "follow_up")
        extra = []
        mapping = {}
        for role in ("code", "sgic", "side", "arm", "dialogue"):
            col = w.roles.get(role)
            if col is None:
                continue
            target = {"code": "participant_code" if code_role == "sgic" else code_name,
                      "sgic": code_name}.get(role, role)
            if role == "code" and code_role == "sgic":
                continue  # an assigned code beside a self-generated one is an identifier
            if col != target:
                mapping["code" if role in ("code", "sgic") else role] = col
        if mapping:
            extra.append("columns: {" + ", ".join(f"{k}: {_q(v)}" for k, v in mapping.items())
                         + "}")
        recode = {role: r[w.index] for role, r in recodes.items() if w.index in r}
        if recode:
            extra.append("recode: {" + ", ".join(
                f"{role}: {{" + ", ".join(f"{_q(k)}: {_q(v)}" for k, v in m.items()) + "}"
                for role, m in recode.items()) + "}")
            mapping["recode"] = "from the XLSForm's choices"
        extra_text = (",\n     " + ", ".join(extra)) if extra else ""
        out.append(f"  - {{index: {i + 1}, label: {_q('Wave ' + str(i + 1))}, phase: {phase}, "
                   f"date: {date}, file: {_q(rel)}{window}{extra_text}}}"
                   f"  # REVIEW: label, phase; {why}"
                   + ("; participant columns named or recoded for this wave" if mapping else ""))
    if participant_list is not None:
        p, _, roles = participant_list
        code_col = roles.get("code") or roles.get("sgic")
        out.append(f"participants: {{file: {_q(p.relative_to(root).as_posix())}, "
                   f"code: {_q(code_col or 'code')}}}  # REVIEW: the evaluator's participant "
                   "list (never stored; codes are pseudonymized)")
    if code_role == "sgic":
        codes = pd.concat([w.raw.data[w.roles["sgic"]] for w in waves if w.roles.get("sgic")])
        out += ["linkage:  # REVIEW: a self-generated code was found; name its elements",
                "  method: sgic", f"  column: {_q(code_name)}", "  elements:"]
        for i, (kind, length) in enumerate(_code_shape(codes), start=1):
            out.append(f"    - {{name: element_{i}, length: {length}, kind: {kind}}}"
                       "  # REVIEW: from the codes' most common shape")
    if not any(w.roles.get(code_role) for w in waves):
        notes.append("no participant code column recognised in any wave: name it per wave "
                     "under waves[].columns: {code: ...}")
    names = list(dict.fromkeys(a for w in waves for a in w.attributes))
    if participant_list is not None:
        for column in participant_list[1].data.columns:
            if _norm(str(column)) in _ATTRIBUTE_NAMES and column not in names:
                names.append(str(column))
    if names:
        out.append("attributes:  # further participant attributes and their categories")
        for name in names:
            cats, _ = _categories(waves, name, form_choices)
            if participant_list is not None and name in participant_list[1].data.columns:
                plist = _WaveInfo(0, participant_list[0], participant_list[1],
                                  roles={name: name})
                extra, _ = _categories([plist], name)
                cats += [e for e in extra if category_key(e) not in map(category_key, cats)]
            out.append(f"  {_q(name)}: [{', '.join(_q(c) for c in cats)}]  # REVIEW: "
                       "categories seen in the files")
    out.append("privacy: {min_cell_size: 5}")
    return "\n".join(out) + "\n", notes


def _instrument_yaml(waves: list[_WaveInfo], items: list[str],
                     columns: dict[str, list[_Column]], scales: dict[str, dict[str, Any]],
                     item_scale: dict[str, str], missing: dict[str, str],
                     constructs: dict[str, list[str]], reverse: set[str],
                     renames: dict[int, dict[str, str]], form_labels: dict[str, str]) -> str:
    out = ["# Drafted by `trackii-eval init`. Every line marked REVIEW is a guess.",
           "name: Drafted instrument  # REVIEW", "scales:"]
    for name, s in scales.items():
        labels = ""
        if s["labels"]:
            labels = ", labels: {" + ", ".join(f"{k}: {_q(str(v))}"
                                               for k, v in sorted(s["labels"].items())) + "}"
        out.append(f"  {name}: {{min: {s['min']:g}, max: {s['max']:g}{labels}}}"
                   f"  # REVIEW: from {s['basis']}")
    if missing:
        out.append("missing_codes:")
        for k, v in missing.items():
            out.append(f"  {_q(k)}: {_q(v)}  # REVIEW: seen where a number belongs")
    code_role = "sgic" if any("sgic" in w.roles for w in waves) else "code"
    ids: dict[str, str] = {}
    for w in waves:
        ids.update(w.identifiers)
        if code_role == "sgic" and w.roles.get("code"):
            ids.setdefault(w.roles["code"], "an assigned code beside the self-generated one")
    if ids:
        out.append("identifiers:  # never stored")
        for col, why in ids.items():
            out.append(f"  - {_q(col)}  # REVIEW: {why}")
    ignore = sorted({c for w in waves for c in w.ignore})
    if ignore:
        out.append("ignore_columns:")
        for col in ignore:
            out.append(f"  - {_q(col)}  # REVIEW: platform metadata or text that is no item")
    canonical = {}
    for role in ("code", "sgic", "side", "arm", "dialogue", "submitted_at"):
        names = Counter(w.roles.get(role) for w in waves if w.roles.get(role))
        if names:
            canonical[role] = names.most_common(1)[0][0]
    pid = canonical.get("code", "participant_code") if code_role == "code" else \
        "participant_code"
    out.append("participant: {" + f"id: {_q(pid)}, side: side, arm: arm, dialogue: dialogue, "
               f"submitted_at: {_q(canonical.get('submitted_at', 'submitted_at'))}" + "}")
    out.append("constructs:")
    for name, members in constructs.items():
        output, raw = _output_of(name, members, item_scale)
        out.append(f"  {_q(name)}:")
        out.append(f"    output: {output}  # REVIEW: guessed from the names")
        if raw:
            out.append("    kind: behaviour  # REVIEW: counts or yes/no, scored raw")
            out.append("    scoring: raw")
        why = "prefix" if len({_prefix(m) for m in members}) == 1 else \
            "prefixes merged because their items correlate"
        out.append(f"    items:  # REVIEW: grouped by name {why}")
        for item in members:
            label = next((c.label for c in columns[item] if c.label), "") or \
                form_labels.get(item, "")
            rev = ", reverse: true" if item in reverse and not raw else ""
            text = f", text: {_q(label[:200])}" if label else ""
            note = "  # REVIEW: reverse keyed (negative item-rest correlation)" if rev else ""
            out.append(f"      - {{id: {_q(item)}, scale: {item_scale[item]}{rev}{text}}}{note}")
    if renames:
        out.append("renames:  # the same question under another name in these waves")
        for wave, mapping in sorted(renames.items()):
            inner = ", ".join(f"{_q(k)}: {_q(v)}" for k, v in mapping.items())
            out.append(f"  {wave}: {{{inner}}}  # REVIEW: the same question (by text or name "
                       "stem)")
    return "\n".join(out) + "\n"
