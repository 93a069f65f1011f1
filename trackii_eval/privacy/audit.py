"""Audit a folder of outputs for identifiers of the study and for small count cells.

What is looked for
    Every value of the study's identifying columns, read from its source wave files (and
    roster): the participant code column, the self-generated linkage code, and every column the
    instrument declares under ``identifiers`` (names, e-mails, phones, IP addresses,
    locations). Each is searched in any case, with or without separators, and in the forms
    an identifier takes when it slips out through a web page, a URL, a JSON document or an
    embedded blob: HTML character references, percent-encoding, JSON ``\\uXXXX`` escapes and
    base64 (standard and URL-safe alphabets, any alignment). Unkeyed SHA-256, SHA-1 and MD5
    hex digests of each value (also truncated to 16 hex characters) are looked for too: an
    unkeyed hash of a low-entropy code is as good as the code, because every possible code can
    be hashed and compared.

    Published CSV tables are also scanned for small cells: a count of people between 1 and
    ``k - 1`` in a column that counts people (``n``, ``n_*``, ``count``, ``*_count``, ...),
    and for a suppressed count (``<5``, ``suppressed``) that is the only hidden part of a
    table with a published total row, and so can be recovered by subtraction.

How it is reported
    One :class:`Finding` per file, line, kind and source column; its text names the file,
    the line, the kind and the encoding, and never the identifier itself, so the audit's own
    output can be shared with whoever must fix the leak.

What it cannot see
    Text inside images (figures) and PDFs, values rounded or reformatted beyond the variants
    above, identifiers shorter than ``min_length`` characters (too many chance matches), and
    identifiers that are not in the source files (free text naming someone). Files that cannot
    be read are listed as notes, never passed silently.

References
----------
.. [1] Hundepool, A. et al. (2012). Statistical Disclosure Control. Wiley, ch. 5 (frequency
   tables, minimum frequency rule) and ch. 3 (microdata: direct identifiers).
.. [2] Marx, M. et al. (2012) and later work on the reversibility of unsalted hashes of
   low-entropy identifiers; see also ISO/IEC 20889:2018, section 8.3.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import io
import re
import unicodedata
import urllib.parse
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = [
    "COUNT_COLUMN",
    "AuditResult",
    "Finding",
    "Needles",
    "audit_path",
    "build_needles",
    "study_needles",
]

#: Column names that count people in a published table (case-insensitive, full match).
COUNT_COLUMN = re.compile(
    r"(n|count|counts|freq|frequency|records|persons|people|participants|respondents|responded"
    r"|cases|stored|rows read|rows stored|rows quarantined|quarantined|ambiguous|exact|fuzzy"
    r"|new|by decision|linked|stayed|left|dropped|excluded"
    r"|n_[a-z0-9_]+|[a-z0-9_]+_count|[a-z0-9_]+_n|rows_[a-z_]+)",
    re.IGNORECASE,
)
# counts of things that are not people, even though named like counts
_NOT_PEOPLE = re.compile(r"n_(items|answered|waves|workshops|ideas|par|obs_items)", re.IGNORECASE)

_TEXT_SUFFIXES = {
    ".html", ".htm", ".csv", ".tsv", ".json", ".txt", ".md", ".log", ".xml", ".svg", ".yaml",
    ".yml", ".tex", ".js", ".css", ".rst", ".ipynb", ".jsonl", ".ndjson", "",
}
_ZIP_SUFFIXES = {".zip", ".xlsx", ".docx", ".pptx", ".odt", ".ods"}
_DB_SUFFIXES = {".duckdb", ".db"}
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{12,}")
_HEX_RUN = re.compile(r"[0-9a-f]{16,}")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")
_SEPARATORS = re.compile(r"(?:[^\S\n]|[-_])+")  # never joins two lines
_PSEUDONYM = re.compile(r"\bP-[0-9a-f]{16}\b")
_HEXISH = re.compile(r"[0-9a-fA-FpP-]+")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")
_NUMERIC = re.compile(r"[-+]?[\d\s().]+")
_ENCRYPTED_MAGIC = b"TRACKII-EVAL-ENCRYPTED"
#: digest lengths looked for, in hex characters (16: a truncated digest, as pseudonyms are)
_DIGEST_LENGTHS = (16, 32, 40, 64)


@dataclass(frozen=True)
class Finding:
    """One problem found by the audit; its text never contains the identifier.

    Attributes
    ----------
    file
        The file, relative to the audited folder (for a store: ``store.duckdb#table.column``).
    line
        1-based line of a text file or CSV table; ``None`` for stores and HTML tables (the
        detail says where).
    kind
        ``identifier``, ``sha256``, ``sha1``, ``md5`` (an unkeyed digest of an identifier),
        ``small-cell``, ``recoverable-cell`` (a suppressed count that a total gives back) or
        ``pseudonym`` (when asked for).
    detail
        Which source column the identifier comes from and in which encoding it was found, or
        which column holds the small count.
    """

    file: str
    line: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class AuditResult:
    """What the audit found and what it could not check."""

    findings: list[Finding]
    files_scanned: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings

    def lines(self) -> list[str]:
        """One line per finding."""
        return [str(f) for f in self.findings]


@dataclass
class Needles:
    """What to look for, in matching-ready form (casefolded text and digests).

    Build with :func:`study_needles` (from a study's sources) or :func:`build_needles`.
    """

    plain: dict[str, set[str]]  # casefolded variant -> source columns
    digests: dict[str, set[tuple[str, str]]]  # lowercase hex -> {(algorithm, column)}
    numeric: set[str]  # variants matched only at number boundaries
    min_length: int
    n_values: int = 0
    n_too_short: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # One regex over a trie of all variants: the scan runs in the regex engine, and the
        # trie keeps the alternatives tried at each position to the few sharing a prefix.
        # The lookahead makes matches overlap (a name inside an e-mail address is found too).
        if self.plain:
            self._pattern = re.compile("(?=(" + _trie_regex(sorted(self.plain)) + "))")

    def __len__(self) -> int:
        return len(self.plain)

    def find(self, text: str) -> Iterator[tuple[str, set[str]]]:
        """Yield (variant, columns) for every needle occurring in ``text`` (casefolded)."""
        if self._pattern is None or len(text) < self.min_length:
            return
        for m in self._pattern.finditer(text):
            variant = m.group(1)
            if variant in self.numeric and _inside_number(text, m.start(), m.start() +
                                                          len(variant)):
                continue  # a coordinate or phone number inside a longer number: chance
            yield variant, self.plain[variant]


def _trie_regex(words: list[str]) -> str:
    """A regex matching exactly ``words``, factored as a trie (longest alternative first)."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        ends = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:  # a word ends here and longer words continue: prefer the longer (greedy)
            return "(?:" + body + ")?"
        return body

    return build(trie)


def _inside_number(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` continues a longer number on either side."""
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    if before.isdigit() or after.isdigit():
        return True
    if after in ".," and end + 1 < len(text) and text[end + 1].isdigit():
        return True
    return before in ".," and start >= 2 and text[start - 2].isdigit()


def _variants(value: str) -> set[str]:
    """Casefolded spellings of one identifier value that count as the same identifier."""
    from ..ingest.pseudonym import normalise_id

    text = unicodedata.normalize("NFKC", value).strip().casefold()
    out = {text, normalise_id(value)}
    compact = _SEPARATORS.sub("", text)
    if compact:
        out.add(compact)
    return {v for v in out if v}


def _digest_inputs(value: str) -> set[str]:
    """Spellings of a value someone might have hashed (unkeyed) by accident."""
    from ..ingest.pseudonym import normalise_id

    stripped = value.strip()
    return {v for v in (value, stripped, stripped.lower(), stripped.upper(),
                        stripped.casefold(), normalise_id(value)) if v}


def build_needles(values: Mapping[str, Iterable[str]], *, min_length: int = 6) -> Needles:
    """Prepare identifier values for searching.

    Parameters
    ----------
    values
        Source column name -> its values (raw text, as in the source files).
    min_length
        Values shorter than this (after casefolding) are not searched as text: a five-letter
        value matches ordinary words and numbers by chance. Their digests are still searched
        (a digest never matches by chance).

    Returns
    -------
    Needles
    """
    if min_length < 4:
        raise ConfigError(f"audit: min_length must be at least 4, got {min_length}")
    plain: dict[str, set[str]] = defaultdict(set)
    digests: dict[str, set[tuple[str, str]]] = defaultdict(set)
    numeric: set[str] = set()
    n_values = n_short = 0
    seen: set[tuple[str, str]] = set()
    for column, column_values in values.items():
        for raw in column_values:
            if raw is None or (isinstance(raw, float) and raw != raw):
                continue
            value = str(raw)
            if not value.strip() or (column, value) in seen:
                continue
            seen.add((column, value))
            n_values += 1
            variants = _variants(value)
            long_enough = [v for v in variants if len(v) >= min_length]
            if not long_enough:
                n_short += 1
            for v in long_enough:
                plain[v].add(column)
                if _NUMERIC.fullmatch(v):
                    numeric.add(v)
            for text in _digest_inputs(value):
                data = text.encode("utf-8")
                for algo in ("sha256", "sha1", "md5"):
                    hexd = hashlib.new(algo, data).hexdigest()
                    digests[hexd].add((algo, column))
                    digests[hexd[:16]].add((algo + " (truncated)", column))
    return Needles(dict(plain), dict(digests), numeric, min_length, n_values, n_short)


def _source_values(path: Path, columns: Iterable[str], **read: object) -> dict[str, list[str]]:
    from ..ingest.readers import read_table

    raw = read_table(path, **read)
    out: dict[str, list[str]] = {}
    for column in columns:
        if column in raw.data.columns:
            out[column] = [str(v) for v in raw.data[column].dropna()]
    return out


def study_needles(study_dir: str | Path, *, min_length: int = 6) -> Needles:
    """Identifier values of a study, read from its source wave files and roster.

    Columns: the instrument's participant code column, the linkage code column (self-generated
    codes are personal data: parts of a mother's name, a birth date), every column listed
    under the instrument's ``identifiers``, and the roster's code columns.

    Parameters
    ----------
    study_dir
        The study folder (holding ``study.yaml``).
    min_length
        See :func:`build_needles`.

    Raises
    ------
    ConfigError
        If the study cannot be loaded; IngestError if a source file cannot be read.
    """
    from ..pipeline.context import load_context

    study = load_context(study_dir)
    cfg, ins = study.config, study.instrument
    columns = [ins.participant.id, *ins.identifiers]
    if cfg.linkage.column:
        columns.append(cfg.linkage.column)
    values: dict[str, list[str]] = defaultdict(list)
    for wave in cfg.fielded_waves:  # a planned wave has no file yet
        # a wave may name its code column otherwise (columns: {code: Q2})
        own = [c for role, c in wave.columns.items() if role == "code"]
        found = _source_values(study.root / wave.file, [*columns, *own], format=wave.format,
                               sheet=wave.sheet, header_row=wave.header_row)
        for column, vals in found.items():
            values[ins.participant.id if column in own else column].extend(vals)
    if cfg.roster:
        found = _source_values(study.root / cfg.roster, [ins.participant.id, "contact_code"])
        for vals in found.values():
            values[ins.participant.id].extend(vals)
    if cfg.participants is not None:  # the evaluator's enrolment list holds raw codes too
        found = _source_values(study.root / cfg.participants.file, [cfg.participants.code],
                               sheet=cfg.participants.sheet)
        for vals in found.values():
            values[ins.participant.id].extend(vals)
    return build_needles(values, min_length=min_length)


# ----------------------------------------------------------------------------- decoding views


def _json_unescape(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))
        return {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(m.group(2),
                                                                           m.group(2))

    return _JSON_ESCAPE.sub(repl, text)


def _views(text: str) -> Iterator[tuple[str, str]]:
    """(encoding name, decoded text) for every decoding that changes ``text``."""
    seen = {text}
    yield "plain", text
    candidates = []
    if "&" in text:
        candidates.append(("HTML-escaped", html.unescape(text)))
    if _PERCENT.search(text):
        candidates.append(("URL-escaped", urllib.parse.unquote(text, errors="replace")))
        candidates.append(("URL-escaped", urllib.parse.unquote_plus(text, errors="replace")))
    elif "+" in text:
        candidates.append(("URL-escaped", text.replace("+", " ")))
    if "\\" in text:
        candidates.append(("JSON-escaped", _json_unescape(text)))
    if "&" in text and (_PERCENT.search(text) or "\\" in text):
        un = html.unescape(text)
        candidates.append(("HTML- and URL-escaped", urllib.parse.unquote_plus(un)))
        candidates.append(("HTML- and JSON-escaped", _json_unescape(un)))
    for name, view in candidates:
        if view not in seen:
            seen.add(view)
            yield name, view


def _base64_views(text: str) -> Iterator[str]:
    """Text decoded from every base64 run of ``text`` that decodes to mostly printable text.

    Each run is decoded at its four possible alignments (a value embedded in a longer payload
    starts anywhere); binary payloads such as PNG figures decode to unprintable bytes and are
    skipped.
    """
    runs = {m.group(0) for m in _B64_RUN.finditer(text)}
    for raw in sorted(runs):
        if _HEXISH.fullmatch(raw):
            continue  # digests and pseudonyms: hex text, looked for as such
        run = raw.replace("-", "+").replace("_", "/")
        for shift in range(4):
            chunk = run[shift:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            if len(chunk) < 8:
                continue
            try:
                data = base64.b64decode(chunk, validate=True)
            except (binascii.Error, ValueError):
                continue
            decoded = data.decode("utf-8", errors="replace")
            # binary payloads (figures) and misaligned decodings are mostly control bytes
            if len(_CONTROL.findall(decoded)) <= 0.15 * len(decoded):
                yield decoded


# ----------------------------------------------------------------------------- scanning


class _Scanner:
    def __init__(self, needles: Needles | None, pseudonyms: bool = False) -> None:
        self.needles = needles
        self.pseudonyms = pseudonyms
        self.findings: dict[tuple[str, int | None, str, str], Finding] = {}

    def add(self, file: str, line: int | None, kind: str, detail: str) -> None:
        key = (file, line, kind, detail)
        if key not in self.findings:
            self.findings[key] = Finding(file, line, kind, detail)

    def scan_text(self, file: str, line: int | None, text: str) -> None:
        if self.pseudonyms:
            for encoding, view in _views(text):
                if _PSEUDONYM.search(view):
                    self.add(file, line, "pseudonym", f"keyed participant pseudonym, {encoding}")
        if self.needles is None:
            return
        for encoding, view in _views(text):
            self._match(file, line, view, encoding)
        for decoded in _base64_views(text):
            for encoding, view in _views(decoded):
                label = "base64" if encoding == "plain" else f"base64 of {encoding}"
                self._match(file, line, view, label)

    def _match(self, file: str, line: int | None, view: str, encoding: str) -> None:
        assert self.needles is not None
        folded = view.casefold()
        found: set[str] = set()
        for _variant, columns in self.needles.find(folded):
            found |= columns
        for column in sorted(found):
            self.add(file, line, "identifier", f"value of column '{column}', {encoding}")
        compact = _SEPARATORS.sub("", folded)
        if compact != folded:
            spaced: set[str] = set()
            for _variant, columns in self.needles.find(compact):
                spaced |= columns - found
            for column in sorted(spaced):
                self.add(file, line, "identifier",
                         f"value of column '{column}', {encoding}, separators removed")
        digests = self.needles.digests
        for m in _HEX_RUN.finditer(folded):
            run = m.group(0)
            hits: set[tuple[str, str]] = set()
            for size in _DIGEST_LENGTHS:
                for start in range(len(run) - size + 1):
                    hits |= digests.get(run[start : start + size], set())
            full = {(a, c) for a, c in hits if " " not in a}
            for algo, column in sorted(hits):
                base = algo.split(" ")[0]
                if algo != base and (base, column) in full:
                    continue  # the prefix of a full digest found here: one finding
                extra = " (truncated)" if algo != base else ""
                self.add(file, line, base, f"unkeyed {base.upper()} hex{extra} of a value of "
                         f"column '{column}', {encoding}")


def _is_count(label: str, extra: set[str]) -> bool:
    label = label.strip()
    return label.casefold() in extra or (COUNT_COLUMN.fullmatch(label) is not None
                                         and _NOT_PEOPLE.fullmatch(label) is None)


_SUPPRESSED = re.compile(r"\s*(<\s*\d+|suppressed|\*+|x)\s*", re.IGNORECASE)
_TOTAL = {"total", "all", "overall", "sum", "all waves", "all dialogues"}


def _check_table(scanner: _Scanner, name: str, frame: pd.DataFrame, k: int,
                 count_columns: Iterable[str], where: Callable[[int], tuple[int | None, str]]
                 ) -> None:
    """Small and recoverable count cells of one published table.

    ``where(row position)`` gives the finding's line and a location prefix for its detail.
    Three rules: a count of 1 to k-1 people (minimum frequency rule); a suppressed count that
    is the only hidden part beside a total row; and a suppressed count in a row whose count
    columns obey an additive relation (one column the sum of the others, as checked on every
    fully shown row) with no other cell of the row hidden. Both recoveries are the simplest
    attacks on cell-by-cell suppression (Hundepool et al. 2012, ch. 5); narrower intervals from
    several tables or waves are the disclosure step's attacker LPs, not this scan's.
    """
    extra = {c.casefold() for c in count_columns}
    counts = [c for c in frame.columns if _is_count(str(c), extra)]
    labels = [c for c in frame.columns if c not in counts]
    if not counts:
        return
    text = frame[counts].astype(str)
    hidden = text.apply(lambda col: col.str.fullmatch(_SUPPRESSED)).fillna(False).astype(bool)
    numbers = text.apply(lambda col: pd.to_numeric(col.str.replace(",", ""), errors="coerce"))
    whole = numbers.notna() & (numbers == numbers.round())
    for column in counts:
        small = whole[column] & (numbers[column] >= 1) & (numbers[column] < k)
        for pos in np.flatnonzero(small.to_numpy()):
            line, at = where(int(pos))
            scanner.add(name, line, "small-cell",
                        f"{at}column '{str(column).strip()}' counts fewer than k={k} people")
    # a total row: one hidden part is the total minus the others
    if labels:
        is_total = frame[labels].apply(
            lambda col: col.astype(str).str.strip().str.casefold().isin(_TOTAL)).any(axis=1)
        if is_total.sum() == 1:
            for column in counts:
                total = numbers.loc[is_total, column].iloc[0]
                parts = ~is_total
                n_hidden = int(hidden.loc[parts, column].sum())
                shown_ok = whole.loc[parts & ~hidden[column], column].all()
                if pd.notna(total) and n_hidden == 1 and shown_ok:
                    pos = int(np.flatnonzero((parts & hidden[column]).to_numpy())[0])
                    line, at = where(pos)
                    scanner.add(name, line, "recoverable-cell",
                                f"{at}column '{str(column).strip()}': the suppressed count "
                                "equals the total row minus the other rows")
    # a total column: one hidden cell of a row is the row's total minus its other parts
    if len(counts) >= 3 and hidden.any(axis=None):
        visible = whole.all(axis=1)
        for total_col in counts:
            parts = [c for c in counts if c != total_col]
            rows = visible & (numbers[parts].sum(axis=1) > 0)
            if rows.sum() < 2 or not (numbers.loc[rows, total_col]
                                      == numbers.loc[rows, parts].sum(axis=1)).all():
                continue
            one_hidden = hidden[counts].sum(axis=1) == 1
            others_ok = (whole[counts] | hidden[counts]).all(axis=1)
            for pos in np.flatnonzero((one_hidden & others_ok).to_numpy()):
                column = next(c for c in counts if hidden[c].iloc[pos])
                line, at = where(int(pos))
                scanner.add(name, line, "recoverable-cell",
                            f"{at}column '{str(column).strip()}': the suppressed count follows "
                            f"from '{str(total_col).strip()}' = sum of "
                            f"{', '.join(repr(str(c).strip()) for c in parts)} (shown rows)")
            break


class _HTMLTables(HTMLParser):
    """The cell texts of every ``<table>`` of an HTML document (stdlib only)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._stack: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._stack.append([])
            self.tables.append(self._stack[-1])
        elif tag == "tr" and self._stack:
            self._row = []
            self._stack[-1].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table" and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _html_tables(text: str) -> list[pd.DataFrame]:
    parser = _HTMLTables()
    parser.feed(text)
    frames = []
    for rows in parser.tables:
        if len(rows) < 2:
            continue
        header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
        if body and len(set(header)) == len(header):
            frames.append(pd.DataFrame(body, columns=header))
    return frames


def _iter_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file())


def _scan_lines(scanner: _Scanner, name: str, text: str, *, locate: bool = True) -> None:
    """Scan a document whole; only if something is found, find the lines it is on."""
    probe = _Scanner(scanner.needles, scanner.pseudonyms)
    probe.scan_text(name, None, text)
    if not probe.findings:
        return
    if not locate:
        for f in probe.findings.values():
            scanner.add(name, None, f.kind, f.detail)
        return
    before = set(scanner.findings)
    for i, line in enumerate(text.splitlines(), start=1):
        scanner.scan_text(name, i, line)
    if set(scanner.findings) == before:  # only across lines (e.g. wrapped base64)
        for f in probe.findings.values():
            scanner.add(name, None, f.kind, f.detail)


def _scan_duckdb(scanner: _Scanner, name: str, path: Path) -> None:
    """Scan every column of every table, one distinct value per line (stores can be large)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position").fetchall()
        for table, column in columns:
            values = con.execute(
                f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM "{table}" '
                f'WHERE "{column}" IS NOT NULL').fetchall()
            if values:
                _scan_lines(scanner, f"{name}#{table}.{column}",
                            "\n".join(v for (v,) in values), locate=False)
    finally:
        con.close()


def audit_path(
    path: str | Path,
    needles: Needles | None,
    *,
    k: int | None = None,
    count_columns: Iterable[str] = (),
    pseudonyms: bool = False,
) -> AuditResult:
    """Scan every file under ``path`` for the study's identifiers and for small count cells.

    Parameters
    ----------
    path
        A folder of outputs (searched recursively) or one file.
    needles
        The identifiers to look for (:func:`study_needles`); ``None`` skips the search.
    k
        Minimum cell size; count cells of CSV/TSV tables with ``1 <= n < k`` are findings.
        ``None`` skips the small-cell check.
    count_columns
        More column names (beyond :data:`COUNT_COLUMN`) that count people.
    pseudonyms
        Also flag keyed participant pseudonyms (``P-`` + 16 hex). They cannot be reversed
        without the key, but in a published file they link a person's rows across outputs;
        use for folders meant for publication (the store and the linkage review file hold
        pseudonyms by design).

    Returns
    -------
    AuditResult
        Findings (one per file, line, kind and detail), files scanned, and notes on files
        that could not be scanned (images, PDFs, encrypted exports, unreadable stores).

    Raises
    ------
    ConfigError
        If ``path`` does not exist or ``k`` is below 2.
    """
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"{root}: no such file or folder to audit")
    if k is not None and k < 2:
        raise ConfigError(f"audit: k must be at least 2, got {k}")
    count_columns = list(count_columns)
    scanner = _Scanner(needles, pseudonyms)
    scanned: list[str] = []
    notes: list[str] = []
    for file in _iter_files(root):
        name = file.name if root.is_file() else str(file.relative_to(root))
        suffix = file.suffix.lower()
        data = file.read_bytes()
        if data.startswith(_ENCRYPTED_MAGIC):
            notes.append(f"{name}: encrypted export, not scanned (decrypt it and audit the "
                         "result)")
            continue
        if suffix in _DB_SUFFIXES:
            try:
                _scan_duckdb(scanner, name, file)
            except Exception as exc:  # a locked or foreign database: say so, do not pass it
                notes.append(f"{name}: database could not be opened ({type(exc).__name__}); "
                             "not scanned")
                continue
            scanned.append(name)
            continue
        if suffix in _ZIP_SUFFIXES or data[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    for member in zf.namelist():
                        content = zf.read(member)
                        if b"\x00" in content[:8192]:
                            notes.append(f"{name}!{member}: binary member, not scanned")
                            continue
                        _scan_lines(scanner, f"{name}!{member}",
                                    content.decode("utf-8", errors="replace"))
            except (zipfile.BadZipFile, RuntimeError) as exc:
                notes.append(f"{name}: archive could not be read ({exc}); not scanned")
                continue
            scanned.append(name)
            continue
        if b"\x00" in data[:8192] or (suffix not in _TEXT_SUFFIXES and not _looks_text(data)):
            notes.append(f"{name}: binary file ({suffix or 'no suffix'}), not scanned")
            continue
        text = data.decode("utf-8-sig", errors="replace")
        _scan_lines(scanner, name, text)
        if k is not None and suffix in {".csv", ".tsv"}:
            try:
                frame = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",",
                                    dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError):
                notes.append(f"{name}: not a readable table; small cells not checked")
            else:
                # line in the file: the header is line 1, the first data row line 2
                _check_table(scanner, name, frame, k, count_columns,
                             lambda pos: (pos + 2, ""))
        if k is not None and suffix in {".html", ".htm"}:
            for t, frame in enumerate(_html_tables(text), start=1):
                _check_table(scanner, name, frame, k, count_columns,
                             lambda pos, t=t: (None, f"table {t}, row {pos + 1}: "))
        scanned.append(name)
    findings = sorted(scanner.findings.values(),
                      key=lambda f: (f.file, f.line or 0, f.kind, f.detail))
    return AuditResult(findings, scanned, notes)


def _looks_text(data: bytes) -> bool:
    try:
        data[:65536].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


