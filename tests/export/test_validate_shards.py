"""mtsnn-validate a chunk at a time and in shards on an engine: the merged report is the report of
one run, first divergence included, even when that divergence lies in a later shard."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mtsnn
from mtsnn.cli import validate_main
from mtsnn.export import validate as validation
from mtsnn.export.validate import ChunkOutcome, Divergence, merge_outcomes
from mtsnn.hw_model.coredesc import read_core, write_core
from mtsnn.hw_model.reference import run_reference
from mtsnn.toolchain.datasets import load_dataset

from test_export_cli import _export, _reseal  # noqa: E402  (pytest puts this folder on sys.path)


@pytest.fixture(scope="module")
def late_divergence(trained_model, tmp_path_factory):
    """An export whose readout has one synapse changed from the hidden neuron that starts firing
    latest in the test set: the logits differ exactly on the samples where it fires, the first of
    them past sample 0. Returns (folder, that first sample)."""
    out = tmp_path_factory.mktemp("late") / "export"
    assert _export(trained_model, out) == 0
    net = read_core(out / "model.core.json").network
    images = load_dataset("digits").test.images
    hidden = run_reference(net, images).spikes[net.layers[-2].name]  # (T, N, units)
    fired = hidden.sum(axis=0) > 0  # (N, units)
    first_fired = np.where(fired.any(axis=0), np.argmax(fired, axis=0), -1)
    unit = int(np.argmax(first_fired))
    assert first_fired[unit] >= 40, first_fired  # a divergence that is not in the first chunk below
    readout = net.layers[-1]
    weight = readout.weight.copy()
    weight[0, unit] += 1 if weight[0, unit] < 100 else -1
    tampered = dataclasses.replace(readout, weight=weight)
    write_core(out / "model.core.json", dataclasses.replace(net, layers=net.layers[:-1] + (tampered,)))
    _reseal(out)  # consistent digests, wrong integers: what a buggy exporter would write
    return out, int(np.argmax(fired[:, unit]))


def _same_report(a, b):
    assert a.to_dict() == b.to_dict()
    assert np.array_equal(a.mismatched_samples, b.mismatched_samples)


def test_chunks_merge_into_the_report_of_one_run(trained_model, late_divergence, monkeypatch, capsys):
    folder, first_sample = late_divergence
    one = mtsnn.validate(trained_model, folder, target="loihi")
    assert not one.bit_exact and 0 < one.mismatches < one.samples
    assert {d.path for d in one.divergences} == {"qat", "onnxruntime"}  # the simulator reads the same core
    for divergence in one.divergences:
        assert (divergence.layer, divergence.sample) == ("logits", first_sample)
    monkeypatch.setattr(validation, "CHUNK_SAMPLES", 37)  # ten chunks, the divergence past the first
    starts = []
    check_chunk = validation._check_chunk

    def counted(job, model, session, images, labels, start, say):
        starts.append((start, len(images)))
        return check_chunk(job, model, session, images, labels, start, say)

    monkeypatch.setattr(validation, "_check_chunk", counted)
    lines = []
    chunked = mtsnn.validate(trained_model, folder, target="loihi", progress=lines.append)
    assert starts == [(i * 37, min(37, 360 - i * 37)) for i in range(10)]
    assert lines[-1] == "  checked 360/360 samples" and "  checked 37/360 samples" in lines  # progress per chunk
    _same_report(chunked, one)


def test_shards_on_the_local_engine_give_the_same_report(trained_model, late_divergence, capsys):
    folder, _ = late_divergence
    one = mtsnn.validate(trained_model, folder, samples=300, simulate=False)
    sharded = mtsnn.validate(trained_model, folder, samples=300, simulate=False, engine="local", workers=3)
    _same_report(sharded, one)
    assert validate_main([str(trained_model), str(folder), "--samples", "300", "--no-sim", "--engine", "local",
                          "--workers", "2"]) == 1
    captured = capsys.readouterr()
    assert "shard 2/2 done" in captured.err and "first divergence: qat vs reference" in captured.out


def test_shards_on_ray_give_the_same_report(trained_model, late_divergence):
    pytest.importorskip("ray")
    folder, _ = late_divergence
    one = mtsnn.validate(trained_model, folder, samples=200)
    sharded = mtsnn.validate(trained_model, folder, samples=200, engine="ray", workers=2)
    _same_report(sharded, one)


def test_bad_engine_options_are_one_line(trained_model, late_divergence, capsys):
    folder, _ = late_divergence
    assert validate_main([str(trained_model), str(folder), "--engine", "local", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--workers: expected an integer >= 1, found 0")
    assert validate_main([str(trained_model), str(folder), "--address", "ray://x:1"]) == 2
    assert "--address: expected only with --engine (local or ray)" in capsys.readouterr().err
    assert validate_main([str(trained_model), str(folder), "--engine", "local", "--address", "ray://x:1"]) == 2
    assert "--address: expected only with --engine ray" in capsys.readouterr().err


def _outcome(start, n, divergences, correct=5):
    return ChunkOutcome(start=start, paths=["reference", "qat"], mismatched=np.arange(n) % 2 == 1,
                        correct={"reference": correct, "qat": correct}, divergences=divergences)


def test_merging_keeps_the_earliest_layer_before_the_lowest_sample():
    order = ("conv1", "conv2")
    late_layer_low_sample = Divergence("qat", 3, "conv2", 0, (0, 1, 1), 1, 2)
    early_layer_high_sample = Divergence("qat", 12, "conv1", 1, (2, 0, 0), 0, 1)
    logits = Divergence("qat", 0, "logits", None, (4,), 7, 8)
    merged = merge_outcomes([_outcome(10, 10, {"qat": early_layer_high_sample}),
                             _outcome(0, 10, {"qat": late_layer_low_sample}),
                             _outcome(20, 4, {"qat": logits}, correct=None)], order)
    assert merged.divergences["qat"] == early_layer_high_sample
    assert merged.start == 0 and merged.mismatched.tolist() == [i % 2 == 1 for i in range(10)] * 2 + [False, True] * 2
    assert merged.correct == {"reference": None, "qat": None}  # a chunk of another shape spoils the count
    merged = merge_outcomes([_outcome(0, 10, {"qat": late_layer_low_sample}), _outcome(10, 10, {})], order)
    assert merged.divergences == {"qat": late_layer_low_sample} and merged.correct == {"reference": 10, "qat": 10}
