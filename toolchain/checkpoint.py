"""mtsnn checkpoints: everything needed to rebuild the model, loadable with weights_only=True.

Layout (a dict of plain Python values and tensors):
    format: "mtsnn-checkpoint", format_version: 1,
    config: ModelConfig as a dict (arch, input_shape, n_classes, timesteps, smax, bits, acc_bits,
            tau, theta, surrogate {curve, a, b}, bias),
    encoder: {"kind": "rate_count", "smax": Smax},
    state_dict: the model's tensors,
    training: {dataset, epochs, batch_size, lr, seed, loss, test_accuracy, history [...], ...}
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from mtsnn.hw_model.coredesc import atomic_write_bytes
from .model import MTSNN, ModelConfig

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "mtsnn-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable mtsnn checkpoint (one-line message naming the file)."""


def save_checkpoint(path: str | os.PathLike, model: MTSNN, training: dict) -> Path:
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "encoder": {"kind": "rate_count", "smax": model.config.smax},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "training": training,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_payload(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: not found: expected an mtsnn checkpoint (.pt) written by mtsnn-train")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an untrusted file: torch.load raises many types on garbage
        first_line = _first_line(exc)
        raise CheckpointError(f"{path}: not an mtsnn checkpoint (cannot be loaded with weights_only=True: {first_line[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format: expected {CHECKPOINT_FORMAT!r}, found {found!r} (not an mtsnn checkpoint)")
    version = payload.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: format_version: expected {CHECKPOINT_VERSION}, found {version!r}")
    for key in ("config", "state_dict", "training"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: {key}: expected a dict, found {type(payload.get(key)).__name__}")
    return payload


def load_checkpoint(path: str | os.PathLike, *, bits: int | None = None) -> tuple[MTSNN, dict]:
    """Rebuild the model (optionally at other weight ``bits``: post-training re-quantization).

    Returns (model in eval mode, payload). Raises CheckpointError for anything unreadable.
    """
    path = Path(path)
    payload = _read_payload(path)
    config_dict = dict(payload["config"])
    if bits is not None:
        config_dict["bits"] = bits
    try:
        config = ModelConfig(**config_dict)
        model = MTSNN(config)
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        first_line = _first_line(exc)
        raise CheckpointError(f"{path}: config/state_dict: cannot rebuild the model: {first_line[:200]}") from None
    model.eval()
    return model, payload
