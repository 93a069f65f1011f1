"""One results protocol for every model: tidy tables, summaries, a fit record, serialisation.

Every model of the project (growth curves, panel models and event studies; later
difference-in-differences and power) returns an object that satisfies :class:`ModelResult`.
The report, the analysis plan, the command line and the dashboard read fits only through it:
they never branch on the kind of model and never name a formula term.

``tidy(level=)`` columns (:data:`TIDY_COLUMNS`, in this order, as broom / modelsummary):

===========  ===========================================================================
term         coefficient name as the model names it
estimate     point estimate (NaN when not estimable)
std_error    standard error
statistic    estimate / std_error (t or z, see ``df``)
df           degrees of freedom of the reference t distribution; NaN means normal (z)
p_value      two-sided p-value
ci_low       lower bound of the ``level`` confidence interval
ci_high      upper bound
estimable    False when the data cannot identify the term (then ``note`` says why)
role         ``"effect"`` for a contrast between the dialogue and the comparison arm, else
             ``"other"`` (intercepts, time trends, covariates)
note         why a term is not estimable, or a caveat; "" otherwise
===========  ===========================================================================

Every fit carries a :class:`FitRecord`: estimator, optimiser, tolerances, evaluations,
convergence, warnings, package versions, a fingerprint of the data it was fitted to, the
number of observations and of groups.

``to_dict()`` gives plain JSON (NaN and inf as ``None``) with ``kind`` and ``schema`` keys;
:func:`result_from_dict` rebuilds the right class, and ``from_dict(fit.to_dict())`` tidies,
summarises and serialises exactly as the original fit. :func:`compare` sets several fits side
by side, as ``fixest::etable`` or ``modelsummary::msummary`` do.
"""

from __future__ import annotations

import functools
import hashlib
import html
import importlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import ModelError

__all__ = [
    "SCHEMA_VERSION",
    "TIDY_COLUMNS",
    "TREATMENT_VARIABLES",
    "FitRecord",
    "ModelResult",
    "compare",
    "data_fingerprint",
    "package_versions",
    "register_result",
    "result_from_dict",
    "term_role",
    "tidy_frame",
]

SCHEMA_VERSION = 1
TIDY_COLUMNS = ("term", "estimate", "std_error", "statistic", "df", "p_value", "ci_low",
                "ci_high", "estimable", "role", "note")
# Columns of the study's long score data that say who is in the dialogue arm: a coefficient
# that involves one of them is a contrast between the arms (an "effect" in tidy()).
TREATMENT_VARIABLES = ("arm", "treated")


@runtime_checkable
class ModelResult(Protocol):
    """What every fitted model offers; the report, plan, CLI and dashboard read only this."""

    kind: ClassVar[str]

    @property
    def record(self) -> FitRecord:
        """How the model was fitted and on what (see :class:`FitRecord`)."""

    @property
    def warnings(self) -> list[str]:
        """Problems a reader must see (convergence, singular fit, terms not estimable ...)."""

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """One row per term with the :data:`TIDY_COLUMNS`, intervals at ``level``."""

    def lincom(self, weights: Mapping[str, float], level: float = 0.95,
               name: str = "") -> pd.DataFrame:
        """A linear combination of coefficients as one tidy row (term = ``name``).

        Raises ModelError when ``weights`` names a term the model does not have.
        """

    def describe(self) -> str:
        """One methods-section sentence (plain text) saying what was fitted and how."""

    def summary(self) -> str:
        """Text for people."""

    def summary_html(self) -> str:
        """The summary as an HTML fragment (escaped; tables as ``<table>``)."""

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON-serialisable form; ``kind`` and ``schema`` keys included."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelResult:
        """Rebuild a fit from :meth:`to_dict` output."""


@dataclass(frozen=True)
class FitRecord:
    """How a model was fitted and on what.

    Attributes
    ----------
    estimator : str
        What was fitted, e.g. ``"linear mixed model (REML)"``.
    engine : str
        The code that fitted it (``"trackii"``, ``"statsmodels"``, ``"linearmodels"``).
    optimizer : str
        Optimiser(s) used; ``"closed form"`` for least squares.
    tolerances : dict
        Convergence tolerances by name.
    n_evals : int or None
        Criterion evaluations (None for closed-form estimators).
    converged : bool
        Whether the convergence checks passed.
    warnings : tuple of str
        Problems a reader must see.
    versions : dict
        Package versions at fit time.
    data_fingerprint : str
        SHA-256 (hex) of the data the model was fitted to (see :func:`data_fingerprint`).
    n_obs : int
        Observations used.
    n_groups : dict
        Number of levels of each grouping factor (e.g. ``{"participant": 230}``).
    vcov : str
        How standard errors were computed.
    """

    estimator: str
    engine: str
    optimizer: str
    tolerances: dict[str, float]
    n_evals: int | None
    converged: bool
    warnings: tuple[str, ...]
    versions: dict[str, str]
    data_fingerprint: str
    n_obs: int
    n_groups: dict[str, int]
    vcov: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "estimator": self.estimator, "engine": self.engine, "optimizer": self.optimizer,
            "tolerances": {k: json_number(v) for k, v in self.tolerances.items()},
            "n_evals": self.n_evals, "converged": bool(self.converged),
            "warnings": list(self.warnings), "versions": dict(self.versions),
            "data_fingerprint": self.data_fingerprint, "n_obs": int(self.n_obs),
            "n_groups": {k: int(v) for k, v in self.n_groups.items()}, "vcov": self.vcov,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            estimator=data["estimator"], engine=data["engine"], optimizer=data["optimizer"],
            tolerances={k: (math.nan if v is None else float(v))
                        for k, v in data["tolerances"].items()},
            n_evals=data["n_evals"], converged=bool(data["converged"]),
            warnings=tuple(data["warnings"]), versions=dict(data["versions"]),
            data_fingerprint=data["data_fingerprint"], n_obs=int(data["n_obs"]),
            n_groups={k: int(v) for k, v in data["n_groups"].items()},
            vcov=data.get("vcov", ""),
        )

    def lines(self) -> list[str]:
        """The record as ``name: value`` lines for summaries."""
        groups = ", ".join(f"{k} {v}" for k, v in self.n_groups.items()) or "-"
        tol = ", ".join(f"{k} {v:g}" for k, v in self.tolerances.items()) or "-"
        return [
            f"Estimator: {self.estimator} [{self.engine}]",
            f"Observations: {self.n_obs}; groups: {groups}",
            f"Standard errors: {self.vcov or '-'}",
            f"Optimiser: {self.optimizer}; evaluations: "
            f"{'-' if self.n_evals is None else self.n_evals}; tolerances: {tol}; "
            f"converged: {'yes' if self.converged else 'NO'}",
            f"Data fingerprint: sha256:{self.data_fingerprint[:16]}",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
        ]


# ----------------------------------------------------------------------------- helpers
def json_number(v: Any) -> Any:
    """A float, int or bool as JSON wants it; NaN and inf become None."""
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return v


def as_float(v: Any) -> float:
    """Inverse of :func:`json_number` for floats (None -> NaN)."""
    return math.nan if v is None else float(v)


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of trackii_eval, numpy, scipy, pandas and ``names``."""
    return dict(_versions(names))


@functools.lru_cache(maxsize=32)
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Looked up once per process: refits in simulations must not pay for metadata reads.
    from .. import __version__

    out = {"trackii_eval": __version__}
    for name in ("numpy", "scipy", "pandas", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - optional package
            out[name] = "not installed"
    return tuple(out.items())


def data_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 (hex) of a data frame's column names, dtypes and values (row order matters).

    Two fits share a fingerprint exactly when they saw the same data, so a report can show
    that its models were fitted to the same scores. Numeric columns are hashed as their raw
    bytes, others as their distinct values' text and each row's code (vectorised), which keeps
    this around a millisecond for a few thousand rows.
    """
    digest = hashlib.sha256()
    for name in sorted(frame.columns, key=str):
        col = frame[name]
        digest.update(f"{name}\x1e{col.dtype}\x1e{len(col)}\x1e".encode())
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "biuf":
            digest.update(np.ascontiguousarray(col.to_numpy()).tobytes())
        else:
            # distinct values as text, then each row's code (-1 for missing): vectorised
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            digest.update("\x1f".join(map(str, uniques)).encode("utf-8", "surrogatepass"))
            digest.update(np.ascontiguousarray(codes, dtype=np.int64).tobytes())
    return digest.hexdigest()


def term_role(term: str, variables: Iterable[str] = TREATMENT_VARIABLES) -> str:
    """``"effect"`` when a coefficient involves a treatment variable, else ``"other"``.

    A term is split at ``:`` (interactions) and each factor's level suffix (``[T.x]``) is
    dropped before comparing with ``variables``; model-made effect terms (event studies) set
    their role themselves.
    """
    wanted = set(variables)
    for factor in term.split(":"):
        name = factor.split("[", 1)[0].strip()
        if name.startswith("C(") and name.endswith(")"):
            name = name[2:-1].split(",", 1)[0].strip()
        if name in wanted:
            return "effect"
    return "other"


def tidy_frame(
    terms: list[str], estimate: Any, std_error: Any, df: Any, level: float, *,
    estimable: Any = None, role: list[str] | None = None, note: list[str] | None = None,
) -> pd.DataFrame:
    """Build a :data:`TIDY_COLUMNS` table: t-based where ``df`` is finite, else normal.

    Parameters
    ----------
    terms : list of str
        Term names, one per row.
    estimate, std_error, df : array-like, shape (n_terms,)
        Estimates, standard errors and reference degrees of freedom (NaN: normal).
    level : float
        Confidence level in (0, 1).
    estimable, role, note : optional
        Per-term flags; defaults: all estimable, role from :func:`term_role`, empty notes.

    Raises
    ------
    ModelError
        ``level`` outside (0, 1).
    """
    if not 0 < level < 1:
        raise ModelError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    n = len(terms)
    est = np.asarray(estimate, dtype=float).reshape(n)
    se = np.asarray(std_error, dtype=float).reshape(n)
    dfs = np.broadcast_to(np.asarray(df, dtype=float), (n,)).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    use_t = np.isfinite(dfs) & (dfs > 0)
    safe_df = np.where(use_t, dfs, 1.0)
    p = np.where(use_t, 2 * sps.t.sf(np.abs(stat), safe_df), 2 * sps.norm.sf(np.abs(stat)))
    q = 0.5 + level / 2
    crit = np.where(use_t, sps.t.ppf(q, safe_df), sps.norm.ppf(q))
    ok = np.ones(n, bool) if estimable is None else np.asarray(estimable, dtype=bool)
    return pd.DataFrame({
        "term": list(terms), "estimate": est, "std_error": se, "statistic": stat, "df": dfs,
        "p_value": p, "ci_low": est - crit * se, "ci_high": est + crit * se,
        "estimable": ok, "role": role if role is not None else [term_role(t) for t in terms],
        "note": note if note is not None else [""] * n,
    }, columns=list(TIDY_COLUMNS))


def tidy_html(table: pd.DataFrame, digits: int = 3) -> str:
    """A tidy table as an escaped HTML ``<table>`` (numbers rounded to ``digits``)."""
    shown = table.copy()
    for col in ("estimate", "std_error", "statistic", "df", "ci_low", "ci_high"):
        shown[col] = shown[col].map(lambda v: "–" if not np.isfinite(v) else f"{v:.{digits}f}")
    shown["p_value"] = shown["p_value"].map(_p_text)
    return shown.to_html(index=False, escape=True, border=0, classes="tidy")


def summary_html_layout(title: str, record: FitRecord, table: pd.DataFrame,
                           warnings: list[str]) -> str:
    """The shared HTML layout of summaries: title, tidy table, record, warnings."""
    parts = [f"<h4>{html.escape(title)}</h4>", tidy_html(table), "<ul class='fit-record'>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in record.lines()]
    parts.append("</ul>")
    if warnings:
        parts.append("<ul class='fit-warnings'>")
        parts += [f"<li>{html.escape(w)}</li>" for w in warnings]
        parts.append("</ul>")
    return "\n".join(parts)


def _p_text(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ----------------------------------------------------------------------------- registry
_RESULT_TYPES: dict[str, type] = {}
# Modules that define result types; imported on demand so that result_from_dict works before
# anyone imported the model modules (a report reads stored JSON only). A kind not found there
# is looked for in every module of trackii_eval.models.
_RESULT_MODULES = ("trackii_eval.models.growth.results", "trackii_eval.models.panel")


def _import_model_modules() -> None:
    # A result type defined in any module of trackii_eval.models (a later DiD or power module)
    # registers itself on import; only this package's own modules are ever imported here.
    import pkgutil

    from .. import models

    for info in pkgutil.walk_packages(models.__path__, prefix="trackii_eval.models."):
        importlib.import_module(info.name)


def register_result(cls: type) -> type:
    """Class decorator: make ``cls`` rebuildable by :func:`result_from_dict` via ``cls.kind``."""
    _RESULT_TYPES[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def result_from_dict(data: Mapping[str, Any]) -> ModelResult:
    """Rebuild any fit from its ``to_dict()`` form (dispatch on its ``kind`` key).

    Raises
    ------
    ModelError
        The record has no ``kind``, an unknown one, or a newer schema than this code reads.
    """
    kind = data.get("kind")
    if kind not in _RESULT_TYPES:
        for module in _RESULT_MODULES:
            importlib.import_module(module)
    if kind not in _RESULT_TYPES:
        _import_model_modules()
    if kind not in _RESULT_TYPES:
        raise ModelError(
            f"stored model result of kind {kind!r} is not one this version reads "
            f"({', '.join(sorted(_RESULT_TYPES))}); refit with `trackii-eval model`"
        )
    schema = int(data.get("schema", 0))
    if schema != SCHEMA_VERSION:
        raise ModelError(
            f"stored model result has schema {schema}, this version reads {SCHEMA_VERSION}; "
            "refit with `trackii-eval model`"
        )
    return _RESULT_TYPES[kind].from_dict(data)  # type: ignore[no-any-return,attr-defined]


# ----------------------------------------------------------------------------- compare
def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return next((s for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*")) if p < cut), "")


@dataclass(frozen=True)
class Comparison:
    """Several fits side by side (rows: terms then fit statistics; columns: models).

    Attributes
    ----------
    table : pandas.DataFrame
        Formatted cells (``estimate***`` over ``(std_error)`` or ``[ci_low, ci_high]``).
    estimates : pandas.DataFrame
        The numbers behind it: the tidy tables stacked with a ``model`` column.
    """

    table: pd.DataFrame
    estimates: pd.DataFrame
    notes: tuple[str, ...] = field(default=())

    def to_text(self) -> str:
        """Plain text."""
        return self.table.to_string() + "".join(f"\n{n}" for n in self.notes)

    def to_html(self) -> str:
        """An escaped HTML table with the notes below it."""
        body = self.table.to_html(escape=True, border=0, classes="compare")
        return body + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in self.notes)

    def __str__(self) -> str:
        return self.to_text()


def compare(
    fits: Mapping[str, ModelResult] | Iterable[ModelResult], *, level: float = 0.95,
    show: str = "std_error", digits: int = 3, roles: Iterable[str] | None = None,
) -> Comparison:
    """Several models side by side, as ``fixest::etable`` / ``modelsummary``.

    Parameters
    ----------
    fits : mapping name -> fit, or iterable of fits
        Results satisfying :class:`ModelResult` (names default to ``(1)``, ``(2)`` ...).
    level : float
        Confidence level of the intervals (``show="ci"``).
    show : {"std_error", "ci"}
        What goes under each estimate.
    digits : int
        Decimals.
    roles : iterable of str, optional
        Keep only terms with these roles (e.g. ``["effect"]``); default all terms.

    Returns
    -------
    Comparison
        ``table`` (text cells, one column per model; a term a model lacks is blank, a term it
        cannot estimate reads ``not estimable``) and ``estimates`` (the numbers).

    Raises
    ------
    ModelError
        No fits, or ``show`` not one of the choices.
    """
    named: dict[str, ModelResult] = (
        dict(fits) if isinstance(fits, Mapping)
        else {f"({i + 1})": fit for i, fit in enumerate(fits)}
    )
    if not named:
        raise ModelError("compare() needs at least one fit")
    if show not in {"std_error", "ci"}:
        raise ModelError(f"compare(show=...) must be 'std_error' or 'ci', not {show!r}")
    keep = None if roles is None else set(roles)
    tables = []
    for name, fit in named.items():
        tab = fit.tidy(level=level)
        if keep is not None:
            tab = tab[tab["role"].isin(keep)]
        tables.append(tab.assign(model=name))
    stacked = pd.concat(tables, ignore_index=True)
    terms = list(dict.fromkeys(stacked["term"]))
    cells: dict[str, list[str]] = {}
    for (name, fit), tab in zip(named.items(), tables, strict=True):
        by_term = tab.set_index("term")
        col = []
        for term in terms:
            if term not in by_term.index:
                col.append("")
                continue
            r = by_term.loc[term]
            if not bool(r["estimable"]):
                col.append("not estimable")
                continue
            under = (f"({r['std_error']:.{digits}f})" if show == "std_error"
                     else f"[{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]")
            col.append(f"{r['estimate']:.{digits}f}{_stars(r['p_value'])} {under}")
        rec = fit.record
        col += [
            str(rec.n_obs),
            ", ".join(f"{k} {v}" for k, v in rec.n_groups.items()),
            rec.estimator, rec.vcov, "yes" if rec.converged else "NO",
            "sha256:" + rec.data_fingerprint[:12],
        ]
        cells[name] = col
    index = [*terms, "Observations", "Groups", "Estimator", "Std. errors", "Converged", "Data"]
    table = pd.DataFrame(cells, index=pd.Index(index, name="term"))
    notes = [
        f"Estimate with {'standard error' if show == 'std_error' else f'{level:.0%} CI'} "
        "below; * p < 0.05, ** p < 0.01, *** p < 0.001."
    ]
    fps = {fit.record.data_fingerprint for fit in named.values()}
    if len(fps) > 1:
        notes.append("The models were fitted to different data (see the Data row).")
    return Comparison(table=table, estimates=stacked, notes=tuple(notes))



def append_not_estimable(tab: pd.DataFrame, rows: Any) -> pd.DataFrame:
    """Add one not-estimable row (NaN estimate, ``estimable=False``, the note) per term.

    ``rows`` is a sequence of ``(term, note)``; terms already in ``tab`` are skipped. Used by
    the mixed-model fitters so that a term the data cannot identify stays visible.
    """
    rows = [(t, n) for t, n in rows if t not in set(tab["term"])]
    if not rows:
        return tab
    extra = pd.DataFrame({col: [np.nan] * len(rows) for col in tab.columns})
    extra["term"] = [t for t, _ in rows]
    extra["estimable"] = False
    extra["role"] = [term_role(t) for t, _ in rows]
    extra["note"] = [n for _, n in rows]
    return pd.concat([tab, extra.astype({"estimable": bool})], ignore_index=True)
