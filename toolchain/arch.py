"""The paper's architecture notation, e.g. ``15C5-P2-40C5-P2-300`` (pure Python, no torch).

Tokens, separated by ``-``:
- ``<channels>C<kernel>[p<padding>]``  convolution, stride 1, zero padding (default 0, "valid");
  ``32C3p1`` keeps the spatial size of a 3x3 convolution.
- ``P<kernel>``                         pooling: sum of a kernel x kernel window, stride kernel
                                        (floor), followed by MT-LIF neurons that average it.
- ``<units>``                           fully connected layer.
The readout (a fully connected layer with one output per class) is appended automatically:
``15C5-P2-40C5-P2-300`` on MNIST is 15C5, P2, 40C5, P2, 300, then 10 readout neurons.
Convolutions and pooling must come before the first fully connected layer.
"""

from __future__ import annotations

import math

import re
from dataclasses import dataclass
from typing import Union

from mtsnn.hw_model.errors import InputError

__all__ = ["ArchError", "ConvSpec", "PoolSpec", "DenseSpec", "parse_arch", "layer_shapes", "format_arch"]


class ArchError(InputError):
    """A malformed or impossible architecture string; the message names the token and position."""


@dataclass(frozen=True)
class ConvSpec:
    channels: int
    kernel: int
    padding: int = 0

    def __str__(self) -> str:
        return f"{self.channels}C{self.kernel}" + (f"p{self.padding}" if self.padding else "")


@dataclass(frozen=True)
class PoolSpec:
    kernel: int

    def __str__(self) -> str:
        return f"P{self.kernel}"


@dataclass(frozen=True)
class DenseSpec:
    units: int

    def __str__(self) -> str:
        return str(self.units)


LayerSpec = Union[ConvSpec, PoolSpec, DenseSpec]

_CONV = re.compile(r"(\d+)C(\d+)(?:p(\d+))?")
_POOL = re.compile(r"P(\d+)")
_DENSE = re.compile(r"(\d+)")
_EXPECTED = "<channels>C<kernel>[p<padding>] (e.g. 15C5), P<kernel> (e.g. P2) or <units> (e.g. 300)"


def _token_error(arch: str, index: int, offset: int, token: str, problem: str) -> ArchError:
    return ArchError(f"arch {arch!r}: token {index + 1} {token!r} at character {offset + 1}: {problem}")


def _parse_token(arch: str, index: int, offset: int, token: str) -> LayerSpec:
    if match := _CONV.fullmatch(token):
        channels, kernel, padding = int(match[1]), int(match[2]), int(match[3] or 0)
        if channels < 1 or kernel < 1:
            raise _token_error(arch, index, offset, token, "channels and kernel must be >= 1")
        if padding >= kernel:
            raise _token_error(arch, index, offset, token, f"padding {padding} must be < kernel {kernel}")
        return ConvSpec(channels, kernel, padding)
    if match := _POOL.fullmatch(token):
        if int(match[1]) < 1:
            raise _token_error(arch, index, offset, token, "pool kernel must be >= 1")
        return PoolSpec(int(match[1]))
    if match := _DENSE.fullmatch(token):
        if int(match[1]) < 1:
            raise _token_error(arch, index, offset, token, "units must be >= 1")
        return DenseSpec(int(match[1]))
    return _token_error(arch, index, offset, token, f"expected {_EXPECTED}")


def parse_arch(arch: str) -> tuple[LayerSpec, ...]:
    """Parse the hidden layers of an architecture string (the readout is not part of it)."""
    if not isinstance(arch, str) or not arch.strip():
        raise ArchError(f"arch {arch!r}: empty: expected tokens like 15C5-P2-40C5-P2-300")
    specs: list[LayerSpec] = []
    offset = 0
    seen_dense = False
    for index, token in enumerate(arch.split("-")):
        if not token:
            raise _token_error(arch, index, offset, token, f"empty token (doubled or trailing '-'): expected {_EXPECTED}")
        spec = _parse_token(arch, index, offset, token)
        if isinstance(spec, ArchError):
            raise spec
        if seen_dense and not isinstance(spec, DenseSpec):
            raise _token_error(arch, index, offset, token, "convolution/pooling after a fully connected layer")
        seen_dense = seen_dense or isinstance(spec, DenseSpec)
        specs.append(spec)
        offset += len(token) + 1
    return tuple(specs)


def format_arch(specs) -> str:
    return "-".join(str(spec) for spec in specs)


MAX_NEURONS_PER_LAYER = 1 << 21  # 2,097,152: 20x the paper's largest layer (96 x 32 x 32 on CIFAR-10)
MAX_WEIGHTS_PER_LAYER = 1 << 28  # 268 M weights (1 GiB in float32)


def _size_problem(spec: LayerSpec, in_shape: tuple, out: tuple) -> str | None:
    """Why a layer is too large to build (its neurons or weights), or None: checked before
    anything is allocated, so an architecture string cannot ask for tens of gigabytes."""
    neurons = math.prod(out)
    if neurons > MAX_NEURONS_PER_LAYER:
        return f"{neurons} neurons > {MAX_NEURONS_PER_LAYER}, the most one layer may have"
    if isinstance(spec, ConvSpec):
        weights = spec.channels * in_shape[0] * spec.kernel * spec.kernel
    elif isinstance(spec, DenseSpec):
        weights = spec.units * math.prod(in_shape)
    else:
        weights = 0
    if weights > MAX_WEIGHTS_PER_LAYER:
        return f"{weights} weights > {MAX_WEIGHTS_PER_LAYER}, the most one layer may have"
    return None


def layer_shapes(arch: str, input_shape: tuple, n_classes: int) -> list[tuple[LayerSpec, tuple, tuple]]:
    """[(spec, in_shape, out_shape)] for every layer including the readout; checks that each
    fits its input and stays within ``MAX_NEURONS_PER_LAYER`` / ``MAX_WEIGHTS_PER_LAYER``."""
    specs = parse_arch(arch)
    shape = tuple(input_shape)
    result = []
    offset = 0
    for index, spec in enumerate(specs):
        token = arch.split("-")[index]
        if isinstance(spec, ConvSpec):
            c, h, w = shape
            oh, ow = h + 2 * spec.padding - spec.kernel + 1, w + 2 * spec.padding - spec.kernel + 1
            if oh < 1 or ow < 1:
                raise _token_error(arch, index, offset, token, f"kernel {spec.kernel} does not fit the {h}x{w} input of this layer")
            out = (spec.channels, oh, ow)
        elif isinstance(spec, PoolSpec):
            c, h, w = shape
            if h < spec.kernel or w < spec.kernel:
                raise _token_error(arch, index, offset, token, f"pool {spec.kernel} does not fit the {h}x{w} input of this layer")
            out = (c, h // spec.kernel, w // spec.kernel)
        else:
            out = (spec.units,)
        problem = _size_problem(spec, shape, out)
        if problem:
            raise _token_error(arch, index, offset, token, problem)
        result.append((spec, shape, out))
        shape = out
        offset += len(token) + 1
    readout = DenseSpec(n_classes)
    problem = _size_problem(readout, shape, (n_classes,))
    if problem:
        raise ArchError(f"arch {arch!r}: the readout of {n_classes} classes: {problem}")
    result.append((readout, shape, (n_classes,)))
    return result
