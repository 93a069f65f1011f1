"""Configuration errors name the file, the line and the key, and say which rule was broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackii_eval import Study
from trackii_eval.config import load_instrument
from trackii_eval.errors import ConfigError


def _line_of(path: Path, text: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return i
    raise AssertionError(text)


def test_demo_loads(demo_copy: Path) -> None:
    study = Study.load(demo_copy)
    assert study.config.id == "demo"
    assert len(study.config.dialogues) == 3
    assert study.config.comparison_arm == "comparison"
    outputs = {c.output for c in study.instrument.constructs.values()}
    assert outputs == {"perceptions", "relationships", "moderation", "ideas", "behaviour"}


def test_missing_wave_file_names_line_and_key(demo_copy: Path) -> None:
    (demo_copy / "waves" / "wave3_followup1.csv").unlink()
    with pytest.raises(ConfigError) as exc:
        Study.load(demo_copy)
    line = _line_of(demo_copy / "study.yaml", "wave3_followup1.csv")
    msg = str(exc.value)
    assert f"study.yaml:{line}: waves[2].file: file not found: waves/wave3_followup1.csv" in msg


def test_malformed_yaml_names_line(demo_copy: Path) -> None:
    path = demo_copy / "study.yaml"
    lines = path.read_text().splitlines()
    lines[10] = lines[10] + " : : ["
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError) as exc:
        Study.load(demo_copy)
    assert "study.yaml:" in str(exc.value) and "malformed YAML" in str(exc.value)
    assert int(str(exc.value).split("study.yaml:")[1].split(":")[0]) in range(10, 13)


def test_wrong_type_names_key_and_line(demo_copy: Path) -> None:
    path = demo_copy / "study.yaml"
    path.write_text(path.read_text().replace("phase: follow_up, date: 2025-03-01",
                                             "phase: later, date: 2025-03-01"))
    with pytest.raises(ConfigError) as exc:
        Study.load(demo_copy)
    line = _line_of(path, "phase: later")
    assert f"study.yaml:{line}: waves[3].phase:" in str(exc.value)


def test_item_in_two_constructs_is_named(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    text = path.read_text().replace("- {id: mod_safe,", "- {id: trust_other_2,")
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_instrument(path)
    msg = str(exc.value)
    assert "trust_other_2" in msg and "perceptions" in msg and "moderation" in msg


def test_unknown_scale_names_construct_and_item(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    path.write_text(path.read_text().replace("{id: idea_new, scale: agree5",
                                             "{id: idea_new, scale: agree9"))
    with pytest.raises(ConfigError) as exc:
        load_instrument(path)
    assert "construct 'ideas', item 'idea_new': scale 'agree9'" in str(exc.value)


def test_construct_without_items(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    text = path.read_text()
    start = text.index("  ideas:\n")
    end = text.index("renames:")
    path.write_text(text[:start] + "  ideas:\n    output: ideas\n    items: []\n" + text[end:])
    with pytest.raises(ConfigError) as exc:
        load_instrument(path)
    assert "constructs.ideas.items" in str(exc.value)
    assert "at least one item" in str(exc.value)


def test_reverse_key_outside_scale_names_construct_and_item(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    path.write_text(path.read_text().replace("{id: threat_1, scale: agree7, reverse: true",
                                             "{id: threat_1, scale: agree7, reverse: 9"))
    with pytest.raises(ConfigError) as exc:
        load_instrument(path)
    msg = str(exc.value)
    assert "construct 'perceptions', item 'threat_1': reverse key 9" in msg
    assert "agree7" in msg and "1-7" in msg


def test_reverse_key_equal_to_min_plus_max_is_accepted(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    path.write_text(path.read_text().replace("{id: threat_1, scale: agree7, reverse: true",
                                             "{id: threat_1, scale: agree7, reverse: 8"))
    instrument = load_instrument(path)
    assert instrument.items["threat_1"].reverse == 8
