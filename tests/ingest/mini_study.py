"""A minimal study folder around given wave files, for ingest tests of single readers."""

from __future__ import annotations

import shutil
from pathlib import Path

INSTRUMENT = """\
name: mini
scales:
  s: {{min: {lo}, max: {hi}}}
missing_codes:
  "": missing
participant:
  id: {id}
  arm: {arm}
  side: {side}
  dialogue: {dialogue}
  submitted_at: {submitted_at}
constructs:
  c:
    output: perceptions
    label: C
    items:
{items}
"""


def make_study(
    root: Path,
    waves: list[tuple[Path | str, str]],
    *,
    items: tuple[str, ...] = ("t1", "t2", "t3"),
    scale: tuple[int, int] = (1, 5),
    extra_study: str = "",
    wave_options: list[str] | None = None,
    participant: dict[str, str] | None = None,
    sides: tuple[str, str] = ("North", "South"),
) -> Path:
    """Write study.yaml and instrument.yaml next to copies of ``waves`` (source, date).

    ``wave_options`` are extra ``key: value`` texts per wave (e.g. ``"window: [..]"``). Dialogue
    D1 has sides North and South; arms are ``dialogue`` and ``comparison``.
    """
    root.mkdir(parents=True, exist_ok=True)
    cols = {"id": "pid", "arm": "arm", "side": "side", "dialogue": "dialogue",
            "submitted_at": "submitted_at", **(participant or {})}
    lines = []
    for i, (source, date) in enumerate(waves, start=1):
        if isinstance(source, Path):
            shutil.copy(source, root / source.name)
            name = source.name
        else:
            name = source
        extra = f", {wave_options[i - 1]}" if wave_options and wave_options[i - 1] else ""
        lines.append(f"  - {{index: {i}, label: W{i}, phase: {'baseline' if i == 1 else 'post'}, "
                     f"date: {date}, file: {name}{extra}}}")
    (root / "study.yaml").write_text(
        "id: mini\nname: Mini\ndialogues:\n"
        f"  - {{id: D1, name: D, sides: [{sides[0]}, {sides[1]}]}}\n"
        "arms:\n  - {id: dialogue}\n  - {id: comparison, comparison: true}\n"
        "waves:\n" + "\n".join(lines) + "\n" + extra_study, encoding="utf-8")
    (root / "instrument.yaml").write_text(INSTRUMENT.format(
        lo=scale[0], hi=scale[1],
        items="\n".join(f"      - {{id: {i}, scale: s}}" for i in items), **cols,
    ), encoding="utf-8")
    return root
