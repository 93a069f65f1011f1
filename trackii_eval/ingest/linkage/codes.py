"""Self-generated identification codes: declared elements, normalisation, what a slip is."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ...errors import IngestError

ElementKind = Literal["letters", "digits", "any"]

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

