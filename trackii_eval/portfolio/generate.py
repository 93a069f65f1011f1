"""A simulated portfolio study, written fast enough for 32 million responses.

Every value is simulated (nothing here is real). Participants sit in ``n_dialogues``
dialogues of two sides, or in the comparison arm (a third of them); items are 7-point
agreement items in four constructs (perceptions, relationships, moderation, ideas), answered
from a participant's latent attitude, which grows by ``gain`` SD a year in the dialogue arm.
The columns are written by DuckDB's ``COPY`` from numpy arrays (no Python loop over rows).

``bad_share`` sprinkles the problems ingest must report, each in a known place: rows without a
participant code, an undeclared arm, a date outside the wave's window, a duplicate submission;
cells outside the scale, text where a number belongs, a declared missing code (``-99``) and
blank cells.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ..store import register_frame

__all__ = ["write_portfolio"]

_CONSTRUCTS = ("perceptions", "relationships", "moderation", "ideas")


def write_portfolio(root: str | Path, n_participants: int = 100_000, n_waves: int = 8,
                    n_items: int = 40, *, n_dialogues: int = 50, seed: int = 15,
                    gain: float = 0.3, blank_share: float = 0.03,
                    bad_share: float = 0.0) -> Path:
    """Write ``study.yaml``, ``instrument.yaml`` and one CSV per wave into ``root``.

    Parameters
    ----------
    root
        The study folder to create (wave files go to ``root/waves``).
    n_participants, n_waves, n_items
        Panel size: every participant answers every wave (rows = participants x waves, item
        cells = rows x items).
    n_dialogues
        Dialogues (each with sides North and South) the dialogue arm is spread over.
    seed
        Seed of the simulation (same seed, same files byte for byte).
    gain
        Yearly gain of the dialogue arm's latent attitude, in SD.
    blank_share
        Share of item cells left blank (missing).
    bad_share
        Share of rows (and, separately, of item cells) given one of the problems listed in the
        module docstring; 0 writes clean files.

    Returns
    -------
    Path
        ``root``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "waves").mkdir(parents=True, exist_ok=True)
    n = n_participants
    items = [f"i{j + 1:02d}" for j in range(n_items)]
    construct_of = [_CONSTRUCTS[j * len(_CONSTRUCTS) // n_items] for j in range(n_items)]
    reverse = np.array([j % 5 == 4 for j in range(n_items)])
    treated = rng.random(n) < 2 / 3
    dialogue_no = rng.integers(1, n_dialogues + 1, n)
    side = np.where(rng.random(n) < 0.5, "North", "South")
    codes = np.char.add("PF", np.char.zfill(np.arange(1, n + 1).astype(str), 7))
    arm = np.where(treated, "dialogue", "comparison").astype(object)
    dialogue = np.where(treated, np.char.add("D", dialogue_no.astype(str)), None).astype(object)
    level = rng.normal(0.0, 1.0, n)
    slope = rng.normal(0.0, 0.15, n)
    loading = rng.uniform(0.6, 0.9, n_items)
    start = dt.date(2020, 3, 1)
    wave_lines = []
    con = duckdb.connect()
    for w in range(n_waves):
        date = start.replace(year=start.year + w)
        lo, hi = date - dt.timedelta(days=14), date + dt.timedelta(days=60)
        wave_lines.append(
            f"  - {{index: {w + 1}, label: Wave {w + 1}, "
            f"phase: {'baseline' if w == 0 else 'follow_up'}, date: {date}, "
            f"file: waves/wave{w + 1}.csv, window: [{lo}, {hi}]}}")
        attitude = level + (slope + gain * treated) * w
        noise = rng.normal(0.0, 1.0, (n, n_items)).astype(np.float32)
        latent = attitude[:, None] * loading[None, :] + noise * np.sqrt(1 - loading**2)
        latent = np.where(reverse[None, :], -latent, latent)
        values = np.clip(np.rint(4 + 1.2 * latent), 1, 7).astype(np.int8)
        days = rng.integers(0, 45, n)
        submitted = (np.datetime64(date) + days.astype("timedelta64[D]")).astype(str)
        frame = pd.DataFrame({"participant_code": codes.astype(object), "submitted_at": submitted,
                              "arm": arm, "side": side, "dialogue": dialogue})
        blank = rng.random((n, n_items)) < blank_share
        item_frame = pd.DataFrame(
            {name: pd.array(np.where(blank[:, j], 0, values[:, j]), dtype="Int8")
             for j, name in enumerate(items)})
        item_frame = item_frame.mask(blank)
        frame = pd.concat([frame, item_frame], axis=1)
        if bad_share > 0:
            frame = _inject(frame, items, rng, bad_share, lo)
        register_frame(con, "wave_frame", frame)
        con.execute(f"COPY wave_frame TO '{root / 'waves' / f'wave{w + 1}.csv'}' "
                    "(HEADER, DELIMITER ',')")
        con.unregister("wave_frame")
    con.close()
    _write_yaml(root, n_dialogues, items, construct_of, reverse, wave_lines)
    return root


def _inject(frame: pd.DataFrame, items: list[str], rng: np.random.Generator, share: float,
            window_start: dt.date) -> pd.DataFrame:
    """Put known problems into a share of rows and cells (see the module docstring)."""
    n = len(frame)
    frame = frame.copy()
    rows = rng.choice(n, size=max(4, int(share * n)), replace=False)
    kinds = np.arange(len(rows)) % 4
    frame.loc[rows[kinds == 0], "participant_code"] = None
    frame.loc[rows[kinds == 1], "arm"] = "dialog"
    frame.loc[rows[kinds == 2], "submitted_at"] = str(window_start - dt.timedelta(days=30))
    # a duplicate submission: the row's code answers again on the last row(s)
    dupes = frame.loc[rows[kinds == 3]].copy()
    cells = n * len(items)
    picks = rng.choice(cells, size=max(3, int(share * cells)), replace=False)
    texts = {0: "7 ", 1: "-99", 2: "abc", 3: "9"}
    for k, pick in enumerate(picks):
        column = items[pick % len(items)]
        if frame[column].dtype != object:  # as text, so DuckDB writes a text column
            values = frame[column]
            frame[column] = pd.Series(np.where(values.isna(), None, values.astype(str)),
                                      dtype=object)
        frame.iat[pick // len(items), frame.columns.get_loc(column)] = texts[k % 4]
    return pd.concat([frame, dupes], ignore_index=True)


def _write_yaml(root: Path, n_dialogues: int, items: list[str], construct_of: list[str],
                reverse: np.ndarray, wave_lines: list[str]) -> None:
    dialogues = "\n".join(f"  - {{id: D{d}, name: Dialogue {d}, sides: [North, South]}}"
                          for d in range(1, n_dialogues + 1))
    (root / "study.yaml").write_text(
        "# A simulated portfolio (trackii_eval.portfolio.generate); nothing in it is real.\n"
        "id: portfolio\nname: Simulated portfolio\n"
        f"dialogues:\n{dialogues}\n"
        "arms:\n  - {id: dialogue}\n  - {id: comparison, comparison: true}\n"
        "waves:\n" + "\n".join(wave_lines) + "\nprogram_end_wave: 2\n", encoding="utf-8")
    blocks = []
    for construct in _CONSTRUCTS:
        own = [(i, r) for i, c, r in zip(items, construct_of, reverse, strict=True)
               if c == construct]
        if not own:
            continue
        lines = "\n".join(f"      - {{id: {i}, scale: agree7{', reverse: true' if r else ''}}}"
                          for i, r in own)
        blocks.append(f"  {construct}:\n    output: {construct}\n    label: {construct}\n"
                      f"    min_answered: 0.5\n    items:\n{lines}")
    (root / "instrument.yaml").write_text(
        "name: Portfolio panel (simulated)\n"
        "scales:\n  agree7: {min: 1, max: 7, labels: {1: Strongly disagree, 7: Strongly agree}}\n"
        'missing_codes:\n  "-99": refused\n  "": missing\n'
        "participant:\n  id: participant_code\n  arm: arm\n  side: side\n  dialogue: dialogue\n"
        "  submitted_at: submitted_at\n"
        "constructs:\n" + "\n".join(blocks) + "\n", encoding="utf-8")
