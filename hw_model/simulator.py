"""Bit-accurate, vectorised simulation of a mapped network on the schedule the chip runs.

**Schedule** (``hw_model.schedule``): every core updates every tick and adds its bias every
tick; the input generators send the encoded image in ticks 0..T-1; a spike emitted in tick tau
is integrated by the next layer in tick tau + 1; layer l resets its membranes at the start of
tick l + 1 and runs its T-step window in ticks l+1 .. l+T; a sample takes L + T ticks (times S chip
ticks on a binary chip that realises counts up to S = Smax by sub-steps). The fill
before a layer's window and the drain after it are simulated (they cost events on the chip);
inside its window every layer computes the integer contract exactly, so the window spikes and
the logits equal ``hw_model.reference.run_reference`` bit for bit (tested).

**Arithmetic**: each core's synaptic input is its slice of one exact GEMM per layer over every
tick with a nonzero input (``hw_model.synapse``'s bound: float32/float64 exact); partial sums of
split fan-in are added at the soma core; ``hw_model.neuron.mtlif_step`` / ``readout_step`` run
the neurons, in int32 where a bound proves it exact.

**Counts per core per tick** (``hw_model.pricing.COUNT_KINDS``), for an event of count k on an
axon driving F synapses of a core (unary targets: k one-bit events; graded: one event carrying k):

- receiving core: ``messages_in`` (unary k, graded 1), ``synapse_reads`` (unary k x F, graded F);
- every core: ``compartments`` (its neurons, every tick);
- soma core: ``updates`` (neurons whose state changes: an input arrived, the membrane before the
  tick or the bias is nonzero), ``spikes_out`` (unary: sum of counts; graded: nonzero counts);
- sending core: ``messages_out`` (one per spike event and destination core listening to the
  neuron, and one per nonzero partial sum), ``hops_x`` / ``hops_y`` (messages x XY hops);
- input generator core: ``input_spikes`` and its messages and hops.

**Time and energy**: ``hw_model.pricing`` (one definition): per core, the neuron stream and the
message stream overlap; the tick is the busiest core plus the synchronisation for the tiles in
use (``asap``) or a fixed tick whose overruns are counted (``fixed``). Energy is events x price
plus static power by an explicit convention (applied in the report).

Memory stays bounded: ``simulate`` streams batches and keeps per-core totals plus a few scalars
per sample for the mean / p50 / p99 statistics.
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
from .neuron import encode_pixels, mtlif_step, readout_step
from .pricing import (
    COUNT_KINDS,
    ENERGY_KINDS,
    CorePrices,
    check_cycle_range,
    core_prices,
    dynamic_energy,
    receive_cycles,
    receive_done_cycles,
    send_cycles,
)
from .reference import check_images, predict
from .schedule import Schedule, schedule_for
from .synapse import exact_gemm_dtype, im2col, neuron_state_dtype, partial_sum_bound
from .target import sync_cycles

__all__ = [
    "COUNT_KINDS",
    "ENERGY_KINDS",
    "BatchActivity",
    "SimulationResult",
    "route_latency_cycles",
    "tick_cycles_from",
    "simulate_batch",
    "simulate",
    "simulate_shard",
    "merge_results",
    "summarize",
]

_FAR = np.iinfo(np.int64).max // 4  # "no arrival" for the minimum of arrival times


def route_latency_cycles(hops_x, hops_y, cycles: dict) -> np.ndarray:
    """Cycles a message spends on the mesh: hops per axis times their latency (int64, elementwise)."""
    return np.asarray(hops_x, np.int64) * cycles["hop_x"] + np.asarray(hops_y, np.int64) * cycles["hop_y"]


def tick_cycles_from(core_cycles: np.ndarray, mapping: Mapping, cycles: dict):
    """(tick cycles, overrun mask) from (n_cores, n_ticks, B) core cycles: the busiest core plus
    the synchronisation for the tiles in use (``asap``), or the fixed tick (``fixed``)."""
    target = mapping.target
    work = core_cycles.max(axis=0) + sync_cycles(target, mapping.tiles_in_use)
    if target.time_model == "fixed":
        return np.full_like(work, cycles["tick"]), work > cycles["tick"]
    return work, np.zeros(work.shape, dtype=bool)


def _one_blas_thread():
    """A context that keeps BLAS on one thread while simulating (restored on exit).

    The count GEMMs are skinny (thousands of events x a few cores) and the synaptic GEMMs small;
    OpenBLAS still splits each over all its threads, and the hand-offs cost more than the
    products (measured on 2 cores, 1000 MNIST images: about 4 s with 2 BLAS threads, 1.4 s with
    one). threadpoolctl comes with scikit-learn; without it the simulation runs unchanged, only slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# ----------------------------------------------------------------------------- per-layer plans
#
# Everything that depends only on the mapping is built once per ``simulate`` call: the weights in
# their exact GEMM dtype, the neuron dtype, and one ``_Segments`` per kind of event: which
# neurons (inputs, routes) each core (route, source core) sums. A tick's per-core counts are then
# segment sums of the layer's events, exact in int64; memory and work grow with the entries of
# those index lists (neurons, axons, routes' neurons), never with neurons x cores.


DENSE_ENTRIES = 1 << 22  # a segment matrix up to this many entries (16 MiB in float32) is kept dense
SCAN_ELEMENTS = 1 << 25  # counts scanned at once for their nonzero entries (24 bytes of indices per
#                          nonzero): larger arrays are histogrammed in row blocks


def nonzero_entries(values: np.ndarray) -> tuple:
    """(rows, columns, values as int64) of the nonzero entries of a (B, N) array, row-major
    (one flat scan: 1.6x faster than a 2-d ``np.nonzero``)."""
    flat = np.ascontiguousarray(values).reshape(-1)
    found = np.flatnonzero(flat)
    rows, cols = np.divmod(found, max(values.shape[1], 1))
    return rows, cols, flat[found].astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Segments:
    """Weighted sums of chosen columns: segment k sums ``values[:, indices[indptr[k]:indptr[k+1]]]``
    (times ``weights``, when given). Empty segments sum to 0."""

    indices: np.ndarray  # (nnz,) int64 column indices
    indptr: np.ndarray  # (n_segments + 1,) int64
    weights: np.ndarray | None = None  # (nnz,) int64, or None for all ones

    @staticmethod
    def of(lists, weights=None) -> "_Segments":
        """From one index array per segment (and one weight array per segment)."""
        sizes = [len(x) for x in lists]
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(sizes, dtype=np.int64)
        cat = (lambda xs: np.concatenate([np.asarray(x, np.int64) for x in xs]) if xs else np.zeros(0, np.int64))
        return _Segments(cat(lists), indptr, None if weights is None else cat(weights))

    @property
    def n_segments(self) -> int:
        return self.indptr.size - 1

    def _matrix(self, n_columns: int):
        """The dense (n_columns, n_segments) matrix of the segments in the cheapest dtype in which
        a product with values 0..255 is exact (``hw_model.synapse``'s bound), while it holds at
        most ``DENSE_ENTRIES`` entries (a BLAS product is the fastest way on small ones); None
        beyond, where the index lists themselves are summed (memory grows with the entries, not
        with N x segments)."""
        cache = self.__dict__.setdefault("_matrices", {})
        if n_columns not in cache:
            matrix = None
            if n_columns * self.n_segments <= DENSE_ENTRIES:
                weights = self.weights if self.weights is not None else np.ones(self.indices.size, dtype=np.int64)
                segment = np.repeat(np.arange(self.n_segments), np.diff(self.indptr))
                bound = 255 * int(np.bincount(segment, weights=weights, minlength=self.n_segments).max())
                matrix = np.zeros((n_columns, self.n_segments), dtype=exact_gemm_dtype(bound))
                np.add.at(matrix, (self.indices, segment), weights)
            cache[n_columns] = matrix
        return cache[n_columns]

    def sums(self, values: np.ndarray) -> np.ndarray:
        """(B, n_segments) int64 sums of the (B, N) ``values`` (integers 0..255 or bool), exact."""
        out = np.zeros((values.shape[0], self.n_segments), dtype=np.int64)
        if not self.indices.size:
            return out
        matrix = self._matrix(values.shape[1])
        if matrix is not None:
            return (values.astype(matrix.dtype, copy=False) @ matrix).astype(np.int64)
        picked = values[:, self.indices].astype(np.int64)
        if self.weights is not None:
            picked *= self.weights
        nonempty = self.indptr[1:] > self.indptr[:-1]
        out[:, nonempty] = np.add.reduceat(picked, self.indptr[:-1][nonempty], axis=1)
        return out

    def _positions_by_column(self, n_columns: int):
        """(order, column pointer, segment of each entry, partition): the entries of column c are
        ``order[ptr[c]:ptr[c + 1]]``; ``partition`` is (segment, weight) per column when no
        column is in two segments (None otherwise), segment -1 for a column in none."""
        cache = self.__dict__.setdefault("_by_column", {})
        if n_columns not in cache:
            order = np.argsort(self.indices, kind="stable")
            per_column = np.bincount(self.indices, minlength=n_columns)[:n_columns]
            ptr = np.zeros(n_columns + 1, dtype=np.int64)
            ptr[1:] = np.cumsum(per_column)
            segment = np.repeat(np.arange(self.n_segments, dtype=np.int64), np.diff(self.indptr))
            partition = None
            if per_column.size == 0 or per_column.max() <= 1:
                column_segment = np.full(n_columns, -1, dtype=np.int64)
                column_segment[self.indices] = segment
                column_weight = np.zeros(n_columns, dtype=np.int64)
                column_weight[self.indices] = 1 if self.weights is None else self.weights
                partition = (column_segment, None if self.weights is None else column_weight)
            cache[n_columns] = (order, ptr, segment, partition)
        return cache[n_columns]

    def _histogram_keys(self, n_columns: int, nonzero: tuple, levels: int):
        """(histogram keys (row, segment, level) and their weights or None) of every pair of a
        nonzero entry and a segment holding its column."""
        order, ptr, segment_of, partition = self._positions_by_column(n_columns)
        rows, cols, found = nonzero
        level = np.minimum(found, levels)
        n_seg = self.n_segments
        if partition is not None:  # each column in at most one segment: no expansion
            column_segment, column_weight = partition
            seg = column_segment[cols]
            held = seg >= 0
            if not held.all():
                rows, cols, seg, level = rows[held], cols[held], seg[held], level[held]
            weights = None if column_weight is None else column_weight[cols]
            return (rows * n_seg + seg) * (levels + 1) + level, weights
        per = ptr[cols + 1] - ptr[cols]  # how many segments hold each nonzero's column
        total = int(per.sum())
        first = np.repeat(ptr[cols] - (np.cumsum(per) - per), per)
        positions = order[np.arange(total, dtype=np.int64) + first]
        key = (np.repeat(rows, per) * n_seg + segment_of[positions]) * (levels + 1) + np.repeat(level, per)
        return key, None if self.weights is None else self.weights[positions]

    def sums_above(self, values: np.ndarray, levels: int, nonzero: tuple | None = None) -> np.ndarray:
        """(levels, B, n_segments): for j = 0..levels-1, the (weighted) number of the segment's
        entries whose value exceeds j. One pass over the nonzero values, each expanded to the
        segments that hold its column (a histogram per segment, summed from the top): what
        sub-tick j of a step sends or reads. ``nonzero``: ``nonzero_entries(values)``, when the
        caller has it already."""
        b, n_seg = values.shape[0], self.n_segments
        if not self.indices.size:
            return np.zeros((levels, b, n_seg), dtype=np.int64)
        if nonzero is None and b > 1 and values.size > SCAN_ELEMENTS:  # bounded index arrays
            rows = max(1, SCAN_ELEMENTS // max(values.shape[1], 1))
            return np.concatenate([self.sums_above(values[i : i + rows], levels) for i in range(0, b, rows)], axis=1)
        key, weights = self._histogram_keys(values.shape[1], nonzero if nonzero is not None
                                            else nonzero_entries(values), levels)
        hist = np.bincount(key, weights=weights, minlength=b * n_seg * (levels + 1)).reshape(b, n_seg, levels + 1)
        above = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1][..., 1:]  # [.., j] = entries with value > j
        return np.ascontiguousarray(np.moveaxis(above, -1, 0)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Routes:
    """The routes leaving one group of cores (a layer's, or the input generators'), as matrices."""

    ids: np.ndarray  # (n_routes,) global route ids
    src: np.ndarray  # (n_routes,) global source core ids
    dst: np.ndarray  # (n_routes,) global destination core ids
    latency: np.ndarray  # (n_routes,) int64 mesh cycles
    # per local source core, its routes: packets, packets x hops_x, packets x hops_y
    messages: _Segments
    hops_x: _Segments
    hops_y: _Segments
    n_spike_routes: int  # the first n_spike_routes routes carry spikes, the rest partial sums
    spike_neurons: _Segments  # per spike route, the source neurons it carries

    @property
    def n_routes(self) -> int:
        return self.ids.size

    @property
    def dst_groups(self) -> tuple:
        """The routes grouped by destination core (``_groups``), computed once."""
        if "_dst_groups" not in self.__dict__:
            self.__dict__["_dst_groups"] = _groups(self.dst)
        return self.__dict__["_dst_groups"]


@dataclass(frozen=True, eq=False)
class _LayerPlan:
    index: int
    layer: object
    core_ids: np.ndarray  # (n_cores_l,) global ids of the layer's cores
    gemm_dtype: np.dtype
    neuron_dtype: np.dtype
    weight: np.ndarray | None  # in gemm_dtype, as the GEMM reads it: conv (O, K), dense (K, O)
    bias: np.ndarray  # (n_out,) bias per neuron in neuron_dtype (zeros for pool)
    bias_nonzero: np.ndarray  # (n_out,) bool
    fan_in_ranges: tuple  # distinct (start, stop) fan-in ranges of the cores; one = no split
    core_pieces: tuple  # split fan-in only: per core (range index, its neurons (slice or ids), partial-sum column or -1)
    reads: _Segments  # per core: its axons, weighted by the synapses each drives there
    somas: _Segments  # per core: the neurons it runs (none for a partial-sum core)
    compartments: np.ndarray  # (n_cores_l, 1) neurons allocated on each core
    soma_neurons: np.ndarray  # (n_cores_l, 1) neurons a core runs (0 for a partial-sum core)
    routes: _Routes  # spike routes to the next layer, then partial-sum routes

    @property
    def n_cores(self) -> int:
        return self.core_ids.size

    @property
    def split_fan_in(self) -> bool:
        return self.fan_in_ranges != ((0, self.layer.fan_in),)


@dataclass(frozen=True, eq=False)
class _Plans:
    layers: list
    input_core_ids: np.ndarray
    input_routes: _Routes
    input_somas: _Segments  # per input core: the inputs it generates
    prices: CorePrices
    schedule: Schedule
    n_routes: int


def _routes_plan(mapping: Mapping, route_ids: list[int], source_ids: np.ndarray, cycles: dict,
                 spike_neurons) -> _Routes:
    """The routes ``route_ids`` leaving the cores ``source_ids``: the first
    ``spike_neurons.n_routes`` carry spikes (``RouteNeurons``), the rest partial sums."""
    local_of = {int(c): i for i, c in enumerate(source_ids)}
    routes = [mapping.routes[r] for r in route_ids]
    by_source = [[] for _ in source_ids]
    for row, route in enumerate(routes):
        by_source[local_of[route.src]].append(row)
    hops = {axis: [[getattr(routes[row], axis) for row in rows] for rows in by_source] for axis in ("hops_x", "hops_y")}
    return _Routes(
        ids=np.array(route_ids, dtype=np.int64),
        src=np.array([r.src for r in routes], dtype=np.int64),
        dst=np.array([r.dst for r in routes], dtype=np.int64),
        latency=route_latency_cycles([r.hops_x for r in routes], [r.hops_y for r in routes], cycles),
        messages=_Segments.of(by_source),
        hops_x=_Segments.of(by_source, hops["hops_x"]),
        hops_y=_Segments.of(by_source, hops["hops_y"]),
        n_spike_routes=spike_neurons.n_routes,
        spike_neurons=_Segments(spike_neurons.indices, spike_neurons.indptr),
    )


def _index(ids: np.ndarray):
    """A slice when ``ids`` is a contiguous ascending range (cheap views), else the id array."""
    if ids.size and ids[-1] - ids[0] + 1 == ids.size and np.all(np.diff(ids) == 1):
        return slice(int(ids[0]), int(ids[-1]) + 1)
    return ids


def _layer_plan(mapping: Mapping, index: int, cycles: dict) -> _LayerPlan:
    net = mapping.network
    layer = net.layers[index]
    unary = mapping.target.encoding == "unary"
    core_ids = np.array(mapping.layer_cores[index], dtype=np.int64)
    cores = [mapping.cores[c] for c in core_ids]
    nc, n_out, p = len(cores), layer.n_neurons, layer.neuron
    smax_in = net.input_smax(index)
    bound = partial_sum_bound(layer, smax_in)
    gemm_dtype, neuron_dtype = exact_gemm_dtype(bound), neuron_state_dtype(layer, bound)
    weight, bias = None, np.zeros(n_out, dtype=neuron_dtype)
    if isinstance(layer, ConvLayer):
        weight = layer.weight.reshape(layer.weight.shape[0], -1).astype(gemm_dtype)
        bias = np.repeat(layer.bias, layer.out_shape[1] * layer.out_shape[2]).astype(neuron_dtype)
    elif isinstance(layer, DenseLayer):
        weight = np.ascontiguousarray(layer.weight.T, dtype=gemm_dtype)
        bias = layer.bias.astype(neuron_dtype)

    compartments = np.array([[core.n_neurons] for core in cores], dtype=np.int64).reshape(nc, 1)
    conns = [mapping.connectivity[core.core_id] for core in cores]
    reads = _Segments.of([conn.axons for conn in conns], [conn.fanout for conn in conns])
    somas = _Segments.of([mapping.neuron_ids(core.core_id) if core.soma else () for core in cores])

    ranges = tuple(dict.fromkeys(core.fan_in for core in cores))
    psum_ids = [r.route_id for r in mapping.routes if r.layer_index == index and r.kind == "partial_sum"]
    psum_column = {mapping.routes[r].src: i for i, r in enumerate(psum_ids)}
    pieces = tuple((ranges.index(core.fan_in), _index(mapping.neuron_ids(core.core_id)),
                    psum_column.get(core.core_id, -1)) for core in cores)
    spike_ids = list(mapping.spike_route_ids[index])
    return _LayerPlan(
        index=index, layer=layer, core_ids=core_ids, gemm_dtype=gemm_dtype, neuron_dtype=neuron_dtype,
        weight=weight, bias=bias, bias_nonzero=bias != 0, fan_in_ranges=ranges, core_pieces=pieces,
        reads=reads, somas=somas, compartments=compartments,
        soma_neurons=np.array([[core.n_neurons if core.soma else 0] for core in cores], dtype=np.int64),
        routes=_routes_plan(mapping, spike_ids + psum_ids, core_ids, cycles, mapping.spike_route_neurons[index]),
    )


def _plans(mapping: Mapping) -> _Plans:
    prices = core_prices(mapping)
    cycles = prices.cycles
    net = mapping.network
    input_ids = np.array(mapping.input_cores, dtype=np.int64)
    input_somas = _Segments.of([mapping.neuron_ids(int(core_id)) for core_id in input_ids])
    input_routes = _routes_plan(mapping, list(mapping.input_route_ids), input_ids, cycles, mapping.input_route_neurons)
    layers = [_layer_plan(mapping, index, cycles) for index in range(len(net.layers))]
    return _Plans(layers=layers, input_core_ids=input_ids, input_routes=input_routes,
                  input_somas=input_somas, prices=prices,
                  schedule=schedule_for(net, mapping.target), n_routes=len(mapping.routes))


# ----------------------------------------------------------------------------- synaptic input


def _conv_patches(layer, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(B, K, P) patches in ``dtype``: fan-in in the weight's (C, kh, kw) order, then positions."""
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


def _synaptic_input(plan: _LayerPlan, x: np.ndarray, per_neuron: bool = False):
    """(current (B, n_out) without bias, partial-sum messages (B, n_partial_sum_routes) int64).
    With ``per_neuron`` (split fan-in only) the messages come as (messages, {core position:
    (B, its neurons) bool: that core's partial sum of the neuron is nonzero}).

    Unsplit fan-in: one GEMM for all the layer's cores (each core's input is a slice of it).
    Split fan-in: one GEMM per fan-in range; each core adds its own slice of its range's partial
    sums, and a non-soma core sends one message per nonzero partial sum to its soma core.
    """
    b = x.shape[0]
    operand = _gemm_operand(plan.layer, x, plan.gemm_dtype)
    n_psum = plan.routes.n_routes - plan.routes.n_spike_routes
    psum_messages = np.zeros((b, n_psum), dtype=np.int64)
    if not plan.split_fan_in:
        return _fan_in_input(plan, operand, b, 0, plan.layer.fan_in), psum_messages
    partials = [_fan_in_input(plan, operand, b, c0, c1) for c0, c1 in plan.fan_in_ranges]
    current = np.zeros((b, plan.layer.n_neurons), dtype=plan.neuron_dtype)
    nonzero = {}
    for local, (range_index, neurons, column) in enumerate(plan.core_pieces):
        piece = partials[range_index][:, neurons]
        current[:, neurons] += piece
        if column >= 0:
            psum_messages[:, column] = np.count_nonzero(piece, axis=1)
            if per_neuron:
                nonzero[local] = piece != 0
    return current, (psum_messages, nonzero) if per_neuron else psum_messages


def _input_arrived(layer, x: np.ndarray) -> np.ndarray:
    """(B, n_out) bool: the neuron has a connected input with a nonzero count in ``x``."""
    b = x.shape[0]
    if isinstance(layer, DenseLayer):
        any_input = (x.reshape(b, -1) != 0).any(axis=1)
        return np.repeat(any_input[:, None], layer.n_neurons, axis=1)
    if isinstance(layer, ConvLayer):  # any channel, then any position of the receptive field
        nonzero = (x != 0).any(axis=1, keepdims=True)
        per_position = im2col(nonzero, layer.kernel, layer.stride, layer.padding).any(axis=-1).reshape(b, 1, -1)
        return np.broadcast_to(per_position, (b, layer.out_shape[0], per_position.shape[-1])).reshape(b, -1)
    k = layer.kernel  # pool: the neuron's own window
    _, oh, ow = layer.out_shape
    nonzero = x != 0
    window = np.zeros((b,) + tuple(layer.out_shape), dtype=bool)
    for entry in range(layer.fan_in):
        window |= nonzero[:, :, entry // k : oh * k : k, entry % k : ow * k : k]
    return window.reshape(b, -1)


# ----------------------------------------------------------------------------- one batch


@dataclass
class BatchActivity:
    """Everything a batch of B samples did. Per-core arrays are indexed (core id, chip tick, sample);
    a chip tick is a time step unless the target realises counts by sub-steps (``Schedule.subticks``)."""

    logits: np.ndarray  # (B, n_classes) int64: the readout at the end of its window
    spikes: dict  # layer name -> (T, B, *out_shape) uint8 window spikes (empty unless record_spikes)
    tick_spikes: dict  # layer name -> (n_ticks, B, n_out) uint8 every tick (empty unless record_ticks)
    tick_updates: dict  # layer name -> (n_ticks, B, n_out) bool neuron updated (empty unless record_ticks)
    tick_psums: dict  # layer name -> {non-soma core id: (n_ticks, B, its neurons) bool: partial sum sent}
    spike_totals: dict  # layer name -> (window spikes, spikes over every tick incl. fill and drain,
    #                                  neuron-steps with a nonzero count in the window)
    saturations: dict  # layer name -> neuron-steps clipped inside the layer's window
    counts: dict  # kind -> (n_cores, n_chip_ticks, B) int64
    core_cycles: np.ndarray  # (n_cores, n_chip_ticks, B) int64
    tick_cycles: np.ndarray  # (n_chip_ticks, B) int64
    overruns: np.ndarray  # (n_chip_ticks, B) bool (fixed-tick targets: work longer than the tick)
    link_load: np.ndarray  # (n_links,) int64 messages per directed link, summed over ticks and samples


def simulate_batch(mapping: Mapping, images: np.ndarray, *, record_spikes: bool = False, record_ticks: bool = False,
                   _plans: _Plans | None = None) -> BatchActivity:
    """Run one batch of uint8 images (B, C, H, W) on the mapped cores, tick by tick."""
    plans = _plans or _plans_of(mapping)
    check_cycle_range(mapping, len(images), plans.schedule.n_chip_ticks)
    with _one_blas_thread():
        return _simulate_batch(mapping, images, record_spikes, record_ticks, plans)


def _plans_of(mapping: Mapping) -> _Plans:
    return _plans(mapping)


def _events(counts: np.ndarray, unary: bool) -> np.ndarray:
    return counts if unary else counts > 0


def _send_side(routes: _Routes, somas: _Segments, s: np.ndarray, unary: bool, psum_messages: np.ndarray | None):
    """(spikes/events per source core (B, n_src), packets per route (B, n_routes), per-source
    counts (messages, hops_x, hops_y), each (B, n_src)): unary events are the counts, graded
    events the nonzero counts."""
    events = s if unary else (s > 0)
    spikes_out = somas.sums(events)
    packets = routes.spike_neurons.sums(events)
    n_psum = routes.n_routes - routes.n_spike_routes
    if n_psum:
        if psum_messages is None:  # nothing arrived at the layer this tick: no partial sums
            psum_messages = np.zeros((s.shape[0], n_psum), dtype=np.int64)
        packets = np.concatenate([packets, psum_messages], axis=1)
    per_source = (routes.messages.sums(packets), routes.hops_x.sums(packets), routes.hops_y.sums(packets))
    return spikes_out, packets, per_source


def _send_subticks(routes: _Routes, somas: _Segments, s: np.ndarray, unary: bool, psum_messages,
                   subticks: int, nonzero: tuple | None = None) -> list:
    """``_send_side`` for each sub-tick j of a step whose counts are ``s`` (one spike where the
    count exceeds j): [(spikes per core, packets per route, per-source counts)] * subticks, the
    partial sums in the last. One histogram pass, not one pass per sub-tick. ``nonzero``:
    ``nonzero_entries(s)`` when the caller has it."""
    if subticks == 1:
        return [_send_side(routes, somas, s, unary, psum_messages)]
    if nonzero is None and s.size <= SCAN_ELEMENTS:  # one scan for both histograms (larger: each in row blocks)
        nonzero = nonzero_entries(s)
    spikes = somas.sums_above(s, subticks, nonzero)
    packets = routes.spike_neurons.sums_above(s, subticks, nonzero)
    n_psum = routes.n_routes - routes.n_spike_routes
    sides = []
    for j in range(subticks):
        sent = packets[j]
        if n_psum:
            carried = psum_messages if j == subticks - 1 and psum_messages is not None else np.zeros(
                (s.shape[0], n_psum), dtype=np.int64)
            sent = np.concatenate([sent, carried], axis=1)
        sides.append((spikes[j], sent, (routes.messages.sums(sent), routes.hops_x.sums(sent),
                                        routes.hops_y.sums(sent))))
    return sides


def _by_tick(values: np.ndarray, n_ticks: int) -> np.ndarray:
    """(n_ticks * B, n) rows in tick-major order -> (n, n_ticks, B), as the count arrays index."""
    return values.reshape(n_ticks, values.shape[0] // n_ticks, values.shape[-1]).transpose(2, 0, 1)


def _store_sends(counts: dict, route_packets: np.ndarray, ids: np.ndarray, routes: _Routes, sides: list,
                 ticks: np.ndarray, subticks: int, *, repeated: bool = False, spikes_kind: str = "spikes_out",
                 spikes_are_updates: bool = False) -> None:
    """Store what a group of cores sent in ``ticks`` (``sides`` of ``_send_subticks``: rows
    tick-major over ``ticks``, or with ``repeated`` one tick's rows that every tick sends again):
    sub-tick j of tick t is chip tick t * subticks + j. A neuron that fires in a later sub-tick is
    updated there (``spikes_are_updates``: one update per spike)."""
    rows = ids[:, None]
    per_tick = 1 if repeated else ticks.size
    for j, (spiked, packets, (messages, hops_x, hops_y)) in enumerate(sides):
        chips = ticks * subticks + j
        if j and spikes_are_updates:
            counts["updates"][rows, chips] = _by_tick(spiked, per_tick)
        counts[spikes_kind][rows, chips] = _by_tick(spiked, per_tick)
        counts["messages_out"][rows, chips] += _by_tick(messages, per_tick)
        counts["hops_x"][rows, chips] += _by_tick(hops_x, per_tick)
        counts["hops_y"][rows, chips] += _by_tick(hops_y, per_tick)
        route_packets[routes.ids[:, None], chips] = _by_tick(packets, per_tick)


def _store_reads(counts: dict, plan: _LayerPlan, flat: np.ndarray, nonzero: tuple | None, n_ticks: int,
                 subticks: int, unary: bool) -> None:
    """Synapse reads of the layer's cores in every tick: the messages its source emits in tick t
    are read in tick t (``flat``: the source's counts, (n_ticks * B, n_in), tick-major)."""
    rows = plan.core_ids[:, None]
    if subticks == 1:
        counts["synapse_reads"][rows, np.arange(n_ticks)] = _by_tick(plan.reads.sums(_events(flat, unary)), n_ticks)
        return
    above = plan.reads.sums_above(flat, subticks, nonzero)  # (subticks, n_ticks * B, n_cores)
    for j in range(subticks):
        counts["synapse_reads"][rows, np.arange(n_ticks) * subticks + j] = _by_tick(above[j], n_ticks)


def _simulate_batch(mapping: Mapping, images: np.ndarray, record_spikes: bool, record_ticks: bool,
                    plans: _Plans) -> BatchActivity:
    net, target = mapping.network, mapping.target
    images = check_images(net, images)
    unary = target.encoding == "unary"
    sched = plans.schedule
    b, n_ticks, steps, subticks = images.shape[0], sched.n_ticks, net.timesteps, sched.subticks
    n_chip = sched.n_chip_ticks  # counts are per chip tick (sub-tick j of step t is t * subticks + j)
    counts = {kind: np.zeros((mapping.n_cores, n_chip, b), dtype=np.int64) for kind in COUNT_KINDS}
    route_packets = np.zeros((plans.n_routes, n_chip, b), dtype=np.int64)

    # the input generators: the encoded image in ticks 0..T-1
    encoded = encode_pixels(images, net.encoder.smax).reshape(b, -1)
    source = np.zeros((n_ticks, b) + tuple(net.encoder.shape), dtype=np.uint8)
    source[: steps] = encoded.reshape((b,) + tuple(net.encoder.shape))
    _store_sends(counts, route_packets, plans.input_core_ids, plans.input_routes,
                 _send_subticks(plans.input_routes, plans.input_somas, encoded, unary, None, subticks),
                 np.arange(sched.input_ticks.start, sched.input_ticks.stop), subticks, repeated=True,
                 spikes_kind="input_spikes")  # the same encoded image in every input tick

    spikes, tick_spikes, spike_totals, saturations, logits = {}, {}, {}, {}, None
    tick_updates, tick_psums = {}, {}
    source_nonzero = None  # nonzero_entries of the source's tick-stacked counts, when known
    for plan in plans.layers:
        layer, p, ids = plan.layer, plan.layer.neuron, plan.core_ids
        flat = source.reshape(n_ticks, b, -1)
        stacked_source = flat.reshape(n_ticks * b, -1)
        if subticks > 1 and source_nonzero is None and stacked_source.size <= SCAN_ELEMENTS:
            source_nonzero = nonzero_entries(stacked_source)
        active_ticks = [t for t in range(n_ticks) if flat[t].any()]
        # receiving side: the messages the source emits in tick t are read in tick t
        _store_reads(counts, plan, stacked_source, source_nonzero, n_ticks, subticks, unary)
        # neuron side: tick t integrates what the source emitted in tick t - 1
        currents, psums, arrived, partial_nonzero = {}, {}, {}, {}
        every_neuron_updates = bool(plan.bias_nonzero.all())  # a bias changes every membrane every tick
        if active_ticks:
            stacked = np.concatenate([source[t] for t in active_ticks], axis=0)
            current, psum = _synaptic_input(plan, stacked, record_ticks)
            if record_ticks and plan.split_fan_in:
                psum, nonzero = psum
                for i, t in enumerate(active_ticks):
                    partial_nonzero[t] = {local: sent[i * b : (i + 1) * b] for local, sent in nonzero.items()}
            for i, t in enumerate(active_ticks):
                currents[t + 1] = current[i * b : (i + 1) * b]
                psums[t] = psum[i * b : (i + 1) * b]
                if not every_neuron_updates or record_ticks:
                    arrived[t + 1] = _input_arrived(layer, source[t])
        v = np.zeros((b, layer.n_neurons), dtype=plan.neuron_dtype)
        window = sched.window(plan.index)
        if record_ticks and plan.split_fan_in:
            tick_psums[layer.name] = {}
            for local, (_, neurons, column) in enumerate(plan.core_pieces):
                if column >= 0:
                    sent = np.zeros((n_ticks, b, mapping.cores[int(ids[local])].n_neurons), dtype=bool)
                    for t, partial in partial_nonzero.items():
                        sent[t] = partial[local]
                    tick_psums[layer.name][int(ids[local])] = sent
        out = np.zeros((n_ticks, b, layer.n_neurons), dtype=np.uint8) if not layer.readout else None
        count_updates = not every_neuron_updates or record_ticks
        updated_by_tick = np.zeros((n_ticks, b, layer.n_neurons), dtype=bool) if count_updates else None
        clipped_in_window = 0
        counts["compartments"][ids] = plan.compartments[:, :, None]
        for t in range(n_ticks):
            if t == sched.reset_tick(plan.index):
                v = np.zeros_like(v)  # the per-layer reset offset (hw_model.schedule)
            i_t = plan.bias + currents[t] if t in currents else np.broadcast_to(plan.bias, v.shape)
            if count_updates:
                updated = updated_by_tick[t]
                np.not_equal(v, 0, out=updated)
                updated |= plan.bias_nonzero
                if t in arrived:
                    updated |= arrived[t]
            if layer.readout:
                v, clipped = readout_step(v, i_t, p.acc_bits)
            else:
                out[t], v, clipped = mtlif_step(v, i_t, p.theta_int, p.delta, p.smax, p.acc_bits)
            if t in window:
                clipped_in_window += int(np.count_nonzero(clipped))
        # the counts of every tick at once: the neuron update that integrates is the step's first
        # chip tick; the spikes of sub-tick j leave in chip tick t * subticks + j
        first_chips = np.arange(n_ticks) * subticks
        if count_updates:
            counts["updates"][ids[:, None], first_chips] = _by_tick(
                plan.somas.sums(updated_by_tick.reshape(n_ticks * b, -1)), n_ticks)
            if record_ticks:
                tick_updates[layer.name] = updated_by_tick
        else:
            counts["updates"][ids[:, None], first_chips] = plan.soma_neurons[:, :, None]  # every neuron of a soma core
        n_psum = plan.routes.n_routes - plan.routes.n_spike_routes
        psum_by_tick = np.zeros((n_ticks, b, n_psum), dtype=np.int64)
        for t, sent in psums.items():
            psum_by_tick[t] = sent
        psum_by_tick = psum_by_tick.reshape(n_ticks * b, n_psum)
        if layer.readout:
            if psums:  # a split readout still sends its partial sums, in the step's last chip tick
                _, packets, per_source = _send_side(plan.routes, plan.somas, np.zeros((n_ticks * b, layer.n_neurons),
                                                                                     np.int64), unary, psum_by_tick)
                last_chips = first_chips + subticks - 1
                for kind, values in zip(("messages_out", "hops_x", "hops_y"), per_source):
                    counts[kind][ids[:, None], last_chips] += _by_tick(values, n_ticks)
                route_packets[plan.routes.ids[:, None], last_chips] = _by_tick(packets, n_ticks)
            saturations[layer.name] = clipped_in_window
            logits = v.reshape(b, -1).astype(np.int64)
            break
        saturations[layer.name] = clipped_in_window
        stacked_out = out.reshape(n_ticks * b, -1)
        source_nonzero = nonzero_entries(stacked_out) if subticks > 1 and stacked_out.size <= SCAN_ELEMENTS else None
        sides = _send_subticks(plan.routes, plan.somas, stacked_out, unary, psum_by_tick, subticks, source_nonzero)
        _store_sends(counts, route_packets, ids, plan.routes, sides, np.arange(n_ticks), subticks,
                     spikes_are_updates=True)
        out_shape = (n_ticks, b) + tuple(layer.out_shape)
        in_window = out[window.start : window.stop]
        spike_totals[layer.name] = (int(in_window.sum(dtype=np.int64)), int(out.sum(dtype=np.int64)),
                                    int(np.count_nonzero(in_window)))
        if record_spikes:
            spikes[layer.name] = out[window.start : window.stop].reshape((steps, b) + tuple(layer.out_shape))
        if record_ticks:
            tick_spikes[layer.name] = out
        source = out.reshape(out_shape)

    for routes in _all_routes(plans):  # every message arrives at its route's destination core
        _reduce_into(np.add, counts["messages_in"], routes.dst_groups, route_packets[routes.ids])
    core_cycles = _core_cycles(mapping, plans, counts, route_packets)
    tick_cycles, overruns = tick_cycles_from(core_cycles, mapping, plans.prices.cycles)
    return BatchActivity(logits=logits, spikes=spikes, tick_spikes=tick_spikes, tick_updates=tick_updates,
                         tick_psums=tick_psums, spike_totals=spike_totals,
                         saturations=saturations,
                         counts=counts, core_cycles=core_cycles, tick_cycles=tick_cycles, overruns=overruns,
                         link_load=_link_load(mapping, route_packets))


def _groups(index: np.ndarray) -> tuple:
    """(order, group starts, group rows): ``index[order]`` sorted, its runs starting at ``starts``."""
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if index.size else np.zeros(0, np.int64)
    return order, starts, ordered[starts]


def _reduce_into(ufunc, target: np.ndarray, groups: tuple, values: np.ndarray) -> None:
    """``ufunc.at(target, index, values)`` along the first axis, as one ``ufunc.reduceat`` over
    ``groups = _groups(index)`` (ufunc.at is slow on large blocks); exact for add, min and max."""
    order, starts, rows = groups
    if not rows.size:
        return
    target[rows] = ufunc(target[rows], ufunc.reduceat(values[order], starts, axis=0))


def _all_routes(plans: _Plans) -> list[_Routes]:
    return [plans.input_routes] + [plan.routes for plan in plans.layers]


def _core_cycles(mapping: Mapping, plans: _Plans, counts: dict, route_packets: np.ndarray) -> np.ndarray:
    """Per core and tick: the longer of the neuron stream and the message stream, the latter no
    earlier than its messages arrive (``hw_model.pricing``)."""
    prices = plans.prices
    send = send_cycles(counts, prices)
    work = receive_cycles(counts, prices)
    first = np.full(send.shape, _FAR, dtype=np.int64)
    last = np.zeros(send.shape, dtype=np.int64)
    axon_out = prices.cycles["axon_out"]
    for routes in _all_routes(plans):
        if not routes.ids.size:
            continue
        active = route_packets[routes.ids] > 0  # (n_routes, n_ticks, B)
        latency = routes.latency[:, None, None]
        first_r = np.where(active, latency + axon_out, _FAR)
        last_r = np.where(active, send[routes.src] + latency, 0)
        _reduce_into(np.minimum, first, routes.dst_groups, first_r)
        _reduce_into(np.maximum, last, routes.dst_groups, last_r)
    done = receive_done_cycles(work, counts["messages_in"], first, last)
    return np.maximum(send, done)


def _link_load(mapping: Mapping, route_packets: np.ndarray) -> np.ndarray:
    """Messages per directed link, summed over ticks and samples."""
    load = np.zeros(len(mapping.links), dtype=np.int64)
    per_route = route_packets.sum(axis=(1, 2))
    for route, packets in zip(mapping.routes, per_route):
        if packets:
            load[list(route.links)] += packets
    return load


# ----------------------------------------------------------------------------- streaming


@dataclass
class SimulationResult:
    """Totals over all samples, per core and per sample scalars (no per-tick history)."""

    mapping: Mapping
    n_samples: int
    logits: np.ndarray  # (N, n_classes) int64
    labels: np.ndarray | None  # (N,) int64 or None
    saturations: dict  # layer name -> clipped neuron-steps inside the windows, all samples
    core_counts: dict  # kind -> (n_cores,) int64 summed over ticks and samples
    core_energy_j: dict  # ENERGY_KINDS -> (n_cores,) dynamic joules summed over ticks and samples
    core_cycles: np.ndarray  # (n_cores,) int64 busy cycles summed over ticks and samples
    window_cycles: np.ndarray  # (n_cores,) int64 busy cycles inside the core's layer window (steady state)
    layer_busy_cycles: np.ndarray  # (n_layers,) int64: sum over ticks of the layer's busiest core
    link_load: np.ndarray  # (n_links,) int64 messages per directed link
    overruns: int  # ticks (over all samples) whose work exceeded a fixed tick
    time_cycles: dict  # "compute" / "sync" / "idle" -> cycles summed over samples
    per_sample: dict  # "latency_s", "cycles", "dynamic_j", "synapse_reads" -> (N,) arrays
    window_spikes: dict  # layer name -> spike count inside the windows, all samples
    tick_spikes: dict  # layer name -> spike count over every tick (fill and drain too), all samples
    window_events: dict  # layer name -> neuron-steps with a nonzero count inside the windows

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


def _batch_activities(mapping: Mapping, images: np.ndarray, batch_size: int, plans: _Plans, workers: int):
    """(start, BatchActivity) in batch order; at most ``workers`` batches in flight (bounded memory)."""
    starts = range(0, images.shape[0], batch_size)

    def run(start: int) -> BatchActivity:
        return _simulate_batch(mapping, images[start : start + batch_size], False, False, plans)

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


def _window_mask(mapping: Mapping, schedule: Schedule) -> np.ndarray:
    """(n_cores, n_chip_ticks) bool: the chip ticks in which each core's layer runs its window
    (input generators: their sending ticks)."""
    mask = np.zeros((mapping.n_cores, schedule.n_chip_ticks), dtype=bool)
    for core in mapping.cores:
        ticks = schedule.input_ticks if core.is_input else schedule.window(core.layer_index)
        mask[core.core_id, ticks.start * schedule.subticks : ticks.stop * schedule.subticks] = True
    return mask


def _simulate_stream(mapping: Mapping, images: np.ndarray, labels, batch_size: int, progress,
                     workers: int = 1) -> SimulationResult:
    net, target = mapping.network, mapping.target
    images = check_images(net, images)
    plans = _plans(mapping)
    prices, schedule = plans.prices, plans.schedule
    n = images.shape[0]
    check_cycle_range(mapping, n, schedule.n_chip_ticks)
    sync = sync_cycles(target, mapping.tiles_in_use)
    windows = _window_mask(mapping, schedule)[:, :, None]
    core_counts = {kind: np.zeros(mapping.n_cores, dtype=np.int64) for kind in COUNT_KINDS}
    core_energy = {kind: np.zeros(mapping.n_cores) for kind in ENERGY_KINDS}
    core_cycles = np.zeros(mapping.n_cores, dtype=np.int64)
    window_cycles = np.zeros(mapping.n_cores, dtype=np.int64)
    layer_busy = np.zeros(len(net.layers), dtype=np.int64)
    link_load = np.zeros(len(mapping.links), dtype=np.int64)
    time_cycles = {"compute": 0, "sync": 0, "idle": 0}
    saturations = {layer.name: 0 for layer in net.layers}
    window_spikes = {layer.name: 0 for layer in net.layers[:-1]}
    tick_spikes = {layer.name: 0 for layer in net.layers[:-1]}
    window_events = {layer.name: 0 for layer in net.layers[:-1]}
    per_sample = {key: np.zeros(n) for key in ("latency_s", "cycles", "dynamic_j", "synapse_reads")}
    logits, overruns = [], 0
    for start, act in _batch_activities(mapping, images, batch_size, plans, workers):
        stop = start + act.logits.shape[0]
        logits.append(act.logits)
        for kind in COUNT_KINDS:
            core_counts[kind] += act.counts[kind].sum(axis=(1, 2))
        energy = dynamic_energy(act.counts, prices)  # kind -> (n_cores, n_ticks, B)
        for kind in ENERGY_KINDS:
            core_energy[kind] += energy[kind].sum(axis=(1, 2))
        core_cycles += act.core_cycles.sum(axis=(1, 2))
        window_cycles += np.where(windows, act.core_cycles, 0).sum(axis=(1, 2))
        for index, ids in enumerate(mapping.layer_cores):
            layer_busy[index] += act.core_cycles[list(ids)].max(axis=0).sum()
        for name, value in act.saturations.items():
            saturations[name] += value
        for name, (in_window, every_tick, events) in act.spike_totals.items():
            window_spikes[name] += in_window
            tick_spikes[name] += every_tick
            window_events[name] += events
        link_load += act.link_load
        overruns += int(act.overruns.sum())
        compute = act.core_cycles.max(axis=0)
        if target.time_model == "fixed":
            busy = np.minimum(compute, act.tick_cycles)
            time_cycles["compute"] += int(busy.sum())
            time_cycles["idle"] += int((act.tick_cycles - busy).sum())
        else:
            time_cycles["compute"] += int(compute.sum())
            time_cycles["sync"] += int(sync * act.tick_cycles.size)
        sample_cycles = act.tick_cycles.sum(axis=0)
        per_sample["latency_s"][start:stop] = sample_cycles * target.cycle_s
        per_sample["cycles"][start:stop] = sample_cycles
        per_sample["dynamic_j"][start:stop] = sum(energy[kind].sum(axis=(0, 1)) for kind in ENERGY_KINDS)
        per_sample["synapse_reads"][start:stop] = act.counts["synapse_reads"].sum(axis=(0, 1))
        if progress is not None:
            progress(stop - start)
    return SimulationResult(
        mapping=mapping,
        n_samples=n,
        logits=np.concatenate(logits) if logits else np.zeros((0, net.n_classes), np.int64),
        labels=None if labels is None else np.asarray(labels, dtype=np.int64)[:n],
        saturations=saturations,
        core_counts=core_counts,
        core_energy_j=core_energy,
        core_cycles=core_cycles,
        window_cycles=window_cycles,
        layer_busy_cycles=layer_busy,
        link_load=link_load,
        overruns=overruns,
        time_cycles=time_cycles,
        per_sample=per_sample,
        window_spikes=window_spikes,
        tick_spikes=tick_spikes,
        window_events=window_events,
    )


def merge_results(results: list) -> SimulationResult:
    """One result from the results of consecutive shards of a data set (in order), as if they
    had been simulated in one call: totals add up, per-sample arrays and logits concatenate."""
    if not results:
        raise ValueError("merge_results: expected at least one result")
    first = results[0]

    def added(name):
        values = [getattr(r, name) for r in results]
        if isinstance(values[0], dict):
            return {key: sum(v[key] for v in values) for key in values[0]}
        return sum(values[1:], values[0])

    labels = None if first.labels is None else np.concatenate([r.labels for r in results])
    return SimulationResult(
        mapping=first.mapping, n_samples=sum(r.n_samples for r in results),
        logits=np.concatenate([r.logits for r in results]), labels=labels,
        saturations=added("saturations"), core_counts=added("core_counts"), core_energy_j=added("core_energy_j"),
        core_cycles=added("core_cycles"), window_cycles=added("window_cycles"),
        layer_busy_cycles=added("layer_busy_cycles"), link_load=added("link_load"), overruns=added("overruns"),
        time_cycles=added("time_cycles"),
        per_sample={key: np.concatenate([r.per_sample[key] for r in results]) for key in first.per_sample},
        window_spikes=added("window_spikes"), tick_spikes=added("tick_spikes"), window_events=added("window_events"),
    )


def simulate_shard(mapping: Mapping, images: np.ndarray, labels, batch_size: int = 128) -> SimulationResult:
    """``simulate`` on one shard of a data set, one thread (an engine task: ``mtsnn.engines``)."""
    return simulate(mapping, images, labels, batch_size=batch_size, workers=1)


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
