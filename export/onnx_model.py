"""ONNX export of an ``IntegerNetwork``: an opset-17 graph whose logits are the reference's integers.

``build_onnx(net)`` unrolls the network over its T time steps into one static ONNX graph:
uint8 images (N, C, H, W) in, int64 logits (N, n_classes) out, for every input exactly the
integers of ``hw_model.reference.run_reference``. ``add_spike_outputs`` exposes the per-layer
spike counts of a built model (so validation checks the exported *file*), ``save_onnx`` writes
atomically, ``run_onnx`` runs a model (proto, path or session) with onnxruntime's CPU provider.

Graph, per layer (names are deterministic: ``<layer>_W``, ``<layer>_B``, ``t<t>_<layer>_U`` ...)::

    encoder     counts = Floor((Cast(images) * smax + 127) / 255)             float32, 0..smax
    synapses    I = W (*) x + b   Conv / Gemm in float32 or float64 (see "Exactness" below);
                pool = depthwise all-ones Conv (group = C, stride k: floor crop); float64 conv =
                im2col (Pad + Gather with a precomputed index tensor) + MatMul, because
                onnxruntime's CPU Conv has no double kernel.
                Layer 0 sees the encoder's counts, the same at every step: I computed once.
                Later layers see T different inputs: one op per step (default), or with
                stack_steps=True one op over the T*N samples concatenated on the batch axis + Split.
    neuron      per step t, float64:  U = Clip(leak(V) + I, -L, L), leak(V) = Sign(V) * Floor(|V| * c)
                t<t>_<layer>_S = Clip(Floor(U / theta), 0, Smax);  t<t>_<layer>_V = U - S * theta
    readout     t<t>_<layer>_V = Clip(V + I, -L, L) (no leak, no spikes); logits = Cast(V, int64)
    spikes      (add_spike_outputs) spikes_<layer> = Concat_t(Unsqueeze(Cast(t<t>_<layer>_S, uint8)))

Exactness (the promise of this module)
--------------------------------------
Every tensor of the graph holds integers, and every operation below returns the exact integer
the reference computes, because each intermediate is an integer that the float type represents
exactly and each op either is exact on such values or is followed by a Floor that removes its
rounding. Facts used: (F1) float32 represents every integer of magnitude <= 2**24, float64 every
integer <= 2**53; (F2) IEEE 754 +, -, *, / and FMA return the correctly rounded exact result, so an
exactly representable result is returned unchanged; rounding is monotone.

1. Encoder. p in 0..255, smax <= 31: p*smax + 127 <= 8032 is exact in float32 (F1, F2). The
   quotient q = m/255 is rounded, but floor(round(q)) = floor(q) by step 4's argument (m < 2**24).
2. Synapses (``hw_model.synapse``'s proof, applied per layer): inputs are counts 0..smax_in,
   weights and bias integers, so every product and every partial sum of any neuron, in any
   summation order (blocked GEMM, multithreaded split of the reduction, FMA, bias first or last),
   is an integer of magnitude <= bound = max_o(smax_in * sum|W[o]| + |b[o]|)
   (``partial_sum_bound``). ``exact_gemm_dtype(bound)`` picks float32 when bound <= 2**24 and
   float64 when bound <= 2**53, so by F1/F2 every step of the Conv/Gemm/MatMul is exact.
   This holds for any algorithm that only adds products of inputs and weights (direct, im2col +
   GEMM, NCHWc); it would not hold for Winograd/FFT convolutions, which onnxruntime's CPU provider
   does not use - the tests check float32 Conv at the bound with all-max and +-max weights.
   Zero padding adds zero terms. Bound > 2**53 (impossible in practice: fan-in > 2**32 for
   16-bit weights) is refused with a ValueError.
3. Leak. |V| <= L = 2**(A-1) - 1 < 2**31 after saturation. c = (4096 - delta)/4096 has at most
   13 significant bits and is a dyadic rational, so |V| * c has at most 31 + 13 = 44 < 53
   significant bits: exact in float64, and equal to |V*(4096-delta)| / 4096 exactly (the reference's
   x / 4096). Floor of the exact value then Sign restores the sign: trunc toward zero, as the
   reference's sign(x) * (|x| // 4096). delta = 0 (leak = identity) and delta = 4096 (leak = 0)
   skip the ops.
4. Spike count. U is an integer, |U| <= L < 2**53, theta an integer >= 1. Let q = U/theta (real),
   n = floor(q); n and n+1 are integers of magnitude <= 2**53, exactly representable. If q = n,
   q is representable and Div returns it exactly. Otherwise q*theta is an integer, so
   n + 1/theta <= q <= n + 1 - 1/theta: q is at least 1/theta away from both n and n+1, while the
   rounding error of Div is at most ulp(q)/2 <= 2**-53 |q| = 2**-53 |U|/theta < 1/theta. So the
   rounded quotient lies strictly between n and n+1 (or equals n) and Floor gives n exactly.
   Clip to 0..Smax and S * theta <= Smax * theta (the subtracted part of U) are exact integers.
5. Sums and saturation. leak(V) + I: |leak(V)| < 2**31, |I| <= bound <= 2**53. When the exact sum
   is <= 2**53 it is representable and returned exactly; when it is larger, the rounded sum is
   still > L (monotone rounding, F2), so Clip gives L, as the reference does. The same holds for
   the readout's V + I. Casts float32 -> float64 and float64 -> float32 of counts (<= 31), and
   the final float64 -> int64 of |V| <= L are exact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mtsnn.hw_model.fileio import atomic_write_bytes
from mtsnn.hw_model.network import ConvLayer, DenseLayer, IntegerNetwork, PoolLayer
from mtsnn.hw_model.neuron import LEAK_DENOMINATOR, accumulator_limit
from mtsnn.hw_model.synapse import exact_gemm_dtype, partial_sum_bound

__all__ = [
    "OPSET",
    "IR_VERSION",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "LOGITS_NAME",
    "spike_output_name",
    "synapse_dtypes",
    "build_onnx",
    "add_spike_outputs",
    "save_onnx",
    "load_onnx",
    "make_session",
    "run_onnx",
]

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17 (ONNX 1.12); onnxruntime accepts it everywhere
FORMAT_NAME = "mtsnn-onnx"
FORMAT_VERSION = 1
INPUT_NAME = "images"
LOGITS_NAME = "logits"
BATCH_DIM = "N"

_ONNX_DTYPE = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
}


def spike_output_name(layer_name: str) -> str:
    """Graph output holding a layer's spikes, (T, N, *out_shape) uint8."""
    return f"spikes_{layer_name}"


def synapse_dtypes(net: IntegerNetwork) -> dict[str, np.dtype]:
    """Per layer, the float dtype its synapses run in (``exact_gemm_dtype`` of its bound)."""
    dtypes = {}
    for index, layer in enumerate(net.layers):
        bound = partial_sum_bound(layer, net.input_smax(index))
        dtype = exact_gemm_dtype(bound)
        if dtype not in _ONNX_DTYPE:
            raise ValueError(
                f"{layer.name}: partial sums up to {bound} exceed 2**53; no exact float GEMM exists"
            )
        dtypes[layer.name] = dtype
    return dtypes


# --------------------------------------------------------------------------- graph builder


@dataclass
class _Graph:
    """Collects nodes and initializers; every tensor and node is named by the caller."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    dtypes: dict = field(default_factory=dict)  # tensor name -> numpy float dtype
    constants: dict = field(default_factory=dict)  # initializer name -> array

    def const(self, name: str, value, dtype=np.float64) -> str:
        """An initializer; asking again for the same name and value reuses it."""
        array = np.asarray(value, dtype=dtype)
        if name in self.constants:
            if not np.array_equal(self.constants[name], array) or self.constants[name].dtype != array.dtype:
                raise AssertionError(f"initializer {name!r} defined twice with different values")
            return name
        self.constants[name] = array
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list, output: str, doc: str = "", **attrs) -> str:
        node = helper.make_node(op_type, inputs, [output], name=output, **attrs)
        if doc:
            node.doc_string = doc
        self.nodes.append(node)
        return output

    def cast(self, x: str, dtype: np.dtype, output: str) -> str:
        """Cast ``x`` to ``dtype`` unless it already has it."""
        dtype = np.dtype(dtype)
        if self.dtypes.get(x) == dtype:
            return x
        self.op("Cast", [x], output, to=_ONNX_DTYPE[dtype])
        self.dtypes[output] = dtype
        return output


# --------------------------------------------------------------------------- encoder


def _encoder(g: _Graph, net: IntegerNetwork) -> str:
    """uint8 images -> float32 counts (p * smax + 127) // 255 (exact: see the module docstring)."""
    smax = net.encoder.smax
    pixels = g.op("Cast", [INPUT_NAME], "encoder_pixels", to=TensorProto.FLOAT)
    scaled = g.op("Mul", [pixels, g.const("encoder_smax", smax, np.float32)], "encoder_scaled")
    offset = g.op("Add", [scaled, g.const("encoder_offset", 127, np.float32)], "encoder_offset_sum")
    ratio = g.op("Div", [offset, g.const("encoder_divisor", 255, np.float32)], "encoder_ratio")
    counts = g.op("Floor", [ratio], "encoder_counts", doc="input spike counts (p*smax+127)//255, every step")
    g.dtypes[counts] = np.dtype(np.float32)
    return counts


# --------------------------------------------------------------------------- synapses


def _conv_float32(g: _Graph, layer: ConvLayer, x: str, prefix: str) -> str:
    w = g.const(f"{layer.name}_W", layer.weight, np.float32)
    b = g.const(f"{layer.name}_B", layer.bias, np.float32)
    p, s, k = layer.padding, layer.stride, layer.kernel
    return g.op("Conv", [x, w, b], f"{prefix}_conv", kernel_shape=[k, k], pads=[p, p, p, p],
                strides=[s, s], doc="I = W * x + b, exact in float32 (partial sums <= 2**24)")


def _im2col_indices(layer: ConvLayer) -> np.ndarray:
    """(C*k*k, OH*OW) positions in the flattened zero-padded input (C, H+2p, W+2p)."""
    c, h, w = layer.in_shape
    k, s, p = layer.kernel, layer.stride, layer.padding
    hp, wp = h + 2 * p, w + 2 * p
    _, oh, ow = layer.out_shape
    ci, ki, kj = np.meshgrid(np.arange(c), np.arange(k), np.arange(k), indexing="ij")
    oi, oj = np.meshgrid(np.arange(oh) * s, np.arange(ow) * s, indexing="ij")
    rows = (ci * hp * wp + ki * wp + kj).reshape(-1, 1)  # weight order (C, kh, kw)
    cols = (oi * wp + oj).reshape(1, -1)
    return rows + cols


def _conv_float64(g: _Graph, layer: ConvLayer, x: str, prefix: str) -> str:
    """Conv as Pad + Gather (im2col) + MatMul: onnxruntime's CPU Conv has no double kernel."""
    name, p = layer.name, layer.padding
    out_c, oh, ow = layer.out_shape
    if p:
        pads = g.const(f"{name}_pads", [0, 0, p, p, 0, 0, p, p], np.int64)
        x = g.op("Pad", [x, pads], f"{prefix}_padded")
    c, h, w = layer.in_shape
    flat_shape = g.const(f"{name}_flat_shape", [-1, c * (h + 2 * p) * (w + 2 * p)], np.int64)
    flat = g.op("Reshape", [x, flat_shape], f"{prefix}_flat")
    index = _im2col_indices(layer)
    index_dtype = np.int32 if index.max() < 2**31 else np.int64
    cols = g.op("Gather", [flat, g.const(f"{name}_im2col", index, index_dtype)], f"{prefix}_cols", axis=1)
    weight = g.const(f"{name}_W", layer.weight.reshape(out_c, -1), np.float64)
    product = g.op("MatMul", [weight, cols], f"{prefix}_matmul",
                   doc="I = W @ im2col(x), exact in float64 (partial sums <= 2**53)")
    biased = g.op("Add", [product, g.const(f"{name}_B", layer.bias.reshape(-1, 1), np.float64)], f"{prefix}_biased")
    return g.op("Reshape", [biased, g.const(f"{name}_out_shape", [-1, out_c, oh, ow], np.int64)], f"{prefix}_conv")


def _pool(g: _Graph, layer: PoolLayer, x: str, dtype: np.dtype, prefix: str) -> str:
    c, k = layer.in_shape[0], layer.kernel
    ones = g.const(f"{layer.name}_W", np.ones((c, 1, k, k)), dtype)
    return g.op("Conv", [x, ones], f"{prefix}_conv", kernel_shape=[k, k], strides=[k, k], group=c,
                doc="sum pooling: depthwise all-ones k x k conv, stride k, floor crop")


def _dense(g: _Graph, layer: DenseLayer, x: str, dtype: np.dtype, prefix: str) -> str:
    flat = g.op("Reshape", [x, g.const(f"{layer.name}_in_flat", [-1, layer.fan_in], np.int64)], f"{prefix}_in")
    w = g.const(f"{layer.name}_W", layer.weight, dtype)
    b = g.const(f"{layer.name}_B", layer.bias, dtype)
    return g.op("Gemm", [flat, w, b], f"{prefix}_gemm", transB=1,
                doc=f"I = x @ W.T + b, exact in {np.dtype(dtype).name}")


def _synaptic_input(g: _Graph, layer, x: str, dtype: np.dtype, prefix: str) -> str:
    """I for a batch x (B, *in_shape) of counts: float64 (B, *out_shape) named <prefix>_I."""
    x = g.cast(x, dtype, f"{prefix}_in_{dtype.name}")
    if isinstance(layer, PoolLayer):
        out = _pool(g, layer, x, dtype, prefix)
    elif isinstance(layer, DenseLayer):
        out = _dense(g, layer, x, dtype, prefix)
    elif dtype == np.float32:
        out = _conv_float32(g, layer, x, prefix)
    else:
        out = _conv_float64(g, layer, x, prefix)
    g.dtypes[out] = dtype
    return g.cast(out, np.float64, f"{prefix}_I")


def _layer_currents(g: _Graph, layer, inputs, dtype: np.dtype, stack_steps: bool) -> list[str]:
    """T tensors (N, *out_shape) float64, step t's synaptic input.

    inputs: one tensor (the encoder's counts, the same at every step: I is computed once) or a
    list of T per-step spike tensors: one op per step, or (stack_steps) one op over the T*N
    samples concatenated along the batch axis, split back into T steps.
    """
    name = layer.name
    if isinstance(inputs, str):
        return [_synaptic_input(g, layer, inputs, dtype, name)]
    if not stack_steps or len(inputs) == 1:
        return [_synaptic_input(g, layer, x, dtype, f"t{t}_{name}") for t, x in enumerate(inputs)]
    cast = [g.cast(x, dtype, f"t{t}_{name}_in_{dtype.name}") for t, x in enumerate(inputs)]
    stacked = g.op("Concat", cast, f"{name}_steps_concat", axis=0, doc="the T steps' inputs along the batch axis")
    g.dtypes[stacked] = dtype
    current = _synaptic_input(g, layer, stacked, dtype, f"{name}_steps")
    outputs = [f"t{t}_{name}_I" for t in range(len(inputs))]
    g.nodes.append(helper.make_node("Split", [current], outputs, name=f"{name}_steps_split", axis=0))
    return outputs


# --------------------------------------------------------------------------- neurons


def _leak(g: _Graph, layer, v: str, t: int) -> str:
    """trunc(V * (4096 - delta) / 4096) = Sign(V) * Floor(|V| * c), c = (4096 - delta) / 4096."""
    prefix = f"t{t}_{layer.name}"
    factor = g.const(f"{layer.name}_leak_factor", (LEAK_DENOMINATOR - layer.neuron.delta) / LEAK_DENOMINATOR)
    magnitude = g.op("Mul", [g.op("Abs", [v], f"{prefix}_Vabs"), factor], f"{prefix}_Vdecayed")
    floored = g.op("Floor", [magnitude], f"{prefix}_Vfloor")
    return g.op("Mul", [g.op("Sign", [v], f"{prefix}_Vsign"), floored], f"{prefix}_leak",
                doc="leak: trunc(V*(4096-delta)/4096), toward zero")


def _saturate(g: _Graph, layer, u: str, output: str) -> str:
    limit = accumulator_limit(layer.neuron.acc_bits)
    lo = g.const(f"{layer.name}_acc_min", -limit)
    hi = g.const(f"{layer.name}_acc_max", limit)
    return g.op("Clip", [u, lo, hi], output, doc=f"saturate to the {layer.neuron.acc_bits}-bit accumulator")


def _step_current(currents: list[str], t: int) -> str:
    return currents[0] if len(currents) == 1 else currents[t]


def _spiking_neurons(g: _Graph, layer, currents: list[str], timesteps: int) -> list[str]:
    """MT-LIF over T steps; returns the T spike-count tensors t<t>_<layer>_S, (N, *out) float64."""
    p = layer.neuron
    theta = g.const(f"{layer.name}_theta", p.theta_int)
    zero, smax = g.const(f"{layer.name}_zero", 0.0), g.const(f"{layer.name}_smax", p.smax)
    v, spikes = None, []
    for t in range(timesteps):
        prefix, current = f"t{t}_{layer.name}", _step_current(currents, t)
        if v is None or p.delta == LEAK_DENOMINATOR:  # V = 0 at the start; delta = 4096 forgets V
            u = current
        else:
            decayed = v if p.delta == 0 else _leak(g, layer, v, t)
            u = g.op("Add", [decayed, current], f"{prefix}_Usum")
        u = _saturate(g, layer, u, f"{prefix}_U")
        quotient = g.op("Div", [u, theta], f"{prefix}_Uratio")
        floored = g.op("Floor", [quotient], f"{prefix}_Ufloor")
        s = g.op("Clip", [floored, zero, smax], f"{prefix}_S", doc="spike count min(Smax, max(0, U // theta))")
        g.dtypes[s] = np.dtype(np.float64)
        spikes.append(s)
        if t < timesteps - 1:  # the last residue is never read
            reset = g.op("Mul", [s, theta], f"{prefix}_reset")
            v = g.op("Sub", [u, reset], f"{prefix}_V", doc="reset by subtraction")
    return spikes


def _readout(g: _Graph, layer, currents: list[str], timesteps: int, n_classes: int) -> str:
    """V = saturate(V + I) every step (no leak, no spikes); logits = Cast(V, int64)."""
    v = None
    for t in range(timesteps):
        current = _step_current(currents, t)
        u = current if v is None else g.op("Add", [v, current], f"t{t}_{layer.name}_Vsum")
        v = _saturate(g, layer, u, f"t{t}_{layer.name}_V")
    flat = g.op("Reshape", [v, g.const(f"{layer.name}_logits_shape", [-1, n_classes], np.int64)],
                f"{layer.name}_logits_float")
    return g.op("Cast", [flat], LOGITS_NAME, to=TensorProto.INT64,
                doc="integer logits: the readout's saturated sum over T steps")


# --------------------------------------------------------------------------- model


def _graph_doc(net: IntegerNetwork, dtypes: dict) -> str:
    lines = [
        f"mtsnn integer MT-SNN unrolled over T = {net.timesteps} steps; bit-exact with hw_model.reference.",
        f"input '{INPUT_NAME}': uint8 (N, {', '.join(map(str, net.encoder.shape))}) -> counts "
        f"(p * {net.encoder.smax} + 127) // 255 at every step.",
    ]
    for layer in net.layers:
        p = layer.neuron
        role = "readout: saturated sum of I over T" if layer.readout else (
            f"MT-LIF theta={p.theta_int} delta={p.delta} Smax={p.smax}, spikes t<t>_{layer.name}_S")
        lines.append(f"{layer.name}: {layer.type_tag} {layer.in_shape}->{layer.out_shape}, synapses in "
                     f"{dtypes[layer.name].name}, A={p.acc_bits} bits, {role}")
    lines.append(f"output '{LOGITS_NAME}': int64 (N, {net.n_classes}), prediction = first argmax.")
    lines.append("Every value is an integer held exactly in float32/float64; proof in export/onnx_model.py.")
    return "\n".join(lines)


def _metadata(net: IntegerNetwork, dtypes: dict, stack_steps: bool) -> dict[str, str]:
    spiking = {layer.name: list(layer.out_shape) for layer in net.layers if not layer.readout}
    return {
        "mtsnn_format": FORMAT_NAME,
        "mtsnn_format_version": str(FORMAT_VERSION),
        "timesteps": str(net.timesteps),
        "n_classes": str(net.n_classes),
        "encoder_smax": str(net.encoder.smax),
        "spiking_layers": json.dumps(spiking),  # name -> per-sample output shape, in layer order
        "synapse_dtypes": json.dumps({name: dtype.name for name, dtype in dtypes.items()}),
        "stack_steps": str(int(stack_steps)),
        # which export (and which checkpoint) this file belongs to; empty for a bare build_onnx
        "export_id": str(net.provenance.get("export_id", "")),
        "checkpoint_sha256": str(net.provenance.get("checkpoint_sha256", "")),
    }


def build_onnx(net: IntegerNetwork, *, spike_outputs: bool = False, stack_steps: bool = False) -> onnx.ModelProto:
    """The network as an opset-17 ONNX model: uint8 images -> int64 logits, bit-exact.

    spike_outputs: also output ``spikes_<layer>`` (T, N, *out_shape) uint8 per spiking layer
    (the same as ``add_spike_outputs(build_onnx(net))``).
    stack_steps: run each later layer's synapses once over the T steps concatenated along the
    batch axis (Concat + one Conv/Gemm + Split) instead of once per step. Same integers; per step
    is the default because it was faster in onnxruntime (no Concat/Split copies).
    """
    dtypes = synapse_dtypes(net)
    g = _Graph()
    inputs = _encoder(g, net)
    for layer in net.layers:
        currents = _layer_currents(g, layer, inputs, dtypes[layer.name], stack_steps)
        if layer.readout:
            logits = _readout(g, layer, currents, net.timesteps, net.n_classes)
            break
        inputs = _spiking_neurons(g, layer, currents, net.timesteps)
    graph = helper.make_graph(
        g.nodes, "mtsnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [BATCH_DIM, *net.encoder.shape])],
        [helper.make_tensor_value_info(logits, TensorProto.INT64, [BATCH_DIM, net.n_classes])],
        initializer=g.initializers, doc_string=_graph_doc(net, dtypes),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="mtsnn")
    model.doc_string = "mtsnn MT-SNN: the integer logits of docs/semantics.md"
    helper.set_model_props(model, _metadata(net, dtypes, stack_steps))
    return add_spike_outputs(model) if spike_outputs else model


def _metadata_dict(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def _spike_output_nodes(layer_name: str, timesteps: int) -> list:
    """Cast each t<t>_<layer>_S to uint8, Unsqueeze, Concat along a new leading T axis."""
    nodes, steps = [], []
    axes = f"{layer_name}_spikes_axis0"
    nodes.append(helper.make_node("Constant", [], [axes], name=axes,
                                  value=numpy_helper.from_array(np.array([0], np.int64), axes)))
    for t in range(timesteps):
        source, count, step = f"t{t}_{layer_name}_S", f"t{t}_{layer_name}_S_uint8", f"t{t}_{layer_name}_S_step"
        nodes.append(helper.make_node("Cast", [source], [count], name=count, to=TensorProto.UINT8))
        nodes.append(helper.make_node("Unsqueeze", [count, axes], [step], name=step))
        steps.append(step)
    name = spike_output_name(layer_name)
    nodes.append(helper.make_node("Concat", steps, [name], name=name, axis=0,
                                  doc_string=f"{layer_name} spike counts (T, N, *out_shape) uint8"))
    return nodes


def add_spike_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a ``build_onnx`` model with ``spikes_<layer>`` (T, N, *out) uint8 graph outputs.

    The spiking layers and their shapes come from the ``spiking_layers`` metadata, the per-step
    counts from their deterministic names ``t<t>_<layer>_S``. Outputs already present are kept.
    """
    meta = _metadata_dict(model)
    if meta.get("mtsnn_format") != FORMAT_NAME:
        raise ValueError(f"not an mtsnn ONNX model (mtsnn_format = {meta.get('mtsnn_format')!r})")
    timesteps = int(meta["timesteps"])
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    present = {o.name for o in graph.output}
    produced = {name for node in graph.node for name in node.output}
    for layer_name, shape in json.loads(meta["spiking_layers"]).items():
        if spike_output_name(layer_name) in present:
            continue
        missing = [f"t{t}_{layer_name}_S" for t in range(timesteps) if f"t{t}_{layer_name}_S" not in produced]
        if missing:
            raise ValueError(f"model lacks the spike tensors {missing} of layer {layer_name!r}")
        graph.node.extend(_spike_output_nodes(layer_name, timesteps))
        graph.output.append(helper.make_tensor_value_info(
            spike_output_name(layer_name), TensorProto.UINT8, [timesteps, BATCH_DIM, *shape]))
    return out


def save_onnx(model: onnx.ModelProto, path) -> None:
    """Write ``model`` to ``path`` atomically (temporary file beside it, fsync, rename)."""
    atomic_write_bytes(Path(path), model.SerializeToString())


def load_onnx(path) -> onnx.ModelProto:
    return onnx.load(os.fspath(path))


# --------------------------------------------------------------------------- running


def make_session(model_or_path, *, spikes: bool = False, threads: int = 0):
    """An onnxruntime CPU session; ``spikes`` adds the spike outputs first if the model lacks them."""
    import onnxruntime as ort

    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else load_onnx(model_or_path)
    if spikes:
        model = add_spike_outputs(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _check_images(session, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    expected = tuple(session.get_inputs()[0].shape[1:])
    if images.dtype != np.uint8:
        raise ValueError(f"images: expected dtype uint8, found {images.dtype}")
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"images: expected shape (N, {', '.join(map(str, expected))}), found {images.shape}")
    return np.ascontiguousarray(images)


def _require_spike_outputs(session) -> None:
    layers = json.loads(session.get_modelmeta().custom_metadata_map.get("spiking_layers", "[]"))
    present = {o.name for o in session.get_outputs()}
    missing = [name for name in layers if spike_output_name(name) not in present]
    if missing:
        raise ValueError(f"spikes requested but the session lacks outputs for {missing}: "
                         "use make_session(..., spikes=True)")


def run_onnx(model_or_path, images: np.ndarray, *, spikes: bool = False,
             batch_size: int = 512) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run a model (ModelProto, path or onnxruntime session) on uint8 images (N, C, H, W).

    Returns (logits (N, n_classes) int64, spikes): spikes maps layer name -> (T, N, *out_shape)
    uint8 when ``spikes`` (a session must then already have the spike outputs), else {}.
    """
    if isinstance(model_or_path, (onnx.ModelProto, str, os.PathLike)):
        session = make_session(model_or_path, spikes=spikes)
    else:
        session = model_or_path
    images = _check_images(session, images)
    if spikes:
        _require_spike_outputs(session)
    outputs = [o for o in session.get_outputs() if o.name == LOGITS_NAME or (spikes and o.name.startswith("spikes_"))]
    names = [o.name for o in outputs]
    parts: dict[str, list] = {name: [] for name in names}
    for start in range(0, len(images), batch_size):
        for name, value in zip(names, session.run(names, {INPUT_NAME: images[start:start + batch_size]})):
            parts[name].append(value)
    results = {}
    for o in outputs:
        axis = 0 if o.name == LOGITS_NAME else 1
        if parts[o.name]:
            results[o.name] = np.concatenate(parts[o.name], axis=axis)
        else:  # no images: empty arrays of the right shape
            shape = [0 if isinstance(d, str) or d is None else d for d in o.shape]
            results[o.name] = np.zeros(shape, np.int64 if o.name == LOGITS_NAME else np.uint8)
    logits = results.pop(LOGITS_NAME)
    return logits, {name[len("spikes_"):]: value for name, value in results.items()}
