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

import contextlib
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
from .device import current_device
from .arch import ConvSpec, DenseSpec, PoolSpec, layer_shapes
from . import fused as fused_kernels
from .neuron import NeuronConfig, SurrogateConfig, mtlif_multistep, mtlif_pool_block, readout_multistep

__all__ = ["ConfigError", "ModelConfig", "default_theta", "default_surrogate_b", "MTSNN", "layer_names_and_kinds", "expected_state_shapes", "IntegerRun", "QuantizedSynapse", "QuantizedWeights"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ConfigError(InputError):
    """An out-of-range model or training setting (one line: the setting, expected, found)."""


def default_theta(smax: int) -> float:
    """The threshold used when none is given, per Smax (docs/training.md, "Defaults per Smax").

    theta = 2**floor(log2(Smax)/2 - 5/2): 1/8 at Smax 1, 1/4 at Smax 2..7, 1/2 at Smax 8..31.
    A layer's spike count is s = clip(floor(W.x / theta), 0, Smax) with inputs x = Smax * r
    (r: the previous layer's rate in 0..1), so the membrane in threshold units is
    (Smax / theta) * W.r: with a fixed theta = 1 the gain Smax / theta of a binary network
    (Smax = 1) is 1, its neurons stay below the only threshold and the surrogate gives them no
    gradient (a dead network). A gain that grows like sqrt(Smax) (Smax / theta between 5.7 and
    11.3 times sqrt(Smax): 8 at Smax 1, 30 at Smax 15, 62 at Smax 31) trains at every Smax 1..31
    (measured on the digits, docs/training.md).
    Always a power of two, so theta_int = theta * 2**f is exact whenever f >= 3 (8-bit weights: f ~ 8).
    """
    if isinstance(smax, bool) or not isinstance(smax, int) or smax < 1:
        return 1.0  # ModelConfig refuses the Smax itself
    return 2.0 ** math.floor(0.5 * math.log2(smax) - 2.5)


def default_surrogate_b(smax: int) -> float:
    """The surrogate steepness used when none is given: b = min(20, 2 * Smax**2).

    The paper's b = 20 from Smax = 4 up; below, wider bumps: with few thresholds a neuron at rest
    (x = 0) is a whole threshold away from the first bump, and exp(-b) must not vanish
    (b = 2 at Smax 1: the Gaussian bump still gives exp(-2) = 0.14 at rest)."""
    if isinstance(smax, bool) or not isinstance(smax, int) or smax < 1:
        return 20.0
    return float(min(20, 2 * smax * smax))


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
        self.bits = config.bits or 8

    def quantized(self, compiled: bool = False) -> "QuantizedWeights":
        """This step's weights and bias: float (with straight-through gradients) and integer.

        Brevitas quantizes the weights once per optimizer step: its result is cached until the
        weights change (their version counter moves at every optimizer step and every load), and
        computed without an autograd graph. The gradient Brevitas's graph would give (``_BrevitasGrad``)
        is applied by one autograd node per layer. ``compiled``: Brevitas's quantizer through
        torch.compile (``toolchain.fused.quantize_weight``; the same tensors, less Python)."""
        if self.float_baseline:
            one = torch.ones((), dtype=self.layer.weight.dtype, device=self.layer.weight.device)
            return QuantizedWeights(self.layer.weight, None, self.layer.bias, None, one)
        weight = self.layer.weight
        bias_param = self.layer.bias
        key = (weight._version, weight.data_ptr(), weight.device, weight.requires_grad,
               None if bias_param is None else (bias_param._version, bias_param.data_ptr()))
        cached = self._cache
        if cached is None or cached[0] != key:
            with torch.no_grad():
                quick = fused_kernels.quantize_weight(self.layer) if compiled else None
                if quick is None:
                    qw = self.layer.quant_weight()
                    quick = (qw.value, qw.scale)
                value, scale = quick[0].detach().clone(), quick[1].detach().reshape(()).clone()
                weight_int = torch.round(value / scale)
                bias_int = None
                if bias_param is not None:
                    limit = accumulator_limit(self.acc_bits)
                    bias_int = torch.clamp(torch.round(bias_param / scale), -limit, limit)
                terms = _BrevitasGrad.terms(weight, weight_int, scale) if weight.requires_grad else None
            cached = self._cache = (key, value, weight_int, scale, bias_int, terms)
        _, value, weight_int, scale, bias_int, terms = cached
        weight_ste = bias_ste = bias = None
        if torch.is_grad_enabled() and weight.requires_grad and terms is not None:
            weight_ste = _BrevitasGrad.apply(weight, weight_int, scale, *terms)
        if bias_param is not None:
            bias = bias_param + (bias_int * scale - bias_param).detach()
            if torch.is_grad_enabled() and bias_param.requires_grad:
                bias_ste = bias_param / scale + (bias_int - bias_param / scale).detach()
        return QuantizedWeights(value, weight_int, bias, bias_int, scale, weight_ste, bias_ste)

    _cache = None

    def _float32_is_exact(self, q: "QuantizedWeights", smax_in: int) -> bool:
        """Whether this layer's partial sums stay within float32's exact integers (2**24).

        First from the shapes alone (|W_int| <= 2**(bits-1), |b_int| <= the accumulator
        limit): no data read. Where that bound is too loose, from the weights themselves
        (Smax_in * sum|W_int| + |b_int| per output); off the CPU that is a read back to the host,
        so there the layer runs in float64 instead (exact too; the same integers)."""
        fan_in = q.weight_int[0].numel()
        bias_bound = accumulator_limit(self.acc_bits) if q.bias_int is not None else 0
        if smax_in * fan_in * 2 ** (self.bits - 1) + bias_bound <= FLOAT32_EXACT_LIMIT:
            return True
        if q.weight_int.device.type != "cpu":
            return False
        per_out = q.weight_int.reshape(q.weight_int.shape[0], -1).abs().sum(dim=1) * smax_in
        if q.bias_int is not None:
            per_out = per_out + q.bias_int.abs()
        return float(per_out.max()) <= FLOAT32_EXACT_LIMIT

    def currents(self, x: torch.Tensor, smax_in: int, q: "QuantizedWeights") -> torch.Tensor:
        """Integer-valued I for inputs x (M, ...) of counts; exact float32/float64 (see module doc).

        The float baseline (no integer weights) has nothing to prove and runs in float32.
        """
        if q.weight_int is None:
            weight, bias, scale = q.weight, q.bias, None
        else:
            # integer weights and biases (W_int = W / 2**-f): the currents come out in membrane units,
            # with no division of the (large) output by the scale; gradients through _BrevitasGrad
            weight = q.weight_int if q.weight_int_ste is None else q.weight_int_ste
            bias = q.bias_int if q.bias_int_ste is None else q.bias_int_ste
            # the dtype this layer's bound needs (the input may come as float64 from a float64 layer)
            dtype = torch.float32 if self._float32_is_exact(q, smax_in) else torch.float64
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        if self.kind == "conv":
            return F.conv2d(x, weight, bias, padding=self.padding)
        return F.linear(x.reshape(x.shape[0], -1), weight, bias)


class _BrevitasGrad(torch.autograd.Function):
    """W_int = Q(W) / 2**-f from Brevitas's cached quantization, with the gradient of Brevitas's
    graph for ``Int8WeightPerTensorFixedPoint``: W_q = round_ste(W / s) * s with the power-of-two
    scale s = 2**ceil_ste(log2(m / (2**(bits-1) - 1))), m = max|W|. Its Jacobian is the identity
    (straight-through rounding) plus the path through the scale, which reaches only the largest
    weight(s): dL/dW_k += sign(W_k) * (s / m) * sum_i dL/dW_q,i * (W_int,i - W_i / s) for |W_k| = m
    (shared among ties, as torch.max's backward does). tests/toolchain/test_fused.py checks it
    against Brevitas's own autograd."""

    @staticmethod
    def terms(weight: torch.Tensor, weight_int: torch.Tensor, scale: torch.Tensor):
        """What the backward needs, computed once per quantization (no autograd): the rounding
        residues W_int - W / s and the direction sign(W_k) / (m * ties) of the largest weight(s)."""
        magnitude = weight.abs()
        largest = magnitude.max()
        at_max = (magnitude == largest).to(weight.dtype)
        return weight_int - weight / scale, at_max * torch.sign(weight) / (largest * at_max.sum())

    @staticmethod
    def forward(ctx, weight: torch.Tensor, weight_int: torch.Tensor, scale: torch.Tensor, residue: torch.Tensor,
                direction: torch.Tensor):
        ctx.save_for_backward(scale, residue, direction)
        return weight_int.view_as(weight_int)

    @staticmethod
    def backward(ctx, grad_int: torch.Tensor):
        scale, residue, direction = ctx.saved_tensors
        grad = grad_int / scale  # dL/dW_q: W_int = W_q / s
        return grad + direction * ((grad * residue).sum() * scale), None, None, None, None


class QuantizedWeights(NamedTuple):
    """A synaptic layer's weights for one forward pass (float value = integer * scale)."""

    weight: torch.Tensor  # float, W_int * 2**-f, straight-through gradient to the float weight
    weight_int: torch.Tensor | None  # integer-valued, None for the float baseline
    bias: torch.Tensor | None  # float, on the same grid
    bias_int: torch.Tensor | None  # integer-valued, clipped to the accumulator
    scale: torch.Tensor  # 2**-f, a scalar on the weights' device
    weight_int_ste: torch.Tensor | None = None  # W_int with Brevitas's gradient (/ 2**-f) to the float weight
    bias_int_ste: torch.Tensor | None = None  # b_int, straight-through (/ 2**-f) to the float bias

    @property
    def f(self) -> int:
        """weight_scale_exp (a read back to the host: the training forward off the CPU avoids it)."""
        return int(round(-math.log2(float(self.scale))))


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

    # Off the CPU the thresholds theta_int = round(theta * 2**f) are computed on the device from
    # the weight scales (no read back to the host per step); True makes the CPU do the same (tests).
    theta_on_device = False
    # True: the neurons run toolchain.fused's compiled kernels (the same integers; falls back to the
    # unfused neuron where torch.compile is unavailable). train_model sets it (--compile).
    fused = False

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

    def theta_tensor(self, index: int, scale: torch.Tensor) -> torch.Tensor:
        """``theta_int`` of a quantized synaptic layer computed on the device from its weight
        scale 2**-f, without reading f back to the host: the same integer, as a 0-dim int64."""
        limit = accumulator_limit(self.config.acc_bits)
        exact = torch.round(self.config.theta / scale.to(torch.float64))  # theta * 2**f, exact: a power of two
        return torch.clamp(exact, 1, limit).to(torch.int64)

    def _fuse_with_pool(self, index: int, currents: torch.Tensor) -> bool:
        return (self.fused and self.config.quantized and fused_kernels.available() is not False
                and self.layer_kinds[index] != "pool" and index + 1 < len(self.layer_kinds)
                and self.layer_kinds[index + 1] == "pool" and self.layer_names[index + 1] != "readout"
                and currents.dim() >= 4)

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
        pooled_already = None  # the next pooling layer's spikes, computed in a fused block
        for index, name in enumerate(self.layer_names):
            smax_in = self.config.smax
            if pooled_already is not None:
                s, pooled_already = pooled_already, None
                if record:
                    spikes[name] = s.detach()
                x = s.reshape(T * batch, *s.shape[2:])
                continue
            if self.layer_kinds[index] == "pool":
                k = self.pool_kernel(index)
                currents = F.avg_pool2d(x, k, stride=k, divisor_override=1)
                theta, scale = k * k, None
            else:
                synapse = self.synapses[name]
                q = synapse.quantized(compiled=self.fused)
                currents = synapse.currents(x, smax_in, q)
                scale = q.scale
                if not self.config.quantized:
                    theta = self.config.theta
                elif q.scale.device.type == "cpu" and not self.theta_on_device:  # reading f costs nothing here
                    theta = self.theta_int(index, q.f)
                else:  # no read back to the host per step
                    theta = self.theta_tensor(index, q.scale)
            if name == "readout":
                if constant_input:
                    currents = currents.unsqueeze(0).expand(T, *currents.shape)
                else:
                    currents = currents.reshape(T, batch, *currents.shape[1:])
                if not self.config.quantized:
                    return currents.double().sum(dim=0), scale, spikes
                logits_int = readout_multistep(currents.double(), self.config.acc_bits)
                return logits_int, scale, spikes
            if not constant_input:
                currents = currents.reshape(T, batch, *currents.shape[1:])
            steps = T if constant_input else None
            if self._fuse_with_pool(index, currents):  # this layer's neurons, the pooling and its neurons at once
                pooled_already, s = mtlif_pool_block(currents, theta, self.neuron_config(index),
                                                     self.pool_kernel(index + 1), steps=steps, record=record)
                if record:
                    spikes[name] = s.detach()
                constant_input = False
                continue
            s = mtlif_multistep(currents, theta, self.neuron_config(index), steps=steps, fused_kernel=self.fused)
            if record:
                spikes[name] = s.detach()
            x = s.reshape(T * batch, *s.shape[2:])
            constant_input = False
        raise AssertionError("unreachable: the last layer is the readout")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Float logits for the loss: the integer logits * 2**-f / T (same argmax)."""
        logits_int, scale, _ = self._run(images, record=False)
        factor = scale.detach().to(torch.float64) / self.config.timesteps  # 2**-f / T, rounded once as before
        return (logits_int * factor).to(torch.float32)

    @torch.no_grad()
    def integer_forward(self, images: torch.Tensor) -> IntegerRun:
        """The exact integer logits and every spiking layer's counts (T, B, *out_shape).

        Computed on the model's device, or inside ``toolchain.device.using_device(d)`` on ``d``;
        the results come back on the images' device (the same integers on every device)."""
        home = images.device
        with self.placed_on(current_device()):
            logits_int, _, spikes = self._run(images.to(self.device), record=True)
        if logits_int.device != home:
            logits_int, spikes = logits_int.to(home), {k: v.to(home) for k, v in spikes.items()}
        return IntegerRun(logits=logits_int, spikes=spikes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @contextlib.contextmanager
    def placed_on(self, device: torch.device | None):
        """Run the enclosed code with the model on ``device`` (None: where it is), then move it back."""
        home = self.device
        if device is None or torch.device(device) == home:
            yield self
            return
        self.to(device)
        try:
            yield self
        finally:
            self.to(home)
