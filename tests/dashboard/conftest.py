"""The demo portfolio (demo + coast studies), run through every stage once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_study(name: str, out: Path, key) -> Path:
    """Ingest, score and model ``surveys/<name>`` with the tests' small plan into ``out``."""
    from trackii_eval.pipeline import ingest, load_context, model, score
    from trackii_eval.store import Store

    ctx = load_context(ROOT / "surveys" / name, out=out, plan=Path(__file__).parent / "plan.yaml")
    out.mkdir(parents=True, exist_ok=True)
    with Store(out / f"{name}.duckdb", ctx.study_id, create=True) as store:
        ingest(store, ctx, key)
        score(store, ctx, n_boot=100)
        model(store, ctx)
    return out


@pytest.fixture(scope="session")
def portfolio_dirs(tmp_path_factory: pytest.TempPathFactory, key) -> dict[str, Path]:
    """Output folders of the two simulated studies (stores with scores and model results)."""
    base = tmp_path_factory.mktemp("portfolio")
    return {name: run_study(name, base / name, key) for name in ("demo", "coast")}


@pytest.fixture(scope="session")
def built(portfolio_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The dashboard written over both studies: (Dashboard, out folder)."""
    from trackii_eval.dashboard.build import build_dashboard, load_portfolio

    studies = load_portfolio([(ROOT / "surveys" / n, d) for n, d in portfolio_dirs.items()])
    out = tmp_path_factory.mktemp("dashboard")
    dash = build_dashboard(studies, out)
    yield dash, out, studies
    for s in studies:
        s.store.close()
