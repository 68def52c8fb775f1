"""Mapping for an objective: fewest cores, lowest latency or lowest energy.

``map_network`` packs every core to its limits: the fewest cores. That is not the fastest
mapping: a core's neurons are read one after the other every tick, so a full core is a slow
core. ``map_for_objective`` maps the network with every per-core neuron cap in
``NEURON_CAPS`` (the target's limit, then halves of it), simulates a few calibration samples on
each (the detailed network model, so that spreading a layer over more cores pays for the
contention it adds) and keeps the mapping that is best for the objective:

- ``"cores"``: the fewest cores (no simulation needed);
- ``"latency"``: the lowest mean latency per sample;
- ``"energy"``: the lowest mean energy per sample, dynamic plus static under the given
  convention (with ``chip`` static power a faster mapping also spends less static energy).

The candidates and their figures are returned, so a report can show what was compared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .mapper import DesignRuleError, Mapping, map_network
from .target import Target

__all__ = ["OBJECTIVES", "Candidate", "neuron_caps", "map_for_objective"]

OBJECTIVES = ("cores", "latency", "energy")
MIN_CAP = 32


@dataclass(frozen=True)
class Candidate:
    """One mapping that was tried: its neuron cap, cores, and (simulated) latency and energy."""

    neuron_cap: int
    cores: int
    latency_s: float | None
    energy_j: float | None
    dynamic_energy_j: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def neuron_caps(target: Target) -> list[int]:
    """The per-core neuron limits tried: the target's, then halves of it down to ``MIN_CAP``."""
    caps, cap = [], target.neurons_per_core
    while cap >= MIN_CAP or not caps:
        caps.append(cap)
        cap //= 2
    return caps


def _evaluate(mapping: Mapping, images: np.ndarray, static: str) -> tuple[float, float, float]:
    from .noc import detailed_tick_cycles
    from .pricing import static_energy
    from .simulator import simulate

    result = simulate(mapping, images, workers=1)
    detailed = detailed_tick_cycles(mapping, images).sum(axis=0) * mapping.target.cycle_s
    dynamic = float(result.per_sample["dynamic_j"].mean())
    static_j = float(static_energy(detailed, mapping.target, static, mapping.n_cores).mean())
    return float(detailed.mean()), dynamic + static_j, dynamic


def map_for_objective(network, target: Target, objective: str = "cores", images: np.ndarray | None = None,
                      static: str | None = None) -> tuple[Mapping, list[Candidate]]:
    """(the best mapping for ``objective``, every candidate tried). ``images``: calibration
    samples (a few uint8 images) for "latency" and "energy"."""
    if objective not in OBJECTIVES:
        raise InputError(f"--objective: expected one of {', '.join(OBJECTIVES)}, found {objective!r}")
    if objective == "cores":
        mapping = map_network(network, target)
        return mapping, [Candidate(target.neurons_per_core, mapping.n_cores, None, None, None)]
    if images is None or len(images) == 0:
        raise InputError(f"--objective {objective}: expected calibration images to simulate, found none")
    static = static or target.static_default
    candidates, best = [], None
    for cap in neuron_caps(target):
        try:
            mapping = map_network(network, dataclasses.replace(target, neurons_per_core=cap))
        except DesignRuleError:  # more cores than the chip has: smaller caps only get worse
            break
        latency, energy, dynamic = _evaluate(mapping, images, static)
        candidates.append(Candidate(cap, mapping.n_cores, latency, energy, dynamic))
        score = latency if objective == "latency" else energy
        if best is None or score < best[0]:
            best = (score, dataclasses.replace(mapping, target=target))  # the cap was a choice, not the chip
    if best is None:
        return map_for_objective(network, target, "cores")
    return best[1], candidates
