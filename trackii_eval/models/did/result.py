"""The result type of the difference-in-differences estimators (``kind == "did"``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..panel import PanelFit
from ..results import SCHEMA_VERSION, as_float, json_number, register_result

__all__ = ["DidFit"]


@register_result
@dataclass(frozen=True, eq=False)
class DidFit(PanelFit):
    """A difference-in-differences fit (Callaway-Sant'Anna, Sun-Abraham, imputation, TWFE).

    Everything of :class:`trackii_eval.models.panel.PanelFit` (the results protocol: ``tidy``,
    ``lincom`` with the full covariance of the terms, ``summary``, ``to_dict``), plus

    Attributes
    ----------
    pretest : dict
        Joint Wald test that every pre-treatment effect (lead) is zero: ``statistic``
        (chi-square), ``df``, ``p_value``; empty when there is no lead to test, with the
        reason under ``note``.
    info : dict
        Estimator-specific numbers (e.g. the Goodman-Bacon decomposition rows, the control
        group, the number of clusters).
    """

    kind: ClassVar[str] = "did"

    pretest: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """One row per term (protocol columns); where a wild cluster bootstrap-t was run
        (``info["wild"]``) its p-value and test-inversion interval replace the analytic ones
        at the bootstrap's level, and other levels say so in ``note``."""
        tab = super().tidy(level)
        for term, boot in (self.info.get("wild") or {}).items():
            i = tab.index[tab["term"] == term]
            if abs(level - float(boot["level"])) < 1e-12:
                tab.loc[i, ["p_value", "ci_low", "ci_high"]] = [
                    as_float(boot["p_value"]), as_float(boot["ci_low"]),
                    as_float(boot["ci_high"])]
                tab.loc[i, "note"] = "p-value and CI: wild cluster bootstrap-t (WCR)"
            else:
                tab.loc[i, "note"] = (f"wild cluster bootstrap interval only at level "
                                      f"{boot['level']}; this one is analytic t(G-1)")
        return tab

    def summary(self) -> str:
        """Text for people: the tidy table, the pre-trend test, the record, the warnings."""
        text = super().summary()
        if "n_units_kept" in self.info:
            text += (f"\nSample: balanced panel of {self.info['n_units_kept']} of "
                     f"{self.info['n_units_data']} units ({self.info['n_units_dropped']} "
                     "dropped: not observed at every period, or treated at the first)")
        if self.pretest:
            pt = self.pretest
            if pt.get("statistic") is not None and np.isfinite(pt.get("statistic", np.nan)):
                text += (f"\nPre-trends (joint Wald test of {pt['df']} leads = 0): "
                         f"chi2 = {pt['statistic']:.3f}, p = {pt['p_value']:.4f}")
            else:
                text += f"\nPre-trends: {pt.get('note', 'not tested')}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON form (NaN as None)."""
        out = super().to_dict()
        out["kind"], out["schema"] = self.kind, SCHEMA_VERSION
        out["pretest"] = {k: json_number(v) for k, v in self.pretest.items()}
        out["info"] = _jsonable(self.info)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DidFit:
        """Inverse of :meth:`to_dict`."""
        base = PanelFit.from_dict(data)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(PanelFit)}
        pretest = {k: (as_float(v) if k in {"statistic", "p_value"} else v)
                   for k, v in data.get("pretest", {}).items()}
        return cls(**fields, pretest=pretest, info=dict(data.get("info", {})))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return json_number(value)
