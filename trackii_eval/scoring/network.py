"""Relationship networks across the divide, per dialogue and wave (networkx).

The roster says who named whom as a working contact at each wave. Relationship building, in
Allen and Sharp's sense, is the growth of ties *across* the sides of the conflict, so every
measure here is about cross-side ties:

* ``cross_density``: directed cross-side ties / possible directed cross-side pairs
  (``2 * n_a * n_b`` for sides of sizes ``n_a`` and ``n_b`` among the wave's respondents);
* ``cross_reciprocity``: share of directed cross-side ties whose reverse tie also exists
  (networkx's overall reciprocity on the cross-side subgraph);
* ``working_ties``: undirected cross-side pairs with a tie of at least ``min_strength`` in
  either direction;
* ``persisting``: share of the previous wave's undirected cross-side pairs still tied.

References
----------
Wasserman, S., & Faust, K. (1994). Social Network Analysis. Cambridge University Press, ch. 4
(density) and 13 (reciprocity).
"""

from __future__ import annotations

import networkx as nx
import pandas as pd

__all__ = ["NETWORK_COLUMNS", "network_measures"]

NETWORK_COLUMNS = [
    "dialogue", "wave", "n_participants", "cross_ties", "cross_density", "cross_reciprocity",
    "working_ties", "persisting",
]


def network_measures(
    ties: pd.DataFrame, participants: pd.DataFrame, respondents: pd.DataFrame | None = None,
    *, min_strength: float = 2.0,
) -> pd.DataFrame:
    """Cross-side network measures per dialogue and wave.

    Parameters
    ----------
    ties
        Columns wave, participant, contact, strength (directed: participant named contact).
    participants
        Columns participant, side, dialogue.
    respondents
        Columns participant, wave: who answered each wave (the network's nodes). Default:
        everyone who appears in the roster at that wave.
    min_strength
        Minimum tie strength for a working tie.

    Returns
    -------
    pandas.DataFrame
        One row per dialogue and wave, columns :data:`NETWORK_COLUMNS`.
    """
    attrs = participants.set_index("participant")[["side", "dialogue"]]
    rows = []
    waves = sorted(ties["wave"].unique()) if respondents is None else sorted(
        respondents["wave"].unique())
    for dialogue in sorted(participants["dialogue"].dropna().unique()):
        members = set(attrs.index[attrs["dialogue"] == dialogue])
        previous: set[frozenset[str]] | None = None
        for wave in waves:
            if respondents is not None:
                nodes = members & set(respondents.loc[respondents["wave"] == wave, "participant"])
            else:
                at = ties[ties["wave"] == wave]
                nodes = members & (set(at["participant"]) | set(at["contact"]))
            graph = nx.DiGraph()
            graph.add_nodes_from(nodes)
            wave_ties = ties[(ties["wave"] == wave) & ties["participant"].isin(nodes)
                             & ties["contact"].isin(nodes)]
            for t in wave_ties.itertuples(index=False):
                graph.add_edge(t.participant, t.contact, strength=float(t.strength))
            side = {n: attrs.at[n, "side"] for n in nodes}
            cross = graph.edge_subgraph(
                [(u, v) for u, v in graph.edges if side[u] != side[v]]
            ).copy()
            sizes = pd.Series(side).value_counts()
            possible = 2 * sizes.iloc[0] * sizes.iloc[1] if len(sizes) == 2 else 0
            n_cross = cross.number_of_edges()
            pairs = {frozenset((u, v)) for u, v in cross.edges}
            working = {
                frozenset((u, v)) for u, v, d in cross.edges(data=True)
                if d["strength"] >= min_strength
            }
            persisting = (
                len(previous & pairs) / len(previous) if previous else float("nan")
            )
            rows.append({
                "dialogue": dialogue, "wave": int(wave), "n_participants": len(nodes),
                "cross_ties": n_cross,
                "cross_density": n_cross / possible if possible else float("nan"),
                "cross_reciprocity": nx.overall_reciprocity(cross) if n_cross else float("nan"),
                "working_ties": len(working), "persisting": persisting,
            })
            previous = pairs
    return pd.DataFrame(rows, columns=NETWORK_COLUMNS)
