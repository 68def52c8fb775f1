"""Deployment lints, measured on evaluation data with the integer reference.

Per spiking layer: the fraction of neuron-steps clipped at Smax (floor(U/theta) > Smax, so
information was lost), accumulator saturations, whether the layer stayed silent, and the
threshold rounding error from float to integer. Warnings are returned as sentences; the
export command prints them and writes them to its JSON report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mtsnn.hw_model.network import IntegerNetwork
from mtsnn.hw_model.reference import ReferenceResult

__all__ = ["LayerLint", "lint_network", "lint_warnings", "SMAX_CLIP_WARN_FRACTION"]

SMAX_CLIP_WARN_FRACTION = 0.01


@dataclass(frozen=True)
class LayerLint:
    layer: str
    neuron_steps: int
    smax_clipped: int
    smax_clipped_fraction: float
    accumulator_saturations: int
    spikes: int
    silent: bool
    threshold_rounding_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def lint_network(net: IntegerNetwork, result: ReferenceResult, samples: int) -> list[LayerLint]:
    lints = []
    for layer in net.layers:
        steps = samples * net.timesteps * math.prod(layer.out_shape)
        spikes = int(result.spikes[layer.name].sum(dtype="int64")) if layer.name in result.spikes else -1
        clipped = result.smax_clipped.get(layer.name, 0)
        lints.append(LayerLint(
            layer=layer.name,
            neuron_steps=steps,
            smax_clipped=clipped,
            smax_clipped_fraction=clipped / steps if steps else 0.0,
            accumulator_saturations=result.saturations.get(layer.name, 0),
            spikes=spikes,
            silent=(spikes == 0 and not layer.readout),
            threshold_rounding_error=float(layer.provenance.get("threshold_rounding_error", 0.0)),
        ))
    return lints


def lint_warnings(lints: list[LayerLint], smax: int | None = None) -> list[str]:
    warnings = []
    for lint in lints:
        if lint.smax_clipped_fraction > SMAX_CLIP_WARN_FRACTION:
            warnings.append(f"{lint.layer}: {100 * lint.smax_clipped_fraction:.2f}% of neuron-steps clipped at Smax "
                            f"({lint.smax_clipped} of {lint.neuron_steps}): raise --smax or lower the input scale")
        if lint.accumulator_saturations:
            warnings.append(f"{lint.layer}: {lint.accumulator_saturations} accumulator saturations: raise --acc-bits")
        if lint.silent:
            warnings.append(f"{lint.layer}: silent on the evaluation data (no spike at all)")
        if lint.threshold_rounding_error > 0:
            warnings.append(f"{lint.layer}: threshold rounded to an integer with relative error "
                            f"{lint.threshold_rounding_error:.2e}")
    return warnings
