"""Errors of the export package."""

__all__ = ["ExportError"]


class ExportError(ValueError):
    """A user-facing export/validation problem (one line naming the file and what was expected)."""
