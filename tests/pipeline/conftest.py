"""A small simulated study (not the demo) and an in-memory store for the stage tests.

Two perception items fewer than the demo's constructs, three waves, 60 people: every stage
runs on it in a few seconds. Its files are written by the same simulator as the demo's, so the
true effect is known (``truth``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trackii_eval.ingest.pseudonym import PseudonymKey
from trackii_eval.pipeline import StudyContext, load_context
from trackii_eval.simulate import ConstructTruth, DemoTruth, write_demo_study
from trackii_eval.store import Store

STUDY_YAML = """\
id: mini
name: Mini study (simulated)
dialogues:
  - {id: D1, name: One dialogue, track: "2", sides: [North, South],
     moderators: [{role: lead, type: outsider-neutral, native_language: true}]}
arms:
  - {id: dialogue, label: Dialogue}
  - {id: comparison, label: Comparison, comparison: true}
waves:
  - {index: 1, label: Baseline, phase: baseline, date: 2022-03-01, file: waves/w1.csv}
  - {index: 2, label: Post, phase: post, date: 2023-03-01, file: waves/w2.csv}
  - {index: 3, label: Follow-up, phase: follow_up, date: 2024-03-01, file: waves/w3.csv}
program_end_wave: 2
privacy: {min_cell_size: 5}
"""

INSTRUMENT_YAML = """\
scales:
  agree7: {min: 1, max: 7}
  thermometer: {min: 0, max: 100}
missing_codes: {"-99": refused, "": missing}
identifiers: [name, email, phone, ip_address, latitude, longitude]
ignore_columns: [ResponseId]
constructs:
  perceptions:
    output: perceptions
    items:
      - {id: therm_other, scale: thermometer}
      - {id: trust_other_1, scale: agree7}
      - {id: trust_other_2, scale: agree7}
      - {id: trust_other_3, scale: agree7}
  relationships:
    output: relationships
    items:
      - {id: contact_1, scale: agree7}
      - {id: contact_2, scale: agree7}
"""

TRUTH = DemoTruth(
    n_per_dialogue=30, n_comparison=30,
    perceptions=ConstructTruth(baseline_mean=42.0, baseline_sd=11.0, comparison_slope=0.0,
                               slope_sd=2.0, gain_per_year=9.0, fade_per_year=2.0,
                               residual_sd=5.0),
)


@pytest.fixture(scope="session")
def mini_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mini_template")
    (root / "study.yaml").write_text(STUDY_YAML)
    (root / "instrument.yaml").write_text(INSTRUMENT_YAML)
    write_demo_study(root, TRUTH, seed=7)
    return root


@pytest.fixture()
def mini(tmp_path: Path, mini_template: Path) -> Path:
    """A writable copy of the mini study folder."""
    dest = tmp_path / "mini"
    shutil.copytree(mini_template, dest)
    return dest


@pytest.fixture()
def ctx(mini: Path, tmp_path: Path) -> StudyContext:
    return load_context(mini, out=tmp_path / "out")


@pytest.fixture()
def store(ctx: StudyContext):
    with Store(":memory:", ctx.study_id) as s:
        yield s


@pytest.fixture(scope="session")
def mini_key() -> PseudonymKey:
    return PseudonymKey(bytes(range(32)))


@pytest.fixture(scope="session")
def other_key() -> PseudonymKey:
    return PseudonymKey(bytes(range(1, 33)))


N_BOOT = 100  # the smallest bootstrap reliability accepts: these tests check the pipeline


@pytest.fixture(scope="session")
def scored_file(mini_template: Path, tmp_path_factory: pytest.TempPathFactory,
                mini_key: PseudonymKey) -> Path:
    """The mini study ingested and scored once, in a DuckDB file (copied by ``scored``)."""
    from trackii_eval.pipeline import ingest, score

    out = tmp_path_factory.mktemp("mini_scored")
    ctx = load_context(mini_template, out=out)
    path = out / "mini.duckdb"
    with Store(path, ctx.study_id) as store:
        ingest(store, ctx, mini_key)
        score(store, ctx, n_boot=N_BOOT)
    return path


@pytest.fixture()
def scored(ctx: StudyContext, scored_file: Path):
    """An in-memory store holding the mini study ingested (with ``mini_key``) and scored.

    Copied table by table into the store's own schema, so keys and constraints are the
    store's. The study files of ``ctx`` are byte-identical copies of the ones ingested.
    """
    with Store(":memory:", ctx.study_id) as store:
        own = set(store.query("SELECT table_name FROM information_schema.tables")["table_name"])
        store.execute(f"ATTACH '{scored_file}' AS src (READ_ONLY)")
        names = store.query("SELECT table_name FROM information_schema.tables "
                            "WHERE table_catalog = 'src'")["table_name"]
        for name in names:
            if name in own:
                store.execute(f'DELETE FROM main."{name}"')
                store.execute(f'INSERT INTO main."{name}" SELECT * FROM src."{name}"')
            else:
                store.execute(f'CREATE TABLE main."{name}" AS SELECT * FROM src."{name}"')
        store.execute("DETACH src")
        yield store
