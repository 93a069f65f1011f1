"""Privacy around everything the toolkit writes: output audit, key rotation, de-identified
microdata export, owner-only files at rest and passphrase encryption of exports.

Cell suppression itself (primary and complementary) lives in :mod:`trackii_eval.disclosure`;
this package checks what was written, and protects what is kept.
"""

from __future__ import annotations

from .at_rest import owner_only_umask, private_dir, private_file
from .audit import AuditResult, Finding, Needles, audit_path, study_needles
from .microdata import ExportResult, export_microdata, k_anonymity
from .rekey import RekeyResult, rekey_store

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
    "study_needles",
]
