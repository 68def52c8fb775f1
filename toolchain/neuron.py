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
from . import fused
from .surrogate import surrogate_derivative

__all__ = ["NeuronConfig", "SurrogateConfig", "mtlif_multistep", "mtlif_pool_block", "readout_multistep"]


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


def _state_dtype(currents: torch.Tensor, theta_int, config: NeuronConfig) -> torch.dtype:
    """int32 when hw_model proves every intermediate fits (the default 20-bit accumulator with
    float32 synapses, whose |I| <= 2**24), else float64 (exact below 2**53). Same integers either
    way; int32 moves half the bytes and divides by powers of two with shifts.

    ``theta_int`` is a number, or a 0-dim integer tensor on the device (training off the CPU: no
    read back to the host); then the proof uses its bound, the accumulator limit, instead."""
    if isinstance(theta_int, torch.Tensor):
        theta_bound, integer = chip.accumulator_limit(config.acc_bits), True
    else:
        theta_bound, integer = theta_int, float(theta_int).is_integer()
    fits = (config.exact and currents.dtype == torch.float32 and integer
            and chip.int32_is_exact(config.acc_bits, config.delta, int(theta_bound), FLOAT32_EXACT_LIMIT))
    return torch.int32 if fits else torch.float64


def tensor_theta_update(v: torch.Tensor, i: torch.Tensor, theta: torch.Tensor, delta: int, smax: int, acc_bits: int):
    """``hw_model.neuron.mtlif_update`` for a threshold held in a 0-dim tensor (no host read:
    hw_model's shift test would read it). The same integers: the leak truncates toward zero
    (``rounding_mode="trunc"``, exact on int32 and on float64 holding integers), the spike count
    floors (integer floor division, or floor of the correctly rounded quotient on float64, exact
    for the reason hw_model.neuron gives)."""
    if delta:
        scaled = v * (chip.LEAK_DENOMINATOR - delta)
        v = torch.div(scaled, chip.LEAK_DENOMINATOR, rounding_mode="trunc")
    raw = v + i
    limit = chip.accumulator_limit(acc_bits)
    u = torch.clamp(raw, -limit, limit)
    crossed = torch.floor(u / theta) if u.is_floating_point() else torch.div(u, theta, rounding_mode="floor")
    return torch.clamp(crossed, 0, smax), u, u != raw


class _MTLIFMultiStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, currents: torch.Tensor, theta_int, config: NeuronConfig):
        # currents: (T, B, ...) float, integer-valued, in membrane units
        with torch.no_grad():
            i64 = currents.detach().to(_state_dtype(currents, theta_int, config))
            if isinstance(theta_int, torch.Tensor):
                theta_state = theta_int.to(i64.dtype)
                update = tensor_theta_update
            else:
                theta_state = int(theta_int) if not i64.is_floating_point() else theta_int
                update = chip.mtlif_update
            v = torch.zeros_like(i64[0])
            spikes = torch.empty_like(currents)
            x_pre = torch.empty_like(currents, dtype=torch.float32)
            open_mask = torch.empty_like(currents, dtype=torch.bool)
            for t in range(i64.shape[0]):
                if config.exact:
                    s, u, clipped = update(v, i64[t], theta_state, config.delta, config.smax, config.acc_bits)
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


class _FusedMTLIF(torch.autograd.Function):
    """The same neuron as ``_MTLIFMultiStep`` through ``toolchain.fused``'s compiled kernels."""

    @staticmethod
    def forward(ctx, currents: torch.Tensor, theta, config: NeuronConfig, steps: int, constant: bool,
                int_state: bool):
        flat = currents.detach().reshape(-1) if constant else currents.detach().reshape(steps, -1)
        spikes, raws = fused.fused_forward(flat, theta, steps=steps, constant=constant, delta=config.delta,
                                           smax=config.smax, acc_bits=config.acc_bits, int_state=int_state)
        ctx.save_for_backward(raws, fused._theta64(theta, currents.device))
        ctx.config, ctx.steps, ctx.constant, ctx.shape = config, steps, constant, currents.shape
        return spikes.reshape(steps, *(currents.shape if constant else currents.shape[1:]))

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        raws, theta = ctx.saved_tensors
        config: NeuronConfig = ctx.config
        sg = config.surrogate
        grad = fused.fused_backward(grad_spikes.contiguous().reshape(ctx.steps, -1), raws, theta, steps=ctx.steps,
                                    constant=ctx.constant, delta=config.delta, smax=config.smax,
                                    acc_bits=config.acc_bits, curve=sg.curve, a=sg.a, b=sg.b)
        return grad.reshape(ctx.shape), None, None, None, None, None


class _FusedBlock(torch.autograd.Function):
    """A spiking layer + the k x k pooling layer after it, through ``toolchain.fused``'s block kernels."""

    @staticmethod
    def forward(ctx, currents: torch.Tensor, theta, config: NeuronConfig, steps: int, constant: bool,
                int_state: bool, k: int, emit_first: bool):
        chw = tuple(currents.shape[-3:])
        out = fused.block_forward(currents.detach(), theta, steps=steps, constant=constant, delta=config.delta,
                                  smax=config.smax, acc_bits=config.acc_bits, int_state=int_state, chw=chw, k=k,
                                  emit_first=emit_first)
        spikes2, raws1, raws2 = out[:3]
        ctx.save_for_backward(raws1, raws2, fused._theta64(theta, currents.device))
        ctx.config, ctx.steps, ctx.constant, ctx.chw, ctx.k = config, steps, constant, chw, k
        if emit_first:
            ctx.mark_non_differentiable(out[3])
            return spikes2, out[3]
        return spikes2, None

    @staticmethod
    def backward(ctx, grad_spikes2: torch.Tensor, _grad_first=None):
        raws1, raws2, theta = ctx.saved_tensors
        config: NeuronConfig = ctx.config
        sg = config.surrogate
        grad = fused.block_backward(grad_spikes2.contiguous(), raws1, raws2, theta, steps=ctx.steps,
                                    constant=ctx.constant, delta=config.delta, smax=config.smax,
                                    acc_bits=config.acc_bits, chw=ctx.chw, k=ctx.k, curve=sg.curve, a=sg.a, b=sg.b)
        return grad, None, None, None, None, None, None, None


def mtlif_pool_block(currents: torch.Tensor, theta_int, config: NeuronConfig, k: int, *, steps: int | None = None,
                     record: bool = False):
    """The fused kernel of a conv layer's neurons and the k x k pooling layer (its sums and its
    neurons: theta k*k, no leak) that follows: (pool spikes (T, B, C, H//k, W//k), the conv
    layer's spikes (T, B, C, H, W) when ``record`` else None). The same integers as
    ``mtlif_multistep`` on the conv currents, ``avg_pool2d(..., divisor_override=1)`` and
    ``mtlif_multistep`` on its sums; only for a quantized (exact) layer with fused kernels on."""
    T = steps if steps is not None else currents.shape[0]
    int_state = _state_dtype(currents, theta_int, config) == torch.int32
    return _FusedBlock.apply(currents, theta_int, config, T, steps is not None, int_state, k, record)


def mtlif_multistep(currents: torch.Tensor, theta_int, config: NeuronConfig, *, steps: int | None = None,
                    fused_kernel: bool = False) -> torch.Tensor:
    """Spike counts (T, B, ...) for currents (T, B, ...); exact forward, surrogate backward.

    ``steps``: the currents are (B, ...), the same at each of ``steps`` steps (a first layer).
    ``fused_kernel``: run the compiled fused neuron (``toolchain.fused``) when it is available;
    the unfused neuron otherwise (the same integers). ``theta_int``: a number or a 0-dim tensor.
    """
    if fused_kernel and config.exact and fused.available() is not False:
        T = steps if steps is not None else currents.shape[0]
        int_state = _state_dtype(currents, theta_int, config) == torch.int32
        return _FusedMTLIF.apply(currents, theta_int, config, T, steps is not None, int_state)
    if steps is not None:
        currents = currents.unsqueeze(0).expand(steps, *currents.shape)
    theta = theta_int if isinstance(theta_int, torch.Tensor) else float(theta_int)
    return _MTLIFMultiStep.apply(currents, theta, config)


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
