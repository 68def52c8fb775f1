"""Bit-accurate, vectorised simulation of a mapped network, tick by tick, with event counts.

**Schedule.** One network time step t is one tick of a layer. Layers are pipelined as on the
chips (each layer adds one tick of synaptic delay): layer l processes step t during tick
``t + l``, so a sample takes ``T + L - 1`` ticks (L layers). Within a tick every active core
works in parallel. The arithmetic is the integer contract of docs/semantics.md, unchanged:
each core computes the synaptic input of *its* neurons from *its* slice of the weights (neuron
slice x fan-in group), partial sums of the fan-in groups are added at the soma core together
with the bias, and ``hw_model.neuron.mtlif_step`` / ``readout_step`` run the neurons. Spike
outputs and logits are therefore identical to ``hw_model.reference.run_reference``.

**How it is computed** (same numbers, fewer operations): each core's synaptic input is a slice of
one GEMM per layer (one per fan-in range where the target splits the fan-in); neurons run in
int32 where a bound proves it exact (``_neuron_dtype``); per-core counts are GEMMs of the
layer's events with count matrices built once per mapping (``_layer_plans``), exact in float32
by the bound argument of ``hw_model.synapse``; the encoder's input, the same at every step, is
processed once.

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

import contextlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .mapper import Mapping
from .network import ConvLayer, DenseLayer
from .neuron import encode_pixels, int32_is_exact, mtlif_step, readout_step
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


def _one_blas_thread():
    """A context that keeps BLAS on one thread while simulating (restored on exit).

    The count GEMMs are skinny (thousands of events x a few cores) and the synaptic GEMMs small;
    OpenBLAS still splits each over all its threads, and the hand-offs cost more than the
    products, the more so on a shared machine (measured on 2 busy cores, 1000 MNIST images:
    about 4 s with 2 BLAS threads, 1.4 s with one). threadpoolctl comes with scikit-learn, a
    dependency; without it the simulation runs unchanged, only slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# ----------------------------------------------------------------------------- per-layer plans
#
# Everything that depends only on the mapping is built once per ``simulate`` call (not per batch
# or per tick): the weights in their exact GEMM dtype, the neuron dtype, and one count matrix per
# kind of event. A tick's per-core counts are then one small GEMM of the layer's events with the
# matching matrix, instead of a Python loop over the cores with masks and ``np.add.at``.

def _exact_events_matrix(matrix: np.ndarray, max_event: int) -> np.ndarray:
    """``matrix`` (non-negative integers) in the cheapest dtype in which ``events @ matrix`` is
    exact for events in 0..max_event: every partial sum is at most max_event x the largest column
    sum, the argument of ``hw_model.synapse`` (float32 up to 2**24, float64 up to 2**53)."""
    bound = int(max_event) * int(matrix.sum(axis=0).max(initial=0))
    return np.ascontiguousarray(matrix, dtype=exact_gemm_dtype(bound))


def _count(events: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Exact integer counts events (B, N) @ matrix (N, M) (matrix from ``_exact_events_matrix``)."""
    return (events.astype(matrix.dtype, copy=False) @ matrix).astype(np.int64)


def _neuron_dtype(layer, input_bound: int) -> np.dtype:
    """int32 where ``hw_model.neuron.int32_is_exact`` proves it exact, else int64."""
    p = layer.neuron
    exact = int32_is_exact(p.acc_bits, p.delta, p.theta_int, input_bound)
    return np.dtype(np.int32) if exact else np.dtype(np.int64)


@dataclass(frozen=True, eq=False)
class _LayerPlan:
    index: int
    layer: object
    core_ids: np.ndarray  # (n_cores_l,) global ids of the layer's cores
    gemm_dtype: np.dtype  # exact dtype of the synaptic GEMMs (hw_model.synapse)
    neuron_dtype: np.dtype  # int32 where provably exact (``_neuron_dtype``), else int64
    weight: np.ndarray | None  # in gemm_dtype, as the GEMM reads it: conv (O, K), dense (K, O)
    bias: np.ndarray  # (n_out,) bias per neuron in neuron_dtype (zeros for pool)
    fan_in_ranges: tuple  # distinct (start, stop) fan-in ranges of the cores; one = no split
    core_pieces: tuple  # split fan-in only: per core (range index, n0, n1, partial-sum column or -1)
    n_partial_sum_routes: int
    arrival_matrix: np.ndarray  # (n_in, 2 n_cores_l): [axons listened to | synapses driven]
    activity_matrix: np.ndarray  # (n_units, n_cores_l): soma neurons reading each activity unit
    spike_matrix: np.ndarray  # (n_out, n_cores_l [+ n_spike_routes, unary]) applied to counts s
    event_matrix: np.ndarray  # (n_out, n_cores_l [+ n_spike_routes, graded]) applied to s > 0
    updates: np.ndarray  # (n_cores_l, 1) neurons each core updates per tick (0: not a soma)
    route_latency: np.ndarray  # (n_routes_l,) int64 cycles, spike routes then partial-sum routes
    route_matrix: np.ndarray  # (n_routes_l, 3 n_cores_l + n_links): packets, hops_x, hops_y, links

    @property
    def n_cores(self) -> int:
        return self.core_ids.size

    @property
    def split_fan_in(self) -> bool:
        return self.fan_in_ranges != ((0, self.layer.fan_in),)


def _activity_units(layer, neurons: np.ndarray) -> np.ndarray:
    """The unit of ``_input_activity`` each neuron reads: a conv neuron's inputs depend only on its
    output position, a dense neuron sees the whole input, a pool neuron its own window."""
    if isinstance(layer, ConvLayer):
        return neurons % (layer.out_shape[1] * layer.out_shape[2])
    if isinstance(layer, DenseLayer):
        return np.zeros_like(neurons)
    return neurons


def _n_activity_units(layer) -> int:
    if isinstance(layer, ConvLayer):
        return layer.out_shape[1] * layer.out_shape[2]
    return 1 if isinstance(layer, DenseLayer) else layer.n_neurons


def _layer_plans(mapping: Mapping, cycles: dict) -> list[_LayerPlan]:
    plans = []
    net = mapping.network
    unary = mapping.target.encoding == "unary"
    for index, layer in enumerate(net.layers):
        core_ids = np.array(mapping.layer_cores[index], dtype=np.int64)
        cores = [mapping.cores[c] for c in core_ids]
        nc, n_out, p = len(cores), layer.n_neurons, layer.neuron
        smax_in = net.input_smax(index)
        bound = partial_sum_bound(layer, smax_in)
        gemm_dtype, neuron_dtype = exact_gemm_dtype(bound), _neuron_dtype(layer, bound)
        weight, bias = None, np.zeros(n_out, dtype=neuron_dtype)
        if isinstance(layer, ConvLayer):
            weight = layer.weight.reshape(layer.weight.shape[0], -1).astype(gemm_dtype)
            bias = np.repeat(layer.bias, layer.out_shape[1] * layer.out_shape[2]).astype(neuron_dtype)
        elif isinstance(layer, DenseLayer):
            weight = np.ascontiguousarray(layer.weight.T, dtype=gemm_dtype)
            bias = layer.bias.astype(neuron_dtype)

        # input side: axons and synapses per core; neurons of each soma core per activity unit
        n_in = int(np.prod(layer.in_shape))
        arrival = np.zeros((n_in, 2 * nc))
        activity = np.zeros((_n_activity_units(layer), nc))
        membership = np.zeros((n_out, nc))  # 1 where the soma core runs the neuron
        updates = np.zeros((nc, 1), dtype=np.int64)
        for local, core in enumerate(cores):
            conn = mapping.connectivity[core.core_id]
            arrival[conn.axons, local] = 1.0
            arrival[conn.axons, nc + local] = conn.fanout
            if core.soma:
                neurons = np.arange(*core.neurons)
                activity[:, local] = np.bincount(_activity_units(layer, neurons), minlength=activity.shape[0])
                membership[neurons, local] = 1.0
                updates[local] = core.n_neurons

        # synaptic input: one GEMM per distinct fan-in range (one for the layer unless split)
        ranges = tuple(dict.fromkeys(core.fan_in for core in cores))
        spike_ids = list(mapping.spike_route_ids[index])
        psum_ids = [r.route_id for r in mapping.routes if r.layer_index == index and r.kind == "partial_sum"]
        psum_column = {mapping.routes[r].src: i for i, r in enumerate(psum_ids)}
        pieces = tuple((ranges.index(core.fan_in), *core.neurons, psum_column.get(core.core_id, -1)) for core in cores)

        # output side: spikes and spike events per soma core, and packets per spike route
        spike_routes = np.asarray(mapping.spike_route_neurons[index])
        by_count = np.hstack([membership, spike_routes]) if unary else membership
        by_event = membership if unary else np.hstack([membership, spike_routes])

        # routes -> packets / hops per source core and packets per link
        routes = [mapping.routes[r] for r in spike_ids + psum_ids]
        local_of = {int(c): local for local, c in enumerate(core_ids)}
        hops = np.array([[r.hops_x, r.hops_y] for r in routes], dtype=np.int64).reshape(-1, 2)
        route_matrix = np.zeros((len(routes), 3 * nc + len(mapping.links)))
        for row, route in enumerate(routes):
            src = local_of[route.src]
            route_matrix[row, [src, nc + src, 2 * nc + src]] = (1, route.hops_x, route.hops_y)
            route_matrix[row, [3 * nc + link for link in route.links]] = 1.0
        max_packets = max(p.smax, 1) * n_out  # a route carries at most this many packets a tick

        plans.append(
            _LayerPlan(
                index=index,
                layer=layer,
                core_ids=core_ids,
                gemm_dtype=gemm_dtype,
                neuron_dtype=neuron_dtype,
                weight=weight,
                bias=bias,
                fan_in_ranges=ranges,
                core_pieces=pieces,
                n_partial_sum_routes=len(psum_ids),
                arrival_matrix=_exact_events_matrix(arrival, smax_in if unary else 1),
                activity_matrix=_exact_events_matrix(activity, 1),
                spike_matrix=_exact_events_matrix(by_count, p.smax),
                event_matrix=_exact_events_matrix(by_event, 1),
                updates=updates,
                route_latency=route_latency_cycles(hops[:, 0], hops[:, 1], cycles),
                route_matrix=_exact_events_matrix(route_matrix, max_packets),
            )
        )
    return plans


# ----------------------------------------------------------------------------- one layer-step


def _conv_patches(layer, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(B, K, P) patches in ``dtype``: fan-in in the weight's (C, kh, kw) order, then positions.

    Laid out so that weight (O, K) @ patches gives the output channels-first, (B, O, P), with no
    transposing copy of the result (faster than ``im2col``'s (B, P, K) for these shapes).
    """
    k, stride, pad = layer.kernel, layer.stride, layer.padding
    x = x.astype(dtype)
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # (B, C, OH, OW, k, k)
    return windows.transpose(0, 1, 4, 5, 2, 3).reshape(x.shape[0], layer.fan_in, -1)


def _gemm_operand(layer, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The input as the layer's GEMM reads it: conv (B, K, P) patches, dense (B, N), in ``dtype``;
    pool: x itself (its all-ones weights are additions of strided views)."""
    if isinstance(layer, DenseLayer):
        return x.reshape(x.shape[0], -1).astype(dtype)
    if isinstance(layer, ConvLayer):
        return _conv_patches(layer, x, dtype)
    return x


def _fan_in_input(plan: _LayerPlan, operand: np.ndarray, b: int, c0: int, c1: int) -> np.ndarray:
    """Synaptic input of every neuron from its fan-in entries c0..c1, no bias: (B, n_out)."""
    layer = plan.layer
    if isinstance(layer, DenseLayer):
        return (operand[:, c0:c1] @ plan.weight[c0:c1]).astype(plan.neuron_dtype)
    if isinstance(layer, ConvLayer):  # (O, K) @ (B, K, P) -> (B, O, P): flat (C, H, W) order
        return (plan.weight[:, c0:c1] @ operand[:, c0:c1]).reshape(b, -1).astype(plan.neuron_dtype)
    k = layer.kernel  # pool: fan-in entry e is the window offset (e // k, e % k), weight 1
    _, oh, ow = layer.out_shape
    out = np.zeros((b,) + tuple(layer.out_shape), dtype=plan.neuron_dtype)
    for entry in range(c0, c1):
        out += operand[:, :, entry // k : oh * k : k, entry % k : ow * k : k]
    return out.reshape(b, -1)


def _synaptic_input(plan: _LayerPlan, x: np.ndarray):
    """(current (B, n_out) with bias, partial-sum packets (B, n_partial_sum_routes) int64).

    Unsplit fan-in: one GEMM for all the layer's cores (each core's input is a slice of it).
    Split fan-in: one GEMM per fan-in range; each core adds its own slice of its range's partial
    sums, and a non-soma core sends one packet per nonzero partial sum to its soma core.
    """
    b = x.shape[0]
    operand = _gemm_operand(plan.layer, x, plan.gemm_dtype)
    psum_packets = np.zeros((b, plan.n_partial_sum_routes), dtype=np.int64)
    if not plan.split_fan_in:
        current = _fan_in_input(plan, operand, b, 0, plan.layer.fan_in)
    else:
        partials = [_fan_in_input(plan, operand, b, c0, c1) for c0, c1 in plan.fan_in_ranges]
        current = np.zeros((b, plan.layer.n_neurons), dtype=plan.neuron_dtype)
        for range_index, n0, n1, column in plan.core_pieces:
            piece = partials[range_index][:, n0:n1]
            current[:, n0:n1] += piece
            if column >= 0:
                psum_packets[:, column] = np.count_nonzero(piece, axis=1)
    current += plan.bias
    return current, psum_packets


def _input_activity(layer, x: np.ndarray) -> np.ndarray:
    """(B, n_units) bool: the unit (``_activity_units``) has a connected input with a nonzero count."""
    b = x.shape[0]
    if isinstance(layer, DenseLayer):
        return (x.reshape(b, -1) != 0).any(axis=1, keepdims=True)
    if isinstance(layer, ConvLayer):  # any channel, then any position of the receptive field
        nonzero = (x != 0).any(axis=1, keepdims=True)
        return im2col(nonzero, layer.kernel, layer.stride, layer.padding).any(axis=-1).reshape(b, -1)
    k = layer.kernel  # pool: the neuron's own window
    _, oh, ow = layer.out_shape
    nonzero = x != 0
    window = np.zeros((b,) + tuple(layer.out_shape), dtype=bool)
    for entry in range(layer.fan_in):
        window |= nonzero[:, :, entry // k : oh * k : k, entry % k : ow * k : k]
    return window.reshape(b, -1)


def _count_routes(plan: _LayerPlan, route_packets: np.ndarray, counts: dict, tick: int,
                  drain: np.ndarray, link_tick: np.ndarray) -> None:
    """Packets and hops per source core, packets per link, and the longest packet latency."""
    nc, ids = plan.n_cores, plan.core_ids
    per_core = _count(route_packets, plan.route_matrix)
    counts["packets"][ids, tick] = per_core[:, :nc].T
    counts["hops_x"][ids, tick] = per_core[:, nc : 2 * nc].T
    counts["hops_y"][ids, tick] = per_core[:, 2 * nc : 3 * nc].T
    link_tick[tick] += per_core[:, 3 * nc :]
    latency = np.where(route_packets > 0, plan.route_latency, 0).max(axis=1)
    drain[tick] = np.maximum(drain[tick], latency)


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
    with _one_blas_thread():
        return _simulate_batch(mapping, images, record_spikes=record_spikes, plans=_plans)


def _simulate_batch(mapping: Mapping, images: np.ndarray, *, record_spikes: bool, plans: list | None) -> BatchActivity:
    net, target = mapping.network, mapping.target
    images = check_images(net, images)
    cycles = event_cycles(target)
    plans = plans if plans is not None else _layer_plans(mapping, cycles)
    b, steps, ticks = images.shape[0], net.timesteps, n_ticks(mapping)
    unary = target.encoding == "unary"
    counts = {kind: np.zeros((mapping.n_cores, ticks, b), dtype=np.int64) for kind in COUNT_KINDS}
    drain = np.zeros((ticks, b), dtype=np.int64)
    link_tick = np.zeros((ticks, b, len(mapping.links)), dtype=np.int64)
    spikes, saturations = {}, {}
    inputs = [encode_pixels(images, net.encoder.smax)] * steps
    logits = None
    for plan in plans:
        layer, p, ids, nc = plan.layer, plan.layer.neuron, plan.core_ids, plan.n_cores
        v = np.zeros((b, layer.n_neurons), dtype=plan.neuron_dtype)
        layer_spikes = np.zeros((steps, b) + tuple(layer.out_shape), np.uint8) if not layer.readout else None
        clipped_total, previous = 0, None
        for t in range(steps):
            tick = t + plan.index
            x = inputs[t]
            if x is not previous:  # the encoder's counts are one array for every step: compute once
                flat = x.reshape(b, -1)
                arrivals = _count(flat if unary else flat > 0, plan.arrival_matrix)
                current, psum_packets = _synaptic_input(plan, x)
                active = _count(_input_activity(layer, x), plan.activity_matrix)
                previous = x
            counts["input_events"][ids, tick] = arrivals[:, :nc].T
            counts["sops"][ids, tick] = arrivals[:, nc:].T
            counts["updates"][ids, tick] = plan.updates
            counts["active_updates"][ids, tick] = active.T
            if layer.readout:
                v, clipped = readout_step(v, current, p.acc_bits)
                spike_packets = np.zeros((b, 0), dtype=np.int64)
            else:
                s, v, clipped = mtlif_step(v, current, p.theta_int, p.delta, p.smax, p.acc_bits)
                layer_spikes[t] = s.reshape((b,) + tuple(layer.out_shape))
                by_count, by_event = _count(s, plan.spike_matrix), _count(s > 0, plan.event_matrix)
                counts["spikes"][ids, tick] = by_count[:, :nc].T
                counts["spike_events"][ids, tick] = by_event[:, :nc].T
                spike_packets = (by_count if unary else by_event)[:, nc:]
            clipped_total += int(np.count_nonzero(clipped))
            if plan.route_latency.size:
                route_packets = np.concatenate([spike_packets, psum_packets], axis=1)
                _count_routes(plan, route_packets, counts, tick, drain, link_tick)
        saturations[layer.name] = clipped_total
        if layer.readout:
            logits = v.reshape(b, -1).astype(np.int64)
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
    batch_size: int = 128,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> SimulationResult:
    """Stream ``images`` through ``simulate_batch`` in batches; accumulate totals and stats.

    ``progress(n)`` is called after each batch with the number of samples it held. ``workers``
    batches run at once in threads (default: the CPU count, at most 4; numpy releases the GIL in
    its array work); results are consumed in batch order, so every total is the same as with one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, found {batch_size}")
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, found {workers}")
    with _one_blas_thread():
        return _simulate_stream(mapping, images, labels, batch_size, progress, workers)


def _batch_activities(mapping: Mapping, images: np.ndarray, batch_size: int, plans: list, workers: int):
    """(start, BatchActivity) in batch order; at most ``workers`` batches in flight (bounded memory)."""
    starts = range(0, images.shape[0], batch_size)

    def run(start: int) -> BatchActivity:
        return _simulate_batch(mapping, images[start : start + batch_size], record_spikes=False, plans=plans)

    if workers == 1:
        for start in starts:
            yield start, run(start)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for start in starts:
            pending.append((start, pool.submit(run, start)))
            if len(pending) >= workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()


def _simulate_stream(mapping: Mapping, images: np.ndarray, labels, batch_size: int, progress,
                     workers: int = 1) -> SimulationResult:
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
    for start, act in _batch_activities(mapping, images, batch_size, plans, workers):
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
