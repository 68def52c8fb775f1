"""Synaptic input and the integer reference against naive, independent re-implementations.

The naive versions here are deliberately written from DESIGN.md section 2 alone (loops, einsum
on int64, Python ints and ``fractions.Fraction`` for the leak), never calling hw_model.neuron or
hw_model.synapse, so that a shared mistake cannot hide.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import mtsnn.hw_model.synapse as synapse
from mtsnn.hw_model.network import ConvLayer, DenseLayer, InputEncoder, IntegerNetwork, NeuronParams, PoolLayer
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.synapse import (
    FLOAT32_EXACT_LIMIT,
    FLOAT64_EXACT_LIMIT,
    exact_gemm_dtype,
    partial_sum_bound,
    synaptic_input,
)
from mtsnn.hw_model.synthetic import random_images, random_network

NEURON = NeuronParams(theta_int=100, delta=410, smax=15, acc_bits=32)


# ----------------------------------------------------------------------------- naive synapses


def naive_conv(x, weight, bias, stride, padding):
    """(B, C, H, W) int -> (B, O, OH, OW) int64 by explicit windows and an int64 einsum."""
    b, c, h, w = x.shape
    o, _, k, _ = weight.shape
    padded = np.zeros((b, c, h + 2 * padding, w + 2 * padding), dtype=np.int64)
    padded[:, :, padding : padding + h, padding : padding + w] = x
    oh = (h + 2 * padding - k) // stride + 1
    ow = (w + 2 * padding - k) // stride + 1
    out = np.zeros((b, o, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = padded[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, :, i, j] = np.einsum("bcuv,ocuv->bo", patch, weight.astype(np.int64)) + bias
    return out


def naive_pool(x, k):
    """Sum over k x k windows, stride k; rows/columns that do not fill a window are dropped."""
    b, c, h, w = x.shape
    out = np.zeros((b, c, h // k, w // k), dtype=np.int64)
    for i in range(h // k):
        for j in range(w // k):
            out[:, :, i, j] = x[:, :, i * k : (i + 1) * k, j * k : (j + 1) * k].astype(np.int64).sum(axis=(2, 3))
    return out


def naive_dense(x, weight, bias):
    flat = x.reshape(x.shape[0], -1).astype(np.int64)
    return np.einsum("bn,on->bo", flat, weight.astype(np.int64)) + bias


def naive(layer, x):
    if isinstance(layer, PoolLayer):
        return naive_pool(x, layer.kernel)
    if isinstance(layer, ConvLayer):
        return naive_conv(x, layer.weight, layer.bias, layer.stride, layer.padding)
    return naive_dense(x, layer.weight, layer.bias)


def random_conv(rng, in_shape, out_channels, kernel, stride, padding, bits=8):
    limit = 2 ** (bits - 1) - 1
    weight = rng.integers(-limit, limit + 1, size=(out_channels, in_shape[0], kernel, kernel))
    bias = rng.integers(-1000, 1001, size=out_channels)
    return ConvLayer(name="c", in_shape=in_shape, neuron=NEURON, readout=False, weight=weight, bias=bias,
                     stride=stride, padding=padding, weight_bits=bits)


CONV_CONFIGS = [
    # in_shape, out_channels, kernel, stride, padding
    ((1, 8, 8), 3, 3, 1, 0),
    ((1, 8, 8), 3, 3, 1, 1),
    ((2, 7, 9), 4, 3, 2, 1),  # non-square input, stride 2 with a ragged edge
    ((3, 10, 6), 2, 5, 3, 4),  # padding = kernel - 1
    ((2, 5, 5), 5, 1, 1, 0),  # 1x1 conv
    ((1, 4, 4), 2, 4, 1, 0),  # kernel covers the whole input: 1x1 output
]


@pytest.mark.parametrize("config", CONV_CONFIGS)
@pytest.mark.parametrize("bits, smax_in", [(8, 15), (16, 31)])
def test_conv_matches_naive(config, bits, smax_in):
    in_shape, o, k, stride, padding = config
    rng = np.random.default_rng(CONV_CONFIGS.index(config) * 100 + bits)
    layer = random_conv(rng, in_shape, o, k, stride, padding, bits)
    x = rng.integers(0, smax_in + 1, size=(5,) + in_shape).astype(np.uint8)
    got = synaptic_input(layer, x, smax_in)
    assert got.dtype == np.int64
    assert got.shape == (5,) + layer.out_shape
    np.testing.assert_array_equal(got, naive(layer, x))


@pytest.mark.parametrize("in_shape, k", [((2, 8, 8), 2), ((3, 7, 9), 2), ((1, 9, 10), 3), ((2, 5, 5), 5), ((1, 3, 3), 1)])
def test_pool_matches_naive_with_floor_crop(in_shape, k):
    rng = np.random.default_rng(7)
    layer = PoolLayer(name="p", in_shape=in_shape, neuron=NEURON, readout=False, kernel=k)
    x = rng.integers(0, 32, size=(4,) + in_shape).astype(np.uint8)
    got = synaptic_input(layer, x, 31)
    assert got.shape == (4,) + layer.out_shape == (4, in_shape[0], in_shape[1] // k, in_shape[2] // k)
    np.testing.assert_array_equal(got, naive(layer, x))


def test_pool_golden_by_hand():
    # 1 channel 3x3, k = 2: only the top-left 2x2 window fits (floor crop drops row 2 and column 2)
    layer = PoolLayer(name="p", in_shape=(1, 3, 3), neuron=NEURON, readout=False, kernel=2)
    x = np.array([[[[1, 2, 100], [3, 4, 100], [100, 100, 100]]]], dtype=np.uint8)
    assert synaptic_input(layer, x, 100).tolist() == [[[[10]]]]  # 1 + 2 + 3 + 4


def test_conv_golden_by_hand():
    # weight [[1, -1], [2, 0]], bias 5, padding 1, stride 2 on x = [[1, 2], [3, 4]]
    # padded 4x4: rows [0 0 0 0], [0 1 2 0], [0 3 4 0], [0 0 0 0]; windows at (0,0), (0,2), (2,0), (2,2)
    # (0,0): [[0,0],[0,1]] -> 0*1 + 0*-1 + 0*2 + 1*0 = 0 + 5 = 5
    # (0,2): [[0,0],[2,0]] -> 2*2 = 4 + 5 = 9
    # (2,0): [[0,3],[0,0]] -> 3*-1 = -3 + 5 = 2
    # (2,2): [[4,0],[0,0]] -> 4*1 = 4 + 5 = 9
    layer = ConvLayer(name="c", in_shape=(1, 2, 2), neuron=NEURON, readout=False, weight=[[[[1, -1], [2, 0]]]],
                      bias=[5], stride=2, padding=1, weight_bits=8)
    x = np.array([[[[1, 2], [3, 4]]]], dtype=np.uint8)
    assert synaptic_input(layer, x, 4).tolist() == [[[[5, 9], [2, 9]]]]


@pytest.mark.parametrize("in_shape", [(17,), (2, 4, 4), (3, 1, 5)])
def test_dense_matches_naive(in_shape):
    rng = np.random.default_rng(11)
    n = math.prod(in_shape)
    weight = rng.integers(-127, 128, size=(6, n))
    bias = rng.integers(-500, 501, size=6)
    layer = DenseLayer(name="d", in_shape=in_shape, neuron=NEURON, readout=False, weight=weight, bias=bias)
    x = rng.integers(0, 16, size=(9,) + in_shape).astype(np.uint8)
    got = synaptic_input(layer, x, 15)
    assert got.shape == (9, 6)
    np.testing.assert_array_equal(got, naive(layer, x))


@pytest.mark.parametrize("forced", [np.float32, np.float64, np.int64])
def test_every_gemm_path_matches_naive(monkeypatch, forced):
    """Force each GEMM dtype (int64 cannot be reached with valid layers: bounds stay < 2**53)."""
    rng = np.random.default_rng(5)
    layer = random_conv(rng, (2, 6, 6), 3, 3, 1, 1)
    dense = DenseLayer(name="d", in_shape=(3, 6, 6), neuron=NEURON, readout=False,
                       weight=rng.integers(-127, 128, size=(4, 108)), bias=rng.integers(-9, 10, size=4))
    x = rng.integers(0, 16, size=(3, 2, 6, 6)).astype(np.uint8)
    monkeypatch.setattr(synapse, "exact_gemm_dtype", lambda bound: np.dtype(forced))
    y = synaptic_input(layer, x, 15)
    np.testing.assert_array_equal(y, naive(layer, x))
    spikes = np.clip(y, 0, 15).astype(np.uint8)
    np.testing.assert_array_equal(synaptic_input(dense, spikes, 15), naive(dense, spikes))


# ----------------------------------------------------------------------------- exact GEMM dtype


@pytest.mark.parametrize(
    "bound, dtype",
    [
        (0, np.float32),
        (2**24, np.float32),  # every integer up to 2**24 is a float32
        (2**24 + 1, np.float64),  # 2**24 + 1 is not (float32(16777217) == 16777216)
        (2**53, np.float64),
        (2**53 + 1, np.int64),  # float64(2**53 + 1) == 2**53
        (2**62, np.int64),
    ],
)
def test_exact_gemm_dtype_bounds(bound, dtype):
    assert exact_gemm_dtype(bound) == np.dtype(dtype)


def test_the_bounds_are_where_floats_stop_being_exact():
    assert FLOAT32_EXACT_LIMIT == 2**24 and FLOAT64_EXACT_LIMIT == 2**53
    assert int(np.float32(2**24)) == 2**24 and int(np.float32(2**24 + 1)) != 2**24 + 1
    assert int(np.float64(2**53)) == 2**53 and int(np.float64(2**53 + 1)) != 2**53 + 1


def test_partial_sum_bound_by_hand():
    # dense rows |W| sums: |3| + |-4| = 7 and |1| + |0| = 1; smax_in 15; biases -10 and 2
    # bounds: 15*7 + 10 = 115, 15*1 + 2 = 17 -> max 115
    layer = DenseLayer(name="d", in_shape=(2,), neuron=NEURON, readout=False, weight=[[3, -4], [1, 0]], bias=[-10, 2])
    assert partial_sum_bound(layer, 15) == 115
    pool = PoolLayer(name="p", in_shape=(1, 4, 4), neuron=NEURON, readout=False, kernel=2)
    assert partial_sum_bound(pool, 15) == 60  # 2*2 inputs of at most 15


def adversarial_dense_at_float32_limit():
    """A 16-bit dense layer whose partial-sum bound is exactly 2**24 (smax_in 31).

    Per row: sum |W| = 16*32767 + 16928 = 541_200; 31 * 541_200 = 16_777_200; + |b| = 16 -> 16_777_216.
    Rows mix signs so that the exact sums are odd, large and of both signs.
    """
    rng = np.random.default_rng(2024)
    magnitudes = np.array([32767] * 16 + [16928], dtype=np.int64)
    rows = [magnitudes, -magnitudes]  # reach +-(2**24 - 16) before the bias
    for _ in range(30):
        rows.append(rng.permutation(magnitudes) * rng.choice([-1, 1], size=17))
    weight = np.stack(rows)
    bias = np.where(np.arange(len(rows)) % 2 == 0, 16, -16)
    bias[0], bias[1] = 16, -16  # row 0 reaches +2**24 exactly, row 1 -2**24
    neuron = NeuronParams(theta_int=100, delta=0, smax=31, acc_bits=32)
    return DenseLayer(name="d", in_shape=(17,), neuron=neuron, readout=False, weight=weight, bias=bias, weight_bits=16)


def test_layer_at_exactly_2_pow_24_stays_exact_in_float32():
    layer = adversarial_dense_at_float32_limit()
    assert partial_sum_bound(layer, 31) == 2**24
    assert synapse.exact_gemm_dtype(partial_sum_bound(layer, 31)) == np.float32
    rng = np.random.default_rng(99)
    x = np.concatenate(
        [
            np.full((1, 17), 31),  # the extreme: row 0 -> 31*541_200 + 16 = 2**24
            rng.integers(29, 32, size=(200, 17)),  # near-extreme odd/even mixes
            rng.integers(0, 32, size=(200, 17)),
        ]
    ).astype(np.uint8)
    got = synaptic_input(layer, x, 31)
    np.testing.assert_array_equal(got, naive(layer, x))
    assert got[0, 0] == 2**24 and got[0, 1] == -(2**24)
    # the data is adversarial: float32 rounding would have changed some of these sums
    assert np.any(np.abs(got) > 2**24 - 1000) and np.any(got % 2 == 1)


# ----------------------------------------------------------------------------- naive reference


def trunc_div(numerator, denominator):
    return int(Fraction(numerator, denominator))  # int() of a Fraction rounds toward zero


def naive_synaptic(layer, x):
    """One sample, Python ints: x is a list [c][h][w] (or flat list for dense). Returns flat list."""
    if isinstance(layer, DenseLayer):
        flat = [int(v) for v in np.asarray(x).reshape(-1)]
        w, b = layer.weight.tolist(), layer.bias.tolist()
        return [sum(w[o][n] * flat[n] for n in range(len(flat))) + b[o] for o in range(len(w))]
    c_in, h, w_in = layer.in_shape
    out = []
    if isinstance(layer, PoolLayer):
        k = layer.kernel
        for c in range(c_in):
            for i in range(h // k):
                for j in range(w_in // k):
                    out.append(sum(int(x[c][i * k + u][j * k + v]) for u in range(k) for v in range(k)))
        return out
    weight, bias = layer.weight.tolist(), layer.bias.tolist()
    k, s, p = layer.kernel, layer.stride, layer.padding
    oh, ow = (h + 2 * p - k) // s + 1, (w_in + 2 * p - k) // s + 1
    for o in range(len(weight)):
        for i in range(oh):
            for j in range(ow):
                total = bias[o]
                for c in range(c_in):
                    for u in range(k):
                        for v in range(k):
                            r, q = i * s + u - p, j * s + v - p
                            if 0 <= r < h and 0 <= q < w_in:
                                total += weight[o][c][u][v] * int(x[c][r][q])
                out.append(total)
    return out


def naive_sample(net, image):
    """DESIGN.md section 2 for one uint8 image, neuron by neuron. Returns (logits, spikes, clips)."""
    smax_enc = net.encoder.smax
    counts = [[[(int(p) * smax_enc + 127) // 255 for p in row] for row in channel] for channel in image]
    inputs = [np.asarray(counts)] * net.timesteps
    spikes, clips = {}, {}
    for layer in net.layers:
        limit = 2 ** (layer.neuron.acc_bits - 1) - 1
        n = math.prod(layer.out_shape)
        v = [0] * n
        clips[layer.name] = 0
        outputs = []
        for t in range(net.timesteps):
            current = naive_synaptic(layer, inputs[t].tolist() if inputs[t].ndim > 1 else inputs[t])
            s_t = []
            for idx in range(n):
                if layer.readout:
                    u = v[idx] + current[idx]  # no leak, no spike
                else:
                    u = trunc_div(v[idx] * (4096 - layer.neuron.delta), 4096) + current[idx]
                if u > limit or u < -limit:
                    clips[layer.name] += 1
                    u = limit if u > 0 else -limit
                if layer.readout:
                    v[idx] = u
                    continue
                theta = layer.neuron.theta_int
                count = min(layer.neuron.smax, max(0, u // theta))
                s_t.append(count)
                v[idx] = u - count * theta
            if not layer.readout:
                outputs.append(np.asarray(s_t, dtype=np.int64).reshape(layer.out_shape))
        if layer.readout:
            return v, spikes, clips
        spikes[layer.name] = outputs
        inputs = outputs
    raise AssertionError("no readout")


NAIVE_NETS = {
    "conv-pool-dense": dict(input_shape=(1, 6, 6), layers=(("conv", 2, 3, 1), ("pool", 2), ("dense", 5)),
                            n_classes=3, timesteps=3, smax=7, acc_bits=12),
    "conv-conv-narrow-acc": dict(input_shape=(2, 5, 5), layers=(("conv", 2, 3, 0), ("conv", 2, 2, 1)),
                                 n_classes=4, timesteps=2, smax=3, acc_bits=9, delta=2048),
    # small weights and thresholds, time-varying input to leaky layers: negative membranes that
    # later receive positive input, where trunc vs floor in the leak changes the spikes
    "conv-conv-dense-3bit": dict(input_shape=(1, 6, 6), layers=(("conv", 3, 3, 1), ("conv", 3, 3, 1), ("dense", 8)),
                                 n_classes=3, timesteps=5, smax=3, acc_bits=16, weight_bits=3, theta_scale=1.0),
    "dense-only-integrator": dict(input_shape=(1, 3, 4), layers=(("dense", 6),), n_classes=2, timesteps=4,
                                  smax=15, acc_bits=16, delta=0),
}


def strided_net(rng):
    """Hand-built: conv stride 2 with padding, then pool 3 (floor crop), then the readout."""
    neuron = NeuronParams(theta_int=150, delta=410, smax=5, acc_bits=14)
    conv = ConvLayer(name="c", in_shape=(1, 9, 9), neuron=neuron, readout=False,
                     weight=rng.integers(-127, 128, size=(2, 1, 3, 3)), bias=rng.integers(-50, 51, size=2),
                     stride=2, padding=1)
    pool = PoolLayer(name="p", in_shape=conv.out_shape, neuron=NeuronParams(3, 0, 5, 14), readout=False, kernel=3)
    dense = DenseLayer(name="r", in_shape=pool.out_shape, neuron=neuron, readout=True,
                       weight=rng.integers(-127, 128, size=(3, math.prod(pool.out_shape))), bias=[1, -2, 3])
    return IntegerNetwork(encoder=InputEncoder(shape=(1, 9, 9), smax=5), layers=(conv, pool, dense),
                          timesteps=3, n_classes=3)


def network_by_name(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "strided":
        return strided_net(rng), rng
    return random_network(rng, **NAIVE_NETS[name]), rng


@pytest.mark.parametrize("name", sorted(NAIVE_NETS) + ["strided"])
def test_run_reference_matches_naive_per_neuron_reimplementation(name):
    net, rng = network_by_name(name)
    images = random_images(rng, 6, net.encoder.shape)
    result = run_reference(net, images)
    total_clips = {layer.name: 0 for layer in net.layers}
    for b, image in enumerate(images):
        logits, spikes, clips = naive_sample(net, image)
        assert result.logits[b].tolist() == logits
        for layer_name, per_step in spikes.items():
            for t, s in enumerate(per_step):
                assert result.spikes[layer_name][t, b].tolist() == s.tolist(), (layer_name, t, b)
        for layer_name, count in clips.items():
            total_clips[layer_name] += count
    assert result.saturations == total_clips
    assert result.logits.dtype == np.int64 and result.logits.shape == (6, net.n_classes)
    assert set(result.spikes) == {layer.name for layer in net.layers[:-1]}
    # the networks are not trivially silent
    assert any(int(s.max()) > 0 for s in result.spikes.values())


def test_naive_nets_exercise_saturation_and_smax():
    net, rng = network_by_name("conv-conv-narrow-acc")
    result = run_reference(net, random_images(rng, 6, net.encoder.shape))
    assert sum(result.saturations.values()) > 0
    assert max(int(s.max()) for s in result.spikes.values()) == net.layers[0].neuron.smax


def test_naive_comparison_would_catch_a_floor_leak(monkeypatch):
    """Guard against a vacuous differential: rounding the leak down instead of toward zero changes
    the spikes or logits of the 3-bit network, so the comparison above would see it."""
    import mtsnn.hw_model.reference as reference

    net, rng = network_by_name("conv-conv-dense-3bit")
    images = random_images(rng, 6, net.encoder.shape)
    good = run_reference(net, images)
    real_step = reference.mtlif_step

    def floor_leak_step(v, i, theta_int, delta, smax, acc_bits):
        floor_leaked = (v * (4096 - delta)) // 4096  # floor, not trunc
        return real_step(floor_leaked, i, theta_int, 0, smax, acc_bits)  # delta 0: no second leak

    monkeypatch.setattr(reference, "mtlif_step", floor_leak_step)
    bad = run_reference(net, images)
    differs = not np.array_equal(good.logits, bad.logits) or any(
        not np.array_equal(good.spikes[k], bad.spikes[k]) for k in good.spikes
    )
    assert differs


def test_batch_size_does_not_change_results():
    rng = np.random.default_rng(3)
    net = random_network(rng, input_shape=(1, 8, 8), layers=(("conv", 3, 3, 1), ("pool", 2), ("dense", 8)),
                         n_classes=4, timesteps=3, smax=7, acc_bits=14)
    images = random_images(rng, 260, (1, 8, 8))
    runs = [run_reference(net, images, batch_size=bs) for bs in (256, 1, 7, 1000)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.logits, runs[0].logits)
        assert run.spikes.keys() == runs[0].spikes.keys()
        for key in run.spikes:
            np.testing.assert_array_equal(run.spikes[key], runs[0].spikes[key])
        assert run.saturations == runs[0].saturations
    assert runs[0].logits.shape == (260, 4)
    assert runs[0].spikes["conv1"].shape == (3, 260, 3, 8, 8)
    # one image alone gives the same as that image inside a batch
    single = run_reference(net, images[100:101])
    np.testing.assert_array_equal(single.logits[0], runs[0].logits[100])


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 1, 8, 8), dtype=np.float32),  # wrong dtype
        np.zeros((2, 1, 8, 8), dtype=np.int64),  # integers, but not uint8
        np.zeros((2, 1, 8, 8), dtype=np.int8),
        np.zeros((2, 8, 8), dtype=np.uint8),  # channel axis missing
        np.zeros((1, 8, 8), dtype=np.uint8),  # a single image without the batch axis
        np.zeros((2, 1, 8, 7), dtype=np.uint8),  # wrong width
        np.zeros((2, 3, 8, 8), dtype=np.uint8),  # wrong channels
        np.zeros((2, 1, 1, 8, 8), dtype=np.uint8),  # extra axis
    ],
)
def test_bad_images_raise_value_error(images):
    net = random_network(np.random.default_rng(0), input_shape=(1, 8, 8), layers=(("dense", 4),), n_classes=2)
    with pytest.raises(ValueError, match="images"):
        run_reference(net, images)
