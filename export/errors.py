"""Errors of the export package."""

from mtsnn.hw_model.errors import InputError

__all__ = ["ExportError"]


class ExportError(InputError):
    """A user-facing export/validation problem (one line naming the file and what was expected)."""
