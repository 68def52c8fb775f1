"""Tests for export.onnx_model: the ONNX graph gives exactly the reference's integers.

Every test compares against ``hw_model.reference.run_reference`` (logits AND per-layer spikes) on
seeded random or hand-built integer networks, and asserts that the case it is about (float64
routing, saturation, Smax clipping, ties ...) really occurs.
"""

from __future__ import annotations

import json
import os
import zlib

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mtsnn.export.onnx_model as onnx_model
from mtsnn.export.onnx_model import (
    INPUT_NAME,
    LOGITS_NAME,
    add_spike_outputs,
    build_onnx,
    make_session,
    run_onnx,
    save_onnx,
    synapse_dtypes,
)
from mtsnn.hw_model.network import ConvLayer, DenseLayer, InputEncoder, IntegerNetwork, NeuronParams
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.synapse import FLOAT32_EXACT_LIMIT, partial_sum_bound
from mtsnn.hw_model.synthetic import random_images, random_network

ARCHS = {
    "conv-pad-pool-dense": ((2, 8, 8), (("conv", 4, 3, 1), ("pool", 2), ("dense", 12))),
    "conv-conv-pool-crop": ((1, 9, 9), (("conv", 3, 3, 0), ("conv", 4, 3, 1), ("pool", 2))),
    "pool-first-conv-dense": ((2, 10, 10), (("pool", 3), ("conv", 5, 2, 1), ("dense", 8))),
    "dense-only": ((1, 5, 5), (("dense", 10),)),
    "readout-only": ((3, 4, 4), ()),
}
# (weight bits, smax, delta, T, acc_bits)
PARAMS = [
    (2, 1, 0, 1, 8),
    (4, 3, 1, 2, 12),
    (8, 15, 410, 3, 20),
    (12, 31, 4095, 4, 32),
    (16, 7, 4096, 2, 24),
    (6, 31, 410, 4, 8),
    (16, 31, 1, 3, 16),
]


# --------------------------------------------------------------------------- helpers


def images_with_extremes(rng, n: int, shape: tuple) -> np.ndarray:
    """Random uint8 images plus an all-0 and an all-255 image."""
    extremes = np.stack([np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)])
    return np.concatenate([random_images(rng, n, shape), extremes])


def assert_matches_reference(net, images, **build_options):
    """ONNX logits and spikes equal the reference's; returns the reference result."""
    model = build_onnx(net, spike_outputs=True, **build_options)
    logits, spikes = run_onnx(model, images, spikes=True)
    ref = run_reference(net, images)
    assert logits.dtype == np.int64 and logits.shape == (len(images), net.n_classes)
    np.testing.assert_array_equal(logits, ref.logits)
    assert spikes.keys() == ref.spikes.keys()
    for name, counts in spikes.items():
        assert counts.dtype == np.uint8
        np.testing.assert_array_equal(counts, ref.spikes[name], err_msg=name)
    np.testing.assert_array_equal(np.argmax(logits, axis=1), ref.predictions)
    return ref


def neuron(theta=1, delta=0, smax=31, acc_bits=32) -> NeuronParams:
    return NeuronParams(theta_int=theta, delta=delta, smax=smax, acc_bits=acc_bits)


def dense(name, in_shape, weight, bias, params, readout=False, bits=16) -> DenseLayer:
    return DenseLayer(name=name, in_shape=in_shape, neuron=params, readout=readout,
                      weight=np.asarray(weight), bias=np.asarray(bias), weight_bits=bits)


def conv(name, in_shape, weight, bias, params, *, stride=1, padding=0, readout=False, bits=16) -> ConvLayer:
    return ConvLayer(name=name, in_shape=in_shape, neuron=params, readout=readout, weight=np.asarray(weight),
                     bias=np.asarray(bias), stride=stride, padding=padding, weight_bits=bits)


def network(shape, layers, smax=31, timesteps=1) -> IntegerNetwork:
    n_classes = int(np.prod(layers[-1].out_shape))
    return IntegerNetwork(encoder=InputEncoder(shape=shape, smax=smax), layers=tuple(layers),
                          timesteps=timesteps, n_classes=n_classes)


def op_types(model) -> list[str]:
    return [node.op_type for node in model.graph.node]


# --------------------------------------------------------------------------- model structure


@pytest.fixture(scope="module")
def small_net():
    return random_network(np.random.default_rng(1), (2, 8, 8), ARCHS["conv-pad-pool-dense"][1], 7, timesteps=3)


def test_model_passes_checker_and_has_the_documented_interface(small_net):
    model = build_onnx(small_net)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == INPUT_NAME and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 2, 8, 8]
    assert out.name == LOGITS_NAME and out.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 7]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["mtsnn_format"] == "mtsnn-onnx" and meta["timesteps"] == "3" and meta["n_classes"] == "7"
    assert json.loads(meta["spiking_layers"]) == {"conv1": [4, 8, 8], "pool2": [4, 4, 4], "dense3": [12]}
    assert "bit-exact" in model.graph.doc_string and "conv1" in model.graph.doc_string


def test_names_are_deterministic(small_net):
    first, second = build_onnx(small_net), build_onnx(small_net)
    assert first.SerializeToString() == second.SerializeToString()
    initializers = {init.name for init in first.graph.initializer}
    assert {"conv1_W", "conv1_B", "dense3_W", "dense3_B", "dense4_W", "dense4_B", "pool2_W"} <= initializers
    outputs = {name for node in first.graph.node for name in node.output}
    assert {"t0_conv1_U", "t0_conv1_S", "t1_conv1_V", "t2_dense3_S", "t2_dense4_V", "encoder_counts"} <= outputs
    assert all(node.name for node in first.graph.node)


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch(small_net, batch):
    images = random_images(np.random.default_rng(batch), batch, (2, 8, 8))
    logits, spikes = run_onnx(build_onnx(small_net), images)
    assert logits.shape == (batch, 7) and logits.dtype == np.int64 and spikes == {}
    np.testing.assert_array_equal(logits, run_reference(small_net, images).logits)


def test_run_onnx_batches_and_empty_input(small_net):
    images = random_images(np.random.default_rng(2), 11, (2, 8, 8))
    session = make_session(build_onnx(small_net), spikes=True)
    logits, spikes = run_onnx(session, images, spikes=True, batch_size=4)
    ref = run_reference(small_net, images)
    np.testing.assert_array_equal(logits, ref.logits)
    np.testing.assert_array_equal(spikes["pool2"], ref.spikes["pool2"])
    empty_logits, empty_spikes = run_onnx(session, images[:0], spikes=True)
    assert empty_logits.shape == (0, 7) and empty_logits.dtype == np.int64
    assert empty_spikes["conv1"].shape == (3, 0, 4, 8, 8) and empty_spikes["conv1"].dtype == np.uint8


def test_run_onnx_rejects_bad_images_and_missing_spike_outputs(small_net):
    model = build_onnx(small_net)
    with pytest.raises(ValueError, match="uint8"):
        run_onnx(model, np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        run_onnx(model, np.zeros((1, 2, 8, 7), np.uint8))
    with pytest.raises(ValueError, match="spike"):
        run_onnx(make_session(model), np.zeros((1, 2, 8, 8), np.uint8), spikes=True)


def test_add_spike_outputs_exposes_every_spiking_layer(small_net, tmp_path):
    model = build_onnx(small_net)
    with_spikes = add_spike_outputs(model)
    onnx.checker.check_model(with_spikes, full_check=True)
    assert [o.name for o in model.graph.output] == [LOGITS_NAME]  # the input model is untouched
    names = [o.name for o in with_spikes.graph.output]
    assert names == [LOGITS_NAME, "spikes_conv1", "spikes_pool2", "spikes_dense3"]
    spike_out = with_spikes.graph.output[1].type.tensor_type
    assert spike_out.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in spike_out.shape.dim] == [3, "N", 4, 8, 8]
    assert add_spike_outputs(with_spikes).SerializeToString() == with_spikes.SerializeToString()
    assert build_onnx(small_net, spike_outputs=True).SerializeToString() == with_spikes.SerializeToString()
    # validation path: the saved plain file, spikes added on load
    path = tmp_path / "model.onnx"
    save_onnx(model, path)
    images = random_images(np.random.default_rng(3), 5, (2, 8, 8))
    logits, spikes = run_onnx(path, images, spikes=True)
    ref = run_reference(small_net, images)
    np.testing.assert_array_equal(logits, ref.logits)
    for name in ref.spikes:
        np.testing.assert_array_equal(spikes[name], ref.spikes[name])


def test_add_spike_outputs_refuses_foreign_models():
    graph = onnx.helper.make_graph([], "g", [], [])
    with pytest.raises(ValueError, match="mtsnn"):
        add_spike_outputs(onnx.helper.make_model(graph))


def test_save_onnx_is_atomic(small_net, tmp_path, monkeypatch):
    model = build_onnx(small_net)
    path = tmp_path / "out" / "model.onnx"
    renames = []
    real_replace = os.replace

    def spy_replace(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        assert not os.path.exists(dst)  # nothing at the target until the rename
        assert onnx.load(os.fspath(src)).SerializeToString() == model.SerializeToString()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    save_onnx(model, path)
    assert len(renames) == 1
    src, dst = renames[0]
    assert dst == os.fspath(path) and os.path.dirname(src) == os.fspath(path.parent)
    assert onnx.load(os.fspath(path)).SerializeToString() == model.SerializeToString()
    assert sorted(os.listdir(path.parent)) == ["model.onnx"]  # no temporary file left

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        save_onnx(build_onnx(small_net, spike_outputs=True), path)
    assert onnx.load(os.fspath(path)).SerializeToString() == model.SerializeToString()
    assert sorted(os.listdir(path.parent)) == ["model.onnx"]


# --------------------------------------------------------------------------- bit-exactness


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "bits{}-smax{}-delta{}-T{}-acc{}".format(*p))
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_bit_exact_on_random_networks(arch, params):
    bits, smax, delta, timesteps, acc_bits = params
    shape, layers = ARCHS[arch]
    rng = np.random.default_rng(zlib.crc32(repr((arch, params)).encode()))
    net = random_network(rng, shape, layers, 6, timesteps=timesteps, smax=smax, weight_bits=bits,
                         acc_bits=acc_bits, delta=delta)
    images = images_with_extremes(rng, 9, shape)
    assert_matches_reference(net, images)


@pytest.mark.parametrize("arch", ["conv-pad-pool-dense", "conv-conv-pool-crop"])
def test_stacked_steps_give_the_same_integers(arch):
    shape, layers = ARCHS[arch]
    rng = np.random.default_rng(5)
    net = random_network(rng, shape, layers, 5, timesteps=4, acc_bits=14, delta=410)
    images = images_with_extremes(rng, 6, shape)
    assert "Split" in op_types(build_onnx(net, stack_steps=True))
    assert "Split" not in op_types(build_onnx(net))
    assert_matches_reference(net, images, stack_steps=True)


@settings(max_examples=25, deadline=None)
@given(
    arch=st.sampled_from(sorted(ARCHS)),
    bits=st.integers(2, 16),
    smax=st.integers(1, 31),
    delta=st.one_of(st.sampled_from([0, 1, 410, 4095, 4096]), st.integers(0, 4096)),
    timesteps=st.integers(1, 4),
    acc_bits=st.integers(8, 32),
    stack_steps=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_bit_exact_property(arch, bits, smax, delta, timesteps, acc_bits, stack_steps, seed):
    shape, layers = ARCHS[arch]
    rng = np.random.default_rng(seed)
    net = random_network(rng, shape, layers, 4, timesteps=timesteps, smax=smax, weight_bits=bits,
                         acc_bits=acc_bits, delta=delta, theta_scale=float(rng.uniform(0.05, 1.0)))
    assert_matches_reference(net, images_with_extremes(rng, 5, shape), stack_steps=stack_steps)


# --------------------------------------------------------------------------- synapse dtypes


def test_large_fan_in_routes_to_float64_and_stays_exact():
    rng = np.random.default_rng(7)
    net = random_network(rng, (8, 8, 8), (("conv", 6, 3, 1), ("dense", 20)), 5, timesteps=3, smax=31,
                         weight_bits=16, acc_bits=32, delta=410)
    assert partial_sum_bound(net.layers[0], 31) > FLOAT32_EXACT_LIMIT  # 72 x 32767 x 31 in reach
    assert partial_sum_bound(net.layers[1], 31) > FLOAT32_EXACT_LIMIT
    dtypes = synapse_dtypes(net)
    assert dtypes["conv1"] == np.float64 and dtypes["dense2"] == np.float64
    model = build_onnx(net)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["synapse_dtypes"])["conv1"] == "float64"
    conv_inputs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert all(not node.name.startswith(("conv1", "t0_conv1")) for node in conv_inputs)  # im2col instead
    assert "Gather" in op_types(model) and "MatMul" in op_types(model)
    images = images_with_extremes(rng, 12, (8, 8, 8))
    ref = assert_matches_reference(net, images)
    assert any(counts.any() for counts in ref.spikes.values())


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (3, 2)])
def test_float64_im2col_conv_with_stride_and_padding(stride, padding):
    rng = np.random.default_rng(stride)
    weight = rng.choice([-32767, 32767], size=(3, 4, 3, 3))
    layer = conv("conv1", (4, 7, 7), weight, rng.integers(-1000, 1000, 3), neuron(), stride=stride,
                 padding=padding, readout=True)
    net = network((4, 7, 7), [layer], timesteps=2)
    assert synapse_dtypes(net)["conv1"] == np.float64
    assert_matches_reference(net, images_with_extremes(rng, 6, (4, 7, 7)))


def bound_exact_bias(weight: np.ndarray, smax: int) -> int:
    """The bias that puts the partial-sum bound of a single-output layer exactly at 2**24."""
    return FLOAT32_EXACT_LIMIT - smax * int(np.abs(weight).sum())


@pytest.mark.parametrize("signs", ["all-max", "random-signs"])
def test_float32_conv_is_exact_at_the_bound(signs):
    """All-max 16-bit weights, smax 31, bias making the bound exactly 2**24: float32, exact."""
    rng = np.random.default_rng(11)
    weight = np.full((1, 4, 2, 2), 32767)
    if signs == "random-signs":
        weight = weight * rng.choice([-1, 1], size=weight.shape)
    bias = bound_exact_bias(weight, 31)
    layer = conv("conv1", (4, 6, 6), weight, [bias], neuron(), padding=1, readout=True)
    net = network((4, 6, 6), [layer])
    assert partial_sum_bound(layer, 31) == FLOAT32_EXACT_LIMIT
    assert synapse_dtypes(net)["conv1"] == np.float32
    images = images_with_extremes(rng, 20, (4, 6, 6))
    assert_matches_reference(net, images)
    if signs == "all-max":  # an all-255 image reaches the bound exactly in the interior
        logits, _ = run_onnx(build_onnx(net), images[-1:])
        assert logits.max() == FLOAT32_EXACT_LIMIT


def test_float32_conv_with_a_long_reduction_is_exact_at_the_bound():
    """8-bit all-max weights, fan-in 4096 (C=64, k=8): onnxruntime's blocked GEMM path."""
    rng = np.random.default_rng(12)
    weight = np.full((16, 64, 8, 8), 127)
    weight[1::2] *= -1
    bias = np.full(16, bound_exact_bias(weight[:1], 31))
    layer = conv("conv1", (64, 10, 10), weight, bias, neuron(), readout=True, bits=8)
    net = network((64, 10, 10), [layer])
    assert partial_sum_bound(layer, 31) == FLOAT32_EXACT_LIMIT
    assert synapse_dtypes(net)["conv1"] == np.float32
    images = images_with_extremes(rng, 6, (64, 10, 10))
    ref = assert_matches_reference(net, images)
    assert np.abs(ref.logits).max() == FLOAT32_EXACT_LIMIT


def test_bound_one_above_float32_routes_to_float64():
    weight = np.full((1, 16), 32767)
    layer = dense("dense1", (1, 4, 4), weight, [bound_exact_bias(weight, 31) + 1], neuron(), readout=True)
    net = network((1, 4, 4), [layer])
    assert synapse_dtypes(net)["dense1"] == np.float64
    images = np.full((1, 1, 4, 4), 255, np.uint8)
    logits, _ = run_onnx(build_onnx(net), images)
    assert logits[0, 0] == FLOAT32_EXACT_LIMIT + 1  # odd: not representable in float32


def test_bound_beyond_float64_is_refused(small_net, monkeypatch):
    monkeypatch.setattr(onnx_model, "partial_sum_bound", lambda layer, smax: 2**53 + 1)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        build_onnx(small_net)


# --------------------------------------------------------------------------- neuron edge cases


def two_layer_dense(bias, params, timesteps, weight=None, in_shape=(1, 1, 1)):
    """Hidden dense layer (weights 0 unless given) + identity readout of its spikes."""
    n = len(bias)
    fan_in = int(np.prod(in_shape))
    weight = np.zeros((n, fan_in), np.int64) if weight is None else weight
    hidden = dense("hidden", in_shape, weight, bias, params)
    readout = dense("out", (n,), np.eye(n, dtype=np.int64), np.zeros(n, np.int64), neuron(), readout=True)
    return network(in_shape, [hidden, readout], timesteps=timesteps)


@pytest.mark.parametrize("delta", [0, 410, 4096])
def test_membrane_exactly_at_multiples_of_theta(delta):
    theta, smax = 7, 3
    bias = np.array([-15, -14, -8, -7, -1, 0, 1, 6, 7, 8, 13, 14, 15, 20, 21, 22, 28, 29, 100])
    net = two_layer_dense(bias, neuron(theta=theta, delta=delta, smax=smax, acc_bits=16), timesteps=4)
    images = np.zeros((1, 1, 1, 1), np.uint8)  # counts 0: I = bias at every step
    ref = assert_matches_reference(net, images)
    first_step = ref.spikes["hidden"][0, 0]
    np.testing.assert_array_equal(first_step, np.clip(np.floor_divide(bias, theta), 0, smax))
    assert (bias % theta == 0).sum() >= 6 and (first_step[bias == 21] == 3).all()


@pytest.mark.parametrize("theta", [49, 103, 187])
def test_multiples_of_theta_where_a_reciprocal_would_round_down(theta):
    """floor(k*theta * (1/theta)) < k in float64 for these theta: only a true Div is exact."""
    smax = 31
    bias = np.arange(smax + 1) * theta
    assert (np.floor(bias * (1.0 / theta)) < np.arange(smax + 1)).any()
    net = two_layer_dense(bias, neuron(theta=theta, delta=0, smax=smax, acc_bits=20), timesteps=2)
    ref = assert_matches_reference(net, np.zeros((1, 1, 1, 1), np.uint8))
    np.testing.assert_array_equal(ref.spikes["hidden"][0, 0], np.arange(smax + 1))


def test_negative_membranes_leak_toward_zero():
    """Negative biases and weights drive V below 0 at some steps and above at others; the leak
    truncates toward zero (floor would differ by one on every negative fraction)."""
    rng = np.random.default_rng(13)
    first = dense("hidden1", (4, 1, 1), rng.integers(-100, 101, size=(16, 4)), rng.integers(-200, 200, 16),
                  neuron(theta=37, delta=410, smax=3, acc_bits=12))
    second = dense("hidden2", (16,), rng.integers(-3, 4, size=(24, 16)), -rng.integers(0, 6, size=24),
                   neuron(theta=2, delta=1229, smax=2, acc_bits=12))  # c = 2867/4096: many fractions
    readout = dense("out", (24,), np.eye(24, dtype=np.int64), np.zeros(24, np.int64), neuron(), readout=True)
    net = network((4, 1, 1), [first, second, readout], timesteps=6)
    ref = assert_matches_reference(net, images_with_extremes(rng, 40, (4, 1, 1)))
    varying = ref.spikes["hidden2"].min(axis=0) != ref.spikes["hidden2"].max(axis=0)
    assert varying.any()


def test_accumulator_saturation():
    rng = np.random.default_rng(14)
    net = random_network(rng, (2, 8, 8), (("conv", 4, 3, 1), ("pool", 2), ("dense", 12)), 5, timesteps=4,
                         weight_bits=12, acc_bits=8, smax=31, delta=0, theta_scale=2.0)
    ref = assert_matches_reference(net, images_with_extremes(rng, 8, (2, 8, 8)))
    assert ref.saturations["conv1"] > 0 and ref.saturations["dense4"] > 0


def test_smax_clipping():
    bias = np.array([5, 50, 500, 5000, -5000])
    net = two_layer_dense(bias, neuron(theta=3, delta=410, smax=4, acc_bits=16), timesteps=3)
    ref = assert_matches_reference(net, np.zeros((2, 1, 1, 1), np.uint8))
    assert (ref.spikes["hidden"][:, :, 1:4] == 4).all()  # U / theta far above Smax
    assert (ref.spikes["hidden"][:, :, 4] == 0).all()


def test_tied_logits_take_the_first_index():
    rng = np.random.default_rng(15)
    hidden_w = rng.integers(-20, 21, size=(6, 9))
    hidden = dense("hidden", (1, 3, 3), hidden_w, rng.integers(-50, 50, 6), neuron(theta=40, smax=5))
    readout_w = np.repeat(rng.integers(-5, 6, size=(2, 6)), [3, 2], axis=0)  # rows 0-2 equal, 3-4 equal
    readout = dense("out", (6,), readout_w, np.zeros(5, np.int64), neuron(), readout=True)
    net = network((1, 3, 3), [hidden, readout], timesteps=3)
    images = images_with_extremes(rng, 40, (1, 3, 3))
    ref = assert_matches_reference(net, images)
    logits, _ = run_onnx(build_onnx(net), images)
    assert (logits[:, 0] == logits[:, 1]).all()
    winners = np.argmax(logits, axis=1)
    assert set(winners) <= {0, 3}  # ties resolved to the first index of each equal group
    np.testing.assert_array_equal(winners, ref.predictions)
