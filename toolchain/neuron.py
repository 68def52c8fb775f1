"""The MT-LIF neuron for training: hw_model's integer step plus a surrogate gradient.

Forward: exactly ``hw_model.neuron.mtlif_step`` (the chip's arithmetic), run on float64
tensors that hold integers, over all T steps of a layer at once (multi-step mode). Inputs are
synaptic currents ``I`` in integer membrane units; outputs are spike counts 0..Smax.

Backward (BPTT through the T steps, written out by hand so a layer costs a few fused ops):
    x_t  = U_t / theta_int                       (membrane in threshold units, before reset)
    dL/dU_t = dL/ds_t * g(x_t) / theta_int + dL/dV_t          g = the surrogate curve
    dL/dI_t = dL/dU_t * [U_t not clipped]                      saturation passes no gradient
    dL/dV_{t-1} = dL/dI_t * (4096 - delta) / 4096              the leak, linearised
The reset V_t = U_t - s_t * theta is detached (no gradient through s_t * theta), as in
SpikingJelly's ``detach_reset``: the residue carries forward in value, the gradient follows U.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtsnn.hw_model import neuron as chip
from mtsnn.hw_model.synapse import FLOAT32_EXACT_LIMIT
from .surrogate import surrogate_derivative

__all__ = ["NeuronConfig", "SurrogateConfig", "mtlif_multistep", "readout_multistep"]


@dataclass(frozen=True)
class SurrogateConfig:
    curve: int = 2
    a: float = 1.0
    b: float = 20.0


@dataclass(frozen=True)
class NeuronConfig:
    delta: int
    smax: int
    acc_bits: int
    surrogate: SurrogateConfig = SurrogateConfig()
    exact: bool = True  # False: the float baseline (no trunc, no saturation), never deployed


def _float_update(v, i, theta, delta: int, smax: int):
    """The float MT-LIF of the unquantized baseline: V*(1 - delta/4096) + I, no rounding, no clip.
    Returns (s, u, clipped_mask) like hw_model.neuron.mtlif_update."""
    u = v * ((chip.LEAK_DENOMINATOR - delta) / chip.LEAK_DENOMINATOR) + i
    s = torch.clamp(torch.floor(u / theta), 0, smax)
    return s, u, torch.zeros_like(u, dtype=torch.bool)


def _state_dtype(currents: torch.Tensor, theta_int: float, config: NeuronConfig) -> torch.dtype:
    """int32 when hw_model proves every intermediate fits (the default 20-bit accumulator with
    float32 synapses, whose |I| <= 2**24), else float64 (exact below 2**53). Same integers either
    way; int32 moves half the bytes and divides by powers of two with shifts."""
    fits = (config.exact and currents.dtype == torch.float32 and float(theta_int).is_integer()
            and chip.int32_is_exact(config.acc_bits, config.delta, int(theta_int), FLOAT32_EXACT_LIMIT))
    return torch.int32 if fits else torch.float64


class _MTLIFMultiStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, currents: torch.Tensor, theta_int: float, config: NeuronConfig):
        # currents: (T, B, ...) float, integer-valued, in membrane units
        with torch.no_grad():
            i64 = currents.detach().to(_state_dtype(currents, theta_int, config))
            theta_state = int(theta_int) if not i64.is_floating_point() else theta_int
            v = torch.zeros_like(i64[0])
            spikes = torch.empty_like(currents)
            x_pre = torch.empty_like(currents, dtype=torch.float32)
            open_mask = torch.empty_like(currents, dtype=torch.bool)
            for t in range(i64.shape[0]):
                if config.exact:
                    s, u, clipped = chip.mtlif_update(v, i64[t], theta_state, config.delta, config.smax, config.acc_bits)
                else:
                    s, u, clipped = _float_update(v, i64[t], theta_int, config.delta, config.smax)
                spikes[t] = s
                x_pre[t] = u.to(torch.float32) / theta_int  # membrane in threshold units, for the surrogate
                torch.logical_not(clipped, out=open_mask[t])
                v = u - s * theta_state
        ctx.save_for_backward(x_pre, open_mask)
        ctx.theta_int = theta_int
        ctx.config = config
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        x_pre, open_mask = ctx.saved_tensors
        config: NeuronConfig = ctx.config
        sg = config.surrogate
        slope = surrogate_derivative(x_pre, config.smax, sg.curve, sg.a, sg.b) / ctx.theta_int
        keep = (chip.LEAK_DENOMINATOR - config.delta) / chip.LEAK_DENOMINATOR
        grad_currents = torch.empty_like(grad_spikes)
        grad_v = torch.zeros_like(grad_spikes[0])
        for t in range(grad_spikes.shape[0] - 1, -1, -1):
            grad_u = (grad_spikes[t] * slope[t] + grad_v) * open_mask[t]
            grad_currents[t] = grad_u
            grad_v = grad_u * keep
        return grad_currents, None, None


def mtlif_multistep(currents: torch.Tensor, theta_int: float, config: NeuronConfig) -> torch.Tensor:
    """Spike counts (T, B, ...) for currents (T, B, ...); exact forward, surrogate backward."""
    return _MTLIFMultiStep.apply(currents, float(theta_int), config)


def readout_multistep(currents: torch.Tensor, acc_bits: int) -> torch.Tensor:
    """The readout's integer sum over T (saturating like the chip), gradient of the plain sum.

    currents: (T, B, n) integer-valued; returns (B, n) in the same units.
    """
    plain = currents.sum(dim=0)
    with torch.no_grad():
        v = torch.zeros_like(currents[0], dtype=torch.float64)
        for t in range(currents.shape[0]):
            v, _ = chip.readout_step(v, currents[t].to(torch.float64), acc_bits)
    return plain + (v.to(plain.dtype) - plain).detach()
