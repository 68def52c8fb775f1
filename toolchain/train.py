"""Training and evaluation loops (Adam, cross-entropy on the logits or MSE on spike rates)."""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mtsnn.hw_model.errors import InputError

from .device import current_device
from .model import MTSNN, ConfigError, ModelConfig

__all__ = ["TrainSettings", "EpochRecord", "TrainState", "TrainResult", "seed_everything", "train_model",
           "evaluate_model", "predict"]


MAX_AUGMENT = 64  # pixels of random shift: more than any image here is wide; bounds the padding it allocates


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    loss: str = "ce"  # "ce": cross-entropy on the logits; "mse": MSE of logits/T vs one-hot (paper)
    weight_decay: float = 0.0
    augment: int = 0  # random translation of each training image by up to this many pixels
    progress: bool = True

    def __post_init__(self) -> None:
        for name, value in (("epochs", self.epochs), ("batch-size", self.batch_size), ("seed", self.seed),
                            ("augment", self.augment)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"--{name}: expected an integer, found {value!r}")
        for name, value in (("epochs", self.epochs), ("batch-size", self.batch_size)):
            if value < 1:
                raise ConfigError(f"--{name}: expected an integer >= 1, found {value}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr: expected a finite number > 0, found {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay: expected a finite number >= 0, found {self.weight_decay!r}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed: expected an integer 0..4294967295, found {self.seed}")
        if not 0 <= self.augment <= MAX_AUGMENT:
            raise ConfigError(f"--augment: expected 0..{MAX_AUGMENT} pixels, found {self.augment}")
        if self.loss not in ("ce", "mse"):
            raise ConfigError(f"--loss: expected 'ce' or 'mse', found {self.loss!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def shift_images(images: torch.Tensor, offsets: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate image i by (offsets[i] - max_shift) pixels (offsets in 0..2*max_shift), filling
    with zeros; runs on the images' device (offsets must be there too)."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (max_shift,) * 4)
    rows = (offsets[:, 0, None] + torch.arange(h, device=device))[:, :, None].expand(n, h, w)
    cols = (offsets[:, 1, None] + torch.arange(w, device=device))[:, None, :].expand(n, h, w)
    batch = torch.arange(n, device=device)[:, None, None].expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random (dy, dx) in -max_shift..max_shift, filling with zeros."""
    if max_shift <= 0:
        return images
    offsets = torch.randint(0, 2 * max_shift + 1, (images.shape[0], 2), generator=generator)
    return shift_images(images, offsets.to(images.device), max_shift)


def _loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    return F.mse_loss(logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype))


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _predict_tensor(model: MTSNN, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted classes of images already on the model's device, left there (no host read)."""
    out = [model.integer_forward(images[start : start + batch_size]).logits.argmax(dim=1)
           for start in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64, device=images.device)


def predict(model: MTSNN, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes (first index of the maximum integer logit), computed on the model's
    device, or on the device of an enclosing ``toolchain.device.using_device``."""
    model.eval()
    with torch.no_grad(), model.placed_on(current_device()):
        device = model_device(model)
        out = [_predict_tensor(model, torch.tensor(images[start : start + batch_size]).to(device), batch_size)
               for start in range(0, len(images), batch_size)]
        return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.int64)


def evaluate_model(model: MTSNN, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((predict(model, images, batch_size) == labels).mean())


def _correct_count(model: MTSNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """How many of ``images`` (on the model's device) are classified right, as a device tensor."""
    model.eval()
    with torch.no_grad():
        return (_predict_tensor(model, images, batch_size) == labels).sum()


def _evaluate_tensors(model: MTSNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Accuracy on a test set held on the model's device (moved there once per run)."""
    if len(labels) == 0:
        return float("nan")
    return int(_correct_count(model, images, labels, batch_size)) / len(labels)


@dataclass
class EpochRecord:
    """One finished epoch: what the epoch line prints and the history keeps."""

    epoch: int
    epochs: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    epoch_seconds: float  # this epoch alone (training + test evaluation)
    total_seconds: float  # since the run started, across resumes

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "loss": self.loss, "train_accuracy": self.train_accuracy,
                "test_accuracy": self.test_accuracy, "epoch_seconds": self.epoch_seconds,
                "seconds": self.total_seconds}


@dataclass
class TrainState:
    """Everything beyond the weights that continuing a run bit for bit needs.

    ``optimizer`` / ``scheduler`` are their ``state_dict()``s; ``generator`` the data-order and
    augmentation generator's state; ``torch_rng`` the global CPU generator's. All tensors and
    plain values, so a checkpoint holding them still loads with ``weights_only=True``.
    """

    epoch: int  # epochs completed
    optimizer: dict
    scheduler: dict
    generator: torch.Tensor
    torch_rng: torch.Tensor
    seconds: float
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "generator": self.generator, "torch_rng": self.torch_rng, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict, history: list) -> "TrainState":
        return cls(epoch=int(d["epoch"]), optimizer=d["optimizer"], scheduler=d["scheduler"],
                   generator=d["generator"], torch_rng=d["torch_rng"], seconds=float(d["seconds"]),
                   history=list(history))


@dataclass
class TrainResult:
    model: MTSNN
    test_accuracy: float
    history: list = field(default_factory=list)
    seconds: float = 0.0


class TrainingDiverged(InputError):
    """The weights or the loss became NaN or infinite: the settings drive training off the rails."""


def _raise_if_diverged(model, epoch: int, step: int, cause, loss=None) -> None:
    """Raise ``TrainingDiverged`` (one line naming the likely settings) when the loss or a
    parameter is no longer finite; otherwise return (and the caller re-raises ``cause``)."""
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    if loss is not None:
        finite = finite and bool(torch.isfinite(loss))
    if not finite:
        raise TrainingDiverged(
            f"training diverged at epoch {epoch}, step {step + 1}: the weights or the loss are no longer finite "
            "(expected finite values: lower --lr, or the surrogate's --a / --b)"
            + (f" [{type(cause).__name__}]" if cause is not None else "")) from None


def _check_schedule(resume, settings: TrainSettings, steps_per_epoch: int, samples: int) -> None:
    """The recorded one-cycle schedule must be the one this data set and batch size give: a
    different one would crash part-way or silently train another run."""
    recorded = resume.scheduler.get("total_steps") if isinstance(resume.scheduler, dict) else None
    expected = settings.epochs * steps_per_epoch
    if recorded != expected:
        raise ConfigError(f"resume.scheduler.total_steps: expected {expected} ({settings.epochs} epochs x "
                          f"{steps_per_epoch} steps of batch size {settings.batch_size} over {samples} training "
                          f"samples), found {recorded!r}: resume with the run's data set and batch size")


def _scheduler(optimizer, settings: TrainSettings, steps_per_epoch: int):
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )


COMPILE_CHOICES = ("auto", "on", "off")
# "auto" compiles when a run steps at least this many neurons (neurons x T x samples x epochs): about
# a minute of unfused neuron work on 2 CPU cores, against 5-40 s of compilation
AUTO_COMPILE_NEURON_STEPS = 2e9


def use_fused_kernels(choice, model: MTSNN, samples: int) -> bool:
    """Whether ``--compile choice`` runs the fused kernels for ``samples`` sample-epochs of ``model``."""
    if choice in (True, False):
        return bool(choice)
    if choice not in COMPILE_CHOICES:
        raise ConfigError(f"--compile: expected one of {', '.join(COMPILE_CHOICES)}, found {choice!r}")
    if choice != "auto":
        return choice == "on"
    neurons = sum(math.prod(out_shape) for _, _, out_shape in model.shapes[:-1])
    return model.config.quantized and neurons * model.config.timesteps * samples >= AUTO_COMPILE_NEURON_STEPS


def _to_cpu(obj):
    """A state dict with every tensor on the CPU (a checkpoint written on a GPU loads anywhere)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


def _device_tensor(data, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A split's images or labels as a tensor on ``device``: on the CPU the split's own memory
    (no copy: the splits are read-only arrays and training only ever reads them), else one copy."""
    array = data if isinstance(data, np.ndarray) else np.asarray(data)
    with warnings.catch_warnings():  # torch warns about sharing a read-only array; nothing writes to it
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.as_tensor(array)
    return tensor.to(device=device, dtype=dtype or tensor.dtype)


def train_model(config: ModelConfig, dataset, settings: TrainSettings, init_state: dict | None = None, *,
                resume: TrainState | None = None, model_state: dict | None = None,
                on_epoch: Callable[[MTSNN, TrainState, EpochRecord], None] | None = None,
                device: torch.device | str | None = None, dist=None, compile: str = "off",
                flip: bool = False) -> TrainResult:
    """Train on dataset.train, report dataset.test accuracy after every epoch (integer forward).

    ``init_state``: a state dict to start from (e.g. a float baseline's, for QAT fine-tuning).
    ``resume`` + ``model_state``: continue a run from the end of epoch ``resume.epoch``; with the
    same seed and thread count the result is bit-identical to a run that was never interrupted.
    ``on_epoch(model, state, record)`` is called after every epoch (the caller saves a resumable
    checkpoint and prints the epoch line); in a distributed run, on rank 0 only.
    ``device``: where the model, the data and every step live (default: the CPU). The training
    and test sets move to it once; a step reads nothing back to the host (the loss and the
    accuracy accumulate on the device and are read for the progress bar every 25 steps and at
    the end of the epoch); the data order and the augmentation shifts of an epoch are drawn on
    the CPU generator at its start and moved in one copy each.
    ``dist``: a ``toolchain.distributed.DistContext`` for data-parallel training (DDP): every rank
    draws the same epoch order and takes its own shard of it (the DistributedSampler's rule);
    the gradients are averaged by DDP; loss, accuracy and the test accuracy are reduced.
    ``compile``: "on" runs the neurons (and Brevitas's weight quantizer) through the fused
    compiled kernels of ``toolchain.fused`` (the same integers; falls back to the unfused neuron,
    with one note, where torch.compile cannot run); "off" the unfused neuron; "auto" compiles when
    the run is long enough to repay the compilation (``use_fused_kernels``).
    ``flip``: mirror each training image left-right with probability 1/2 (CIFAR-10's augmentation;
    drawn per epoch after the shifts, so a run without it draws exactly what it drew before).
    """
    seed_everything(settings.seed)
    # Gradients far below threshold underflow into float32 denormals (the surrogate's tails),
    # which slow the conv backward ~10x on x86; flushing them changes no value above 1e-38 and
    # never the forward, which is integer-valued.
    torch.set_flush_denormal(True)
    device = torch.device(device) if device is not None else torch.device("cpu")
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    model = MTSNN(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    if resume is not None:
        model.load_state_dict(model_state)
    model.to(device)
    model.fused = use_fused_kernels(compile, model, len(dataset.train) * (settings.epochs - (resume.epoch if resume else 0)))
    net = dist.wrap(model) if dist is not None else model
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    images = _device_tensor(dataset.train.images, device)
    labels = _device_tensor(dataset.train.labels, device, torch.int64)
    test_images = _device_tensor(dataset.test.images, device)
    test_labels = _device_tensor(dataset.test.labels, device, torch.int64)
    per_rank = (len(images) + world - 1) // world  # DistributedSampler: pad by wrapping round
    steps_per_epoch = (per_rank + settings.batch_size - 1) // settings.batch_size
    scheduler = _scheduler(optimizer, settings, steps_per_epoch)
    generator = torch.Generator().manual_seed(settings.seed)
    history, first_epoch, seconds_before = [], 1, 0.0
    if resume is not None:
        _check_schedule(resume, settings, steps_per_epoch, len(images))
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        generator.set_state(resume.generator)
        torch.set_rng_state(resume.torch_rng)
        history, first_epoch, seconds_before = list(resume.history), resume.epoch + 1, resume.seconds
    started = time.perf_counter()
    shift = settings.augment
    for epoch in range(first_epoch, settings.epochs + 1):
        epoch_started = time.perf_counter()
        net.train()
        order = torch.randperm(len(images), generator=generator)
        offsets = torch.randint(0, 2 * shift + 1, (per_rank * world, 2), generator=generator) if shift > 0 else None
        flips = torch.randint(0, 2, (per_rank * world,), generator=generator).bool() if flip else None
        if world > 1:  # every rank drew the same order: pad it to world * per_rank, take every world-th
            order = order.repeat(-(-per_rank * world // len(order)))[: per_rank * world][rank::world]
            offsets = offsets[rank::world] if offsets is not None else None
            flips = flips[rank::world] if flips is not None else None
        order = order.to(device)
        offsets = offsets.to(device) if offsets is not None else None
        flips = flips.to(device) if flips is not None else None
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{settings.epochs}", unit="batch",
                   disable=not settings.progress or rank != 0, leave=False, dynamic_ncols=True)
        for step in bar:
            chunk = slice(step * settings.batch_size, (step + 1) * settings.batch_size)
            index = order[chunk]
            batch, target = images[index], labels[index]
            if offsets is not None:
                batch = shift_images(batch, offsets[chunk], shift)
            if flips is not None:
                batch = torch.where(flips[chunk, None, None, None], batch.flip(-1), batch)
            try:
                logits = net(batch)
            except (ValueError, RuntimeError) as exc:  # NaN weights break the fixed-point quantizer
                _raise_if_diverged(model, epoch, step, exc)
                raise
            loss = _loss(logits, target, settings.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(target)
            total_loss += loss.detach().double() * n
            correct += (logits.detach().argmax(dim=1) == target).sum()
            seen += n
            if not bar.disable and (step % 25 == 24 or step == steps_per_epoch - 1):  # logging: a host read
                bar.set_postfix(loss=f"{float(total_loss) / seen:.4f}", acc=f"{int(correct) / seen:.4f}")
        bar.close()
        if dist is None:
            test_accuracy = _evaluate_tensors(model, test_images, test_labels)
        else:  # each rank evaluates its share of the test set; the counts are summed
            mine = slice(rank, None, world)
            test_correct = _correct_count(model, test_images[mine], test_labels[mine])
            total_loss, correct, seen, test_correct = dist.sum_all(total_loss, correct, seen, test_correct)
            test_accuracy = int(test_correct) / len(test_labels) if len(test_labels) else float("nan")
        now = time.perf_counter()
        record = EpochRecord(epoch=epoch, epochs=settings.epochs, loss=float(total_loss) / seen,
                             train_accuracy=int(correct) / seen, test_accuracy=test_accuracy,
                             epoch_seconds=now - epoch_started, total_seconds=seconds_before + now - started)
        if not math.isfinite(record.loss):  # the loss is read for the record anyway: no extra host read
            _raise_if_diverged(model, epoch, steps_per_epoch - 1, None, total_loss)
        history.append(record.to_dict())
        if on_epoch is not None and rank == 0:
            state = TrainState(epoch=epoch, optimizer=_to_cpu(optimizer.state_dict()),
                               scheduler=scheduler.state_dict(), generator=generator.get_state(),
                               torch_rng=torch.get_rng_state(), seconds=record.total_seconds, history=list(history))
            on_epoch(model, state, record)
        if dist is not None:
            dist.barrier()  # the other ranks wait while rank 0 writes the checkpoint
    return TrainResult(model=model, test_accuracy=history[-1]["test_accuracy"], history=history,
                       seconds=history[-1]["seconds"])
