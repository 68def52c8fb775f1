"""Checkpoint -> integer network: read each layer's integer weights, biases and thresholds.

The QAT model already computes in integers (toolchain.model); this module only reads them out.
Provenance recorded per layer: ``weight_scale_exp`` f (float weight = W_int * 2**-f), the float
threshold and its exact value in integer units, the threshold rounding error, and the bits.
"""

from __future__ import annotations

import math

import numpy as np

from mtsnn.hw_model.network import ConvLayer, DenseLayer, InputEncoder, IntegerNetwork, NeuronParams, PoolLayer

__all__ = ["to_integer_network"]


def _neuron(model, index: int, f: int) -> NeuronParams:
    config = model.neuron_config(index)
    return NeuronParams(theta_int=model.theta_int(index, f), delta=config.delta, smax=config.smax,
                        acc_bits=config.acc_bits)


def _synaptic_layer(model, index: int, name: str, in_shape: tuple, readout: bool):
    synapse = model.synapses[name]
    q = synapse.quantized()
    f = q.f
    weight = q.weight_int.long().numpy()
    bias = q.bias_int.long().numpy() if q.bias_int is not None else np.zeros(weight.shape[0], dtype=np.int64)
    neuron = _neuron(model, index, f)
    theta_exact = model.config.theta * 2.0**f
    provenance = {
        "weight_scale_exp": f,
        "weight_scale": 2.0**-f,
        "theta": model.config.theta,
        "theta_int_exact": theta_exact,
        "threshold_rounding_error": abs(neuron.theta_int - theta_exact) / theta_exact,
        "bits": model.config.bits,
    }
    common = dict(name=name, in_shape=in_shape, neuron=neuron, readout=readout, weight=weight, bias=bias,
                  weight_bits=model.config.bits, provenance=provenance)
    if synapse.kind == "conv":
        return ConvLayer(stride=1, padding=synapse.padding, **common)
    return DenseLayer(**common)


def to_integer_network(model, provenance: dict | None = None) -> IntegerNetwork:
    """The integer network that ``model`` (an eval-mode toolchain.model.MTSNN) computes."""
    config = model.config
    layers = []
    last = len(model.layer_names) - 1
    for index, name in enumerate(model.layer_names):
        _, in_shape, _ = model.shapes[index]
        if model.layer_kinds[index] == "pool":
            k = model.pool_kernel(index)
            layers.append(PoolLayer(name=name, in_shape=in_shape, neuron=_neuron(model, index, 0), readout=False,
                                    kernel=k, provenance={"average_of": k * k}))
        else:
            layers.append(_synaptic_layer(model, index, name, in_shape, readout=index == last))
    meta = {
        "arch": config.arch,
        "bits": config.bits,
        "timesteps": config.timesteps,
        "smax": config.smax,
        "acc_bits": config.acc_bits,
        "tau": config.tau if math.isfinite(config.tau) else None,
        "theta": config.theta,
        "surrogate": {"curve": config.surrogate.curve, "a": config.surrogate.a, "b": config.surrogate.b},
    }
    meta.update(provenance or {})
    return IntegerNetwork(encoder=InputEncoder(shape=config.input_shape, smax=config.smax), layers=tuple(layers),
                          timesteps=config.timesteps, n_classes=config.n_classes, provenance=meta)
