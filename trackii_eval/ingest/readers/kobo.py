"""KoboToolbox exports (CSV with ``;`` or ``,``, or XLSX): column names and metadata.

Kobo names a question inside a group by its group path, ``group_attitudes/trust_other``; the
instrument knows it as ``trust_other``, so the group path is stripped and kept in
`RawTable.source_columns`. Two cases keep more than the last segment:

* select_multiple questions get one 0/1 column per choice, ``languages/ar``, beside the
  question's own column ``languages``. When the part before the last ``/`` is itself a column,
  the column is a choice column and keeps ``question/choice`` (with the question's own group
  path stripped).
* when stripping would give two columns the same name (the same question name in two groups),
  both keep their full path.

Exports "with labels" put question labels in the header instead of XLSForm names. A label may
itself contain ``/`` ("Agree/Disagree"), so a leading segment is only taken for a group when at
least two headers share it; the stripped label becomes the canonical name and also goes into
`RawTable.column_labels`. A header is taken for a label when any of its segments is not a
valid XLSForm name. Exports that use a group separator other than ``/`` (Kobo's export setting
allows ``-``, ``.`` and others) are read with group paths left in place, because ``-`` and
``.`` may also occur inside XLSForm names; `resolve_group_paths` then maps a column onto the
name the instrument expects when exactly one column ends with a separator and that name. The
``meta`` and ``formhub`` groups are metadata whatever the separator.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from trackii_eval.ingest.readers.base import (
    ParsedTable,
    assemble_records,
    empty_codes,
    frame_from_rows,
    make_row_meta,
    parse_timestamps,
)
from trackii_eval.ingest.readers.csv_excel import Grid, header_index

__all__ = [
    "GROUP_SEPARATORS",
    "IDENTIFIER_COLUMNS",
    "METADATA_COLUMNS",
    "TEST_TOKENS",
    "canonical_names",
    "identifier_columns",
    "looks_like",
    "metadata_columns",
    "read_kobo",
    "resolve_group_paths",
    "row_meta",
]

METADATA_COLUMNS: frozenset[str] = frozenset(
    {
        # Added by the server to every submission.
        "_id",
        "_uuid",
        "_submission_time",
        "_validation_status",
        "_notes",
        "_status",
        "_submitted_by",
        "__version__",
        "_version_",
        "_tags",
        "_index",
        "_parent_table_name",
        "_parent_index",
        "_attachments",
        "_geolocation",
        "_xform_id_string",
        "_duration",
        "_media_count",
        "_total_media",
        "_media_all_received",
        # Repeat-group sheets point back at their submission with these.
        "_submission__id",
        "_submission__uuid",
        "_submission__submission_time",
        "_submission__validation_status",
        "_submission__notes",
        "_submission__status",
        "_submission__submitted_by",
        "_submission___version__",
        "_submission__tags",
        # XLSForm metadata question types, conventionally named after the type.
        "start",
        "end",
        "today",
        "deviceid",
        "subscriberid",
        "simserial",
        "phonenumber",
        "username",
        "email",
        "audit",
        # meta/... and formhub/... once their group path is stripped.
        "instanceID",
        "instanceName",
        "deprecatedID",
        "rootUuid",
    }
)
IDENTIFIER_COLUMNS: frozenset[str] = frozenset(
    {
        "deviceid",
        "subscriberid",
        "simserial",
        "phonenumber",
        "username",
        "email",
        "_submitted_by",
        "_geolocation",
        "_submission__submitted_by",
    }
)
# Tags a team might put on test submissions. Exact tokens only: a looser match would catch
# "pre-test", which in an evaluation is the baseline wave.
TEST_TOKENS: frozenset[str] = frozenset(
    {"test", "tests", "testing", "test_submission", "test-submission", "test_data"}
)
_GEO_PART = re.compile(r"^_(?P<question>.+)_(?P<part>latitude|longitude|altitude|precision)$")
_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_.:\-]*$")
_TOKEN_SPLIT = re.compile(r"[^\w-]+")
_SIGNATURE = frozenset({"_uuid", "_submission_time"})
# Kobo's export setting "group separator" may be "/" (default), "-", "." or ":"; the meta and
# formhub groups are Kobo's own, so they are metadata whatever the separator.
GROUP_SEPARATORS: tuple[str, ...] = ("/", "-", ".", ":")
_META_GROUPS = tuple(f"{g}{s}" for g in ("meta", "formhub") for s in GROUP_SEPARATORS)


def looks_like(columns: Sequence[str]) -> bool:
    """Whether a header is a KoboToolbox export's.

    Parameters
    ----------
    columns : Sequence[str]
        Header names, with or without group paths.

    Returns
    -------
    bool
        True when ``_uuid`` or ``_submission_time`` is among them.
    """
    return any(c.rsplit("/", 1)[-1] in _SIGNATURE for c in columns)


def _is_name_path(header: str) -> bool:
    return all(_NAME.match(part) for part in header.split("/"))


def canonical_names(headers: Sequence[str]) -> list[str]:
    """Strip Kobo group paths from headers (see the module docstring for the rules).

    Parameters
    ----------
    headers : Sequence[str]
        Unique header names as the file spells them.

    Returns
    -------
    list[str]
        Canonical names, unique, in the same order.
    """
    header_set = set(headers)
    prefixes = Counter(
        "/".join(h.split("/")[:i]) for h in headers for i in range(1, h.count("/") + 1)
    )
    memo: dict[str, str] = {}

    def canon(header: str) -> str:
        if header in memo:
            return memo[header]
        parts = header.split("/")
        result = parts[-1]
        parent = next(
            (
                "/".join(parts[:i])
                for i in range(len(parts) - 1, 0, -1)
                if "/".join(parts[:i]) in header_set
            ),
            None,
        )
        if parent is not None:
            result = f"{canon(parent)}/{header[len(parent) + 1 :]}"
        elif not _is_name_path(header):
            # Label header: strip only leading segments shared with another header.
            keep = 0
            for i in range(1, len(parts)):
                if prefixes["/".join(parts[:i])] >= 2:
                    keep = i
            result = "/".join(parts[keep:])
        if not result.strip():
            result = header
        memo[header] = result
        return result

    names = [canon(h) for h in headers]
    counts = Counter(names)
    names = [h if counts[n] > 1 else n for h, n in zip(headers, names, strict=True)]
    # A full path can still equal another column's stripped name; fall back to full paths
    # for everything rather than hand the caller two columns with one name.
    return names if len(set(names)) == len(names) else list(headers)


def read_kobo(path: Path, records: Grid, header_row: int | None) -> ParsedTable:
    """Read a KoboToolbox CSV/XLSX export.

    Parameters
    ----------
    path : Path
        The file.
    records : Grid
        Its records.
    header_row : int, optional
        1-based row of the column names; default the first non-blank row.

    Returns
    -------
    ParsedTable
        Cells as text, group paths stripped from column names, label headers also in
        `column_labels`.
    """
    header = header_index(path, records, header_row)
    table = assemble_records(path, records, header, header + 1)
    names = canonical_names(table.columns)
    labels = {
        name: name
        for name, original in zip(names, table.columns, strict=True)
        if not _is_name_path(original)
    }
    data = frame_from_rows(names, table.rows)
    return ParsedTable(
        data=data,
        missing_codes=empty_codes(data),
        row_numbers=np.asarray(table.row_numbers, dtype=np.int64),
        source_columns=dict(zip(names, table.columns, strict=True)),
        column_labels=labels,
    )


def resolve_group_paths(columns: Sequence[str], wanted: Sequence[str]) -> dict[str, str]:
    """Find expected columns that a Kobo export left under a group path.

    Kobo exports written with a group separator other than ``/`` (``grp_id-pid``,
    ``grp.att.t1``) keep their group paths, because ``-`` and ``.`` are also legal inside
    XLSForm names and cannot be split blindly. The instrument knows which names it expects, so
    a column is taken for an expected name when it ends with a separator followed by exactly
    that name, and no other column does.

    Parameters
    ----------
    columns : Sequence[str]
        The file's column names (after `canonical_names`).
    wanted : Sequence[str]
        Names the study expects (participant columns, items); those already present are left
        alone.

    Returns
    -------
    dict[str, str]
        File column -> expected name, for unambiguous matches only.
    """
    present = set(columns)
    out: dict[str, str] = {}
    for name in wanted:
        if not name or name in present:
            continue
        hits = [c for c in columns if c not in out and any(
            c.endswith(sep + name) and len(c) > len(sep + name) for sep in GROUP_SEPARATORS)]
        if len(hits) == 1:
            out[hits[0]] = name
    return out


def _geo_columns(columns: Sequence[str]) -> tuple[set[str], set[str]]:
    """Geopoint parts (``_gps_latitude`` ...) and the geopoint questions they come from."""
    parts: set[str] = set()
    questions: set[str] = set()
    names = set(columns)
    for c in columns:
        match = _GEO_PART.match(c)
        if match:
            parts.add(c)
            if match["question"] in names:
                questions.add(match["question"])
    return parts, questions


def metadata_columns(
    columns: Sequence[str], source_columns: dict[str, str] | None = None
) -> frozenset[str]:
    """Kobo metadata columns present in `columns`.

    Parameters
    ----------
    columns : Sequence[str]
        Canonical column names.
    source_columns : dict[str, str], optional
        Canonical -> original header; anything under ``meta/`` or ``formhub/`` is metadata.

    Returns
    -------
    frozenset[str]
        Server and form metadata, plus the ``_<geopoint>_latitude``-style columns Kobo derives
        from geopoint questions.
    """
    source = source_columns or {}
    parts, _ = _geo_columns(columns)
    return frozenset(
        c
        for c in columns
        if c in METADATA_COLUMNS or c in parts or source.get(c, c).startswith(_META_GROUPS)
    )


def identifier_columns(columns: Sequence[str]) -> frozenset[str]:
    """Kobo direct-identifier columns present in `columns`.

    Parameters
    ----------
    columns : Sequence[str]
        Canonical column names.

    Returns
    -------
    frozenset[str]
        Device and account identifiers, ``_geolocation``, the latitude/longitude parts of
        geopoint questions and the geopoint question itself (it holds "lat lon alt acc").
    """
    parts, questions = _geo_columns(columns)
    location = {p for p in parts if not p.endswith(("_altitude", "_precision"))}
    return frozenset(c for c in columns if c in IDENTIFIER_COLUMNS or c in location) | frozenset(
        questions
    )


def _test_reason(tags: object, status: object) -> str | None:
    reasons = []
    for column, value in (("_tags", tags), ("_status", status)):
        if value is None:
            continue
        tokens = {t.lower() for t in _TOKEN_SPLIT.split(str(value)) if t}
        hit = sorted(tokens & TEST_TOKENS)
        if hit:
            reasons.append(f"Kobo {column} contains {hit[0]!r}")
    return "; ".join(reasons) or None


def row_meta(table: ParsedTable) -> pd.DataFrame:
    """Per-submission metadata from Kobo's columns.

    ``response_id`` is ``_uuid`` (else ``instanceID``); ``submitted_at`` is
    ``_submission_time``, which Kobo writes in UTC; ``finished`` is ``<NA>`` (Kobo only stores
    finalised submissions and records no completion flag); ``is_test`` is true when ``_tags``
    or ``_status`` holds one of `TEST_TOKENS` as a whole token.

    Parameters
    ----------
    table : ParsedTable
        The table read from the file.

    Returns
    -------
    pd.DataFrame
        The `row_meta` frame.
    """
    data = table.data
    n = len(data)

    def column(name: str) -> list[object]:
        return data[name].tolist() if name in data.columns else [None] * n

    id_name = next((c for c in ("_uuid", "instanceID") if c in data.columns), None)
    submitted = (
        parse_timestamps(column("_submission_time"), "UTC")
        if "_submission_time" in data.columns
        else None
    )
    reasons = [_test_reason(t, s) for t, s in zip(column("_tags"), column("_status"), strict=True)]
    return make_row_meta(
        data.index,
        response_id=column(id_name) if id_name else None,
        submitted_at=submitted,
        is_test=[r is not None for r in reasons],
        test_reason=reasons,
    )
