"""Run the row-wise and the bulk ingest on the same study and compare what they leave."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trackii_eval.ingest.bulk import ingest_bulk
from trackii_eval.ingest.core import IngestSummary, ingest_study
from trackii_eval.pipeline.context import load_context
from trackii_eval.store import Store

TABLES = ("responses", "submissions", "participants", "quarantine", "waves")


def sorted_table(store: Store, table: str) -> pd.DataFrame:
    """A store table in a canonical row order (DuckDB keeps no order between paths)."""
    frame = store.query(f"SELECT * FROM {table}" if table != "files" else
                        "SELECT * EXCLUDE (ingested_at) FROM files")
    cols = list(frame.columns)
    return frame.sort_values(cols, na_position="first").reset_index(drop=True)


def both(root: Path, key) -> tuple[Store, IngestSummary, Store, IngestSummary]:
    """Ingest ``root`` row-wise and in bulk into two in-memory stores with one key."""
    ctx = load_context(root)
    rowwise, bulk = Store(":memory:", ctx.config.id), Store(":memory:", ctx.config.id)
    return rowwise, ingest_study(rowwise, ctx, key), bulk, ingest_bulk(bulk, ctx, key)


def assert_same(root: Path, key) -> tuple[IngestSummary, IngestSummary]:
    """Same store contents (every table ingest writes) and the same problem lines."""
    rowwise, a, bulk, b = both(root, key)
    for table in (*TABLES, "files"):
        pd.testing.assert_frame_equal(sorted_table(rowwise, table), sorted_table(bulk, table),
                                      check_dtype=False, obj=table)
    assert sorted(a.report_lines()) == sorted(b.report_lines())
    assert a.table.equals(b.table)
    # ordered by wave, file and row by the store; ties (two problems of one row) in any order
    def canonical(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(canonical(a.open_problems), canonical(b.open_problems))
    assert list(a.open_problems["row"]) == list(b.open_problems["row"])
    rowwise.close()
    bulk.close()
    return a, b
