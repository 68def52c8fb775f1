"""Integer validation: every integer path must give the same spikes and logits, bit for bit.

Paths: the QAT model's integer-exact torch forward ("qat"), the numpy reference on the exported
core description ("reference"), onnxruntime on the exported ONNX file ("onnxruntime"), and the
hardware simulator on the core description mapped to a target ("simulator"). The reference is
the baseline; each other path is compared to it layer by layer (every spiking layer's counts at
every step), then on the logits. The first divergence is the earliest layer that differs, and
in it the lowest sample, time step and neuron index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["PathRun", "Divergence", "ValidationReport", "compare_paths", "first_divergence"]


@dataclass
class PathRun:
    name: str
    logits: np.ndarray  # (N, classes) int64
    spikes: dict  # layer -> (T, N, *out_shape) integer counts


@dataclass(frozen=True)
class Divergence:
    path: str  # the path that differs from the reference
    sample: int
    layer: str  # a layer name, or "logits"
    time_step: int | None  # 0-based step; None for logits
    neuron: tuple  # index within the layer's output shape (channel, y, x) or (unit,)
    reference_value: int
    path_value: int

    def sentence(self) -> str:
        where = f"layer {self.layer}" + (f", time step {self.time_step}" if self.time_step is not None else "")
        return (f"first divergence: {self.path} vs reference at sample {self.sample}, {where}, "
                f"neuron {self.neuron}: reference {self.reference_value}, {self.path} {self.path_value}")

    def to_dict(self) -> dict:
        return {"path": self.path, "sample": self.sample, "layer": self.layer, "time_step": self.time_step,
                "neuron": list(self.neuron), "reference_value": self.reference_value, "path_value": self.path_value}


@dataclass
class ValidationReport:
    samples: int
    paths: list
    mismatched_samples: np.ndarray  # (N,) bool: any path differs anywhere for this sample
    accuracy: dict
    divergences: list = field(default_factory=list)  # the first divergence of each differing path
    notes: list = field(default_factory=list)  # e.g. a path that could not run, and why

    @property
    def mismatches(self) -> int:
        return int(self.mismatched_samples.sum())

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0 and not self.divergences

    def to_dict(self) -> dict:
        return {"bit_exact": self.bit_exact, "samples": self.samples, "mismatches": self.mismatches,
                "paths": self.paths, "accuracy": self.accuracy,
                "first_divergence": self.divergences[0].to_dict() if self.divergences else None,
                "divergences": [d.to_dict() for d in self.divergences], "notes": self.notes}


def _first_difference(reference: np.ndarray, other: np.ndarray, sample_axis: int):
    """(sample, index tuple of the rest) of the first differing element, ordered by sample."""
    diff = np.asarray(reference).astype(np.int64) != np.asarray(other).astype(np.int64)
    if not diff.any():
        return None
    moved = np.moveaxis(diff, sample_axis, 0)
    sample = int(np.argmax(moved.reshape(moved.shape[0], -1).any(axis=1)))
    rest = np.argwhere(moved[sample])[0]
    return sample, tuple(int(i) for i in rest)


def first_divergence(reference: PathRun, other: PathRun, layer_order: list) -> Divergence | None:
    for layer in layer_order:
        ref, oth = reference.spikes[layer], other.spikes[layer]
        if ref.shape != oth.shape:
            return Divergence(other.name, 0, layer, None, (), -1, -1)
        found = _first_difference(ref, oth, sample_axis=1)
        if found:
            sample, (t, *neuron) = found
            return Divergence(other.name, sample, layer, t, tuple(neuron),
                              int(ref[(t, sample, *neuron)]), int(oth[(t, sample, *neuron)]))
    found = _first_difference(reference.logits, other.logits, sample_axis=0)
    if found:
        sample, neuron = found
        return Divergence(other.name, sample, "logits", None, neuron,
                          int(reference.logits[(sample, *neuron)]), int(other.logits[(sample, *neuron)]))
    return None


def _mismatched_samples(reference: PathRun, other: PathRun, layer_order: list) -> np.ndarray:
    bad = (np.asarray(reference.logits) != np.asarray(other.logits)).reshape(len(reference.logits), -1).any(axis=1)
    for layer in layer_order:
        ref, oth = reference.spikes[layer], other.spikes[layer]
        if ref.shape != oth.shape:
            return np.ones(len(reference.logits), dtype=bool)
        diff = (ref != oth)
        bad |= np.moveaxis(diff, 1, 0).reshape(diff.shape[1], -1).any(axis=1)
    return bad


def compare_paths(reference: PathRun, others: list, labels: np.ndarray, layer_order: list) -> ValidationReport:
    """Compare every path to the reference; accuracy of each path on ``labels``."""
    mismatched = np.zeros(len(reference.logits), dtype=bool)
    divergences = []
    for other in others:
        mismatched |= _mismatched_samples(reference, other, layer_order)
        divergence = first_divergence(reference, other, layer_order)
        if divergence is not None:
            divergences.append(divergence)
    accuracy = {run.name: float((np.argmax(run.logits, axis=1) == labels).mean()) if len(labels) else float("nan")
                for run in [reference, *others]}
    return ValidationReport(samples=len(reference.logits), paths=[reference.name] + [o.name for o in others],
                            mismatched_samples=mismatched, accuracy=accuracy, divergences=divergences)


def run_batched(function: Callable, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, dict]:
    """Concatenate (logits, spikes) of ``function`` over batches along the sample axes."""
    logits, spikes = [], {}
    for start in range(0, len(images), batch_size):
        batch_logits, batch_spikes = function(images[start : start + batch_size])
        logits.append(np.asarray(batch_logits))
        for name, value in batch_spikes.items():
            spikes.setdefault(name, []).append(np.asarray(value))
    return np.concatenate(logits), {name: np.concatenate(parts, axis=1) for name, parts in spikes.items()}
