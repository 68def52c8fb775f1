"""The simulator's neurons run in int32 where a bound proves it exact, else int64: both choices,
at the int32 edge (leak's product |V| x 4096 reaches 2**31 - 4096), agree with the reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.simulator import _plans, simulate_batch
from mtsnn.hw_model.synthetic import random_images, random_network
from mtsnn.hw_model.target import load_target


@pytest.mark.parametrize("acc_bits,dtype", [(20, np.int32), (24, np.int64)])
def test_neuron_dtype_is_exact_at_the_accumulator_limit(acc_bits, dtype):
    rng = np.random.default_rng(3)
    net = random_network(rng, (1, 16, 16), (("dense", 24),), 10, timesteps=40, acc_bits=acc_bits, delta=0)
    # no leak, and half the neurons all-negative weights: they integrate down to the accumulator
    # limit and clip there, where leak's product |V| x 4096 is largest
    first = net.layers[0]
    weight = first.weight.copy()
    weight[:12] = -127
    net = dataclasses.replace(net, layers=(dataclasses.replace(first, weight=weight),) + net.layers[1:])
    mapping = map_network(net, load_target("loihi"))
    assert {plan.neuron_dtype for plan in _plans(mapping).layers} == {np.dtype(dtype)}
    images = random_images(rng, 9, (1, 16, 16))
    ref = run_reference(net, images)
    act = simulate_batch(mapping, images, record_spikes=True)
    assert sum(ref.saturations.values()) > 0
    assert act.saturations == ref.saturations
    assert np.array_equal(act.logits, ref.logits) and act.logits.dtype == np.int64
    for name, spikes in ref.spikes.items():
        assert np.array_equal(act.spikes[name], spikes), name


def test_parallel_batches_give_exactly_the_single_worker_result():
    """simulate(workers=3) runs batches in threads but consumes them in order: every total,
    per-core count and per-sample figure is identical to the one-worker run."""
    import numpy as np

    from mtsnn.hw_model.mapper import map_network
    from mtsnn.hw_model.simulator import simulate
    from mtsnn.hw_model.synthetic import random_images, random_network
    from mtsnn.hw_model.target import load_target

    rng = np.random.default_rng(7)
    net = random_network(rng, (1, 8, 8), (("conv", 4, 3, 1), ("pool", 2), ("dense", 12)), 5)
    images = random_images(rng, 37, (1, 8, 8))
    mapping = map_network(net, load_target("loihi"))
    one = simulate(mapping, images, batch_size=5, workers=1)
    three = simulate(mapping, images, batch_size=5, workers=3)
    np.testing.assert_array_equal(one.logits, three.logits)
    np.testing.assert_array_equal(one.core_cycles, three.core_cycles)
    for kind in one.core_counts:
        np.testing.assert_array_equal(one.core_counts[kind], three.core_counts[kind])
    for key in one.per_sample:
        np.testing.assert_array_equal(one.per_sample[key], three.per_sample[key])
    for kind in one.core_energy_j:
        np.testing.assert_array_equal(one.core_energy_j[kind], three.core_energy_j[kind])
    assert one.time_cycles == three.time_cycles
