"""At rest: the store, the report and everything the command line writes are owner-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trackii_eval.privacy.at_rest import (
    group_or_other_access,
    owner_only_umask,
    private_dir,
    private_file,
)
from trackii_eval.store import Store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture()
def open_umask():
    previous = os.umask(0o022)  # a typical shared-machine default
    yield
    os.umask(previous)


def test_store_is_owner_only_even_under_an_open_umask(open_umask, tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb", "s")
    store.close()
    assert (tmp_path / "s.duckdb").stat().st_mode & 0o777 == 0o600
    os.chmod(tmp_path / "s.duckdb", 0o644)  # a store written before: tightened when opened
    Store(tmp_path / "s.duckdb", "s").close()
    assert (tmp_path / "s.duckdb").stat().st_mode & 0o777 == 0o600


def test_private_dir_leaves_existing_folders_alone(open_umask, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    private_dir(shared / "mine")
    assert shared.stat().st_mode & 0o777 == 0o755
    assert (shared / "mine").stat().st_mode & 0o777 == 0o700


def test_owner_only_umask_and_private_file(open_umask, tmp_path: Path) -> None:
    with owner_only_umask():
        (tmp_path / "a.csv").write_text("x")
    (tmp_path / "b.csv").write_text("x")
    assert group_or_other_access(tmp_path / "a.csv") == 0
    assert group_or_other_access(tmp_path / "b.csv") == 0o044
    private_file(tmp_path / "b.csv")
    assert group_or_other_access(tmp_path / "b.csv") == 0


def test_command_line_sets_an_owner_only_umask(tmp_path: Path) -> None:
    # in a child process: the umask is per process
    code = (
        "import os; os.umask(0o022)\n"
        "from trackii_eval import cli\n"
        f"open({str(tmp_path / 'out.txt')!r}, 'w').write('x')\n"
        f"os.mkdir({str(tmp_path / 'folder')!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o700
