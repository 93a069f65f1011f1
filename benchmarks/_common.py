"""Helpers shared by the benchmarks: settings from the environment and running R."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment, ``default`` when unset or blank."""
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def run_r(script: Path, args: list[str], out: Path) -> dict | None:
    """Run an R script that writes JSON to ``out``; None (with the R error) if it fails."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    proc = subprocess.run([rscript, str(script), *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 or not out.exists():
        print(f"  lme4 failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(out.read_text())
