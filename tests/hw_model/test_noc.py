"""The detailed network model (hw_model.noc): hand-checked ticks, back-pressure, and its use on
a mapped network (the SANA-FE agreement itself is tests/api/test_sanafe_crosscheck.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.noc import CoreMessages, NocGeometry, _path_links, detailed_tick, detailed_tick_cycles
from mtsnn.hw_model.schedule import schedule_for
from mtsnn.hw_model.simulator import simulate_batch
from mtsnn.hw_model.synthetic import random_images, random_network
from mtsnn.hw_model.target import load_target


def _geometry(paths, n_links, buffer=16):
    return NocGeometry(paths=paths, n_links=n_links, link_buffer_messages=buffer)


def test_one_message_is_generation_plus_hops_plus_processing():
    geometry = _geometry({(0, 1): ((0, 1), 1, 4.0)}, n_links=2)
    messages = {0: CoreMessages(generation=[5.0], destination=[1], processing=[20])}
    assert detailed_tick(messages, geometry) == 5 + 4 + 20


def test_a_placeholder_only_advances_its_core():
    geometry = _geometry({}, n_links=0)
    messages = {0: CoreMessages(generation=[7.0, 30.0], destination=[-1, -1], processing=[0, 0])}
    assert detailed_tick(messages, geometry) == 37


def test_a_receiving_core_processes_one_message_at_a_time():
    geometry = _geometry({(0, 2): ((0,), 0, 0.0), (1, 2): ((1,), 0, 0.0)}, n_links=2)
    messages = {0: CoreMessages([5.0], [2], [50]), 1: CoreMessages([5.0], [2], [50])}
    # both arrive at 5; the second waits for the first: 5 + 50 + 50
    assert detailed_tick(messages, geometry) == 105


def test_back_pressure_delays_the_sender_when_links_fill_up():
    """40 messages to a slow core, then 3000 cycles of the sender's own neuron work: with deep
    buffers the sender finishes early and the receiver sets the tick; with a one-message buffer
    the sender is blocked until the receiver drains, and its own work ends the tick later."""
    paths = {(0, 1): ((0, 1), 1, 4.0)}
    messages = {0: CoreMessages([5.0] * 40 + [3000.0], [1] * 40 + [-1], [100] * 40 + [0])}
    roomy = detailed_tick(messages, _geometry(paths, 2, buffer=1000))
    tight = detailed_tick(messages, _geometry(paths, 2, buffer=1))
    assert roomy == pytest.approx(5 + 4 + 40 * 100)  # the receiver is the bottleneck, never idle
    assert tight > 3000 + 2000  # the sender's messages left only as the receiver drained them


def test_path_links_follow_xy_routing():
    assert _path_links(0, 0, 0, 0, 2) == ((0, 0, ("core", 2)),)
    east = _path_links(0, 0, 2, 0, 1)
    assert east == ((0, 0, ("core", 1)), (1, 0, "E"), (2, 0, "E"))
    turn = _path_links(1, 1, 0, 3, 0)
    assert turn == ((1, 1, ("core", 0)), (0, 1, "W"), (0, 2, "N"), (0, 3, "N"))
    assert len(turn) == abs(0 - 1) + abs(3 - 1) + 1  # hops + 1 links, each weighted 1 / (hops + 2)


def test_detailed_ticks_on_a_mapped_network():
    rng = np.random.default_rng(2)
    net = random_network(rng, (1, 8, 8), (("conv", 4, 3, 1), ("pool", 2), ("dense", 16)), 10, smax=3)
    images = random_images(rng, 3, (1, 8, 8))
    loihi = load_target("loihi")
    mapping = map_network(net, dataclasses.replace(loihi, neurons_per_core=40))
    detailed = detailed_tick_cycles(mapping, images)
    fast = simulate_batch(mapping, images).tick_cycles
    assert detailed.shape == fast.shape == (schedule_for(net, mapping.target).n_chip_ticks, 3)
    # with every stream serial and no contention a tick is never shorter than the sync alone
    assert (detailed >= 1_000_000).all() and (detailed > 0).all()
    ratio = detailed.sum() / fast.sum()
    assert 0.8 < ratio < 3.0  # the same work, with contention added
    truenorth = map_network(net, load_target("truenorth", ("axon-types",)))
    assert (detailed_tick_cycles(truenorth, images) == 10**9).all()  # fixed 1 ms ticks
