"""Where training and evaluation run: ``--device auto|cpu|cuda[:N]``.

``resolve_device`` turns the user's word into a ``torch.device`` (or one ``InputError`` line,
exit 2: never a traceback when CUDA is asked for and absent). ``auto`` is CUDA when torch sees
a GPU, else the CPU.

``using_device(device)`` sets the device for code that builds its model itself and knows
nothing of devices (export and validate load the checkpoint on the CPU): inside it,
``MTSNN.integer_forward`` and ``toolchain.train.predict`` compute on that device and hand back
CPU tensors, so their callers see exactly what the CPU would have given them (the integer
forward is exact on every device: the same integers).
"""

from __future__ import annotations

import contextlib
import contextvars
import re

import torch

from mtsnn.hw_model.errors import InputError

__all__ = ["DEVICE_CHOICES", "resolve_device", "using_device", "current_device", "describe_device"]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"(auto|cpu|cuda)(?::(\d{1,4}))?")
_current: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("mtsnn_device", default=None)


def _cuda_count() -> int:
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver is "no CUDA", never a traceback
        return 0


def resolve_device(spec: str | torch.device | None = "auto", option: str = "--device") -> torch.device:
    """``auto`` (or None), ``cpu``, ``cuda`` or ``cuda:N`` -> a usable ``torch.device``."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec is None:
        spec = "auto"
    match = _DEVICE.fullmatch(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise InputError(f"{option}: expected {DEVICE_CHOICES}, found {spec!r}")
    kind, index = match.group(1), match.group(2)
    count = _cuda_count()
    if kind == "auto":
        return torch.device("cuda", 0) if count else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if count == 0:
        build = torch.__version__ + ("" if torch.version.cuda else ", a build without CUDA")
        raise InputError(f"{option}: expected a CUDA device, found none (torch {build}); use --device cpu or auto")
    number = int(index) if index is not None else 0
    if number >= count:
        raise InputError(f"{option}: expected cuda:0..cuda:{count - 1}, found {spec!r}")
    return torch.device("cuda", number)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def current_device() -> torch.device | None:
    """The device set by the innermost ``using_device``, else None (compute where the data is)."""
    return _current.get()


@contextlib.contextmanager
def using_device(device: torch.device | None):
    token = _current.set(device)
    try:
        yield device
    finally:
        _current.reset(token)
