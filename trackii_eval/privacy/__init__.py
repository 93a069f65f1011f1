"""Privacy around everything the toolkit writes: output audit, key rotation, de-identified
microdata export, owner-only files at rest and passphrase encryption of exports.

Cell suppression itself (primary and complementary) lives in :mod:`trackii_eval.disclosure`;
this package checks what was written, and protects what is kept. Names are imported on first
use, so that the command line (which sets an owner-only umask from :mod:`.at_rest`) starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AuditResult",
    "ExportResult",
    "Finding",
    "Needles",
    "RekeyResult",
    "audit_path",
    "export_microdata",
    "k_anonymity",
    "owner_only_umask",
    "private_dir",
    "private_file",
    "rekey_store",
    "set_owner_only_umask",
    "study_needles",
]

_EXPORTS = {
    "AuditResult": ".audit", "Finding": ".audit", "Needles": ".audit", "audit_path": ".audit",
    "study_needles": ".audit", "ExportResult": ".microdata", "export_microdata": ".microdata",
    "k_anonymity": ".microdata", "RekeyResult": ".rekey", "rekey_store": ".rekey",
    "owner_only_umask": ".at_rest", "private_dir": ".at_rest", "private_file": ".at_rest",
    "set_owner_only_umask": ".at_rest",
}

if TYPE_CHECKING:
    from .at_rest import owner_only_umask, private_dir, private_file, set_owner_only_umask
    from .audit import AuditResult, Finding, Needles, audit_path, study_needles
    from .microdata import ExportResult, export_microdata, k_anonymity
    from .rekey import RekeyResult, rekey_store


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
