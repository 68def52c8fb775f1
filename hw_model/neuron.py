"""The integer MT-LIF neuron: the one definition of the chip's arithmetic.

Every integer path in mtsnn calls these functions: the numpy reference and the simulator on
int64 arrays, and training's exact forward on torch float64 tensors holding integers (exact
below 2**53, far above any membrane this contract allows). They use only operations that numpy
and torch share, through ``array_api_compat``; this module never imports torch.

Discrete-time equations, per neuron and time step t = 1..T (docs/semantics.md)::

    I[t] = sum(W_int * x[t]) + b_int                       synaptic input (hw_model.synapse)
    U[t] = leak(V[t-1]) + I[t]                             leak(V) = trunc(V * (4096 - delta) / 4096)
    U[t] = clip(U[t], -(2**(A-1) - 1), 2**(A-1) - 1)       accumulator of A bits; each clip counted
    s[t] = min(Smax, max(0, floor(U[t] / theta_int)))      spike count, thresholds crossed
    V[t] = U[t] - s[t] * theta_int                         reset by subtraction: the residue carries

``delta`` is Loihi's 12-bit decay constant (0 = pure integrator, 4096 = forget everything);
``trunc`` rounds toward zero as Loihi does.

Integer arrays use integer floor division. Float arrays (training's exact path) use
trunc(x / 4096) and floor(U / theta) instead, which is as exact and several times cheaper in
torch: every value is an integer below 2**53, x / 4096 is exact (a power of two), and the
correctly rounded quotient U / theta of integers below 2**53 never rounds up onto an integer
(U = k theta - r with 0 < r < theta gives U / theta = k - r/theta, and r/theta >= 1/theta is more
than half an ulp of k because k * theta <= 2**53), so its floor is exact. The readout layer (the last one) never spikes: it
integrates ``I`` without leak, saturating at the same accumulator width (see ``readout_step``).
"""

from __future__ import annotations

import operator

from array_api_compat import array_namespace

__all__ = [
    "LEAK_DENOMINATOR",
    "DELTA_MAX",
    "accumulator_limit",
    "int32_is_exact",
    "leak",
    "saturate",
    "spike_count",
    "mtlif_update",
    "mtlif_step",
    "readout_step",
    "encode_pixels",
    "delta_from_tau",
]

LEAK_DENOMINATOR = 4096  # 12-bit decay: leak multiplies by (4096 - delta) / 4096
_LEAK_SHIFT = 12  # 4096 == 1 << 12
DELTA_MAX = 4096
INT32_MAX = 2**31 - 1


def accumulator_limit(acc_bits: int) -> int:
    """Largest magnitude an A-bit signed accumulator holds (symmetric: +-(2**(A-1) - 1))."""
    return 2 ** (acc_bits - 1) - 1


def int32_is_exact(acc_bits: int, delta: int, theta_int: int, input_bound: int) -> bool:
    """True when no intermediate of ``mtlif_step`` / ``readout_step`` can leave int32.

    V stays within the accumulator limit L (it is saturated, and the subtractive reset only moves
    a positive U towards 0), so the largest intermediates are the leak's product L * (4096 - delta),
    leak(V) + I with |I| <= ``input_bound``, and s * theta_int <= U <= L. int32 halves the memory
    traffic of int64/float64 state and makes its divisions cheaper, bit for bit.
    """
    limit = accumulator_limit(acc_bits)
    largest = max(limit * (LEAK_DENOMINATOR - delta), limit + input_bound, theta_int)
    return largest <= INT32_MAX


def delta_from_tau(tau: float) -> int:
    """12-bit decay constant for a membrane time constant of ``tau`` steps: V <- V * (1 - 1/tau).

    ``tau = inf`` (or 0) gives delta = 0, a pure integrator. The paper's tau = 10 gives 410.
    """
    if tau == 0 or tau == float("inf"):
        return 0
    if tau < 1:
        raise ValueError(f"tau must be >= 1 step (or inf), got {tau}")
    return int(round(LEAK_DENOMINATOR / tau))


def _is_float(xp, x) -> bool:
    return xp.isdtype(x.dtype, "real floating")


def _is_power_of_two(value) -> bool:
    """True for an integer scalar that is a power of two; False for arrays and floats."""
    try:
        value = operator.index(value)
    except TypeError:
        return False
    return value > 0 and value & (value - 1) == 0


def leak(v, delta: int):
    """trunc(v * (4096 - delta) / 4096), elementwise; v holds integers (int64 or float64)."""
    if delta == 0:  # pure integrator
        return v
    xp = array_namespace(v)
    scaled = v * (LEAK_DENOMINATOR - delta)
    if _is_float(xp, v):
        return xp.trunc(scaled / LEAK_DENOMINATOR)
    # floor(|x| / 4096) with the sign restored == rounding toward zero; >> 12 is that floor
    return xp.sign(scaled) * (xp.abs(scaled) >> _LEAK_SHIFT)


def saturate(u, acc_bits: int):
    """Clip to the A-bit accumulator. Returns (clipped, mask of the elements that were clipped)."""
    xp = array_namespace(u)
    limit = accumulator_limit(acc_bits)
    clipped = xp.clip(u, -limit, limit)
    return clipped, clipped != u


def spike_count(u, theta_int, smax: int):
    """Thresholds crossed: min(Smax, max(0, floor(u / theta_int))). u and the result are integers."""
    xp = array_namespace(u)
    if _is_float(xp, u):
        crossed = xp.floor(u / theta_int)
    elif _is_power_of_two(theta_int):  # the default theta_int = 2**f: an arithmetic shift floors too
        crossed = u >> (int(theta_int).bit_length() - 1)
    else:
        crossed = u // theta_int
    return xp.clip(crossed, 0, smax)


def mtlif_update(v, i, theta_int, delta: int, smax: int, acc_bits: int):
    """Leak, integrate, saturate and count: (s, u, clipped_mask) with u the membrane before the
    reset (training needs it for the surrogate; ``mtlif_step`` applies the reset)."""
    u, clipped_mask = saturate(leak(v, delta) + i, acc_bits)
    return spike_count(u, theta_int, smax), u, clipped_mask


def mtlif_step(v, i, theta_int, delta: int, smax: int, acc_bits: int):
    """One MT-LIF time step.

    v, i: integer arrays of the same shape (membrane after the previous step; synaptic input).
    Returns (s, v_next, clipped_mask): spike counts 0..Smax, the membrane after subtractive reset,
    and which neurons hit the accumulator limit this step.
    """
    s, u, clipped_mask = mtlif_update(v, i, theta_int, delta, smax, acc_bits)
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
