"""The core description (hw_model.coredesc): round trips, determinism, schema, a strict reader, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import mtsnn.hw_model.coredesc as coredesc
from mtsnn.hw_model.coredesc import CoreFormatError, core_paths, network_to_document, read_core, write_core
from mtsnn.hw_model.network import ConvLayer, DenseLayer, InputEncoder, IntegerNetwork, NeuronParams, PoolLayer
from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.synthetic import random_network
from mtsnn.hw_model.target import load_target

SCHEMA_PATH = Path(coredesc.__file__).parent / "schema" / "core-v1.schema.json"

PROVENANCE = {"weight_scale_exp": 6, "theta_float": 0.75, "bits": 8, "nested": {"list": [1, 2, 3], "none": None}}


def neuron(theta=100, delta=410, smax=15, acc_bits=20):
    return NeuronParams(theta_int=theta, delta=delta, smax=smax, acc_bits=acc_bits)


def conv_net(padding=0):
    """conv (the record under test) -> dense readout."""
    rng = np.random.default_rng(padding)
    conv = ConvLayer(name="conv1", in_shape=(2, 6, 5), neuron=neuron(), readout=False,
                     weight=rng.integers(-127, 128, size=(3, 2, 3, 3)), bias=[-7, 0, 1234],
                     stride=2 if padding else 1, padding=padding, weight_bits=8, provenance=dict(PROVENANCE))
    dense = DenseLayer(name="out", in_shape=conv.out_shape, neuron=neuron(), readout=True,
                       weight=rng.integers(-127, 128, size=(4, int(np.prod(conv.out_shape)))), bias=[0, 1, 2, 3])
    return IntegerNetwork(encoder=InputEncoder(shape=(2, 6, 5), smax=15), layers=(conv, dense), timesteps=2,
                          n_classes=4)


def pool_net():
    """pool first (no arrays at all) -> dense readout."""
    pool = PoolLayer(name="pool1", in_shape=(1, 5, 5), neuron=neuron(theta=4, delta=0), readout=False, kernel=2,
                     provenance={"theta_float": 1.0})
    dense = DenseLayer(name="out", in_shape=pool.out_shape, neuron=neuron(), readout=True,
                       weight=np.arange(-4, 4).reshape(2, 4), bias=[5, -5])
    return IntegerNetwork(encoder=InputEncoder(shape=(1, 5, 5), smax=7), layers=(pool, dense), timesteps=1,
                          n_classes=2)


def dense_net():
    """A single dense readout layer, weights at both ends of 16 bits, bias at the 32-bit accumulator limit."""
    weight = np.array([[32767, -32767, 0], [1, -1, 2]])
    dense = DenseLayer(name="only", in_shape=(3, 1, 1), neuron=neuron(acc_bits=32), readout=True, weight=weight,
                       bias=[2**31 - 1, -(2**31 - 1)], weight_bits=16, provenance={"float_scale": 2.0**-12})
    return IntegerNetwork(encoder=InputEncoder(shape=(3, 1, 1), smax=31), layers=(dense,), timesteps=64,
                          n_classes=2, provenance={"arch": "3", "accuracy": 0.5})


def conv_readout_net():
    """A conv layer as the readout (10 classes as a (10, 1, 1) map)."""
    rng = np.random.default_rng(3)
    conv = ConvLayer(name="c", in_shape=(1, 4, 4), neuron=neuron(), readout=True,
                     weight=rng.integers(-1, 2, size=(10, 1, 4, 4)), bias=np.zeros(10, dtype=np.int32), weight_bits=2)
    return IntegerNetwork(encoder=InputEncoder(shape=(1, 4, 4), smax=1), layers=(conv,), timesteps=3, n_classes=10)


def full_net():
    return random_network(
        np.random.default_rng(42),
        input_shape=(1, 12, 12),
        layers=(("conv", 3, 3, 1), ("pool", 2), ("conv", 4, 3, 0), ("pool", 2), ("dense", 7)),
        n_classes=5,
        timesteps=3,
    )


NETWORKS = {
    "conv": lambda: conv_net(0),
    "conv-padded-strided": lambda: conv_net(1),
    "pool": pool_net,
    "dense": dense_net,
    "conv-readout": conv_readout_net,
    "all-types": full_net,
}

# a real placement, as the mapper writes it (its structure is documented in the schema)
PLACEMENT = map_network(conv_net(0), load_target("loihi")).placement()


@pytest.fixture(scope="module")
def schema():
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return document


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_round_trip_every_record_type(tmp_path, name):
    net = NETWORKS[name]()
    json_path, npz_path = write_core(tmp_path / "model", net)
    assert (json_path.name, npz_path.name) == ("model.core.json", "model.core.npz")
    desc = read_core(json_path)
    assert desc.network == net
    assert desc.placement is None
    for original, loaded in zip(net.layers, desc.network.layers):
        assert type(loaded) is type(original)
        assert loaded.provenance == original.provenance
        for part in ("weight", "bias"):
            if hasattr(loaded, part):
                assert getattr(loaded, part).dtype == np.int64
                assert not getattr(loaded, part).flags.writeable
    assert desc.network.provenance == net.provenance


def test_round_trip_keeps_padding_stride_and_provenance(tmp_path):
    net = conv_net(1)
    layer = read_core(write_core(tmp_path / "m", net)[0]).network.layers[0]
    assert (layer.kernel, layer.stride, layer.padding) == (3, 2, 1)
    assert layer.provenance == PROVENANCE


def test_equality_is_not_vacuous():
    assert conv_net(0) != conv_net(1)
    assert full_net() == full_net()


@pytest.mark.parametrize("which", ["json", "npz", "stem"])
def test_read_core_accepts_either_name_of_the_pair(tmp_path, which):
    net = pool_net()
    json_path, npz_path = write_core(tmp_path / "m.core.json", net)
    path = {"json": json_path, "npz": npz_path, "stem": tmp_path / "m"}[which]
    assert read_core(path).network == net
    assert core_paths(path) == (json_path, npz_path)


def test_round_trip_with_placement(tmp_path, monkeypatch):
    """The placement section is stored verbatim and handed to its owner's checker on reading.

    Its inner layout belongs to hw_model.placement (tested there), so the checker is stubbed here.
    """
    import mtsnn.hw_model.placement as placement_module

    seen = []
    monkeypatch.setattr(placement_module, "check_placement", lambda placement, network: seen.append((placement, network)))
    net = conv_net(0)
    json_path, _ = write_core(tmp_path / "m", net, placement=PLACEMENT)
    desc = read_core(json_path)
    assert desc.network == net and desc.placement == PLACEMENT
    assert len(seen) == 1 and seen[0][0] == PLACEMENT and seen[0][1] == net


def test_placement_rejected_by_its_checker_becomes_a_core_format_error(tmp_path, monkeypatch):
    import mtsnn.hw_model.placement as placement_module

    def refuse(placement, network):
        raise ValueError("cores[0].id: expected 0, found 7")

    monkeypatch.setattr(placement_module, "check_placement", refuse)
    json_path, _ = write_core(tmp_path / "m", conv_net(0), placement=PLACEMENT)
    with pytest.raises(CoreFormatError) as info:
        read_core(json_path)
    message = str(info.value)
    assert str(json_path) in message and "placement" in message and "cores[0].id" in message
    assert "\n" not in message


# ----------------------------------------------------------------------------- determinism


def test_two_writes_are_byte_identical(tmp_path):
    a = write_core(tmp_path / "a" / "m", full_net())
    b = write_core(tmp_path / "b" / "m", full_net())
    for path_a, path_b in zip(a, b):
        assert path_a.read_bytes() == path_b.read_bytes()


def test_different_networks_give_different_files(tmp_path):
    net = conv_net(0)
    other_weight = net.layers[0].weight.copy()
    other_weight[0, 0, 0, 0] = 1 if other_weight[0, 0, 0, 0] != 1 else 2
    changed_weight = IntegerNetwork(
        encoder=net.encoder,
        layers=(ConvLayer(name="conv1", in_shape=(2, 6, 5), neuron=net.layers[0].neuron, readout=False,
                          weight=other_weight, bias=net.layers[0].bias, provenance=dict(PROVENANCE)),
                net.layers[1]),
        timesteps=2, n_classes=4)
    changed_theta = IntegerNetwork(
        encoder=net.encoder,
        layers=(ConvLayer(name="conv1", in_shape=(2, 6, 5), neuron=neuron(theta=101), readout=False,
                          weight=net.layers[0].weight, bias=net.layers[0].bias, provenance=dict(PROVENANCE)),
                net.layers[1]),
        timesteps=2, n_classes=4)
    base_json, base_npz = write_core(tmp_path / "base" / "m", net)
    w_json, w_npz = write_core(tmp_path / "w" / "m", changed_weight)
    t_json, t_npz = write_core(tmp_path / "t" / "m", changed_theta)
    # the JSON changes too: it records the npz's SHA-256
    assert w_npz.read_bytes() != base_npz.read_bytes() and w_json.read_bytes() != base_json.read_bytes()
    assert t_json.read_bytes() != base_json.read_bytes() and t_npz.read_bytes() == base_npz.read_bytes()


def test_equal_networks_with_reordered_provenance_give_identical_bytes(tmp_path):
    net_a = IntegerNetwork(encoder=pool_net().encoder, layers=pool_net().layers, timesteps=1, n_classes=2,
                           provenance={"arch": "P2-2", "accuracy": 0.9})
    net_b = IntegerNetwork(encoder=pool_net().encoder, layers=pool_net().layers, timesteps=1, n_classes=2,
                           provenance={"accuracy": 0.9, "arch": "P2-2"})
    assert net_a == net_b
    json_a, _ = write_core(tmp_path / "a" / "m", net_a)
    json_b, _ = write_core(tmp_path / "b" / "m", net_b)
    assert json_a.read_bytes() == json_b.read_bytes()


# ----------------------------------------------------------------------------- schema


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_written_json_validates_against_the_schema(tmp_path, schema, name):
    json_path, _ = write_core(tmp_path / "m", NETWORKS[name]())
    jsonschema.validate(json.loads(json_path.read_text()), schema, cls=jsonschema.Draft202012Validator)


def test_written_json_with_placement_validates(tmp_path, schema):
    json_path, _ = write_core(tmp_path / "m", conv_net(0), placement=PLACEMENT)
    jsonschema.validate(json.loads(json_path.read_text()), schema, cls=jsonschema.Draft202012Validator)


def _set(doc, path, value):
    *parents, last = path
    for key in parents:
        doc = doc[key]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()

SCHEMA_VIOLATIONS = {
    "format": (("format",), "other"),
    "format_version": (("format_version",), 2),
    "unknown layer type": (("layers", 0, "type"), "lstm"),
    "missing theta_int": (("layers", 0, "neuron", "theta_int"), _DELETE),
    "smax 0": (("layers", 0, "neuron", "smax"), 0),
    "smax 32": (("encoder", "smax"), 32),
    "delta 4097": (("layers", 0, "neuron", "delta"), 4097),
    "acc_bits 33": (("layers", 0, "neuron", "acc_bits"), 33),
    "weight_bits 1": (("layers", 0, "weight_bits"), 1),
    "weight_bits 17": (("layers", 0, "weight_bits"), 17),
    "extra layer key": (("layers", 0, "colour"), "red"),
    "extra top key": (("extra",), 1),
    "pool with weight": (("layers", 1, "weight"), {"array": "x", "shape": [1]}),
    "readout not bool": (("layers", 0, "readout"), 0),
    "weight ref without shape": (("layers", 0, "weight", "shape"), _DELETE),
    "conv weight shape of rank 2": (("layers", 0, "weight", "shape"), [3, 4]),
    "arrays with a folder": (("arrays",), "../x.npz"),
    "placement without target": (("placement",), {"cores": []}),
    "encoder kind": (("encoder", "kind"), "poisson"),
    "timesteps 0": (("timesteps",), 0),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_VIOLATIONS))
def test_schema_rejects_what_the_reader_rejects(schema, case):
    document, _ = network_to_document(full_net(), "m.core.npz")
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)  # valid before the edit
    path, value = SCHEMA_VIOLATIONS[case]
    _set(document, path, value)
    assert not jsonschema.Draft202012Validator(schema).is_valid(document)


def test_schema_describes_every_property(schema):
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                if not isinstance(sub, dict) or not sub.get("description"):
                    missing.append(f"{where}.{key}")
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                walk(sub, f"{where}[{index}]")

    walk(schema, "$")
    assert missing == []
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["format"]["const"] == coredesc.FORMAT_NAME
    assert schema["properties"]["format_version"]["const"] == coredesc.FORMAT_VERSION


# ----------------------------------------------------------------------------- the reader rejects


def edit_json(json_path, path, value):
    document = json.loads(json_path.read_text())
    _set(document, path, value)
    json_path.write_text(json.dumps(document))


def edit_npz(npz_path, key, value=_DELETE, rehash=True):
    """Change one array. With rehash, the JSON records the new npz's SHA-256 (a consistent but
    bad pair, as another tool could write), so the reader's field checks are what is tested."""
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}
    if value is _DELETE:
        del arrays[key]
    else:
        arrays[key] = value
    with open(npz_path, "wb") as f:
        np.savez(f, **arrays)
    if rehash:
        json_path = npz_path.with_name(npz_path.name[: -len(".npz")] + ".json")
        edit_json(json_path, ("arrays_sha256",), hashlib.sha256(npz_path.read_bytes()).hexdigest())


def test_npz_from_another_write_is_detected_by_its_hash(tmp_path):
    json_path, npz_path = write_core(tmp_path / "m", _small_network_for_hash())
    edit_npz(npz_path, "conv1.weight", np.zeros((3, 1, 3, 3), dtype=np.int8), rehash=False)
    with pytest.raises(CoreFormatError) as info:
        read_core(json_path)
    message = str(info.value)
    assert str(npz_path) in message and "arrays_sha256" in message and "\n" not in message


def _small_network_for_hash():
    weight = np.arange(27, dtype=np.int64).reshape(3, 1, 3, 3) - 13
    layer = ConvLayer(name="conv1", in_shape=(1, 4, 4), neuron=NeuronParams(theta_int=5, delta=0, smax=3, acc_bits=16),
                      readout=True, weight=weight, bias=np.zeros(3, dtype=np.int64))
    return IntegerNetwork(encoder=InputEncoder(shape=(1, 4, 4), smax=3), layers=(layer,), timesteps=1, n_classes=12)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# name -> (corrupt(json_path, npz_path), substrings the message must contain besides the file name)
CORRUPTIONS = {
    "wrong format": (lambda j, n: edit_json(j, ("format",), "onnx"), ["format", "mtsnn-core", "onnx"]),
    "newer format_version": (lambda j, n: edit_json(j, ("format_version",), 2), ["format_version", "2"]),
    "format_version not int": (lambda j, n: edit_json(j, ("format_version",), "1"), ["format_version"]),
    "unknown layer type": (lambda j, n: edit_json(j, ("layers", 1, "type"), "lstm"), ["layers[1].type", "lstm"]),
    "missing theta_int": (lambda j, n: edit_json(j, ("layers", 0, "neuron", "theta_int"), _DELETE),
                          ["layers[0] (conv1).neuron.theta_int", "missing"]),
    "smax 0": (lambda j, n: edit_json(j, ("layers", 0, "neuron", "smax"), 0), ["layers[0] (conv1).neuron.smax", "0"]),
    "encoder smax 32": (lambda j, n: edit_json(j, ("encoder", "smax"), 32), ["encoder.smax", "32"]),
    "delta too big": (lambda j, n: edit_json(j, ("layers", 0, "neuron", "delta"), 5000), ["neuron.delta", "5000"]),
    "readout not bool": (lambda j, n: edit_json(j, ("layers", 0, "readout"), "no"), ["layers[0] (conv1).readout"]),
    "weight_bits 17": (lambda j, n: edit_json(j, ("layers", 0, "weight_bits"), 17), ["weight_bits", "17"]),
    "declared weight shape wrong": (lambda j, n: edit_json(j, ("layers", 0, "weight", "shape"), [3, 2, 3, 3]),
                                    ["layers[0] (conv1).weight.shape", "[3, 2, 3, 3]"]),
    "non-JSON text": (lambda j, n: j.write_text("this is { not json"), ["not valid JSON"]),
    "JSON but not an object": (lambda j, n: j.write_text("[1, 2]"), ["expected a JSON object"]),
    "truncated npz": (lambda j, n: truncate(n), ["npz", "truncated"]),
    "missing npz key": (lambda j, n: edit_npz(n, "conv1.bias"), ["layers[0] (conv1).bias.array", "conv1.bias"]),
    "weight out of weight_bits range": (
        lambda j, n: edit_npz(n, "conv1.weight", np.full((3, 1, 3, 3), 128, dtype=np.int16)),
        ["conv1.weight", "128", "8-bit"]),
    "weight array of the wrong shape": (
        lambda j, n: edit_npz(n, "conv1.weight", np.zeros((3, 1, 3, 2), dtype=np.int8)),
        ["layers[0] (conv1).weight", "[3, 1, 3, 2]"]),
    "float weight array": (
        lambda j, n: edit_npz(n, "conv1.weight", np.zeros((3, 1, 3, 3), dtype=np.float64)),
        ["layers[0] (conv1).weight", "float64"]),
    "bias beyond the accumulator": (
        lambda j, n: edit_npz(n, "conv1.bias", np.array([2**19, 0, 0], dtype=np.int32)),
        ["conv1.bias", str(2**19)]),
    "npz missing": (lambda j, n: n.unlink(), ["not found"]),
    "arrays names another folder": (lambda j, n: edit_json(j, ("arrays",), "../m.core.npz"), ["arrays"]),
    "placement not an object": (lambda j, n: edit_json(j, ("placement",), [1]), ["placement"]),
}


def reader_net():
    rng = np.random.default_rng(8)
    return random_network(rng, input_shape=(1, 6, 6), layers=(("conv", 3, 3, 1), ("pool", 2)), n_classes=3,
                          acc_bits=20)


def corrupted(tmp_path, case):
    json_path, npz_path = write_core(tmp_path / "m", reader_net())
    read_core(json_path)  # fine before the edit
    CORRUPTIONS[case][0](json_path, npz_path)
    with pytest.raises(CoreFormatError) as info:
        read_core(json_path)
    return str(info.value), json_path, npz_path


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_reader_rejects_with_file_and_field(tmp_path, case):
    message, json_path, npz_path = corrupted(tmp_path, case)
    named_file = npz_path if case in ("truncated npz", "npz missing") else json_path  # the file at fault
    assert str(named_file) in message, message
    for part in CORRUPTIONS[case][1]:
        assert part in message, (part, message)


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_reader_error_is_one_line(tmp_path, case):
    message, _, _ = corrupted(tmp_path, case)
    assert "\n" not in message and "\r" not in message
    assert len(message) < 400


def test_core_format_error_is_a_value_error():
    assert issubclass(CoreFormatError, ValueError)


def test_missing_json_names_the_file(tmp_path):
    with pytest.raises(CoreFormatError, match="not found") as info:
        read_core(tmp_path / "absent.core.json")
    assert str(tmp_path / "absent.core.json") in str(info.value)


def test_reader_error_is_one_line_even_for_a_string_with_a_newline(tmp_path):
    json_path, _ = write_core(tmp_path / "m", reader_net())
    edit_json(json_path, ("layers", 0, "type"), "conv\nfoo")
    with pytest.raises(CoreFormatError) as info:
        read_core(json_path)
    assert "\n" not in str(info.value)


def test_reader_rejects_uint64_weight_beyond_int64(tmp_path):
    json_path, npz_path = write_core(tmp_path / "m", reader_net())
    with np.load(npz_path) as data:
        weight = data["conv1.weight"].astype(np.int64).astype(np.uint64)
    weight[0, 0, 0, 0] = np.uint64(2**64 - 1)
    edit_npz(npz_path, "conv1.weight", weight)
    with pytest.raises(CoreFormatError):
        read_core(json_path)


def test_reader_rejects_pool_stride_other_than_kernel(tmp_path):
    json_path, _ = write_core(tmp_path / "m", reader_net())
    edit_json(json_path, ("layers", 1, "stride"), 3)
    with pytest.raises(CoreFormatError, match="stride"):
        read_core(json_path)


# ----------------------------------------------------------------------------- atomic writes


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_leaves_only_the_two_files(tmp_path):
    write_core(tmp_path / "m", full_net())
    write_core(tmp_path / "m", conv_net(0))  # overwrite
    assert listing(tmp_path) == ["m.core.json", "m.core.npz"]


def test_failed_rename_leaves_nothing_in_a_fresh_folder(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(coredesc.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_core(tmp_path / "m", full_net())
    assert listing(tmp_path) == []  # no target, no .tmp


def test_failed_rename_keeps_the_previous_files(tmp_path, monkeypatch):
    json_path, npz_path = write_core(tmp_path / "m", conv_net(0))
    before = (json_path.read_bytes(), npz_path.read_bytes())

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(coredesc.os, "replace", refuse)
    with pytest.raises(OSError):
        write_core(tmp_path / "m", full_net())
    assert (json_path.read_bytes(), npz_path.read_bytes()) == before
    assert listing(tmp_path) == ["m.core.json", "m.core.npz"]
    monkeypatch.undo()
    assert read_core(json_path).network == conv_net(0)


def test_failure_while_writing_the_temp_file_cleans_up(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(coredesc.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_core(tmp_path / "m", pool_net())
    assert listing(tmp_path) == []


def test_unserialisable_provenance_writes_nothing(tmp_path):
    net = IntegerNetwork(encoder=pool_net().encoder, layers=pool_net().layers, timesteps=1, n_classes=2,
                         provenance={"accuracy": float("nan")})
    with pytest.raises(ValueError):
        write_core(tmp_path / "m", net)
    assert listing(tmp_path) == []


def test_failed_json_rename_never_yields_a_mixed_network(tmp_path, monkeypatch):
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(2)
    spec = dict(input_shape=(1, 6, 6), layers=(("dense", 4),), n_classes=3)
    net_a, net_b = random_network(rng_a, **spec), random_network(rng_b, **spec)
    json_path, _ = write_core(tmp_path / "m", net_a)
    real_replace = os.replace

    def refuse_json(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(coredesc.os, "replace", refuse_json)
    with pytest.raises(OSError):
        write_core(tmp_path / "m", net_b)
    monkeypatch.undo()
    assert not [name for name in listing(tmp_path) if name.endswith(".tmp")]
    try:
        loaded = read_core(json_path).network
    except CoreFormatError:
        return  # refusing the inconsistent pair would be acceptable
    assert loaded == net_a or loaded == net_b
