"""What the privacy commands need of a study: its context and its store.

A structural type, so that the privacy package does not import the :class:`~trackii_eval.Study`
façade (dependencies point one way: the façade and the CLI call the packages, not back).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Instrument, StudyConfig
    from ..store import Store


class StudyHandle(Protocol):
    """A loaded study with its store (:class:`trackii_eval.Study` is one)."""

    @property
    def root(self) -> Path: ...  # the study folder

    @property
    def out(self) -> Path: ...  # the output folder

    @property
    def config(self) -> StudyConfig: ...

    @property
    def instrument(self) -> Instrument: ...

    @property
    def store(self) -> Store: ...

    @property
    def store_path(self) -> Path: ...
