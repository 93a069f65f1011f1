"""Reports: self-contained HTML impact reports built from stored results."""

from .build import render_report, suppress_count

__all__ = ["render_report", "suppress_count"]
