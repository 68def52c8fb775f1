"""Simulator on the chip's schedule: bit-exact against the numpy reference inside every window,
SOPs against an independent count, the event-by-event cycle-stepped mode agrees exactly, the
counts keep their invariants, and prices are events x cost (hw_model.pricing)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtsnn.hw_model.cyclesim import run_cycle_stepped
from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.network import ConvLayer, DenseLayer, PoolLayer
from mtsnn.hw_model.neuron import encode_pixels
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.pricing import COUNT_KINDS, ENERGY_KINDS, core_prices, dynamic_energy, static_energy
from mtsnn.hw_model.schedule import schedule_for, subticks_for
from mtsnn.hw_model.simulator import simulate, simulate_batch, summarize
from mtsnn.hw_model.synthetic import random_images, random_network
from mtsnn.hw_model.target import event_cycles, load_target, sync_cycles

MESH = dict(n_cores=4096, mesh_x=4, mesh_y=1024)  # narrow mesh: traffic along both axes
PARTITIONINGS = {
    "preset": {},
    "small-cores": dict(neurons_per_core=7, **MESH),
    "split-fan-in": dict(neurons_per_core=6, axons_per_core=10, partial_sums=True, **MESH),
    "graded": dict(encoding="graded", payload_bits=8, multi_spike="payload", neurons_per_core=11, **MESH),
    "burst": dict(multi_spike="burst", neurons_per_core=9, **MESH),
    "position-order": dict(neurons_per_core=12, axons_per_core=40, partial_sums=True, **MESH),
}
NETWORKS = {
    "conv-pool-dense": dict(input_shape=(1, 8, 8), layers=(("conv", 4, 3, 1), ("pool", 2), ("dense", 16))),
    "two-conv": dict(input_shape=(2, 7, 7), layers=(("conv", 3, 3, 0), ("conv", 5, 2, 1), ("dense", 8))),
    "dense-only": dict(input_shape=(1, 5, 5), layers=(("dense", 30),)),
}


def _target(name):
    """A preset; TrueNorth with its axon-type rule relaxed, as random 8-bit weights break it
    (the rule itself: tests/hw_model/test_mapper.py)."""
    return load_target(name, ("axon-types",) if name == "truenorth" else ())


def _setup(net_name, target_name, partitioning, seed=0, n=12, **net_kw):
    rng = np.random.default_rng(seed)
    spec = NETWORKS[net_name]
    net = random_network(rng, spec["input_shape"], spec["layers"], 10, timesteps=3, **net_kw)
    images = random_images(rng, n, spec["input_shape"])
    target = dataclasses.replace(_target(target_name), **PARTITIONINGS[partitioning])
    return map_network(net, target), images


@pytest.mark.parametrize("partitioning", list(PARTITIONINGS))
@pytest.mark.parametrize("target_name", ["loihi", "truenorth"])
@pytest.mark.parametrize("net_name", list(NETWORKS))
def test_bit_exact_against_reference(net_name, target_name, partitioning):
    _check_bit_exact(*_setup(net_name, target_name, partitioning))


@pytest.mark.parametrize("net_name", list(NETWORKS))
def test_bit_exact_on_the_loihi2_preset(net_name):
    _check_bit_exact(*_setup(net_name, "loihi2", "preset"))


def _check_bit_exact(mapping, images):
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
        simulated = int(act.counts["synapse_reads"][list(mapping.layer_cores[index])].sum())
        if mapping.target.encoding == "unary" and not index:  # layer 0's inputs arrive only in the input ticks
            assert simulated == expected, layer.name
        else:  # fill and drain spikes of the layer below are real reads too: the window's reads are a floor
            assert simulated >= expected, layer.name


CYCLE_CASES = [
    ("conv-pool-dense", "loihi", "preset"),
    ("conv-pool-dense", "truenorth", "small-cores"),
    ("conv-pool-dense", "loihi", "split-fan-in"),
    ("two-conv", "truenorth", "graded"),
    ("two-conv", "loihi", "small-cores"),
    ("dense-only", "truenorth", "split-fan-in"),
    ("two-conv", "loihi", "position-order"),
    ("conv-pool-dense", "loihi", "burst"),
    ("dense-only", "truenorth", "burst"),
    ("conv-pool-dense", "loihi2", "preset"),
]


@pytest.mark.parametrize("net_name,target_name,partitioning", CYCLE_CASES)
def test_cycle_stepped_mode_agrees_exactly(net_name, target_name, partitioning):
    mapping, images = _setup(net_name, target_name, partitioning, n=2, smax=3)
    fast = simulate_batch(mapping, images, record_ticks=True)
    slow = run_cycle_stepped(mapping, images)
    for kind in COUNT_KINDS:
        assert np.array_equal(fast.counts[kind], slow.counts[kind]), kind
    for name, spikes in slow.tick_spikes.items():
        assert np.array_equal(fast.tick_spikes[name], spikes), name
    assert np.array_equal(fast.core_cycles, slow.core_cycles)
    assert np.array_equal(fast.tick_cycles, slow.tick_cycles)
    assert np.array_equal(fast.logits, slow.logits)
    assert fast.counts["synapse_reads"].sum() > 0 and fast.counts["messages_out"].sum() > 0


def test_every_core_updates_every_tick_and_fill_and_drain_are_real_work():
    """The chip's schedule: every tick reads every compartment; layers run before and after
    their windows (bias and residual membranes), which the reference never sees."""
    mapping, images = _setup("conv-pool-dense", "loihi", "small-cores", n=6)
    act = simulate_batch(mapping, images, record_ticks=True)
    sched = schedule_for(mapping.network, mapping.target)
    smax = mapping.network.encoder.smax
    assert sched.subticks == smax  # sub-steps: Smax chip ticks per step
    assert act.counts["compartments"].shape[1] == sched.n_chip_ticks == (len(mapping.network.layers) + 3) * smax
    for core in mapping.cores:
        expected = 0 if core.is_input else core.n_neurons
        assert (act.counts["compartments"][core.core_id] == expected).all()
    outside = 0
    for index, layer in enumerate(mapping.network.layers[:-1]):
        window = sched.window(index)
        ticks = act.tick_spikes[layer.name].sum(axis=(1, 2))
        outside += int(ticks.sum() - ticks[window.start : window.stop].sum())
    assert outside > 0  # random biases make layers fire in their fill or drain


def test_the_per_layer_reset_is_what_keeps_the_function():
    """Without the reset offsets the pipeline fill (bias integrated before the first input)
    changes the logits: the mechanism is needed, not decoration."""
    import mtsnn.hw_model.simulator as simulator

    mapping, images = _setup("conv-pool-dense", "loihi", "preset", n=12, seed=3)
    ref = run_reference(mapping.network, images)
    assert np.array_equal(simulate_batch(mapping, images).logits, ref.logits)

    class NoReset(type(schedule_for(mapping.network))):
        def reset_tick(self, layer_index):
            return -1

    original = simulator.schedule_for
    simulator.schedule_for = lambda net, target: NoReset(net.timesteps, len(net.layers), subticks_for(net, target))
    try:
        broken = simulate_batch(mapping, images).logits
    finally:
        simulator.schedule_for = original
    assert not np.array_equal(broken, ref.logits)


@pytest.mark.parametrize("partitioning", list(PARTITIONINGS))
def test_count_invariants(partitioning):
    mapping, images = _setup("conv-pool-dense", "loihi", partitioning)
    act = simulate_batch(mapping, images)
    target = mapping.target
    for kind in COUNT_KINDS:
        assert (act.counts[kind] >= 0).all(), kind
    # every message leaves one core and arrives at one core
    assert act.counts["messages_out"].sum() == act.counts["messages_in"].sum()
    # updates happen on soma cores only, at most once per neuron per tick
    assert (act.counts["updates"] <= act.counts["compartments"]).all()
    for core in mapping.cores:
        if core.is_input:
            assert act.counts["compartments"][core.core_id].sum() == 0
    max_hops = (target.mesh_x - 1) + (target.mesh_y - 1)
    assert (act.counts["hops_x"] + act.counts["hops_y"] <= act.counts["messages_out"] * max_hops).all()
    if partitioning != "preset":
        assert act.counts["hops_y"].sum() > 0


def test_tick_is_busiest_core_plus_sync_and_streams_overlap():
    mapping, images = _setup("conv-pool-dense", "loihi", "small-cores", n=3)
    act = simulate_batch(mapping, images)
    cycles = event_cycles(mapping.target)
    sync = sync_cycles(mapping.target, mapping.tiles_in_use)
    assert np.array_equal(act.tick_cycles, act.core_cycles.max(axis=0) + sync)
    send = (act.counts["compartments"] * cycles["compartment"] + act.counts["updates"] * cycles["update"]
            + act.counts["spikes_out"] * cycles["spike_out"] + act.counts["messages_out"] * cycles["axon_out"])
    assert (act.core_cycles >= send).all()  # the neuron stream is a floor ...
    receive = act.counts["messages_in"] * cycles["axon_in"] + act.counts["synapse_reads"] * cycles["synapse_conv"]
    conv_cores = [c.core_id for c in mapping.cores if not c.is_input and mapping.network.layers[c.layer_index]
                  .synapse_kind == "conv"]
    assert (act.core_cycles[conv_cores] >= receive[conv_cores]).all()  # ... and so is the message stream
    assert (act.core_cycles < send + receive + 10**9).all()


def test_sync_depends_on_the_tiles_in_use():
    target = load_target("loihi")
    assert [sync_cycles(target, n) for n in (1, 2, 3, 4, 28, 29, 32)] == [
        600_000, 1_000_000, 1_000_000, 1_400_000, 1_400_000, 1_800_000, 1_800_000]


def test_fixed_tick_target_lasts_whole_ticks():
    mapping, images = _setup("conv-pool-dense", "truenorth", "preset", n=5)
    result = simulate(mapping, images, batch_size=2)
    ticks = schedule_for(mapping.network, mapping.target).n_chip_ticks
    smax = mapping.network.encoder.smax  # Smax sub-ticks of 1 ms per step
    assert ticks == (mapping.network.timesteps + len(mapping.network.layers)) * smax
    assert np.allclose(result.per_sample["latency_s"], ticks * 1e-3)
    assert result.core_energy_j["synapse"].sum() > 0 and result.core_energy_j["compartment"].sum() == 0


def test_dynamic_energy_is_events_times_cost():
    mapping, images = _setup("conv-pool-dense", "loihi", "preset", n=1)
    counts = {kind: np.zeros((mapping.n_cores, 1), dtype=np.int64) for kind in COUNT_KINDS}
    dense_core = next(c.core_id for c in mapping.cores if not c.is_input and mapping.network.layers[c.layer_index]
                      .synapse_kind == "dense")
    conv_core = mapping.layer_cores[0][0]
    counts["synapse_reads"][[conv_core, dense_core], 0] = (10, 10)
    counts["compartments"][conv_core, 0] = 5
    counts["updates"][conv_core, 0] = 2
    counts["spikes_out"][conv_core, 0] = 1
    counts["messages_out"][conv_core, 0] = 3
    counts["hops_x"][conv_core, 0], counts["hops_y"][conv_core, 0] = 4, 1
    priced = {kind: float(v.sum()) for kind, v in dynamic_energy(counts, core_prices(mapping)).items()}
    assert priced["synapse"] == pytest.approx(10 * 24.0e-12 + 10 * 35.5e-12)  # conv and dense reads
    assert priced["compartment"] == pytest.approx(5 * 51.2e-12)
    assert priced["update"] == pytest.approx(2 * 21.6e-12)
    assert priced["spike_out"] == pytest.approx(69.3e-12)
    assert priced["axon_out"] == pytest.approx(3 * 111e-12) and priced["axon_in"] == 0
    assert priced["hop"] == pytest.approx(4 * 3.0e-12 + 1 * 4.0e-12)
    target = mapping.target
    assert static_energy(2e-6, target, "chip", 5) == pytest.approx(2e-6 * 0.104375)
    assert static_energy(2e-6, target, "used-cores", 32) == pytest.approx(2e-6 * 0.104375 * 32 / 128)
    assert static_energy(2e-6, target, "none", 5) == 0


def test_streaming_statistics_and_totals():
    mapping, images = _setup("conv-pool-dense", "loihi", "small-cores", n=9)
    whole = simulate_batch(mapping, images)
    result = simulate(mapping, images, batch_size=4)
    assert result.n_samples == 9 and all(v.shape == (9,) for v in result.per_sample.values())
    for kind in COUNT_KINDS:
        assert np.array_equal(result.core_counts[kind], whole.counts[kind].sum(axis=(1, 2)))
    assert np.allclose(result.per_sample["cycles"], whole.tick_cycles.sum(axis=0))
    assert np.allclose(result.per_sample["synapse_reads"], whole.counts["synapse_reads"].sum(axis=(0, 1)))
    stats = summarize(result.per_sample["latency_s"])
    assert stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"] and stats["mean"] > 0
    energy = sum(result.core_energy_j[kind].sum() for kind in ENERGY_KINDS)
    assert energy == pytest.approx(result.per_sample["dynamic_j"].sum())


def _one_pixel_network(smax=3):
    """1 pixel -> dense1 (1 neuron) -> readout (2 classes), T = 1: every count is traceable."""
    rng = np.random.default_rng(5)
    net = random_network(rng, (1, 1, 1), (("dense", 1),), 2, timesteps=1, smax=smax, theta_scale=0.05)
    images = np.array([[[[170]]], [[[255]]], [[[0]]]], dtype=np.uint8)  # counts (170*3+127)//255 = 2, 3, 0
    return net, images


def test_substeps_by_hand_on_one_pixel():
    net, images = _one_pixel_network()
    loihi = load_target("loihi")
    mapping = map_network(net, loihi)
    act = simulate_batch(mapping, images, record_ticks=True)
    assert act.counts["input_spikes"].shape[1] == 9  # (L = 2 layers + T = 1) steps x Smax = 3 sub-ticks
    (input_core,) = mapping.input_cores
    (dense_core,) = mapping.layer_cores[0]
    # the input generator sends count 2 as one spike in sub-ticks 0 and 1 of step 0; count 3 in 0, 1, 2
    assert act.counts["input_spikes"][input_core, :, 0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert act.counts["input_spikes"][input_core, :, 1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert act.counts["input_spikes"][input_core, :, 2].tolist() == [0] * 9
    # each spike is one message to dense1's core and reads its one synapse there, in the same sub-tick
    assert np.array_equal(act.counts["messages_out"][input_core], act.counts["input_spikes"][input_core])
    assert np.array_equal(act.counts["synapse_reads"][dense_core], act.counts["input_spikes"][input_core])
    # dense1's one compartment is read in every sub-tick
    assert (act.counts["compartments"][dense_core] == 1).all()
    # dense1 fires its count k of step t in sub-ticks 0..k-1 of that step, updated in each of them
    k = act.tick_spikes["dense1"].astype(int)[:, :, 0]  # (steps, samples)
    assert k.max() >= 2  # the case has counts above 1 to spread
    for step in range(3):
        for j in range(3):
            chip = step * 3 + j
            assert act.counts["spikes_out"][dense_core, chip].tolist() == (k[step] > j).astype(int).tolist()
            if j:
                assert act.counts["updates"][dense_core, chip].tolist() == (k[step] > j).astype(int).tolist()


def test_substeps_cost_against_burst():
    """Sub-steps move the same events into Smax chip ticks per step: the events stay, the reads
    of every compartment and the barriers multiply by Smax, later sub-ticks add the updates of
    the neurons that fire in them, and the function does not change."""
    net, images = _one_pixel_network()
    _, more_images = _setup("conv-pool-dense", "loihi", "preset", n=4, seed=1)
    for net, images in ((net, images), (_setup("conv-pool-dense", "loihi", "preset", n=4, seed=1)[0].network,
                                         more_images)):
        smax = net.encoder.smax
        steps_mapping = map_network(net, load_target("loihi"))
        burst_mapping = map_network(net, dataclasses.replace(load_target("loihi"), multi_spike="burst"))
        sub = simulate_batch(steps_mapping, images, record_ticks=True)
        burst = simulate_batch(burst_mapping, images, record_ticks=True)
        assert np.array_equal(sub.logits, burst.logits)
        for kind in ("synapse_reads", "spikes_out", "messages_out", "messages_in", "hops_x", "hops_y", "input_spikes"):
            assert sub.counts[kind].sum() == burst.counts[kind].sum(), kind
        assert sub.counts["compartments"].sum() == smax * burst.counts["compartments"].sum()
        extra_updates = sum(int(np.maximum(spikes.astype(np.int64) - 1, 0).sum())
                            for spikes in burst.tick_spikes.values())
        assert sub.counts["updates"].sum() == burst.counts["updates"].sum() + extra_updates
        sync = sync_cycles(steps_mapping.target, steps_mapping.tiles_in_use)
        assert sub.tick_cycles.shape[0] == smax * burst.tick_cycles.shape[0]
        assert (sub.tick_cycles.sum(axis=0) >= burst.tick_cycles.sum(axis=0) + (smax - 1) * sync
                * burst.tick_cycles.shape[0]).all()


def test_cycle_sums_that_could_overflow_are_refused_before_running():
    from mtsnn.hw_model.errors import InputError
    from mtsnn.hw_model.pricing import MAX_TOTAL_CYCLES, check_cycle_range, worst_tick_cycles

    mapping, images = _setup("conv-pool-dense", "loihi", "preset", n=2)
    worst = worst_tick_cycles(mapping)
    act = simulate_batch(mapping, images)
    assert (act.core_cycles.max() + sync_cycles(mapping.target, mapping.tiles_in_use)) <= worst  # a true bound
    ticks = schedule_for(mapping.network, mapping.target).n_chip_ticks
    check_cycle_range(mapping, 1000, ticks)  # the presets are far from the limit
    too_many = MAX_TOTAL_CYCLES // (worst * ticks) + 1
    with pytest.raises(InputError, match=r"time.cycle_s: expected a cycle long enough"):
        check_cycle_range(mapping, too_many, ticks)
    # a target whose events take ~2^40 cycles of a tiny quantum is refused, not run into negative numbers
    slow = dataclasses.replace(mapping.target, cycle_s=1e-15,
                               latency_s={k: (1e-3 if k.startswith("synapse") else v)
                                          for k, v in mapping.target.latency_s.items()})
    slow_mapping = map_network(mapping.network, slow)
    with pytest.raises(InputError, match="time.cycle_s"):
        simulate(slow_mapping, np.repeat(images, 3000, axis=0))


@pytest.mark.parametrize("partitioning", ["preset", "split-fan-in", "graded"])
def test_sparse_count_matrices_give_the_same_counts(monkeypatch, partitioning):
    """Large segment matrices are kept sparse (memory grows with their entries): the counts
    are the same as with the dense ones."""
    import mtsnn.hw_model.simulator as simulator

    mapping, images = _setup("conv-pool-dense", "loihi", partitioning, n=4, smax=3)
    dense = simulate_batch(mapping, images)
    monkeypatch.setattr(simulator, "DENSE_ENTRIES", 0)
    sparse = simulate_batch(mapping, images)
    for kind in COUNT_KINDS:
        assert np.array_equal(dense.counts[kind], sparse.counts[kind]), kind
    assert np.array_equal(dense.tick_cycles, sparse.tick_cycles)


@pytest.mark.parametrize("partitioning", ["preset", "split-fan-in", "small-cores"])
def test_counts_in_row_blocks_equal_counts_in_one_scan(partitioning, monkeypatch):
    """Beyond SCAN_ELEMENTS the sub-tick histograms run in row blocks (bounded index arrays):
    the same counts, cycles and logits as one scan."""
    import mtsnn.hw_model.simulator as simulator

    mapping, images = _setup("conv-pool-dense", "loihi", partitioning, n=9, smax=5)
    assert schedule_for(mapping.network, mapping.target).subticks == 5
    one = simulate_batch(mapping, images)
    monkeypatch.setattr(simulator, "SCAN_ELEMENTS", 50)  # a few rows of a layer's counts per block
    blocks = simulate_batch(mapping, images)
    assert np.array_equal(one.logits, blocks.logits)
    for kind, counts in one.counts.items():
        assert np.array_equal(counts, blocks.counts[kind]), kind
    assert np.array_equal(one.core_cycles, blocks.core_cycles)
