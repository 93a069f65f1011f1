"""Configuration errors point at the offending entry's own line, not at the top of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackii_eval import Study
from trackii_eval.config import load_instrument
from trackii_eval.errors import ConfigError


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_item_in_two_constructs_is_reported_at_the_second_item(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    path.write_text(path.read_text().replace("- {id: mod_safe,", "- {id: trust_other_2,"))
    with pytest.raises(ConfigError) as exc:
        load_instrument(path)
    line = _line_of(path, "- {id: trust_other_2, scale: agree5")
    assert f"instrument.yaml:{line}: constructs.moderation.items[1]: item 'trust_other_2'" \
        in str(exc.value)


def test_unknown_scale_and_bad_reverse_key_at_the_item(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    path.write_text(path.read_text().replace("{id: idea_new, scale: agree5",
                                             "{id: idea_new, scale: agree9"))
    with pytest.raises(ConfigError) as exc:
        load_instrument(path)
    assert f"instrument.yaml:{_line_of(path, 'agree9')}: constructs.ideas.items[1]:" in \
        str(exc.value)


def test_bad_rename_at_its_line_and_program_end_wave_at_its_line(demo_copy: Path) -> None:
    path = demo_copy / "instrument.yaml"
    path.write_text(path.read_text().replace("4: {trust_other_a: trust_other_1}",
                                             "4: {trust_other_a: trust_other_9}"))
    with pytest.raises(ConfigError) as exc:
        load_instrument(path)
    line = _line_of(path, "trust_other_9")
    assert f"instrument.yaml:{line}: renames[4].trust_other_a:" in str(exc.value)
    assert line > 2
    study = demo_copy / "study.yaml"
    path.write_text(path.read_text().replace("trust_other_9", "trust_other_1"))
    study.write_text(study.read_text().replace("program_end_wave: 2", "program_end_wave: 7"))
    with pytest.raises(ConfigError) as exc:
        Study.load(demo_copy)
    assert f"study.yaml:{_line_of(study, 'program_end_wave: 7')}: program_end_wave:" in \
        str(exc.value)
