"""Bit-accurate, vectorised simulation of a mapped network, tick by tick, with event counts.

**Schedule.** One network time step t is one tick of a layer. Layers are pipelined as on the
chips (each layer adds one tick of synaptic delay): layer l processes step t during tick
``t + l``, so a sample takes ``T + L - 1`` ticks (L layers). Within a tick every active core
works in parallel. The arithmetic is the integer contract of DESIGN.md section 2, unchanged:
each core computes the synaptic input of *its* neurons from *its* slice of the weights (neuron
slice x fan-in group), partial sums of the fan-in groups are added at the soma core together
with the bias, and ``hw_model.neuron.mtlif_step`` / ``readout_step`` run the neurons. Spike
outputs and logits are therefore identical to ``hw_model.reference.run_reference``.

**Counts per core per tick** (``COUNT_KINDS``), a count k of spikes arriving on one axon:

- ``input_events``: unary k (k single-bit spikes); graded 1 if k > 0 (one event carries k).
- ``sops``: unary k x (synapses the axon drives in this core), the sinabs/keras-spiking
  convention and what TrueNorth / Loihi 1 hardware does; graded (synapses driven) per nonzero
  input, i.e. one multiply-accumulate per synapse per graded event (its energy is UNCONFIRMED).
- ``updates`` / ``active_updates``: every neuron of a soma core is updated every tick (leak and
  bias act even without input); "active" = it received at least one input event this tick.
- ``spikes``: sum of output counts; ``spike_events``: neurons with a nonzero count.
- ``packets``: messages a core sends: one per (output event, destination core that listens to
  that neuron) for spikes (unary: k per count, graded: 1), plus one per nonzero partial sum a
  fan-in-group core sends to its soma core. ``hops_x`` / ``hops_y``: packets x XY hops per axis.

**Pipeline (counts -> time, integer cycles of ``target.cycle_s``)**:
``core_cycles = sops * c_sop + active_updates * c_update_active + inactive * c_update_inactive``;
a packet's latency is ``c_packet + hops_x * c_hop_x + hops_y * c_hop_y``; the mesh drain of a
tick is ``max(longest packet latency, busiest directed link's packets * c_link_packet)``;
``asap`` targets: ``tick = max(core_cycles) + drain + c_barrier``; ``fixed`` targets: every tick
lasts ``tick_s`` and a tick whose work exceeds it is counted as an overrun.

**Energy (pricing, separate from counting)**: ``price_energy``: events x energy per event,
plus ``static_power_w x latency``.

Memory stays bounded: ``simulate`` streams batches and keeps per-core totals plus a few scalars
per sample (latency, energy, SOPs) for the mean / p50 / p99 statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .mapper import Mapping
from .network import ConvLayer, DenseLayer
from .neuron import encode_pixels, mtlif_step, readout_step
from .reference import check_images, predict
from .synapse import exact_gemm_dtype, im2col, partial_sum_bound
from .target import Target, event_cycles

__all__ = [
    "COUNT_KINDS",
    "ENERGY_KINDS",
    "BatchActivity",
    "SimulationResult",
    "n_ticks",
    "route_latency_cycles",
    "core_cycles_from_counts",
    "tick_cycles_from",
    "price_energy",
    "simulate_batch",
    "simulate",
    "summarize",
]

COUNT_KINDS = (
    "input_events",
    "sops",
    "updates",
    "active_updates",
    "spikes",
    "spike_events",
    "packets",
    "hops_x",
    "hops_y",
)
ENERGY_KINDS = ("sop", "update", "packet", "hop", "static")


def n_ticks(mapping: Mapping) -> int:
    """Ticks per sample: T steps plus one tick of pipeline delay per layer after the first."""
    return mapping.network.timesteps + len(mapping.network.layers) - 1


def route_latency_cycles(hops_x: np.ndarray, hops_y: np.ndarray, cycles: dict) -> np.ndarray:
    """Cycles from a packet's injection to its delivery (int64, elementwise)."""
    return cycles["packet"] + np.asarray(hops_x, np.int64) * cycles["hop_x"] + np.asarray(hops_y, np.int64) * cycles["hop_y"]


def core_cycles_from_counts(counts: dict, cycles: dict) -> np.ndarray:
    """The per-core pipeline: SOPs, then neuron updates (active / inactive); int64, any shape."""
    active = counts["active_updates"]
    return counts["sops"] * cycles["sop"] + active * cycles["update_active"] + (
        counts["updates"] - active
    ) * cycles["update_inactive"]


def tick_cycles_from(core_cycles: np.ndarray, drain_cycles: np.ndarray, target: Target, cycles: dict):
    """(tick cycles, overrun mask) from (n_cores, n_ticks, B) core cycles and (n_ticks, B) drain."""
    work = core_cycles.max(axis=0) + drain_cycles + cycles["barrier"]
    if target.time_model == "fixed":
        return np.full_like(work, cycles["tick"]), work > cycles["tick"]
    return work, np.zeros(work.shape, dtype=bool)


def price_energy(totals: dict, latency_s, target: Target) -> dict:
    """Joules per energy kind from event totals (any array shape) and the elapsed seconds."""
    inactive = totals["updates"] - totals["active_updates"]
    return {
        "sop": totals["sops"] * target.energy_sop_j,
        "update": totals["active_updates"] * target.energy_update_active_j + inactive * target.energy_update_inactive_j,
        "packet": totals["packets"] * target.energy_packet_j,
        "hop": totals["hops_x"] * target.energy_hop_x_j + totals["hops_y"] * target.energy_hop_y_j,
        "static": np.asarray(latency_s, dtype=np.float64) * target.static_power_w,
    }


# ----------------------------------------------------------------------------- per-layer plans


@dataclass(frozen=True, eq=False)
class _LayerPlan:
    index: int
    layer: object
    cores: tuple  # CoreSpec of the layer
    gemm_dtype: np.dtype
    weight: np.ndarray | None  # (O, K) cast to gemm_dtype (conv / dense)
    bias: np.ndarray  # (n_out,) int64 bias per neuron (zeros for pool)
    axon_matrix: np.ndarray  # (n_in, n_cores_l) float64: 1 where the core listens to the input
    fanout_matrix: np.ndarray  # (n_in, n_cores_l) float64: synapses the input drives in the core
    spike_routes: np.ndarray  # (n_out, n_spike_routes) float64 neuron -> route incidence
    route_ids: np.ndarray  # (n_routes_l,) int: spike routes first, then partial-sum routes
    route_src_local: np.ndarray  # (n_routes_l,) index of the source core within the layer
    psum_route_of_core: dict  # local core index -> column of its partial-sum route
    route_hops: np.ndarray  # (n_routes_l, 2) int64
    route_latency: np.ndarray  # (n_routes_l,) int64 cycles
    route_links: np.ndarray  # (n_routes_l, n_links) float64 incidence


def _layer_plans(mapping: Mapping, cycles: dict) -> list[_LayerPlan]:
    plans = []
    net = mapping.network
    n_links = len(mapping.links)
    for index, layer in enumerate(net.layers):
        core_ids = mapping.layer_cores[index]
        cores = tuple(mapping.cores[c] for c in core_ids)
        n_in = int(np.prod(layer.in_shape))
        axon_matrix = np.zeros((n_in, len(core_ids)))
        fanout_matrix = np.zeros((n_in, len(core_ids)))
        for local, core_id in enumerate(core_ids):
            conn = mapping.connectivity[core_id]
            axon_matrix[conn.axons, local] = 1.0
            fanout_matrix[conn.axons, local] = conn.fanout
        dtype = exact_gemm_dtype(partial_sum_bound(layer, net.input_smax(index)))
        weight, bias = None, np.zeros(layer.n_neurons, dtype=np.int64)
        if isinstance(layer, ConvLayer):
            weight = layer.weight.reshape(layer.weight.shape[0], -1).astype(dtype)
            bias = np.repeat(layer.bias, layer.out_shape[1] * layer.out_shape[2])
        elif isinstance(layer, DenseLayer):
            weight = layer.weight.astype(dtype)
            bias = layer.bias.copy()
        spike_ids = list(mapping.spike_route_ids[index])
        local_of = {core_id: local for local, core_id in enumerate(core_ids)}
        psum_ids = [r.route_id for r in mapping.routes if r.layer_index == index and r.kind == "partial_sum"]
        route_ids = np.array(spike_ids + psum_ids, dtype=np.int64)
        routes = [mapping.routes[r] for r in route_ids]
        hops = np.array([[r.hops_x, r.hops_y] for r in routes], dtype=np.int64).reshape(-1, 2)
        links = np.zeros((len(routes), n_links))
        for row, route in enumerate(routes):
            links[row, list(route.links)] = 1.0
        plans.append(
            _LayerPlan(
                index=index,
                layer=layer,
                cores=cores,
                gemm_dtype=dtype,
                weight=weight,
                bias=bias,
                axon_matrix=axon_matrix,
                fanout_matrix=fanout_matrix,
                spike_routes=np.asarray(mapping.spike_route_neurons[index]),
                route_ids=route_ids,
                route_src_local=np.array([local_of[r.src] for r in routes], dtype=np.int64),
                psum_route_of_core={local_of[mapping.routes[r].src]: len(spike_ids) + i for i, r in enumerate(psum_ids)},
                route_hops=hops,
                route_latency=route_latency_cycles(hops[:, 0], hops[:, 1], cycles),
                route_links=links,
            )
        )
    return plans


def _layer_patches(layer, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """conv: (B, P, K) in gemm dtype; pool: (B, C, P, k*k) int64; dense: (B, N) in gemm dtype."""
    b = x.shape[0]
    if isinstance(layer, DenseLayer):
        return x.reshape(b, -1).astype(dtype)
    if isinstance(layer, ConvLayer):
        return im2col(x, layer.kernel, layer.stride, layer.padding).reshape(b, -1, layer.fan_in).astype(dtype)
    k = layer.kernel
    c, oh, ow = layer.out_shape
    cropped = x[:, :, : oh * k, : ow * k].astype(np.int64, copy=False)
    return cropped.reshape(b, c, oh, k, ow, k).transpose(0, 1, 2, 4, 3, 5).reshape(b, c, oh * ow, k * k)


def _core_partial_input(plan: _LayerPlan, patches: np.ndarray, core) -> np.ndarray:
    """The synaptic input of the core's neurons from its own weight slice, no bias: (B, n) int64."""
    layer = plan.layer
    (n0, n1), (c0, c1) = core.neurons, core.fan_in
    if isinstance(layer, DenseLayer):
        return (patches[:, c0:c1] @ plan.weight[n0:n1, c0:c1].T).astype(np.int64)
    positions = layer.out_shape[1] * layer.out_shape[2]
    out = np.empty((patches.shape[0], n1 - n0), dtype=np.int64)
    for channel in range(n0 // positions, (n1 - 1) // positions + 1):
        p0 = max(n0 - channel * positions, 0)
        p1 = min(n1 - channel * positions, positions)
        dst = slice(channel * positions + p0 - n0, channel * positions + p1 - n0)
        if isinstance(layer, ConvLayer):
            out[:, dst] = patches[:, p0:p1, c0:c1] @ plan.weight[channel, c0:c1]
        else:  # pool: all-ones weights
            out[:, dst] = patches[:, channel, p0:p1, c0:c1].sum(axis=-1)
    return out


def _neurons_with_input(layer, x: np.ndarray) -> np.ndarray:
    """(B, n_out) bool: the neuron has at least one connected input with a nonzero count."""
    b = x.shape[0]
    nonzero = (x != 0).astype(np.int8)
    if isinstance(layer, DenseLayer):
        return np.broadcast_to(nonzero.reshape(b, -1).any(axis=1)[:, None], (b, layer.n_neurons))
    if isinstance(layer, ConvLayer):
        patches = im2col(nonzero, layer.kernel, layer.stride, layer.padding)  # (B, OH, OW, K)
        return np.tile(patches.any(axis=-1).reshape(b, -1), (1, layer.out_shape[0]))
    return _layer_patches(layer, nonzero, np.int64).any(axis=-1).reshape(b, -1)


def _matmul_counts(events: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Exact integer counts events (B, N) @ matrix (N, M) via float64 (values far below 2**53)."""
    return np.rint(events.astype(np.float64) @ matrix).astype(np.int64)


# ----------------------------------------------------------------------------- one batch


@dataclass
class BatchActivity:
    """Everything a batch of B samples did. Per-core arrays are indexed (core id, tick, sample)."""

    logits: np.ndarray  # (B, n_classes) int64
    spikes: dict  # layer name -> (T, B, *out_shape) uint8 (empty unless record_spikes)
    saturations: dict  # layer name -> neuron-steps clipped at the accumulator limit
    counts: dict  # kind -> (n_cores, n_ticks, B) int64
    core_cycles: np.ndarray  # (n_cores, n_ticks, B) int64
    drain_cycles: np.ndarray  # (n_ticks, B) int64
    max_link_load: np.ndarray  # (n_ticks, B) int64 packets on the busiest directed link
    link_load: np.ndarray  # (n_links,) int64 packets per link, summed over ticks and samples
    tick_cycles: np.ndarray  # (n_ticks, B) int64
    overruns: np.ndarray  # (n_ticks, B) bool (fixed-tick targets: work longer than the tick)


def simulate_batch(mapping: Mapping, images: np.ndarray, *, record_spikes: bool = False,
                   _plans: list | None = None) -> BatchActivity:
    """Run one batch of uint8 images (B, C, H, W) on the mapped cores."""
    net, target = mapping.network, mapping.target
    images = check_images(net, images)
    cycles = event_cycles(target)
    plans = _plans if _plans is not None else _layer_plans(mapping, cycles)
    b, steps, ticks = images.shape[0], net.timesteps, n_ticks(mapping)
    unary = target.encoding == "unary"
    counts = {kind: np.zeros((mapping.n_cores, ticks, b), dtype=np.int64) for kind in COUNT_KINDS}
    drain = np.zeros((ticks, b), dtype=np.int64)
    link_tick = np.zeros((ticks, b, len(mapping.links)), dtype=np.int64)
    spikes, saturations = {}, {}
    inputs = [encode_pixels(images, net.encoder.smax)] * steps
    logits = None
    for plan in plans:
        layer, p = plan.layer, plan.layer.neuron
        core_ids = np.array([c.core_id for c in plan.cores], dtype=np.int64)
        v = np.zeros((b, layer.n_neurons), dtype=np.int64)
        layer_spikes = np.zeros((steps, b) + tuple(layer.out_shape), np.uint8) if not layer.readout else None
        clipped_total = 0
        for t in range(steps):
            tick = t + plan.index
            x = inputs[t]
            flat = x.reshape(b, -1)
            arriving = flat if unary else (flat > 0)
            counts["input_events"][core_ids, tick] = _matmul_counts(arriving, plan.axon_matrix).T
            counts["sops"][core_ids, tick] = _matmul_counts(arriving, plan.fanout_matrix).T
            patches = _layer_patches(layer, x, plan.gemm_dtype)
            current = np.zeros((b, layer.n_neurons), dtype=np.int64)
            route_packets = np.zeros((b, plan.route_ids.size), dtype=np.int64)
            for local, core in enumerate(plan.cores):
                partial = _core_partial_input(plan, patches, core)
                current[:, core.neurons[0] : core.neurons[1]] += partial
                if not core.soma:
                    route_packets[:, plan.psum_route_of_core[local]] = (partial != 0).sum(axis=1)
            current += plan.bias
            has_input = _neurons_with_input(layer, x)
            if layer.readout:
                v, clipped = readout_step(v, current, p.acc_bits)
                s = None
            else:
                s, v, clipped = mtlif_step(v, current, p.theta_int, p.delta, p.smax, p.acc_bits)
                layer_spikes[t] = s.reshape((b,) + tuple(layer.out_shape))
                outgoing = s if unary else (s > 0)
                n_spike_routes = plan.spike_routes.shape[1]
                route_packets[:, :n_spike_routes] = _matmul_counts(outgoing, plan.spike_routes)
            clipped_total += int(clipped.sum())
            for local, core in enumerate(plan.cores):
                if not core.soma:
                    continue
                n0, n1 = core.neurons
                counts["updates"][core.core_id, tick] = n1 - n0
                counts["active_updates"][core.core_id, tick] = has_input[:, n0:n1].sum(axis=1)
                if s is not None:
                    counts["spikes"][core.core_id, tick] = s[:, n0:n1].sum(axis=1)
                    counts["spike_events"][core.core_id, tick] = (s[:, n0:n1] > 0).sum(axis=1)
            if plan.route_ids.size:
                per_core = np.zeros((b, len(plan.cores)), dtype=np.int64)
                np.add.at(per_core.T, plan.route_src_local, route_packets.T)
                counts["packets"][core_ids, tick] = per_core.T
                for axis, kind in enumerate(("hops_x", "hops_y")):
                    hop = np.zeros((b, len(plan.cores)), dtype=np.int64)
                    np.add.at(hop.T, plan.route_src_local, (route_packets * plan.route_hops[:, axis]).T)
                    counts[kind][core_ids, tick] = hop.T
                latency = np.where(route_packets > 0, plan.route_latency, 0).max(axis=1)
                drain[tick] = np.maximum(drain[tick], latency)
                link_tick[tick] += _matmul_counts(route_packets, plan.route_links)
        saturations[layer.name] = clipped_total
        if layer.readout:
            logits = v.reshape(b, -1)
        else:
            if record_spikes:
                spikes[layer.name] = layer_spikes
            inputs = [layer_spikes[t] for t in range(steps)]
    max_link = link_tick.max(axis=2) if mapping.links else np.zeros((ticks, b), dtype=np.int64)
    drain = np.maximum(drain, max_link * cycles["link_packet"])
    core_cycles = core_cycles_from_counts(counts, cycles)
    tick_cycles, overruns = tick_cycles_from(core_cycles, drain, target, cycles)
    return BatchActivity(
        logits=logits,
        spikes=spikes,
        saturations=saturations,
        counts=counts,
        core_cycles=core_cycles,
        drain_cycles=drain,
        max_link_load=max_link,
        link_load=link_tick.sum(axis=(0, 1)),
        tick_cycles=tick_cycles,
        overruns=overruns,
    )


# ----------------------------------------------------------------------------- streaming


@dataclass
class SimulationResult:
    """Totals over all samples, per core and per sample scalars (no per-tick history)."""

    mapping: Mapping
    n_samples: int
    logits: np.ndarray  # (N, n_classes) int64
    labels: np.ndarray | None  # (N,) int64 or None
    saturations: dict  # layer name -> clipped neuron-steps, all samples
    core_counts: dict  # kind -> (n_cores,) int64 summed over ticks and samples
    core_cycles: np.ndarray  # (n_cores,) int64 busy cycles summed over ticks and samples
    layer_busy_cycles: np.ndarray  # (n_layers,) int64: sum over ticks of the layer's slowest core
    link_load: np.ndarray  # (n_links,) int64 packets per directed link
    max_link_load: int  # busiest link in any one tick
    overruns: int  # ticks (over all samples) whose work exceeded a fixed tick
    time_cycles: dict  # "compute" / "drain" / "barrier" / "idle" -> cycles summed over samples
    per_sample: dict  # "latency_s", "cycles", "energy_j", "sops" -> (N,) arrays
    energy_j: dict  # ENERGY_KINDS -> joules summed over samples

    @property
    def predictions(self) -> np.ndarray:
        return predict(self.logits)

    @property
    def accuracy(self) -> float | None:
        if self.labels is None or self.n_samples == 0:
            return None
        return float((self.predictions == self.labels).mean())


def simulate(
    mapping: Mapping,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Stream ``images`` through ``simulate_batch`` in batches; accumulate totals and stats.

    ``progress(n)`` is called after each batch with the number of samples it held.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, found {batch_size}")
    net, target = mapping.network, mapping.target
    images = check_images(net, images)
    cycles = event_cycles(target)
    plans = _layer_plans(mapping, cycles)
    n = images.shape[0]
    core_counts = {kind: np.zeros(mapping.n_cores, dtype=np.int64) for kind in COUNT_KINDS}
    core_cycles = np.zeros(mapping.n_cores, dtype=np.int64)
    layer_busy = np.zeros(len(net.layers), dtype=np.int64)
    link_load = np.zeros(len(mapping.links), dtype=np.int64)
    time_cycles = {"compute": 0, "drain": 0, "barrier": 0, "idle": 0}
    saturations = {layer.name: 0 for layer in net.layers}
    per_sample = {key: np.zeros(n) for key in ("latency_s", "cycles", "energy_j", "sops")}
    energy = {kind: 0.0 for kind in ENERGY_KINDS}
    logits, max_link, overruns = [], 0, 0
    for start in range(0, n, batch_size):
        act = simulate_batch(mapping, images[start : start + batch_size], _plans=plans)
        stop = start + act.logits.shape[0]
        logits.append(act.logits)
        for kind in COUNT_KINDS:
            core_counts[kind] += act.counts[kind].sum(axis=(1, 2))
        core_cycles += act.core_cycles.sum(axis=(1, 2))
        for index, ids in enumerate(mapping.layer_cores):
            layer_busy[index] += act.core_cycles[list(ids)].max(axis=0).sum()
        for name, value in act.saturations.items():
            saturations[name] += value
        link_load += act.link_load
        max_link = max(max_link, int(act.max_link_load.max(initial=0)))
        overruns += int(act.overruns.sum())
        compute = act.core_cycles.max(axis=0)
        if target.time_model == "fixed":
            busy = np.minimum(compute + act.drain_cycles, act.tick_cycles)
            time_cycles["compute"] += int(np.minimum(compute, act.tick_cycles).sum())
            time_cycles["drain"] += int((busy - np.minimum(compute, act.tick_cycles)).sum())
            time_cycles["idle"] += int((act.tick_cycles - busy).sum())
        else:
            time_cycles["compute"] += int(compute.sum())
            time_cycles["drain"] += int(act.drain_cycles.sum())
            time_cycles["barrier"] += int(cycles["barrier"] * act.tick_cycles.size)
        sample_cycles = act.tick_cycles.sum(axis=0)
        latency_s = sample_cycles * target.cycle_s
        totals = {kind: act.counts[kind].sum(axis=(0, 1)) for kind in COUNT_KINDS}
        priced = price_energy(totals, latency_s, target)
        for kind in ENERGY_KINDS:
            energy[kind] += float(np.sum(priced[kind]))
        per_sample["latency_s"][start:stop] = latency_s
        per_sample["cycles"][start:stop] = sample_cycles
        per_sample["energy_j"][start:stop] = sum(priced[kind] for kind in ENERGY_KINDS)
        per_sample["sops"][start:stop] = totals["sops"]
        if progress is not None:
            progress(stop - start)
    return SimulationResult(
        mapping=mapping,
        n_samples=n,
        logits=np.concatenate(logits) if logits else np.zeros((0, net.n_classes), np.int64),
        labels=None if labels is None else np.asarray(labels, dtype=np.int64)[:n],
        saturations=saturations,
        core_counts=core_counts,
        core_cycles=core_cycles,
        layer_busy_cycles=layer_busy,
        link_load=link_load,
        max_link_load=max_link,
        overruns=overruns,
        time_cycles=time_cycles,
        per_sample=per_sample,
        energy_j=energy,
    )


def summarize(values: np.ndarray) -> dict:
    """mean, p50, p99, min, max of a per-sample array (zeros when empty)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "min": 0.0, "max": 0.0}
    return {
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "min": float(values.min()),
        "max": float(values.max()),
    }
