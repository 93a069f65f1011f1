"""A minimal Stata 118 (.dta, Stata 14+) writer for test files, written from Stata's format spec.

pyreadstat and pandas cannot write every numeric storage type with extended missing values
(pyreadstat writes ``long`` or ``double``; pandas writes no ``.a``-``.z``), so the missing-value
tests build their files here, byte by byte, from the published format
(https://www.stata.com/help.cgi?dta, "Representation of numbers" and "Missing values").
Only what the tests need: numeric types byte/int/long/float/double, fixed strings, value
labels on integer values and on extended missing values.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

# Storage type codes (dta 117/118).
TYPE_CODES = {"byte": 65530, "int": 65529, "long": 65528, "float": 65527, "double": 65526}
# The system missing value "." of each integer type; ".a" is one more, ... ".z" is 26 more.
_INT_MISSING = {"byte": 101, "int": 32741, "long": 2147483621}
_INT_FORMAT = {"byte": "<b", "int": "<h", "long": "<i"}
# Largest non-missing values (Stata's limits).
INT_MAX = {"byte": 100, "int": 32740, "long": 2147483620}


def _letter_offset(letter: str) -> int:
    if len(letter) != 1 or not "a" <= letter <= "z":
        raise ValueError(f"extended missing must be a letter a-z, got {letter!r}")
    return ord(letter) - ord("a") + 1


def encode_cell(stype: str, value: object) -> bytes:
    """Bytes of one numeric cell: a number, None for ``.``, or a letter for ``.a``-``.z``."""
    if stype in _INT_MISSING:
        if value is None:
            number = _INT_MISSING[stype]
        elif isinstance(value, str):
            number = _INT_MISSING[stype] + _letter_offset(value)
        else:
            number = int(value)  # type: ignore[call-overload]
        return struct.pack(_INT_FORMAT[stype], number)
    if stype == "float":
        if value is None or isinstance(value, str):
            off = 0 if value is None else _letter_offset(value)
            return struct.pack("<I", 0x7F000000 + off * 0x800)
        return struct.pack("<f", float(value))  # type: ignore[arg-type]
    if stype == "double":
        if value is None or isinstance(value, str):
            off = 0 if value is None else _letter_offset(value)
            return struct.pack("<Q", 0x7FE0000000000000 + off * 0x010000000000)
        return struct.pack("<d", float(value))  # type: ignore[arg-type]
    raise ValueError(stype)


def _label_key(value: object) -> int:
    """Value-label keys are int32; ``.a`` is 2147483622 whatever the storage type."""
    if isinstance(value, str):
        return _INT_MISSING["long"] + _letter_offset(value)
    return int(value)  # type: ignore[call-overload]


def _fixed(text: str, width: int) -> bytes:
    raw = text.encode("utf-8")[: width - 1]
    return raw + b"\0" * (width - len(raw))


def write_dta(
    path: Path,
    columns: Sequence[tuple[str, str, Sequence[object]]],
    value_labels: dict[str, dict[object, str]] | None = None,
) -> None:
    """Write a Stata 118 file.

    Parameters
    ----------
    path : Path
        Where to write.
    columns : Sequence of (name, storage type, values)
        Storage type ``byte``/``int``/``long``/``float``/``double`` or ``strN``; numeric values
        are numbers, ``None`` (``.``) or a letter (``.a``-``.z``); string values are ``str``.
    value_labels : dict, optional
        Column name -> {value or letter: label}; the label set is named after the column.
    """
    value_labels = value_labels or {}
    n = len(columns[0][2])
    k = len(columns)
    out = bytearray()
    offsets: dict[str, int] = {}

    def tag(name: str, body: bytes) -> None:
        offsets[name] = len(out)
        out.extend(f"<{name}>".encode() + body + f"</{name}>".encode())

    out.extend(b"<stata_dta><header><release>118</release><byteorder>LSF</byteorder>")
    out.extend(b"<K>" + struct.pack("<H", k) + b"</K>")
    out.extend(b"<N>" + struct.pack("<Q", n) + b"</N>")
    out.extend(b"<label>" + struct.pack("<H", 0) + b"</label>")
    out.extend(b"<timestamp>" + bytes([17]) + b"01 Jan 2024 00:00" + b"</timestamp></header>")
    map_at = len(out)
    tag("map", b"\0" * (14 * 8))
    types = []
    for _, stype, _values in columns:
        types.append(int(stype[3:]) if stype.startswith("str") else TYPE_CODES[stype])
    tag("variable_types", b"".join(struct.pack("<H", t) for t in types))
    tag("varnames", b"".join(_fixed(name, 129) for name, _, _ in columns))
    tag("sortlist", b"\0\0" * (k + 1))
    fmts = [
        f"%{st[3:]}s" if st.startswith("str") else ("%9.0g" if st != "double" else "%10.0g")
        for _, st, _ in columns
    ]
    tag("formats", b"".join(_fixed(f, 57) for f in fmts))
    tag("value_label_names", b"".join(
        _fixed(name if name in value_labels else "", 129) for name, _, _ in columns))
    tag("variable_labels", b"".join(_fixed("", 321) for _ in columns))
    tag("characteristics", b"")
    rows = bytearray()
    for i in range(n):
        for (_, stype, values), code in zip(columns, types, strict=True):
            if stype.startswith("str"):
                rows.extend(_fixed(str(values[i]), code + 1)[:code])
            else:
                rows.extend(encode_cell(stype, values[i]))
    tag("data", bytes(rows))
    tag("strls", b"")
    labels = bytearray()
    for name, mapping in value_labels.items():
        keys = [_label_key(v) for v in mapping]
        texts = [t.encode("utf-8") + b"\0" for t in mapping.values()]
        offs, pos = [], 0
        for t in texts:
            offs.append(pos)
            pos += len(t)
        table = struct.pack("<ii", len(keys), pos)
        table += b"".join(struct.pack("<i", o) for o in offs)
        table += b"".join(struct.pack("<i", v) for v in keys)
        table += b"".join(texts)
        labels.extend(b"<lbl>" + struct.pack("<i", len(table)) + _fixed(name, 129) + b"\0\0\0"
                      + table + b"</lbl>")
    tag("value_labels", bytes(labels))
    offsets["end_tag"] = len(out)
    out.extend(b"</stata_dta>")
    the_map = [0, offsets["map"], offsets["variable_types"], offsets["varnames"],
               offsets["sortlist"], offsets["formats"], offsets["value_label_names"],
               offsets["variable_labels"], offsets["characteristics"], offsets["data"],
               offsets["strls"], offsets["value_labels"], offsets["end_tag"], len(out)]
    out[map_at + 5: map_at + 5 + 14 * 8] = b"".join(struct.pack("<Q", o) for o in the_map)
    path.write_bytes(bytes(out))
