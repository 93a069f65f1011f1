"""The committed demo files are exactly what the seeded generator writes."""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
from pathlib import Path

from trackii_eval.simulate import DemoTruth, write_demo_study

from .conftest import DEMO


def test_generator_reproduces_committed_files(tmp_path: Path) -> None:
    for name in ("study.yaml", "instrument.yaml"):
        shutil.copy(DEMO / name, tmp_path / name)
    spec = importlib.util.spec_from_file_location("demo_generate", DEMO / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_demo_study(tmp_path, DemoTruth(), seed=module.SEED)
    committed = sorted(p.relative_to(DEMO) for p in DEMO.rglob("*.csv"))
    committed.append(Path("truth.json"))
    assert len(committed) >= 8
    for rel in committed:
        assert filecmp.cmp(tmp_path / rel, DEMO / rel, shallow=False), rel
