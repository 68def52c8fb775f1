"""The placement section of a core description (written by the mapper; see hw_model.mapper)."""

from __future__ import annotations

__all__ = ["check_placement"]


def check_placement(placement: dict, network) -> None:
    """Raise ValueError naming the field when ``placement`` does not fit ``network``."""
    if not isinstance(placement.get("target"), str):
        raise ValueError(f"target: expected a target name, found {placement.get('target')!r}")
    if not isinstance(placement.get("cores"), list):
        raise ValueError(f"cores: expected a list, found {type(placement.get('cores')).__name__}")
