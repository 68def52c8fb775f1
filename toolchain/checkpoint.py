"""mtsnn checkpoints: everything needed to rebuild the model, loadable with weights_only=True.

Layout (a dict of plain Python values and tensors, ``format_version`` 2)::

    format: "mtsnn-checkpoint", format_version: 2,
    config: ModelConfig as a dict (arch, input_shape, n_classes, timesteps, smax, bits, acc_bits,
            tau, theta, surrogate {curve, a, b}, bias),
    encoder: {"kind": "rate_count", "smax": Smax},
    state_dict: the model's tensors,
    training: {dataset, epochs, batch_size, lr, seed, loss, test_accuracy, history [...],
               complete: bool, ...},
    resume: None, or (an unfinished run) TrainState.to_dict(): optimizer, scheduler and
            generator states, epochs done, seconds,
    content_sha256: SHA-256 of a canonical byte stream of everything above (``content_digest``).

Integrity: the digest is recomputed on load and a mismatch is refused (a flipped byte that
still unpickles would otherwise change weights silently). Version 1 files (no digest) still load.
Before a model is built, the config is type- and range-checked and the state dict's real
tensors are compared with the shapes the config implies, so a small file cannot make mtsnn
allocate a model it does not contain; non-finite weights are refused.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtsnn.hw_model.errors import InputError, one_line
from mtsnn.hw_model.fileio import atomic_write_bytes, sha256_file
from .model import MTSNN, ModelConfig, expected_state_shapes

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "CheckpointError",
    "content_digest",
    "save_checkpoint",
    "CheckpointFile",
    "read_checkpoint",
    "read_payload",
    "load_checkpoint",
    "model_from_payload",
    "checkpoint_sha256",
]

CHECKPOINT_FORMAT = "mtsnn-checkpoint"
CHECKPOINT_VERSION = 2
MAX_CHECKPOINT_BYTES = 4 << 30  # 4 GiB: far above any model here; a larger file is refused unread
_DIGEST_KEY = "content_sha256"


class CheckpointError(InputError):
    """A file that is not a readable mtsnn checkpoint (one-line message naming the file)."""


def _feed(digest, obj: Any) -> None:
    """Feed ``obj`` to ``digest`` in a canonical, serializer-independent byte form."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            digest.update(f"K{type(key).__name__}:{key!s}".encode())
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(digest, item)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        digest.update(f"V{type(obj).__name__}:{obj!r}".encode())
    else:
        raise CheckpointError(f"checkpoint: cannot digest a {type(obj).__name__}")


def content_digest(payload: dict) -> str:
    """SHA-256 of every entry of ``payload`` except the digest itself."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != _DIGEST_KEY})
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: MTSNN, training: dict, resume: dict | None = None) -> Path:
    """Write the checkpoint atomically; ``resume`` (a ``TrainState.to_dict()``) marks an unfinished run."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "encoder": {"kind": "rate_count", "smax": model.config.smax},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "training": training,
        "resume": resume,
    }
    payload[_DIGEST_KEY] = content_digest(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the checkpoint file's bytes (what an export records as its origin)."""
    return sha256_file(path)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name), for one-line errors."""
    text = str(exc).strip()
    return one_line(text.splitlines()[0] if text else type(exc).__name__, 160)


@dataclass(frozen=True, eq=False)
class CheckpointFile:
    """A checked checkpoint: its path, payload and the SHA-256 of the exact bytes it was read from."""

    path: Path
    payload: dict
    sha256: str

    @property
    def training(self) -> dict:
        return self.payload["training"]

    @property
    def resume(self) -> dict | None:
        return self.payload.get("resume")


def read_checkpoint(path: str | os.PathLike) -> CheckpointFile:
    """Read a checkpoint once: its bytes are hashed and unpickled (weights_only) from one read."""
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "nothing"
        raise CheckpointError(f"{path}: not found: expected an mtsnn checkpoint (.pt) written by mtsnn-train, "
                              f"found {what}")
    try:
        size = path.stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path}: size: expected at most {MAX_CHECKPOINT_BYTES} bytes, found {size}")
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {one_line(exc.strerror or exc)}") from None
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # an untrusted file: torch.load raises many types on garbage
        raise CheckpointError(f"{path}: not an mtsnn checkpoint (cannot be loaded with weights_only=True: "
                              f"{_first_line(exc)})") from None
    _check_payload(path, payload)
    return CheckpointFile(path=path, payload=payload, sha256=hashlib.sha256(data).hexdigest())


def read_payload(path: str | os.PathLike) -> dict:
    """The checked payload of a checkpoint file (format, version, digest, section types)."""
    return read_checkpoint(path).payload


def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format: expected {CHECKPOINT_FORMAT!r}, found {one_line(repr(found), 80)} "
                              "(not an mtsnn checkpoint)")
    version = payload.get("format_version")
    if version not in (1, CHECKPOINT_VERSION) or isinstance(version, bool):
        raise CheckpointError(f"{path}: format_version: expected 1 or {CHECKPOINT_VERSION}, "
                              f"found {one_line(repr(version), 80)}")
    if version >= 2:
        recorded = payload.get(_DIGEST_KEY)
        try:
            found = content_digest(payload)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if recorded != found:
            raise CheckpointError(f"{path}: {_DIGEST_KEY}: expected the digest of the file's contents ({found[:16]}...), "
                                  f"found {one_line(repr(recorded), 40)}: the file was modified or corrupted")
    for key in ("config", "state_dict", "training"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: {key}: expected a dict, found {type(payload.get(key)).__name__}")
    if payload.get("resume") is not None and not isinstance(payload["resume"], dict):
        raise CheckpointError(f"{path}: resume: expected a dict or None, found {type(payload['resume']).__name__}")


def _check_state_dict(path: Path, config: ModelConfig, state: dict) -> None:
    """The state dict holds exactly the finite tensors ``config`` implies (before any allocation)."""
    expected = expected_state_shapes(config)
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise CheckpointError(f"{path}: state_dict: expected the tensors of arch {config.arch!r}, found "
                              f"{len(missing)} missing ({one_line(', '.join(missing[:3]), 120)}) and "
                              f"{len(extra)} unexpected ({one_line(', '.join(map(str, extra[:3])), 120)})")
    for key, shape in expected.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise CheckpointError(f"{path}: state_dict.{key}: expected a float tensor, found {type(tensor).__name__}")
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"{path}: state_dict.{key}: expected shape {list(shape)}, found {list(tensor.shape)}")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: state_dict.{key}: expected finite values, found NaN or Inf")


def model_from_payload(path: str | os.PathLike, payload: dict, *, bits: int | None = None) -> MTSNN:
    """Rebuild the model a checked payload describes (eval mode); optionally at other ``bits``."""
    path = Path(path)
    config_dict = dict(payload["config"])
    if bits is not None:
        config_dict["bits"] = bits
    try:
        config = ModelConfig(**config_dict)
    except InputError as exc:
        raise CheckpointError(f"{path}: config.{exc}") from None
    except TypeError as exc:
        raise CheckpointError(f"{path}: config: expected the fields of ModelConfig, found {_first_line(exc)}") from None
    _check_state_dict(path, config, payload["state_dict"])
    try:
        model = MTSNN(config)
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path}: config/state_dict: cannot rebuild the model: {_first_line(exc)}") from None
    model.eval()
    return model


def load_checkpoint(path: str | os.PathLike, *, bits: int | None = None) -> tuple[MTSNN, dict]:
    """Rebuild the model (optionally at other weight ``bits``: post-training re-quantization).

    Returns (model in eval mode, payload). Raises CheckpointError for anything unreadable.
    """
    checkpoint = read_checkpoint(path)
    return model_from_payload(path, checkpoint.payload, bits=bits), checkpoint.payload

