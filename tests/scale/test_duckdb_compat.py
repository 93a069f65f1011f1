"""The store works on DuckDB 1.x and 2.x.

DuckDB 2.0 removed the connection's Arrow fetchers (``.arrow()``, ``fetch_arrow_table()``,
``fetch_record_batch()``); the project's ``duckdb>=1.4`` installs 2.x on a fresh machine, 1.4 on
an older one. The code must use neither those (gone in 2.x) nor their 2.x replacements
(``to_arrow_table()``, absent in 1.x), and must hand pandas 3's string columns to DuckDB as
Python objects (DuckDB 1.x cannot scan them).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd

from trackii_eval.store import Store, register_frame

ROOT = Path(__file__).resolve().parents[2]
# methods one of the two major versions lacks
_VERSION_BOUND = re.compile(
    r"\.(arrow|fetch_arrow_table|fetch_record_batch|fetch_arrow_reader|to_arrow_table|"
    r"to_arrow_reader)\(")


def test_no_code_calls_an_arrow_fetcher_of_only_one_duckdb_version():
    found = []
    for folder in ("trackii_eval", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == Path(__file__).name:
                continue
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _VERSION_BOUND.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not found, "use .df()/.fetchnumpy()/.fetchall(), which both versions have:\n" + \
        "\n".join(found)


def test_string_columns_reach_duckdb_as_text_and_null():
    frame = pd.DataFrame({"a": pd.Series(["x", None, "z"], dtype="str"),
                          "b": [1.5, None, 3.0],
                          "c": pd.Series(["p", "q", None], dtype=object)})
    con = duckdb.connect()
    register_frame(con, "t", frame)
    rows = con.execute("SELECT a, b, c, a IS NULL FROM t ORDER BY b NULLS LAST").fetchall()
    assert rows[0] == ("x", 1.5, "p", False)
    assert rows[2][0] is None and rows[2][3] is True
    assert frame["a"].dtype == "str"  # the caller's frame is not changed


def test_store_round_trip_of_a_pandas_frame():
    store = Store(":memory:", "compat")
    store.append("participants", pd.DataFrame({
        "participant": pd.Series(["P-1", "P-2"], dtype="str"),
        "arm": pd.Series(["dialogue", None], dtype="str"),
        "side": ["North", "South"], "dialogue": pd.Series([None, None], dtype=object),
        "first_wave": [1, 2]}))
    back = store.query("SELECT * FROM participants ORDER BY participant")
    assert back["participant"].tolist() == ["P-1", "P-2"]
    assert back["arm"].isna().tolist() == [False, True]
    assert back["first_wave"].tolist() == [1, 2]


def test_a_text_column_without_values_stays_text():
    store = Store(":memory:", "compat")
    store.replace_table("notes", pd.DataFrame({"note": pd.Series([None, None], dtype="str"),
                                               "n": [1, 2]}))
    types = dict(store.query("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'notes'").itertuples(index=False))
    assert types["note"] == "VARCHAR"
