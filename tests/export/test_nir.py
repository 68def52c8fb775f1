"""Tests for export.nir_model: the NIR graph of an integer network, and its HDF5 file.

The central check: an interpreter written here, from the NIR file alone (nodes, edges, metadata;
no mtsnn code), reproduces ``hw_model.reference.run_reference``'s logits exactly, on networks
that exercise conv (padding, stride 2), pooling with a floor crop, flatten, dense, zero bias,
delta = 0 / > 0 / 4096, Smax clipping and accumulator saturation.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict

import nir
import numpy as np
import pytest

from mtsnn.export import nir_model
from mtsnn.export.errors import ExportError
from mtsnn.export.nir_model import NIR_FORMAT, node_keys, to_nir, write_nir
from mtsnn.hw_model.errors import InputError
from mtsnn.hw_model.network import ConvLayer, DenseLayer, InputEncoder, IntegerNetwork, NeuronParams
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.synthetic import random_images, random_network

ARCHS = {
    "conv-pad-pool-dense": ((2, 8, 8), (("conv", 4, 3, 1), ("pool", 2), ("dense", 12))),
    "conv-conv-pool-crop": ((1, 9, 9), (("conv", 3, 3, 0), ("conv", 4, 3, 1), ("pool", 2))),
    "pool-first-conv-dense": ((2, 10, 10), (("pool", 3), ("conv", 5, 2, 1), ("dense", 8))),
    "dense-only": ((1, 5, 5), (("dense", 10),)),
}
ARRAY_FIELDS = ("weight", "bias", "r", "tau", "v_leak", "v_threshold", "v_reset", "kernel_size", "stride",
                "padding", "dilation")


# --------------------------------------------------------------------------- an independent NIR interpreter


def _conv(x: np.ndarray, weight: np.ndarray, stride, padding, bias=None) -> np.ndarray:
    """Exact int64 2-d correlation: (B, C, H, W) x (O, C, kh, kw) -> (B, O, OH, OW)."""
    (sh, sw), (ph, pw) = np.broadcast_to(stride, 2), np.broadcast_to(padding, 2)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, _, kh, kw = weight.shape
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], o, oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            out += np.einsum("bchw,oc->bohw", patch, weight[:, :, i, j].astype(np.int64))
    return out if bias is None else out + bias.astype(np.int64)[None, :, None, None]


def _sum_pool(x: np.ndarray, node) -> np.ndarray:
    kh, kw = (int(v) for v in node.kernel_size)
    sh, sw = (int(v) for v in node.stride)
    assert not np.any(node.padding)
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = np.zeros(x.shape[:2] + (oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            out += x[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
    return out


def _mtlif(node, v: np.ndarray, current: np.ndarray):
    """The integer neuron exactly as the node's metadata states it."""
    m = node.metadata
    theta, delta, smax, limit = (int(m[k]) for k in ("theta_int", "delta", "smax", "accumulator_limit"))
    assert m["reset"] == "subtractive" and m["spikes"] == "count"
    assert np.all(node.v_threshold == theta)  # the float field agrees with the metadata
    denominator = int(m["leak_denominator"])
    leaked = v if delta == 0 else np.sign(v) * ((np.abs(v) * (denominator - delta)) // denominator)
    u = np.clip(leaked + current, -limit, limit)
    s = np.clip(u // theta, 0, smax)
    return s, u - s * theta


def interpret(graph: nir.NIRGraph, images: np.ndarray) -> np.ndarray:
    """Run a graph written by mtsnn on uint8 images using only the graph: logits (B, n_out) int64."""
    assert graph.metadata["format"] == NIR_FORMAT
    timesteps = int(graph.metadata["timesteps"])
    preds = defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
    order, ready = [], [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    assert len(ready) == 1
    while ready:  # topological order (Kahn)
        key = ready.pop()
        order.append(key)
        ready += [b for a, b in graph.edges if a == key and all(p in order for p in preds[b])]
    assert sorted(order) == sorted(graph.nodes)
    enc = graph.nodes[order[0]].metadata
    counts = (images.astype(np.int64) * int(enc["smax"]) + 127) // 255
    state: dict[str, np.ndarray] = {}
    out = None
    for _ in range(timesteps):
        values: dict[str, np.ndarray] = {}
        for key in order:
            node = graph.nodes[key]
            x = values[preds[key][0]] if preds[key] else None
            if isinstance(node, nir.Input):
                y = counts
            elif isinstance(node, nir.Conv2d):
                assert np.all(node.dilation == 1) and node.groups == 1
                y = _conv(x, node.weight, node.stride, node.padding, node.bias)
            elif isinstance(node, nir.SumPool2d):
                y = _sum_pool(x, node)
            elif isinstance(node, nir.Flatten):
                assert node.start_dim == 0 and node.end_dim == -1  # NIR shapes have no batch axis
                y = x.reshape(x.shape[0], -1)
            elif isinstance(node, nir.Affine):
                y = x @ node.weight.astype(np.int64).T + node.bias.astype(np.int64)
            elif isinstance(node, nir.Linear):
                y = x @ node.weight.astype(np.int64).T
            elif isinstance(node, (nir.IF, nir.LIF)):
                y, state[key] = _mtlif(node, state.get(key, np.zeros_like(x)), x)
            elif isinstance(node, nir.I):
                limit = int(node.metadata["accumulator_limit"])
                y = state[key] = np.clip(state.get(key, np.zeros_like(x)) + x, -limit, limit)
            elif isinstance(node, nir.Output):
                y = out = x
            else:
                raise AssertionError(f"unexpected node {key}: {type(node).__name__}")
            values[key] = y
    return out.reshape(out.shape[0], -1)


# --------------------------------------------------------------------------- networks


def _arch_network(arch: str, delta: int, seed: int = 0, **kwargs) -> IntegerNetwork:
    shape, layers = ARCHS[arch]
    return random_network(np.random.default_rng(seed), shape, layers, n_classes=6, delta=delta, **kwargs)


def _strided_network(delta: int = 0) -> IntegerNetwork:
    """Conv stride 2 + padding 1 on 7x7, a zero-bias dense (-> Linear), then the readout."""
    rng = np.random.default_rng(5)
    neuron = NeuronParams(theta_int=60, delta=delta, smax=7, acc_bits=16)
    conv = ConvLayer(name="conv1", in_shape=(1, 7, 7), neuron=neuron, readout=False,
                     weight=rng.integers(-15, 16, (3, 1, 3, 3)), bias=rng.integers(-20, 21, 3), stride=2, padding=1,
                     weight_bits=5)
    hidden = DenseLayer(name="fc2", in_shape=conv.out_shape, neuron=NeuronParams(40, delta, 7, 16), readout=False,
                        weight=rng.integers(-15, 16, (9, 48)), bias=np.zeros(9, np.int64), weight_bits=5)
    readout = DenseLayer(name="fc3", in_shape=(9,), neuron=NeuronParams(1, delta, 7, 16), readout=True,
                         weight=rng.integers(-15, 16, (4, 9)), bias=rng.integers(-5, 6, 4), weight_bits=5)
    return IntegerNetwork(encoder=InputEncoder(shape=(1, 7, 7), smax=7), layers=(conv, hidden, readout), timesteps=4,
                          n_classes=4, provenance={"arch": "hand-built", "note": None, "list": [1, 2]})


def _renamed(net: IntegerNetwork, names: list[str]) -> IntegerNetwork:
    layers = tuple(dataclasses.replace(layer, name=name) for layer, name in zip(net.layers, names))
    return dataclasses.replace(net, layers=layers)


CASES = {
    **{f"{arch}-delta{delta}": (lambda arch=arch, delta=delta: _arch_network(arch, delta))
       for arch in ARCHS for delta in (0, 410)},
    "strided-linear": lambda: _strided_network(0),
    "strided-linear-leak4096": lambda: _strided_network(4096),
    "saturating": lambda: _arch_network("conv-pad-pool-dense", 410, seed=3, acc_bits=10, theta_scale=2.0),
    "smax-clipping": lambda: _arch_network("conv-pad-pool-dense", 0, seed=4, smax=3, theta_scale=0.02, timesteps=3),
}


def _normalize(value):
    """Metadata as plain Python (nir.read gives numpy scalars and arrays)."""
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- structure


def test_structure_conv_pool_dense_with_leak():
    net = _arch_network("conv-pad-pool-dense", 410)
    graph = to_nir(net)
    assert list(graph.nodes) == ["input", "conv1", "conv1_neuron", "pool2", "pool2_neuron", "dense3_flatten", "dense3",
                                 "dense3_neuron", "dense4", "dense4_readout", "output"]
    keys = list(graph.nodes)
    assert graph.edges == list(zip(keys[:-1], keys[1:]))
    types = [type(n).__name__ for n in graph.nodes.values()]
    assert types == ["Input", "Conv2d", "LIF", "SumPool2d", "IF", "Flatten", "Affine", "LIF", "Affine", "I", "Output"]
    shapes = {k: (list(n.input_type["input"]), list(n.output_type["output"])) for k, n in graph.nodes.items()}
    assert shapes["input"] == ([2, 8, 8], [2, 8, 8])
    assert shapes["conv1"] == ([2, 8, 8], [4, 8, 8]) and shapes["conv1_neuron"][1] == [4, 8, 8]
    assert shapes["pool2"] == ([4, 8, 8], [4, 4, 4])
    assert shapes["dense3_flatten"] == ([4, 4, 4], [64]) and shapes["dense3"] == ([64], [12])
    assert shapes["dense4_readout"] == ([6], [6]) and shapes["output"] == ([6], [6])

    conv, layer = graph.nodes["conv1"], net.layers[0]
    assert conv.weight.dtype == np.int64 and np.array_equal(conv.weight, layer.weight)
    assert np.array_equal(conv.bias, layer.bias)
    assert tuple(conv.stride) == (1, 1) and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1)
    assert conv.groups == 1
    pool = graph.nodes["pool2"]
    assert list(pool.kernel_size) == [2, 2] and list(pool.stride) == [2, 2] and list(pool.padding) == [0, 0]
    assert graph.nodes["dense3_flatten"].start_dim == 0 and graph.nodes["dense3_flatten"].end_dim == -1

    lif, p = graph.nodes["conv1_neuron"], layer.neuron
    assert lif.v_threshold.shape == (4, 8, 8) and np.all(lif.v_threshold == p.theta_int)
    assert np.all(lif.tau == 4096 / 410) and np.all(lif.r == 4096 / 410)
    assert np.all(lif.v_leak == 0) and np.all(lif.v_reset == 0)
    assert lif.metadata["theta_int"] == p.theta_int and lif.metadata["delta"] == 410
    assert lif.metadata["smax"] == p.smax and lif.metadata["acc_bits"] == p.acc_bits == 20
    assert lif.metadata["accumulator_limit"] == 2**19 - 1 and lif.metadata["reset"] == "subtractive"
    pool_if = graph.nodes["pool2_neuron"]  # pooling neurons never leak: IF
    assert np.all(pool_if.r == 1) and np.all(pool_if.v_threshold == net.layers[1].neuron.theta_int)
    readout = graph.nodes["dense4_readout"]
    assert np.all(readout.r == 1) and readout.metadata["neuron"] == "readout"
    assert "after the last of the T = 2 steps" in readout.metadata["output"]

    meta = graph.metadata
    assert meta["format"] == NIR_FORMAT and meta["timesteps"] == 2 and meta["dt"] == 1.0 and meta["n_classes"] == 6
    assert "counts 0..smax" in meta["spikes"] and "'dense4_readout'" in meta["logits"]
    enc = graph.nodes["input"].metadata
    assert enc["smax"] == 15 and enc["rule"].startswith("count = (p * smax + 127) // 255")


def test_no_leak_gives_if_and_zero_bias_gives_linear():
    graph = to_nir(_strided_network(0))
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Conv2d", "IF", "Flatten", "Linear", "IF", "Affine", "I", "Output"]
    assert tuple(graph.nodes["conv1"].stride) == (2, 2) and list(graph.nodes["conv1"].output_type["output"]) == [3, 4, 4]
    leak_all = to_nir(_strided_network(4096)).nodes["conv1_neuron"]
    assert isinstance(leak_all, nir.LIF) and np.all(leak_all.tau == 1.0)


def test_dense_first_layer_is_flattened():
    graph = to_nir(_arch_network("dense-only", 0))
    assert list(graph.nodes) == ["input", "dense1_flatten", "dense1", "dense1_neuron", "dense2", "dense2_readout",
                                 "output"]
    assert list(graph.nodes["dense1_flatten"].output_type["output"]) == [25]  # dense after dense: no flatten


def test_awkward_layer_names_get_unique_valid_keys(tmp_path):
    net = _renamed(_arch_network("conv-pad-pool-dense", 0), ["conv/1", "conv_1", "2 pool", "output"])
    keys = node_keys(net)
    assert keys == ["conv_1", "conv_1_2", "l2_pool", "output_4"]
    back = nir.read(write_nir(net, tmp_path / "odd.nir"))
    assert {n.metadata.get("mtsnn_layer") for n in back.nodes.values()} >= {"conv/1", "conv_1", "2 pool", "output"}
    images = random_images(np.random.default_rng(1), 4, net.encoder.shape)
    assert np.array_equal(interpret(back, images), run_reference(net, images).logits)


# --------------------------------------------------------------------------- file round trip


@pytest.mark.parametrize("case", ["conv-pad-pool-dense-delta410", "pool-first-conv-dense-delta0", "strided-linear"])
def test_round_trip_preserves_everything(tmp_path, case):
    net = CASES[case]()
    graph = to_nir(net)
    path = write_nir(net, tmp_path / "net.nir")
    back = nir.read(path)
    assert set(back.nodes) == set(graph.nodes) and back.edges == graph.edges
    assert _normalize(back.metadata) == _normalize(graph.metadata)
    for key, node in graph.nodes.items():
        other = back.nodes[key]
        assert type(other) is type(node), key
        assert _normalize(other.metadata) == _normalize(node.metadata), key
        for name in ARRAY_FIELDS:
            if hasattr(node, name):
                a, b = np.asarray(getattr(node, name)), np.asarray(getattr(other, name))
                assert a.shape == b.shape and np.array_equal(a, b), (key, name)
                if name in ("weight", "bias"):
                    assert a.dtype == b.dtype == np.int64 and a.tobytes() == b.tobytes(), (key, name)
        assert np.array_equal(other.input_type["input"], node.input_type["input"]), key
        assert np.array_equal(other.output_type["output"], node.output_type["output"]), key
    for layer in net.layers:  # every integer array of the network, bit for bit
        key = node_keys(net)[net.layers.index(layer)]
        if hasattr(layer, "weight"):
            assert back.nodes[key].weight.tobytes() == layer.weight.tobytes()
            if isinstance(back.nodes[key], (nir.Affine, nir.Conv2d)):
                assert back.nodes[key].bias.tobytes() == layer.bias.tobytes()
            else:
                assert not np.any(layer.bias)
    assert back.metadata["provenance_json"].startswith("{")


def test_file_is_deterministic_and_written_atomically(tmp_path, monkeypatch):
    net = _strided_network(0)
    a, b = write_nir(net, tmp_path / "a.nir"), write_nir(net, tmp_path / "b.nir")
    assert a.read_bytes() == b.read_bytes()
    before = a.read_bytes()

    def broken(filename, graph):
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        write_nir(net, a)
    assert a.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nir", "b.nir"]  # no temporary left behind


# --------------------------------------------------------------------------- the file carries everything


@pytest.mark.parametrize("case", sorted(CASES))
def test_interpreter_on_the_file_reproduces_reference_logits(tmp_path, case):
    net = CASES[case]()
    images = random_images(np.random.default_rng(11), 12, net.encoder.shape)
    reference = run_reference(net, images)
    graph = nir.read(write_nir(net, tmp_path / "net.nir"))
    logits = interpret(graph, images)
    assert logits.shape == reference.logits.shape
    assert np.array_equal(logits, reference.logits)
    if case == "saturating":
        assert sum(reference.saturations.values()) > 0
    if case == "smax-clipping":
        assert sum(reference.smax_clipped.values()) > 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [None, "net.core.json", 3])
def test_refuses_what_is_not_a_network(bad):
    with pytest.raises(ExportError, match="expected an IntegerNetwork, found"):
        to_nir(bad)


def test_refuses_a_layer_record_instead_of_a_network(tmp_path):
    net = _strided_network(0)
    with pytest.raises(ExportError, match="expected an IntegerNetwork, found DenseLayer"):
        write_nir(net.layers[-1], tmp_path / "new" / "x.nir")
    assert not (tmp_path / "new").exists()  # refused before anything touched the file system


def test_refuses_unwritable_paths(tmp_path):
    net = _strided_network(0)
    with pytest.raises(InputError, match="expected a file path, found a directory"):
        write_nir(net, tmp_path)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(InputError, match="expected a folder at"):
        write_nir(net, tmp_path / "plain" / "net.nir")


def test_missing_nir_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ExportError, match=r"needs the 'nir' package \(pip install nir==1.0.6\)"):
        nir_model.to_nir(_strided_network(0))


def test_unknown_layer_type_is_refused():
    net = _strided_network(0)

    @dataclasses.dataclass(frozen=True, eq=False)
    class OddLayer:  # quacks like a layer, but NIR export knows conv, pool and dense only
        name: str = "odd"
        readout: bool = False

    object.__setattr__(net, "layers", (OddLayer(),) + net.layers[1:])  # past IntegerNetwork's own checks
    with pytest.raises(ExportError, match="layer odd: expected a conv, pool or dense layer, found OddLayer"):
        to_nir(net)


def test_export_writes_the_nir_file_into_the_manifest(trained_model, tmp_path):
    """``export_checkpoint(nir=True)`` adds MODEL.nir to the export set (digest in the manifest);
    an export without it removes a stale one, and keeps the export id it always had."""
    import json as _json

    from mtsnn.export.pipeline import export_checkpoint

    plain = export_checkpoint(trained_model, out=tmp_path / "a", samples=10)
    with_nir = export_checkpoint(trained_model, out=tmp_path / "b", samples=10, nir=True)
    nir_path = with_nir.paths.nir
    assert nir_path.is_file() and nir_path in with_nir.files
    manifest = _json.loads(with_nir.paths.manifest.read_text())
    assert nir_path.name in manifest["files"] and with_nir.export_id != plain.export_id
    graph = nir.read(nir_path)
    assert "input" in graph.nodes and "output" in graph.nodes
    again = export_checkpoint(trained_model, out=tmp_path / "b", samples=10)  # same folder, no NIR now
    assert not nir_path.exists() and again.export_id == plain.export_id


def test_the_command_line_exports_nir(trained_model, tmp_path, capsys):
    from mtsnn.cli import export_main

    assert export_main([str(trained_model), "-o", str(tmp_path / "e"), "--samples", "10", "--nir"]) == 0
    written = list((tmp_path / "e").glob("*.nir"))
    assert len(written) == 1 and str(written[0]) in capsys.readouterr().out
    assert nir.read(written[0]).nodes
