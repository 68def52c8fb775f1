"""Random integer networks for differential tests and benchmarks (seeded, no training needed).

Layer specs are plain tuples: ``("conv", channels, kernel, padding)``, ``("pool", kernel)``,
``("dense", units)``; a readout dense layer of ``n_classes`` is appended.
"""

from __future__ import annotations

import numpy as np

from .network import (
    ConvLayer,
    DenseLayer,
    InputEncoder,
    IntegerNetwork,
    IntType,
    NeuronParams,
    PoolLayer,
    conv_output_hw,
)

__all__ = ["random_network", "random_images"]


def _weights(rng: np.random.Generator, shape: tuple, bits: int, extremes: bool) -> np.ndarray:
    limit = IntType(bits).max
    w = rng.integers(-limit, limit + 1, size=shape, dtype=np.int64)
    if extremes and w.size >= 2:  # make sure both ends of the range occur
        flat = w.reshape(-1)
        flat[0], flat[-1] = limit, -limit
    return w


def random_network(
    rng: np.random.Generator,
    input_shape: tuple = (1, 8, 8),
    layers: tuple = (("conv", 4, 3, 1), ("pool", 2), ("dense", 16)),
    n_classes: int = 10,
    *,
    timesteps: int = 2,
    smax: int = 15,
    weight_bits: int = 8,
    acc_bits: int = 20,
    delta: int = 410,
    theta_scale: float = 0.25,
    extremes: bool = True,
) -> IntegerNetwork:
    """A network with random integer weights and thresholds that make neurons fire.

    theta_int is drawn around ``theta_scale`` x the typical |I| of a layer so that activity is
    neither silent nor always saturated; small values push towards Smax clipping and, with a
    narrow ``acc_bits``, towards accumulator saturation.
    """
    shape = tuple(input_shape)
    built = []
    specs = list(layers) + [("dense", n_classes)]
    smax_in = smax
    for index, spec in enumerate(specs):
        readout = index == len(specs) - 1
        name = f"{spec[0]}{index + 1}"
        if spec[0] == "pool":
            k = spec[1]
            neuron = NeuronParams(theta_int=int(rng.integers(1, k * k + 1)), delta=0, smax=smax, acc_bits=acc_bits)
            layer = PoolLayer(name=name, in_shape=shape, neuron=neuron, readout=readout, kernel=k)
        else:
            if spec[0] == "conv":
                _, channels, kernel, padding = spec
                kernel = min(kernel, shape[1] + 2 * padding, shape[2] + 2 * padding)
                wshape = (channels, shape[0], kernel, kernel)
            else:
                wshape = (spec[1], int(np.prod(shape)))
            weight = _weights(rng, wshape, weight_bits, extremes)
            fan_in = int(np.prod(wshape[1:]))
            typical = max(1, int(np.sqrt(fan_in) * IntType(weight_bits).max * smax_in / 4))
            theta = int(np.clip(rng.integers(1, 2 * typical) * theta_scale, 1, 2 ** (acc_bits - 2)))
            bias_limit = min(IntType(acc_bits).max, typical)
            bias = rng.integers(-bias_limit, bias_limit + 1, size=wshape[0], dtype=np.int64)
            neuron = NeuronParams(theta_int=max(1, theta), delta=delta, smax=smax, acc_bits=acc_bits)
            if spec[0] == "conv":
                layer = ConvLayer(name=name, in_shape=shape, neuron=neuron, readout=readout, weight=weight,
                                  bias=bias, stride=1, padding=padding, weight_bits=weight_bits)
            else:
                layer = DenseLayer(name=name, in_shape=shape, neuron=neuron, readout=readout, weight=weight,
                                   bias=bias, weight_bits=weight_bits)
        built.append(layer)
        shape = layer.out_shape
        smax_in = smax
    encoder = InputEncoder(shape=tuple(input_shape), smax=smax)
    return IntegerNetwork(encoder=encoder, layers=tuple(built), timesteps=timesteps, n_classes=n_classes,
                          provenance={"source": "hw_model.synthetic.random_network"})


def random_images(rng: np.random.Generator, n: int, shape: tuple) -> np.ndarray:
    """uint8 images with the extremes 0 and 255 present."""
    images = rng.integers(0, 256, size=(n,) + tuple(shape), dtype=np.uint8)
    if images.size >= 2:
        images.reshape(-1)[:2] = (0, 255)
    return images
