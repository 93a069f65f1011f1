"""Figures for reports: inline SVG, readable in greyscale print, each with its alt text.

Every series differs by marker and line style as well as by hue (the Okabe–Ito colour-blind
safe palette); legends sit outside the plotting area; axes carry units; the programme period
and the study's context events are marked on every trajectory. Figures are returned as SVG
text with a ``<title>`` and ``role="img"``/``aria-label`` (the alt text), ready to inline.

Disclosure: figures draw only means of groups of at least ``k`` people (the callers remove
smaller groups); the spaghetti plot draws a random sample of people from groups of at least
``k``, with no identifier and with jittered values (see :func:`spaghetti_figure`).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # reports are written headless, in CI and on servers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["Series", "Svg", "flow_diagram", "forest_figure", "spaghetti_figure", "style",
           "trajectory_figure"]

# Okabe & Ito (2008) colour-blind safe hues; comparison is black (darkest in greyscale)
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
MARKERS = ["o", "^", "D", "v", "P", "X", "*"]
LINESTYLES = ["-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1)), (0, (1, 2)), "-"]
COMPARISON = ("#000000", "s", "--")


@dataclass(frozen=True)
class Svg:
    """An inline SVG figure and its alt text."""

    svg: str
    alt: str

    def __html__(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg


@dataclass(frozen=True)
class Series:
    """One line of a figure: its key in the data, label, and look."""

    key: str
    label: str
    color: str
    marker: str
    linestyle: object


def style(keys: Sequence[str], labels: dict[str, str], comparison: str | None) -> list[Series]:
    """Distinct looks for ``keys`` (the comparison arm always black, squares, dashed)."""
    out, i = [], 0
    for key in keys:
        if key == comparison:
            out.append(Series(key, labels.get(key, key), *COMPARISON))
            continue
        out.append(Series(key, labels.get(key, key), OKABE_ITO[i % len(OKABE_ITO)],
                          MARKERS[i % len(MARKERS)], LINESTYLES[i % len(LINESTYLES)]))
        i += 1
    return out


def _svg(fig: plt.Figure, alt: str) -> Svg:
    """Serialise ``fig`` to inline SVG with a <title> and an aria-label, then close it."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "trackii"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # no XML prolog inside HTML
    text = re.sub(r'<svg([^>]*?)width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    alt_attr = html.escape(alt, quote=True)
    text = text.replace("<svg", f'<svg role="img" aria-label="{alt_attr}" class="fig"', 1)
    head = text.index(">") + 1
    return Svg(text[:head] + f"<title>{html.escape(alt)}</title>" + text[head:], alt)


def _base(figsize: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    plt.rcdefaults()
    plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.color": "#e6e6e6",
                         "grid.linewidth": 0.6})
    return plt.subplots(figsize=figsize)


def _context(ax: plt.Axes, program_end: float | None,
             events: Sequence[tuple[float, str]]) -> None:
    """Shade the programme period and mark context events (hatched, so greyscale keeps it)."""
    if program_end is not None:
        ax.axvspan(0, program_end, facecolor="#f2f2f2", edgecolor="#bdbdbd", hatch="////",
                   lw=0, zorder=0)
        ax.text(program_end / 2, 1.01, "programme", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8, color="#444444")
    for t, label in events:
        ax.axvline(t, color="#444444", lw=0.9, ls=(0, (1, 1.5)), zorder=1)
        ax.text(t, 0.99, f" {label}", transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="right", fontsize=7, color="#333333")


def trajectory_figure(
    observed: pd.DataFrame, predicted: pd.DataFrame | None, *, series: Sequence[Series],
    ylabel: str, alt: str, program_end: float | None,
    events: Sequence[tuple[float, str]] = (), factor: float = 1.0,
    xticks: dict[float, str] | None = None,
) -> Svg:
    """Observed means per group and wave (95% CI) with the model's trajectory and band.

    Parameters
    ----------
    observed
        Columns group, time, mean, ci_low, ci_high: groups of fewer than ``k`` people already
        removed by the caller.
    predicted
        Columns group, time, estimate, ci_low, ci_high (population-level predictions), or None.
    series
        The groups to draw, in order, with their look (:func:`style`).
    ylabel
        Y-axis label with its unit.
    alt
        Alt text (what the figure shows, in words).
    program_end
        Years since baseline when the programme ended (hatched period before it).
    events
        Context events as (years since baseline, label).
    factor
        Multiplies every value (100 for a yes/no share printed in %).
    xticks
        Tick positions (years since baseline) and their labels (the waves).

    Returns
    -------
    Svg
    """
    fig, ax = _base((7.2, 3.9))
    n = len(series)
    for i, s in enumerate(series):
        obs = observed[observed["group"] == s.key]
        dodge = 0.05 * (i - (n - 1) / 2)  # keep error bars apart
        ax.errorbar(obs["time"] + dodge, factor * obs["mean"],
                    yerr=[factor * (obs["mean"] - obs["ci_low"]),
                          factor * (obs["ci_high"] - obs["mean"])],
                    fmt=s.marker, color=s.color, mfc="white" if s.linestyle != "-" else s.color,
                    ms=5.5, capsize=2.5, lw=1, zorder=3,
                    label=f"{s.label}: observed mean (95% CI)")
        if predicted is not None and s.key in set(predicted["group"]):
            pred = predicted[predicted["group"] == s.key]
            ax.plot(pred["time"], factor * pred["estimate"], color=s.color, ls=s.linestyle,
                    lw=1.8, zorder=2, label=f"{s.label}: model prediction (95% band)")
            ax.fill_between(pred["time"], factor * pred["ci_low"], factor * pred["ci_high"],
                            color=s.color, alpha=0.12, lw=0, zorder=1)
        elif len(obs) > 1:
            ax.plot(obs["time"] + dodge, factor * obs["mean"], color=s.color, ls=s.linestyle,
                    lw=1, zorder=2)
    _context(ax, program_end, events)
    if xticks:
        ax.set_xticks(list(xticks), list(xticks.values()), fontsize=7.5)
        ax.set_xlabel("Wave (years since baseline)")
    else:
        ax.set_xlabel("Years since baseline")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(fig, alt)


def spaghetti_figure(people: pd.DataFrame, means: pd.DataFrame, *, series: Sequence[Series],
                     ylabel: str, alt: str, program_end: float | None,
                     events: Sequence[tuple[float, str]] = (),
                     xticks: dict[float, str] | None = None) -> Svg:
    """Individual trajectories of a sample (thin lines) under each group's mean (thick).

    Parameters
    ----------
    people
        Columns group, line (an arbitrary line number, not an identifier), time, value: already
        sampled, restricted to groups of at least ``k`` and jittered by the caller.
    means
        Columns group, time, mean (groups of at least ``k`` only).
    series, ylabel, alt, program_end, events, xticks
        As :func:`trajectory_figure`.
    """
    plt.rcdefaults()
    fig, axes = plt.subplots(1, len(series), figsize=(7.2, 3.4), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], series, strict=True):
        ax.grid(True, color="#e6e6e6", lw=0.6)
        for _, one in people[people["group"] == s.key].groupby("line"):
            ax.plot(one["time"], one["value"], color="#9e9e9e", lw=0.7, alpha=0.8, zorder=2)
        m = means[means["group"] == s.key]
        ax.plot(m["time"], m["mean"], color=s.color, ls=s.linestyle, marker=s.marker, lw=2.2,
                zorder=4, label="group mean")
        _context(ax, program_end, events)
        ax.set_title(s.label, fontsize=9, pad=16)
        if xticks:
            ax.set_xticks(list(xticks), [str(i + 1) for i in range(len(xticks))], fontsize=8)
            ax.set_xlabel("Wave")
        else:
            ax.set_xlabel("Years since baseline")
    axes[0][0].set_ylabel(ylabel, fontsize=8.5)
    axes[0][-1].legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       frameon=False, handles=[
                           plt.Line2D([], [], color="#9e9e9e", lw=0.7, label="one person "
                                      "(sampled, jittered)"),
                           plt.Line2D([], [], color="#000000", lw=2.2, label="group mean")])
    return _svg(fig, alt)


def forest_figure(rows: pd.DataFrame, *, xlabel: str, alt: str) -> Svg:
    """A forest plot: one estimate with its 95% CI per row, a line at zero.

    Parameters
    ----------
    rows
        Columns label, estimate, ci_low, ci_high (top to bottom), and optionally ``overall``
        (True for the pooled row, drawn as a diamond).
    """
    fig, ax = _base((7.2, 0.9 + 0.32 * len(rows)))
    y = np.arange(len(rows))[::-1]
    overall = rows["overall"] if "overall" in rows else pd.Series(False, index=rows.index)
    for yi, (_, r), o in zip(y, rows.iterrows(), overall, strict=True):
        ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color="#000000", lw=1.2)
        ax.plot(r["estimate"], yi, marker="D" if o else "s", ms=7 if o else 5,
                color="#0072B2" if o else "#000000", mfc="white" if o else "#000000")
    ax.axvline(0, color="#666666", lw=0.8, ls="--")
    ax.set_yticks(y, list(rows["label"]), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    return _svg(fig, alt)


@dataclass(frozen=True)
class FlowBox:
    """One box of the participant-flow diagram: a heading and lines of text."""

    title: str
    lines: tuple[str, ...]


def flow_diagram(enrolment: FlowBox, columns: Sequence[tuple[str, Sequence[FlowBox]]], *,
                 alt: str, total: FlowBox | None = None) -> Svg:
    """A CONSORT-style participant-flow diagram as plain SVG (text stays text).

    Parameters
    ----------
    enrolment
        The top box (who was enrolled at baseline).
    columns
        One column per later wave: (heading, boxes top to bottom).
    alt
        Alt text.
    total
        An optional bottom box (everyone analysed).

    Numbers in the boxes must already be protected strings.
    """
    width, box_w, gap = 960, 0, 12
    ncol = max(len(columns), 1)
    box_w = (width - gap * (ncol + 1)) / ncol
    line_h, pad = 14, 6
    out: list[str] = []

    def box(x: float, y: float, w: float, b: FlowBox, *, fill: str = "#ffffff") -> float:
        h = pad * 2 + line_h * (1 + len(b.lines))
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h}" rx="4" '
                   f'fill="{fill}" stroke="#333333" stroke-width="1"/>')
        out.append(f'<text x="{x + 6:.1f}" y="{y + pad + 11:.1f}" font-weight="bold" '
                   f'font-size="11">{html.escape(b.title)}</text>')
        for i, line in enumerate(b.lines):
            out.append(f'<text x="{x + 6:.1f}" y="{y + pad + 11 + line_h * (i + 1):.1f}" '
                       f'font-size="10.5">{html.escape(line)}</text>')
        return h

    def arrow(x: float, y1: float, y2: float) -> None:
        out.append(f'<line x1="{x:.1f}" y1="{y1:.1f}" x2="{x:.1f}" y2="{y2 - 4:.1f}" '
                   'stroke="#333333" stroke-width="1.2" marker-end="url(#flowarrow)"/>')

    top_w = min(520, width - 2 * gap)
    h0 = box((width - top_w) / 2, 8, top_w, enrolment, fill="#f2f2f2")
    y0 = 8 + h0 + 26
    bottom = y0
    for c, (heading, boxes) in enumerate(columns):
        x = gap + c * (box_w + gap)
        out.append(f'<line x1="{width / 2:.1f}" y1="{8 + h0:.1f}" x2="{x + box_w / 2:.1f}" '
                   f'y2="{y0 - 4:.1f}" stroke="#9e9e9e" stroke-width="0.8"/>')
        out.append(f'<text x="{x + box_w / 2:.1f}" y="{y0 + 10:.1f}" text-anchor="middle" '
                   f'font-size="11" font-weight="bold">{html.escape(heading)}</text>')
        y = y0 + 20
        for i, b in enumerate(boxes):
            h = box(x, y, box_w, b, fill="#f2f2f2" if i == len(boxes) - 1 else "#ffffff")
            if i < len(boxes) - 1:
                arrow(x + box_w / 2, y + h, y + h + 16)
            y += h + 16
        bottom = max(bottom, y)
    if total is not None:
        h = box((width - top_w) / 2, bottom + 6, top_w, total, fill="#e8e8e8")
        bottom += h + 12
    height = bottom + 4
    alt_attr = html.escape(alt, quote=True)
    return Svg(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{alt_attr}" '
        f'class="fig flow" viewBox="0 0 {width} {height:.0f}" '
        'font-family="DejaVu Sans, sans-serif">'
        f"<title>{html.escape(alt)}</title>"
        '<defs><marker id="flowarrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333333"/></marker>'
        "</defs>" + "".join(out) + "</svg>", alt)
