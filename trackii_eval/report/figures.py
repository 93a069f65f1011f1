"""Figures for reports, returned as base64 PNG so a report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written headless, in CI and on servers

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["png_base64", "trajectory_figure"]

_PALETTE = {"comparison": "#7f7f7f"}


def png_base64(fig: plt.Figure) -> str:
    """Encode a figure as a base64 PNG and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def trajectory_figure(
    observed: pd.DataFrame, predicted: pd.DataFrame | None, *, title: str, ylabel: str,
    program_end: float | None, events: Sequence[tuple[float, str]] = (),
) -> str:
    """Observed means per arm and wave (95% CI bars) with the model's trajectory and band.

    Parameters
    ----------
    observed
        Columns arm, time, mean, ci_low, ci_high (suppressed cells already removed).
    predicted
        Columns arm, time, estimate, ci_low, ci_high; or None.
    program_end
        Years since baseline when the programme ended (a shaded period before it).
    events
        Context events as (years since baseline, label).
    """
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    arms = list(dict.fromkeys(observed["arm"]))
    colors = sns.color_palette("deep", n_colors=max(len(arms), 2))
    for i, arm in enumerate(arms):
        color = _PALETTE.get(str(arm), colors[i])
        obs = observed[observed["arm"] == arm]
        dodge = 0.04 * (i - (len(arms) - 1) / 2)  # keep the arms' error bars apart
        ax.errorbar(obs["time"] + dodge, obs["mean"], yerr=[obs["mean"] - obs["ci_low"],
                    obs["ci_high"] - obs["mean"]], fmt="o", color=color, capsize=3,
                    label=f"{arm}: observed mean (95% CI)")
        if predicted is not None:
            pred = predicted[predicted["arm"] == arm]
            ax.plot(pred["time"], pred["estimate"], color=color, lw=2, label=f"{arm}: model")
            ax.fill_between(pred["time"], pred["ci_low"], pred["ci_high"], color=color, alpha=0.15)
    if program_end is not None:
        ax.axvspan(0, program_end, color="#f2e8cf", alpha=0.5, lw=0)
        ax.text(program_end / 2, 0.02, "programme", transform=ax.get_xaxis_transform(),
                ha="center", fontsize=8, color="#6b5b3e")
    for t, label in events:
        ax.axvline(t, color="#b23a48", lw=1, ls="--")
        ax.text(t, 0.98, f" {label}", transform=ax.get_xaxis_transform(), rotation=90,
                va="top", fontsize=7, color="#b23a48")
    ax.set_xlabel("Years since baseline")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=7, loc="lower right", frameon=True)
    return png_base64(fig)
