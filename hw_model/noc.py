"""The detailed network timing model: every message of a tick, in send order, through a mesh
whose links fill up, with back-pressure on the senders. Slower than the fast model; used on a
sample of inputs (``hw_model.simulator.detailed_tick_cycles``) and in the SANA-FE cross-check.

It is our implementation of the semi-analytical network model SANA-FE uses for its calibrated
Loihi figures (Boyle et al., IEEE TCAD 2025, "detailed" timing), which we describe here:

- Each core emits its messages back to back in neuron order. A message's *generation delay* is
  the neuron processing accumulated since the core's previous message (compartment read, update,
  spike) plus one ``axon_out``; a core's leftover processing after its last message is a
  placeholder that only advances its clock.
- Messages are handled in the global order of their send times. Each message in the network
  adds ``1 / (hops + 2)`` to the *density* of every link on its XY path (the sending core's own
  link, the links between routers, the receiving router's input); it leaves the network when
  its receiving core starts processing it.
- A new message's congestion ``n`` is the summed density along its path. If ``n`` exceeds the
  path's buffering ``(hops + 1) x link_buffer_messages``, the sender is blocked for
  ``(n - capacity) x m`` (``m``: the mean processing time of the messages in the network), which
  also delays every later message of that core. Its network delay is the larger of the hop
  latencies and ``n x m / (hops + 1)``.
- The receiving core processes messages one at a time (``axon_in`` + the synapse reads): a
  message is processed once it has arrived and the core is free.
- The tick's work ends with the last send or the last processing, whichever is later.

Times are in cycles of the target's ``cycle_s`` (floating point inside, the result rounded).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

__all__ = ["CoreMessages", "NocGeometry", "noc_geometry", "detailed_tick", "detailed_tick_cycles"]


@dataclass(frozen=True)
class NocGeometry:
    """Per (source core, destination core): the link ids a message's density sits on, its hops
    and its hop latency in cycles; and the links' buffering."""

    paths: dict  # (src, dst) -> (link ids tuple, hops, hop cycles)
    n_links: int
    link_buffer_messages: int


def noc_geometry(mapping) -> NocGeometry:
    """The geometry of every route of ``mapping`` (and of every core to itself)."""
    from .pricing import core_prices

    cycles = core_prices(mapping).cycles
    link_ids: dict = {}
    paths = {}
    per_tile = mapping.target.cores_per_router
    for route in mapping.routes:
        (sx, sy), (dx, dy) = mapping.cores[route.src].router, mapping.cores[route.dst].router
        keys = _path_links(sx, sy, dx, dy, route.src % per_tile)
        ids = tuple(link_ids.setdefault(key, len(link_ids)) for key in keys)
        paths[(route.src, route.dst)] = (ids, route.hops_x + route.hops_y,
                                         float(route.hops_x * cycles["hop_x"] + route.hops_y * cycles["hop_y"]))
    return NocGeometry(paths=paths, n_links=len(link_ids), link_buffer_messages=mapping.target.link_buffer_messages)


@dataclass
class CoreMessages:
    """One core's messages of one tick, in send order (parallel lists)."""

    generation: list  # cycles before each message leaves, after the previous one
    destination: list  # destination core id, -1 for the trailing placeholder
    processing: list  # cycles the destination spends on it (axon_in + synapse reads)


def _path_links(sx: int, sy: int, dx: int, dy: int, offset: int) -> tuple:
    """The link keys a message's density sits on: the sending core's link at its router, then
    the router links of the X leg, then of the Y leg, ending at the destination router."""
    local = ("core", offset)
    links = []
    step_x = 1 if dx > sx else -1
    previous = local
    x = sx
    while x != dx:
        direction = "E" if step_x > 0 else "W"
        links.append((x, sy, local if x == sx else direction))
        previous = direction
        x += step_x
    step_y = 1 if dy > sy else -1
    y = sy
    while y != dy:
        direction = "N" if step_y > 0 else "S"
        links.append((dx, y, local if (sx == dx and y == sy) else previous))
        previous = direction
        y += step_y
    links.append((dx, dy, local if (sx == dx and sy == dy) else previous))
    return tuple(links)


def detailed_tick(messages: dict, geometry: NocGeometry) -> float:
    """Cycles from the start of a tick to its last event, for ``messages``: core id ->
    ``CoreMessages``. (The synchronisation is added by the caller.)"""
    queues = {core: 0 for core, m in messages.items() if m.generation}
    heap = [(float(messages[core].generation[0]), core) for core in queues]
    heapq.heapify(heap)
    density = [0.0] * geometry.n_links
    paths, buffer = geometry.paths, geometry.link_buffer_messages
    in_flight: list = []  # heap of (received time, sequence, link ids, share, processing)
    mean_processing, flying, sequence = 0.0, 0, 0
    core_free: dict = {}
    last = 0.0
    while heap:
        sent, core = heapq.heappop(heap)
        if sent > last:
            last = sent
        while in_flight and in_flight[0][0] <= sent:  # messages received by now leave the network
            _, _, links, share, processing = heapq.heappop(in_flight)
            for link in links:
                density[link] -= share
            mean_processing = mean_processing + (mean_processing - processing) / (flying - 1) if flying > 1 else 0.0
            flying -= 1
        index = queues[core]
        queue = messages[core]
        dest = queue.destination[index]
        if dest >= 0:
            links, hops, min_hop = paths[(core, dest)]
            congestion = 0.0
            for link in links:
                congestion += density[link]
            capacity = (hops + 1) * buffer
            if congestion > capacity:
                sent += (congestion - capacity) * mean_processing  # the sender is blocked
            network = congestion * mean_processing / (hops + 1)
            arrival = sent + (network if network > min_hop else min_hop)
            processing = float(queue.processing[index])
            free = core_free.get(dest, 0.0)
            received = free if free > arrival else arrival
            done = received + processing
            core_free[dest] = done
            if done > last:
                last = done
            share = 1.0 / (len(links) + 1)
            for link in links:
                density[link] += share
            mean_processing += (processing - mean_processing) / (flying + 1)
            flying += 1
            sequence += 1
            heapq.heappush(in_flight, (received, sequence, links, share, processing))
        index += 1
        queues[core] = index
        if index < len(queue.generation):
            nxt = sent + queue.generation[index]
            if nxt > last:
                last = nxt
            heapq.heappush(heap, (nxt, core))
    return last


# ----------------------------------------------------------------------------- from a simulation


def _order_key(mapping, core_id: int) -> tuple:
    """The order in which a neuron's messages leave: by destination tile, numbered column by
    column (x * mesh_y + y, as SANA-FE numbers tiles), then by the core's place in its tile."""
    x, y = mapping.cores[core_id].router
    return (x * mapping.target.mesh_y + y, core_id % mapping.target.cores_per_router)


def _destinations(mapping, core_ids: list, n_sources: int, prices) -> list:
    """Per source neuron: [(destination core, cycles to process its message)] in sending order."""
    c_in = prices.cycles["axon_in"]
    table: list = [[] for _ in range(n_sources)]
    for dst in sorted(core_ids, key=lambda c: _order_key(mapping, c)):
        conn = mapping.connectivity[dst]
        per_synapse = int(prices.synapse_cycles[dst])
        for axon, fanout in zip(conn.axons.tolist(), conn.fanout.tolist()):
            table[axon].append((dst, c_in + fanout * per_synapse))
    return table


def _emit(queue: CoreMessages, destinations: list, events: int, carried: float, axon_out: int) -> None:
    """Messages of one firing source: ``events`` times each destination; the first carries the
    processing accumulated since the core's previous message."""
    for _ in range(events):
        for dst, processing in destinations:
            queue.generation.append(carried + axon_out)
            queue.destination.append(dst)
            queue.processing.append(processing)
            carried = 0.0


def _neuron_core_messages(queue: CoreMessages, costs: np.ndarray, fired: np.ndarray, neurons: range,
                          destinations: list, unary: bool, axon_out: int) -> None:
    """A core's neurons in order: each one's processing cost, then its messages if it fired;
    what is left after the last message becomes a placeholder."""
    carried, previous = 0.0, 0
    cumulative = np.cumsum(costs)
    for local in np.flatnonzero(fired):
        carried += float(cumulative[local] - (cumulative[previous - 1] if previous else 0.0))
        previous = local + 1
        k = int(fired[local])
        before = len(queue.generation)
        _emit(queue, destinations[neurons[local]], k if unary else 1, carried, axon_out)
        if len(queue.generation) > before:
            carried = 0.0
    carried += float(cumulative[-1] - (cumulative[previous - 1] if previous else 0.0)) if costs.size else 0.0
    if carried > 0:
        queue.generation.append(carried)
        queue.destination.append(-1)
        queue.processing.append(0)


def detailed_tick_cycles(mapping, images: np.ndarray) -> np.ndarray:
    """(n_chip_ticks, B) int64 tick lengths of the detailed model, synchronisation included, for
    ``images`` on ``mapping`` (asap targets; a fixed-tick target's ticks are its fixed length)."""
    from .neuron import encode_pixels
    from .pricing import core_prices
    from .schedule import schedule_for, sent_in_subtick
    from .simulator import simulate_batch
    from .target import sync_cycles

    target, net = mapping.target, mapping.network
    prices = core_prices(mapping)
    cycles = prices.cycles
    sched = schedule_for(net, target)
    sub = sched.subticks
    b = images.shape[0]
    activity = simulate_batch(mapping, images, record_ticks=True)
    if target.time_model == "fixed":
        return activity.tick_cycles
    unary = target.encoding == "unary"
    geometry = noc_geometry(mapping)
    n_inputs = int(np.prod(net.encoder.shape))
    input_destinations = _destinations(mapping, list(mapping.layer_cores[0]), n_inputs, prices)
    layer_destinations = [_destinations(mapping, list(mapping.layer_cores[i + 1]), layer.n_neurons, prices)
                          if not layer.readout else None for i, layer in enumerate(net.layers)]
    encoded = encode_pixels(images, net.encoder.smax).reshape(b, -1)
    sync = sync_cycles(target, mapping.tiles_in_use)
    out = np.zeros((sched.n_chip_ticks, b), dtype=np.int64)
    for sample in range(b):
        for chip in range(sched.n_chip_ticks):
            tick, j = divmod(chip, sub)  # sub-tick j of step tick (hw_model.schedule)
            queues: dict = {}
            if tick in sched.input_ticks:
                for core_id in mapping.input_cores:
                    n0, n1 = mapping.cores[core_id].neurons
                    queue = queues.setdefault(core_id, CoreMessages([], [], []))
                    sent_now = sent_in_subtick(encoded[sample, n0:n1], j, sub)
                    for n in np.flatnonzero(sent_now) + n0:  # input cores hold ranges
                        k = int(sent_now[n - n0])
                        _emit(queue, input_destinations[n], k if unary else 1, 0.0, cycles["axon_out"])
            for index, layer in enumerate(net.layers):
                updated = activity.tick_updates[layer.name][tick, sample]
                fired = activity.tick_spikes[layer.name][tick, sample] if not layer.readout else None
                if fired is not None:
                    updated = updated if j == 0 else fired > j  # later sub-ticks update the neurons that fire
                    fired = sent_in_subtick(fired, j, sub)
                elif j:
                    updated = np.zeros_like(updated)
                for core_id in mapping.layer_cores[index]:
                    core = mapping.cores[core_id]
                    neurons = mapping.neuron_ids(core_id)
                    queue = queues.setdefault(core_id, CoreMessages([], [], []))
                    if core.soma:
                        count = fired[neurons] if fired is not None else np.zeros(len(neurons), np.int64)
                        spikes = count if unary else (count > 0)
                        costs = (cycles["compartment"] + updated[neurons] * cycles["update"]
                                 + spikes.astype(np.int64) * cycles["spike_out"]).astype(np.float64)
                        dests = layer_destinations[index] if fired is not None else [[] for _ in range(
                            layer.n_neurons)]
                        _neuron_core_messages(queue, costs, count.astype(np.int64), neurons, dests, unary,
                                              cycles["axon_out"])
                    else:  # a partial-sum core: compartment reads, one message per nonzero partial sum
                        soma = next(c for c in mapping.layer_cores[index] if mapping.cores[c].soma
                                    and mapping.cores[c].neurons == core.neurons)
                        sent = activity.tick_psums[layer.name][core_id][tick, sample]
                        sent = sent if j == sub - 1 else np.zeros_like(sent)  # leave after the last arrival
                        costs = np.full(len(neurons), float(cycles["compartment"]))
                        dests = [[(soma, cycles["axon_in"])] for _ in range(layer.n_neurons)]
                        _neuron_core_messages(queue, costs, sent.astype(np.int64), neurons, dests, True,
                                              cycles["axon_out"])
            out[chip, sample] = int(round(detailed_tick(queues, geometry))) + sync
    return out
