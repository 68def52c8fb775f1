"""Integer network records: what a trained MT-SNN is once every number is an integer.

One frozen dataclass per record type, arrays stored read-only, ranges checked on construction
against ``IntType`` value objects. ``export`` builds these from a checkpoint; the core
description (``hw_model.coredesc``) serialises them; the reference, ONNX builder and simulator
run them. Shapes are per sample, channels first: conv/pool (C, H, W), dense (N,).

Layer types (the ``"type"`` tag in the core description, one registry: ``LAYER_TYPES``):
- ``conv``:  weight (O, C, kh, kw) int64, bias (O,) int64, square kernel, stride, zero padding.
- ``pool``:  sum pooling expressed as a depthwise conv with fixed all-ones weights, k x k,
             stride k; its neurons average (theta_int = k*k by default, set by export).
- ``dense``: weight (O, N) int64, bias (O,) int64; the input is flattened in (C, H, W) order.
Every layer but the last is followed by MT-LIF neurons (``NeuronParams``); the last is the
readout (``readout=True``): it integrates its input over the T steps without spiking, and the
logits are that integer sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .errors import InputError
from .neuron import DELTA_MAX

__all__ = [
    "NetworkError",
    "IntType",
    "NeuronParams",
    "InputEncoder",
    "ConvLayer",
    "PoolLayer",
    "DenseLayer",
    "Layer",
    "IntegerNetwork",
    "LAYER_TYPES",
    "SMAX_RANGE",
    "WEIGHT_BITS_RANGE",
    "ACC_BITS_RANGE",
    "conv_output_hw",
]

SMAX_RANGE = (1, 31)
WEIGHT_BITS_RANGE = (2, 16)
ACC_BITS_RANGE = (8, 32)
MAX_TIMESTEPS = 64


class NetworkError(InputError):
    """An integer network record is inconsistent or out of range."""


@dataclass(frozen=True)
class IntType:
    """A signed, symmetric integer type of ``bits`` bits: -(2**(bits-1) - 1) .. 2**(bits-1) - 1."""

    bits: int

    @property
    def max(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def min(self) -> int:
        return -self.max

    def check(self, values: np.ndarray, what: str) -> None:
        if values.size == 0:
            return
        lo, hi = int(values.min()), int(values.max())
        if lo < self.min or hi > self.max:
            bad = hi if hi > self.max else lo
            raise NetworkError(
                f"{what}: value {bad} outside the {self.bits}-bit signed range {self.min}..{self.max}"
            )


def _check_range(value: int, lo: int, hi: int, what: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise NetworkError(f"{what}: expected an integer, found {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise NetworkError(f"{what}: expected {lo}..{hi}, found {value}")


def _frozen_int64(array: Any, what: str, ndim: int) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype.kind not in "iu":
        raise NetworkError(f"{what}: expected an integer array, found dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise NetworkError(f"{what}: expected {ndim} dimensions, found shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise NetworkError(f"{what}: value {int(arr.max())} does not fit int64")
    arr = np.ascontiguousarray(arr, dtype=np.int64).copy()
    arr.flags.writeable = False
    return arr


def conv_output_hw(h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class NeuronParams:
    """MT-LIF parameters of one layer's neurons, all integers (docs/semantics.md)."""

    theta_int: int  # threshold in membrane units (> 0); float threshold = theta_int * 2**-f
    delta: int  # 12-bit leak: V <- trunc(V * (4096 - delta) / 4096); 0 = pure integrator
    smax: int  # most spikes a neuron emits in one step (1..31)
    acc_bits: int  # membrane accumulator width A (saturates at +-(2**(A-1) - 1))

    def __post_init__(self) -> None:
        _check_range(self.acc_bits, *ACC_BITS_RANGE, "neuron.acc_bits")
        _check_range(self.theta_int, 1, 2 ** (self.acc_bits - 1) - 1, "neuron.theta_int")
        _check_range(self.delta, 0, DELTA_MAX, "neuron.delta")
        _check_range(self.smax, *SMAX_RANGE, "neuron.smax")


@dataclass(frozen=True)
class InputEncoder:
    """uint8 pixel p -> spike count (p * smax + 127) // 255 at every step ("rate_count")."""

    shape: tuple[int, ...]  # (C, H, W) of the uint8 input image
    smax: int  # largest count the encoder emits (255 -> smax)
    kind: str = "rate_count"

    def __post_init__(self) -> None:
        if self.kind != "rate_count":
            raise NetworkError(f"encoder.kind: expected 'rate_count', found {self.kind!r}")
        _check_range(self.smax, *SMAX_RANGE, "encoder.smax")
        if len(self.shape) != 3 or any(int(d) < 1 for d in self.shape):
            raise NetworkError(f"encoder.shape: expected (C, H, W) of positive sizes, found {self.shape}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))


@dataclass(frozen=True, eq=False)
class _LayerBase:
    name: str
    in_shape: tuple[int, ...]
    neuron: NeuronParams
    readout: bool
    # float <-> integer provenance: weight_scale_exp f (float = int * 2**-f), float threshold,
    # training bits ... free-form JSON-able mapping, never needed to *run* the network.
    provenance: dict = field(default_factory=dict)

    def _check_common(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise NetworkError(f"layer name: expected a non-empty string, found {self.name!r}")
        object.__setattr__(self, "in_shape", tuple(int(d) for d in self.in_shape))

    def __eq__(self, other: object) -> bool:  # array-aware equality
        if type(self) is not type(other):
            return NotImplemented
        for key in self.__dataclass_fields__:
            a, b = getattr(self, key), getattr(other, key)
            if isinstance(a, np.ndarray):
                if not (a.shape == b.shape and np.array_equal(a, b)):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_neurons(self) -> int:
        return math.prod(self.out_shape)


@dataclass(frozen=True, eq=False)
class ConvLayer(_LayerBase):
    weight: np.ndarray = None  # (O, C, k, k) int64, weight_bits-bit signed
    bias: np.ndarray = None  # (O,) int64, within the accumulator range
    stride: int = 1
    padding: int = 0
    weight_bits: int = 8
    type_tag = "conv"

    def __post_init__(self) -> None:
        self._check_common()
        object.__setattr__(self, "weight", _frozen_int64(self.weight, f"{self.name}.weight", 4))
        object.__setattr__(self, "bias", _frozen_int64(self.bias, f"{self.name}.bias", 1))
        _check_range(self.weight_bits, *WEIGHT_BITS_RANGE, f"{self.name}.weight_bits")
        IntType(self.weight_bits).check(self.weight, f"{self.name}.weight")
        IntType(self.neuron.acc_bits).check(self.bias, f"{self.name}.bias")
        o, c, kh, kw = self.weight.shape
        if kh != kw:
            raise NetworkError(f"{self.name}.weight: expected a square kernel, found {kh}x{kw}")
        if self.bias.shape != (o,):
            raise NetworkError(f"{self.name}.bias: expected shape ({o},), found {self.bias.shape}")
        if len(self.in_shape) != 3 or self.in_shape[0] != c:
            raise NetworkError(f"{self.name}.in_shape: expected ({c}, H, W), found {self.in_shape}")
        _check_range(self.stride, 1, 64, f"{self.name}.stride")
        _check_range(self.padding, 0, kh - 1, f"{self.name}.padding")
        oh, ow = conv_output_hw(self.in_shape[1], self.in_shape[2], kh, self.stride, self.padding)
        if oh < 1 or ow < 1:
            raise NetworkError(f"{self.name}: kernel {kh} does not fit input {self.in_shape}")

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[2])

    synapse_kind = "conv"  # how a chip stores its synapses (hw_model.target.SYNAPSE_KINDS)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        oh, ow = conv_output_hw(self.in_shape[1], self.in_shape[2], self.kernel, self.stride, self.padding)
        return (int(self.weight.shape[0]), oh, ow)

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight.shape[1:]))


@dataclass(frozen=True, eq=False)
class PoolLayer(_LayerBase):
    kernel: int = 2  # k x k window, stride k, all-ones weights (1-bit, implicit)
    type_tag = "pool"

    def __post_init__(self) -> None:
        self._check_common()
        _check_range(self.kernel, 1, 64, f"{self.name}.kernel")
        if len(self.in_shape) != 3:
            raise NetworkError(f"{self.name}.in_shape: expected (C, H, W), found {self.in_shape}")
        if self.in_shape[1] < self.kernel or self.in_shape[2] < self.kernel:
            raise NetworkError(f"{self.name}: pool {self.kernel} does not fit input {self.in_shape}")

    @property
    def stride(self) -> int:
        return self.kernel

    synapse_kind = "conv"  # a depthwise all-ones convolution

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return (c, h // self.kernel, w // self.kernel)

    @property
    def fan_in(self) -> int:
        return self.kernel * self.kernel


@dataclass(frozen=True, eq=False)
class DenseLayer(_LayerBase):
    weight: np.ndarray = None  # (O, N) int64
    bias: np.ndarray = None  # (O,) int64
    weight_bits: int = 8
    type_tag = "dense"
    synapse_kind = "dense"  # every (input, neuron) pair stored, zero weights included

    def __post_init__(self) -> None:
        self._check_common()
        object.__setattr__(self, "weight", _frozen_int64(self.weight, f"{self.name}.weight", 2))
        object.__setattr__(self, "bias", _frozen_int64(self.bias, f"{self.name}.bias", 1))
        _check_range(self.weight_bits, *WEIGHT_BITS_RANGE, f"{self.name}.weight_bits")
        IntType(self.weight_bits).check(self.weight, f"{self.name}.weight")
        IntType(self.neuron.acc_bits).check(self.bias, f"{self.name}.bias")
        o, n = self.weight.shape
        if self.bias.shape != (o,):
            raise NetworkError(f"{self.name}.bias: expected shape ({o},), found {self.bias.shape}")
        if math.prod(self.in_shape) != n:
            raise NetworkError(
                f"{self.name}.in_shape: {self.in_shape} flattens to {math.prod(self.in_shape)}, "
                f"but the weight expects {n} inputs"
            )

    @property
    def out_shape(self) -> tuple[int]:
        return (int(self.weight.shape[0]),)

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[1])


Layer = Union[ConvLayer, PoolLayer, DenseLayer]
LAYER_TYPES: dict[str, type] = {"conv": ConvLayer, "pool": PoolLayer, "dense": DenseLayer}


@dataclass(frozen=True, eq=False)
class IntegerNetwork:
    """The whole integer network: encoder, layers in order, time steps, class count."""

    encoder: InputEncoder
    layers: tuple
    timesteps: int
    n_classes: int
    provenance: dict = field(default_factory=dict)  # arch string, training T/Smax/bits, accuracy ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        _check_range(self.timesteps, 1, MAX_TIMESTEPS, "timesteps")
        if not self.layers:
            raise NetworkError("layers: expected at least one layer, found none")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise NetworkError(f"layers: names must be unique, found {names}")
        shape = self.encoder.shape
        smax_in = self.encoder.smax
        for index, layer in enumerate(self.layers):
            is_last = index == len(self.layers) - 1
            if layer.readout != is_last:
                raise NetworkError(
                    f"{layer.name}.readout: expected {is_last} (only the last layer is the readout)"
                )
            expected = shape if not isinstance(layer, DenseLayer) else layer.in_shape
            if isinstance(layer, DenseLayer):
                if math.prod(shape) != layer.fan_in:
                    raise NetworkError(
                        f"{layer.name}: expects {layer.fan_in} inputs, previous layer gives {shape}"
                    )
            elif tuple(layer.in_shape) != tuple(expected) or tuple(layer.in_shape) != tuple(shape):
                raise NetworkError(f"{layer.name}.in_shape: expected {shape}, found {layer.in_shape}")
            shape = layer.out_shape
            smax_in = layer.neuron.smax
        if math.prod(shape) != self.n_classes:
            raise NetworkError(f"n_classes: the readout has {math.prod(shape)} outputs, found {self.n_classes}")
        del smax_in

    def input_smax(self, index: int) -> int:
        """Largest spike count that can arrive at layer ``index``'s synapses."""
        return self.encoder.smax if index == 0 else self.layers[index - 1].neuron.smax

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntegerNetwork):
            return NotImplemented
        return (
            self.encoder == other.encoder
            and len(self.layers) == len(other.layers)
            and all(a == b for a, b in zip(self.layers, other.layers))
            and self.timesteps == other.timesteps
            and self.n_classes == other.n_classes
            and self.provenance == other.provenance
        )

    __hash__ = None  # type: ignore[assignment]
