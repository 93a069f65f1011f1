"""The README's "Set up your own study" guide works as written, on a copy of a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _guide_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- guide:start -->\n```sh\n(.*?)```\n<!-- guide:end -->", text, re.S)
    assert block, "the guide's command block is missing from README.md"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines()
            if line.strip() and not line.startswith("#")]


def test_readme_guide_runs_as_written(tmp_path: Path) -> None:
    commands = _guide_commands()
    assert [c.split()[1] for c in commands if c.startswith("trackii-eval")] == [
        "init", "check", "keygen", "run"]
    # a fresh clone: only what git tracks in surveys/onboarding (no drafts left behind)
    tracked = subprocess.run(["git", "ls-files", "surveys/onboarding"], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.split()
    assert {Path(t).name for t in tracked} >= {"wave1_qualtrics.csv", "wave2_spss.sav",
                                               "wave3_kobo.csv", "wave3_xlsform.xlsx",
                                               "enrolment_list.csv"}
    for t in tracked:
        (tmp_path / t).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / t, tmp_path / t)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("TRACKII_EVAL_KEY_FILE", None)
    cli = f"{sys.executable} -m trackii_eval"
    for command in commands:
        shell = command.replace("trackii-eval", cli)
        done = subprocess.run(shell, shell=True, cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        if command.startswith("grep"):
            assert done.stdout.count("REVIEW") >= 10
    assert (tmp_path / "build" / "my-study" / "report.html").exists()
    key = tmp_path / "home" / ".config" / "trackii_eval" / "my-study.key"
    assert key.exists() and not (tmp_path / "my-study" / "my-study.key").exists()
