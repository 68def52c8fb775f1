"""The integer reference: runs an ``IntegerNetwork`` on uint8 images with numpy alone.

For every sample it returns the integer logits and, per spiking layer, the spike counts of every
neuron at every time step; it also counts accumulator saturations per layer. All arithmetic is
exact (``hw_model.synapse`` for the synapses, ``hw_model.neuron`` for the neurons).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .network import IntegerNetwork
from .neuron import encode_pixels, mtlif_step, readout_step
from .synapse import neuron_state_dtype, partial_sum_bound, synaptic_input

__all__ = ["ReferenceResult", "LayerRun", "run_layer", "run_reference", "predict", "check_images"]


@dataclass
class LayerRun:
    """One layer's activity over a batch: spikes (T, B, *out) uint8, or the readout's logits."""

    spikes: np.ndarray | None  # (T, B, *out_shape) uint8 counts, None for the readout
    logits: np.ndarray | None  # (B, n_out) int64 for the readout, None otherwise
    saturations: int  # neuron-steps clipped at the accumulator limit
    smax_clipped: int = 0  # neuron-steps whose floor(U / theta) exceeded Smax (a residue >= theta stayed)


@dataclass
class ReferenceResult:
    logits: np.ndarray  # (N, n_classes) int64: the readout's integer sum over T steps
    spikes: dict = field(default_factory=dict)  # layer name -> (T, N, *out_shape) uint8
    saturations: dict = field(default_factory=dict)  # layer name -> clipped neuron-steps
    smax_clipped: dict = field(default_factory=dict)  # layer name -> neuron-steps clipped at Smax

    @property
    def predictions(self) -> np.ndarray:
        return predict(self.logits)


def predict(logits: np.ndarray) -> np.ndarray:
    """The first index of the maximum (ties go to the lowest class index)."""
    return np.argmax(logits, axis=1)


def run_layer(layer, inputs: list, smax_in: int) -> LayerRun:
    """Run one layer over T steps. ``inputs``: T arrays (B, *in_shape) of spike counts.

    When every step's input is the same object (the encoder's constant counts), the synaptic
    input is computed once; otherwise all T x B inputs go through one GEMM.
    """
    timesteps = len(inputs)
    state = neuron_state_dtype(layer, partial_sum_bound(layer, smax_in))  # int32 where proven exact
    if all(x is inputs[0] for x in inputs):
        currents = [synaptic_input(layer, inputs[0], smax_in).astype(state)] * timesteps
    else:
        stacked = np.concatenate(inputs, axis=0)
        batch = inputs[0].shape[0]
        flat = synaptic_input(layer, stacked, smax_in).astype(state)
        currents = [flat[t * batch : (t + 1) * batch] for t in range(timesteps)]
    v = np.zeros_like(currents[0])
    saturations = 0
    if layer.readout:
        for current in currents:
            v, clipped = readout_step(v, current, layer.neuron.acc_bits)
            saturations += int(np.count_nonzero(clipped))
        return LayerRun(spikes=None, logits=v.reshape(v.shape[0], -1).astype(np.int64), saturations=saturations)
    spikes = np.empty((timesteps,) + currents[0].shape, dtype=np.uint8)
    p = layer.neuron
    smax_clipped = 0
    for t, current in enumerate(currents):
        s, v, clipped = mtlif_step(v, current, p.theta_int, p.delta, p.smax, p.acc_bits)
        spikes[t] = s
        saturations += int(np.count_nonzero(clipped))
        smax_clipped += int(np.count_nonzero(v >= p.theta_int))  # after reset, a residue >= theta means s hit Smax
    return LayerRun(spikes=spikes, logits=None, saturations=saturations, smax_clipped=smax_clipped)


def _run_batch(net: IntegerNetwork, images: np.ndarray, record_spikes: bool):
    counts = encode_pixels(images, net.encoder.smax)
    inputs = [counts] * net.timesteps
    spikes, saturations, smax_clipped = {}, {}, {}
    for index, layer in enumerate(net.layers):
        run = run_layer(layer, inputs, net.input_smax(index))
        saturations[layer.name] = run.saturations
        smax_clipped[layer.name] = run.smax_clipped
        if layer.readout:
            return run.logits, spikes, saturations, smax_clipped
        if record_spikes:
            spikes[layer.name] = run.spikes
        inputs = [run.spikes[t] for t in range(net.timesteps)]
    raise AssertionError("unreachable: the last layer is the readout")


def check_images(net: IntegerNetwork, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images: expected dtype uint8, found {images.dtype}")
    if images.ndim != 4 or tuple(images.shape[1:]) != net.encoder.shape:
        raise ValueError(f"images: expected shape (N, {', '.join(map(str, net.encoder.shape))}), found {images.shape}")
    return images


def run_reference(
    net: IntegerNetwork, images: np.ndarray, *, batch_size: int = 256, record_spikes: bool = True
) -> ReferenceResult:
    """Run ``net`` on uint8 images (N, C, H, W). Spikes are kept per layer when record_spikes."""
    images = check_images(net, images)
    logits = []
    saturations = {layer.name: 0 for layer in net.layers}
    smax_clipped = {layer.name: 0 for layer in net.layers}
    spikes: dict[str, list] = {}
    for start in range(0, len(images), batch_size):
        batch_logits, batch_spikes, batch_sat, batch_clip = _run_batch(net, images[start : start + batch_size], record_spikes)
        logits.append(batch_logits)
        for name in saturations:
            saturations[name] += batch_sat[name]
            smax_clipped[name] += batch_clip[name]
        for name, value in batch_spikes.items():
            spikes.setdefault(name, []).append(value)
    n_out = net.n_classes
    return ReferenceResult(
        logits=np.concatenate(logits, axis=0) if logits else np.zeros((0, n_out), np.int64),
        spikes={name: np.concatenate(parts, axis=1) for name, parts in spikes.items()},
        saturations=saturations,
        smax_clipped=smax_clipped,
    )
