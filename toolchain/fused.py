"""The fused MT-LIF neuron: a layer's T steps as one compiled kernel forward and one backward.

The unfused neuron (``toolchain.neuron``) runs hw_model's step with eager torch: about 17
elementwise passes over memory per time step forward (leak, saturation, count, reset, the
saved tensors) and a dozen backward. Here ``torch.compile`` (inductor: C++/OpenMP with SIMD on
the CPU, Triton on CUDA) turns the whole T-step loop into one kernel that reads each neuron's
currents once and writes its spike counts and its raw membranes once; the backward is a second
kernel that recomputes the surrogate from the saved raw membranes.

The forward computes what ``hw_model.neuron.mtlif_step`` computes, on the same integers
(int32 where ``hw_model.neuron.int32_is_exact`` proves it, else float64 holding integers):

    raw_t = trunc(V_{t-1} * (4096 - delta) / 4096) + I_t      trunc: rounding toward zero
    U_t   = clip(raw_t, -L, L)                                L = 2**(A-1) - 1
    s_t   = clip(floor(U_t / theta), 0, Smax)                 the quotient in float64: exact
    V_t   = U_t - s_t * theta

floor(U / theta) of integers below 2**53 computed as the correctly rounded float64 quotient is
exact (hw_model.neuron's argument); tests/toolchain/test_fused.py checks the kernel against
hw_model bit for bit over shapes, Smax, thresholds, delta and accumulator widths.

Saved for the backward: raw_t only (int32 or float64, one value per neuron and step), from which
U_t, the clip mask (U_t != raw_t) and x_t = U_t / theta are recomputed.

Where torch.compile cannot run (no C++ compiler, no Triton, an old torch), the first call fails,
``available()`` becomes False with the reason, one note goes to stderr, and every caller uses the
unfused neuron (same integers, slower). Compilation happens at the first call of each kernel
variant (per T, delta = 0 or not, state dtype, surrogate curve; sizes and values are dynamic) and
its time is added up in ``compile_seconds()``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import types
import weakref

import torch

from mtsnn.hw_model import neuron as chip
from . import surrogate as _surrogates

__all__ = ["available", "unavailable_reason", "compile_seconds", "fused_forward", "fused_backward", "block_forward",
           "block_backward", "quantize_weight", "disable"]

_state = {"available": None, "reason": None, "compile_seconds": 0.0}
_kernels: dict = {}
_quantizers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def available() -> bool | None:
    """False once compilation failed (or MTSNN_FUSED=off); None while untried; True once it ran."""
    if os.environ.get("MTSNN_FUSED", "").lower() in ("0", "off", "no", "false"):
        return False
    return _state["available"]


def unavailable_reason() -> str | None:
    if os.environ.get("MTSNN_FUSED", "").lower() in ("0", "off", "no", "false"):
        return "MTSNN_FUSED=off"
    return _state["reason"]


def compile_seconds() -> float:
    """Seconds spent in first calls (compilation) of the fused kernels in this process."""
    return _state["compile_seconds"]


def disable(reason: str) -> None:
    """Use the unfused neuron from now on; say why once on stderr."""
    if _state["available"] is False:
        return
    _state.update(available=False, reason=reason)
    print(f"mtsnn: note: the fused MT-LIF neuron is unavailable ({reason}); using the unfused neuron "
          "(the same integers, slower)", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the kernels' bodies


def _forward_body(currents, theta, shift, mult, smax, limit, *, steps: int, constant: bool, int_state: bool,
                  leak: bool, pow2: bool):
    """currents: (N,) when constant over the steps, else (steps, N); float, integer-valued.
    theta: 0-dim float64 tensor holding an integer; shift: 0-dim int32, log2(theta) when ``pow2``.
    Returns (spikes (steps, N) in the currents' dtype, raw membranes (steps, N) in the state dtype)."""
    dtype = torch.int32 if int_state else torch.float64
    v = None
    spikes, raws = [], []
    for t in range(steps):
        i = (currents if constant else currents[t]).to(dtype)
        s, raw, v = _neuron_step(v, i, theta, shift, mult, smax, limit, dtype, leak, int_state and pow2)
        spikes.append(s.to(currents.dtype))
        raws.append(raw)
    return torch.stack(spikes), torch.stack(raws)


def _backward_body(grad_spikes, raws, theta, keep, smax, limit, *, steps: int, constant: bool, curve: int,
                   a: float, b: float):
    """BPTT of ``toolchain.neuron`` (its docstring) from the saved raw membranes; grad (steps, N),
    or (N,) summed over the steps when the currents were constant over them."""
    th = theta.to(torch.float32)
    grad_v = None
    grads = [None] * steps
    for t in range(steps - 1, -1, -1):
        raw = raws[t]
        u = _clip(raw, limit)
        x = u.to(torch.float32) / th  # the membrane in threshold units, as the unfused neuron saves it
        g = grad_spikes[t] * (_surrogate(x, smax, curve, a, b) / th)
        if grad_v is not None:
            g = g + grad_v
        g = torch.where(u == raw, g, torch.zeros_like(g))  # saturation passes no gradient
        grads[t] = g
        grad_v = g * keep
    if constant:
        total = grads[0]
        for g in grads[1:]:
            total = total + g
        return total
    return torch.stack(grads)


def _clip(x, limit):
    """clip(x, -L, L) with L a 0-dim tensor: minimum/maximum, never a read of L (torch.clamp with
    tensor bounds lowers to reading them back to the host)."""
    return torch.maximum(torch.minimum(x, limit), -limit)


def _count(crossed, smax):
    """clip(crossed, 0, Smax), Smax a 0-dim tensor."""
    return torch.minimum(torch.clamp(crossed, min=0), smax)


def _surrogate(x, smax, curve: int, a: float, b: float):
    """``toolchain.surrogate.surrogate_derivative`` (the same formulas) with Smax a 0-dim tensor."""
    return _surrogates.surrogate_of_offset(x - torch.minimum(torch.clamp(torch.round(x), min=1), smax), curve, a, b)


def _neuron_step(v, i, theta, shift, mult, smax, limit, dtype, leak: bool, by_shift: bool):
    """One exact MT-LIF step (hw_model.neuron.mtlif_step): (s, raw, v_next). ``by_shift``: int32
    state and theta = 2**shift: the count is an arithmetic shift (a floor, as hw_model's), else the
    floor of the float64 quotient."""
    if v is None:
        raw = i
    elif leak:
        scaled = v * mult  # mult = 4096 - delta
        lv = torch.div(scaled, chip.LEAK_DENOMINATOR, rounding_mode="trunc") if dtype == torch.int32 else \
            torch.trunc(scaled / chip.LEAK_DENOMINATOR)
        raw = lv + i
    else:
        raw = v + i
    u = _clip(raw, limit)
    if by_shift:
        s = _count(torch.bitwise_right_shift(u, shift), smax)
        return s, raw, u - torch.bitwise_left_shift(s, shift)
    s = _count(torch.floor(u.to(torch.float64) / theta), smax)
    return s, raw, u - (s * theta).to(dtype)


def _block_forward_body(currents, theta, shift, mult, smax, limit, *, steps: int, constant: bool, int_state: bool,
                        leak: bool, pow2: bool, chw: tuple, k: int, emit_first: bool, pool_int: bool):
    """A spiking layer and the pooling layer after it in one kernel: MT-LIF (theta, delta) on the
    currents (B, C, H, W) [or (steps, B, C, H, W)], the k x k sums of its counts (avg_pool2d with
    divisor 1: the last H % k rows and W % k columns dropped), MT-LIF with theta = k*k and no leak.
    Returns (pool spikes (steps, B, C, H//k, W//k), raws (steps, B*C*H*W), pool raws (float64),
    [the first layer's spikes when emit_first])."""
    C, H, W = chw
    H2, W2 = H // k, W // k
    dtype = torch.int32 if int_state else torch.float64
    dtype2 = torch.int32 if pool_int else torch.float64
    kk = k * k
    shift2 = kk.bit_length() - 1 if kk & (kk - 1) == 0 else None
    v1 = v2 = None
    out2, raws1, raws2, out1 = [], [], [], []
    for t in range(steps):
        i = (currents if constant else currents[t]).to(dtype)
        s1, raw1, v1 = _neuron_step(v1, i, theta, shift, mult, smax, limit, dtype, leak, int_state and pow2)
        pooled = s1[:, :, : H2 * k, : W2 * k].to(dtype2).reshape(-1, C, H2, k, W2, k).sum(dim=(3, 5),
                                                                                          dtype=dtype2)
        s2, raw2, v2 = _neuron_step(v2, pooled, float(kk), shift2, mult, smax, limit, dtype2, False,
                                    pool_int and shift2 is not None)
        out2.append(s2.to(currents.dtype))
        raws1.append(raw1.reshape(-1))
        raws2.append(raw2.reshape(-1))
        if emit_first:
            out1.append(s1.to(currents.dtype))
    result = (torch.stack(out2), torch.stack(raws1), torch.stack(raws2))
    return result + (torch.stack(out1),) if emit_first else result


def _block_backward_body(grad_spikes2, raws1, raws2, theta, keep, smax, limit, *, steps: int, constant: bool,
                         chw: tuple, k: int, curve: int, a: float, b: float):
    """BPTT through ``_block_forward_body``: grad (steps, B, C, H, W) of its currents, or
    (B, C, H, W) summed over the steps when they were constant."""
    C, H, W = chw
    H2, W2 = H // k, W // k
    th1 = theta.to(torch.float32)
    th2 = float(k * k)
    gv1 = gv2 = None
    grads = [None] * steps
    for t in range(steps - 1, -1, -1):
        raw2 = raws2[t]
        u2 = _clip(raw2, limit)
        g2 = grad_spikes2[t].reshape(-1) * (_surrogate(u2.to(torch.float32) / th2, smax, curve, a, b) / th2)
        if gv2 is not None:
            g2 = g2 + gv2
        g2 = torch.where(u2 == raw2, g2, torch.zeros_like(g2))
        gv2 = g2  # no leak in a pooling layer
        up = g2.reshape(-1, C, H2, 1, W2, 1).expand(-1, C, H2, k, W2, k).reshape(-1, C, H2 * k, W2 * k)
        if H2 * k != H or W2 * k != W:
            up = torch.nn.functional.pad(up, (0, W - W2 * k, 0, H - H2 * k))
        raw1 = raws1[t]
        u1 = _clip(raw1, limit)
        g1 = up.reshape(-1) * (_surrogate(u1.to(torch.float32) / th1, smax, curve, a, b) / th1)
        if gv1 is not None:
            g1 = g1 + gv1
        g1 = torch.where(u1 == raw1, g1, torch.zeros_like(g1))
        gv1 = g1 * keep
        grads[t] = g1
    if constant:
        total = grads[0]
        for g in grads[1:]:
            total = total + g
        return total.reshape(-1, C, H, W)
    return torch.stack(grads).reshape(steps, -1, C, H, W)


_BODIES = {"forward": _forward_body, "backward": _backward_body, "block_forward": _block_forward_body,
           "block_backward": _block_backward_body}


def _kernel(kind: str, static: tuple):
    fn = _kernels.get((kind, static))
    if fn is None:
        body = _BODIES[kind]
        options = dict(static)

        def bound(*args):
            return body(*args, **options)

        # a code object of its own per variant: dynamo caches compiled code per code object, and
        # closures sharing one would pile their variants onto one cache (and its recompile limit)
        bound = types.FunctionType(bound.__code__.replace(co_name=f"mtlif_{kind}_{len(_kernels)}"),
                                   bound.__globals__, None, None, bound.__closure__)
        # static shapes but for the batch (marked at each call): index arithmetic over symbolic
        # channel/height/width sizes keeps inductor's C++ from vectorising (3-10x slower kernels)
        fn = torch.compile(bound, dynamic=False, fullgraph=True)
        _kernels[(kind, static)] = fn
    return fn


def _mark_batch(tensor: torch.Tensor, dim: int) -> None:
    """Let the compiled kernel take any size along ``dim`` (the batch, or neurons x batch)."""
    if tensor.dim() > dim:
        torch._dynamo.maybe_mark_dynamic(tensor, dim)


def _call(kind: str, static: tuple, *args):
    """Run a kernel; None if the fused neuron is (or just became) unavailable."""
    if available() is False:
        return None
    options = dict(static)
    first_tensor_batch = 0 if options.get("constant") and kind.endswith("forward") else 1
    if kind in ("forward", "backward"):  # flat (N,) or (steps, N): N is the batch times the neurons
        for tensor in args[:2]:
            _mark_batch(tensor, tensor.dim() - 1)
    elif kind == "block_forward":
        _mark_batch(args[0], first_tensor_batch)
    else:  # block_backward: grad (steps, B, C, H2, W2), raws (steps, N1), raws2 (steps, N2)
        for tensor in args[:3]:
            _mark_batch(tensor, 1)
    first = (kind, static) not in _kernels
    started = time.perf_counter()
    try:
        out = _kernel(kind, static)(*args)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: fall back, once, and say why
        _kernels.pop((kind, static), None)
        text = " ".join(str(exc).split())[:200]
        disable(f"torch.compile failed: {type(exc).__name__}: {text}")
        return None
    if first:
        _state["compile_seconds"] += time.perf_counter() - started
    _state["available"] = True
    return out


@functools.lru_cache(maxsize=256)
def _shift(value: int, device) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.int32, device=device)


def _power_of_two(theta_int, device) -> tuple[bool, torch.Tensor]:
    """(theta is a known power of two, its log2 as a 0-dim int32). A tensor theta is never read."""
    if isinstance(theta_int, torch.Tensor):
        return False, _shift(0, device)
    value = int(theta_int)
    if value == theta_int and value > 0 and value & (value - 1) == 0:
        return True, _shift(value.bit_length() - 1, device)
    return False, _shift(0, device)


@functools.lru_cache(maxsize=256)
def _values(device, delta: int, smax: int, acc_bits: int, forward: bool) -> tuple:
    """The layer's numbers as 0-dim tensors: values, not constants of the compiled code (no
    recompilation per Smax, delta or accumulator width). Forward: (4096 - delta, Smax, L);
    backward: ((4096 - delta) / 4096 in float32, Smax, L). Cached: made once per device (a copy
    to a GPU at every step would wait for it)."""
    limit = torch.tensor(chip.accumulator_limit(acc_bits), dtype=torch.int64, device=device)
    smax_t = torch.tensor(smax, dtype=torch.int64, device=device)
    if forward:
        return torch.tensor(chip.LEAK_DENOMINATOR - delta, dtype=torch.int64, device=device), smax_t, limit
    keep = torch.tensor((chip.LEAK_DENOMINATOR - delta) / chip.LEAK_DENOMINATOR, dtype=torch.float32, device=device)
    return keep, smax_t, limit


def _theta64(theta_int, device) -> torch.Tensor:
    if isinstance(theta_int, torch.Tensor):
        return theta_int.to(device=device, dtype=torch.float64)
    return torch.tensor(float(theta_int), dtype=torch.float64, device=device)


def fused_forward(currents: torch.Tensor, theta_int, *, steps: int, constant: bool, delta: int, smax: int,
                  acc_bits: int, int_state: bool, compiled: bool = True):
    """(spikes, raws) of a layer; ``compiled=False`` (or compilation unavailable): the same
    kernel body run eagerly (the same integers)."""
    pow2, shift = _power_of_two(theta_int, currents.device)
    static = (("steps", steps), ("constant", constant), ("int_state", int_state), ("leak", delta != 0), ("pow2", pow2))
    args = (currents, _theta64(theta_int, currents.device), shift,
            *_values(currents.device, delta, smax, acc_bits, forward=True))
    out = _call("forward", static, *args) if compiled else None
    return out if out is not None else _forward_body(*args, **dict(static))


def fused_backward(grad_spikes: torch.Tensor, raws: torch.Tensor, theta: torch.Tensor, *, steps: int, constant: bool,
                   delta: int, smax: int, acc_bits: int, curve: int, a: float, b: float, compiled: bool = True):
    static = (("steps", steps), ("constant", constant), ("curve", curve), ("a", float(a)), ("b", float(b)))
    args = (grad_spikes, raws, theta, *_values(grad_spikes.device, delta, smax, acc_bits, forward=False))
    out = _call("backward", static, *args) if compiled else None
    return out if out is not None else _backward_body(*args, **dict(static))


def block_forward(currents: torch.Tensor, theta_int, *, steps: int, constant: bool, delta: int, smax: int,
                  acc_bits: int, int_state: bool, chw: tuple, k: int, emit_first: bool, compiled: bool = True):
    pow2, shift = _power_of_two(theta_int, currents.device)
    pool_int = chip.int32_is_exact(acc_bits, 0, k * k, k * k * smax)
    static = (("steps", steps), ("constant", constant), ("int_state", int_state), ("leak", delta != 0), ("pow2", pow2),
              ("chw", tuple(chw)), ("k", k), ("emit_first", emit_first), ("pool_int", pool_int))
    args = (currents, _theta64(theta_int, currents.device), shift,
            *_values(currents.device, delta, smax, acc_bits, forward=True))
    out = _call("block_forward", static, *args) if compiled else None
    return out if out is not None else _block_forward_body(*args, **dict(static))


def block_backward(grad_spikes2: torch.Tensor, raws1: torch.Tensor, raws2: torch.Tensor, theta: torch.Tensor, *,
                   steps: int, constant: bool, delta: int, smax: int, acc_bits: int, chw: tuple, k: int, curve: int,
                   a: float, b: float, compiled: bool = True):
    static = (("steps", steps), ("constant", constant), ("chw", tuple(chw)), ("k", k), ("curve", curve),
              ("a", float(a)), ("b", float(b)))
    args = (grad_spikes2, raws1, raws2, theta, *_values(grad_spikes2.device, delta, smax, acc_bits, forward=False))
    out = _call("block_backward", static, *args) if compiled else None
    return out if out is not None else _block_backward_body(*args, **dict(static))


def quantize_weight(layer: torch.nn.Module):
    """Brevitas's weight quantizer of ``layer`` (a QuantConv2d / QuantLinear), compiled: the
    (value, scale) that ``layer.quant_weight()`` gives (the same tensors), without its ~0.3 ms of
    Python per call. None where compilation is unavailable (the caller then calls Brevitas as is)."""
    if available() is False:
        return None
    fn = _quantizers.get(layer)
    first = fn is None
    if first:
        fn = torch.compile(layer.weight_quant.tensor_quant, dynamic=False, fullgraph=True)
        _quantizers[layer] = fn
    started = time.perf_counter()
    try:
        out = fn(layer.weight)
    except Exception as exc:  # noqa: BLE001
        _quantizers.pop(layer, None)
        disable(f"torch.compile failed on Brevitas's quantizer: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        return None
    if first:
        _state["compile_seconds"] += time.perf_counter() - started
    return out[0], out[1]
