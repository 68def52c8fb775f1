"""Simulator: bit-exact against the numpy reference, SOPs against an independent count, the
event-by-event cycle-stepped mode agrees exactly, and the counts keep their invariants."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtsnn.hw_model.cyclesim import run_cycle_stepped
from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.network import ConvLayer, DenseLayer, PoolLayer
from mtsnn.hw_model.neuron import encode_pixels
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.simulator import (
    COUNT_KINDS,
    n_ticks,
    price_energy,
    simulate,
    simulate_batch,
    summarize,
)
from mtsnn.hw_model.synthetic import random_images, random_network
from mtsnn.hw_model.target import event_cycles, load_target

MESH = dict(n_cores=4096, mesh_x=4, mesh_y=1024)  # narrow mesh: traffic along both axes
PARTITIONINGS = {
    "preset": {},
    "small-cores": dict(neurons_per_core=7, **MESH),
    "split-fan-in": dict(neurons_per_core=6, axons_per_core=10, partial_sums=True, **MESH),
    "graded": dict(encoding="graded", neurons_per_core=11, **MESH),
}
NETWORKS = {
    "conv-pool-dense": dict(input_shape=(1, 8, 8), layers=(("conv", 4, 3, 1), ("pool", 2), ("dense", 16))),
    "two-conv": dict(input_shape=(2, 7, 7), layers=(("conv", 3, 3, 0), ("conv", 5, 2, 1), ("dense", 8))),
    "dense-only": dict(input_shape=(1, 5, 5), layers=(("dense", 30),)),
}


def _setup(net_name, target_name, partitioning, seed=0, n=12, **net_kw):
    rng = np.random.default_rng(seed)
    spec = NETWORKS[net_name]
    net = random_network(rng, spec["input_shape"], spec["layers"], 10, timesteps=3, **net_kw)
    images = random_images(rng, n, spec["input_shape"])
    target = dataclasses.replace(load_target(target_name), **PARTITIONINGS[partitioning])
    return map_network(net, target), images


@pytest.mark.parametrize("partitioning", list(PARTITIONINGS))
@pytest.mark.parametrize("target_name", ["loihi", "truenorth"])
@pytest.mark.parametrize("net_name", list(NETWORKS))
def test_bit_exact_against_reference(net_name, target_name, partitioning):
    mapping, images = _setup(net_name, target_name, partitioning)
    ref = run_reference(mapping.network, images)
    act = simulate_batch(mapping, images, record_spikes=True)
    assert np.array_equal(act.logits, ref.logits)
    assert set(act.spikes) == set(ref.spikes)
    for name, spikes in ref.spikes.items():
        assert np.array_equal(act.spikes[name], spikes), name
    assert act.saturations == ref.saturations
    result = simulate(mapping, images, batch_size=5)  # streaming, uneven batches
    assert np.array_equal(result.logits, ref.logits)


def test_saturations_are_counted_like_the_reference():
    mapping, images = _setup("conv-pool-dense", "loihi", "small-cores", acc_bits=10, theta_scale=40.0)
    ref = run_reference(mapping.network, images)
    assert sum(ref.saturations.values()) > 0
    result = simulate(mapping, images, batch_size=4)
    assert result.saturations == ref.saturations


def _independent_fanout(layer) -> np.ndarray:
    """Fan-out of every input position over the layer's connectivity (flat (C, H, W))."""
    if isinstance(layer, DenseLayer):
        return np.full(int(np.prod(layer.in_shape)), layer.weight.shape[0])
    if isinstance(layer, PoolLayer):
        c, h, w = layer.in_shape
        fan = np.zeros((c, h, w), dtype=np.int64)
        k = layer.kernel
        fan[:, : (h // k) * k, : (w // k) * k] = 1
        return fan.reshape(-1)
    assert isinstance(layer, ConvLayer)
    c, h, w = layer.in_shape
    o, oh, ow = layer.out_shape
    k, s, p = layer.kernel, layer.stride, layer.padding
    padded = np.zeros((c, h + 2 * p, w + 2 * p), dtype=np.int64)
    for y in range(oh):  # transposed convolution of ones: add.at over the receptive fields
        for x in range(ow):
            np.add.at(padded, (slice(None), slice(y * s, y * s + k), slice(x * s, x * s + k)), o)
    return padded[:, p : p + h, p : p + w].reshape(-1)


@pytest.mark.parametrize("partitioning", ["preset", "small-cores", "split-fan-in"])
@pytest.mark.parametrize("net_name", ["conv-pool-dense", "two-conv"])
def test_sop_cross_check_per_layer(net_name, partitioning):
    mapping, images = _setup(net_name, "loihi", partitioning)
    net = mapping.network
    ref = run_reference(net, images)
    act = simulate_batch(mapping, images)
    counts = encode_pixels(images, net.encoder.smax).reshape(len(images), -1)
    layer_inputs = [np.broadcast_to(counts, (net.timesteps,) + counts.shape)]
    for layer in net.layers[:-1]:
        layer_inputs.append(ref.spikes[layer.name].reshape(net.timesteps, len(images), -1))
    for index, layer in enumerate(net.layers):
        expected = int((layer_inputs[index].astype(np.int64) * _independent_fanout(layer)).sum())
        simulated = int(act.counts["sops"][list(mapping.layer_cores[index])].sum())
        assert simulated == expected, layer.name


CYCLE_CASES = [
    ("conv-pool-dense", "loihi", "preset"),
    ("conv-pool-dense", "truenorth", "small-cores"),
    ("conv-pool-dense", "loihi", "split-fan-in"),
    ("two-conv", "truenorth", "graded"),
    ("two-conv", "loihi", "small-cores"),
    ("dense-only", "truenorth", "split-fan-in"),
]


@pytest.mark.parametrize("net_name,target_name,partitioning", CYCLE_CASES)
def test_cycle_stepped_mode_agrees_exactly(net_name, target_name, partitioning):
    mapping, images = _setup(net_name, target_name, partitioning, n=2, smax=3)
    fast = simulate_batch(mapping, images)
    slow = run_cycle_stepped(mapping, images)
    for kind in COUNT_KINDS:
        assert np.array_equal(fast.counts[kind], slow.counts[kind]), kind
    assert np.array_equal(fast.core_cycles, slow.core_cycles)
    assert np.array_equal(fast.drain_cycles, slow.drain_cycles)
    assert np.array_equal(fast.max_link_load, slow.max_link_load)
    assert np.array_equal(fast.tick_cycles, slow.tick_cycles)
    assert np.array_equal(fast.logits, slow.logits)
    assert fast.counts["sops"].sum() > 0 and fast.counts["packets"].sum() > 0


@pytest.mark.parametrize("partitioning", list(PARTITIONINGS))
def test_count_invariants(partitioning):
    mapping, images = _setup("conv-pool-dense", "loihi", partitioning)
    act = simulate_batch(mapping, images)
    net, target = mapping.network, mapping.target
    for kind in COUNT_KINDS:
        assert (act.counts[kind] >= 0).all(), kind
    assert act.counts["hops_y"].sum() > 0 or partitioning == "preset"
    # hops = packets x Manhattan distance, route by route
    layer_cores = mapping.layer_cores
    for index, layer in enumerate(net.layers):
        ids = list(layer_cores[index])
        c = {kind: act.counts[kind][ids] for kind in COUNT_KINDS}
        assert (c["updates"].sum(axis=0) == np.where(
            (np.arange(n_ticks(mapping)) >= index) & (np.arange(n_ticks(mapping)) < index + net.timesteps),
            layer.n_neurons, 0)[:, None]).all()
        assert (c["active_updates"] <= c["updates"]).all()
        assert (c["spike_events"] <= c["spikes"]).all() and (c["spikes"] <= layer.neuron.smax * c["spike_events"]).all()
        if index + 1 < len(net.layers) and target.encoding == "unary" and not target.partial_sums:
            # every spike packet delivers exactly one input event to one core of the next layer
            nxt = list(layer_cores[index + 1])
            assert act.counts["input_events"][nxt].sum() == c["packets"].sum()
    max_hops = (target.mesh_x - 1) + (target.mesh_y - 1)
    assert (act.counts["hops_x"] + act.counts["hops_y"] <= act.counts["packets"] * max_hops).all()
    if mapping.n_cores <= target.cores_per_router:
        assert act.counts["hops_x"].sum() == 0 and act.counts["hops_y"].sum() == 0


def test_packets_and_hops_match_routes_in_event_mode():
    mapping, images = _setup("conv-pool-dense", "truenorth", "small-cores", n=2, smax=3)
    slow = run_cycle_stepped(mapping, images)
    routes = mapping.routes
    manhattan = {(r.src, r.dst): r.hops_x + r.hops_y for r in routes}
    assert max(manhattan.values()) > 0
    total_hops = slow.counts["hops_x"].sum() + slow.counts["hops_y"].sum()
    assert total_hops >= slow.counts["packets"].sum() * min(manhattan.values())
    assert total_hops <= slow.counts["packets"].sum() * max(manhattan.values())


def test_fixed_tick_target_lasts_whole_ticks():
    mapping, images = _setup("conv-pool-dense", "truenorth", "preset", n=5)
    result = simulate(mapping, images, batch_size=2)
    ticks = n_ticks(mapping)
    assert ticks == mapping.network.timesteps + len(mapping.network.layers) - 1
    assert np.allclose(result.per_sample["latency_s"], ticks * 1e-3)
    assert result.energy_j["static"] == 0.0 and result.energy_j["sop"] > 0


def test_asap_tick_is_slowest_core_plus_drain_plus_barrier():
    mapping, images = _setup("conv-pool-dense", "loihi", "small-cores", n=3)
    act = simulate_batch(mapping, images)
    cycles = event_cycles(mapping.target)
    assert np.array_equal(act.tick_cycles, act.core_cycles.max(axis=0) + act.drain_cycles + cycles["barrier"])
    expected_core = (act.counts["sops"] * cycles["sop"] + act.counts["active_updates"] * cycles["update_active"]
                     + (act.counts["updates"] - act.counts["active_updates"]) * cycles["update_inactive"])
    assert np.array_equal(act.core_cycles, expected_core)
    assert (act.drain_cycles >= act.max_link_load * cycles["link_packet"]).all()


def test_price_energy_is_events_times_cost_plus_static():
    target = load_target("loihi")
    totals = {"sops": 10, "updates": 5, "active_updates": 2, "packets": 3, "hops_x": 4, "hops_y": 1}
    priced = price_energy(totals, 2e-6, target)
    assert priced["sop"] == pytest.approx(10 * 23.6e-12)
    assert priced["update"] == pytest.approx(2 * 81e-12 + 3 * 52e-12)
    assert priced["packet"] == pytest.approx(3 * 1.7e-12)
    assert priced["hop"] == pytest.approx(4 * 3.0e-12 + 1 * 4.0e-12)
    assert priced["static"] == pytest.approx(2e-6 * 0.104375)


def test_streaming_statistics_and_totals():
    mapping, images = _setup("conv-pool-dense", "loihi", "small-cores", n=9)
    whole = simulate_batch(mapping, images)
    result = simulate(mapping, images, batch_size=4)
    assert result.n_samples == 9 and all(v.shape == (9,) for v in result.per_sample.values())
    for kind in COUNT_KINDS:
        assert np.array_equal(result.core_counts[kind], whole.counts[kind].sum(axis=(1, 2)))
    assert np.allclose(result.per_sample["cycles"], whole.tick_cycles.sum(axis=0))
    assert np.allclose(result.per_sample["sops"], whole.counts["sops"].sum(axis=(0, 1)))
    stats = summarize(result.per_sample["latency_s"])
    assert stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"] and stats["mean"] > 0
    energy = sum(result.energy_j.values())
    assert energy == pytest.approx(result.per_sample["energy_j"].sum())
