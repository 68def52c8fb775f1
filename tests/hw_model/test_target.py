"""Targets as data: the presets load, every number is sourced or a listed assumption, bad files
give one-line errors naming the file, the key, expected and found."""

from __future__ import annotations

import dataclasses
import re

import pytest

from mtsnn.hw_model.target import PRESET_DIR, PRESETS, Target, TargetError, event_cycles, load_target

LOIHI_TEXT = (PRESET_DIR / "loihi.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_are_frozen(name):
    target = load_target(name)
    assert isinstance(target, Target)
    assert target.name == name
    assert target.sources and target.path.endswith(f"{name}.toml")
    assert target.n_cores <= target.mesh_x * target.mesh_y * target.cores_per_router
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.n_cores = 1


def test_preset_values_match_their_sources():
    """The figures docs/hardware_sources.md gives (SANA-FE 2.2.9's calibrated Loihi file, D18,
    A15's power sweep fit for TrueNorth)."""
    loihi, truenorth = load_target("loihi"), load_target("truenorth")
    assert (loihi.n_cores, loihi.neurons_per_core, loihi.axons_per_core, loihi.axons_out_per_core) == (128, 1024, 4096,
                                                                                                       4096)
    assert loihi.synapse_memory_bits == 16384 * 64 and loihi.weight_bits == 9 and loihi.acc_bits == 24
    assert loihi.energy_j == pytest.approx({
        "synapse_conv": 24.0e-12, "synapse_dense": 35.5e-12, "synapse_sparse": 33.6e-12, "compartment": 51.2e-12,
        "update": 21.6e-12, "spike_out": 69.3e-12, "axon_out": 111e-12, "axon_in": 0.0, "hop_x": 3.0e-12,
        "hop_y": 4.0e-12})
    assert loihi.latency_s == pytest.approx({
        "synapse_conv": 3.1e-9, "synapse_dense": 3.8e-9, "synapse_sparse": 4.7e-9, "compartment": 6.0e-9,
        "update": 3.7e-9, "spike_out": 30e-9, "axon_out": 5.1e-9, "axon_in": 16e-9, "hop_x": 4.1e-9, "hop_y": 6.5e-9})
    assert loihi.sync_tiles == (1, 2, 4, 29) and loihi.sync_s == pytest.approx((0.6e-6, 1.0e-6, 1.4e-6, 1.8e-6))
    assert loihi.static_power_w == pytest.approx(3.34 / 32) and loihi.static_default == "chip"
    assert loihi.partial_sums and loihi.encoding == "unary" and loihi.time_model == "asap"
    assert (truenorth.n_cores, truenorth.mesh_x, truenorth.mesh_y, truenorth.cores_per_router) == (4096, 64, 64, 1)
    assert (truenorth.neurons_per_core, truenorth.axons_per_core) == (256, 256)
    assert (truenorth.weight_bits, truenorth.acc_bits) == (9, 20)
    assert not truenorth.partial_sums and truenorth.time_model == "fixed" and truenorth.tick_s == 1e-3
    # A15 Fig. 17: 68 / 71 / 94 mW at 11.58 / 20.07 / 95.93 Hz x 2**20 neurons x 128 synapses
    sops = [f * 2**20 * 128 for f in (11.58, 20.07, 95.93)]
    slope, intercept = __import__("numpy").polyfit(sops, [68e-3, 71e-3, 94e-3], 1)
    assert truenorth.energy_j["synapse_dense"] == pytest.approx(slope, rel=0.01)
    assert truenorth.static_power_w == pytest.approx(intercept, rel=0.01)
    assert truenorth.latency_s["synapse_dense"] == pytest.approx(4096 / 58e9, rel=1e-3)  # 58 GSOPS peak
    assert truenorth.axon_types == 4 and truenorth.axon_types_rule == "enforce"  # M14 S1: 4 axon types
    assert loihi.multi_spike == truenorth.multi_spike == "substeps"  # one-bit spikes, one per tick


def test_loihi2_is_loihi1_costs_with_loihi2_structure_and_says_so():
    loihi, loihi2 = load_target("loihi"), load_target("loihi2")
    assert (loihi2.n_cores, loihi2.neurons_per_core, loihi2.weight_bits, loihi2.acc_bits) == (128, 8192, 8, 24)
    assert (loihi2.encoding, loihi2.payload_bits, loihi2.multi_spike) == ("graded", 24, "payload")
    assert loihi2.energy_j == loihi.energy_j and loihi2.latency_s == loihi.latency_s
    for event in loihi2.energy_j:  # every cost is an assumption, stated as such
        assert f"energy.{event}_j" in loihi2.assumptions and f"latency.{event}_s" in loihi2.assumptions


@pytest.mark.parametrize("name", PRESETS)
def test_every_number_in_a_preset_carries_a_source_or_an_assumption(name):
    text = (PRESET_DIR / f"{name}.toml").read_text(encoding="utf-8")
    target = load_target(name)
    section = None
    for line in text.splitlines():
        header = re.match(r"^\[(\w+)\]", line)
        if header:
            section = header.group(1)
            continue
        entry = re.match(r"^(\w+)\s*=\s*([-+0-9.eE]+|true|false|\"[^\"]*\"|\[[^\]]*\])\s*(#.*)?$", line)
        if not entry or section in ("sources", "assumptions", "target"):
            continue
        key, comment = f"{section}.{entry.group(1)}", entry.group(3) or ""
        assert comment.strip("# "), f"{name}: {key} has no source comment"
        if "ASSUMPTION" in comment:
            assert key in target.assumptions, f"{name}: {key} is marked ASSUMPTION but not listed in [assumptions]"
        if key in target.assumptions:
            assert "ASSUMPTION" in comment or "included" in comment or "DERIVED" in comment
        cited = re.findall(r"\[([\w-]+)\]", comment)
        for ref in cited:
            assert ref in target.sources, f"{name}: {key} cites [{ref}] missing from [sources]"


def test_load_by_path(tmp_path):
    path = tmp_path / "mychip.toml"
    path.write_text(LOIHI_TEXT.replace('name = "loihi"', 'name = "mychip"'), encoding="utf-8")
    target = load_target(path)
    assert target.name == "mychip" and target.path == str(path)


def test_event_cycles_are_whole_cycles():
    cycles = event_cycles(load_target("loihi"))
    assert cycles["synapse_dense"] == 3800 and cycles["compartment"] == 6000 and cycles["hop_y"] == 6500
    assert cycles["axon_in"] == 16000 and cycles["tick"] == 10**9


BAD_CASES = [
    # (description, text transform, key named in the message)
    ("missing key", lambda t: t.replace("neurons = 1024", ""), "core.neurons"),
    ("wrong type", lambda t: t.replace("neurons = 1024", 'neurons = "many"'), "core.neurons"),
    ("float for int", lambda t: t.replace("axons_in = 4096", "axons_in = 4096.5"), "core.axons_in"),
    ("unknown key", lambda t: t.replace("neurons = 1024", "neurons = 1024\nneurones = 3"), "core.neurones"),
    ("unknown section", lambda t: t + "\n[extra]\nx = 1\n", "extra"),
    ("missing section", lambda t: re.sub(r"\[spikes\]\nencoding[^\n]*\npayload_bits[^\n]*\nmulti_spike[^\n]*\n", "",
                                         t), "[spikes]"),
    ("burst is not graded", lambda t: t.replace('encoding = "unary"', 'encoding = "graded"').replace(
        "payload_bits = 1 ", "payload_bits = 8 "), "spikes.multi_spike"),
    ("unknown realisation", lambda t: t.replace('multi_spike = "substeps"', 'multi_spike = "replicas"'),
     "spikes.multi_spike"),
    ("bad axon-type rule", lambda t: t.replace('axon_types_rule = "enforce"', 'axon_types_rule = "maybe"'),
     "core.axon_types_rule"),
    ("bad encoding", lambda t: t.replace('encoding = "unary"', 'encoding = "binary"'), "spikes.encoding"),
    ("bad time model", lambda t: t.replace('model = "asap"', 'model = "sometimes"'), "time.model"),
    ("negative energy", lambda t: t.replace("synapse_dense_j = 35.5e-12", "synapse_dense_j = -1.0"),
     "energy.synapse_dense_j"),
    ("infinite energy", lambda t: t.replace("synapse_dense_j = 35.5e-12", "synapse_dense_j = inf"),
     "energy.synapse_dense_j"),
    ("absurd energy", lambda t: t.replace("synapse_dense_j = 35.5e-12", "synapse_dense_j = 1e308"),
     "energy.synapse_dense_j"),
    ("nan static", lambda t: t.replace("power_w = 0.104375", "power_w = nan"), "static.power_w"),
    ("huge integer", lambda t: t.replace("cores = 128", "cores = 999999999999999999999"), "chip.cores"),
    ("zero cores", lambda t: t.replace("cores = 128", "cores = 0"), "chip.cores"),
    ("mesh too small", lambda t: t.replace("cores = 128", "cores = 129"), "chip.cores"),
    ("bad bool", lambda t: t.replace("partial_sums = true", "partial_sums = 1"), "core.partial_sums"),
    ("unknown assumption", lambda t: t + '\n"core.bogus" = "x"\n', "assumptions.core.bogus"),
    ("toml syntax", lambda t: t.replace("cores = 128", "cores = = 128"), "<document>"),
    ("cycle overflow", lambda t: t.replace("cycle_s = 1e-12", "cycle_s = 1e-22"), "time.cycle_s"),
    ("latency rounds to zero", lambda t: t.replace("cycle_s = 1e-12", "cycle_s = 1e-9"), "latency."),
    ("latency not whole cycles", lambda t: t.replace("update_s = 3.7e-9", "update_s = 3.7e-12"),
     "latency.update_s"),
    ("sync not ascending", lambda t: t.replace("tiles = [1, 2, 4, 29]", "tiles = [1, 4, 2, 29]"), "sync.tiles"),
    ("sync lengths differ", lambda t: t.replace("tiles = [1, 2, 4, 29]", "tiles = [1, 2, 4]"), "sync.tiles"),
    ("bad static default", lambda t: t.replace('default = "chip"', 'default = "some"'), "static.default"),
    ("unary payload", lambda t: t.replace("payload_bits = 1", "payload_bits = 8"), "spikes.payload_bits"),
]


@pytest.mark.parametrize("what,transform,key", BAD_CASES, ids=[case[0] for case in BAD_CASES])
def test_bad_target_file_gives_one_line_error(tmp_path, what, transform, key):
    path = tmp_path / "bad.toml"
    path.write_text(transform(LOIHI_TEXT), encoding="utf-8")
    with pytest.raises(TargetError) as info:
        load_target(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    assert key in message and "expected" in message and "found" in message, message


def test_unknown_preset_or_missing_file_is_named(tmp_path):
    with pytest.raises(TargetError, match=r"loihi3: target: expected a preset .* found no such file"):
        load_target("loihi3")
    with pytest.raises(TargetError, match="found a directory"):
        load_target(tmp_path)


def test_replace_revalidates():
    with pytest.raises(TargetError, match="core.neurons"):
        dataclasses.replace(load_target("loihi"), neurons_per_core=0)


def test_an_oversized_target_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(LOIHI_TEXT + "#" * (2 << 20))
    with pytest.raises(TargetError, match="expected at most 1048576 bytes"):
        load_target(path)
