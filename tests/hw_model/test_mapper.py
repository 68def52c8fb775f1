"""Mapper: one test per design rule, exact partitioning, XY routes, placement round trip,
and the mapper never changes its input."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest

from mtsnn.hw_model.coredesc import CoreFormatError, read_core, write_core
from mtsnn.hw_model.cyclesim import core_synapses
from mtsnn.hw_model.mapper import (
    DESIGN_RULES,
    DesignRuleError,
    acc_bits_fit_target,
    axon_type_groups,
    axon_types_fit_target,
    core_weight_matrix,
    distinct_weights_per_neuron,
    fan_in_fits_core_or_can_split,
    map_network,
    mapping_from_placement,
    network_fits_core_count,
    payload_fits_target,
    synapse_bits,
    synapse_memory_fits_core,
    weight_bits_fit_target,
    xy_path,
)
from mtsnn.hw_model.placement import check_placement
from mtsnn.hw_model.synthetic import random_network
from mtsnn.hw_model.target import load_target, synapse_memory_bits_needed

LOIHI, TRUENORTH = load_target("loihi"), load_target("truenorth", ("axon-types",))  # the rule: its own tests
TRUENORTH_ENFORCED = load_target("truenorth")
SMALL_MESH = dict(n_cores=4096, mesh_x=4, mesh_y=1024)  # narrow mesh: routes go along both axes


def _net(seed=0, input_shape=(1, 8, 8), layers=(("conv", 4, 3, 1), ("pool", 2), ("dense", 16)), **kw):
    return random_network(np.random.default_rng(seed), input_shape, layers, 10, **kw)


def _only_rule_fails(rule, net, target):
    with pytest.raises(DesignRuleError) as info:
        rule(net, target)
    for other in DESIGN_RULES:
        if other is not rule:
            other(net, target)  # every other rule passes: the case breaks exactly this rule
    message = str(info.value)
    assert "\n" not in message and f"on target {target.name}" in message
    return message


def test_rule_weight_bits_fit_target():
    message = _only_rule_fails(weight_bits_fit_target, _net(weight_bits=12), TRUENORTH)
    assert message.startswith("layer conv1: weight bits 12 > 9 weight bits")


def test_rule_acc_bits_fit_target():
    message = _only_rule_fails(acc_bits_fit_target, _net(acc_bits=28), LOIHI)
    assert message.startswith("layer conv1: accumulator bits 28 > 24")


def test_rule_fan_in_fits_core_or_can_split():
    net = _net(input_shape=(15, 8, 8), layers=(("conv", 4, 5, 0),))
    message = _only_rule_fails(fan_in_fits_core_or_can_split, net, TRUENORTH)
    assert message.startswith("layer conv1: fan-in 375 > 256 axons per core on target truenorth")
    map_network(net, LOIHI)  # Loihi can split (its fan-in limit is 4096 anyway)


def test_rule_synapse_memory_fits_core():
    target = dataclasses.replace(TRUENORTH, synapse_memory_bits=200)
    message = _only_rule_fails(synapse_memory_fits_core, _net(), target)
    assert message.startswith("layer dense3: synapse memory 512 bits for one neuron > 200 bits per core")


def test_synapse_format_hand_checked_on_loihi_and_truenorth():
    # Loihi (nengo-loihi SynapseFmt): groups of <= 64 entries, 10 header bits, 64-bit words.
    # conv/sparse entries carry an index of max(6, bits for 100 neurons = 7) = 7 bits: 8 + 7 = 15.
    # fan-out 9:  9*15 + 10 = 145 -> 3 words = 192; fan-out 70: 64*15 + 10 = 970 -> 16 words = 1024,
    # and the remaining 6: 6*15 + 10 = 100 -> 2 words = 128.  Total 1344.
    assert synapse_memory_bits_needed(LOIHI, [9, 70], "conv", 100, 8) == 192 + 1024 + 128
    # dense entries need no index: 9*8+10 = 82 -> 128; 64*8+10 = 522 -> 576; 6*8+10 = 58 -> 64
    assert synapse_memory_bits_needed(LOIHI, [9, 70], "dense", 100, 8) == 128 + 576 + 64
    # a small core still pays the 6-bit minimum index: 1*(8+6)+10 = 24 -> one word
    assert synapse_memory_bits_needed(LOIHI, [1], "sparse", 2, 8) == 64
    # TrueNorth-like crossbar: a point per (axon, neuron), no header, no index, no words
    assert synapse_memory_bits_needed(TRUENORTH, [9, 70], "conv", 100, 8) == (9 + 70) * 8
    assert synapse_memory_bits_needed(TRUENORTH, [0, 0], "dense", 100) == 0


def test_synapse_format_overhead_decides_the_partition():
    # 300 inputs x 1 neuron dense on a Loihi whose memory holds 4 words: one neuron's 300 axons
    # take 300 words in the format (one 1-entry group each), so fan-in groups are 4 axons wide
    # although 4 x 64 bits would hold 32 raw 8-bit weights.
    net = _net(input_shape=(300, 1, 1), layers=(("dense", 1),))
    target = dataclasses.replace(LOIHI, synapse_memory_bits=4 * 64)
    mapping = map_network(net, target)
    layer = [c for c in mapping.cores if c.layer_index == 0]
    assert len(layer) == 300 // 4
    no_overhead = dataclasses.replace(target, synapse_header_bits=0, synapse_word_bits=1)
    assert len([c for c in map_network(net, no_overhead).cores if c.layer_index == 0]) == -(-300 // 32)


def test_rule_network_fits_core_count():
    target = dataclasses.replace(LOIHI, n_cores=2)
    message = _only_rule_fails(network_fits_core_count, _net(layers=(("dense", 2000),)), target)
    assert message.startswith("layer dense1: cores 3 (cumulative up to this layer, input generators included) > 2 "
                              "cores on target loihi")
    # the lower bound fits, the real partition (axon limit -> short conv slices) does not
    tight = dataclasses.replace(LOIHI, n_cores=11, axons_per_core=12)  # 1 input core + lower bound 10
    network_fits_core_count(_net(), tight)
    with pytest.raises(DesignRuleError, match=r"layer conv1: cores \d+ \(cumulative up to this layer, input "
                                              r"generators included\) > 11 cores"):
        map_network(_net(), tight)


def test_map_network_runs_the_rules_first():
    with pytest.raises(DesignRuleError, match="weight bits 12 > 9"):
        map_network(_net(weight_bits=12), TRUENORTH)


PARTITIONINGS = [
    ("loihi", {}),
    ("truenorth", {}),
    ("loihi", dict(neurons_per_core=7, **SMALL_MESH)),
    ("loihi", dict(neurons_per_core=9, axons_per_core=10, **SMALL_MESH)),
    ("truenorth", dict(neurons_per_core=5, axons_per_core=7, partial_sums=True, **SMALL_MESH)),
    ("truenorth", dict(neurons_per_core=40, synapse_memory_bits=8 * 60, partial_sums=True, **SMALL_MESH)),
]


def _mapping(name, overrides, net=None):
    target = dataclasses.replace(TRUENORTH if name == "truenorth" else load_target(name), **overrides)
    return map_network(net or _net(), target)


@pytest.mark.parametrize("name,overrides", PARTITIONINGS)
def test_partition_covers_every_neuron_once_and_respects_limits(name, overrides):
    mapping = _mapping(name, overrides)
    target = mapping.target
    for index, layer in enumerate(mapping.network.layers):
        cores = [mapping.cores[c] for c in mapping.layer_cores[index]]
        groups = sorted({c.fan_in for c in cores})
        assert groups[0][0] == 0 and groups[-1][1] == layer.fan_in
        assert all(a[1] == b[0] for a, b in zip(groups[:-1], groups[1:]))
        for group in groups:
            covered = np.zeros(layer.n_neurons, dtype=int)
            for core in cores:
                if core.fan_in == group:
                    covered[core.neurons[0] : core.neurons[1]] += 1
            assert (covered == 1).all()
        for core in cores:
            conn = mapping.connectivity[core.core_id]
            assert core.n_neurons <= target.neurons_per_core
            assert conn.n_axons <= target.axons_per_core
            assert conn.n_synapses * synapse_bits(layer) <= target.synapse_memory_bits
            assert core.router == target.router_of(core.core_id)
    assert [c.core_id for c in mapping.cores] == list(range(mapping.n_cores))


@pytest.mark.parametrize("name,overrides", PARTITIONINGS[2:5])
def test_connectivity_is_exact(name, overrides):
    mapping = _mapping(name, overrides)
    for core, conn in zip(mapping.cores, mapping.connectivity):
        if core.is_input:
            assert conn.n_axons == 0 and core.fan_in == (0, 0)
            continue
        table = core_synapses(mapping.network.layers[core.layer_index], mapping.neuron_ids(core.core_id),
                              core.fan_in)  # explicit loops
        assert conn.axons.tolist() == sorted(table)
        assert conn.fanout.tolist() == [len(table[a]) for a in sorted(table)]


@pytest.mark.parametrize("name,overrides", PARTITIONINGS)
def test_routes_are_xy_and_follow_connectivity(name, overrides):
    mapping = _mapping(name, overrides)
    spike_pairs = set()
    for route in mapping.routes:
        src, dst = mapping.cores[route.src], mapping.cores[route.dst]
        assert route.path[0] == src.router and route.path[-1] == dst.router
        steps = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(route.path[:-1], route.path[1:])]
        assert all(abs(dx) + abs(dy) == 1 for dx, dy in steps)
        first_y = next((i for i, (dx, dy) in enumerate(steps) if dy), len(steps))
        assert all(dy == 0 for _, dy in steps[:first_y]) and all(dx == 0 for dx, _ in steps[first_y:])
        assert route.hops_x + route.hops_y == len(steps)
        assert route.hops_x == abs(dst.router[0] - src.router[0]) and route.hops_y == abs(dst.router[1] - src.router[1])
        assert [mapping.links[i] for i in route.links] == list(zip(route.path[:-1], route.path[1:]))
        if route.kind == "spike":
            spike_pairs.add((route.src, route.dst))
            assert (src.soma or src.is_input) and dst.layer_index == src.layer_index + 1
        else:
            assert not src.soma and dst.soma and dst.neurons == src.neurons
    expected = set()  # brute force: src feeds dst iff dst listens to one of src's neurons
    for src in mapping.cores:
        if not (src.soma or src.is_input) or (src.soma and mapping.network.layers[src.layer_index].readout):
            continue
        for dst in mapping.cores:
            if dst.layer_index == src.layer_index + 1:
                axons = mapping.connectivity[dst.core_id].axons
                if np.isin(axons, mapping.neuron_ids(src.core_id)).any():
                    expected.add((src.core_id, dst.core_id))
    assert spike_pairs == expected


def test_xy_path_goes_x_first():
    assert xy_path((0, 0), (2, 1)) == ((0, 0), (1, 0), (2, 0), (2, 1))
    assert xy_path((3, 3), (3, 3)) == ((3, 3),)
    assert xy_path((2, 2), (0, 0)) == ((2, 2), (1, 2), (0, 2), (0, 1), (0, 0))


@pytest.mark.parametrize("name,overrides", [PARTITIONINGS[0], PARTITIONINGS[4]])
def test_placement_round_trip_through_core_description(tmp_path, name, overrides):
    mapping = _mapping(name, overrides)
    placement = mapping.placement()
    json.dumps(placement)  # JSON-able
    write_core(tmp_path / "net.core.json", mapping.network, placement=placement)
    description = read_core(tmp_path / "net.core.json")
    assert description.placement == placement
    rebuilt = mapping_from_placement(description.placement, description.network, mapping.target)
    assert rebuilt.cores == mapping.cores and rebuilt.routes == mapping.routes
    assert all(np.array_equal(a.axons, b.axons) for a, b in zip(rebuilt.connectivity, mapping.connectivity))


def _corrupt(placement, edit):
    bad = copy.deepcopy(placement)
    edit(bad)
    return bad


def _hopping(placement) -> int:
    """The index of the first route that crosses at least one link."""
    return next(i for i, r in enumerate(placement["routes"]) if sum(r["hops"]) > 0)


CORRUPTIONS = [
    ("format_version", lambda p: p.update(format_version=99)),
    ("target", lambda p: p.update(target="")),
    ("mesh.x", lambda p: p["mesh"].update(x=0)),
    ("cores[1].layer", lambda p: p["cores"][1].update(layer="nope")),
    ("cores[1].neurons", lambda p: p["cores"][1].update(neurons=[0, 10**6])),
    ("cores[2].id", lambda p: p["cores"][2].update(id=7)),
    ("cores[1].router", lambda p: p["cores"][1].update(router=[999, 0])),
    ("group 0 neurons", lambda p: p["cores"][2].update(neurons=[0, 1])),
    ("routes[{k}].hops", lambda p: p["routes"][_hopping(p)].update(hops=[40, 40])),
    ("routes[{k}].path", lambda p: p["routes"][_hopping(p)].update(path=p["routes"][_hopping(p)]["path"][::-1])),
    ("routes[0].kind", lambda p: p["routes"][0].update(kind="teleport")),
]


@pytest.mark.parametrize("field,edit", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_bad_placement_names_the_field(tmp_path, field, edit):
    mapping = _mapping("loihi", dict(neurons_per_core=40, **SMALL_MESH))
    placement = mapping.placement()
    field = field.format(k=_hopping(placement))
    bad = _corrupt(placement, edit)
    with pytest.raises(ValueError) as info:
        check_placement(bad, mapping.network)
    assert field in str(info.value) and "\n" not in str(info.value)
    write_core(tmp_path / "bad.core.json", mapping.network, placement=bad)
    with pytest.raises(CoreFormatError, match="placement: "):
        read_core(tmp_path / "bad.core.json")


def test_placement_for_another_target_is_refused():
    mapping = _mapping("loihi", {})
    with pytest.raises(ValueError, match="placement.target: expected 'truenorth', found 'loihi'"):
        mapping_from_placement(mapping.placement(), mapping.network, TRUENORTH)


def test_mapper_does_not_mutate_its_input(tmp_path):
    net = _net(seed=3)
    write_core(tmp_path / "before" / "net.core.json", net)
    target_before = dataclasses.asdict(LOIHI)
    small = dataclasses.replace(LOIHI, neurons_per_core=5, axons_per_core=8, **SMALL_MESH)
    map_network(net, LOIHI)
    map_network(net, small)
    write_core(tmp_path / "after" / "net.core.json", net)
    for name in ("net.core.json", "net.core.npz"):
        assert (tmp_path / "after" / name).read_bytes() == (tmp_path / "before" / name).read_bytes()
    assert dataclasses.asdict(LOIHI) == target_before
    assert all(not layer.weight.flags.writeable for layer in net.layers if hasattr(layer, "weight"))


def test_placement_that_breaks_a_core_limit_is_refused():
    mapping = _mapping("loihi", {})
    smaller = dataclasses.replace(LOIHI, neurons_per_core=100)
    with pytest.raises(DesignRuleError, match=r"layer conv1: core 1 holds neurons 256 > 100 per core on target loihi"):
        mapping_from_placement(mapping.placement(), mapping.network, smaller)


def test_rule_fan_out_edges_fit_core():
    """Loihi's 4096 core-to-core fan-out edges (D18 constraint 3), checked on the routed mapping."""
    from mtsnn.hw_model.mapper import fan_out_fits_core

    net = _net(layers=(("pool", 2), ("dense", 64), ("dense", 64)))
    roomy = dataclasses.replace(LOIHI, neurons_per_core=4, **SMALL_MESH)
    mapping = map_network(net, roomy)
    fan_out_fits_core(mapping)  # passes with 4096 edges per core
    edges = max(sum(1 for r in mapping.routes if r.src == core.core_id) for core in mapping.cores)
    assert edges == 16  # a pool core feeds every one of the 16 dense cores
    tight = dataclasses.replace(roomy, axons_out_per_core=8)
    for rule in DESIGN_RULES:
        rule(net, tight)  # every rule that runs before mapping passes
    with pytest.raises(DesignRuleError, match=r"layer pool1: core \d+ has 16 fan-out edges > 8 output axons per core "
                                              r"on target loihi"):
        map_network(net, tight)


def test_input_generators_are_cut_to_respect_the_fan_out_limit():
    net = _net(layers=(("conv", 4, 3, 1), ("dense", 16)))
    roomy = dataclasses.replace(LOIHI, neurons_per_core=8, **SMALL_MESH)
    mapping = map_network(net, roomy)
    assert len(mapping.input_cores) == 1
    listeners = [set() for _ in range(64)]
    for core_id in mapping.layer_cores[0]:
        for axon in mapping.connectivity[core_id].axons:
            listeners[axon].add(core_id)
    widest = max(len(cores) for cores in listeners)
    limit = widest + 2  # every input fits alone, not all 64 together
    mapping = map_network(net, dataclasses.replace(roomy, axons_out_per_core=limit))
    inputs = [mapping.cores[c] for c in mapping.input_cores]
    assert len(inputs) > 1 and sum(core.n_neurons for core in inputs) == 64
    assert [core.neurons for core in inputs] == sorted(core.neurons for core in inputs)
    for core in inputs:
        assert sum(1 for r in mapping.routes if r.src == core.core_id) <= limit


def test_position_order_shares_input_windows_and_needs_fewer_cores():
    """A conv layer whose fan-in nearly fills a core's axons: in channel order a core holds a few
    positions of one channel (each position needs its own window), in position order all
    channels of one position share one window: far fewer cores, every core still within limits."""
    from mtsnn.hw_model.mapper import neuron_order, partition_layer

    net = _net(input_shape=(24, 4, 4), layers=(("conv", 28, 3, 1), ("pool", 4)))
    conv = net.layers[0]
    channel, position = partition_layer(conv, TRUENORTH, "channel"), partition_layer(conv, TRUENORTH, "position")
    assert len(position) * 4 < len(channel)
    mapping = map_network(net, TRUENORTH)
    assert mapping.orders()["conv1"] == "position" and len(mapping.layer_cores[0]) == len(position)
    ids = np.concatenate([mapping.neuron_ids(c) for c in mapping.layer_cores[0]])
    assert sorted(ids.tolist()) == list(range(conv.n_neurons))  # every neuron exactly once
    assert neuron_order(conv, "position")[:28].tolist() == [c * 16 for c in range(28)]  # position 0, all channels


def test_routers_fill_in_boustrophedon_order():
    target = dataclasses.replace(LOIHI, cores_per_router=1, n_cores=32)
    routers = [target.router_of(i) for i in range(32)]
    assert len(set(routers)) == 32
    for a, b in zip(routers[:-1], routers[1:]):
        assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1  # consecutive cores are neighbours
    assert routers[7] == (7, 0) and routers[8] == (7, 1) and routers[15] == (0, 1)


def test_objective_compares_neuron_caps_by_simulation():
    from mtsnn.hw_model.optimize import map_for_objective, neuron_caps
    from mtsnn.hw_model.reference import run_reference
    from mtsnn.hw_model.simulator import simulate_batch
    from mtsnn.hw_model.synthetic import random_images

    net = _net(layers=(("conv", 8, 3, 1), ("pool", 2), ("dense", 64)), smax=3)
    images = random_images(np.random.default_rng(1), 6, (1, 8, 8))
    assert neuron_caps(LOIHI) == [1024, 512, 256, 128, 64, 32]
    fewest, only = map_for_objective(net, LOIHI, "cores")
    assert len(only) == 1 and only[0].latency_s is None
    fastest, tried = map_for_objective(net, LOIHI, "latency", images)
    assert [c.neuron_cap for c in tried] == neuron_caps(LOIHI)[: len(tried)] and len(tried) >= 3
    best = min(tried, key=lambda c: c.latency_s)
    assert fastest.n_cores == best.cores and fastest.n_cores > fewest.n_cores
    assert fastest.target == LOIHI  # the cap was a mapping choice; utilisation is against the real core
    cheapest, tried_e = map_for_objective(net, LOIHI, "energy", images)
    assert cheapest.n_cores == min(tried_e, key=lambda c: c.energy_j).cores
    ref = run_reference(net, images)
    assert np.array_equal(simulate_batch(fastest, images).logits, ref.logits)
    with pytest.raises(ValueError, match="expected calibration images"):
        map_for_objective(net, LOIHI, "latency")


# ----------------------------------------------------------------------------- axon types (TrueNorth)


def _dense_net(weight, input_shape):
    """The random network's first dense layer with ``weight`` put in by hand."""
    net = _net(input_shape=input_shape, layers=(("dense", weight.shape[0]),))
    first = dataclasses.replace(net.layers[0], weight=np.asarray(weight, dtype=net.layers[0].weight.dtype))
    readout = net.layers[1]
    readout = dataclasses.replace(readout, weight=np.clip(readout.weight, -1, 1))  # 3 levels: fits 4 types
    return dataclasses.replace(net, layers=(first, readout))


def test_rule_axon_types_fit_target():
    message = _only_rule_fails(axon_types_fit_target, _net(), TRUENORTH_ENFORCED)
    assert message.startswith("layer conv1: a neuron weighs its inputs with ")
    assert "> 4 axon types per core on target truenorth" in message and "--relax axon-types" in message
    axon_types_fit_target(_net(), TRUENORTH)  # relaxed: the rule is off (and the report says so)
    axon_types_fit_target(_net(), LOIHI)  # Loihi has no axon types


def test_axon_types_by_hand():
    # 2 neurons, 6 inputs; each neuron uses 2 distinct weights. Axon rows (weight for n0, n1):
    # a0 (1, 3), a1 (2, 3), a2 (1, 4), a3 (2, 4) pairwise disagree on a neuron both use, so they
    # need 4 types; a4 (0, 0) drives nothing and needs none.
    weight = np.array([[1, 2, 1, 2, 0, 0],
                       [3, 3, 4, 4, 0, 0]])
    assert distinct_weights_per_neuron(_dense_net(weight, (6, 1, 1)).layers[0]) == 2
    assert axon_type_groups(weight.T, 4) == 4
    assert axon_type_groups(weight.T, 3) == 4  # more than 3: stops counting at limit + 1
    map_network(_dense_net(weight, (6, 1, 1)), TRUENORTH_ENFORCED)  # 4 types: fits
    # a5 (5, 0): n0 now uses 3 distinct weights (still <= 4), but a5 disagrees with every type on
    # n0, and every type uses n0: a 5th type, so no assignment exists
    clash = weight.copy()
    clash[0, 5] = 5
    assert distinct_weights_per_neuron(_dense_net(clash, (6, 1, 1)).layers[0]) == 3
    assert axon_type_groups(clash.T, 4) == 5
    with pytest.raises(DesignRuleError, match=r"layer dense1: core \d+ needs more than 4 axon types"):
        map_network(_dense_net(clash, (6, 1, 1)), TRUENORTH_ENFORCED)
    map_network(_dense_net(clash, (6, 1, 1)), TRUENORTH)  # relaxed: maps
    # an axon that fits a type joins it: a6 (1, 0) agrees with a0's type (1, 3) where both are nonzero
    joins = np.hstack([weight, [[1], [0]]])
    assert axon_type_groups(joins.T, 4) == 4


def test_core_weight_matrix_matches_the_synapse_lists():
    mapping = _mapping("loihi", dict(neurons_per_core=9, axons_per_core=30, partial_sums=True, **SMALL_MESH))
    for core, conn in zip(mapping.cores, mapping.connectivity):
        if core.is_input:
            continue
        layer = mapping.network.layers[core.layer_index]
        matrix = core_weight_matrix(layer, mapping.neuron_ids(core.core_id), core.fan_in, conn.axons)
        listed = core_synapses(layer, mapping.neuron_ids(core.core_id), core.fan_in)
        expected = np.zeros_like(matrix)
        column = {int(n): i for i, n in enumerate(mapping.neuron_ids(core.core_id))}
        for axon, targets in listed.items():
            for neuron, weight in targets:
                expected[np.searchsorted(conn.axons, axon), column[neuron]] = weight
        assert np.array_equal(matrix, expected)


def test_rule_payload_fits_target():
    graded = dataclasses.replace(LOIHI, encoding="graded", payload_bits=3, multi_spike="payload")
    message = _only_rule_fails(payload_fits_target, _net(smax=15), graded)
    assert message.startswith("layer input: spike count up to Smax 15 > 7, the largest 3-bit payload")
    payload_fits_target(_net(smax=7), graded)
    payload_fits_target(_net(smax=15), LOIHI)  # unary: counts run as sub-steps, no payload
