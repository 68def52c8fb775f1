"""Differential property: every integer path agrees, bit for bit, on random small networks.

Random arch strings, bits 2..16, Smax 1..31, leak, T 1..4 and random weights (extremes
included) go through ONE QAT model; its integer-exact torch forward, the numpy reference, the
ONNX model in onnxruntime and the simulator (on a permissive Loihi-like target with tiny cores,
so layers split over many cores and fan-in is split into partial sums) must give the same
spikes in every layer at every step and the same logits.
"""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtsnn.export.integer import to_integer_network
from mtsnn.export.onnx_model import run_onnx, build_onnx
from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.simulator import simulate_batch
from mtsnn.hw_model.target import PRESET_DIR, parse_target
from mtsnn.toolchain.model import ModelConfig, MTSNN
from mtsnn.toolchain.neuron import SurrogateConfig


def _tiny_core_target(neurons: int, axons: int):
    document = tomllib.loads((PRESET_DIR / "loihi.toml").read_text())
    document["chip"].update(cores=4096, mesh_x=32, mesh_y=32, cores_per_router=4)
    document["core"].update(neurons=neurons, axons_in=axons, weight_bits=16, acc_bits=32, partial_sums=True,
                            synapse_memory_bits=10**9)
    return parse_target(document, origin="tiny-core test target")


ARCHS = ["4C3p1-P2-8", "3C3-5", "6", "2C2-P2-3C2p1-4", "P2-4C3p1-5", "3C3p1-2C3p1-P2-6-4"]


def _randomise(model: MTSNN, rng: np.random.Generator) -> None:
    """Weights spread over the whole grid, with both extremes present; random biases."""
    with torch.no_grad():
        for synapse in model.synapses.values():
            w = synapse.layer.weight
            w.copy_(torch.tensor(rng.uniform(-1, 1, w.shape), dtype=w.dtype))
            flat = w.view(-1)
            flat[0], flat[-1] = 1.0, -1.0
            if synapse.layer.bias is not None:
                b = synapse.layer.bias
                b.copy_(torch.tensor(rng.uniform(-0.5, 0.5, b.shape), dtype=b.dtype))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=st.sampled_from(ARCHS), bits=st.integers(2, 16), smax=st.integers(1, 31), timesteps=st.integers(1, 4),
       tau=st.sampled_from([0.0, 1.0, 2.0, 10.0, 1000.0]), theta=st.sampled_from([0.25, 1.0, 3.0]),
       acc_offset=st.integers(-4, 12), seed=st.integers(0, 2**16), neurons=st.integers(3, 40),
       axons=st.integers(4, 60))
def test_qat_reference_onnx_and_simulator_agree(arch, bits, smax, timesteps, tau, theta, acc_offset, seed,
                                                neurons, axons):
    rng = np.random.default_rng(seed)
    acc_bits = int(np.clip(bits + acc_offset, 8, 32))  # small offsets force saturation
    config = ModelConfig(arch=arch, input_shape=(1, 6, 6), n_classes=3, timesteps=timesteps, smax=smax, bits=bits,
                         acc_bits=acc_bits, tau=tau, theta=theta, surrogate=SurrogateConfig())
    torch.manual_seed(seed)
    model = MTSNN(config).eval()
    _randomise(model, rng)
    net = to_integer_network(model)
    images = rng.integers(0, 256, (5, 1, 6, 6), dtype=np.uint8)
    images[0] = 0
    images[1] = 255

    reference = run_reference(net, images)
    qat = model.integer_forward(torch.tensor(images))
    onnx_logits, onnx_spikes = run_onnx(build_onnx(net), images, spikes=True)
    simulated = simulate_batch(map_network(net, _tiny_core_target(neurons, axons)), images, record_spikes=True)

    expected = reference.logits
    np.testing.assert_array_equal(qat.logits.numpy().astype(np.int64), expected)
    np.testing.assert_array_equal(onnx_logits, expected)
    np.testing.assert_array_equal(simulated.logits, expected)
    for layer in net.layers[:-1]:
        want = reference.spikes[layer.name]
        np.testing.assert_array_equal(qat.spikes[layer.name].numpy().astype(np.uint8), want, err_msg=f"qat {layer.name}")
        np.testing.assert_array_equal(onnx_spikes[layer.name], want, err_msg=f"onnx {layer.name}")
        np.testing.assert_array_equal(simulated.spikes[layer.name], want, err_msg=f"sim {layer.name}")


def test_a_float64_layer_feeding_a_float32_layer_stays_exact():
    """Regression (found by the property test in CI): a layer whose bound needs float64 emits
    float64 spikes; the next layer, whose bound fits float32, must cast its input."""
    from mtsnn.hw_model.synapse import FLOAT32_EXACT_LIMIT, partial_sum_bound

    config = ModelConfig(arch="8C5p2-P2-4", input_shape=(1, 8, 8), n_classes=3, bits=16, acc_bits=32, smax=31)
    model = MTSNN(config).eval()
    with torch.no_grad():
        model.synapses["conv1"].layer.weight.fill_(1.0)  # every weight at the 16-bit maximum
        dense = model.synapses["dense1"].layer.weight
        dense.zero_()
        dense[:, :3] = torch.tensor([0.5, -1.0, 0.25])  # sparse rows: a small bound, float32
    net = to_integer_network(model)
    assert partial_sum_bound(net.layers[0], 31) > FLOAT32_EXACT_LIMIT  # conv1 runs in float64
    assert partial_sum_bound(net.layers[2], 31) <= FLOAT32_EXACT_LIMIT  # dense1 in float32
    images = np.random.default_rng(0).integers(0, 256, (6, 1, 8, 8), dtype=np.uint8)
    run = model.integer_forward(torch.tensor(images))
    np.testing.assert_array_equal(run.logits.numpy().astype(np.int64), run_reference(net, images).logits)
