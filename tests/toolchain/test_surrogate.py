"""toolchain.surrogate: the three surrogate curves of the multi-threshold firing function."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtsnn.toolchain.model import MTSNN, ModelConfig
from mtsnn.toolchain.neuron import NeuronConfig, SurrogateConfig, mtlif_multistep
from mtsnn.toolchain.surrogate import SURROGATE_CURVES, surrogate_derivative

PARAMS = [(1.0, 20.0), (0.5, 5.0), (2.0, 100.0), (1.0, 1.0)]
SMAXES = [1, 4, 15, 31]


def peak(curve: int, a: float, b: float) -> float:
    """The formula's value at a threshold: curve 1 a*b/4 (sigmoid derivative), curves 2 and 3 a."""
    return a * b / 4 if curve == 1 else a


def test_curves_listed():
    assert tuple(SURROGATE_CURVES) == (1, 2, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("curve", [1, 2, 3])
@pytest.mark.parametrize("a, b", PARAMS)
@pytest.mark.parametrize("smax", [1, 15, 31])
def test_finite_everywhere(curve, a, b, smax, dtype):
    big = torch.finfo(dtype).max
    special = torch.tensor([0.0, -0.0, smax, smax + 0.5, -1e30, 1e30, -big, big, -math.inf, math.inf,
                            1e-30, -1e-30, 0.5, smax - 0.5], dtype=dtype)
    dense = torch.linspace(-3 * smax - 5, 3 * smax + 5, 4001, dtype=dtype)
    x = torch.cat([special, dense])
    g = surrogate_derivative(x, smax, curve, a, b)
    assert g.dtype == dtype and g.shape == x.shape
    assert torch.isfinite(g).all(), x[~torch.isfinite(g)]
    assert (g >= 0).all()
    # no gradient at all far away (beyond the outermost bumps), in either direction
    assert float(surrogate_derivative(torch.tensor([-1e30, 1e30, -math.inf, math.inf], dtype=dtype), smax, curve, a, b).abs().max()) == 0.0


@pytest.mark.parametrize("curve", [1, 2, 3])
@pytest.mark.parametrize("a, b", PARAMS)
@pytest.mark.parametrize("smax", SMAXES)
def test_peak_at_every_threshold(curve, a, b, smax):
    k = torch.arange(1, smax + 1, dtype=torch.float64)
    g = surrogate_derivative(k, smax, curve, a, b)
    assert (g > 0).all()
    np.testing.assert_allclose(g.numpy(), peak(curve, a, b), rtol=1e-12)
    # the peak is the maximum of the curve
    x = torch.linspace(-2, smax + 2, 20001, dtype=torch.float64)
    assert float(surrogate_derivative(x, smax, curve, a, b).max()) <= peak(curve, a, b) * (1 + 1e-12)


@pytest.mark.parametrize("curve", [1, 2, 3])
def test_shape_and_dtype_preserved(curve):
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0)) * 5
    g = surrogate_derivative(x, 7, curve)
    assert g.shape == x.shape and g.dtype == x.dtype


def _midpoints(smax: int) -> torch.Tensor:
    return torch.arange(1, smax, dtype=torch.float64) + 0.5


@pytest.mark.parametrize("curve", [1, 3])
@pytest.mark.parametrize("smax", [2, 15, 31])
def test_small_midway_between_thresholds(curve, smax):
    a = 1.0
    g = surrogate_derivative(_midpoints(smax), smax, curve, a, 20.0)
    assert float(g.max()) < 0.01 * peak(curve, a, 20.0)
    # and half a threshold below the first and above the last
    edge = surrogate_derivative(torch.tensor([0.5, smax + 0.5], dtype=torch.float64), smax, curve, a, 20.0)
    assert float(edge.max()) < 0.01 * peak(curve, a, 20.0)


@pytest.mark.parametrize("smax", [15])
def test_curve2_small_midway_between_thresholds(smax):
    g = surrogate_derivative(_midpoints(smax), smax, 2, 1.0, 20.0)
    assert float(g.max()) < 0.01 * peak(2, 1.0, 20.0)


def _sum_of_bumps(x: torch.Tensor, smax: int, curve: int, a: float, b: float) -> torch.Tensor:
    """The paper's form: a sum over all Smax bumps (no nearest-threshold truncation)."""
    total = torch.zeros_like(x)
    for k in range(1, smax + 1):
        d = x - k
        if curve == 1:
            s = torch.sigmoid(b * d)
            total = total + a * b * s * (1 - s)
        elif curve == 2:
            total = total + a * torch.exp(-0.5 * b * d * d)
        else:
            total = total + a * torch.clamp(1 - d.abs() * math.sqrt(b) / 2, min=0)
    return total


@pytest.mark.parametrize("curve", [1, 3])
def test_nearest_bump_truncation_is_accurate(curve):
    """Module doc: evaluating only the nearest bump neglects tails < 1e-4 (curve 3: exactly 0)."""
    x = torch.linspace(-1, 17, 3601, dtype=torch.float64)
    diff = (surrogate_derivative(x, 15, curve, 1.0, 20.0) - _sum_of_bumps(x, 15, curve, 1.0, 20.0)).abs().max()
    assert float(diff) < (1e-3 if curve == 1 else 1e-12)


@pytest.mark.parametrize("curve", [2, 3])
@pytest.mark.parametrize("a, b", PARAMS)
def test_curves_2_and_3_bounded_by_a(curve, a, b):
    x = torch.linspace(-3, 40, 43001, dtype=torch.float64)
    g = surrogate_derivative(x, 31, curve, a, b)
    assert float(g.max()) <= a * (1 + 1e-12)


def test_curve1_exceeds_one_at_defaults():
    defaults = SurrogateConfig()
    assert (defaults.curve, defaults.a, defaults.b) == (2, 1.0, 20.0)  # the paper's defaults
    g = surrogate_derivative(torch.tensor([1.0, 2.0, 15.0]), 15, 1, defaults.a, defaults.b)
    assert (g > 1).all()
    assert torch.allclose(g, torch.full_like(g, 5.0))  # a*b/4


def test_curve1_bump_integrates_to_a():
    a, b = 0.7, 20.0
    x = torch.linspace(0.5, 1.5, 200001, dtype=torch.float64)
    area = torch.trapezoid(surrogate_derivative(x, 3, 1, a, b), x)
    assert abs(float(area) - a) < 1e-3


@pytest.mark.parametrize("curve", [0, 4, -1, "2", None])
def test_unknown_curve(curve):
    with pytest.raises(ValueError, match="surrogate curve"):
        surrogate_derivative(torch.zeros(3), 15, curve)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("curve", [1, 2, 3])
def test_neuron_gradient_near_and_far_from_thresholds(curve):
    theta, smax = 64, 4
    near = torch.tensor([theta, 2 * theta - 1, 3 * theta + 1, 4 * theta], dtype=torch.float64)
    far = torch.tensor([-50 * theta, -10 * theta, 20 * theta, 50 * theta], dtype=torch.float64)
    currents = torch.cat([near, far]).reshape(1, 1, -1).requires_grad_(True)  # T = 1, B = 1
    config = NeuronConfig(delta=0, smax=smax, acc_bits=24, surrogate=SurrogateConfig(curve, 1.0, 20.0))
    mtlif_multistep(currents, theta, config).sum().backward()
    grad = currents.grad.reshape(-1)
    assert torch.isfinite(grad).all()
    assert (grad[:4] > 0).all(), grad
    assert float(grad[4:].abs().max()) < 1e-6 * float(grad[:4].min())


@pytest.mark.parametrize("curve", [1, 2, 3])
def test_model_gradients_finite_and_nonzero(curve):
    torch.manual_seed(0)
    config = ModelConfig(arch="4C3p1-P2-16", input_shape=(1, 8, 8), n_classes=4, timesteps=2, smax=15,
                         bits=8, surrogate=SurrogateConfig(curve, 1.0, 20.0))
    model = MTSNN(config)
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    logits = model(images)
    assert logits.dtype == torch.float32 and logits.shape == (6, 4)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3, 0, 1])).backward()
    for name, param in model.named_parameters():
        if param.requires_grad and param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    # every synaptic layer's weights get a gradient: spikes near thresholds pass it back
    for name, synapse in model.synapses.items():
        grad = synapse.layer.weight.grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
