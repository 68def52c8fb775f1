"""The quantization-aware MT-SNN: Brevitas fixed-point synapses + exact MT-LIF neurons.

Fixed point: each synaptic layer's weights are quantized by Brevitas with a power-of-two scale
per layer (``Int8WeightPerTensorFixedPoint`` at ``bits`` bits, narrow range: W = W_int * 2**-f,
|W_int| <= 2**(bits-1) - 1). The float threshold ``theta`` (default 1.0) becomes
theta_int = round(theta * 2**f), exact for theta = 1; biases are rounded (straight-through) to the
same grid. Membranes are integers in units of 2**-f, so what the forward pass computes is the
chip's integer arithmetic (docs/semantics.md), layer by layer:

    counts  = (p * Smax + 127) // 255                      encoder, the same at every step
    I_t     = (conv(x_t, W) + b) * 2**f                    integer-valued (exact, see below)
    s_t     = MT-LIF(I_t)                                  toolchain.neuron (hw_model's step)
    logits  = sum_t I_t of the readout, saturating        integer; the loss sees logits*2**-f/T

Exactness of the float synapses: the inputs are integer counts and the weights integers times a
power of two, so every partial sum is an integer times 2**-f. The conv runs in float32 when the
layer's bound (hw_model.synapse.partial_sum_bound: Smax_in * sum|W_int| + |b_int|) is <= 2**24
and in float64 otherwise; within the bound any summation order is exact.

Multi-step mode: each synaptic layer runs once over all T x B inputs (the first layer once over
B: its input is the same at every step), then its neurons step through T.

Pooling (``P<k>``) is a depthwise k x k all-ones sum with stride k, followed by MT-LIF neurons
with theta_int = k*k and no leak (delta = 0): an average with the remainder carried over.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantLinear
from brevitas.quant import Int8WeightPerTensorFixedPoint
from torch import nn

from mtsnn.hw_model.errors import InputError
from mtsnn.hw_model.neuron import accumulator_limit, delta_from_tau, encode_pixels
from mtsnn.hw_model.synapse import FLOAT32_EXACT_LIMIT
from .arch import ConvSpec, DenseSpec, PoolSpec, layer_shapes
from .neuron import NeuronConfig, SurrogateConfig, mtlif_multistep, readout_multistep

__all__ = ["ConfigError", "ModelConfig", "MTSNN", "layer_names_and_kinds", "expected_state_shapes", "IntegerRun", "QuantizedSynapse", "QuantizedWeights"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ConfigError(InputError):
    """An out-of-range model or training setting (one line: the setting, expected, found)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in the checkpoint as a plain dict)."""

    arch: str
    input_shape: tuple  # (C, H, W)
    n_classes: int
    timesteps: int = 2
    smax: int = 15
    bits: int = 8  # 0 = the float baseline: no quantization, float neurons (for comparison only)
    acc_bits: int = 24
    tau: float = 10.0  # membrane time constant in steps; delta = round(4096 / tau)
    theta: float = 1.0  # float threshold of every synaptic layer's neurons
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    bias: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.surrogate, dict):
            try:
                object.__setattr__(self, "surrogate", SurrogateConfig(**self.surrogate))
            except TypeError as exc:
                raise ConfigError(f"surrogate: expected {{curve, a, b}}, found {self.surrogate!r} ({exc})") from None
        if not isinstance(self.surrogate, SurrogateConfig):
            raise ConfigError(f"surrogate: expected {{curve, a, b}}, found {self.surrogate!r}")
        if not isinstance(self.arch, str):
            raise ConfigError(f"arch: expected an architecture string, found {self.arch!r}")
        shape = self.input_shape
        if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(_is_int(d) and 1 <= d <= 4096 for d in shape)):
            raise ConfigError(f"input_shape: expected (C, H, W) of integers 1..4096, found {shape!r}")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))
        for name in ("n_classes", "timesteps", "smax", "bits", "acc_bits"):
            if not _is_int(getattr(self, name)):
                raise ConfigError(f"{name}: expected an integer, found {getattr(self, name)!r}")
        for name in ("tau", "theta", "surrogate.a", "surrogate.b"):
            value = self.surrogate.a if name == "surrogate.a" else self.surrogate.b if name == "surrogate.b" \
                else getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or (
                    math.isinf(value) and name != "tau"):
                raise ConfigError(f"{name}: expected a finite number, found {value!r}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias: expected true or false, found {self.bias!r}")
        checks = [
            (1 <= self.timesteps <= 64, "timesteps", "1..64", self.timesteps),
            (1 <= self.smax <= 31, "smax", "1..31", self.smax),
            (self.bits == 0 or 2 <= self.bits <= 16, "bits", "2..16 (or 0 for the float baseline)", self.bits),
            (8 <= self.acc_bits <= 32, "acc_bits", "8..32", self.acc_bits),
            (self.tau >= 1 or self.tau == 0, "tau", ">= 1 (or 0 / inf for no leak)", self.tau),
            (self.theta > 0, "theta", "> 0", self.theta),
            (_is_int(self.surrogate.curve) and self.surrogate.curve in (1, 2, 3), "surrogate", "1, 2 or 3",
             self.surrogate.curve),
            (self.surrogate.a > 0 and self.surrogate.b > 0, "surrogate a and b", "> 0",
             (self.surrogate.a, self.surrogate.b)),
            (2 <= self.n_classes <= 100_000, "n_classes", "2..100000", self.n_classes),
        ]
        for ok, name, expected, found in checks:
            if not ok:
                raise ConfigError(f"{name}: expected {expected}, found {found}")
        layer_shapes(self.arch, self.input_shape, self.n_classes)  # raises ArchError

    @property
    def quantized(self) -> bool:
        return self.bits != 0

    @property
    def delta(self) -> int:
        return delta_from_tau(self.tau)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


class QuantizedSynapse(nn.Module):
    """A conv or dense layer with fixed-point weights; quantizes once per forward call."""

    def __init__(self, spec, in_shape: tuple, out_shape: tuple, config: ModelConfig):
        super().__init__()
        # the float baseline keeps the same modules (so its checkpoint can be re-quantized at export)
        quant = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=config.bits or 8, bias=config.bias)
        self.float_baseline = not config.quantized
        if isinstance(spec, ConvSpec):
            self.kind = "conv"
            self.padding = spec.padding
            self.layer = QuantConv2d(in_shape[0], spec.channels, spec.kernel, padding=spec.padding, **quant)
        else:
            self.kind = "dense"
            self.layer = QuantLinear(math.prod(in_shape), out_shape[0], **quant)
        self.acc_bits = config.acc_bits

    def quantized(self) -> "QuantizedWeights":
        """This step's weights and bias: float (with straight-through gradients) and integer."""
        if self.float_baseline:
            one = torch.ones((), dtype=self.layer.weight.dtype)
            return QuantizedWeights(self.layer.weight, None, self.layer.bias, None, one, 0)
        qw = self.layer.quant_weight()
        scale = qw.scale.detach().reshape(())
        weight_int = torch.round(qw.value.detach() / scale)
        bias = bias_int = None
        if self.layer.bias is not None:
            limit = accumulator_limit(self.acc_bits)
            bias_int = torch.clamp(torch.round(self.layer.bias.detach() / scale), -limit, limit)
            bias = self.layer.bias + (bias_int * scale - self.layer.bias).detach()
        return QuantizedWeights(qw.value, weight_int, bias, bias_int, scale, int(round(-math.log2(float(scale)))))

    def currents(self, x: torch.Tensor, smax_in: int, q: "QuantizedWeights") -> torch.Tensor:
        """Integer-valued I for inputs x (M, ...) of counts; exact float32/float64 (see module doc).

        The float baseline (no integer weights) has nothing to prove and runs in float32.
        """
        weight, bias = q.weight, q.bias
        if q.weight_int is not None:
            # the dtype this layer's bound needs (the input may come as float64 from a float64 layer)
            per_out = q.weight_int.reshape(q.weight_int.shape[0], -1).abs().sum(dim=1) * smax_in
            if q.bias_int is not None:
                per_out = per_out + q.bias_int.abs()
            dtype = torch.float64 if float(per_out.max()) > FLOAT32_EXACT_LIMIT else torch.float32
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        if self.kind == "conv":
            y = F.conv2d(x, weight, bias, padding=self.padding)
        else:
            y = F.linear(x.reshape(x.shape[0], -1), weight, bias)
        return y / q.scale.to(y.dtype)


class QuantizedWeights(NamedTuple):
    """A synaptic layer's weights for one forward pass (float value = integer * scale)."""

    weight: torch.Tensor  # float, W_int * 2**-f, straight-through gradient to the float weight
    weight_int: torch.Tensor | None  # integer-valued, None for the float baseline
    bias: torch.Tensor | None  # float, on the same grid
    bias_int: torch.Tensor | None  # integer-valued, clipped to the accumulator
    scale: torch.Tensor  # 2**-f, a scalar
    f: int  # weight_scale_exp


@dataclass
class IntegerRun:
    """What one exact forward pass produced (all integers, as torch tensors)."""

    logits: torch.Tensor  # (B, n_classes) float64 holding integers
    spikes: dict  # layer name -> (T, B, *out_shape) float holding counts


def layer_names_and_kinds(shapes) -> tuple[list[str], list[str]]:
    """Layer names (conv1, pool1, dense1, ..., readout) and kinds for ``layer_shapes`` output."""
    names, kinds, counts = [], [], {"conv": 0, "pool": 0, "dense": 0}
    for index, (spec, _, _) in enumerate(shapes):
        kind = "conv" if isinstance(spec, ConvSpec) else "pool" if isinstance(spec, PoolSpec) else "dense"
        counts[kind] += 1
        names.append(f"{kind}{counts[kind]}" if index < len(shapes) - 1 else "readout")
        kinds.append(kind)
    return names, kinds


def expected_state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state dict an ``MTSNN(config)`` has, as {key: shape}, computed without building it
    (a checkpoint's claims are checked against its real tensors before anything is allocated)."""
    shapes = layer_shapes(config.arch, config.input_shape, config.n_classes)
    names, kinds = layer_names_and_kinds(shapes)
    expected = {}
    for name, kind, (spec, in_shape, out_shape) in zip(names, kinds, shapes):
        if kind == "conv":
            expected[f"synapses.{name}.layer.weight"] = (spec.channels, in_shape[0], spec.kernel, spec.kernel)
        elif kind == "dense":
            expected[f"synapses.{name}.layer.weight"] = (out_shape[0], math.prod(in_shape))
        if kind != "pool" and config.bias:
            expected[f"synapses.{name}.layer.bias"] = (out_shape[0],)
    return expected


class MTSNN(nn.Module):
    """An MT-SNN built from an architecture string; forward(uint8 images) -> float logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.shapes = layer_shapes(config.arch, config.input_shape, config.n_classes)
        self.layer_names, self.layer_kinds = layer_names_and_kinds(self.shapes)
        self.synapses = nn.ModuleDict()
        for name, kind, (spec, in_shape, out_shape) in zip(self.layer_names, self.layer_kinds, self.shapes):
            if kind != "pool":
                self.synapses[name] = QuantizedSynapse(spec, in_shape, out_shape, config)

    # ------------------------------------------------------------------ per-layer parameters
    def neuron_config(self, index: int) -> NeuronConfig:
        c = self.config
        delta = 0 if self.layer_kinds[index] == "pool" else c.delta
        return NeuronConfig(delta=delta, smax=c.smax, acc_bits=c.acc_bits, surrogate=c.surrogate, exact=c.quantized)

    def pool_kernel(self, index: int) -> int:
        return self.shapes[index][0].kernel

    def theta_int(self, index: int, f: int) -> int:
        """Integer threshold of layer ``index`` whose weight scale is 2**-f."""
        if self.layer_kinds[index] == "pool":
            return self.pool_kernel(index) ** 2
        if not self.config.quantized:
            return self.config.theta
        limit = accumulator_limit(self.config.acc_bits)
        return int(min(limit, max(1, round(self.config.theta * 2.0**f))))

    # ------------------------------------------------------------------ forward
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(f"images: expected dtype uint8, found {images.dtype}")
        return encode_pixels(images, self.config.smax).to(torch.float32)

    def _run(self, images: torch.Tensor, record: bool):
        T = self.config.timesteps
        x = self.encode(images)  # (B, C, H, W), constant over steps
        batch = x.shape[0]
        constant_input = True
        spikes = {}
        for index, name in enumerate(self.layer_names):
            smax_in = self.config.smax
            if self.layer_kinds[index] == "pool":
                k = self.pool_kernel(index)
                currents = F.avg_pool2d(x, k, stride=k, divisor_override=1)
                f = 0
            else:
                synapse = self.synapses[name]
                q = synapse.quantized()
                currents = synapse.currents(x, smax_in, q)
                f = q.f
            if constant_input:
                currents = currents.unsqueeze(0).expand(T, *currents.shape)
            else:
                currents = currents.reshape(T, batch, *currents.shape[1:])
            if name == "readout":
                if not self.config.quantized:
                    return currents.double().sum(dim=0), f, spikes
                logits_int = readout_multistep(currents.double(), self.config.acc_bits)
                return logits_int, f, spikes
            s = mtlif_multistep(currents, self.theta_int(index, f), self.neuron_config(index))
            if record:
                spikes[name] = s.detach()
            x = s.reshape(T * batch, *s.shape[2:])
            constant_input = False
        raise AssertionError("unreachable: the last layer is the readout")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Float logits for the loss: the integer logits * 2**-f / T (same argmax)."""
        logits_int, f, _ = self._run(images, record=False)
        return (logits_int * (2.0**-f / self.config.timesteps)).to(torch.float32)

    @torch.no_grad()
    def integer_forward(self, images: torch.Tensor) -> IntegerRun:
        """The exact integer logits and every spiking layer's counts (T, B, *out_shape)."""
        logits_int, _, spikes = self._run(images, record=True)
        return IntegerRun(logits=logits_int, spikes=spikes)
