"""A wrong encoding gets a hint naming the likely one; ``encoding:`` per wave fixes it (issue 8)."""

from __future__ import annotations

from pathlib import Path

from trackii_eval import Study

from .mini_study import make_study

SIDES = ("Doğu", "Batı")


def _wave(path: Path, n: int = 30) -> Path:
    rows = ["pid;arm;side;dialogue;t1;t2;t3;yorum"]
    for i in range(n):
        rows.append(f"T{i:03d};dialogue;{SIDES[i % 2]};D1;1;2;3;"
                    f"{'Görüşme iyi geçti' if i % 3 else 'Şimdilik yok'}")
    path.write_bytes(("\n".join(rows) + "\n").encode("cp1254"))
    return path


def _ingest(tmp_path: Path, key, option: str | None):
    wave = _wave(tmp_path / "w1254.csv")
    root = make_study(tmp_path / "s", [(wave, "2022-03-01")], sides=SIDES,
                      wave_options=[option])
    (root / "instrument.yaml").write_text(
        (root / "instrument.yaml").read_text(encoding="utf-8")
        + "ignore_columns: [yorum]\n", encoding="utf-8")
    study = Study.load(root, out=tmp_path / "out")
    try:
        return study.ingest(key)
    finally:
        study.close()


def test_windows_1254_read_as_1252_names_the_likely_encoding(tmp_path: Path, key) -> None:
    summary = _ingest(tmp_path, key, None)
    assert (summary.problems["rule"] == "unknown_side").sum() == 30
    hint = summary.problems[summary.problems["rule"] == "encoding_suspect"]
    assert len(hint) == 1
    message = hint["message"].iloc[0]
    assert "encoding" in message and "cp1254" in message and "encoding: cp1254" in message
    line = next(x for x in summary.problem_lines() if "encoding" in x)
    assert line.startswith("w1254.csv:1:side:")


def test_encoding_option_per_wave_reads_it(tmp_path: Path, key) -> None:
    summary = _ingest(tmp_path, key, "encoding: cp1254")
    assert len(summary.problems) == 0, summary.problem_lines()
    assert summary.table["rows_stored"].tolist() == [30]


def test_few_unknown_ascii_sides_give_no_encoding_hint(tmp_path: Path, key) -> None:
    wave = tmp_path / "w.csv"
    wave.write_text("pid,arm,side,dialogue,t1,t2,t3\n" + "".join(
        f"A{i},dialogue,West,D1,1,2,3\n" for i in range(5)), encoding="utf-8")
    root = make_study(tmp_path / "s", [(wave, "2022-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    study.close()
    assert (summary.problems["rule"] == "unknown_side").sum() == 5
    assert not (summary.problems["rule"] == "encoding_suspect").any()
