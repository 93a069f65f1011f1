"""Tests of issue 9: a study of one's own from one's own exports."""

import importlib.util
from pathlib import Path

_GENERATOR = Path(__file__).resolve().parents[2] / "surveys" / "onboarding" / "generate.py"
_spec = importlib.util.spec_from_file_location("onboarding_generate", _GENERATOR)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
write_exports = _module.write_exports
