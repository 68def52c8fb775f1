"""NIR export of an ``IntegerNetwork``: a ``nir.NIRGraph`` (github.com/neuromorphs/NIR, nir 1.0.x).

``to_nir(net)`` is a pure function: integer network in, NIR graph out (nothing is run, nothing is
written); ``write_nir(net, path)`` serialises that graph to NIR's HDF5 file format atomically
(the whole file is built in memory, then written beside ``path`` and renamed over it).
docs/nir.md documents the file node by node and what NIR cannot express about an MT-SNN.

Graph (one chain, node keys derived from the layer names; ``<L>`` is a layer's key)::

    input                 Input          shape (C, H, W) of the encoder: spike COUNTS 0..Smax_in
    [<L>_flatten]         Flatten        start_dim 0, end_dim -1 (NIR shapes have no batch axis),
                                         only where a (C, H, W) output feeds a dense layer
    <L>                   Conv2d         int64 weight (O, C, k, k), stride, padding, dilation 1,
                                         groups 1, int64 bias (O,)
                          SumPool2d      kernel (k, k), stride (k, k), padding (0, 0)
                          Affine/Linear  int64 weight (O, N) and bias (O,); Linear when the bias
                                         is all zeros
    <L>_neuron            IF / LIF       every layer but the last: the MT-LIF neurons
    <L>_readout           I              the last layer: an integrator, its state is the logits
    output                Output         shape of the readout (n_classes for a dense readout)

Float parameters of the neuron nodes (what a consumer that ignores the metadata runs), with the
time step dt = 1 (one NIR time unit = one mtsnn step; forward Euler v <- v + dt * dv/dt):

- ``IF`` when delta = 0: ``r = 1`` (v <- v + I), ``v_threshold = theta_int``, ``v_reset = 0``.
- ``LIF`` when delta > 0: ``tau = 4096 / delta``, ``r = tau``, ``v_leak = 0``,
  ``v_threshold = theta_int``, ``v_reset = 0``. Euler with dt = 1 then gives
  v <- v + (1/tau) (-v + r I) = (1 - delta/4096) v + I: mtsnn's leak factor and unscaled input,
  without the truncation toward zero. A consumer that integrates the decay exactly (v <- exp(-1/tau) v
  + I, e.g. sinabs, which ignores ``r``) gets exp(-delta/4096) instead of 1 - delta/4096
  (0.9047 vs 0.8999 at delta = 410). tau = 4096/delta is also mtsnn's own --tau (``delta_from_tau``).
- ``I`` (the readout): ``r = 1``, v <- v + I, no leak (the readout never leaks, whatever its delta).

``v_reset = 0`` is NIR's default; NIR 1.0.6 cannot state a subtractive reset (nir <= 1.0.5 defined IF/LIF as "v - v_threshold" on a spike, 1.0.6 changed that to "v_reset"),
and a file written by nir 1.0.6 needs nir >= 1.0.6 to read (older versions refuse the v_reset field).

The exact integer behaviour is in the node metadata (NIR metadata: a dict per node and per graph,
stored in the HDF5 file): per neuron node ``theta_int``, ``delta``, ``smax``, ``acc_bits``,
``accumulator_limit``, ``reset`` = "subtractive" and the update rule as text; on ``input`` the
encoder (``smax``, the pixel -> count rule); on the graph ``timesteps``, ``spikes`` (counts
0..Smax per neuron per step) and what the logits are. Integer arrays are stored as int64, so the
file carries every weight and bias bit for bit.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtsnn.hw_model.errors import one_line
from mtsnn.hw_model.fileio import atomic_write_bytes, check_output_file
from mtsnn.hw_model.network import ConvLayer, DenseLayer, IntegerNetwork, PoolLayer
from mtsnn.hw_model.neuron import LEAK_DENOMINATOR, accumulator_limit
from .errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    import nir

__all__ = ["NIR_FORMAT", "NIR_FORMAT_VERSION", "ENCODER_RULE", "to_nir", "write_nir", "node_keys"]

NIR_FORMAT = "mtsnn-nir"  # graph metadata "format": what a reader checks before trusting the metadata
NIR_FORMAT_VERSION = 1
ENCODER_RULE = "count = (p * smax + 127) // 255 for each uint8 pixel p, the same count at every one of the T steps"
_SPIKE_RULE = "s = min(smax, max(0, floor(U / theta_int)))"
_NEURON_RULE = ("U = clip(leak(V) + I, -accumulator_limit, accumulator_limit); "
                "s = min(smax, max(0, floor(U / theta_int))); V = U - s * theta_int")
_LEAK_RULE = "leak(V) = trunc(V * (4096 - delta) / 4096), rounding toward zero; delta = 0: leak(V) = V"
_READOUT_RULE = "V = clip(V + I, -accumulator_limit, accumulator_limit); no leak, no spikes"
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_]")


def _nir_module():
    try:
        import nir
    except ImportError as exc:  # a clear one-line error instead of a traceback
        raise ExportError(f"NIR export needs the 'nir' package (pip install nir==1.0.6): {one_line(exc, 120)}") from None
    return nir


def _key_base(name: str) -> str:
    key = _KEY_CHARS.sub("_", name).strip("_") or "layer"
    return key if not key[0].isdigit() else f"l{key}"


def node_keys(network: IntegerNetwork) -> list[str]:
    """The key ``<L>`` of each layer's nodes: its name with every character outside [A-Za-z0-9_]
    replaced by ``_`` (a valid HDF5 name and Python identifier); a key whose nodes would clash
    with nodes already named gets the layer's index appended."""
    used = {"input", "output"}
    keys: list[str] = []
    for index, layer in enumerate(network.layers):
        key = base = _key_base(layer.name)
        suffix = index + 1
        while {key, f"{key}_neuron", f"{key}_readout", f"{key}_flatten"} & used:
            key, suffix = f"{base}_{suffix}", suffix + len(network.layers)
        used |= {key, f"{key}_neuron", f"{key}_readout", f"{key}_flatten"}
        keys.append(key)
    return keys


def _provenance_json(provenance: dict) -> str:
    """A free-form provenance dict as JSON text (HDF5 stores neither None nor lists of strings)."""
    try:
        return json.dumps(provenance, sort_keys=True, default=str, allow_nan=True)
    except (TypeError, ValueError):
        return json.dumps({"unserializable": repr(provenance)[:1000]})


def _full(shape: tuple, value: float) -> np.ndarray:
    return np.full(tuple(shape), float(value), dtype=np.float64)


def _neuron_node(nir, layer):
    """IF (delta = 0) or LIF (delta > 0) with the exact integer neuron in its metadata."""
    p = layer.neuron
    shape = layer.out_shape
    limit = accumulator_limit(p.acc_bits)
    metadata = {
        "mtsnn_layer": layer.name,
        "neuron": "mt-lif",
        "theta_int": int(p.theta_int),
        "delta": int(p.delta),
        "leak_denominator": LEAK_DENOMINATOR,
        "smax": int(p.smax),
        "acc_bits": int(p.acc_bits),
        "accumulator_limit": int(limit),
        "reset": "subtractive",
        "spikes": "count",
        "update": _NEURON_RULE,
        "leak": _LEAK_RULE,
        "spike_count": _SPIKE_RULE,
    }
    threshold = _full(shape, p.theta_int)
    reset = _full(shape, 0.0)
    if p.delta == 0:
        return nir.IF(r=_full(shape, 1.0), v_threshold=threshold, v_reset=reset, metadata=metadata)
    tau = LEAK_DENOMINATOR / p.delta
    return nir.LIF(tau=_full(shape, tau), r=_full(shape, tau), v_leak=_full(shape, 0.0), v_threshold=threshold,
                   v_reset=reset, metadata=metadata)


def _readout_node(nir, layer, timesteps: int):
    p = layer.neuron
    metadata = {
        "mtsnn_layer": layer.name,
        "neuron": "readout",
        "acc_bits": int(p.acc_bits),
        "accumulator_limit": int(accumulator_limit(p.acc_bits)),
        "update": _READOUT_RULE,
        "leak": "none (the readout never leaks; its neuron's delta is not used)",
        "spikes": "none",
        "output": (f"the membrane V after the last of the T = {timesteps} steps, starting from V = 0: the sum of I "
                   "over the T steps, clipped to +-accumulator_limit after every step; these integers are the "
                   "logits, flattened in (C, H, W) order"),
    }
    return nir.I(r=_full(layer.out_shape, 1.0), metadata=metadata)


def _synapse_node(nir, layer):
    if not isinstance(layer, (ConvLayer, PoolLayer, DenseLayer)):
        raise ExportError(f"layer {one_line(getattr(layer, 'name', '?'), 80)}: expected a conv, pool or dense layer, "
                          f"found {type(layer).__name__}")
    metadata: dict[str, Any] = {"mtsnn_layer": layer.name, "mtsnn_layer_type": layer.type_tag}
    if layer.provenance:
        metadata["provenance_json"] = _provenance_json(layer.provenance)
    if isinstance(layer, ConvLayer):
        metadata["weight_bits"] = int(layer.weight_bits)
        return nir.Conv2d(input_shape=tuple(layer.in_shape[1:]), weight=np.array(layer.weight, dtype=np.int64),
                          stride=int(layer.stride), padding=int(layer.padding), dilation=1, groups=1,
                          bias=np.array(layer.bias, dtype=np.int64), metadata=metadata)
    if isinstance(layer, PoolLayer):
        k = int(layer.kernel)
        metadata["crop"] = "floor: rows/columns beyond the last whole k x k window are dropped"
        return nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]),
                             metadata=metadata)
    if isinstance(layer, DenseLayer):
        metadata["weight_bits"] = int(layer.weight_bits)
        weight = np.array(layer.weight, dtype=np.int64)
        if not np.any(layer.bias):
            return nir.Linear(weight=weight, metadata=metadata)
        return nir.Affine(weight=weight, bias=np.array(layer.bias, dtype=np.int64), metadata=metadata)
    raise AssertionError("unreachable")


def _graph_metadata(network: IntegerNetwork, readout_key: str) -> dict:
    metadata: dict[str, Any] = {
        "format": NIR_FORMAT,
        "format_version": NIR_FORMAT_VERSION,
        "producer": "mtsnn",
        "timesteps": int(network.timesteps),
        "dt": 1.0,
        "time_unit": "one mtsnn time step (tau is in steps)",
        "n_classes": int(network.n_classes),
        "spikes": ("integer spike counts 0..smax per neuron per time step (multi-spike), not binary events; "
                   "each layer's smax is in its neuron node's metadata"),
        "input": (f"the Input node receives the encoder's counts 0..{network.encoder.smax} at each of the T steps; "
                  f"pixels are encoded outside the graph: {ENCODER_RULE}"),
        "logits": (f"the state of the readout integrator {readout_key!r} after the last of the "
                   f"T = {network.timesteps} steps; the prediction is the first index of the maximum"),
        "arithmetic": "integer: every weight, bias, threshold and membrane is an integer (docs/semantics.md)",
    }
    provenance = network.provenance or {}
    for key in ("export_id", "checkpoint_sha256", "arch"):
        if isinstance(provenance.get(key), str):
            metadata[key] = provenance[key]
    if provenance:
        metadata["provenance_json"] = _provenance_json(provenance)
    return metadata


def to_nir(network: IntegerNetwork) -> "nir.NIRGraph":
    """The NIR graph of ``network`` (see the module docstring for nodes, parameters, metadata).

    Pure: reads ``network`` only. Raises ``ExportError`` for anything but an ``IntegerNetwork``
    and when the nir package is missing."""
    if not isinstance(network, IntegerNetwork):
        raise ExportError(f"NIR export: expected an IntegerNetwork, found {type(network).__name__}")
    nir = _nir_module()
    encoder = network.encoder
    nodes: dict[str, Any] = {
        "input": nir.Input(input_type={"input": np.array(encoder.shape, dtype=np.int64)}, metadata={
            "encoder": encoder.kind,
            "smax": int(encoder.smax),
            "rule": ENCODER_RULE,
            "pixel_shape": np.array(encoder.shape, dtype=np.int64),
            "values": f"integer spike counts 0..{encoder.smax} at each step",
        }),
    }
    edges: list[tuple[str, str]] = []
    previous = "input"
    shape = tuple(encoder.shape)
    last = len(network.layers) - 1
    for index, (layer, key) in enumerate(zip(network.layers, node_keys(network))):
        if isinstance(layer, DenseLayer) and len(shape) != 1:
            flatten = f"{key}_flatten"
            nodes[flatten] = nir.Flatten(input_type={"input": np.array(shape, dtype=np.int64)}, start_dim=0,
                                         end_dim=-1, metadata={"order": "C, H, W (row-major)"})
            edges.append((previous, flatten))
            previous = flatten
        nodes[key] = _synapse_node(nir, layer)
        edges.append((previous, key))
        neuron_key = f"{key}_readout" if index == last else f"{key}_neuron"
        nodes[neuron_key] = (_readout_node(nir, layer, network.timesteps) if index == last
                             else _neuron_node(nir, layer))
        edges.append((key, neuron_key))
        previous = neuron_key
        shape = tuple(layer.out_shape)
    nodes["output"] = nir.Output(output_type={"output": np.array(shape, dtype=np.int64)},
                                 metadata={"values": "the logits (int64 in mtsnn), after the last time step"})
    edges.append((previous, "output"))  # previous: the readout integrator
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_graph_metadata(network, previous),
                            type_check=True)
    except (ValueError, AssertionError, TypeError) as exc:  # a shape the NIR type check refuses: our bug, said plainly
        raise ExportError(f"NIR export: the graph fails NIR's type check: {one_line(exc, 200)}") from None


def write_nir(network: IntegerNetwork, path: str | os.PathLike) -> Path:
    """Write ``to_nir(network)`` to ``path`` (NIR's HDF5 format, readable with ``nir.read``).

    Atomic: the file is built in memory, written to a temporary file beside ``path`` and renamed
    over it, so a reader sees the old file or the new one, never half of one. Returns the path.
    Raises ``InputError`` (an ``MtsnnError``) when ``path`` cannot be written as a file."""
    graph = to_nir(network)  # bad input is refused before anything touches the file system
    path = check_output_file(path, "NIR file")
    nir = _nir_module()
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    atomic_write_bytes(path, buffer.getvalue())
    return path

