"""Shared fixtures: the demo study, ingested once per test session with a throwaway key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# In CI the property tests run a fixed, derandomised set of examples: a new random example that
# breaks something is found in development runs, not by the gate that decides what lands.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "surveys" / "demo"


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trackii_eval.ingest.pseudonym import write_key

    path = tmp_path_factory.mktemp("keys") / "test.key"
    write_key(path)
    return path


@pytest.fixture(scope="session")
def key(key_file: Path):
    from trackii_eval.ingest.pseudonym import load_key

    return load_key(key_file)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, key):
    """The demo study after every stage: (study, ingest summary, model results, report path)."""
    from trackii_eval import Study

    out = tmp_path_factory.mktemp("demo_out")
    study = Study.load(DEMO, out=out)
    summary = study.ingest(key)
    study.score()
    results = study.fit_models()
    report = study.report()
    yield study, summary, results, report
    study.close()


@pytest.fixture()
def demo_copy(tmp_path: Path) -> Path:
    """A writable copy of the demo study folder (for tests that break it)."""
    dest = tmp_path / "demo"
    shutil.copytree(DEMO, dest)
    return dest
