"""mtsnn-sim end to end: synthetic core descriptions, the digits data set, JSON, PNGs, placement
output, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from mtsnn.cli import add_sim_arguments, run_sim, sim_main
from mtsnn.hw_model.coredesc import read_core, write_core
from mtsnn.hw_model.synthetic import random_network


def _core(tmp_path, seed=0, input_shape=(1, 8, 8), **kw):
    net = random_network(np.random.default_rng(seed), input_shape, (("conv", 4, 3, 1), ("pool", 2), ("dense", 16)),
                         10, **kw)
    json_path, _ = write_core(tmp_path / "net.core.json", net)
    return json_path


@pytest.mark.parametrize("target", ["loihi", "truenorth"])
def test_end_to_end_on_digits(tmp_path, capsys, target):
    core = _core(tmp_path)
    out_json, plots, placed = tmp_path / "report.json", tmp_path / "plots", tmp_path / "placed.core.json"
    relax = ["--relax", "axon-types"] if target == "truenorth" else []  # random 8-bit weights break the rule
    rc = sim_main([str(core), "--target", target, "--dataset", "digits", "--samples", "40", "--batch-size", "16",
                   "--json", str(out_json), "--plots", str(plots), "--placement-out", str(placed), "--no-progress"]
                  + relax)
    assert rc == 0
    stdout = capsys.readouterr().out
    for needle in ("total", "static", "accuracy:", "45 nm:", "throughput:", "dynamic", "static convention 'chip'"):
        assert needle in stdout, needle
    report = json.loads(out_json.read_text())
    for key in ("sops", "energy_j", "dynamic_energy_j", "static_energy_j", "latency_s", "throughput_sps", "cores",
                "energy_breakdown_j", "time_breakdown_s", "firing_rate"):
        assert key in report["total"], key
    assert report["target"]["name"] == target and report["encoding"] == "unary"
    assert report["multi_spike"]["realisation"] == "substeps" and report["multi_spike"]["chip_ticks_per_step"] == 15
    if target == "truenorth":  # the relaxation is stated, in the report and among the assumptions
        assert report["axon_types"]["rule"] == "relax" and "RELAXED" in report["axon_types"]["meaning"]
        assert "RELAXED" in report["target"]["assumptions"]["core.axon_types_rule"]
        assert "RELAXED" in stdout
    assert report["static"]["convention"] == report["static"]["default"] == "chip"
    assert "k x F" in report["sop_convention"]
    assert report["samples"] == 40 and 0.0 <= report["accuracy"] <= 1.0
    assert [layer["name"] for layer in report["layers"]] == ["conv1", "pool2", "dense3", "dense4"]
    assert len(report["cores"]) == report["total"]["cores"] >= 5 and report["input"]["cores"] >= 1
    assert report["total"]["sops"] == pytest.approx(report["input"]["synapse_reads"] + sum(
        layer["sops"] for layer in report["layers"]))
    assert report["total"]["latency_s"] > 0 and report["total"]["throughput_sps"] > 0
    assert report["stats"]["latency_s"]["p99"] >= report["stats"]["latency_s"]["p50"]
    assert report["conventional"]["macs"] > 0 and report["conventional"]["ratio_energy"] > 0
    for layer in report["layers"][:-1]:
        assert 0 <= layer["firing_rate"] and 0 <= layer["sparsity"] <= 1
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == sorted(["energy_per_layer.png", "sops_per_layer.png", "core_utilisation_mesh.png",
                           "latency_breakdown.png"])
    assert all((plots / name).stat().st_size > 1000 for name in pngs)
    description = read_core(placed)
    assert description.placement["target"] == target
    assert len(description.placement["cores"]) == report["total"]["cores"]
    # the written placement is used as is on a second run and gives the same report
    again = tmp_path / "again.json"
    assert sim_main([str(placed), "--target", target, "--samples", "40", "--batch-size", "16", "--json", str(again),
                     "--no-progress"] + relax) == 0
    assert json.loads(again.read_text())["total"] == report["total"]


@pytest.mark.parametrize("static", ["chip", "used-cores", "none"])
def test_energy_breakdowns_add_up_to_the_total_under_every_static_convention(tmp_path, static):
    """Input row + layer rows + static row = total; core rows + static row = total; dynamic +
    static = total; and the report states the convention and the target's default."""
    core = _core(tmp_path)
    out = tmp_path / "r.json"
    assert sim_main([str(core), "--target", "loihi", "--samples", "12", "--static", static, "--json", str(out),
                     "--no-progress"]) == 0
    report = json.loads(out.read_text())
    total = report["total"]
    rows = report["input"]["dynamic_energy_j"] + sum(layer["dynamic_energy_j"] for layer in report["layers"])
    assert rows + total["static_energy_j"] == pytest.approx(total["energy_j"], rel=1e-12)
    cores = sum(core["dynamic_energy_j"] for core in report["cores"])
    assert cores + total["static_energy_j"] == pytest.approx(total["energy_j"], rel=1e-12)
    assert total["dynamic_energy_j"] + total["static_energy_j"] == pytest.approx(total["energy_j"])
    assert sum(total["energy_breakdown_j"].values()) == pytest.approx(total["energy_j"])
    assert report["static"]["convention"] == static and report["static"]["default"] == "chip"
    fraction = {"chip": 1.0, "used-cores": total["cores"] / 128, "none": 0.0}[static]
    assert total["static_energy_j"] == pytest.approx(0.104375 * fraction * total["latency_s"])
    assert report["title"].endswith(f"static: {static}")


def test_units_carry_si_prefixes_in_the_table(tmp_path, capsys):
    core = _core(tmp_path)
    assert sim_main([str(core), "--target", "loihi", "--samples", "8", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "µJ" in out or "nJ" in out
    assert "µs" in out or "ns" in out
    assert "kSOP" in out or "MSOP" in out
    assert "e-0" not in out  # no raw exponents for units


def test_default_dataset_and_umbrella_reuse(tmp_path, capsys):
    core = _core(tmp_path, seed=2)
    parser = argparse.ArgumentParser(prog="mtsnn sim")
    add_sim_arguments(parser)
    args = parser.parse_args([str(core), "--target", "loihi", "--samples", "10", "--json",
                              str(tmp_path / "r.json"), "--no-progress"])
    assert run_sim(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 10 and report["accuracy"] is not None


def test_target_file_by_path(tmp_path, capsys):
    from mtsnn.hw_model.target import PRESET_DIR

    custom = tmp_path / "graded.toml"
    text = (PRESET_DIR / "loihi.toml").read_text().replace('encoding = "unary"', 'encoding = "graded"').replace(
        "payload_bits = 1  ", "payload_bits = 8  ").replace('multi_spike = "substeps"', 'multi_spike = "payload"')
    custom.write_text(text.replace('name = "loihi"', 'name = "loihi-graded"'))
    out = tmp_path / "r.json"
    assert sim_main([str(_core(tmp_path)), "--target", str(custom), "--samples", "5", "--json", str(out),
                     "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["encoding"] == "graded" and "UNCONFIRMED" in report["sop_convention"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mtsnn-sim: error: ")
    return err[0]


def test_missing_core_file(tmp_path, capsys):
    assert sim_main([str(tmp_path / "nope.core.json"), "--target", "loihi", "--no-progress"]) == 2
    assert "nope.core.json" in _error_line(capsys)


def test_bad_target(tmp_path, capsys):
    core = _core(tmp_path)
    assert sim_main([str(core), "--target", "loihi9", "--no-progress"]) == 2
    assert "loihi9" in _error_line(capsys)
    bad = tmp_path / "bad.toml"
    bad.write_text("[target]\nname = 3\n")
    assert sim_main([str(core), "--target", str(bad), "--no-progress"]) == 2
    assert "bad.toml" in _error_line(capsys)


def test_design_rule_failure(tmp_path, capsys):
    core = _core(tmp_path, weight_bits=12)
    assert sim_main([str(core), "--target", "truenorth", "--no-progress"]) == 2
    assert "layer conv1: weight bits 12 > 9" in _error_line(capsys)


def test_malformed_core_description(tmp_path, capsys):
    core = _core(tmp_path)
    document = json.loads(core.read_text())
    document["timesteps"] = "two"
    core.write_text(json.dumps(document))
    assert sim_main([str(core), "--target", "loihi", "--no-progress"]) == 2
    assert "timesteps" in _error_line(capsys)


def test_dataset_that_does_not_match_the_network(tmp_path, capsys):
    core = _core(tmp_path, input_shape=(1, 6, 6))
    assert sim_main([str(core), "--target", "loihi", "--no-progress"]) == 2
    assert "dataset: expected inputs (1, 6, 6)" in _error_line(capsys)
    assert sim_main([str(core), "--target", "loihi", "--dataset", "mnist:" + str(tmp_path / "none"),
                     "--no-progress"]) == 2
    _error_line(capsys)


def test_bad_numbers(tmp_path, capsys):
    core = _core(tmp_path)
    assert sim_main([str(core), "--target", "loihi", "--samples", "0", "--no-progress"]) == 2
    assert "--samples" in _error_line(capsys)


def test_loihi2_preset_runs_graded_and_states_its_assumptions(tmp_path, capsys):
    core = _core(tmp_path)
    out = tmp_path / "r.json"
    assert sim_main([str(core), "--target", "loihi2", "--samples", "12", "--json", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["encoding"] == "graded" and report["multi_spike"]["realisation"] == "payload"
    assert report["multi_spike"]["chip_ticks_per_step"] == 1  # a count travels in one message
    assert "UNCONFIRMED" in report["sop_convention"]
    assumed = report["target"]["assumptions"]
    for key in ("energy.synapse_conv_j", "energy.compartment_j", "latency.synapse_dense_s", "static.power_w",
                "core.synapse_memory_bits"):
        assert key in assumed, key
    # Smax 15 counts fit its 24-bit payload; a 3-bit payload refuses them by name
    from mtsnn.hw_model.target import PRESET_DIR

    narrow = tmp_path / "narrow.toml"
    narrow.write_text((PRESET_DIR / "loihi2.toml").read_text().replace("payload_bits = 24 ", "payload_bits = 3 "))
    assert sim_main([str(core), "--target", str(narrow), "--no-progress"]) == 2
    assert "spike count up to Smax 15 > 7, the largest 3-bit payload" in _error_line(capsys)
