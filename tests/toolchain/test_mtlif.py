"""toolchain.neuron and the QAT model against the chip's integer arithmetic (hw_model), exactly.

* mtlif_multistep / readout_multistep on float tensors == a numpy int64 loop of hw_model's steps;
* MTSNN.integer_forward == hw_model.reference.run_reference on export.integer.to_integer_network;
* the hand-written BPTT backward == autograd through plain torch ops (surrogate, detached reset,
  linearised leak, no gradient through saturation).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mtsnn.export.integer import to_integer_network
from mtsnn.hw_model import neuron as chip
from mtsnn.hw_model.reference import run_reference
from mtsnn.toolchain.model import MTSNN, ModelConfig
from mtsnn.toolchain.neuron import NeuronConfig, SurrogateConfig, mtlif_multistep, readout_multistep
from mtsnn.toolchain.surrogate import surrogate_derivative

torch.set_num_threads(1)

FLOAT32_EXACT = 2**24


# --------------------------------------------------------------------------- numpy oracles


def numpy_mtlif(currents: np.ndarray, theta: int, delta: int, smax: int, acc_bits: int) -> np.ndarray:
    v = np.zeros(currents.shape[1:], dtype=np.int64)
    spikes = np.empty_like(currents)
    for t in range(currents.shape[0]):
        spikes[t], v, _ = chip.mtlif_step(v, currents[t], theta, delta, smax, acc_bits)
    return spikes


def numpy_readout(currents: np.ndarray, acc_bits: int) -> np.ndarray:
    v = np.zeros(currents.shape[1:], dtype=np.int64)
    for t in range(currents.shape[0]):
        v, _ = chip.readout_step(v, currents[t], acc_bits)
    return v


@st.composite
def neuron_cases(draw, float32_safe: bool):
    """(currents int64 (T, B, F), theta, delta, smax, acc_bits); currents mix three ranges:
    around the thresholds (spikes 0..Smax and beyond), far negative/positive, and past the
    accumulator limit (saturation). float32_safe keeps |I| within float32's exact integers."""
    T = draw(st.integers(1, 4))
    B = draw(st.integers(1, 3))
    F = draw(st.integers(1, 20))
    theta = draw(st.integers(1, 5000))
    smax = draw(st.integers(1, 31))
    delta = draw(st.integers(0, 4096))
    acc_bits = draw(st.integers(8, 32))
    limit = chip.accumulator_limit(acc_bits)
    near = (smax + 2) * theta
    wide = 2 * limit + 2
    cap = (FLOAT32_EXACT // 8) if float32_safe else 2**40
    near, wide = min(near, cap), min(wide, cap)
    elements = st.one_of(
        st.integers(-near, near),
        st.integers(-wide, wide),
        st.sampled_from(sorted({max(-cap, min(cap, value)) for value in (
            0, 1, -1, theta - 1, theta, theta + 1, smax * theta, limit, -limit, limit + 1, -limit - 1)})),
    )
    currents = draw(hnp.arrays(np.int64, (T, B, F), elements=elements))
    return currents, theta, delta, smax, acc_bits


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=neuron_cases(float32_safe=False))
def test_mtlif_multistep_float64_matches_chip(case):
    currents, theta, delta, smax, acc_bits = case
    expected = numpy_mtlif(currents, theta, delta, smax, acc_bits)
    config = NeuronConfig(delta=delta, smax=smax, acc_bits=acc_bits)
    got = mtlif_multistep(torch.tensor(currents, dtype=torch.float64), theta, config)
    assert got.dtype == torch.float64 and got.shape == currents.shape
    np.testing.assert_array_equal(got.numpy().astype(np.int64), expected)
    assert np.array_equal(got.numpy(), expected.astype(np.float64))  # exactly integers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=neuron_cases(float32_safe=True))
def test_mtlif_multistep_float32_matches_chip(case):
    currents, theta, delta, smax, acc_bits = case
    expected = numpy_mtlif(currents, theta, delta, smax, acc_bits)
    config = NeuronConfig(delta=delta, smax=smax, acc_bits=acc_bits)
    as_float32 = torch.tensor(currents, dtype=torch.float32)
    assert np.array_equal(as_float32.numpy().astype(np.int64), currents)  # the input is exact
    got = mtlif_multistep(as_float32, theta, config)
    assert got.dtype == torch.float32
    assert np.array_equal(got.numpy(), expected.astype(np.float32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=neuron_cases(float32_safe=False))
def test_readout_multistep_float64_matches_chip(case):
    currents, _, _, _, acc_bits = case
    expected = numpy_readout(currents, acc_bits)
    plain = torch.tensor(currents, dtype=torch.float64, requires_grad=True)
    got = readout_multistep(plain, acc_bits)
    assert got.shape == currents.shape[1:]
    assert np.array_equal(got.detach().numpy(), expected.astype(np.float64))
    # gradient of the plain sum: ones for every step
    got.sum().backward()
    assert torch.equal(plain.grad, torch.ones_like(plain))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=neuron_cases(float32_safe=True))
def test_readout_multistep_float32_small_values(case):
    currents, _, _, _, acc_bits = case
    currents = currents // 4  # |sum over T <= 4 steps| < 2**22: float32 exact
    got = readout_multistep(torch.tensor(currents, dtype=torch.float32), acc_bits)
    assert np.array_equal(got.numpy(), numpy_readout(currents, acc_bits).astype(np.float32))


def test_mtlif_hand_examples():
    # theta 10, Smax 3, no leak: 25 -> 2 spikes, residue 5; +7 -> 12 -> 1 spike, residue 2;
    # +100 -> 102 -> 3 (capped), residue 72; -80 -> -8 -> 0, residue -8
    currents = torch.tensor([[[25.0]], [[7.0]], [[100.0]], [[-80.0]]])
    got = mtlif_multistep(currents, 10, NeuronConfig(delta=0, smax=3, acc_bits=16))
    assert got.reshape(-1).tolist() == [2.0, 1.0, 3.0, 0.0]
    # leak delta = 2048 halves the residue, rounding toward zero: 15 -> s=1, v=5; leak 2 + 9 = 11 -> 1
    got = mtlif_multistep(torch.tensor([[[15.0]], [[9.0]]]), 10, NeuronConfig(delta=2048, smax=3, acc_bits=16))
    assert got.reshape(-1).tolist() == [1.0, 1.0]


# --------------------------------------------------------------------------- QAT model vs reference

ARCHS = [("4C3p1-P2-8", (1, 8, 8)), ("3C3-6", (2, 6, 6)), ("5", (1, 4, 4)), ("P2-4C2-7", (1, 8, 8))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch_index=st.integers(0, len(ARCHS) - 1),
    bits=st.integers(2, 16),
    smax=st.integers(1, 31),
    timesteps=st.integers(1, 3),
    acc_bits=st.sampled_from([12, 16, 20, 24, 32]),
    tau=st.sampled_from([0.0, 2.0, 10.0]),
    theta=st.sampled_from([1.0, 0.5, 0.3]),
    bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 4),
)
def test_integer_forward_matches_reference(arch_index, bits, smax, timesteps, acc_bits, tau, theta, bias, seed, batch):
    arch, shape = ARCHS[arch_index]
    torch.manual_seed(seed)
    config = ModelConfig(arch=arch, input_shape=shape, n_classes=3, timesteps=timesteps, smax=smax, bits=bits,
                         acc_bits=acc_bits, tau=tau, theta=theta, bias=bias)
    model = MTSNN(config).eval()
    if bias:  # make the biases matter (default init is tiny next to the weights)
        with torch.no_grad():
            for synapse in model.synapses.values():
                synapse.layer.bias.uniform_(-2.0, 2.0)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(batch, *shape), dtype=np.uint8)
    images[0] = rng.choice(np.array([0, 255], dtype=np.uint8), size=shape)  # saturated pixels

    run = model.integer_forward(torch.tensor(images))
    net = to_integer_network(model)
    ref = run_reference(net, images)

    assert np.array_equal(run.logits.numpy(), ref.logits.astype(np.float64))
    assert set(run.spikes) == set(ref.spikes)
    for name, spikes in run.spikes.items():
        assert spikes.shape == ref.spikes[name].shape, name
        assert np.array_equal(spikes.numpy(), ref.spikes[name].astype(np.float32)), name
    # weights really are `bits` wide and the float forward has the same argmax
    for layer in net.layers:
        if getattr(layer, "weight", None) is not None and layer.weight.size:
            assert np.abs(layer.weight).max() <= 2 ** (bits - 1) - 1
    with torch.no_grad():
        float_logits = model(torch.tensor(images))
    expected_float = ref.logits.astype(np.float64) * 2.0 ** -net.layers[-1].provenance["weight_scale_exp"] / timesteps
    np.testing.assert_allclose(float_logits.numpy(), expected_float, rtol=1e-6)


# --------------------------------------------------------------------------- BPTT backward vs autograd


class _Spike(torch.autograd.Function):
    """s = clip(floor(x), 0, Smax) with the surrogate derivative; x in threshold units."""

    @staticmethod
    def forward(ctx, x, smax, surrogate):
        ctx.save_for_backward(x)
        ctx.smax, ctx.surrogate = smax, surrogate
        return torch.clamp(torch.floor(x), 0, smax)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        sg = ctx.surrogate
        return grad * surrogate_derivative(x, ctx.smax, sg.curve, sg.a, sg.b), None, None


def autograd_mtlif(currents: torch.Tensor, theta: int, config: NeuronConfig) -> torch.Tensor:
    """The MT-LIF written with plain torch ops; autograd does the BPTT."""
    limit = chip.accumulator_limit(config.acc_bits)
    keep = (chip.LEAK_DENOMINATOR - config.delta) / chip.LEAK_DENOMINATOR
    v = torch.zeros_like(currents[0])
    out = []
    for t in range(currents.shape[0]):
        linear = v * keep
        leaked = linear + (chip.leak(v.detach(), config.delta) - linear).detach()  # exact value, linear grad
        u_pre = leaked + currents[t]
        clipped = (u_pre.detach() > limit) | (u_pre.detach() < -limit)
        u = torch.where(clipped, torch.clamp(u_pre.detach(), -limit, limit), u_pre)  # no grad when clipped
        s = _Spike.apply(u / theta, config.smax, config.surrogate)
        v = u - (s * theta).detach()  # detached reset
        out.append(s)
    return torch.stack(out)


GRAD_CASES = [
    # (curve, a, b, theta, smax, delta, acc_bits, T, seed)
    (2, 1.0, 20.0, 16, 15, 410, 24, 4, 0),
    (1, 1.0, 20.0, 32, 15, 410, 24, 4, 1),
    (3, 1.0, 20.0, 8, 4, 0, 24, 3, 2),
    (1, 0.5, 5.0, 13, 7, 1000, 16, 4, 3),
    (2, 2.0, 4.0, 7, 31, 4096, 20, 4, 4),
    (3, 1.5, 9.0, 50, 2, 100, 12, 4, 5),  # small accumulator: saturation blocks gradients
    (2, 1.0, 20.0, 1, 31, 2048, 8, 2, 6),
]


@pytest.mark.parametrize("curve, a, b, theta, smax, delta, acc_bits, T, seed", GRAD_CASES)
def test_backward_matches_autograd(curve, a, b, theta, smax, delta, acc_bits, T, seed):
    gen = torch.Generator().manual_seed(seed)
    config = NeuronConfig(delta=delta, smax=smax, acc_bits=acc_bits, surrogate=SurrogateConfig(curve, a, b))
    limit = chip.accumulator_limit(acc_bits)
    scale = min((smax + 1) * theta, limit)
    # integer currents: mostly around the thresholds, some far beyond the accumulator limit
    currents = torch.round(torch.randn(T, 3, 40, generator=gen, dtype=torch.float64) * scale * 0.6)
    big = torch.rand(T, 3, 40, generator=gen) < 0.1
    currents = torch.where(big, torch.sign(currents) * 2 * limit, currents)
    upstream = torch.randn(T, 3, 40, generator=gen, dtype=torch.float64)

    mine = currents.clone().requires_grad_(True)
    spikes = mtlif_multistep(mine, theta, config)
    (spikes * upstream).sum().backward()

    oracle = currents.clone().requires_grad_(True)
    oracle_spikes = autograd_mtlif(oracle, theta, config)
    (oracle_spikes * upstream).sum().backward()

    assert torch.equal(spikes.detach(), oracle_spikes.detach())  # the oracle's forward is the chip's
    assert float(oracle.grad.abs().max()) > 0  # the case exercises some gradient
    torch.testing.assert_close(mine.grad, oracle.grad, rtol=1e-5, atol=1e-5)


def test_backward_through_time_reaches_earlier_steps():
    """A spike at step 2 depends on the current of step 1 through the (leaky) membrane."""
    config = NeuronConfig(delta=410, smax=15, acc_bits=24)
    currents = torch.tensor([[[5.0]], [[6.0]]], dtype=torch.float64, requires_grad=True)  # U_2 ~ 10.5 ~ theta 10
    spikes = mtlif_multistep(currents, 10, config)
    spikes[1].sum().backward()
    keep = (4096 - 410) / 4096
    g = currents.grad.reshape(-1)
    assert float(g[1]) > 0
    torch.testing.assert_close(g[0], g[1] * keep)


def test_saturated_neuron_gets_no_gradient():
    config = NeuronConfig(delta=0, smax=3, acc_bits=8)  # limit 127
    currents = torch.tensor([[[500.0, 40.0]]], dtype=torch.float64, requires_grad=True)
    mtlif_multistep(currents, 40, config).sum().backward()
    assert float(currents.grad[0, 0, 0]) == 0.0
    assert float(currents.grad[0, 0, 1]) > 0.0
