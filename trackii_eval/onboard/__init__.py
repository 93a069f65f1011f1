"""Onboarding a study of one's own.

`init` drafts the configuration from exports; `check` dry-runs it.
"""
