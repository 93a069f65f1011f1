"""Run the optimiser with single-threaded BLAS.

Every operation inside a criterion evaluation is on tiny matrices (q x q, p x p, a few hundred
patterns); a multi-threaded BLAS only adds hand-over costs there, and on a busy machine its
spinning threads made bootstrap refits ~5x slower in our measurements. threadpoolctl is used
when it is installed (it comes with scikit-learn); otherwise nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["single_threaded_blas"]

_controller: Any = None
_available = True


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Context manager limiting BLAS to one thread (a no-op without threadpoolctl)."""
    global _controller, _available
    if _available and _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except Exception:  # missing or broken threadpoolctl: run with the default threads
            _available = False
    if not _available or _controller is None:
        yield
        return
    with _controller.limit(limits=1, user_api="blas"):
        yield
