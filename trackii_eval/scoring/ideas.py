"""Idea generation from the idea log: how many ideas, made together, and where they went.

The log has one row per idea (dialogue, workshop, who proposed it, how far it travelled:
``proposed`` < ``developed`` < ``transferred`` to officials < ``adopted``). An idea that was
adopted was also transferred, so the transfer share counts both.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["IDEA_COLUMNS", "idea_metrics"]

IDEA_COLUMNS = [
    "dialogue", "n_ideas", "n_workshops", "ideas_per_workshop", "cross_side_share",
    "transferred_share", "adopted_share",
]
_STAGES = ["proposed", "developed", "transferred", "adopted"]


def idea_metrics(ideas: pd.DataFrame, *, joint_label: str = "both") -> pd.DataFrame:
    """Per dialogue: ideas per workshop, share co-developed across sides, transfer and adoption.

    Parameters
    ----------
    ideas
        The idea log: columns dialogue, workshop, proposed_by, status.
    joint_label
        The ``proposed_by`` value that marks an idea developed by both sides together.

    Returns
    -------
    pandas.DataFrame
        One row per dialogue, columns :data:`IDEA_COLUMNS`. Workshops without any idea still
        count when a later workshop of the dialogue is in the log (numbered 1..max).
    """
    rows = []
    for dialogue, sub in ideas.groupby("dialogue", sort=True):
        n_ws = int(pd.to_numeric(sub["workshop"], errors="coerce").max())
        stage = sub["status"].map({s: i for i, s in enumerate(_STAGES)})
        rows.append({
            "dialogue": dialogue, "n_ideas": len(sub), "n_workshops": n_ws,
            "ideas_per_workshop": len(sub) / n_ws if n_ws else float("nan"),
            "cross_side_share": float((sub["proposed_by"] == joint_label).mean()),
            "transferred_share": float((stage >= _STAGES.index("transferred")).mean()),
            "adopted_share": float((stage == _STAGES.index("adopted")).mean()),
        })
    return pd.DataFrame(rows, columns=IDEA_COLUMNS)
