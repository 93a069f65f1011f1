"""Ingest: wave exports -> validated, pseudonymized, linked rows in the store."""

from .core import FileOutcome, IngestSummary, ingest_study
from .validate import PROBLEM_COLUMNS, validate_wave

__all__ = ["PROBLEM_COLUMNS", "FileOutcome", "IngestSummary", "ingest_study", "validate_wave"]
