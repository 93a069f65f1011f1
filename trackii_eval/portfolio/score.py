"""Construct scores in DuckDB SQL, for stores too big for a pandas frame of responses.

:func:`score_sql` computes exactly what :func:`trackii_eval.scoring.scores.score_responses`
computes from :meth:`Store.active_responses` (POMP-keyed weighted item means per participant,
wave and construct, the minimum answered share, the change from the participant's first-wave
score), without bringing the responses into Python: 32 million responses are aggregated in
the database in seconds, in bounded memory. The arithmetic is the same per response
((value - min) / (max - min) * 100, reversed as 100 - POMP, times the item weight); the sums
per group are added in another order than pandas adds them, so scores need not agree bit for
bit (the tests allow 1e-9 POMP points; the differences measured were 0).
"""

from __future__ import annotations

import pandas as pd

from ..config import Instrument, StudyConfig
from ..errors import ScoringError
from ..scoring.scores import SCORE_COLUMNS
from ..store import Store, register_frame

__all__ = ["score_sql"]


def score_sql(store: Store, instrument: Instrument, config: StudyConfig, *,
              table: str = "scores") -> int:
    """Score the store's active responses into ``table`` (replaced), in SQL.

    Parameters
    ----------
    store
        The study store after ingest.
    instrument, config
        The codebook (scales, keys, weights, minimum answered share, ``asked_of``, ``waves``)
        and the study design (the first wave is the baseline of ``change``).
    table
        The table to write; columns :data:`~trackii_eval.scoring.scores.SCORE_COLUMNS`, rows
        ordered by construct, participant and wave, as ``score_responses`` returns them.

    Returns
    -------
    int
        Rows written (participant x wave x construct).

    Raises
    ------
    ScoringError
        The responses hold an item the instrument does not define (as ``score_responses``).
    """
    con = store.connection
    items = instrument.items
    stored = {r[0] for r in con.execute("SELECT DISTINCT item FROM responses").fetchall()}
    unknown = sorted(stored - set(items))
    if unknown:
        raise ScoringError(
            f"responses hold item(s) {unknown[:5]} that the instrument does not define; "
            "check instrument.yaml against the stored waves and ingest again"
        )
    raw_scored = {c for c, k in instrument.constructs.items() if k.scoring == "raw"}
    item_frame = pd.DataFrame({
        "item": pd.Series(list(items), dtype=object),
        "lo": [float(instrument.scales[it.scale].min) for it in items.values()],
        "hi": [float(instrument.scales[it.scale].max) for it in items.values()],
        "rev": [bool(it.reverse) for it in items.values()],
        "weight": [float(it.weight) for it in items.values()],
    })
    cons = instrument.constructs
    construct_frame = pd.DataFrame({
        "construct": pd.Series(list(cons), dtype=object),
        "n_items": [len(c.items) for c in cons.values()],
        "wtotal": [float(sum(i.weight for i in c.items)) for c in cons.values()],
        "need": [float(c.min_answered) for c in cons.values()],
        "output": pd.Series([c.output for c in cons.values()], dtype=object),
        "raw_scored": [c in raw_scored for c in cons],
    })
    # constructs asked only of some arms or at some waves produce no score elsewhere; every
    # response of a group shares its arm and wave, so the filter applies to groups
    keep = []
    for name, con_ in cons.items():
        quoted = _text(name)
        if con_.asked_of is not None:
            arms = ", ".join(_text(a) for a in con_.asked_of) or "NULL"
            keep.append(f"NOT (construct = {quoted} AND NOT coalesce(arm IN ({arms}), false))")
        if con_.waves is not None:
            waves = ", ".join(str(int(w)) for w in con_.waves) or "NULL"
            keep.append(f"NOT (construct = {quoted} AND NOT coalesce(wave IN ({waves}), "
                        "false))")
    where = " AND ".join(keep) or "true"
    raw_list = ", ".join(_text(c) for c in sorted(raw_scored)) or "NULL"
    first = int(config.waves[0].index)
    columns = ", ".join(f"g.{c}" for c in SCORE_COLUMNS[:-2])
    con.execute("SET enable_progress_bar = false")
    register_frame(con, "_score_items", item_frame)
    register_frame(con, "_score_constructs", construct_frame)
    try:
        # 1. the 32M responses are aggregated first, joined to nothing but the item keys;
        #    per participant, wave, file and construct (the joins of active_responses come
        #    after, on groups; a response that matches m submissions counts m times there)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _score_groups AS
            SELECT r.participant, r.wave, r.sha256, r.construct,
                   sum(k.pomp * i.weight) AS wsum,
                   sum(CASE WHEN k.pomp IS NULL THEN 0.0 ELSE i.weight END) AS wanswered,
                   count(k.pomp) AS n_answered
            FROM responses r JOIN _score_items i USING (item)
            CROSS JOIN LATERAL (SELECT CASE
                WHEN r.construct IN ({raw_list}) THEN r.value
                WHEN i.rev THEN 100.0 - (r.value - i.lo) / (i.hi - i.lo) * 100.0
                ELSE (r.value - i.lo) / (i.hi - i.lo) * 100.0 END AS pomp) k
            SEMI JOIN (SELECT wave, sha256 FROM files WHERE active) f
                 ON f.wave = r.wave AND f.sha256 = r.sha256
            WHERE coalesce(r.missing_code, '') <> 'not asked'
            GROUP BY ALL""")
        # 2. the joins of Store.active_responses, then score_responses' rules per group
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _score_final AS
            WITH joined AS (
                SELECT g.participant, g.wave, w.time, p.arm, p.side, p.dialogue, g.construct,
                       coalesce(sum(g.wsum * s.m), 0.0) AS wsum,
                       coalesce(sum(g.wanswered * s.m), 0.0) AS wanswered,
                       sum(g.n_answered * s.m)::BIGINT AS n_answered
                FROM _score_groups g
                JOIN (SELECT participant, wave, sha256, count(*) AS m FROM submissions
                      WHERE excluded_reason IS NULL GROUP BY ALL) s
                     USING (participant, wave, sha256)
                JOIN participants p ON p.participant = g.participant
                JOIN waves w ON w.wave = g.wave
                GROUP BY ALL
            ), kept AS (SELECT * FROM joined WHERE {where})
            SELECT k.participant, k.wave, k.time, k.arm, k.side, k.dialogue, c.output,
                   k.construct,
                   CASE WHEN ok AND k.wanswered > 0 THEN k.wsum / k.wanswered END AS score,
                   k.n_answered, c.n_items,
                   CASE WHEN ok THEN 'scored' ELSE 'too_few_items' END AS status
            FROM kept k LEFT JOIN _score_constructs c USING (construct)
            CROSS JOIN LATERAL (SELECT k.wanswered / c.wtotal + 1e-12 >= c.need AS ok) o""")
        con.execute("DROP TABLE _score_groups")
        # 3. change from the participant's own first-wave score, in score_responses' order
        con.execute(f"""
            CREATE OR REPLACE TABLE {table} AS
            SELECT {columns}, b.score AS baseline, g.score - b.score AS change
            FROM _score_final g
            LEFT JOIN (SELECT participant, construct, score FROM _score_final
                       WHERE wave = {first}) b USING (participant, construct)
            ORDER BY g.construct, g.participant, g.wave""")
        con.execute("DROP TABLE _score_final")
    finally:
        con.unregister("_score_items")
        con.unregister("_score_constructs")
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _text(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"
