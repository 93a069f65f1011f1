"""Every notebook in notebooks/ runs top to bottom with ``jupyter nbconvert --execute`` (the
command a reader uses; the dev extra installs it), and matches the cells in make_notebooks.py.

00_quickstart runs the demo from wave files to the HTML and PDF report; 01_demo_analysis works
through the analysis and asserts that every simulated gap of ``truth.json`` lies in its
interval; 02_own_study starts a study from three platforms' exports.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

HERE = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))


def _cells_from_script() -> dict[str, list[tuple[str, str]]]:
    spec = importlib.util.spec_from_file_location("make_notebooks", HERE / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NOTEBOOKS


def test_notebooks_are_the_ones_make_notebooks_writes() -> None:
    cells = _cells_from_script()
    assert sorted(cells) == [p.name for p in NOTEBOOKS]
    assert {"00_quickstart.ipynb", "01_demo_analysis.ipynb"} <= set(cells)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert [(("md" if c.cell_type == "markdown" else "code"), c.source)
                for c in nb.cells] == [tuple(c) for c in cells[path.name]], (
            f"{path.name} differs from make_notebooks.py: run `python notebooks/make_notebooks.py`")
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
            f"{path.name} is committed with outputs: clear them (make_notebooks.py does)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.kernel_name=python3",
         "--output-dir", str(tmp_path), str(path)],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)  # every cell ran
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert code[-1].outputs, f"{path.name}: the last cell shows nothing"
