"""``GrowthModel``: a formula bound to data, precomputed once, fitted and refitted cheaply.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.

Kuznetsova, A., Brockhoff, P. B. and Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13), 1-26.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd

from trackii_eval.errors import ConvergenceWarning, ModelError, UnsupportedModelError
from trackii_eval.models.growth._threads import single_threaded_blas
from trackii_eval.models.growth.design import (
    Design,
    Prepared,
    build_design,
    drop_rank_deficient,
    not_estimable_terms,
    prepare,
)
from trackii_eval.models.growth.deviance import Evaluation, ProfiledDeviance
from trackii_eval.models.growth.fastrefit import ResponseUpdater, hessian_inverse, warm_bfgs
from trackii_eval.models.growth.formula import parse_formula
from trackii_eval.models.growth.optimize import (
    GRAD_TOL,
    SINGULAR_TOL,
    OptimizerInfo,
    minimise_theta,
    projected_gradient,
)
from trackii_eval.models.growth.results import GrowthFit, VarComp
from trackii_eval.models.growth.satterthwaite import SatterthwaiteParts, satterthwaite_parts
from trackii_eval.models.growth.stats import SufficientStats, compute_stats

__all__ = ["GrowthModel"]


class GrowthModel:
    """A growth model bound to a data set.

    Construction parses the formula (formulaic, once), drops incomplete rows, and computes the
    per-participant sufficient statistics; :meth:`fit` then only optimises over θ, and
    :meth:`refit` swaps in a new response at the cost of a few weighted sums.

    Parameters
    ----------
    formula : str
        lme4-style formula, e.g. ``"score ~ time * arm + (time | participant)"``.
    data : pandas.DataFrame
        Long-format panel.
    mode : {"auto", "cell", "group"}
        Layout of the sufficient statistics (see :mod:`.stats`); results do not depend on it.

    Raises
    ------
    UnsupportedModelError
        If the random structure is not in the native family (use :func:`growth`, which falls
        back to statsmodels where it can).

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """

    def __init__(self, formula: str, data: pd.DataFrame, *, mode: str = "auto") -> None:
        prep = prepare(parse_formula(formula), data)
        if prep.structure.kind != "native":
            raise UnsupportedModelError(
                f"formula {formula!r}: {prep.structure.reason} is outside the native engine's "
                "family; growth() fits such models with statsmodels"
            )
        self._setup(prep, mode)

    @classmethod
    def from_prepared(cls, prep: Prepared, mode: str = "auto") -> GrowthModel:
        """Build from an already prepared data set (used by :func:`growth`)."""
        obj = cls.__new__(cls)
        obj._setup(prep, mode)
        return obj

    def _setup(self, prep: Prepared, mode: str) -> None:
        design = build_design(prep)
        notes: list[str] = []
        X, names, dropped = drop_rank_deficient(design.X, design.x_names)
        if dropped:
            notes.append(
                f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
                f"column(s): {', '.join(dropped)}"
            )
        self.design: Design = design
        self.X = X
        self.x_names = names
        self.dropped_columns = tuple(dropped)
        self.not_estimable = tuple(not_estimable_terms(design.parsed.fixed, prep.frame))
        notes += [f"{t}: {why}" for t, why in self.not_estimable]
        for t, why in self.not_estimable:
            warnings.warn(f"growth {design.parsed.text!r}: {t}: {why}", UserWarning, stacklevel=4)
        self._kept = [design.x_names.index(nm) for nm in names]
        self.notes = notes
        # Rows dropped for missing values are informational, not a warning: fit.n_dropped,
        # summary() and to_dict() report them.
        self.stats: SufficientStats = compute_stats(
            design.y,
            X,
            design.Z,
            design.group,
            len(design.group_levels),
            design.outer_of_group,
            mode=mode,
            Zo=design.Zo,
        )

    # ----------------------------------------------------------------- properties
    @property
    def formula(self) -> str:
        """The formula text."""
        return self.design.parsed.text

    @property
    def nobs(self) -> int:
        """Observations used."""
        return int(self.design.y.size)

    @property
    def y(self) -> np.ndarray:
        """The response on the analysis rows (read-only view)."""
        v = self.design.y.view()
        v.setflags(write=False)
        return v

    # ----------------------------------------------------------------- fitting
    def fit(self, reml: bool = True, start: np.ndarray | None = None) -> GrowthFit:
        """Fit by REML (default) or ML.

        Parameters
        ----------
        reml : bool
            REML criterion (True) or ML deviance.
        start : ndarray, optional
            Starting θ (default lme4's: 1 on Λ's diagonal, 0 elsewhere).

        Returns
        -------
        GrowthFit
        """
        fit = self._fit_stats(self.stats, self.design.y, reml, start)
        self._last_theta = np.array(fit.theta)
        self._warm: dict[bool, tuple[np.ndarray, np.ndarray] | None] = {}
        return fit

    def refit(self, y: np.ndarray, reml: bool = True, start: np.ndarray | None = None) -> GrowthFit:
        """Fit the same design to a new response (like lme4's ``refit(m, newresp)``).

        Parameters
        ----------
        y : ndarray, shape (nobs,)
            New response, one value per analysis row (rows kept after dropping missing values,
            in data order). Must be finite.
        reml : bool
            REML or ML.
        start : ndarray, optional
            Starting θ; default the θ of the last :meth:`fit` (lme4's default start if
            :meth:`fit` has not been called).

        Returns
        -------
        GrowthFit
        """
        y = np.asarray(y, dtype=float).ravel()
        if y.shape != self.design.y.shape:
            raise ModelError(
                f"refit needs {self.nobs} responses (one per analysis row), got {y.size}"
            )
        if not np.isfinite(y).all():
            raise ModelError("refit responses must be finite; a missing value changes the design")
        if start is None and getattr(self, "_last_theta", None) is not None:
            updater = self.response_updater
            if updater is not None:
                stats = updater.stats_for(y)
                fast = self.warm_optimise(stats, reml)
                if fast is not None:
                    return self._make_fit(*fast, reml, y)
                return self._fit_stats(stats, y, reml, self._last_theta)
        stats = self.stats.with_response(
            y, self.X, self.design.Z, self.design.group, self.design.Zo
        )
        if start is None:
            # As lme4's refit(): start from the θ of the last fit() when there is one.
            start = getattr(self, "_last_theta", None)
        return self._fit_stats(stats, y, reml, start)

    def optimise(
        self, stats: SufficientStats, reml: bool, start: np.ndarray | None = None
    ) -> tuple[ProfiledDeviance, Evaluation, OptimizerInfo]:
        """Optimise θ for the given statistics; return criterion, final evaluation and info."""
        fdev = self._criterion(stats)
        # The optimiser works on θ~ = θ * scale (see theta_scale): the relative covariance
        # factor of random-effect columns scaled to unit root mean square, so that the fit does
        # not depend on the units of time (days or years give the same path, start included).
        scale = self.theta_scale
        th0 = fdev.start() if start is None else np.asarray(start, dtype=float) * scale
        lower = self.design.lower_bounds

        def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
            ev = fdev(th / scale, reml, gradient=True)
            assert ev.gradient is not None
            return ev.deviance, ev.gradient / scale

        with single_threaded_blas():
            theta_s, info = minimise_theta(fun, th0, lower, sign_flip=self.normalise_signs)
            theta = theta_s / scale
            ev = fdev(theta, reml)
        info = dataclasses.replace(
            info,
            start_theta=tuple(float(v) for v in th0 / scale),
            final_theta=tuple(float(v) for v in theta),
        )
        return fdev, ev, info

    @property
    def response_updater(self) -> ResponseUpdater | None:
        """Fast response swapper for this design (None unless the statistics are in cell mode)."""
        if not hasattr(self, "_updater"):
            d = self.design
            self._updater = (
                ResponseUpdater(self.stats, self.X, d.Z, d.group, d.Zo)
                if self.stats.mode == "cell" else None
            )
        return self._updater

    def warm_state(self, reml: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Optimiser-scale θ~ of the last :meth:`fit` and the inverse Hessian there.

        The curvature of the criterion changes little from one simulated response to the next,
        so it is computed once (central differences of the analytic gradient) and reused by
        every :meth:`refit` as BFGS's initial inverse Hessian. None before a fit, or when the
        Hessian there is not positive definite (a boundary fit).
        """
        theta = getattr(self, "_last_theta", None)
        if theta is None:
            return None
        cache = self.__dict__.setdefault("_warm", {})
        if reml not in cache:
            fdev = self._criterion(self.stats)
            scale = self.theta_scale
            x0 = self.normalise_signs(theta) * scale

            def grad(th: np.ndarray) -> np.ndarray:
                ev = fdev(th / scale, reml, gradient=True)
                assert ev.gradient is not None
                return ev.gradient / scale

            diag = self._diag_mask
            with single_threaded_blas():
                hinv = None if np.any(x0[diag] < SINGULAR_TOL) else hessian_inverse(grad, x0)
            cache[reml] = None if hinv is None else (x0, hinv)
        return cache[reml]

    @property
    def _diag_mask(self) -> np.ndarray:
        d = self.design
        return np.array([r == c for r, c in [*d.theta_pos, *d.theta_pos_outer]])

    def warm_optimise(
        self, stats: SufficientStats, reml: bool
    ) -> tuple[ProfiledDeviance, Evaluation, OptimizerInfo] | None:
        """Optimise θ for a new response of the same design from the last fit's optimum.

        BFGS started at the last :meth:`fit`'s θ with that fit's inverse Hessian (see
        :mod:`.fastrefit`). Returns None, so that the caller runs the full optimiser, when
        there is no warm state, the iterations do not converge, or the optimum is at or near
        the boundary (a variance near zero), where the bounded optimiser's checks are needed.
        """
        warm = self.warm_state(reml)
        if warm is None:
            return None
        x0, hinv = warm
        template = self.__dict__.get("_template_fdev")
        if template is None:
            template = self._template_fdev = self._criterion(self.stats)
        # The template's pattern-dependent pieces apply only to statistics of the same design
        # (same patterns: a response swapped in by ResponseUpdater shares T and n_pat).
        same = stats.T is template.stats.T and stats.n_pat is template.stats.n_pat
        fdev = template.with_stats(stats) if same else self._criterion(stats)
        scale = self.theta_scale
        lean = fdev.simple
        last: list[Evaluation] = []

        def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
            try:
                if lean:
                    val, grad = fdev.value_grad(th / scale, reml)
                    return val, grad / scale
                ev = fdev(th / scale, reml, gradient=True)
            except (np.linalg.LinAlgError, FloatingPointError, ValueError, ModelError):
                return np.inf, np.zeros_like(th)
            assert ev.gradient is not None
            last[:] = [ev]
            return ev.deviance, ev.gradient / scale

        with single_threaded_blas():
            x, val, g, n_evals, ok = warm_bfgs(fun, x0, hinv)
        if not ok or not np.isfinite(val):
            return None
        at_x = fdev._last[0] if lean and fdev._last is not None else (
            last[0].theta if last else None)
        if at_x is None or not np.array_equal(at_x, x / scale):
            return None
        xs = self.normalise_signs(x)
        if np.any(xs[self._diag_mask] < SINGULAR_TOL):
            return None
        theta = xs / scale
        ev = (fdev.last_evaluation(theta) if lean
              else dataclasses.replace(last[0], theta=theta, gradient=None))
        gnorm = float(np.max(np.abs(g), initial=0.0))
        info = OptimizerInfo(
            name="BFGS(warm)",
            n_evals=n_evals,
            gradient_norm=gnorm,
            final_gradient=tuple(float(v) for v in g),
            start_theta=tuple(float(v) for v in x0 / scale),
            final_theta=tuple(float(v) for v in theta),
            message="gradient below tolerance from the previous optimum",
            engine="trackii",
            converged=gnorm <= GRAD_TOL,
        )
        return fdev, ev, info

    def _criterion(self, stats: SufficientStats) -> ProfiledDeviance:
        d = self.design
        return ProfiledDeviance(stats, d.theta_pos, d.has_outer, d.theta_pos_outer)

    @property
    def theta_scale(self) -> np.ndarray:
        """Factor from θ to the optimiser's parametrisation θ~ = θ * scale, one per θ.

        Each random-effect column z_r is divided by its root mean square s_r over the analysis
        rows, so that Λ~ = diag(s) Λ. The criterion is unchanged; the optimiser's start (1 on
        Λ~'s diagonal), steps and gradient check become free of the units of the random-effect
        variables: time in days (values up to ~1,400) converges as time in years does, and the
        two fits agree after rescaling. ``OptimizerInfo.final_gradient`` is with respect to θ~.
        """
        cached = getattr(self, "_theta_scale", None)
        if cached is not None:
            return cached
        d = self.design
        rms = np.sqrt(np.einsum("ij,ij->j", d.Z, d.Z) / max(d.Z.shape[0], 1))
        rms = np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)
        sv = [float(rms[r]) for r, _ in d.theta_pos]
        if d.Zo is not None:
            rms_o = np.sqrt(np.einsum("ij,ij->j", d.Zo, d.Zo) / max(d.Zo.shape[0], 1))
            rms_o = np.where(np.isfinite(rms_o) & (rms_o > 0), rms_o, 1.0)
            sv += [float(rms_o[r]) for r, _ in d.theta_pos_outer]
        self._theta_scale = np.asarray(sv)
        return self._theta_scale

    def evaluate(self, theta: np.ndarray, reml: bool = True) -> GrowthFit:
        """Results at a given θ without optimising (e.g. to reproduce another program's fit).

        Parameters
        ----------
        theta : ndarray
            Covariance parameters in lme4's order.
        reml : bool
            REML criterion or ML deviance.

        Returns
        -------
        GrowthFit
            ``optimizer.name`` is ``"none (theta given)"``; ``converged`` reports whether the
            projected gradient at θ passes the usual check.
        """
        theta = np.asarray(theta, dtype=float).ravel()
        fdev = self._criterion(self.stats)
        if theta.size != fdev.n_theta:
            raise ModelError(f"theta needs {fdev.n_theta} values, got {theta.size}")
        ev = fdev(theta, reml, gradient=True)
        assert ev.gradient is not None
        # In the optimiser's unit-free θ~ (see theta_scale), as for a fit.
        scale = self.theta_scale
        pg = projected_gradient(theta * scale, ev.gradient / scale, self.design.lower_bounds)
        gnorm = float(np.max(np.abs(pg), initial=0.0))
        info = OptimizerInfo(
            name="none (theta given)",
            n_evals=1,
            gradient_norm=gnorm,
            final_gradient=tuple(float(v) for v in pg),
            start_theta=tuple(float(v) for v in theta),
            final_theta=tuple(float(v) for v in theta),
            message="theta given by the caller",
            engine="trackii",
            converged=gnorm <= GRAD_TOL,
        )
        return self._make_fit(fdev, ev, info, reml, self.design.y, warn=False)

    def normalise_signs(self, theta: np.ndarray) -> np.ndarray:
        """Equivalent θ with Λ's (and Λ_o's) diagonal >= 0: flip the sign of whole columns
        (ΛΛ' unchanged)."""
        th = np.array(theta, dtype=float)
        n_in = len(self.design.theta_pos)
        for off, pos in ((0, self.design.theta_pos), (n_in, self.design.theta_pos_outer)):
            for c in {c for _, c in pos}:
                idx = [off + k for k, (r, cc) in enumerate(pos) if cc == c]
                diag = [off + k for k, (r, cc) in enumerate(pos) if cc == c and r == c]
                if diag and th[diag[0]] < 0:
                    th[idx] = -th[idx]
        return th

    def _fit_stats(
        self, stats: SufficientStats, y: np.ndarray, reml: bool, start: np.ndarray | None
    ) -> GrowthFit:
        fdev, ev, info = self.optimise(stats, reml, start)
        return self._make_fit(fdev, ev, info, reml, y)

    def _make_fit(
        self,
        fdev: ProfiledDeviance,
        ev: Evaluation,
        info: OptimizerInfo,
        reml: bool,
        y: np.ndarray,
        warn: bool = True,
    ) -> GrowthFit:
        d, st = self.design, fdev.stats
        n, p = st.n, st.p
        df_res = n - p if reml else n
        sigma = float(np.sqrt(ev.r2 / df_res))
        theta = ev.theta
        npar = p + theta.size + 1
        dev = ev.deviance
        diag = np.array([r == c for r, c in [*d.theta_pos, *d.theta_pos_outer]])
        singular = bool(np.any(theta[diag] < SINGULAR_TOL))
        notes = list(self.notes)
        if not info.converged and warn:
            msg = (
                f"model failed to converge: max|gradient| = {info.gradient_norm:.3g} after "
                f"{info.n_evals} evaluations ({info.name}: {info.message})"
            )
            notes.append(msg)
            warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        if singular:
            notes.append(
                "boundary (singular) fit: a variance is estimated as zero or a correlation as "
                "+/-1 (theta diagonal < 1e-4); consider simplifying the random effects"
            )
        counts = [(d.group_name, len(d.group_levels))]
        if d.has_outer:
            assert d.outer_levels is not None and d.outer_name is not None
            counts.append((d.outer_name, len(d.outer_levels)))
        return GrowthFit(
            formula=self.formula,
            reml=reml,
            engine="trackii",
            nobs=n,
            n_dropped=d.n_dropped,
            fixed_names=tuple(self.x_names),
            beta=ev.beta,
            vcov_beta=sigma**2 * ev.C,
            theta=theta,
            sigma=sigma,
            deviance=dev,
            loglik=-0.5 * dev,
            aic=dev + 2 * npar,
            bic=dev + np.log(n) * npar,
            converged=info.converged,
            singular=singular,
            optimizer=info,
            varcomps=tuple(self._varcomps(fdev, theta, sigma)),
            group_counts=tuple(counts),
            dropped_columns=self.dropped_columns,
            not_estimable=self.not_estimable,
            _warnings=tuple(notes),
            _backend=NativeBackend(self, fdev, ev, y),
        )

    def _varcomps(self, fdev: ProfiledDeviance, theta: np.ndarray, sigma: float) -> list[VarComp]:
        d = self.design
        lam = fdev.lam(theta)
        cov = sigma**2 * (lam @ lam.T)
        sd = np.sqrt(np.diag(cov))
        out = [
            VarComp(d.group_name, nm, None, float(cov[i, i]), float(sd[i]), np.nan)
            for i, nm in enumerate(d.z_names)
        ]
        # Covariance rows only inside a correlated term, as lme4's VarCorr.
        pairs = sorted({(c, r) for r, c in d.theta_pos if r != c})
        for a, b in pairs:
            with np.errstate(divide="ignore", invalid="ignore"):
                corr = cov[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else np.nan
            out.append(
                VarComp(
                    d.group_name, d.z_names[a], d.z_names[b], float(cov[a, b]), np.nan, float(corr)
                )
            )
        if d.has_outer:
            assert d.outer_name is not None
            lamo = fdev.lam_outer(theta)
            cov_o = sigma**2 * (lamo @ lamo.T)
            sd_o = np.sqrt(np.diag(cov_o))
            out += [
                VarComp(d.outer_name, nm, None, float(cov_o[i, i]), float(sd_o[i]), np.nan)
                for i, nm in enumerate(d.zo_names)
            ]
            for a, b in sorted({(c, r) for r, c in d.theta_pos_outer if r != c}):
                ok = sd_o[a] > 0 and sd_o[b] > 0
                corr = cov_o[a, b] / (sd_o[a] * sd_o[b]) if ok else np.nan
                out.append(VarComp(d.outer_name, d.zo_names[a], d.zo_names[b],
                                   float(cov_o[a, b]), np.nan, float(corr)))
        out.append(VarComp("Residual", None, None, sigma**2, sigma, np.nan))
        return out

    # ----------------------------------------------------------------- new data
    def fixed_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """Fixed-effects model matrix for new data, coded as in the fit."""
        try:
            mm = self.design.fixed_spec.get_model_matrix(
                newdata, output="numpy", na_action="ignore"
            )
        except Exception as exc:  # formulaic raises many types; say which step failed
            raise ModelError(f"cannot build the fixed-effects matrix for new data: {exc}") from exc
        return np.asarray(mm, dtype=float)[:, self._kept]

    def outer_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """The outer factor's random-effects matrix Z_o for new data."""
        parts = []
        for spec in self.design.zo_specs:
            try:
                mm = spec.get_model_matrix(newdata, output="numpy", na_action="ignore")
            except Exception as exc:  # formulaic raises many types
                raise ModelError(
                    f"cannot build the outer random-effects matrix for new data: {exc}"
                ) from exc
            parts.append(np.asarray(mm, dtype=float))
        return np.hstack(parts)

    def random_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """Participant random-effects model matrix for new data."""
        if self.design.z_from_x is not None:
            full = self.design.fixed_spec.get_model_matrix(
                newdata, output="numpy", na_action="ignore"
            )
            return np.asarray(full, dtype=float)[:, self.design.z_from_x]
        parts = []
        for spec in self.design.z_specs:
            try:
                mm = spec.get_model_matrix(newdata, output="numpy", na_action="ignore")
            except Exception as exc:  # formulaic raises many types
                raise ModelError(
                    f"cannot build the random-effects matrix for new data: {exc}"
                ) from exc
            parts.append(np.asarray(mm, dtype=float))
        return np.hstack(parts)


def _level_index(levels: pd.Index, newdata: pd.DataFrame, cols: tuple[str, ...]) -> np.ndarray:
    missing = [c for c in cols if c not in newdata.columns]
    if missing:
        return np.full(len(newdata), -1)
    if len(cols) == 1:
        return np.asarray(levels.get_indexer(newdata[cols[0]]))
    return np.asarray(levels.get_indexer(pd.MultiIndex.from_frame(newdata[list(cols)])))


class NativeBackend:
    """What a native fit needs after fitting: the model, its criterion and final evaluation."""

    def __init__(
        self, model: GrowthModel, fdev: ProfiledDeviance, ev: Evaluation, y: np.ndarray
    ) -> None:
        self.model = model
        self.fdev = fdev
        self.ev = ev
        self.y = y

    def satterthwaite(self, fit: GrowthFit) -> SatterthwaiteParts:
        """Satterthwaite ingredients at the fitted θ, σ."""
        with single_threaded_blas():
            theta = np.array(fit.theta)
            ev = getattr(self, "ev", None)
            known = ev.C if ev is not None and np.array_equal(ev.theta, theta) else None
            return satterthwaite_parts(self.fdev, theta, fit.sigma, fit.reml, C=known)

    def blups(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Participant BLUPs (G, q) and the outer factor's (D, q_o), or None."""
        return self.fdev.blups(self.ev)

    def ranef(self, fit: GrowthFit, group: str | None) -> pd.DataFrame:
        """BLUPs as a DataFrame for the participant or the outer factor."""
        d = self.model.design
        b, outer = self.blups()
        if group is None or group == d.group_name:
            return pd.DataFrame(b, index=d.group_levels.copy(), columns=list(d.z_names))
        if d.has_outer and group == d.outer_name:
            assert d.outer_levels is not None and outer is not None
            return pd.DataFrame(outer, index=d.outer_levels.copy(), columns=list(d.zo_names))
        known = [g for g in (d.group_name, d.outer_name) if g]
        raise ModelError(f"no random effects for {group!r}; grouping factors are {known}")

    def fixed_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """Fixed-effects matrix for new data."""
        return self.model.fixed_matrix(newdata)

    def random_part(self, fit: GrowthFit, newdata: pd.DataFrame) -> np.ndarray:
        """Z b for the known participants (and dialogues) of new data; 0 for unknown ones."""
        d = self.model.design
        b, outer = self.blups()
        Z = self.model.random_matrix(newdata)
        idx = _level_index(d.group_levels, newdata, d.structure.inner[0].group)
        out = np.zeros(len(newdata))
        known = idx >= 0
        out[known] = np.einsum("ij,ij->i", Z[known], b[idx[known]])
        if d.has_outer and outer is not None:
            assert d.outer_levels is not None and d.structure.outer is not None
            oidx = _level_index(d.outer_levels, newdata, d.structure.outer.group)
            ok = oidx >= 0
            Zo = self.model.outer_matrix(newdata)
            out[ok] += np.einsum("ij,ij->i", Zo[ok], outer[oidx[ok]])
        return out

    def refit_ml(self, fit: GrowthFit) -> GrowthFit:
        """The same model and data refitted by maximum likelihood (for likelihood-ratio tests)."""
        if not fit.reml:
            return fit
        return self.model._fit_stats(self.fdev.stats, self.y, False, np.array(fit.theta))

    def signature(self) -> dict[str, Any]:
        """What two fits must share for a likelihood-ratio test."""
        return {"y": self.y, "fixed": tuple(self.model.x_names)}

    def confint_profile(self, fit: GrowthFit, level: float, **_: Any) -> pd.DataFrame:
        """Profile-likelihood intervals (see :mod:`.profile`)."""
        from trackii_eval.models.growth.profile import profile_confint

        with single_threaded_blas():
            return profile_confint(self, fit, level)

    def confint_boot(
        self, fit: GrowthFit, level: float, n_boot: int = 500, seed: int | None = None, **_: Any
    ) -> pd.DataFrame:
        """Parametric-bootstrap percentile intervals (see :mod:`.bootstrap`)."""
        from trackii_eval.models.growth.bootstrap import bootstrap_confint

        with single_threaded_blas():
            return bootstrap_confint(self, fit, level, n_boot, seed)
