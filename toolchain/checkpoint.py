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

Hostile files (a pickle is anything ``weights_only`` can describe): the payload walk refuses
nesting deeper than ``MAX_NESTING``, integers Python cannot print, and tensors that are not
plain dense CPU tensors backed by their own bytes (a stride-0 view of 8 bytes claiming 40 GB,
sparse, meta or quantized ones) before any tensor is copied; weights must be float16/bfloat16/
float32/float64 of magnitude <= ``MAX_WEIGHT``. The resume section of an unfinished run is
checked against its model and its recorded settings (generator states torch accepts, Adam
states of the parameters' shapes, a schedule of the recorded length and position) before
``mtsnn.resume`` trains anything.
"""

from __future__ import annotations

import hashlib
import io
import math
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
    """A file that is not a readable mtsnn checkpoint (one-line message naming the file).

    Every message goes through ``one_line``: a path or a value from the file holding control
    characters or lone surrogates is printed escaped."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(message, limit=1000), *args)


MAX_WEIGHT = 2.0**64  # far above any trained weight; float32 quantization scales overflow near 2**127
MAX_NESTING = 64  # levels of dicts and lists in a payload (the writer uses 5)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _show(value: Any, limit: int = 80) -> str:
    """A bounded one-line repr of any value from a file (a tensor by its dtype and shape only:
    printing one computes over every element; an integer of 5000 digits has no repr)."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    try:
        return one_line(repr(value), limit)
    except (ValueError, RuntimeError, RecursionError):
        return f"a {type(value).__name__} that cannot be shown"


def _tensor_problem(tensor: torch.Tensor) -> str | None:
    """Why ``tensor`` is not a plain dense CPU tensor backed by its own bytes, or None.

    A pickle can describe a sparse, meta or quantized tensor, or a view whose shape is far
    larger than its storage (stride 0: 8 bytes in the file claiming 40 GB); materialising those
    would crash or allocate without bound, so they are refused before any copy is made."""
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
        return f"a {tensor.layout} {tensor.dtype} tensor on {tensor.device.type}"
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes > tensor.untyped_storage().nbytes():
        return f"a view of shape {list(tensor.shape)} over {tensor.untyped_storage().nbytes()} bytes of storage"
    return None


def _feed(digest, obj: Any, depth: int = 0) -> None:
    """Feed ``obj`` to ``digest`` in a canonical, serializer-independent byte form."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"checkpoint: expected at most {MAX_NESTING} levels of nested dicts and lists, "
                              "found more")
    if isinstance(obj, torch.Tensor):
        problem = _tensor_problem(obj)
        if problem is not None:
            raise CheckpointError(f"checkpoint: expected plain dense CPU tensors, found {problem}")
        tensor = obj.detach().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        odd = next((k for k in obj if k is not None and not isinstance(k, (str, int, float, bytes))), None)
        if odd is not None:
            raise CheckpointError(f"checkpoint: expected dict keys that are plain values, found a {type(odd).__name__}")
        try:
            keys = sorted(obj, key=lambda k: (type(k).__name__, str(k)))
        except ValueError as exc:  # an integer key of more digits than Python converts to text
            raise CheckpointError(f"checkpoint: cannot digest a key ({_first_line(exc)})") from None
        for key in keys:
            digest.update(f"K{type(key).__name__}:{key!s}".encode("utf-8", "surrogatepass"))
            _feed(digest, obj[key], depth + 1)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(digest, item, depth + 1)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        try:
            text = f"V{type(obj).__name__}:{obj!r}"
        except ValueError as exc:  # an integer of more digits than Python converts to text
            raise CheckpointError(f"checkpoint: cannot digest a value ({_first_line(exc)})") from None
        digest.update(text.encode("utf-8", "surrogatepass"))
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
        raise CheckpointError(f"{path}: format: expected {CHECKPOINT_FORMAT!r}, found {_show(found)} "
                              "(not an mtsnn checkpoint)")
    version = payload.get("format_version")
    if type(version) is not int or version not in (1, CHECKPOINT_VERSION):  # not 2.0, True or a tensor
        raise CheckpointError(f"{path}: format_version: expected 1 or {CHECKPOINT_VERSION}, "
                              f"found {_show(version)}")
    try:  # also for version 1: the walk refuses what no checkpoint holds (deep nesting, views, huge integers)
        found = content_digest(payload)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if version >= 2:
        recorded = payload.get(_DIGEST_KEY)
        if recorded != found:
            raise CheckpointError(f"{path}: {_DIGEST_KEY}: expected the digest of the file's contents ({found[:16]}...), "
                                  f"found {_show(recorded, 40)}: the file was modified or corrupted")
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
        if not isinstance(tensor, torch.Tensor) or tensor.dtype not in _FLOAT_DTYPES:
            found = f"a {tensor.dtype} tensor" if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: state_dict.{key}: expected a float tensor, found {found}")
        problem = _tensor_problem(tensor)  # a version 1 file's tensors were not digested
        if problem is not None:
            raise CheckpointError(f"{path}: state_dict.{key}: expected a plain dense CPU tensor, found {problem}")
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"{path}: state_dict.{key}: expected shape {list(shape)}, found {list(tensor.shape)}")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: state_dict.{key}: expected finite values, found NaN or Inf")
        largest = float(tensor.abs().max()) if tensor.numel() else 0.0
        if largest > MAX_WEIGHT:  # the power-of-two quantization scale of 3e38 is inf in float32
            raise CheckpointError(f"{path}: state_dict.{key}: expected magnitudes up to 2**64, found {largest:.3g}")


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
    if payload.get("resume") is not None:
        _check_resume(path, model, payload)
    model.eval()
    return model


_RESUME_KEYS = ("epoch", "optimizer", "scheduler", "generator", "torch_rng", "seconds")
_ADAM_STATE_KEYS = {"step", "exp_avg", "exp_avg_sq"}
_EVOLVING_SCHEDULER_KEYS = {"last_epoch", "_step_count", "_last_lr", "_is_initial", "_get_lr_called_within_step"}


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(a: Any, b: Any) -> bool:
    """``a == b`` with the same types throughout (1 is not True, a tensor is never equal)."""
    if type(a) is not type(b) or isinstance(a, torch.Tensor):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _check_resume(path: Path, model: MTSNN, payload: dict) -> None:
    """The resume section of an unfinished run fits its model and its recorded settings.

    ``mtsnn.resume`` hands these states to torch as they are; a state that does not fit (a
    generator state torch refuses, an optimizer state of other shapes, a schedule of another
    length, an epoch count beyond the run's) would fail half-way through training or continue
    a different run than the one recorded. Checked here, before anything runs."""
    from .train import TrainSettings, TrainState, _scheduler

    resume, training = payload["resume"], payload["training"]
    recorded_fields = [key for key in TrainState.__dataclass_fields__ if key != "history"]  # TrainState.to_dict
    expected_keys = tuple(dict.fromkeys([*_RESUME_KEYS, *recorded_fields]))

    def fail(field: str, expected: str, found: Any) -> CheckpointError:
        """``found``: a description (str) or, wrapped in a tuple, the value found (shown as repr)."""
        text = _show(found[0]) if isinstance(found, tuple) else found
        return CheckpointError(f"{path}: {field}: expected {expected}, found {one_line(text, 80)}")

    missing = [key for key in expected_keys if key not in resume]
    extra = [key for key in resume if key not in expected_keys]
    if missing or extra:
        raise fail("resume", f"the keys {', '.join(expected_keys)}",
                   f"{len(missing)} missing ({', '.join(missing)}) and {len(extra)} unexpected "
                   f"({', '.join(map(str, extra[:3]))})")
    names = [name for name in TrainSettings.__dataclass_fields__ if name != "progress"]
    for name in names:
        if name not in training:
            raise fail(f"training.{name}", "the run's setting", "nothing")
    try:
        settings = TrainSettings(**{name: training[name] for name in names}, progress=False)
    except InputError as exc:
        raise CheckpointError(f"{path}: training: {_first_line(exc)}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{path}: training: expected the run's settings (numbers where numbers belong), "
                              f"found one that is not ({_first_line(exc)})") from None
    epoch = resume["epoch"]
    if not (type(epoch) is int and 1 <= epoch < settings.epochs):
        raise fail("resume.epoch", f"the epochs done of an unfinished run of {settings.epochs}, "
                   f"1..{settings.epochs - 1}", (epoch,))
    if training.get("complete") is not False:
        raise fail("training.complete", "false (the run is unfinished: it has a resume section)",
                   (training.get("complete"),))
    history = training.get("history")
    if not (isinstance(history, list) and len(history) == epoch and all(isinstance(h, dict) for h in history)):
        raise fail("training.history", f"one record per epoch done ({epoch})",
                   f"{len(history)} entries" if isinstance(history, list) else type(history).__name__)
    if not (_is_real(resume["seconds"]) and resume["seconds"] >= 0):
        raise fail("resume.seconds", "a finite number >= 0", (resume["seconds"],))
    for key in ("generator", "torch_rng"):
        state = resume[key]
        if not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1
                and _tensor_problem(state) is None):
            raise fail(f"resume.{key}", "a random generator's state (a uint8 tensor)",
                       f"a {state.dtype} tensor" if isinstance(state, torch.Tensor) else type(state).__name__)
        try:
            torch.Generator().set_state(state.clone())
        except (RuntimeError, TypeError, ValueError) as exc:
            raise fail(f"resume.{key}", "a random generator's state torch accepts", _first_line(exc)) from None

    params = list(model.parameters())
    scheduler = resume["scheduler"]
    total = scheduler.get("total_steps") if isinstance(scheduler, dict) else None
    if not (type(total) is int and total >= settings.epochs and total % settings.epochs == 0):
        raise fail("resume.scheduler.total_steps", f"a whole number of steps per epoch for {settings.epochs} epochs",
                   (total,) if isinstance(scheduler, dict) else type(scheduler).__name__)
    steps_per_epoch = total // settings.epochs
    fresh_optimizer = torch.optim.Adam([torch.zeros(1)], lr=settings.lr, weight_decay=settings.weight_decay)
    fresh_scheduler = _scheduler(fresh_optimizer, settings, steps_per_epoch)
    fresh = fresh_scheduler.state_dict()
    for key, value in scheduler.items():
        if key not in fresh:  # torch loads a schedule by updating its __dict__: nothing may shadow a method
            if (not isinstance(key, str) or key == "optimizer" or hasattr(type(fresh_scheduler), key)
                    or not (value is None or isinstance(value, (bool, int, float, str)))):
                raise fail("resume.scheduler", f"the keys of torch's {type(fresh_scheduler).__name__} schedule",
                           f"the key {one_line(repr(key), 40)}")
            continue  # a plain value another torch version records
        if key not in _EVOLVING_SCHEDULER_KEYS and not _same(value, fresh[key]):
            raise fail(f"resume.scheduler.{key}", f"{fresh[key]!r} (the schedule of the recorded settings)", (value,))
    done = epoch * steps_per_epoch
    if scheduler.get("last_epoch") != done or type(scheduler.get("last_epoch")) is not int:
        raise fail("resume.scheduler.last_epoch", f"{done} (steps of {epoch} epochs)", (scheduler.get("last_epoch"),))
    if "_step_count" in scheduler and not _same(scheduler["_step_count"], done + 1):
        raise fail("resume.scheduler._step_count", str(done + 1), (scheduler["_step_count"],))
    last_lr = scheduler.get("_last_lr")
    if last_lr is not None and not (isinstance(last_lr, list) and len(last_lr) == 1 and _is_real(last_lr[0])):
        raise fail("resume.scheduler._last_lr", "a list of one finite number", (last_lr,))
    for key in ("_is_initial", "_get_lr_called_within_step"):
        if key in scheduler and not isinstance(scheduler[key], bool):
            raise fail(f"resume.scheduler.{key}", "true or false", (scheduler[key],))

    optimizer = resume["optimizer"]
    if not (isinstance(optimizer, dict) and set(optimizer) == {"state", "param_groups"}):
        raise fail("resume.optimizer", "an Adam state (state, param_groups)",
                   sorted(map(str, optimizer)) if isinstance(optimizer, dict) else type(optimizer).__name__)
    groups = optimizer["param_groups"]
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)):
        raise fail("resume.optimizer.param_groups", "one parameter group", (groups,))
    group, fresh_group = groups[0], fresh_optimizer.param_groups[0]
    for key, value in group.items():
        field = f"resume.optimizer.param_groups[0].{one_line(key, 40)}"
        if key not in fresh_group:
            if value is None or isinstance(value, (bool, int, float, str)):
                continue  # a flag another torch version records
            raise fail(field, "a key of torch's Adam parameter group", "an unknown key")
        reference = fresh_group[key]
        if key == "params":
            if not _same(value, list(range(len(params)))):
                raise fail(field, f"the model's {len(params)} parameters, 0..{len(params) - 1}", (value,))
        elif key == "betas":
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_real(b) and 0 <= b < 1
                                                                                 for b in value)):
                raise fail(field, "two finite numbers in [0, 1)", (value,))
        elif key == "lr":
            if not (_is_real(value) and 0 <= value <= settings.lr):
                raise fail(field, f"a finite number 0..{settings.lr:g} (the peak learning rate)", (value,))
        elif not _same(value, reference) and not (_is_real(value) and _is_real(reference) and value == reference):
            raise fail(field, f"{reference!r} (from the recorded settings)", (value,))
    for key in ("lr", "betas", "eps", "weight_decay", "initial_lr", "max_lr", "min_lr"):
        if key in fresh_group and key not in group:
            raise fail(f"resume.optimizer.param_groups[0].{key}", "a value", "nothing")
    state = optimizer["state"]
    if not isinstance(state, dict) or len(state) != len(params):  # every parameter has had a step
        raise fail("resume.optimizer.state", f"an Adam state for each of the model's {len(params)} parameters",
                   f"{len(state)} states" if isinstance(state, dict) else type(state).__name__)
    for index, entry in state.items():
        field = f"resume.optimizer.state[{one_line(repr(index), 20)}]"
        if type(index) is not int or not 0 <= index < len(params):
            raise fail(field, f"a parameter index 0..{len(params) - 1}", "another key")
        if not (isinstance(entry, dict) and set(entry) == _ADAM_STATE_KEYS):
            raise fail(field, "the keys " + ", ".join(sorted(_ADAM_STATE_KEYS)),
                       sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__)
        step = entry["step"]
        if not (isinstance(step, torch.Tensor) and step.dtype in _FLOAT_DTYPES and step.dim() == 0
                and _tensor_problem(step) is None and float(step) == done):
            raise fail(f"{field}.step", f"a scalar float tensor holding {done} (steps of {epoch} epochs)", (step,))
        for key in ("exp_avg", "exp_avg_sq"):
            moment = entry[key]
            if not (isinstance(moment, torch.Tensor) and moment.dtype in _FLOAT_DTYPES
                    and moment.shape == params[index].shape and _tensor_problem(moment) is None
                    and bool(torch.isfinite(moment).all()) and (key == "exp_avg" or bool((moment >= 0).all()))):
                found = (f"a {moment.dtype} tensor of shape {list(moment.shape)}"
                         if isinstance(moment, torch.Tensor) else type(moment).__name__)
                raise fail(f"{field}.{key}", f"finite float values{' >= 0' if key == 'exp_avg_sq' else ''} of "
                           f"shape {list(params[index].shape)}", found)


def load_checkpoint(path: str | os.PathLike, *, bits: int | None = None) -> tuple[MTSNN, dict]:
    """Rebuild the model (optionally at other weight ``bits``: post-training re-quantization).

    Returns (model in eval mode, payload). Raises CheckpointError for anything unreadable.
    """
    checkpoint = read_checkpoint(path)
    return model_from_payload(path, checkpoint.payload, bits=bits), checkpoint.payload

