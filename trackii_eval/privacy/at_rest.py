"""Files at rest readable by their owner only: mode 0o600 for files, 0o700 for directories.

The store holds pseudonymized answers about people whose safety depends on not being
identified; reports and exports hold counts about them. On a shared machine the default umask
(usually 0o022) would make all of them world-readable. The command line therefore creates
everything under an owner-only umask, and the library tightens the files it writes itself.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "OWNER_ONLY_UMASK",
    "group_or_other_access",
    "owner_only_umask",
    "private_dir",
    "private_file",
    "set_owner_only_umask",
]

#: Umask under which new files are 0o600 and new directories 0o700.
OWNER_ONLY_UMASK = 0o077


def set_owner_only_umask() -> int:
    """Make every file and directory this process creates from now on owner-only.

    Returns
    -------
    int
        The previous umask (to restore it if needed).

    Notes
    -----
    Covers files the toolkit does not name itself, such as DuckDB's write-ahead log, which
    holds answers while a write is in progress. POSIX only; a no-op elsewhere.
    """
    if os.name != "posix":
        return 0
    previous = os.umask(OWNER_ONLY_UMASK)
    os.umask(previous | OWNER_ONLY_UMASK)  # only ever tighten
    return previous


@contextmanager
def owner_only_umask() -> Iterator[None]:
    """Context manager: an owner-only umask inside, the previous one restored after."""
    if os.name != "posix":
        yield
        return
    previous = os.umask(OWNER_ONLY_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0o700; return it.

    Directories that already exist keep their mode: the user chose it (a shared project folder,
    ``/tmp``), and changing it could lock other people out of their own files.
    """
    target = Path(path)
    missing = []
    for parent in [target, *target.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        if os.name == "posix":
            os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
    return target


def private_file(path: str | os.PathLike[str]) -> Path:
    """Set an existing file we wrote to mode 0o600 (owner read/write only); return it."""
    target = Path(path)
    if os.name == "posix" and target.exists():
        os.chmod(target, 0o600)
    return target


def group_or_other_access(path: str | os.PathLike[str]) -> int:
    """Permission bits of ``path`` that give group or others any access (0 when private)."""
    if os.name != "posix":
        return 0
    return stat.S_IMODE(Path(path).stat().st_mode) & 0o077
