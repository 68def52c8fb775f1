"""Slow, event-by-event reference of the simulator's counts and cycles (tiny networks only).

Plain Python loops, one event at a time, tick by tick on the chip's schedule
(``hw_model.schedule``: free-running, bias every tick, per-layer reset offsets, the input
generators sending in ticks 0..T-1): each message walks its XY path hop by hop, each arriving
spike walks the receiving core's synapse list (one synapse read per synapse it drives), each
neuron of a soma core is read and, when its state changes, updated. Connectivity is rebuilt
here from the layer geometry with explicit loops (not from the mapper's index arrays), so this
is an independent check of the fast simulator's counts, arrival times, per-core cycles and tick
lengths, which must agree exactly (``hw_model.simulator.simulate_batch``). The neuron arithmetic
itself is the one definition (``mtlif_step`` / ``readout_step``), applied per neuron, and the
prices are the one definition too (``hw_model.pricing``), applied per core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mapper import Mapping
from .network import ConvLayer, DenseLayer
from .neuron import encode_pixels, mtlif_step, readout_step
from .pricing import COUNT_KINDS, core_prices, receive_cycles, receive_done_cycles, send_cycles
from .schedule import schedule_for
from .target import sync_cycles

__all__ = ["CycleTrace", "core_synapses", "run_cycle_stepped"]


@dataclass
class CycleTrace:
    """Same layout as the fast simulator's ``BatchActivity`` (core id, chip tick, sample)."""

    logits: np.ndarray  # (B, n_classes) int64
    tick_spikes: dict  # layer name -> (n_ticks, B, n_out) spike counts
    counts: dict  # kind -> (n_cores, n_chip_ticks, B) int64
    core_cycles: np.ndarray  # (n_cores, n_chip_ticks, B) int64
    tick_cycles: np.ndarray  # (n_chip_ticks, B) int64


def _synapse_list(layer, neuron: int, fan_entry: int):
    """(input index, weight) of one synapse, or None for a padding position; explicit geometry."""
    if isinstance(layer, DenseLayer):
        return fan_entry, int(layer.weight[neuron, fan_entry])
    c_in, h, w = layer.in_shape
    _, oh, ow = layer.out_shape
    k = layer.kernel
    out_channel, rest = divmod(neuron, oh * ow)
    y, x = divmod(rest, ow)
    if isinstance(layer, ConvLayer):
        c, r = divmod(fan_entry, k * k)
        ky, kx = divmod(r, k)
        iy, ix = y * layer.stride + ky - layer.padding, x * layer.stride + kx - layer.padding
        weight = int(layer.weight[out_channel, c, ky, kx])
    else:  # pool: window of the same channel, weight 1
        ky, kx = divmod(fan_entry, k)
        c, iy, ix, weight = out_channel, y * k + ky, x * k + kx, 1
    if 0 <= iy < h and 0 <= ix < w:
        return c * h * w + iy * w + ix, weight
    return None


def core_synapses(layer, neurons, fan_in: tuple) -> dict:
    """input index -> list of (neuron, weight) the core holds for it (its synapse lists);
    ``neurons``: the core's neuron indices (or a (start, stop) range of them)."""
    table: dict[int, list] = {}
    if isinstance(neurons, tuple) and len(neurons) == 2:
        neurons = range(*neurons)
    for neuron in [int(n) for n in neurons]:
        for entry in range(*fan_in):
            synapse = _synapse_list(layer, neuron, entry)
            if synapse is not None:
                table.setdefault(synapse[0], []).append((neuron, synapse[1]))
    return table


def _xy_hops(src: tuple, dst: tuple) -> tuple[int, int]:
    """Hops along x, then along y, walked one router at a time."""
    hops_x = hops_y = 0
    x, y = src
    while x != dst[0]:
        x += 1 if dst[0] > x else -1
        hops_x += 1
    while y != dst[1]:
        y += 1 if dst[1] > y else -1
        hops_y += 1
    return hops_x, hops_y


def _bias_per_neuron(layer) -> list[int]:
    if isinstance(layer, (ConvLayer, DenseLayer)):
        per_channel = layer.n_neurons // layer.bias.shape[0]
        return [int(layer.bias[n // per_channel]) for n in range(layer.n_neurons)]
    return [0] * layer.n_neurons


def run_cycle_stepped(mapping: Mapping, images: np.ndarray) -> CycleTrace:
    """Event-by-event simulation of ``images`` (B, C, H, W) uint8 on ``mapping``."""
    net, target = mapping.network, mapping.target
    prices = core_prices(mapping)
    cycles = prices.cycles
    unary = target.encoding == "unary"
    sched = schedule_for(net, target)
    n_layers, n_ticks, b, sub = len(net.layers), sched.n_ticks, images.shape[0], sched.subticks
    counts = {kind: np.zeros((mapping.n_cores, sched.n_chip_ticks, b), dtype=np.int64) for kind in COUNT_KINDS}

    def emissions(tick: int, k: int) -> list:
        """(chip tick, events) of a count k sent in step ``tick``: k one-bit events in that tick
        (unary, one chip tick per step), one graded event, or one spike in each of sub-ticks 0..k-1."""
        if not k:
            return []
        if sub > 1:
            return [(tick * sub + j, 1) for j in range(k)]
        return [(tick, k if unary else 1)]

    logits = np.zeros((b, net.n_classes), dtype=np.int64)
    tick_spikes = {layer.name: np.zeros((n_ticks, b, layer.n_neurons), dtype=np.int64) for layer in net.layers[:-1]}

    synapses = {c.core_id: core_synapses(net.layers[c.layer_index], mapping.neuron_ids(c.core_id), c.fan_in)
                for c in mapping.cores if not c.is_input}
    layer_cores = [[c for c in mapping.cores if c.layer_index == i] for i in range(n_layers)]
    input_cores = [c for c in mapping.cores if c.is_input]
    # which cores of each layer listen to each of its inputs (independently of the mapper's routes)
    listeners = []
    for index in range(n_layers):
        table: dict[int, list] = {}
        for dst in layer_cores[index]:
            for axon in sorted(synapses[dst.core_id]):
                table.setdefault(axon, []).append(dst.core_id)
        listeners.append(table)

    sent = []  # every message: (tick, sample, src core, dst core, source neuron or -1 for a partial sum)
    for sample in range(b):
        encoded = [int(v) for v in encode_pixels(images[sample], net.encoder.smax).reshape(-1)]
        emitted = [[0] * len(encoded) for _ in range(n_ticks)]  # what layer 0's source emits, per tick
        for tick in sched.input_ticks:
            for core in input_cores:
                for neuron in mapping.neuron_ids(core.core_id).tolist():
                    k = emitted[tick][neuron] = encoded[neuron]
                    for chip, events in emissions(tick, k):
                        counts["input_spikes"][core.core_id, chip, sample] += events
                        for dst in listeners[0].get(neuron, []):
                            sent += [(chip, sample, core.core_id, dst, neuron)] * events
        for index, layer in enumerate(net.layers):
            # receiving: the source's events of each tick, read synapse by synapse
            arrived = []  # per tick: (partial current per neuron, neurons that got input)
            for tick in range(n_ticks):
                current, got = {}, set()
                for core in layer_cores[index]:
                    partial = {}
                    for axon, targets in synapses[core.core_id].items():
                        k = emitted[tick][axon]
                        for neuron, weight in targets if k else ():
                            partial[neuron] = partial.get(neuron, 0) + weight * k
                            got.add(neuron)
                    for neuron, value in partial.items():
                        current[neuron] = current.get(neuron, 0) + value
                    if not core.soma:  # its nonzero partial sums travel to the soma core of the slice
                        soma = next(c.core_id for c in layer_cores[index] if c.soma and c.neurons == core.neurons)
                        last = tick * sub + sub - 1  # partial sums leave once the step's arrivals are in
                        sent += [(last, sample, core.core_id, soma, -1)] * sum(1 for v in partial.values() if v)
                arrived.append((current, got))
            # the neurons: every soma core, every tick
            p, bias = layer.neuron, _bias_per_neuron(layer)
            v = [0] * layer.n_neurons
            out = [[0] * layer.n_neurons for _ in range(n_ticks)]
            for tick in range(n_ticks):
                if tick == sched.reset_tick(index):
                    v = [0] * layer.n_neurons
                current, got = arrived[tick - 1] if tick >= 1 else ({}, set())
                for core in layer_cores[index]:
                    cell = core.core_id, tick * sub, sample  # the step's first chip tick
                    for chip in sched.chip_ticks(tick):
                        counts["compartments"][core.core_id, chip, sample] += core.n_neurons
                    for neuron in mapping.neuron_ids(core.core_id).tolist() if core.soma else ():
                        if v[neuron] != 0 or neuron in got or bias[neuron] != 0:
                            counts["updates"][cell] += 1
                        vv, ii = np.array([v[neuron]]), np.array([bias[neuron] + current.get(neuron, 0)])
                        if layer.readout:
                            v[neuron] = int(readout_step(vv, ii, p.acc_bits)[0][0])
                            continue
                        s, v_next, _ = mtlif_step(vv, ii, p.theta_int, p.delta, p.smax, p.acc_bits)
                        v[neuron], k = int(v_next[0]), int(s[0])
                        out[tick][neuron] = k
                        for chip, events in emissions(tick, k):
                            counts["spikes_out"][core.core_id, chip, sample] += events
                            if chip != cell[1]:  # firing in a later sub-tick is an update there
                                counts["updates"][core.core_id, chip, sample] += 1
                            for dst in listeners[index + 1].get(neuron, []):
                                sent += [(chip, sample, core.core_id, dst, neuron)] * events
            if layer.readout:
                logits[sample] = v
            else:
                tick_spikes[layer.name][:, sample] = out
                emitted = out

    latencies = _deliver(mapping, sent, counts, cycles, synapses)
    send = send_cycles(counts, prices)
    first, last = _arrival_times(sent, latencies, send, cycles)
    work = receive_cycles(counts, prices)
    done = receive_done_cycles(work, counts["messages_in"], first, last)
    core_cycles = np.maximum(send, done)
    tick = core_cycles.max(axis=0) + sync_cycles(target, mapping.tiles_in_use)
    if target.time_model == "fixed":
        tick = np.full_like(tick, cycles["tick"])
    return CycleTrace(logits, tick_spikes, counts, core_cycles, tick)


def _deliver(mapping: Mapping, sent: list, counts: dict, cycles: dict, synapses: dict) -> list[int]:
    """Count every message at its source (messages_out, hops) and its destination (messages_in,
    synapse reads); returns each message's cycles on the mesh."""
    latencies = []
    for tick, sample, src, dst, neuron in sent:
        hops_x, hops_y = _xy_hops(mapping.cores[src].router, mapping.cores[dst].router)
        counts["messages_out"][src, tick, sample] += 1
        counts["hops_x"][src, tick, sample] += hops_x
        counts["hops_y"][src, tick, sample] += hops_y
        counts["messages_in"][dst, tick, sample] += 1
        if neuron >= 0:  # a spike reads the synapses its axon drives in the core (a partial sum reads none)
            counts["synapse_reads"][dst, tick, sample] += len(synapses[dst].get(neuron, ()))
        latencies.append(hops_x * cycles["hop_x"] + hops_y * cycles["hop_y"])
    return latencies


def _arrival_times(sent: list, latencies: list, send: np.ndarray, cycles: dict):
    """Per destination core and tick: the first arrival (the quickest message: its route plus one
    message's sending) and the last (the source core's whole neuron stream plus its route)."""
    first = np.full(send.shape, np.iinfo(np.int64).max // 4, dtype=np.int64)
    last = np.zeros(send.shape, dtype=np.int64)
    for (tick, sample, src, dst, _), latency in zip(sent, latencies):
        first[dst, tick, sample] = min(first[dst, tick, sample], latency + cycles["axon_out"])
        last[dst, tick, sample] = max(last[dst, tick, sample], send[src, tick, sample] + latency)
    return first, last
