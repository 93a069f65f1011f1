"""Figure of a power curve: simulated power with Monte-Carlo intervals, and the closed form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from trackii_eval.power.run import PowerCurve

__all__ = ["plot_power_curve"]


def plot_power_curve(curve: PowerCurve, path: str | None = None, target: float = 0.8) -> Any:
    """Plot power against participants per arm.

    Parameters
    ----------
    curve : PowerCurve
    path : str, optional
        Write the figure there (format from the suffix: ``.svg``, ``.png``, ``.pdf``).
    target : float
        Horizontal reference line (e.g. 0.8).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pts = curve.points
    n = np.array([p.design.n_per_arm for p in pts])
    pw = np.array([p.power for p in pts])
    lo = np.array([p.ci[0] for p in pts])
    hi = np.array([p.ci[1] for p in pts])
    cf = np.array([p.closed_form for p in pts])
    d = pts[0].design
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.fill_between(n, lo, hi, alpha=0.25, color="C0", label="95% Monte-Carlo interval")
    ax.plot(n, pw, "o-", color="C0", label=f"simulated ({pts[0].n_sims} per point)")
    if np.isfinite(cf).any():
        ax.plot(n, cf, "--", color="C1", label="closed form (GLS information)")
    ax.axhline(target, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 1)
    ax.set_xlabel("participants per arm")
    ax.set_ylabel("power")
    unit = "SD/year" if d.model == "growth" else "SD"
    ax.set_title(
        f"{d.model}: effect {d.effect:g} {unit}, {len(d.times)} waves, "
        f"attrition {d.attrition:.0%}/wave", fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
        plt.close(fig)
    return fig
