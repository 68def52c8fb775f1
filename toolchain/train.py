"""Training and evaluation loops (Adam, cross-entropy on the logits or MSE on spike rates)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .model import MTSNN, ConfigError, ModelConfig

__all__ = ["TrainSettings", "seed_everything", "train_model", "evaluate_model", "predict"]


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
        for name, value in (("epochs", self.epochs), ("batch-size", self.batch_size), ("lr", self.lr)):
            if not value > 0:
                raise ConfigError(f"--{name}: expected a positive value, found {value}")
        if self.augment < 0:
            raise ConfigError(f"--augment: expected >= 0 pixels, found {self.augment}")
        if self.loss not in ("ce", "mse"):
            raise ConfigError(f"--loss: expected 'ce' or 'mse', found {self.loss!r}")


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
class TrainResult:
    model: MTSNN
    test_accuracy: float
    history: list = field(default_factory=list)
    seconds: float = 0.0


def train_model(config: ModelConfig, dataset, settings: TrainSettings, init_state: dict | None = None) -> TrainResult:
    """Train on dataset.train, report dataset.test accuracy after every epoch (integer forward).

    ``init_state``: a state dict to start from (e.g. a float baseline's, for QAT fine-tuning).
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
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(settings.seed)
    history = []
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{settings.epochs}", unit="batch",
                   disable=not settings.progress, leave=True, dynamic_ncols=True)
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
        test_accuracy = evaluate_model(model, dataset.test.images, dataset.test.labels)
        history.append({"epoch": epoch, "loss": total_loss / seen, "train_accuracy": correct / seen,
                        "test_accuracy": test_accuracy, "seconds": time.perf_counter() - started})
        bar.close()
        print(f"epoch {epoch}/{settings.epochs}: loss {total_loss / seen:.4f}  train acc {correct / seen:.4f}  "
              f"test acc {test_accuracy:.4f}  ({time.perf_counter() - started:.1f} s)", flush=True)
    return TrainResult(model=model, test_accuracy=history[-1]["test_accuracy"], history=history,
                       seconds=time.perf_counter() - started)
