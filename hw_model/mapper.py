"""Map an ``IntegerNetwork`` onto a ``Target``: design rules, partitioning, placement, routes.

Steps (``map_network``), none of which changes its input:

1. **Design rules first** (``DESIGN_RULES``): small named functions, each raising
   ``DesignRuleError`` that names the layer, the limit and the value found.
2. **Fan-in groups**: a layer's per-neuron fan-in (conv: the weight's (C, kh, kw) order; dense:
   the flattened input; pool: the k x k window) is one group, or, when the fan-in exceeds a
   core and the target allows ``partial_sums``, contiguous groups of at most
   ``min(axons_per_core, synapse_memory_bits // weight_bits)`` entries. Group 0's core is the
   neuron's *soma* core: it adds the bias and runs the neuron; every other group's core sends
   its partial sums to the soma core (one packet per nonzero partial sum, a "partial_sum" route).
3. **Neuron slices**: each layer's neurons, in flat (C, H, W) order, are cut greedily into
   contiguous slices, each as long as every group's core still fits: neurons <= neurons_per_core,
   distinct inputs (axons) <= axons_per_core, synapses x weight bits <= synapse_memory_bits.
   Connectivity is exact (index sets): a conv neuron is connected to the inputs under its
   receptive field inside the image (padding positions are no synapse); a dense neuron to every
   input of its group (zero weights included: they are stored); a pool neuron to its window.
   One core per (slice, group); cores are numbered layer by layer, slice by slice, group by group.
4. **Placement**: core ``i`` sits at router ``i // cores_per_router``, routers in row-major order.
5. **Routes**: a spike route from every soma core of layer l to every core of layer l + 1 whose
   axon set holds at least one of the source's neurons (exact intersection); dimension-order XY
   routing (x first, then y, as on TrueNorth [M14] and Loihi's mesh), hops per axis, and the
   directed links used. The readout layer's cores send nothing. The encoder's counts are
   injected by the host into layer 1's cores (no mesh traffic modelled).

``Mapping.placement()`` gives the JSON-able ``placement`` section of the core description;
``mapping_from_placement`` rebuilds the same mapping from it (after ``check_placement``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .network import ConvLayer, DenseLayer, IntegerNetwork, PoolLayer
from .placement import PLACEMENT_FORMAT, PLACEMENT_VERSION, check_placement, xy_path
from .target import Target, synapse_memory_bits_needed

__all__ = [
    "DesignRuleError",
    "RouteNeurons",
    "CoreSpec",
    "CoreConnectivity",
    "Route",
    "Mapping",
    "DESIGN_RULES",
    "weight_bits_fit_target",
    "acc_bits_fit_target",
    "fan_in_fits_core_or_can_split",
    "synapse_memory_fits_core",
    "network_fits_core_count",
    "fan_out_fits_core",
    "payload_fits_target",
    "axon_types_fit_target",
    "axon_types_fit_core",
    "axon_type_groups",
    "core_weight_matrix",
    "distinct_weights_per_neuron",
    "INPUT_LAYER",
    "check_design_rules",
    "synapse_bits",
    "core_synapse_bits",
    "fan_in_groups",
    "fanin_indices",
    "core_connectivity",
    "partition_layer",
    "best_partition",
    "neuron_order",
    "NEURON_ORDERS",
    "xy_path",
    "map_network",
    "mapping_from_placement",
    "PlacementMismatch",
]


class DesignRuleError(InputError):
    """The network does not fit the target; the message names the layer, the limit, the value."""


# ----------------------------------------------------------------------------- design rules


def synapse_bits(layer) -> int:
    """Bits one stored synapse of ``layer`` takes (pool: implicit all-ones weights, 1 bit)."""
    return 1 if isinstance(layer, PoolLayer) else int(layer.weight_bits)


def weight_bits_fit_target(network: IntegerNetwork, target: Target) -> None:
    for layer in network.layers:
        if synapse_bits(layer) > target.weight_bits:
            raise DesignRuleError(
                f"layer {layer.name}: weight bits {synapse_bits(layer)} > {target.weight_bits} "
                f"weight bits on target {target.name}"
            )


def acc_bits_fit_target(network: IntegerNetwork, target: Target) -> None:
    for layer in network.layers:
        if layer.neuron.acc_bits > target.acc_bits:
            raise DesignRuleError(
                f"layer {layer.name}: accumulator bits {layer.neuron.acc_bits} > {target.acc_bits} "
                f"accumulator bits on target {target.name}"
            )


def fan_in_fits_core_or_can_split(network: IntegerNetwork, target: Target) -> None:
    for layer in network.layers:
        if layer.fan_in > target.axons_per_core and not target.partial_sums:
            raise DesignRuleError(
                f"layer {layer.name}: fan-in {layer.fan_in} > {target.axons_per_core} axons per core "
                f"on target {target.name} (which cannot merge partial sums)"
            )


def core_synapse_bits(layer, conn, n_neurons: int, target: Target) -> int:
    """Bits the synapses of a core (its connectivity ``conn``) take in the target's format, at
    the layer's weight bits (``synapse_bits``)."""
    return synapse_memory_bits_needed(target, conn.fanout, layer.synapse_kind, n_neurons, synapse_bits(layer))


def synapse_memory_fits_core(network: IntegerNetwork, target: Target) -> None:
    """One neuron's synapses (of one fan-in group when splitting is allowed) must fit a core, in
    the target's storage format (``synapse_memory_bits_needed``)."""
    for layer in network.layers:
        smallest = min(layer.fan_in, 1 if target.partial_sums else layer.fan_in)
        needed = synapse_memory_bits_needed(target, np.ones(smallest, dtype=np.int64), layer.synapse_kind, 1,
                                            synapse_bits(layer))
        if needed > target.synapse_memory_bits:
            raise DesignRuleError(
                f"layer {layer.name}: synapse memory {needed} bits for one neuron > "
                f"{target.synapse_memory_bits} bits per core on target {target.name}"
            )


def payload_fits_target(network: IntegerNetwork, target: Target) -> None:
    """Graded targets: every spike count the network sends (encoder included) fits the payload."""
    if target.encoding != "graded":
        return
    limit = (1 << target.payload_bits) - 1
    sources = [("input", network.encoder.smax)] + [(layer.name, layer.neuron.smax) for layer in network.layers
                                                   if not layer.readout]
    for name, smax in sources:
        if smax > limit:
            raise DesignRuleError(f"layer {name}: spike count up to Smax {smax} > {limit}, the largest "
                                  f"{target.payload_bits}-bit payload on target {target.name}")


def distinct_weights_per_neuron(layer) -> int:
    """The most distinct nonzero weights one neuron of ``layer`` gives its inputs (pool: 1).
    A neuron away from the borders sees its whole kernel, so this is what a core must hold."""
    if isinstance(layer, PoolLayer):
        return 1
    rows = layer.weight.reshape(layer.weight.shape[0], -1)
    return max((np.unique(row[row != 0]).size for row in rows), default=0)


def _axon_types_enforced(target: Target) -> bool:
    return target.axon_types > 0 and target.axon_types_rule == "enforce"


def _relax_hint(target: Target) -> str:
    return (f"quantise each neuron's weights to {target.axon_types} levels, or price it anyway with "
            "core.axon_types_rule = \"relax\" (CLI --relax axon-types)")


def axon_types_fit_target(network: IntegerNetwork, target: Target) -> None:
    """TrueNorth-like targets weigh an axon by its type, one weight per type per neuron: no
    neuron may use more distinct weights than there are axon types (unless relaxed)."""
    if not _axon_types_enforced(target):
        return
    for layer in network.layers:
        needed = distinct_weights_per_neuron(layer)
        if needed > target.axon_types:
            raise DesignRuleError(f"layer {layer.name}: a neuron weighs its inputs with {needed} distinct weights > "
                                  f"{target.axon_types} axon types per core on target {target.name} "
                                  f"({_relax_hint(target)})")


def _lower_bound_cores(layer, target: Target) -> int:
    return math.ceil(layer.n_neurons / target.neurons_per_core) * len(fan_in_groups(layer, target))


def network_fits_core_count(network: IntegerNetwork, target: Target, cores_per_layer: list | None = None,
                            input_cores: int | None = None) -> None:
    """The cores used (a lower bound before partitioning, the real count after), the input
    generator cores first, fit the chip."""
    counts = cores_per_layer or [_lower_bound_cores(layer, target) for layer in network.layers]
    total = input_cores if input_cores is not None else math.ceil(
        math.prod(network.encoder.shape) / target.generators_per_core)
    if total > target.n_cores:
        raise DesignRuleError(f"layer input: cores {total} > {target.n_cores} cores on target {target.name}")
    for layer, count in zip(network.layers, counts):
        total += count
        if total > target.n_cores:
            raise DesignRuleError(
                f"layer {layer.name}: cores {total} (cumulative up to this layer, input generators included) > "
                f"{target.n_cores} cores on target {target.name}"
            )


DESIGN_RULES = (
    weight_bits_fit_target,
    acc_bits_fit_target,
    payload_fits_target,
    axon_types_fit_target,
    fan_in_fits_core_or_can_split,
    synapse_memory_fits_core,
    network_fits_core_count,
)


def check_design_rules(network: IntegerNetwork, target: Target) -> None:
    """Run every design rule in order; the first failure raises ``DesignRuleError``."""
    for rule in DESIGN_RULES:
        rule(network, target)


# ----------------------------------------------------------------------------- connectivity


def fan_in_groups(layer, target: Target) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of the per-neuron fan-in, one per core group."""
    fan_in = layer.fan_in
    if not target.partial_sums:
        return [(0, fan_in)]
    per_axon = synapse_memory_bits_needed(target, [1], layer.synapse_kind, 1, synapse_bits(layer))
    size = min(fan_in, target.axons_per_core, max(1, target.synapse_memory_bits // per_axon))
    return [(start, min(start + size, fan_in)) for start in range(0, fan_in, size)]


def fanin_indices(layer, neurons: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Flat input index of fan-in entries start..stop-1 of each neuron: (len(neurons), stop-start).

    -1 marks a padding position (no synapse). Inputs and outputs are flat in (C, H, W) order.
    """
    neurons = np.asarray(neurons, dtype=np.int64)[:, None]
    cols = np.arange(start, stop, dtype=np.int64)[None, :]
    if isinstance(layer, DenseLayer):
        return np.broadcast_to(cols, (neurons.shape[0], cols.shape[1])).copy()
    _, h, w = layer.in_shape
    _, oh, ow = layer.out_shape
    k = layer.kernel
    pos = neurons % (oh * ow)
    y, x = pos // ow, pos % ow
    ky, kx = (cols // k) % k, cols % k
    if isinstance(layer, ConvLayer):
        c = cols // (k * k)
        iy = y * layer.stride + ky - layer.padding
        ix = x * layer.stride + kx - layer.padding
    elif isinstance(layer, PoolLayer):
        c = neurons // (oh * ow)
        iy, ix = y * k + ky, x * k + kx
    else:
        raise TypeError(f"unknown layer type {type(layer).__name__}")
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    return np.where(valid, c * h * w + iy * w + ix, -1)


@dataclass(frozen=True, eq=False)
class CoreConnectivity:
    """The inputs one core listens to and how many of its synapses each one drives."""

    axons: np.ndarray  # (n_axons,) int64, sorted flat input indices of the layer
    fanout: np.ndarray  # (n_axons,) int64, synapses in this core driven by each axon

    @property
    def n_axons(self) -> int:
        return int(self.axons.size)

    @property
    def n_synapses(self) -> int:
        return int(self.fanout.sum())


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.int64)
    array.flags.writeable = False
    return array


NEURON_ORDERS = ("channel", "position")


def neuron_order(layer, order: str) -> np.ndarray:
    """A layer's flat (C, H, W) neuron indices in the order its cores take them in slices:
    ``"channel"``, as stored (one channel's positions together); ``"position"``, all channels of
    one output position together (they read the same input window, so a core holding them
    needs each of its input axons once). Dense layers have one order."""
    n = layer.n_neurons
    if order not in NEURON_ORDERS:
        raise ValueError(f"neuron order: expected one of {', '.join(NEURON_ORDERS)}, found {order!r}")
    if order == "channel" or isinstance(layer, DenseLayer):
        return np.arange(n, dtype=np.int64)
    c, h, w = layer.out_shape
    return np.arange(n, dtype=np.int64).reshape(c, h * w).T.reshape(-1)


def core_connectivity(layer, neuron_ids: np.ndarray, fan_in: tuple[int, int]) -> CoreConnectivity:
    """Exact axon set and per-axon fan-out of the core holding ``neuron_ids`` x ``fan_in``."""
    c0, c1 = fan_in
    neuron_ids = np.asarray(neuron_ids, dtype=np.int64)
    if isinstance(layer, DenseLayer):  # every neuron sees every input of the group
        return CoreConnectivity(_readonly(np.arange(c0, c1)), _readonly(np.full(c1 - c0, neuron_ids.size)))
    idx = fanin_indices(layer, neuron_ids, c0, c1)
    counts = np.bincount(idx[idx >= 0], minlength=math.prod(layer.in_shape))
    axons = np.flatnonzero(counts)
    return CoreConnectivity(_readonly(axons), _readonly(counts[axons]))


def _slice_fits(layer, target: Target, groups, ids: np.ndarray) -> bool:
    if ids.size > target.neurons_per_core:
        return False
    for group in groups:
        conn = core_connectivity(layer, ids, group)
        if conn.n_axons > target.axons_per_core:
            return False
        if core_synapse_bits(layer, conn, ids.size, target) > target.synapse_memory_bits:
            return False
    return True


def partition_layer(layer, target: Target, order: str = "channel") -> list[tuple[int, int]]:
    """Greedy contiguous slices [start, stop) of the layer's neurons in ``order``
    (``neuron_order``) so that every fan-in group's core fits."""
    groups = fan_in_groups(layer, target)
    ids = neuron_order(layer, order)
    slices, n0, n_out = [], 0, layer.n_neurons
    while n0 < n_out:
        hi = min(n0 + target.neurons_per_core, n_out)
        if not _slice_fits(layer, target, groups, ids[n0 : n0 + 1]):
            raise DesignRuleError(f"layer {layer.name}: neuron {int(ids[n0])} does not fit one core of target "
                                  f"{target.name}")
        if _slice_fits(layer, target, groups, ids[n0:hi]):
            n1 = hi
        else:  # the constraints are monotone in the slice end: binary search the longest
            lo, bad = n0 + 1, hi
            while bad - lo > 1:
                mid = (lo + bad) // 2
                lo, bad = (mid, bad) if _slice_fits(layer, target, groups, ids[n0:mid]) else (lo, mid)
            n1 = lo
        slices.append((n0, n1))
        n0 = n1
    return slices


def best_partition(layer, target: Target) -> tuple[str, list[tuple[int, int]]]:
    """The neuron order whose partition needs the fewest cores (ties: "channel")."""
    best = None
    for order in NEURON_ORDERS if isinstance(layer, ConvLayer) else ("channel",):
        slices = partition_layer(layer, target, order)
        if best is None or len(slices) < len(best[1]):
            best = (order, slices)
    return best


# ----------------------------------------------------------------------------- routes




INPUT_LAYER = "input"  # the layer name of the input generator cores (layer_index -1)


@dataclass(frozen=True)
class CoreSpec:
    """One used core: which neurons and which part of their fan-in it holds, and where it sits.

    Input generator cores (``layer_index`` -1, ``layer_name`` "input") hold a contiguous range of
    the encoder's inputs in flat (C, H, W) order, have no fan-in, and send the encoded counts as
    spikes to layer 0's cores."""

    core_id: int
    layer_index: int
    layer_name: str
    neurons: tuple[int, int]  # [start, stop) of the layer's neurons in ``order`` (input cores: flat)
    fan_in: tuple[int, int]  # [start, stop) of the per-neuron fan-in order
    group: int  # fan-in group; 0 = the soma core that runs the neurons
    router: tuple[int, int]  # (x, y) on the mesh
    order: str = "channel"  # neuron_order of the layer ("channel": flat (C, H, W); "position")

    @property
    def soma(self) -> bool:
        return self.group == 0 and self.layer_index >= 0

    @property
    def is_input(self) -> bool:
        return self.layer_index < 0

    @property
    def n_neurons(self) -> int:
        return self.neurons[1] - self.neurons[0]


@dataclass(frozen=True)
class Route:
    """Traffic from one core to another: spikes to the next layer, or partial sums to a soma."""

    route_id: int
    src: int
    dst: int
    kind: str  # "spike" | "partial_sum"
    layer_index: int  # the source core's layer (-1: an input generator core)
    path: tuple  # routers visited, XY order, both ends included
    links: tuple  # ids into Mapping.links, in path order

    @property
    def hops_x(self) -> int:
        return abs(self.path[-1][0] - self.path[0][0])

    @property
    def hops_y(self) -> int:
        return abs(self.path[-1][1] - self.path[0][1])


@dataclass(frozen=True, eq=False)
class RouteNeurons:
    """Which source neurons each route of a group carries, as index lists (CSR): route k carries
    the sorted flat neuron (or input) indices ``indices[indptr[k]:indptr[k + 1]]``."""

    indptr: np.ndarray  # (n_routes + 1,) int64
    indices: np.ndarray  # (sum of the routes' neurons,) int64
    n_neurons: int  # neurons (inputs) of the source layer

    @property
    def n_routes(self) -> int:
        return self.indptr.size - 1

    def neurons(self, k: int) -> np.ndarray:
        return self.indices[self.indptr[k] : self.indptr[k + 1]]

    def dense(self) -> np.ndarray:
        """(n_neurons, n_routes) 0/1 matrix (small cases and tests only)."""
        matrix = np.zeros((self.n_neurons, self.n_routes), dtype=np.int64)
        for k in range(self.n_routes):
            matrix[self.neurons(k), k] = 1
        return matrix


@dataclass(frozen=True, eq=False)
class Mapping:
    """A network placed on a target. Arrays are read-only; build with ``map_network``."""

    network: IntegerNetwork
    target: Target
    cores: tuple  # CoreSpec per core id
    connectivity: tuple  # CoreConnectivity per core id
    routes: tuple  # Route per route id
    links: tuple  # ((x0, y0), (x1, y1)) per directed link id (only links some route uses)
    layer_cores: tuple  # per layer: tuple of its core ids
    # per layer: which of the layer's neurons each of its spike routes carries (RouteNeurons, index
    # lists: memory grows with the routes' neurons, not with neurons x cores); route ids in spike_route_ids
    spike_route_neurons: tuple = field(default_factory=tuple)
    spike_route_ids: tuple = field(default_factory=tuple)
    input_cores: tuple = ()  # core ids of the input generator cores
    input_route_neurons: RouteNeurons | None = None  # which inputs each input route carries
    input_route_ids: tuple = ()

    @property
    def n_cores(self) -> int:
        return len(self.cores)

    def orders(self) -> dict:
        """Each layer's neuron order (``neuron_order``), as its cores use it."""
        orders = {layer.name: "channel" for layer in self.network.layers}
        for core in self.cores:
            if not core.is_input:
                orders[core.layer_name] = core.order
        return orders

    def neuron_ids(self, core_id: int) -> np.ndarray:
        """The flat (C, H, W) indices of the neurons (input cores: inputs) core ``core_id`` holds."""
        core = self.cores[core_id]
        if core.is_input:
            return np.arange(*core.neurons, dtype=np.int64)
        return neuron_order(self.network.layers[core.layer_index], core.order)[core.neurons[0] : core.neurons[1]]

    @property
    def tiles_in_use(self) -> int:
        """Routers (tiles) with at least one used core, input generators included."""
        return len({core.router for core in self.cores})

    def source_cores(self, layer_index: int) -> tuple:
        """Core ids whose spikes feed layer ``layer_index``: the input generators for layer 0."""
        if layer_index == 0:
            return tuple(self.input_cores)
        return tuple(c for c in self.layer_cores[layer_index - 1] if self.cores[c].soma)

    def placement(self) -> dict:
        """The JSON-able placement section of the core description."""
        t = self.target
        return {
            "format": PLACEMENT_FORMAT,
            "format_version": PLACEMENT_VERSION,
            "target": t.name,
            "mesh": {"x": t.mesh_x, "y": t.mesh_y, "cores_per_router": t.cores_per_router},
            "routing": "xy",
            "encoding": t.encoding,
            "orders": self.orders(),
            "cores": [
                {
                    "id": c.core_id,
                    "layer": c.layer_name,
                    "neurons": list(c.neurons),
                    "fan_in": list(c.fan_in),
                    "group": c.group,
                    "router": list(c.router),
                    "axons": conn.n_axons,
                    "synapses": conn.n_synapses,
                }
                for c, conn in zip(self.cores, self.connectivity)
            ],
            "routes": [
                {
                    "src": r.src,
                    "dst": r.dst,
                    "kind": r.kind,
                    "hops": [r.hops_x, r.hops_y],
                    "path": [list(p) for p in r.path],
                }
                for r in self.routes
            ],
        }


def _input_specs(network: IntegerNetwork, target: Target, layer0_axons: list[np.ndarray]) -> list[tuple[int, int]]:
    """The encoder's inputs cut greedily into contiguous ranges of at most ``generators_per_core``
    whose spikes reach at most ``axons_out`` of layer 0's cores (``layer0_axons``: each core's
    sorted input indices); both limits are monotone in the range's end, so binary search works."""
    n_inputs = math.prod(network.encoder.shape)
    listens = np.zeros((len(layer0_axons), n_inputs), dtype=bool)
    for row, axons in enumerate(layer0_axons):
        listens[row, axons] = True
    reach = np.cumsum(listens, axis=1)  # reach[c, i]: inputs 0..i core c listens to

    def fits(start: int, stop: int) -> bool:
        before = reach[:, start - 1] if start else 0
        edges = int(np.count_nonzero(reach[:, stop - 1] - before))
        return stop - start <= target.generators_per_core and edges <= target.axons_out_per_core

    specs, start = [], 0
    while start < n_inputs:
        if not fits(start, start + 1):
            raise DesignRuleError(f"layer {INPUT_LAYER}: input {start} reaches more than {target.axons_out_per_core} "
                                  f"cores (output axons per core on target {target.name})")
        good, bad = start + 1, min(start + target.generators_per_core, n_inputs) + 1
        if fits(start, bad - 1):
            good = bad - 1
        else:
            while bad - good > 1:
                mid = (good + bad) // 2
                good, bad = (mid, bad) if fits(start, mid) else (good, mid)
        specs.append((start, good))
        start = good
    return specs


def _build_mapping(network: IntegerNetwork, target: Target, specs: list[tuple],
                   input_specs: list[tuple[int, int]]) -> Mapping:
    """input_specs: the generator cores' input ranges; specs: (layer_index, neurons, fan_in,
    group) of the layers' cores. Core ids: the input generators first, then specs in order."""
    cores, connectivity = [], []
    empty = CoreConnectivity(_readonly(np.zeros(0)), _readonly(np.zeros(0)))
    for core_id, inputs in enumerate(input_specs):
        cores.append(CoreSpec(core_id, -1, INPUT_LAYER, tuple(inputs), (0, 0), 0, target.router_of(core_id)))
        connectivity.append(empty)
    layer_cores: list[list[int]] = [[] for _ in network.layers]
    for layer_index, neurons, fan_in, group, order in specs:
        core_id = len(cores)
        layer = network.layers[layer_index]
        cores.append(CoreSpec(core_id, layer_index, layer.name, tuple(neurons), tuple(fan_in), group,
                              target.router_of(core_id), order))
        ids = neuron_order(layer, order)[neurons[0] : neurons[1]]
        connectivity.append(core_connectivity(layer, ids, tuple(fan_in)))
        layer_cores[layer_index].append(core_id)

    routes: list[Route] = []
    link_ids: dict[tuple, int] = {}

    def add_route(src: int, dst: int, kind: str) -> int:
        path = xy_path(cores[src].router, cores[dst].router)
        links = tuple(link_ids.setdefault((a, b), len(link_ids)) for a, b in zip(path[:-1], path[1:]))
        routes.append(Route(len(routes), src, dst, kind, cores[src].layer_index, path, links))
        return len(routes) - 1

    def source_ids(src: int) -> np.ndarray:
        core = cores[src]
        if core.is_input:
            return np.arange(*core.neurons, dtype=np.int64)
        return neuron_order(network.layers[core.layer_index], core.order)[core.neurons[0] : core.neurons[1]]

    def spike_routes(sources: list[int], n_neurons: int, destinations: list[int]):
        """One route per (source core, destination core listening to any of its neurons), in
        source-major order; the neurons each carries as index lists. Work: the destinations' axons."""
        owner = np.full(n_neurons, -1, dtype=np.int64)
        for i, src in enumerate(sources):
            owner[source_ids(src)] = i
        pairs = []  # (source position, destination position, the neurons it carries)
        for d, dst in enumerate(destinations):
            axons = connectivity[dst].axons
            owners = owner[axons]
            order = np.argsort(owners, kind="stable")
            grouped, keys = axons[order], owners[order]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.zeros(0, np.int64)
            for start, stop in zip(starts, np.r_[starts[1:], keys.size].astype(np.int64)):
                if keys[start] >= 0:
                    pairs.append((int(keys[start]), d, grouped[start:stop]))
        pairs.sort(key=lambda pair: (pair[0], pair[1]))
        ids = tuple(add_route(sources[i], destinations[d], "spike") for i, d, _ in pairs)
        indptr = np.zeros(len(pairs) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([neurons.size for _, _, neurons in pairs], dtype=np.int64)
        indices = np.concatenate([neurons for _, _, neurons in pairs]) if pairs else np.zeros(0, np.int64)
        return RouteNeurons(_readonly(indptr), _readonly(indices), int(n_neurons)), ids

    input_cores = list(range(len(input_specs)))
    input_matrix, input_ids = spike_routes(input_cores, math.prod(network.encoder.shape), layer_cores[0])
    route_neurons, route_ids = [], []
    for layer_index, layer in enumerate(network.layers):
        soma_by_slice = {cores[c].neurons: c for c in layer_cores[layer_index] if cores[c].soma}
        for c in layer_cores[layer_index]:  # partial sums to the soma core of the same slice
            if not cores[c].soma:
                add_route(c, soma_by_slice[cores[c].neurons], "partial_sum")
        if layer.readout:
            matrix, ids = RouteNeurons(_readonly(np.zeros(1)), _readonly(np.zeros(0)), layer.n_neurons), ()
        else:
            somas = [c for c in layer_cores[layer_index] if cores[c].soma]
            matrix, ids = spike_routes(somas, layer.n_neurons, layer_cores[layer_index + 1])
        route_neurons.append(matrix)
        route_ids.append(ids)
    links = tuple(sorted(link_ids, key=link_ids.get))
    mapping = Mapping(network, target, tuple(cores), tuple(connectivity), tuple(routes), links,
                      tuple(tuple(c) for c in layer_cores), tuple(route_neurons), tuple(route_ids),
                      tuple(input_cores), input_matrix, input_ids)
    fan_out_fits_core(mapping)
    axon_types_fit_core(mapping)
    return mapping


def core_weight_matrix(layer, neuron_ids: np.ndarray, fan_in: tuple[int, int], axons: np.ndarray) -> np.ndarray:
    """(n_axons, n_neurons) weights of one core (0 where no synapse): row = the core's axon
    (``axons``, sorted input indices), column = its neuron."""
    neuron_ids = np.asarray(neuron_ids, dtype=np.int64)
    idx = fanin_indices(layer, neuron_ids, *fan_in)
    if isinstance(layer, ConvLayer):
        per_position = layer.n_neurons // layer.weight.shape[0]
        weights = layer.weight.reshape(layer.weight.shape[0], -1)[neuron_ids // per_position, fan_in[0]:fan_in[1]]
    elif isinstance(layer, DenseLayer):
        weights = layer.weight[neuron_ids, fan_in[0]:fan_in[1]]
    else:
        weights = np.ones(idx.shape, dtype=np.int64)
    matrix = np.zeros((axons.size, neuron_ids.size), dtype=np.int64)
    valid = idx >= 0
    rows = np.searchsorted(axons, idx[valid])
    cols = np.broadcast_to(np.arange(neuron_ids.size)[:, None], idx.shape)[valid]
    matrix[rows, cols] = np.asarray(weights)[valid]
    return matrix


def axon_type_groups(matrix: np.ndarray, limit: int) -> int:
    """Axon types a core needs for its weight ``matrix`` (axons x neurons), found greedily: an
    axon joins the first type whose weight, for every neuron both use, equals its own; stops
    counting at ``limit + 1``. A result <= limit is an assignment that exists (the core fits)."""
    types = np.zeros((0, matrix.shape[1]), dtype=matrix.dtype)
    order = np.argsort(-(matrix != 0).sum(axis=1), kind="stable")
    for row in matrix[order]:
        if not row.any():
            continue  # an axon without synapses needs no type
        fits = ((types == 0) | (row == 0) | (types == row)).all(axis=1)
        if fits.any():
            first = int(np.argmax(fits))
            types[first] = np.where(row != 0, row, types[first])
        elif types.shape[0] >= limit:
            return limit + 1
        else:
            types = np.vstack([types, row])
    return types.shape[0]


def axon_types_fit_core(mapping: Mapping) -> None:
    """Design rule after partitioning (enforced axon types only): each core's axons can be given
    at most ``axon_types`` types such that every neuron weighs all axons of a type alike."""
    target = mapping.target
    if not _axon_types_enforced(target):
        return
    for core, conn in zip(mapping.cores, mapping.connectivity):
        if core.is_input or isinstance(mapping.network.layers[core.layer_index], PoolLayer):
            continue
        layer = mapping.network.layers[core.layer_index]
        matrix = core_weight_matrix(layer, mapping.neuron_ids(core.core_id), core.fan_in, conn.axons)
        if axon_type_groups(matrix, target.axon_types) > target.axon_types:
            raise DesignRuleError(f"layer {layer.name}: core {core.core_id} needs more than {target.axon_types} axon "
                                  f"types (no assignment found in which every neuron weighs the axons of a type "
                                  f"alike) > {target.axon_types} axon types per core on target {target.name} "
                                  f"({_relax_hint(target)})")


def fan_out_fits_core(mapping: Mapping) -> None:
    """Design rule after routing: a core's core-to-core out-edges (its routes) fit ``axons_out``."""
    target = mapping.target
    edges = np.bincount([route.src for route in mapping.routes], minlength=mapping.n_cores)
    worst = int(np.argmax(edges)) if edges.size else 0
    if edges.size and edges[worst] > target.axons_out_per_core:
        core = mapping.cores[worst]
        raise DesignRuleError(f"layer {core.layer_name}: core {worst} has {int(edges[worst])} fan-out edges > "
                              f"{target.axons_out_per_core} output axons per core on target {target.name}")


def map_network(network: IntegerNetwork, target: Target, order: str | None = None) -> Mapping:
    """Design rules, then partition, place and route ``network`` on ``target`` (input unchanged).
    ``order``: the neuron order of every layer's slices (``NEURON_ORDERS``); None: per layer,
    the one that needs the fewest cores (``best_partition``)."""
    check_design_rules(network, target)
    specs, per_layer = [], []
    for layer_index, layer in enumerate(network.layers):
        groups = fan_in_groups(layer, target)
        if order is None:
            layer_order, slices = best_partition(layer, target)
        else:
            layer_order, slices = order, partition_layer(layer, target, order)
        per_layer.append(len(slices) * len(groups))
        network_fits_core_count(network, target, per_layer + [0] * (len(network.layers) - len(per_layer)))
        for neurons in slices:
            for group, fan_in in enumerate(groups):
                specs.append((layer_index, neurons, fan_in, group, layer_order))
    first = network.layers[0]
    layer0_axons = [core_connectivity(first, neuron_order(first, spec_order)[n[0] : n[1]], fan_in).axons
                    for index, n, fan_in, _, spec_order in specs if index == 0]
    input_specs = _input_specs(network, target, layer0_axons)
    network_fits_core_count(network, target, per_layer, len(input_specs))
    return _build_mapping(network, target, specs, input_specs)


def _group_by_layer(specs: list[tuple], n_layers: int) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(n_layers)]
    for core_id, spec in enumerate(specs):
        groups[spec[0]].append(core_id)
    return groups


class PlacementMismatch(InputError):
    """A stored placement does not describe a mapping of this network on this target."""


def mapping_from_placement(placement: dict, network: IntegerNetwork, target: Target) -> Mapping:
    """Rebuild the ``Mapping`` a placement section describes.

    The placement is checked first (``check_placement``), then the design rules and every
    core's limits on ``target``: a placement edited by hand, or made for another version of the
    target file, fails with ``PlacementMismatch`` / ``DesignRuleError`` rather than simulating a
    chip that cannot exist.
    """
    try:
        check_placement(placement, network)
    except ValueError as exc:
        raise PlacementMismatch(f"placement: {exc}") from None
    if placement["target"] != target.name:
        raise PlacementMismatch(f"placement.target: expected {target.name!r}, found {placement['target']!r}")
    names = {layer.name: i for i, layer in enumerate(network.layers)}
    input_specs = [tuple(c["neurons"]) for c in placement["cores"] if c["layer"] == INPUT_LAYER]
    orders = placement.get("orders", {})
    specs = [(names[c["layer"]], tuple(c["neurons"]), tuple(c["fan_in"]), c["group"], orders.get(c["layer"], "channel"))
             for c in placement["cores"] if c["layer"] != INPUT_LAYER]
    if [c["layer"] for c in placement["cores"][: len(input_specs)]] != [INPUT_LAYER] * len(input_specs):
        raise PlacementMismatch("placement.cores: expected the input generator cores first")
    check_design_rules(network, target)
    network_fits_core_count(network, target, [len(ids) for ids in _group_by_layer(specs, len(network.layers))],
                            len(input_specs))
    for inputs in input_specs:
        if inputs[1] - inputs[0] > target.generators_per_core:
            raise DesignRuleError(f"layer {INPUT_LAYER}: a core holds {inputs[1] - inputs[0]} generators > "
                                  f"{target.generators_per_core} per core on target {target.name}")
    mapping = _build_mapping(network, target, specs, input_specs)
    for core, conn in zip(mapping.cores, mapping.connectivity):
        if core.is_input:
            continue
        layer = network.layers[core.layer_index]
        for what, value, limit in (
            ("neurons", core.n_neurons, target.neurons_per_core),
            ("axons", conn.n_axons, target.axons_per_core),
            ("synapse memory bits", core_synapse_bits(layer, conn, core.n_neurons, target), target.synapse_memory_bits),
        ):
            if value > limit:
                raise DesignRuleError(f"layer {layer.name}: core {core.core_id} holds {what} {value} > {limit} "
                                      f"per core on target {target.name}")
    for index, (core, doc) in enumerate(zip(mapping.cores, placement["cores"])):
        if list(core.router) != list(doc["router"]):
            raise PlacementMismatch(f"placement.cores[{index}].router: expected {list(core.router)} on target "
                                    f"{target.name}, found {doc['router']}")
    rebuilt = [(r.src, r.dst, r.kind) for r in mapping.routes]
    stored = [(r["src"], r["dst"], r["kind"]) for r in placement.get("routes", [])]
    if rebuilt != stored:
        raise PlacementMismatch("placement.routes: expected the routes the cores' connectivity implies, "
                                "found a different list")
    return mapping
