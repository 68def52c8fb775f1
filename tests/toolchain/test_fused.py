"""The fused MT-LIF kernels (toolchain.fused) against the chip's integer arithmetic (hw_model).

* the kernel bodies, eager, == a numpy int64 loop of hw_model.neuron steps, over shapes, T,
  Smax, thresholds (powers of two or not), delta, accumulator widths (int32 and float64 state),
  currents constant over T or not (hypothesis);
* the compiled kernels == the same loop on one case per code path (each variant compiles once,
  a few seconds; the hypothesis run over compiled kernels is marked slow);
* a model with fused kernels (neuron + pooling blocks) == the unfused model: integer logits and
  every layer's spikes bit for bit, gradients to float rounding;
* Brevitas's gradient, applied by _BrevitasGrad from the cached quantization, == Brevitas's autograd;
* without torch.compile the fused path falls back to the unfused neuron and says so once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtsnn.hw_model import neuron as chip
from mtsnn.toolchain import fused
from mtsnn.toolchain.model import MTSNN, ModelConfig
from mtsnn.toolchain.neuron import NeuronConfig, _state_dtype

torch.set_num_threads(2)


def numpy_mtlif(currents: np.ndarray, theta: int, delta: int, smax: int, acc_bits: int):
    v = np.zeros(currents.shape[1:], dtype=np.int64)
    spikes = np.empty_like(currents)
    for t in range(currents.shape[0]):
        spikes[t], v, _ = chip.mtlif_step(v, currents[t], theta, delta, smax, acc_bits)
    return spikes


@st.composite
def cases(draw, steps=st.integers(1, 4)):
    T = draw(steps)
    n = draw(st.integers(1, 40))
    smax = draw(st.integers(1, 31))
    acc_bits = draw(st.integers(8, 32))
    limit = chip.accumulator_limit(acc_bits)
    theta = draw(st.one_of(st.sampled_from([1, 2, 4, 8, 64, 512, 4096]), st.integers(1, min(limit, 5000))))
    theta = min(theta, limit)
    delta = draw(st.one_of(st.just(0), st.just(410), st.integers(0, 4096)))
    constant = draw(st.booleans())
    float32_bound = 2**24
    big = min(limit * 2, float32_bound)
    values = st.one_of(st.integers(-3 * theta, (smax + 2) * theta), st.integers(-big, big),
                       st.sampled_from([0, theta, -theta, limit, -limit, smax * theta, smax * theta - 1]))
    shape = (n,) if constant else (T, n)
    flat = draw(st.lists(values, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    currents = np.clip(np.array(flat, dtype=np.int64), -float32_bound, float32_bound).reshape(shape)
    return T, currents, theta, delta, smax, acc_bits, constant


def _check(case, compiled: bool):
    T, currents, theta, delta, smax, acc_bits, constant = case
    full = np.broadcast_to(currents, (T, *currents.shape)) if constant else currents
    expected = numpy_mtlif(np.ascontiguousarray(full), theta, delta, smax, acc_bits)
    torch_currents = torch.tensor(currents, dtype=torch.float32)
    config = NeuronConfig(delta=delta, smax=smax, acc_bits=acc_bits)
    int_state = _state_dtype(torch_currents, theta, config) == torch.int32
    spikes, raws = fused.fused_forward(torch_currents, theta, steps=T, constant=constant, delta=delta, smax=smax,
                                       acc_bits=acc_bits, int_state=int_state, compiled=compiled)
    assert np.array_equal(spikes.numpy().astype(np.int64), expected)
    assert spikes.dtype == torch.float32
    # the tensor-theta variant (CUDA's: theta never read back) gives the same counts
    spikes_t, _ = fused.fused_forward(torch_currents, torch.tensor(theta), steps=T, constant=constant, delta=delta,
                                      smax=smax, acc_bits=acc_bits, int_state=int_state, compiled=compiled)
    assert torch.equal(spikes, spikes_t)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_kernel_body_is_hw_model_bit_for_bit(case):
    _check(case, compiled=False)


# one case per compiled code path: int32 state by shifts / by float64 division, float64 state,
# leak or none, currents constant over the steps or not
PATHS = [
    (2, 20, 512, 410, 15, True), (2, 20, 300, 410, 15, False), (3, 28, 1000, 100, 7, False),
    (2, 20, 64, 0, 1, True), (1, 32, 7, 4096, 31, True),
]


@pytest.mark.parametrize("T, acc_bits, theta, delta, smax, constant", PATHS)
def test_compiled_kernel_is_hw_model_bit_for_bit(T, acc_bits, theta, delta, smax, constant):
    rng = np.random.default_rng(theta + delta)
    limit = chip.accumulator_limit(acc_bits)
    shape = (4000,) if constant else (T, 4000)
    currents = np.concatenate([rng.integers(-3 * theta, (smax + 3) * theta, size=shape[-1] - 8),
                               [theta, -theta, limit, -limit, 2**24, -(2**24), smax * theta, 0]])
    currents = np.broadcast_to(currents, shape).copy()
    if not constant:
        currents[1:] = rng.permutation(currents[1:].ravel()).reshape(currents[1:].shape)
    _check((T, currents, theta, delta, smax, acc_bits, constant), compiled=True)
    assert fused.available() is True, fused.unavailable_reason()


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(steps=st.integers(1, 3)))
def test_compiled_kernel_is_hw_model_bit_for_bit_everywhere(case):
    _check(case, compiled=True)


def _model_pair(arch, shape, smax, bits, acc_bits, tau, seed):
    torch.manual_seed(seed)
    config = ModelConfig(arch=arch, input_shape=shape, n_classes=4, timesteps=2, smax=smax, bits=bits,
                         acc_bits=acc_bits, tau=tau, theta=0.5)
    return MTSNN(config)


@pytest.mark.parametrize("arch, shape, smax, bits, acc_bits, tau", [
    ("6C3p1-P2-8C3-P2-12", (1, 12, 12), 15, 8, 20, 10.0),  # int32 state, blocks with pooling
    ("5C3-P3-7", (2, 11, 11), 3, 12, 28, 0.0),  # float64 state, 9 x 9 pooling of 9 x 9 with nothing dropped
    ("4C3p1-P2-9", (1, 9, 9), 31, 4, 24, 2.0),  # pooling that drops the last row and column
])
def test_fused_model_is_the_unfused_model(arch, shape, smax, bits, acc_bits, tau):
    model = _model_pair(arch, shape, smax, bits, acc_bits, tau, seed=smax)
    images = torch.randint(0, 256, (7, *shape), dtype=torch.uint8)
    runs, grads = [], []
    for on in (False, True):
        model.fused = on
        runs.append(model.integer_forward(images))
        model.zero_grad()
        (model(images) * torch.linspace(-1, 1, 4)).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert fused.available() is True, fused.unavailable_reason()
    assert torch.equal(runs[0].logits, runs[1].logits)
    assert runs[0].spikes.keys() == runs[1].spikes.keys()
    for name in runs[0].spikes:
        assert torch.equal(runs[0].spikes[name], runs[1].spikes[name]), name
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max())), (a - b).abs().max()


@pytest.mark.parametrize("bits", [2, 4, 8, 12])
def test_brevitas_gradient_from_the_cached_quantization(bits):
    """W_int with _BrevitasGrad's backward == Brevitas's own graph (quant_weight() with autograd)."""
    torch.manual_seed(bits)
    config = ModelConfig(arch="6C3-10", input_shape=(1, 6, 6), n_classes=10, bits=bits, acc_bits=24)
    model = MTSNN(config)
    for synapse in model.synapses.values():
        layer = synapse.layer
        x = torch.randint(0, 16, (5, *((1, 6, 6) if synapse.kind == "conv" else (layer.in_features,))))
        x = x.to(torch.float32)
        g = torch.randn_like(synapse.currents(x, 15, synapse.quantized()))
        layer.zero_grad()
        (synapse.currents(x, 15, synapse.quantized()) * g).sum().backward()
        mine = layer.weight.grad.clone(), layer.bias.grad.clone()
        layer.zero_grad()
        qw = layer.quant_weight()  # Brevitas's autograd
        scale = qw.scale.detach()
        bias = layer.bias + (torch.round(layer.bias / scale) * scale - layer.bias).detach()
        y = F.conv2d(x, qw.value, bias) if synapse.kind == "conv" else F.linear(x, qw.value, bias)
        ((y / scale) * g).sum().backward()
        for a, b in zip(mine, (layer.weight.grad, layer.bias.grad)):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max())), (a - b).abs().max()


def test_quantization_is_cached_until_the_weights_change():
    model = MTSNN(ModelConfig(arch="4C3-5", input_shape=(1, 5, 5), n_classes=5))
    synapse = model.synapses["conv1"]
    first = synapse.quantized()
    assert synapse.quantized().weight_int is first.weight_int  # no new quantization
    with torch.no_grad():
        synapse.layer.weight.mul_(3.0)
    again = synapse.quantized()
    assert again.weight_int is not first.weight_int
    assert torch.equal(again.weight, synapse.layer.quant_weight().value)


def test_without_torch_compile_it_falls_back_and_says_so_once(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler in this test")

    monkeypatch.setattr(fused, "_state", {"available": None, "reason": None, "compile_seconds": 0.0})
    monkeypatch.setattr(fused, "_kernels", {})
    monkeypatch.setattr(torch, "compile", broken)
    model = _model_pair("6C3p1-P2-8", (1, 8, 8), 15, 8, 20, 10.0, seed=0)
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    model.fused = False
    plain = model.integer_forward(images)
    model.fused = True
    for _ in range(2):
        run = model.integer_forward(images)
        model(images).sum().backward()
    assert torch.equal(plain.logits, run.logits)
    assert fused.available() is False and "no C++ compiler" in fused.unavailable_reason()
    notes = [line for line in capsys.readouterr().err.splitlines() if "fused MT-LIF neuron is unavailable" in line]
    assert len(notes) == 1, notes
