"""Pricing: event counts -> time and energy. Pure functions, separate from counting.

``hw_model.simulator`` counts what every core does in every tick (``COUNT_KINDS``); this module
turns those counts into cycles and joules with a ``Target``'s figures. The same functions serve
the fast simulator, the cycle-stepped cross-check and the reports, so there is one definition
of the cost model (documented in docs/hardware_model.md section 3):

**Events counted per core per tick** (``COUNT_KINDS``)

- ``synapse_reads``: synapses driven by arriving events (a unary count k on an axon driving F
  synapses reads them k times; a graded event reads them once); priced by the core's synapse
  kind (conv, dense or sparse storage);
- ``compartments``: compartments allocated on the core, read every tick whether active or not;
- ``updates``: neurons whose state changes this tick (input arrived, membrane or bias nonzero);
- ``spikes_out``: spikes generated (unary: the count k; graded: one per nonzero count);
- ``messages_out`` / ``messages_in``: messages leaving / arriving (one per spike event and
  destination core, and one per nonzero partial sum);
- ``hops_x`` / ``hops_y``: router-to-router links crossed by the core's messages, per axis;
- ``input_spikes``: spikes of the input generator cores (free on the generator; their messages
  and hops are priced).

**A core's tick** (integer cycles of ``target.cycle_s``). Two streams overlap, as on Loihi (and
in SANA-FE's model of it): the *neuron stream* reads every compartment, updates the changed ones,
generates spikes and sends their messages; the *message stream* receives messages and reads
their synapses. A message cannot be processed before it arrives: the stream finishes no earlier
than the first arrival plus all the receive work, nor earlier than the last arrival plus one
message's worth of it (``receive_done_cycles``). The core's tick is the longer of the two
streams; the chip's tick is its busiest core's plus the synchronisation for the tiles in use
(``asap`` targets), or a fixed ``tick_s`` whose overruns are reported (``fixed`` targets).

**Energy** = events x joules per event (``dynamic_energy``), plus static power by an explicit
convention (``static_energy``): the whole chip's static power ("chip"), the share of the cores
in use ("used-cores"), or none ("none"), times the latency.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .target import STATIC_CONVENTIONS, Target, event_cycles

__all__ = [
    "COUNT_KINDS",
    "ENERGY_KINDS",
    "CorePrices",
    "core_prices",
    "worst_tick_cycles",
    "check_cycle_range",
    "MAX_TOTAL_CYCLES",
    "send_cycles",
    "receive_cycles",
    "receive_done_cycles",
    "dynamic_energy",
    "static_fraction",
    "static_energy",
]

COUNT_KINDS = ("synapse_reads", "compartments", "updates", "spikes_out", "messages_out", "messages_in", "hops_x",
               "hops_y", "input_spikes")
ENERGY_KINDS = ("synapse", "compartment", "update", "spike_out", "axon_out", "axon_in", "hop")


class CorePrices:
    """Per-core cycles and joules of every event (the synapse price depends on the core's
    synapse kind), built once per mapping. Arrays are (n_cores,)."""

    def __init__(self, target: Target, synapse_kinds: list[str]):
        cycles = event_cycles(target)
        self.target = target
        self.cycles = cycles
        self.synapse_kinds = tuple(synapse_kinds)
        self.synapse_cycles = np.array([cycles[f"synapse_{k}"] if k else 0 for k in synapse_kinds], dtype=np.int64)
        self.synapse_j = np.array([target.energy_j[f"synapse_{k}"] if k else 0.0 for k in synapse_kinds])


def core_prices(mapping) -> CorePrices:
    """The prices of ``mapping``'s cores: a layer's cores read synapses of its storage kind
    (conv and pool layers: conv; dense layers: dense); input generators read none."""
    kinds = []
    for core in mapping.cores:
        if core.is_input:
            kinds.append("")
        else:
            kinds.append(mapping.network.layers[core.layer_index].synapse_kind)
    return CorePrices(mapping.target, kinds)


MAX_TOTAL_CYCLES = 1 << 62  # every cycle sum (per tick, per sample, over all samples) stays below this


def worst_tick_cycles(mapping) -> int:
    """An upper bound (exact Python integer) on any core's cycles in one chip tick of
    ``mapping``, synchronisation included: every neuron spiking its largest count to every
    route, every synapse read as often as its input's largest count, every message crossing
    the longest route."""
    target, net = mapping.target, mapping.network
    cycles = event_cycles(target)
    per_tick = target.encoding == "unary" and target.multi_spike == "burst"  # k events in one tick
    routes_from = np.bincount([r.src for r in mapping.routes], minlength=mapping.n_cores)
    longest = max((r.hops_x * cycles["hop_x"] + r.hops_y * cycles["hop_y"] for r in mapping.routes), default=0)
    worst = 0
    for core, conn in zip(mapping.cores, mapping.connectivity):
        n = core.n_neurons
        smax = net.encoder.smax if core.is_input else net.layers[core.layer_index].neuron.smax
        k_out = max(1, smax) if per_tick else 1
        k_in = max(1, net.input_smax(core.layer_index)) if per_tick and not core.is_input else 1
        send = n * (cycles["compartment"] + cycles["update"] + k_out * cycles["spike_out"]
                    + k_out * int(routes_from[core.core_id]) * cycles["axon_out"])
        synapse = max(cycles[f"synapse_{kind}"] for kind in ("conv", "dense", "sparse"))
        receive = k_in * (conn.n_synapses * synapse + conn.n_axons * cycles["axon_in"]) + n * cycles["axon_in"]
        worst = max(worst, send + receive + longest + cycles["axon_out"])
    return worst + max(int(round(s / target.cycle_s)) for s in target.sync_s) + cycles["tick"]


def check_cycle_range(mapping, n_samples: int, ticks_per_sample: int) -> None:
    """Refuse a run whose cycle sums could overflow 64-bit integers: the worst tick x the chip
    ticks of a sample x the samples must stay below ``MAX_TOTAL_CYCLES``."""
    worst = worst_tick_cycles(mapping) * ticks_per_sample * max(1, int(n_samples))
    if worst >= MAX_TOTAL_CYCLES:
        target = mapping.target
        raise InputError(f"{target.path or target.name}: time.cycle_s: expected a cycle long enough that "
                         f"{n_samples} samples of this network stay below 2^62 cycles, found {target.cycle_s:g} s "
                         f"(worst case {worst:.3g} cycles)")


def _col(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A per-core array shaped to broadcast against counts of shape (n_cores, ...)."""
    return values.reshape((-1,) + (1,) * (counts.ndim - 1))


def send_cycles(counts: dict, prices: CorePrices) -> np.ndarray:
    """The neuron stream: compartment reads, updates, spikes generated, messages sent (int64)."""
    c = prices.cycles
    return (counts["compartments"] * c["compartment"] + counts["updates"] * c["update"]
            + counts["spikes_out"] * c["spike_out"] + counts["messages_out"] * c["axon_out"])


def receive_cycles(counts: dict, prices: CorePrices) -> np.ndarray:
    """The message stream's work: messages received and the synapses they read (int64)."""
    reads = counts["synapse_reads"]
    return counts["messages_in"] * prices.cycles["axon_in"] + reads * _col(prices.synapse_cycles, reads)


def receive_done_cycles(work: np.ndarray, messages_in: np.ndarray, first_arrival: np.ndarray,
                        last_arrival: np.ndarray) -> np.ndarray:
    """When the message stream ends: no earlier than the first arrival plus all the work, nor
    than the last arrival plus one message's mean work; 0 where nothing arrived (int64)."""
    per_message = work // np.maximum(messages_in, 1)
    done = np.maximum(first_arrival + work, last_arrival + per_message)
    return np.where(messages_in > 0, done, 0)


def dynamic_energy(counts: dict, prices: CorePrices) -> dict:
    """Joules per energy kind (``ENERGY_KINDS``) for counts of shape (n_cores, ...)."""
    e = prices.target.energy_j
    reads = counts["synapse_reads"]
    return {
        "synapse": reads * _col(prices.synapse_j, reads),
        "compartment": counts["compartments"] * e["compartment"],
        "update": counts["updates"] * e["update"],
        "spike_out": counts["spikes_out"] * e["spike_out"],
        "axon_out": counts["messages_out"] * e["axon_out"],
        "axon_in": counts["messages_in"] * e["axon_in"],
        "hop": counts["hops_x"] * e["hop_x"] + counts["hops_y"] * e["hop_y"],
    }


def static_fraction(target: Target, convention: str, cores_used: int) -> float:
    """The share of the chip's static power charged: 1 ("chip"), cores used / cores ("used-cores"), 0 ("none")."""
    if convention not in STATIC_CONVENTIONS:
        raise ValueError(f"static convention: expected one of {', '.join(STATIC_CONVENTIONS)}, found {convention!r}")
    if convention == "chip":
        return 1.0
    if convention == "used-cores":
        return min(1.0, cores_used / target.n_cores)
    return 0.0


def static_energy(latency_s, target: Target, convention: str, cores_used: int):
    """Static joules for ``latency_s`` seconds (scalar or array) under ``convention``."""
    return np.asarray(latency_s, dtype=np.float64) * target.static_power_w * static_fraction(target, convention,
                                                                                             cores_used)
