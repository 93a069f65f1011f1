"""A truncated file is refused with that reason, never stored as if whole (issue 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackii_eval import Study
from trackii_eval.errors import IngestError
from trackii_eval.ingest.readers import read_table

from .mini_study import make_study

WHOLE = ("pid,arm,side,dialogue,t1,t2,t3\n"
         "1001,dialogue,North,D1,5,5,1\n"
         "1002,dialogue,South,D1,4,4,2\n"
         '1003,comparison,,,"3",3,3\n')


LAST_ROW_START = WHOLE.rindex("\n", 0, len(WHOLE) - 1) + 1


@pytest.mark.parametrize("cut", range(LAST_ROW_START + 1, len(WHOLE) - 1))
def test_every_cut_inside_the_last_row_is_refused(tmp_path: Path, cut: int) -> None:
    """Cut anywhere in the last row but its final newline: refused, or whole-valued."""
    path = tmp_path / "w.csv"
    path.write_text(WHOLE[:cut], encoding="utf-8")
    last_row = WHOLE[:cut].rsplit("\n", 1)[1]
    if last_row.count(",") == 6 and last_row.count('"') % 2 == 0:
        # all 7 fields there: the cut only shortened the last value ("3" of "3", say);
        # nothing can tell it from a whole file without a final line break
        assert read_table(path).n_rows == 3
        return
    with pytest.raises(IngestError, match="truncated") as info:
        read_table(path)
    assert "\n" not in str(info.value)


def test_open_quote_at_the_end_is_truncation(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text(WHOLE[: WHOLE.index('"3"') + 2], encoding="utf-8")
    with pytest.raises(IngestError, match="ends inside a quoted cell"):
        read_table(path)


def test_whole_file_without_final_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text(WHOLE.rstrip("\n"), encoding="utf-8")
    assert read_table(path).n_rows == 3


def test_truncated_wave_not_ingested(tmp_path: Path, key) -> None:
    src = tmp_path / "w.csv"
    src.write_text(WHOLE[:-8], encoding="utf-8")
    root = make_study(tmp_path / "s", [(src, "2022-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    with pytest.raises(IngestError, match="truncated_file"):
        study.ingest(key)
    assert study.store.query("SELECT count(*) AS n FROM files")["n"][0] == 0
    study.close()
