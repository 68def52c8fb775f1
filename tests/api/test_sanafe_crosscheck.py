"""mtsnn's hardware model against SANA-FE (calibrated on Loihi silicon), on the same binary
network on the same placement: per-layer spikes, synapse reads and messages identical tick by
tick, logits identical, dynamic energy and every tick's latency within 10 %."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("sanafe", reason="sanafe is a test dependency (pip install sanafe==2.2.9)")

from mtsnn.crosscheck import TOLERANCE, check_comparable, sanafe_crosscheck  # noqa: E402
from mtsnn.hw_model.errors import CheckUnavailable  # noqa: E402
from mtsnn.hw_model.mapper import map_network  # noqa: E402
from mtsnn.hw_model.synthetic import random_images, random_network  # noqa: E402
from mtsnn.hw_model.target import load_target  # noqa: E402

LOIHI = load_target("loihi")


def _assert_agrees(check):
    assert check.spikes_identical and check.synapse_reads_identical, check.first_difference
    assert check.messages_identical and check.logits_identical, check.first_difference
    assert abs(check.dynamic_ratio - 1) <= TOLERANCE, check.dynamic_ratio
    assert np.all(np.abs(check.latency_ratios - 1) <= TOLERANCE), check.latency_ratios
    assert sum(check.layer_spikes.values()) > 0 and sum(check.layer_synapse_reads.values()) > 0


@pytest.fixture(scope="module")
def binary_digits_model(tmp_path_factory):
    """The digits CNN trained briefly with binary spikes and no leak (what SANA-FE can express)."""
    import mtsnn
    from mtsnn.export.integer import to_integer_network
    from mtsnn.toolchain.checkpoint import load_checkpoint

    run = mtsnn.train(epochs=3, smax=1, tau=0, theta=0.25, b=4, threads=2, progress=False,
                      out=tmp_path_factory.mktemp("binary") / "model.pt")
    model, _ = load_checkpoint(run.checkpoint)
    return to_integer_network(model)


def _digits(n):
    from mtsnn.toolchain.datasets import load_dataset

    return load_dataset(None).test.images[:n]


def test_trained_binary_digits_model_agrees_with_sanafe(binary_digits_model):
    mapping = map_network(binary_digits_model, LOIHI)
    _assert_agrees(sanafe_crosscheck(mapping, _digits(6)))


def test_agreement_holds_when_the_network_spreads_over_many_tiles(binary_digits_model):
    """Small cores spread the network over more tiles: longer routes in both directions and a
    larger synchronisation entry of the table."""
    spread = dataclasses.replace(LOIHI, neurons_per_core=48)
    mapping = map_network(binary_digits_model, spread)
    assert mapping.tiles_in_use >= 4
    assert any(r.hops_y for r in mapping.routes) and any(r.hops_x for r in mapping.routes)
    _assert_agrees(sanafe_crosscheck(mapping, _digits(4)))


def test_agreement_on_a_random_binary_network_with_dense_and_pool_layers():
    rng = np.random.default_rng(11)
    net = random_network(rng, (2, 8, 8), (("conv", 6, 3, 1), ("pool", 2), ("dense", 40)), 10, smax=1, delta=0,
                         timesteps=3)
    mapping = map_network(net, dataclasses.replace(LOIHI, neurons_per_core=100))
    _assert_agrees(sanafe_crosscheck(mapping, random_images(rng, 4, (2, 8, 8))))


def test_what_sanafe_cannot_express_is_said_not_compared():
    net = random_network(np.random.default_rng(0), smax=3, delta=0)
    with pytest.raises(CheckUnavailable, match="Smax 3: SANA-FE spikes are binary"):
        check_comparable(map_network(net, LOIHI))
    net = random_network(np.random.default_rng(0), smax=1, delta=410)
    with pytest.raises(CheckUnavailable, match="leak delta 410"):
        check_comparable(map_network(net, LOIHI))
    net = random_network(np.random.default_rng(0), smax=1, delta=0)
    with pytest.raises(CheckUnavailable, match="Loihi's"):
        check_comparable(map_network(net, load_target("truenorth", ("axon-types",))))


def test_the_command_line_runs_the_crosscheck(binary_digits_model, tmp_path, capsys):
    from mtsnn.cli import sim_main
    from mtsnn.hw_model.coredesc import write_core

    json_path, _ = write_core(tmp_path / "binary.core.json", binary_digits_model)
    out = tmp_path / "report.json"
    assert sim_main([str(json_path), "--target", "loihi", "--samples", "20", "--crosscheck", "sanafe",
                     "--crosscheck-samples", "3", "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "cross-check against SANA-FE 2.2.9" in text and "identical; synapse reads: identical" in text
    assert "within 10% of SANA-FE's" in text and "Executed steps" not in text
    report = json.loads(out.read_text())
    assert report["crosscheck"]["counts_identical"] and report["crosscheck"]["within_tolerance"]
    assert report["crosscheck"]["samples"] == 3


def test_the_command_line_refuses_a_multi_spike_network_with_exit_3(tmp_path, capsys):
    from mtsnn.cli import sim_main
    from mtsnn.hw_model.coredesc import write_core

    json_path, _ = write_core(tmp_path / "ms.core.json", random_network(np.random.default_rng(0), smax=15))
    assert sim_main([str(json_path), "--target", "loihi", "--samples", "4", "--crosscheck", "sanafe",
                     "--no-progress"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no SANA-FE equivalent" in err[0] or "SANA-FE spikes are binary" in err[0]
