"""Training and evaluation loops (Adam, cross-entropy on the logits or MSE on spike rates)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .model import MTSNN, ConfigError, ModelConfig

__all__ = ["TrainSettings", "EpochRecord", "TrainState", "TrainResult", "seed_everything", "train_model",
           "evaluate_model", "predict"]


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
        if self.augment < 0:
            raise ConfigError(f"--augment: expected >= 0 pixels, found {self.augment}")
        if self.loss not in ("ce", "mse"):
            raise ConfigError(f"--loss: expected 'ce' or 'mse', found {self.loss!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random (dy, dx) in -max_shift..max_shift, filling with zeros."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(h))[:, :, None].expand(n, h, w)
    cols = (offsets[:, 1, None] + torch.arange(w))[:, None, :].expand(n, h, w)
    batch = torch.arange(n)[:, None, None].expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def _loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    return F.mse_loss(logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype))


def predict(model: MTSNN, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes (first index of the maximum integer logit)."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.tensor(images[start : start + batch_size])
            out.append(model.integer_forward(batch).logits.argmax(dim=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def evaluate_model(model: MTSNN, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((predict(model, images, batch_size) == labels).mean())


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


def _scheduler(optimizer, settings: TrainSettings, steps_per_epoch: int):
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )


def train_model(config: ModelConfig, dataset, settings: TrainSettings, init_state: dict | None = None, *,
                resume: TrainState | None = None, model_state: dict | None = None,
                on_epoch: Callable[[MTSNN, TrainState, EpochRecord], None] | None = None) -> TrainResult:
    """Train on dataset.train, report dataset.test accuracy after every epoch (integer forward).

    ``init_state``: a state dict to start from (e.g. a float baseline's, for QAT fine-tuning).
    ``resume`` + ``model_state``: continue a run from the end of epoch ``resume.epoch``; with the
    same seed and thread count the result is bit-identical to a run that was never interrupted.
    ``on_epoch(model, state, record)`` is called after every epoch (the caller saves a resumable
    checkpoint and prints the epoch line).
    """
    seed_everything(settings.seed)
    # Gradients far below threshold underflow into float32 denormals (the surrogate's tails),
    # which slow the conv backward ~10x on x86; flushing them changes no value above 1e-38 and
    # never the forward, which is integer-valued.
    torch.set_flush_denormal(True)
    model = MTSNN(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    images = torch.tensor(np.array(dataset.train.images))
    labels = torch.tensor(np.array(dataset.train.labels))
    steps_per_epoch = (len(images) + settings.batch_size - 1) // settings.batch_size
    scheduler = _scheduler(optimizer, settings, steps_per_epoch)
    generator = torch.Generator().manual_seed(settings.seed)
    history, first_epoch, seconds_before = [], 1, 0.0
    if resume is not None:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        generator.set_state(resume.generator)
        torch.set_rng_state(resume.torch_rng)
        history, first_epoch, seconds_before = list(resume.history), resume.epoch + 1, resume.seconds
    started = time.perf_counter()
    for epoch in range(first_epoch, settings.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{settings.epochs}", unit="batch",
                   disable=not settings.progress, leave=False, dynamic_ncols=True)
        for step in bar:
            index = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            batch, target = random_shift(images[index], settings.augment, generator), labels[index]
            logits = model(batch)
            loss = _loss(logits, target, settings.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.argmax(dim=1) == target).sum())
            seen += len(index)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        test_accuracy = evaluate_model(model, dataset.test.images, dataset.test.labels)
        now = time.perf_counter()
        record = EpochRecord(epoch=epoch, epochs=settings.epochs, loss=total_loss / seen, train_accuracy=correct / seen,
                             test_accuracy=test_accuracy, epoch_seconds=now - epoch_started,
                             total_seconds=seconds_before + now - started)
        history.append(record.to_dict())
        if on_epoch is not None:
            state = TrainState(epoch=epoch, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                               generator=generator.get_state(), torch_rng=torch.get_rng_state(),
                               seconds=record.total_seconds, history=list(history))
            on_epoch(model, state, record)
    return TrainResult(model=model, test_accuracy=history[-1]["test_accuracy"], history=history,
                       seconds=history[-1]["seconds"])
