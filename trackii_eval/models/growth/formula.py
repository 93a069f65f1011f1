"""Split an lme4-style formula into its fixed part and its random-effects terms.

Only the bar terms are parsed here; the fixed part is handed to formulaic unchanged so that
categorical coding and term names are exactly formulaic's (``Intercept``, ``arm[T.dialogue]``).

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48. doi:10.18637/jss.v067.i01 (§2.1,
the ``(expr | factor)`` notation).
"""

from __future__ import annotations

from dataclasses import dataclass

from trackii_eval.errors import ModelError

__all__ = ["ParsedFormula", "RandomTerm", "parse_formula"]


@dataclass(frozen=True)
class RandomTerm:
    """One ``(expr | group)`` or ``(expr || group)`` term.

    Attributes
    ----------
    expr : str
        The left of the bar, a formulaic right-hand side such as ``"time"`` or ``"0 + time"``.
    group : tuple of str
        Column names whose combination defines the grouping factor (``a:b`` gives two).
    independent : bool
        True for ``||``: the terms get a diagonal covariance (no correlations).
    """

    expr: str
    group: tuple[str, ...]
    independent: bool = False

    @property
    def group_name(self) -> str:
        """The grouping factor's display name (``a:b`` for an interaction)."""
        return ":".join(self.group)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed right-hand side and random terms."""

    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]


def _top_level_split(text: str, sep: str) -> list[str]:
    # Split on `sep` only outside parentheses so that I(time**2) or (a | b) survive intact.
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ModelError(f"formula {text!r}: unbalanced ')' at character {i + 1}")
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    if depth != 0:
        raise ModelError(f"formula {text!r}: unbalanced '('")
    parts.append(text[start:])
    return parts


def _bar_terms(inner: str, whole: str) -> list[RandomTerm]:
    """Return the RandomTerms for the inside of a parenthesised group ([] if it has no bar)."""
    for bar, independent in (("||", True), ("|", False)):
        pieces = _top_level_split(inner, bar)
        if len(pieces) > 2:
            raise ModelError(f"formula {whole!r}: more than one bar in ({inner})")
        if len(pieces) < 2:
            continue
        expr, group = (p.strip() for p in pieces)
        if not expr:
            raise ModelError(f"formula {whole!r}: random term ({inner}) has nothing left of |")
        # lme4 reads (1 | a/b) as (1 | a) + (1 | a:b); accept the same shorthand.
        nests = [g.strip() for g in group.split("/")]
        groups = [
            tuple(g.strip() for g in ":".join(nests[: k + 1]).split(":")) for k in range(len(nests))
        ]
        for names in groups:
            if any(not g.isidentifier() for g in names):
                raise ModelError(
                    f"formula {whole!r}: the grouping factor in ({inner}) must be column "
                    "names joined by ':' or '/'"
                )
        return [RandomTerm(expr=expr, group=g, independent=independent) for g in groups]
    return []


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``"y ~ fixed + (expr | group)"`` into its parts.

    Parameters
    ----------
    formula : str
        An lme4-style two-sided formula. Random terms are parenthesised groups with ``|`` (
        correlated) or ``||`` (independent); ``(1 | a/b)`` is shorthand for
        ``(1 | a) + (1 | a:b)``.

    Returns
    -------
    ParsedFormula
        Response name, the fixed right-hand side (``"1"`` when only random terms were given)
        and the random terms in formula order.

    Raises
    ------
    ModelError
        If the formula is not two-sided or a bar term is malformed.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """
    if not isinstance(formula, str):
        raise ModelError("formula must be a string such as 'score ~ time + (time | participant)'")
    sides = _top_level_split(formula, "~")
    if len(sides) != 2 or not sides[0].strip():
        raise ModelError(
            f"formula {formula!r} must have exactly one '~' with a response on the left"
        )
    response, rhs = sides[0].strip(), sides[1]
    fixed_parts: list[str] = []
    random: list[RandomTerm] = []
    for raw in _top_level_split(rhs, "+"):
        part = raw.strip()
        if part.startswith("(") and part.endswith(")") and _matching_close(part) == len(part) - 1:
            inner = part[1:-1]
            terms = _bar_terms(inner, formula)
            if terms:
                random.extend(terms)
                continue
        if part:
            fixed_parts.append(part)
        else:
            raise ModelError(f"formula {formula!r}: empty term between '+' signs")
    fixed = " + ".join(fixed_parts) if fixed_parts else "1"
    if "|" in fixed:
        raise ModelError(
            f"formula {formula!r}: a '|' outside a parenthesised random term; write random "
            "effects as (expr | group)"
        )
    return ParsedFormula(text=formula, response=response, fixed=fixed, random=tuple(random))


def _matching_close(text: str) -> int:
    # Index of the parenthesis closing the one at position 0.
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1
