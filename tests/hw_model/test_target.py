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


def test_preset_values_match_hw_facts():
    loihi, truenorth = load_target("loihi"), load_target("truenorth")
    assert (loihi.n_cores, loihi.neurons_per_core, loihi.axons_per_core) == (128, 1024, 4096)
    assert loihi.synapse_memory_bits == 16384 * 64 and loihi.weight_bits == 9 and loihi.acc_bits == 24
    assert loihi.energy_sop_j == pytest.approx(23.6e-12) and loihi.latency_sop_s == pytest.approx(3.5e-9)
    assert (loihi.energy_hop_x_j, loihi.energy_hop_y_j) == (pytest.approx(3.0e-12), pytest.approx(4.0e-12))
    assert loihi.partial_sums and loihi.encoding == "unary" and loihi.time_model == "asap"
    assert (truenorth.n_cores, truenorth.mesh_x, truenorth.mesh_y, truenorth.cores_per_router) == (4096, 64, 64, 1)
    assert (truenorth.neurons_per_core, truenorth.axons_per_core) == (256, 256)
    assert (truenorth.weight_bits, truenorth.acc_bits) == (9, 20)
    assert not truenorth.partial_sums and truenorth.time_model == "fixed" and truenorth.tick_s == 1e-3
    assert truenorth.energy_sop_j == pytest.approx(26e-12) and truenorth.static_power_w == 0.0  # all-in model


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
        entry = re.match(r"^(\w+)\s*=\s*([-+0-9.eE]+|true|false)\s*(#.*)?$", line)
        if not entry or section in ("sources", "assumptions"):
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
    assert cycles["sop"] == 3500 and cycles["update_active"] == 8400 and cycles["hop_y"] == 6500
    assert cycles["barrier"] == 465000 and cycles["tick"] == 10**9


BAD_CASES = [
    # (description, text transform, key named in the message)
    ("missing key", lambda t: t.replace("neurons = 1024", ""), "core.neurons"),
    ("wrong type", lambda t: t.replace("neurons = 1024", 'neurons = "many"'), "core.neurons"),
    ("float for int", lambda t: t.replace("axons = 4096", "axons = 4096.5"), "core.axons"),
    ("unknown key", lambda t: t.replace("neurons = 1024", "neurons = 1024\nneurones = 3"), "core.neurones"),
    ("unknown section", lambda t: t + "\n[extra]\nx = 1\n", "extra"),
    ("missing section", lambda t: re.sub(r"\[spikes\]\nencoding[^\n]*\n", "", t), "[spikes]"),
    ("bad encoding", lambda t: t.replace('encoding = "unary"', 'encoding = "binary"'), "spikes.encoding"),
    ("bad time model", lambda t: t.replace('model = "asap"', 'model = "sometimes"'), "time.model"),
    ("negative energy", lambda t: t.replace("sop_j = 23.6e-12", "sop_j = -1.0"), "energy.sop_j"),
    ("zero cores", lambda t: t.replace("cores = 128", "cores = 0"), "chip.cores"),
    ("mesh too small", lambda t: t.replace("cores = 128", "cores = 129"), "chip.cores"),
    ("bad bool", lambda t: t.replace("partial_sums = true", "partial_sums = 1"), "core.partial_sums"),
    ("unknown assumption", lambda t: t + '\n"core.bogus" = "x"\n', "assumptions.core.bogus"),
    ("toml syntax", lambda t: t.replace("cores = 128", "cores = = 128"), "<document>"),
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
