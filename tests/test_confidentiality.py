"""Canaries: no identifier from the raw exports, nor an unkeyed hash of a raw ID, reaches any
file the tool writes (store, report, problem and linkage exports) or anything it prints."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pandas as pd
from typer.testing import CliRunner

from trackii_eval.cli import app

from .conftest import DEMO

IDENTIFIERS = ["participant_code", "sgic", "name", "email", "phone", "ip_address", "latitude",
               "longitude"]


def _canaries(study_dir: Path) -> set[str]:
    values: set[str] = set()
    for path in sorted((study_dir / "waves").glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for column in IDENTIFIERS:
            values |= {v for v in frame[column] if len(v) >= 6}
    for raw_id in list(values):
        if raw_id.startswith("CNRY-") or len(raw_id) == 8:  # participant codes and SGICs
            for variant in (raw_id, raw_id.lower(), raw_id.strip()):
                values.add(hashlib.sha256(variant.encode()).hexdigest())
                values.add(hashlib.md5(variant.encode()).hexdigest())
                values.add(hashlib.sha256(variant.encode()).hexdigest()[:16])
    return values


def test_no_identifier_in_any_output(tmp_path: Path, key_file: Path) -> None:
    study_dir = tmp_path / "study"
    shutil.copytree(DEMO, study_dir)
    # make the exports messy so that problems, quarantine and the review file are exercised
    path = study_dir / "waves" / "wave2_post.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[3, "therm_other"] = "150"
    frame = pd.concat([frame, frame.iloc[[7]]], ignore_index=True)  # duplicate submission
    frame.loc[11, "sgic"] = ""
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    runner = CliRunner()
    printed = []
    for args in (["run", str(study_dir)], ["report", str(study_dir)], ["score", str(study_dir)]):
        result = runner.invoke(app, [*args, "--out", str(out), *(
            ["--key-file", str(key_file)] if args[0] == "run" else [])])
        assert result.exit_code == 0, result.output
        printed.append(result.output)
    written = sorted(p for p in out.rglob("*") if p.is_file())
    names = {p.name for p in written}
    assert {"report.html", "demo.duckdb", "ingest_problems.csv", "linkage_review.csv"} <= names
    texts = {str(p): p.read_bytes().decode("latin-1") for p in written}
    # the database file may compress strings, so also read every table back as text
    con = duckdb.connect(str(out / "demo.duckdb"), read_only=True)
    tables = [t for (t,) in con.execute("SHOW TABLES").fetchall()]
    assert {"responses", "participants", "quarantine", "ties", "scores"} <= set(tables)
    for table in tables:
        texts[f"table {table}"] = con.execute(f"SELECT * FROM {table}").df().to_csv()
    con.close()
    texts["(printed)"] = "\n".join(printed)
    canaries = _canaries(study_dir)
    assert len(canaries) > 1000
    for where, text in texts.items():
        assert "CANARY" not in text and "CNRY-" not in text, where
        assert "example.invalid" not in text and "198.51.100." not in text, where
        leaked = [c for c in canaries if c in text]
        assert not leaked, (where, len(leaked))
