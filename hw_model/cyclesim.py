"""Slow, event-by-event reference of the simulator's counts and cycles (tiny networks only).

Plain Python loops, one event at a time, in time order: for every sample, tick, layer and core,
each arriving spike walks the core's synapse list (one SOP and ``c_sop`` cycles per synapse it
touches), each neuron is updated, each output event becomes one packet per destination core
and walks its XY path hop by hop, loading every directed link on the way. Connectivity is
rebuilt here from the layer geometry with explicit loops (not from the mapper's index arrays),
so this is an independent check of the fast simulator's counts, per-core cycles, mesh drain and
tick lengths, which must agree exactly (``hw_model.simulator.simulate_batch``). The neuron
arithmetic itself is the one definition (``mtlif_step`` / ``readout_step``), applied per neuron.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mapper import Mapping
from .network import ConvLayer, DenseLayer
from .neuron import encode_pixels, mtlif_step, readout_step
from .simulator import COUNT_KINDS
from .target import event_cycles

__all__ = ["CycleTrace", "core_synapses", "run_cycle_stepped"]


@dataclass
class CycleTrace:
    """Same layout as the fast simulator's ``BatchActivity`` (core id, tick, sample)."""

    logits: np.ndarray  # (B, n_classes) int64
    counts: dict  # kind -> (n_cores, n_ticks, B) int64
    core_cycles: np.ndarray  # (n_cores, n_ticks, B) int64
    drain_cycles: np.ndarray  # (n_ticks, B) int64
    max_link_load: np.ndarray  # (n_ticks, B) int64
    tick_cycles: np.ndarray  # (n_ticks, B) int64


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


def core_synapses(layer, neurons: tuple, fan_in: tuple) -> dict:
    """input index -> list of (neuron, weight) the core holds for it (its synapse lists)."""
    table: dict[int, list] = {}
    for neuron in range(*neurons):
        for entry in range(*fan_in):
            synapse = _synapse_list(layer, neuron, entry)
            if synapse is not None:
                table.setdefault(synapse[0], []).append((neuron, synapse[1]))
    return table


def _xy_steps(src: tuple, dst: tuple):
    """Directed links of the XY route, one hop at a time, with the axis of each hop."""
    x, y = src
    while x != dst[0]:
        nxt = (x + (1 if dst[0] > x else -1), y)
        yield ((x, y), nxt), "x"
        x = nxt[0]
    while y != dst[1]:
        nxt = (x, y + (1 if dst[1] > y else -1))
        yield ((x, y), nxt), "y"
        y = nxt[1]


def run_cycle_stepped(mapping: Mapping, images: np.ndarray) -> CycleTrace:
    """Event-by-event simulation of ``images`` (B, C, H, W) uint8 on ``mapping``."""
    net, target = mapping.network, mapping.target
    cycles = event_cycles(target)
    unary = target.encoding == "unary"
    n_layers, steps = len(net.layers), net.timesteps
    ticks, b = steps + n_layers - 1, images.shape[0]
    counts = {kind: np.zeros((mapping.n_cores, ticks, b), dtype=np.int64) for kind in COUNT_KINDS}
    core_cycles = np.zeros((mapping.n_cores, ticks, b), dtype=np.int64)
    drain = np.zeros((ticks, b), dtype=np.int64)
    max_link = np.zeros((ticks, b), dtype=np.int64)
    tick_cycles = np.zeros((ticks, b), dtype=np.int64)
    logits = np.zeros((b, net.n_classes), dtype=np.int64)

    synapses = [core_synapses(net.layers[c.layer_index], c.neurons, c.fan_in) for c in mapping.cores]
    layer_cores = [[c for c in mapping.cores if c.layer_index == i] for i in range(n_layers)]
    # which cores of the next layer listen to each neuron (independently of the mapper's routes)
    listeners = []
    for index in range(n_layers - 1):
        table: dict[int, list] = {}
        for dst in layer_cores[index + 1]:
            for axon in sorted(synapses[dst.core_id]):
                table.setdefault(axon, []).append(dst.core_id)
        listeners.append(table)

    for sample in range(b):
        inputs = [[int(v) for v in encode_pixels(images[sample], net.encoder.smax).reshape(-1)]] * steps
        link_load = [dict() for _ in range(ticks)]
        for index, layer in enumerate(net.layers):
            p = layer.neuron
            v = [0] * layer.n_neurons
            outputs = []
            bias = [0] * layer.n_neurons
            if isinstance(layer, (ConvLayer, DenseLayer)):
                per_channel = layer.n_neurons // layer.bias.shape[0]
                bias = [int(layer.bias[n // per_channel]) for n in range(layer.n_neurons)]
            for t in range(steps):
                tick = t + index
                x = inputs[t]
                current = list(bias)
                got_input = [False] * layer.n_neurons
                out_counts = [0] * layer.n_neurons

                def send(src_core, dst_core):
                    counts["packets"][src_core.core_id, tick, sample] += 1
                    latency = cycles["packet"]
                    for link, axis in _xy_steps(src_core.router, mapping.cores[dst_core].router):
                        counts[f"hops_{axis}"][src_core.core_id, tick, sample] += 1
                        latency += cycles[f"hop_{axis}"]
                        link_load[tick][link] = link_load[tick].get(link, 0) + 1
                    drain[tick, sample] = max(drain[tick, sample], latency)

                for core in layer_cores[index]:  # synaptic events, axon by axon
                    partial = {}
                    busy = 0
                    for axon in sorted(synapses[core.core_id]):
                        k = x[axon]
                        if k == 0:
                            continue
                        n_events = k if unary else 1
                        for _ in range(n_events):
                            counts["input_events"][core.core_id, tick, sample] += 1
                            for neuron, weight in synapses[core.core_id][axon]:
                                counts["sops"][core.core_id, tick, sample] += 1
                                busy += cycles["sop"]
                                partial[neuron] = partial.get(neuron, 0) + weight * (1 if unary else k)
                                got_input[neuron] = True
                    core_cycles[core.core_id, tick, sample] += busy
                    for neuron in range(*core.neurons):
                        current[neuron] += partial.get(neuron, 0)
                    if not core.soma:  # partial sums travel to the soma core of the slice
                        soma = next(c.core_id for c in layer_cores[index] if c.soma and c.neurons == core.neurons)
                        for neuron in range(*core.neurons):
                            if partial.get(neuron, 0) != 0:
                                send(core, soma)
                for core in layer_cores[index]:  # neuron updates on the soma cores
                    if not core.soma:
                        continue
                    for neuron in range(*core.neurons):
                        cell = core.core_id, tick, sample
                        counts["updates"][cell] += 1
                        if got_input[neuron]:
                            counts["active_updates"][cell] += 1
                            core_cycles[cell] += cycles["update_active"]
                        else:
                            core_cycles[cell] += cycles["update_inactive"]
                        vv, ii = np.array([v[neuron]]), np.array([current[neuron]])
                        if layer.readout:
                            v_next, _ = readout_step(vv, ii, p.acc_bits)
                            v[neuron] = int(v_next[0])
                            continue
                        s, v_next, _ = mtlif_step(vv, ii, p.theta_int, p.delta, p.smax, p.acc_bits)
                        v[neuron], count = int(v_next[0]), int(s[0])
                        out_counts[neuron] = count
                        if count == 0:
                            continue
                        counts["spikes"][cell] += count
                        counts["spike_events"][cell] += 1
                        for _ in range(count if unary else 1):
                            for dst in listeners[index].get(neuron, []):
                                send(core, dst)
                outputs.append(out_counts)
            if layer.readout:
                logits[sample] = v
            else:
                inputs = outputs
        for tick in range(ticks):
            max_link[tick, sample] = max(link_load[tick].values(), default=0)
            d = max(drain[tick, sample], max_link[tick, sample] * cycles["link_packet"])
            drain[tick, sample] = d
            work = max(int(core_cycles[c, tick, sample]) for c in range(mapping.n_cores)) + d + cycles["barrier"]
            tick_cycles[tick, sample] = cycles["tick"] if target.time_model == "fixed" else work
    return CycleTrace(logits, counts, core_cycles, drain, max_link, tick_cycles)
