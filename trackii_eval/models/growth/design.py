"""Turn a parsed formula and a DataFrame into the arrays the engine needs.

The design is built once per model: formulaic parses the fixed part and each random-term
expression a single time, and the resulting model specs are kept so that ``predict`` on new
data uses exactly the same coding (categorical levels, contrasts, transforms).

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§2.2-2.3, the random-effects structure
and the relative covariance factor Λ_θ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from trackii_eval.errors import ModelError, UnsupportedModelError
from trackii_eval.models.growth.formula import ParsedFormula, RandomTerm

__all__ = [
    "Design",
    "Prepared",
    "Structure",
    "build_design",
    "classify_structure",
    "drop_rank_deficient",
    "not_estimable_terms",
    "prepare",
]


@dataclass(frozen=True)
class Structure:
    """Which random-effects structure a formula asks for, decided from the data.

    Attributes
    ----------
    kind : str
        ``"native"`` (one participant factor, optionally nested in an outer factor with its
        own random intercept and slopes), ``"vc"`` (only random intercepts, e.g. crossed
        factors: statsmodels fallback).
    inner : tuple of RandomTerm
        The terms of the participant (finest) factor.
    outer : RandomTerm or None
        The first term of the outer (dialogue) factor when present.
    reason : str
        Why a fallback was chosen (empty for native).
    outer_terms : tuple of RandomTerm
        Every term of the outer factor, e.g. ``(time | dialogue)`` (empty without one).
    """

    kind: str
    inner: tuple[RandomTerm, ...]
    outer: RandomTerm | None = None
    reason: str = ""
    outer_terms: tuple[RandomTerm, ...] = ()


@dataclass
class Design:
    """Arrays for one fit (rows with missing values already removed).

    ``theta_pos`` lists, in lme4's ``getME(m, "theta")`` order, the (row, column) of Λ each
    participant-level θ fills; when ``has_outer`` the outer factor's θ follow, filling the
    (row, column) of its own factor Λ_o listed in ``theta_pos_outer`` (one θ, (0, 0), for an
    outer random intercept alone).
    """

    parsed: ParsedFormula
    structure: Structure
    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    x_names: list[str]
    z_names: list[str]
    group: np.ndarray  # participant code per row, 0..G-1
    group_levels: pd.Index
    group_name: str
    outer_of_group: np.ndarray | None  # dialogue code per participant
    outer_levels: pd.Index | None
    outer_name: str | None
    theta_pos: list[tuple[int, int]]
    n_dropped: int
    fixed_spec: Any
    z_specs: list[Any]
    z_from_x: list[int] | None = None  # Z = X[:, z_from_x] when every random term is in X
    dropped_columns: list[str] = field(default_factory=list)
    Zo: np.ndarray | None = None  # (n, q_o) outer random-effects matrix
    zo_names: list[str] = field(default_factory=list)
    zo_specs: list[Any] = field(default_factory=list)
    theta_pos_outer: list[tuple[int, int]] = field(default_factory=list)

    @property
    def has_outer(self) -> bool:
        """True when a nested outer random intercept (dialogue) is in the model."""
        return self.outer_of_group is not None

    @property
    def n_theta(self) -> int:
        """Number of covariance parameters θ."""
        return len(self.theta_pos) + len(self.theta_pos_outer)

    @property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds for θ: 0 on Λ's and Λ_o's diagonals, -inf elsewhere."""
        lb = [0.0 if r == c else -np.inf for r, c in [*self.theta_pos, *self.theta_pos_outer]]
        return np.asarray(lb)


def _group_codes(data: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    # Levels sorted as R sorts factor levels, so ranef() rows come in lme4's order.
    if len(cols) == 1:
        codes, levels = pd.factorize(data[cols[0]], sort=True)
        return codes.astype(np.intp), pd.Index(levels, name=cols[0])
    keys = pd.MultiIndex.from_frame(data[list(cols)])
    codes, levels = pd.factorize(keys, sort=True)
    return codes.astype(np.intp), pd.Index(levels, name=":".join(cols))


def _is_intercept_only(term: RandomTerm) -> bool:
    return term.expr.replace(" ", "") in {"1", "1+0", "0+1"} or term.expr.strip() == "1"


def classify_structure(
    parsed: ParsedFormula, codes: dict[tuple[str, ...], np.ndarray]
) -> Structure:
    """Decide whether the random part is in the native family.

    Parameters
    ----------
    parsed : ParsedFormula
        The split formula.
    codes : dict
        Integer codes of each grouping factor on the analysis rows.

    Returns
    -------
    Structure
        ``kind="native"`` or ``kind="vc"`` (statsmodels variance-components fallback).

    Raises
    ------
    UnsupportedModelError
        If the structure is neither native nor expressible as variance components.
    """
    if not parsed.random:
        raise UnsupportedModelError(
            f"formula {parsed.text!r} has no random term such as (time | participant); a growth "
            "model needs at least one"
        )
    by_group: dict[tuple[str, ...], list[RandomTerm]] = {}
    for term in parsed.random:
        by_group.setdefault(term.group, []).append(term)
    groups = list(by_group)
    nlev = {g: int(codes[g].max()) + 1 if codes[g].size else 0 for g in groups}
    all_intercepts = all(_is_intercept_only(t) for t in parsed.random)
    if len(groups) == 1:
        return Structure("native", tuple(by_group[groups[0]]))
    if len(groups) == 2:
        # lme4 orders terms by decreasing number of levels; the finer factor is the participant.
        fine, coarse = sorted(groups, key=lambda g: -nlev[g])
        coarse_terms = by_group[coarse]
        nested = _is_nested(codes[fine], codes[coarse], nlev[fine])
        if nested:
            # Intercept and slopes of the outer factor, as lme4's (time | dialogue).
            return Structure("native", tuple(by_group[fine]), outer=coarse_terms[0],
                             outer_terms=tuple(coarse_terms))
        why = f"'{':'.join(fine)}' is not nested in '{':'.join(coarse)}' (crossed factors)"
    else:
        why = f"{len(groups)} grouping factors"
    if all_intercepts:
        return Structure("vc", tuple(parsed.random), reason=why)
    raise UnsupportedModelError(
        f"formula {parsed.text!r}: {why} with random slopes is not supported; supported are "
        "(terms | participant), optionally + (terms | dialogue) with participants nested in "
        "dialogues, and random-intercept-only models (fitted by statsmodels)"
    )


def _is_nested(fine: np.ndarray, coarse: np.ndarray, n_fine: int) -> bool:
    # Nested when every fine level sits in exactly one coarse level.
    first = np.full(n_fine, -1, dtype=np.intp)
    first[fine] = coarse
    return bool(np.all(first[fine] == coarse))


def _theta_positions(terms: tuple[RandomTerm, ...], widths: list[int]) -> list[tuple[int, int]]:
    # lme4's theta is each term's lower triangle, column by column, terms in formula order.
    pos: list[tuple[int, int]] = []
    start = 0
    for term, w in zip(terms, widths, strict=True):
        for c in range(start, start + w):
            if term.independent:
                pos.append((c, c))
            else:
                pos.extend((r, c) for r in range(c, start + w))
        start += w
    return pos


_FORMULA_CACHE: dict[str, Any] = {}


def _formula(expr: str) -> Any:
    # formulaic parses a right-hand side in ~0.5 ms; a model is built from a handful of them,
    # each needed twice (required columns, then the matrix), so parse each text once.
    f = _FORMULA_CACHE.get(expr)
    if f is None:
        try:
            f = Formula(expr)
        except Exception as exc:  # formulaic raises many types; name the formula part
            raise ModelError(f"cannot parse {expr!r}: {exc}") from exc
        if len(_FORMULA_CACHE) > 256:
            _FORMULA_CACHE.clear()
        _FORMULA_CACHE[expr] = f
    return f


class _LazySpec:
    """A formulaic ModelSpec built on first use (only ``predict`` needs one).

    Used with the numeric fast path below, where the matrix is built without formulaic; the
    spec comes from a one-row sample, which is enough because no variable is categorical.
    """

    def __init__(self, expr: str, sample: pd.DataFrame) -> None:
        self._expr, self._sample, self._spec = expr, sample, None

    def _get(self) -> Any:
        if self._spec is None:
            self._spec = model_matrix(_formula(self._expr), self._sample, na_action="ignore",
                                      output="numpy").model_spec
        return self._spec

    def get_model_matrix(self, *args: Any, **kwargs: Any) -> Any:
        return self._get().get_model_matrix(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def _fast_numeric(expr: str, data: pd.DataFrame) -> tuple[np.ndarray, Any, list[str]] | None:
    """Build the matrix directly when every term is a product of plain numeric columns.

    formulaic's materialisation costs a few milliseconds per call whatever the data size,
    which dominates small fits (and thousands of refits in power analysis). Terms, their order
    and their names are still formulaic's own (from the parsed formula); anything else
    (categoricals, transforms, bools) returns None and goes through formulaic.
    """
    names, plans = [], []
    n = len(data)
    for term in _formula(expr):
        name = str(term)
        if name == "1":
            names.append("Intercept")
            plans.append([])
            continue
        factors = [str(f) for f in term.factors]
        for fac in factors:
            if fac not in data.columns:
                return None
            dtype = data[fac].dtype
            if not (pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype)):
                return None
        names.append(name)
        plans.append(factors)
    if not plans:
        return None
    # Filled column by column in Fortran order: one write per column, no temporaries and no
    # column_stack copy (which cost a third of a 500,000-participant fit).
    out = np.empty((n, len(plans)), order="F")
    for j, factors in enumerate(plans):
        col = out[:, j]
        if not factors:
            col.fill(1.0)
            continue
        col[:] = data[factors[0]].to_numpy(dtype=float, copy=False)
        for fac in factors[1:]:
            col *= data[fac].to_numpy(dtype=float, copy=False)
    return out, _LazySpec(expr, data.iloc[:1]), names


def _numpy_matrix(expr: str, data: pd.DataFrame, what: str) -> tuple[np.ndarray, Any, list[str]]:
    fast = _fast_numeric(expr, data)
    if fast is not None:
        return fast
    try:
        mm = model_matrix(_formula(expr), data, na_action="ignore", output="numpy")
    except Exception as exc:  # formulaic raises many types; name the formula part for the user
        raise ModelError(f"cannot build the {what} from {expr!r}: {exc}") from exc
    spec = mm.model_spec
    return np.asarray(mm, dtype=float), spec, list(spec.column_names)


def _columns_in_x(expr: str, x_names: list[str]) -> list[int] | None:
    """Indices of X's columns that make up a random term's Z, or None if not all are there.

    Only terms whose column name is the term itself qualify (the intercept and numeric
    variables or transforms); a categorical term's columns carry level suffixes and go through
    formulaic.
    """
    names = []
    for term in _formula(expr):
        name = str(term)
        names.append("Intercept" if name == "1" else name)
    if not all(nm in x_names for nm in names):
        return None
    return [x_names.index(nm) for nm in names]


def used_columns(parsed: ParsedFormula, data: pd.DataFrame) -> list[str]:
    """Columns of ``data`` the formula reads (response, predictors, grouping factors)."""
    needed: set[str] = set()
    for rhs in [parsed.fixed, *(t.expr for t in parsed.random)]:
        needed |= set(_formula(rhs).required_variables)
    if parsed.response in data.columns:
        needed.add(parsed.response)
    else:
        needed |= set(_formula(parsed.response).required_variables)
    for t in parsed.random:
        needed |= set(t.group)
    missing = sorted(c for c in needed if c not in data.columns)
    if missing:
        raise ModelError(f"formula {parsed.text!r} uses columns not in the data: {missing}")
    return sorted(needed)


@dataclass(frozen=True)
class Prepared:
    """Analysis rows (missing values dropped) and the random-structure decision."""

    parsed: ParsedFormula
    frame: pd.DataFrame
    n_dropped: int
    codes: dict[tuple[str, ...], tuple[np.ndarray, pd.Index]]
    structure: Structure


def prepare(parsed: ParsedFormula, data: pd.DataFrame) -> Prepared:
    """Drop rows with missing values in used columns and classify the random structure.

    Parameters
    ----------
    parsed : ParsedFormula
        The split formula.
    data : pandas.DataFrame
        Long-format panel.

    Returns
    -------
    Prepared

    Raises
    ------
    ModelError
        If columns are missing or no rows remain.
    UnsupportedModelError
        If the random structure is outside what is supported.
    """
    if not isinstance(data, pd.DataFrame):
        raise ModelError("data must be a pandas DataFrame in long format (one row per wave)")
    cols = used_columns(parsed, data)
    frame = data[cols]
    keep = ~frame.isna().any(axis=1).to_numpy()
    n_dropped = int((~keep).sum())
    if n_dropped:
        frame = frame.loc[keep]
    if len(frame) == 0:
        raise ModelError(f"formula {parsed.text!r}: no rows left after dropping missing values")
    # Rows are used by position from here on; the index labels do not matter.
    codes = {t.group: _group_codes(frame, t.group) for t in parsed.random}
    structure = classify_structure(parsed, {g: c[0] for g, c in codes.items()})
    return Prepared(parsed, frame, n_dropped, codes, structure)


def build_design(prep: Prepared) -> Design:
    """Build the arrays for a native fit.

    Parameters
    ----------
    prep : Prepared
        Output of :func:`prepare` with ``structure.kind == "native"``.

    Returns
    -------
    Design
        Response, fixed- and random-effects matrices, codes and θ layout.

    Raises
    ------
    ModelError
        If a model matrix cannot be built.
    """
    parsed, frame, codes, structure = prep.parsed, prep.frame, prep.codes, prep.structure
    n_dropped = prep.n_dropped
    if parsed.response in frame.columns:
        y = frame[parsed.response].to_numpy(dtype=float)
    else:
        y = _numpy_matrix(f"0 + {parsed.response}", frame, "response")[0][:, 0]
    X, fixed_spec, x_names = _numpy_matrix(parsed.fixed, frame, "fixed-effects matrix")
    z_parts, z_specs, z_names, widths = [], [], [], []
    z_from_x: list[int] | None = []
    for term in structure.inner:
        idx = _columns_in_x(term.expr, x_names)
        if idx is not None and z_from_x is not None:
            # Numeric terms already in the fixed part: reuse X's columns, skip formulaic.
            z_from_x.extend(idx)
            z_parts.append(X[:, idx])
            z_specs.append(None)
            names = [x_names[i] for i in idx]
        else:
            z_from_x = None
            Zt, spec, names = _numpy_matrix(term.expr, frame, "random-effects matrix")
            z_parts.append(Zt)
            z_specs.append(spec)
        z_names.extend(names)
        widths.append(z_parts[-1].shape[1])
    if z_from_x is None:
        # Mixed fast and slow terms: build the specs of the fast ones too, for predict().
        for k, term in enumerate(structure.inner):
            if z_specs[k] is None:
                z_specs[k] = _numpy_matrix(term.expr, frame.iloc[:1], "random-effects matrix")[1]
    Z = np.hstack(z_parts) if len(z_parts) > 1 else z_parts[0]
    if len(set(z_names)) != len(z_names):
        raise UnsupportedModelError(
            f"formula {parsed.text!r}: the same random term appears twice for one factor "
            f"({z_names}); the model would not be identifiable"
        )

    # Transforms (log of a negative, division by zero) can still yield non-finite values.
    finite = np.isfinite(y) & np.isfinite(X).all(axis=1) & np.isfinite(Z).all(axis=1)
    Zo, zo_names, zo_specs, pos_outer = None, [], [], []
    if structure.outer_terms:
        Zo, zo_names, zo_specs, pos_outer = _outer_matrix(structure, frame, parsed)
        finite &= np.isfinite(Zo).all(axis=1)
    group_codes, group_levels = codes[structure.inner[0].group]
    outer_codes = codes[structure.outer.group][0] if structure.outer is not None else None
    if not finite.all():
        n_dropped += int((~finite).sum())
        y, X, Z = y[finite], X[finite], Z[finite]
        Zo = Zo[finite] if Zo is not None else None
        group_codes = group_codes[finite]
        outer_codes = outer_codes[finite] if outer_codes is not None else None
        # Re-code so that every participant level is observed.
        used, group_codes = np.unique(group_codes, return_inverse=True)
        group_levels = group_levels[used]
    n_groups = len(group_levels)

    outer_of_group = outer_levels = None
    outer_name = None
    if structure.outer is not None and outer_codes is not None:
        of_g = np.empty(n_groups, dtype=np.intp)
        of_g[group_codes] = outer_codes
        used, of_g = np.unique(of_g, return_inverse=True)
        outer_of_group = of_g
        outer_levels = codes[structure.outer.group][1][used]
        outer_name = structure.outer.group_name

    return Design(
        parsed=parsed,
        structure=structure,
        y=y,
        X=X,
        Z=Z,
        x_names=x_names,
        z_names=z_names,
        group=group_codes,
        group_levels=group_levels,
        group_name=structure.inner[0].group_name,
        outer_of_group=outer_of_group,
        outer_levels=outer_levels,
        outer_name=outer_name,
        theta_pos=_theta_positions(structure.inner, widths),
        n_dropped=n_dropped,
        fixed_spec=fixed_spec,
        z_specs=z_specs,
        z_from_x=z_from_x,
        Zo=Zo,
        zo_names=zo_names,
        zo_specs=zo_specs,
        theta_pos_outer=pos_outer,
    )


def _outer_matrix(
    structure: Structure, frame: pd.DataFrame, parsed: ParsedFormula
) -> tuple[np.ndarray, list[str], list[Any], list[tuple[int, int]]]:
    """Z_o (n, q_o), its column names and specs, and Λ_o's θ positions for the outer terms."""
    parts, names, specs, widths = [], [], [], []
    for term in structure.outer_terms:
        Zt, spec, nm = _numpy_matrix(term.expr, frame, "outer random-effects matrix")
        parts.append(Zt)
        specs.append(spec)
        names.extend(nm)
        widths.append(Zt.shape[1])
    if len(set(names)) != len(names):
        raise UnsupportedModelError(
            f"formula {parsed.text!r}: the same random term appears twice for the outer factor "
            f"({names}); the model would not be identifiable"
        )
    Zo = np.hstack(parts) if len(parts) > 1 else parts[0]
    return Zo, names, specs, _theta_positions(structure.outer_terms, widths)


def drop_rank_deficient(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns of X that are linear combinations of earlier ones (as lme4 does).

    A column is dropped when its distance to the span of the columns kept before it is below
    1e-7 times its norm, the tolerance of R's ``qr``; later columns are dropped first in the
    sense that an earlier column is never dropped in favour of a later one.

    Returns
    -------
    X_kept, kept_names, dropped_names
    """
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    # A cheap first check on the scaled cross-product; the QR below only runs when needed.
    scale = np.where(norms > 0, norms, 1.0)
    xtx = (X.T @ X) / np.outer(scale, scale)
    try:
        chol = np.linalg.cholesky(xtx)
        if np.min(np.diag(chol)) ** 2 > 1e-8 and np.all(norms > 0):
            return X, names, []
    except np.linalg.LinAlgError:
        pass
    keep: list[int] = []
    dropped: list[str] = []
    for j in range(X.shape[1]):
        if norms[j] == 0:
            dropped.append(names[j])
            continue
        cand = [*keep, j]
        r = np.linalg.qr(X[:, cand], mode="r")
        if abs(r[-1, -1]) <= 1e-7 * norms[j]:
            dropped.append(names[j])
        else:
            keep.append(j)
    return X[:, keep], [names[j] for j in keep], dropped


def _single_level(frame: pd.DataFrame, expr: str) -> str | None:
    # The level a categorical factor (plain column or C(column)) is stuck at, else None.
    col = expr.strip()
    if col.startswith("C(") and col.endswith(")"):
        col = col[2:-1].split(",")[0].strip()
    if col not in frame.columns:
        return None
    values = frame[col]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and not expr.strip().startswith("C("):
        return None
    present = pd.unique(values.dropna())
    if len(present) >= 2:
        return None
    return f"{col} has one level in the data: {present[0]}" if len(present) else \
        f"{col} has no observed level in the data"


def not_estimable_terms(fixed: str, frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Fixed-effect terms the analysis rows cannot identify, with the reason.

    A categorical factor observed at a single level (e.g. ``arm`` after the comparison arm
    was filtered out) makes formulaic's reduced-rank coding emit no column at all for every
    term that involves it, so the effect would vanish from the table without a trace. The
    project's rule is that such an effect is reported as not estimable with the reason.

    Parameters
    ----------
    fixed : str
        The fixed-effects part of the formula (right-hand side).
    frame : pandas.DataFrame
        The analysis rows (missing values already removed).

    Returns
    -------
    list of (term, note)
        One entry per formula term (``"arm"``, ``"time:arm"``) that involves such a factor;
        ``note`` starts with ``"not estimable: "``.
    """
    try:
        terms = list(Formula(fixed))
    except Exception:  # formula errors are reported by the model-matrix step
        return []
    out: list[tuple[str, str]] = []
    for term in terms:
        for factor in term.factors:
            why = _single_level(frame, str(factor.expr))
            if why is not None:
                out.append((str(term), f"not estimable: {why}"))
                break
    return out


def aliased_notes(dropped: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """(column, note) rows for columns dropped by :func:`drop_rank_deficient`."""
    return [(c, "not estimable: aliased (a linear combination of other columns, or constant "
                "in the data); dropped as lme4 does") for c in dropped]
