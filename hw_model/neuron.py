"""The integer MT-LIF neuron: the one definition of the chip's arithmetic.

Every integer path in mtsnn calls these functions: the numpy reference and the simulator on
int64 arrays, and training's exact forward on torch float64 tensors holding integers (exact
below 2**53, far above any membrane this contract allows). They use only operations that numpy
and torch share, through ``array_api_compat``; this module never imports torch.

Discrete-time equations, per neuron and time step t = 1..T (DESIGN.md section 2)::

    I[t] = sum(W_int * x[t]) + b_int                       synaptic input (hw_model.synapse)
    U[t] = leak(V[t-1]) + I[t]                             leak(V) = trunc(V * (4096 - delta) / 4096)
    U[t] = clip(U[t], -(2**(A-1) - 1), 2**(A-1) - 1)       accumulator of A bits; each clip counted
    s[t] = min(Smax, max(0, floor(U[t] / theta_int)))      spike count, thresholds crossed
    V[t] = U[t] - s[t] * theta_int                         reset by subtraction: the residue carries

``delta`` is Loihi's 12-bit decay constant (0 = pure integrator, 4096 = forget everything);
``trunc`` rounds toward zero as Loihi does. The readout layer (the last one) never spikes: it
integrates ``I`` without leak, saturating at the same accumulator width (see ``readout_step``).
"""

from __future__ import annotations

from array_api_compat import array_namespace

__all__ = [
    "LEAK_DENOMINATOR",
    "DELTA_MAX",
    "accumulator_limit",
    "leak",
    "saturate",
    "spike_count",
    "mtlif_step",
    "readout_step",
    "encode_pixels",
    "delta_from_tau",
]

LEAK_DENOMINATOR = 4096  # 12-bit decay: leak multiplies by (4096 - delta) / 4096
DELTA_MAX = 4096


def accumulator_limit(acc_bits: int) -> int:
    """Largest magnitude an A-bit signed accumulator holds (symmetric: +-(2**(A-1) - 1))."""
    return 2 ** (acc_bits - 1) - 1


def delta_from_tau(tau: float) -> int:
    """12-bit decay constant for a membrane time constant of ``tau`` steps: V <- V * (1 - 1/tau).

    ``tau = inf`` (or 0) gives delta = 0, a pure integrator. The paper's tau = 10 gives 410.
    """
    if tau == 0 or tau == float("inf"):
        return 0
    if tau < 1:
        raise ValueError(f"tau must be >= 1 step (or inf), got {tau}")
    return int(round(LEAK_DENOMINATOR / tau))


def leak(v, delta: int):
    """trunc(v * (4096 - delta) / 4096), elementwise; v holds integers (int64 or float64)."""
    xp = array_namespace(v)
    scaled = v * (LEAK_DENOMINATOR - delta)
    # floor(|x| / 4096) with the sign restored == rounding toward zero
    return xp.sign(scaled) * (xp.abs(scaled) // LEAK_DENOMINATOR)


def saturate(u, acc_bits: int):
    """Clip to the A-bit accumulator. Returns (clipped, mask of the elements that were clipped)."""
    xp = array_namespace(u)
    limit = accumulator_limit(acc_bits)
    clipped_mask = (u > limit) | (u < -limit)
    return xp.clip(u, -limit, limit), clipped_mask


def spike_count(u, theta_int, smax: int):
    """Thresholds crossed: min(Smax, max(0, floor(u / theta_int))). u and the result are integers."""
    xp = array_namespace(u)
    return xp.clip(u // theta_int, 0, smax)


def mtlif_step(v, i, theta_int, delta: int, smax: int, acc_bits: int):
    """One MT-LIF time step.

    v, i: integer arrays of the same shape (membrane after the previous step; synaptic input).
    Returns (s, v_next, clipped_mask): spike counts 0..Smax, the membrane after subtractive reset,
    and which neurons hit the accumulator limit this step.
    """
    u, clipped_mask = saturate(leak(v, delta) + i, acc_bits)
    s = spike_count(u, theta_int, smax)
    return s, u - s * theta_int, clipped_mask


def readout_step(v, i, acc_bits: int):
    """One step of the non-spiking readout: v + i, saturated. Returns (v_next, clipped_mask)."""
    return saturate(v + i, acc_bits)


def encode_pixels(pixels, smax: int):
    """Input encoder: uint8 pixel p -> spike count (p * Smax + 127) // 255, the same at every step.

    Returns int64 counts in 0..Smax (255 -> Smax, 0 -> 0, rounding half up).
    """
    xp = array_namespace(pixels)
    return (xp.astype(pixels, xp.int64) * smax + 127) // 255
