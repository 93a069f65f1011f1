"""De-identified microdata export for archiving with scholars.

What goes out
    ``participants.csv`` (one row per participant: export pseudonym, arm, side, dialogue and
    whatever coarse attributes the store holds, ages only as bands), ``responses.csv`` (item
    answers, long: participant, wave, time, item, construct, value, missing code),
    ``scores.csv`` (construct scores per participant and wave), ``data_dictionary.csv`` (every
    column of every file, items with their wording, scale and keying), ``k_anonymity.csv`` and
    ``k_anonymity.md`` (the equivalence classes over the quasi-identifiers, with coarsening
    suggestions) and ``manifest.json`` (what was exported, when, under which settings).

What never goes out
    Raw codes, names and the other identifier columns (they never entered the store), exact
    submission times (a quasi-identifier: who answered when), file names and row numbers
    (they lead back to the raw export), quarantined values, and free text (any text column not
    on the export's allow-list) unless ``include_free_text`` is set after review.

Pseudonyms
    By default every export gets fresh random participant IDs (``X-`` + 12 hex characters),
    unrelated to the store's keyed pseudonyms and to earlier exports, so that two releases
    cannot be joined (joining two differently coarsened releases undoes the coarsening) and an
    export never helps whoever holds the key. ``keep_store_pseudonyms`` keeps the store's.

k-anonymity
    Over the quasi-identifiers present (side x dialogue x sector x gender x age band, and the
    arm: being a dialogue participant is itself sensitive), every combination must be shared
    by at least ``k`` participants (Sweeney 2002). Below it the export is refused and the
    report suggests coarsenings: dropping a quasi-identifier, merging its rare categories, or
    suppressing the few records at risk.

References
----------
.. [1] Sweeney, L. (2002). k-anonymity: a model for protecting privacy. International
   Journal of Uncertainty, Fuzziness and Knowledge-Based Systems 10(5), 557-570.
.. [2] Hundepool, A. et al. (2012). Statistical Disclosure Control. Wiley, ch. 3
   (microdata: global recoding, local suppression).
.. [3] Templ, M., Kowarik, A. and Meindl, B. (2015). Statistical disclosure control for
   micro-data using the R package sdcMicro. Journal of Statistical Software 67(4).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ConfigError, StoreError
from .at_rest import owner_only_umask, private_dir, private_file
from .rekey import key_version

if TYPE_CHECKING:
    from ._handle import StudyHandle as Study

__all__ = [
    "QUASI_IDENTIFIERS",
    "ExportResult",
    "KAnonymityReport",
    "export_microdata",
    "k_anonymity",
]

#: Participant attributes treated as quasi-identifiers, in the order they are reported.
QUASI_IDENTIFIERS = ["arm", "side", "dialogue", "sector", "gender", "age_band", "role",
                     "language"]
_MISSING = "(none)"

# columns each table may export; any other text column is free text (excluded by default)
_ALLOWED = {
    "participants": {"participant", "arm", "side", "dialogue", "sector", "gender", "age_band",
                     "role", "language"},
    "responses": {"participant", "wave", "time", "item", "construct", "value", "missing_code"},
    "scores": {"participant", "wave", "time", "output", "construct", "score", "n_answered",
               "n_items", "status", "baseline", "change"},
}


class ExportRefused(StoreError):
    """The export would not be k-anonymous (or is otherwise unsafe); nothing was written."""


@dataclass(frozen=True)
class KAnonymityReport:
    """Equivalence classes over the quasi-identifiers, and how to reach k.

    Attributes
    ----------
    k
        The required minimum class size.
    quasi_identifiers
        The quasi-identifiers used (those present in the data).
    classes
        One row per combination: the quasi-identifier values and ``n`` participants.
    suggestions
        One row per candidate coarsening: ``action``, ``quasi_identifiers`` kept,
        ``classes_below_k``, ``records_at_risk``; k-anonymous ones first, then by how much
        they keep.
    """

    k: int
    quasi_identifiers: list[str]
    classes: pd.DataFrame
    suggestions: pd.DataFrame

    @property
    def min_class_size(self) -> int:
        """Size of the smallest class (0 without data)."""
        return int(self.classes["n"].min()) if len(self.classes) else 0

    @property
    def records_at_risk(self) -> int:
        """Participants in classes smaller than k."""
        return int(self.classes.loc[self.classes["n"] < self.k, "n"].sum())

    @property
    def ok(self) -> bool:
        """Whether every class has at least k participants."""
        return self.records_at_risk == 0

    def markdown(self) -> str:
        """The report as Markdown (for ``k_anonymity.md``)."""
        qi = " x ".join(self.quasi_identifiers) or "(none present)"
        lines = [
            "# k-anonymity of the exported participants", "",
            f"Quasi-identifiers: {qi}. Required: every combination shared by at least "
            f"k = {self.k} participants.", "",
            f"Classes: {len(self.classes)}; smallest: {self.min_class_size}; classes below k: "
            f"{int((self.classes['n'] < self.k).sum())}; participants in them: "
            f"{self.records_at_risk}.", "",
            "**k-anonymous.**" if self.ok else "**Not k-anonymous: coarsen before release.**",
            "", "## Coarsening options", "",
            "| action | quasi-identifiers kept | classes below k | participants at risk |",
            "|---|---|---:|---:|",
        ]
        for s in self.suggestions.itertuples(index=False):
            lines.append(f"| {s.action} | {s.quasi_identifiers} | {s.classes_below_k} | "
                         f"{s.records_at_risk} |")
        lines += ["", "Local suppression (blanking the quasi-identifiers of the participants "
                  "at risk) is the last resort: it removes exactly those people's design "
                  "attributes and keeps everyone else's.", ""]
        return "\n".join(lines)


def _classes(frame: pd.DataFrame, qis: list[str]) -> pd.DataFrame:
    if not qis:
        return pd.DataFrame({"n": [len(frame)]})
    filled = frame[qis].astype(object).where(frame[qis].notna(), _MISSING).astype(str)
    return filled.groupby(qis, dropna=False).size().rename("n").reset_index()


def _risk(frame: pd.DataFrame, qis: list[str], k: int) -> tuple[int, int]:
    sizes = _classes(frame, qis)["n"]
    small = sizes[sizes < k]
    return len(small), int(small.sum())


def _merge_rare(frame: pd.DataFrame, qi: str, k: int) -> pd.DataFrame:
    counts = frame[qi].fillna(_MISSING).astype(str).value_counts()
    rare = set(counts[counts < k].index)
    out = frame.copy()
    out[qi] = out[qi].fillna(_MISSING).astype(str).where(
        ~out[qi].fillna(_MISSING).astype(str).isin(rare), "other")
    return out


def k_anonymity(participants: pd.DataFrame, k: int,
                quasi_identifiers: list[str] | None = None) -> KAnonymityReport:
    """Equivalence classes of ``participants`` over the quasi-identifiers, with suggestions.

    Parameters
    ----------
    participants
        One row per participant.
    k
        Minimum class size (at least 2).
    quasi_identifiers
        Columns to use; default: those of :data:`QUASI_IDENTIFIERS` present in the frame.
        A missing value is a category of its own (``(none)``: the comparison arm has no
        dialogue).

    Returns
    -------
    KAnonymityReport
        Suggestions evaluated exactly on the data: dropping each subset of quasi-identifiers
        (fewest dropped first), and merging each one's categories with fewer than k
        participants into ``other`` (global recoding).

    Raises
    ------
    ConfigError
        If ``k`` is below 2 or a named quasi-identifier is not a column.
    """
    if k < 2:
        raise ConfigError(f"k-anonymity needs k >= 2, got {k}")
    if quasi_identifiers is None:
        qis = [c for c in QUASI_IDENTIFIERS if c in participants.columns]
    else:
        missing = [c for c in quasi_identifiers if c not in participants.columns]
        if missing:
            raise ConfigError(f"quasi-identifier(s) not in the data: {', '.join(missing)}")
        qis = list(quasi_identifiers)
    classes = _classes(participants, qis)
    rows = []
    n_below, at_risk = _risk(participants, qis, k)
    rows.append({"action": "none (as exported)", "quasi_identifiers": " x ".join(qis),
                 "classes_below_k": n_below, "records_at_risk": at_risk, "_dropped": 0})
    for r in range(1, len(qis) + 1):
        for dropped in itertools.combinations(qis, r):
            kept = [q for q in qis if q not in dropped]
            n_below, at_risk = _risk(participants, kept, k)
            rows.append({"action": "drop " + ", ".join(dropped),
                         "quasi_identifiers": " x ".join(kept) or "(none)",
                         "classes_below_k": n_below, "records_at_risk": at_risk,
                         "_dropped": r})
    for qi in qis:
        merged = _merge_rare(participants, qi, k)
        if merged[qi].equals(participants[qi].fillna(_MISSING).astype(str)):
            continue
        n_below, at_risk = _risk(merged, qis, k)
        rows.append({"action": f"merge categories of {qi} with fewer than {k} into 'other'",
                     "quasi_identifiers": " x ".join(qis), "classes_below_k": n_below,
                     "records_at_risk": at_risk, "_dropped": 0.5})
    suggestions = pd.DataFrame(rows)
    # k-anonymous options first; among them the ones that keep most; then the least risky
    suggestions["_unsafe"] = suggestions["records_at_risk"] > 0
    suggestions = suggestions.sort_values(["_unsafe", "_dropped", "records_at_risk"],
                                          kind="stable")
    suggestions = suggestions.drop(columns=["_unsafe", "_dropped"]).reset_index(drop=True)
    return KAnonymityReport(k, qis, classes, suggestions)


@dataclass
class ExportResult:
    """What an export wrote."""

    folder: Path | None
    files: list[Path]
    report: KAnonymityReport
    rows: dict[str, int]
    excluded_free_text: list[str] = field(default_factory=list)
    encrypted: Path | None = None

    def summary(self) -> str:
        """Text for people."""
        where = self.encrypted or self.folder
        counts = ", ".join(f"{t} {n}" for t, n in self.rows.items())
        status = ("k-anonymous" if self.report.ok else
                  f"NOT k-anonymous ({self.report.records_at_risk} participants at risk)")
        excluded = (f"; free-text column(s) excluded: {', '.join(self.excluded_free_text)}"
                    if self.excluded_free_text else "")
        return (f"exported {counts} to {where}; {status} at k={self.report.k} over "
                f"{' x '.join(self.report.quasi_identifiers)}{excluded}")


def _age_band(age: pd.Series, width: int = 10) -> pd.Series:
    years = pd.to_numeric(age, errors="coerce")
    low = (np.floor(years / width) * width)
    return pd.Series([None if pd.isna(v) else f"{int(v)}-{int(v) + width - 1}" for v in low],
                     index=age.index, dtype=object)


def _free_text(frame: pd.DataFrame, table: str, include: bool) -> tuple[pd.DataFrame, list[str]]:
    extra = [c for c in frame.columns if c not in _ALLOWED[table]]
    text = [c for c in extra
            if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    other = [c for c in extra if c not in text]
    drop = other + ([] if include else text)
    return frame.drop(columns=drop), [f"{table}.{c}" for c in ([] if include else text)]


def _dictionary(study: Study, tables: dict[str, pd.DataFrame], qis: list[str]) -> pd.DataFrame:
    ins = study.instrument
    described = {
        "participant": "export pseudonym (random per export unless the store's were kept); "
                       "the same person in every file of this export",
        "arm": "study arm: " + "; ".join(f"{a.id} = {a.label or a.id}"
                                         for a in study.config.arms),
        "side": "side of the conflict the participant belongs to",
        "dialogue": "dialogue: " + "; ".join(f"{d.id} = {d.name}" for d in study.config.dialogues)
                    + " (empty for the comparison arm)",
        "sector": "sector", "gender": "gender", "age_band": "age in 10-year bands",
        "role": "role", "language": "language",
        "wave": "wave index: " + "; ".join(f"{w.index} = {w.label} ({w.phase})"
                                           for w in study.config.waves),
        "time": "years since the baseline wave's fielding date",
        "item": "item id (see the item rows of this dictionary)",
        "construct": "construct the item belongs to",
        "value": "answer on the item's scale; empty when missing (see missing_code)",
        "missing_code": "why an answer is missing: " + "; ".join(
            sorted(set(ins.missing_codes.values()))) + "; not asked",
        "output": "Allen-Sharp output the construct measures",
        "score": "construct score: keyed weighted item mean on the POMP scale 0-100 (raw unit "
                 "for constructs scored raw); empty below the minimum share of answered items",
        "n_answered": "items answered", "n_items": "items in the construct",
        "status": "scored, or too_few_items", "baseline": "the participant's first-wave score",
        "change": "score minus baseline",
    }
    rows = []
    for table, frame in tables.items():
        for column in frame.columns:
            rows.append({"file": f"{table}.csv", "column": column, "type": str(frame[column].dtype),
                         "description": described.get(column, ""),
                         "quasi_identifier": table == "participants" and column in qis,
                         "values": "", "source": ""})
    for cname, con in ins.constructs.items():
        for item in con.items:
            scale = ins.scales[item.scale]
            labels = "; ".join(f"{k} = {v}" for k, v in scale.labels.items())
            rows.append({
                "file": "responses.csv", "column": f"item {item.id}",
                "type": "float64", "description": item.text,
                "quasi_identifier": False,
                "values": f"{scale.min:g}-{scale.max:g}" + (f" ({labels})" if labels else "")
                          + (" reverse keyed" if item.reverse else ""),
                "source": f"construct {cname}; {item.source}".strip("; "),
            })
    return pd.DataFrame(rows)


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return private_file(path)


def export_microdata(
    study: Study,
    out: str | Path,
    *,
    k: int | None = None,
    quasi_identifiers: list[str] | None = None,
    drop: list[str] | None = None,
    include_free_text: bool = False,
    keep_store_pseudonyms: bool = False,
    allow_below_k: bool = False,
    passphrase: str | None = None,
) -> ExportResult:
    """Write the de-identified microdata export of ``study`` to the folder ``out``.

    Parameters
    ----------
    study
        A study whose store has been ingested and scored.
    out
        The export folder (created owner-only; must not exist or be empty), or with
        ``passphrase`` the encrypted file to write.
    k
        Minimum class size over the quasi-identifiers; default the study's ``min_cell_size``.
    quasi_identifiers
        Override the quasi-identifiers (default: those of :data:`QUASI_IDENTIFIERS` present).
    drop
        Quasi-identifier columns to leave out of the export (coarsening by suppression of a
        variable, as the k-anonymity report suggests).
    include_free_text
        Export text columns outside the allow-list (after review only).
    keep_store_pseudonyms
        Use the store's keyed pseudonyms instead of fresh random export IDs.
    allow_below_k
        Write even if the export is not k-anonymous (the report still says so).
    passphrase
        Encrypt the export into the single file ``out`` (see :mod:`.encrypt`); no plaintext
        file is left behind.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportRefused
        If the export is not k-anonymous and ``allow_below_k`` is false; only the k-anonymity
        report is written then, so that the coarsening can be chosen.
    StoreError
        If the store has no scores yet, or ``out`` is a non-empty folder.
    """
    store = study.store
    k = study.config.privacy.min_cell_size if k is None else k
    if not store.has_table("scores"):
        raise StoreError(f"{study.store_path}: no scores yet; run `trackii-eval score` first")
    participants = store.query("SELECT * FROM participants ORDER BY participant")
    responses = store.active_responses()
    # only people with at least one active, non-excluded response are exported
    participants = participants[participants["participant"].isin(responses["participant"])]
    if "age" in participants.columns:
        if "age_band" not in participants.columns:
            participants["age_band"] = _age_band(participants["age"])
        participants = participants.drop(columns="age")  # exact age is never exported
    for column in drop or []:
        if column not in participants.columns:
            have = ", ".join(c for c in participants.columns if c != "participant")
            raise ConfigError(f"--drop {column}: not a participant attribute (have: {have})")
    participants = participants.drop(columns=list(drop or []))
    report = k_anonymity(participants, k, quasi_identifiers)
    scores = store.query("SELECT * FROM scores ORDER BY participant, wave, construct")
    tables = {
        "participants": participants.reset_index(drop=True),
        "responses": responses.drop(columns=["arm", "side", "dialogue"], errors="ignore"),
        "scores": scores.drop(columns=["arm", "side", "dialogue"], errors="ignore"),
    }
    excluded: list[str] = []
    for name in list(tables):
        tables[name], dropped = _free_text(tables[name], name, include_free_text)
        excluded += dropped
    if not keep_store_pseudonyms:
        ids = participants["participant"].tolist()
        fresh: set[str] = set()
        while len(fresh) < len(ids):
            fresh.add("X-" + secrets.token_hex(6))
        order = sorted(fresh)
        secrets.SystemRandom().shuffle(order)  # the order says nothing about anyone
        mapping = dict(zip(ids, order, strict=True))
        for name, frame in tables.items():
            tables[name] = frame.assign(participant=frame["participant"].map(mapping))
    tables["participants"] = tables["participants"].sort_values("participant")
    tables["responses"] = tables["responses"].sort_values(["participant", "wave", "item"])
    tables["scores"] = tables["scores"].sort_values(["participant", "wave", "construct"])
    target = Path(out)
    if passphrase is None and target.exists() and any(target.iterdir()):
        raise StoreError(f"{target}: the export folder is not empty; choose a new folder")
    if passphrase is not None and target.exists():
        raise StoreError(f"{target}: exists; choose a new file name for the encrypted export")
    with owner_only_umask():
        work = Path(tempfile.mkdtemp(prefix="trackii-export-")) if passphrase else \
            private_dir(target)
        try:
            written = [_write_csv(report.classes, work / "k_anonymity.csv")]
            (work / "k_anonymity.md").write_text(report.markdown(), encoding="utf-8")
            written.append(private_file(work / "k_anonymity.md"))
            if not report.ok and not allow_below_k:
                if passphrase is None:
                    raise ExportRefused(
                        f"{target}: not k-anonymous at k={k}: {report.records_at_risk} "
                        f"participant(s) share their {' x '.join(report.quasi_identifiers)} "
                        f"with fewer than {k - 1} others; only the k-anonymity report was "
                        "written (k_anonymity.md lists coarsenings); re-run with --drop "
                        "<quasi-identifier> as it suggests")
                raise ExportRefused(
                    f"not k-anonymous at k={k} ({report.records_at_risk} participant(s) at "
                    "risk); export without --encrypt to see the coarsening options")
            rows = {}
            for name, frame in tables.items():
                written.append(_write_csv(frame, work / f"{name}.csv"))
                rows[name] = len(frame)
            dictionary = _dictionary(study, tables, report.quasi_identifiers)
            written.append(_write_csv(dictionary, work / "data_dictionary.csv"))
            manifest = {
                "study": study.config.id, "created_at": dt.datetime.now(dt.UTC).isoformat(
                    timespec="seconds"),
                "k": k, "quasi_identifiers": report.quasi_identifiers, "dropped": drop or [],
                "k_anonymous": report.ok, "min_class_size": report.min_class_size,
                "pseudonyms": "store (keyed)" if keep_store_pseudonyms
                              else "random per export",
                "key_version": key_version(store),
                "free_text": "included" if include_free_text else "excluded",
                "excluded_columns": excluded, "rows": rows,
                "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in written},
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2),
                                                encoding="utf-8")
            written.append(private_file(work / "manifest.json"))
            if passphrase is not None:
                from .encrypt import encrypt_folder

                encrypted = encrypt_folder(work, target, passphrase)
                return ExportResult(None, [encrypted], report, rows, excluded, encrypted)
            return ExportResult(target, written, report, rows, excluded)
        finally:
            if passphrase is not None:
                shutil.rmtree(work, ignore_errors=True)
