"""Synaptic input I = sum(W_int * x) + b_int, computed exactly and fast with numpy.

numpy has no BLAS for integer matrices, but a float GEMM on integer values is exact as long as
every partial sum is an integer the float type represents exactly. For a neuron with weights
W[o, :] and inputs 0 <= x <= smax_in, every partial sum of its dot product (in any order, with
or without fused multiply-add) and the bias is bounded in magnitude by

    bound[o] = smax_in * sum(|W[o, :]|) + |b[o]|

because each product |W x| <= smax_in |W| and partial sums of terms cannot exceed the sum of
their magnitudes. Every integer of magnitude <= 2**24 (float32) or <= 2**53 (float64) is exactly
representable, each product is such an integer, and a sum of two such numbers whose exact result
is such an integer is computed exactly (IEEE 754 rounds an exactly representable result to
itself). So: float32 when max(bound) <= 2**24, float64 when <= 2**53, else exact int64 matmul.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .network import ConvLayer, DenseLayer, PoolLayer
from .neuron import int32_is_exact

__all__ = [
    "FLOAT32_EXACT_LIMIT",
    "FLOAT64_EXACT_LIMIT",
    "partial_sum_bound",
    "exact_gemm_dtype",
    "synaptic_input",
    "im2col",
]

FLOAT32_EXACT_LIMIT = 2**24
FLOAT64_EXACT_LIMIT = 2**53


def partial_sum_bound(layer, smax_in: int) -> int:
    """Largest |partial sum| any neuron of ``layer`` can reach for inputs in 0..smax_in."""
    if isinstance(layer, PoolLayer):
        return layer.fan_in * smax_in
    weight_abs = np.abs(layer.weight.reshape(layer.weight.shape[0], -1)).sum(axis=1)
    return int((weight_abs * smax_in + np.abs(layer.bias)).max())


def neuron_state_dtype(layer, input_bound: int) -> np.dtype:
    """int32 for the layer's membranes and currents where ``hw_model.neuron.int32_is_exact``
    proves it exact for inputs bounded by ``input_bound`` (``partial_sum_bound``), else int64."""
    p = layer.neuron
    exact = int32_is_exact(p.acc_bits, p.delta, p.theta_int, input_bound)
    return np.dtype(np.int32) if exact else np.dtype(np.int64)


def exact_gemm_dtype(bound: int) -> np.dtype:
    """The cheapest dtype whose GEMM is exact for partial sums bounded by ``bound``."""
    if bound <= FLOAT32_EXACT_LIMIT:
        return np.dtype(np.float32)
    if bound <= FLOAT64_EXACT_LIMIT:
        return np.dtype(np.float64)
    return np.dtype(np.int64)


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """(B, C, H, W) -> (B, OH, OW, C*k*k) patches, in the weight's (C, kh, kw) order."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))  # (B, C, H', W', k, k)
    windows = windows[:, :, ::stride, ::stride]
    b, c, oh, ow = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(b, oh, ow, c * kernel * kernel)


def _gemm(patches: np.ndarray, weight_2d: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """patches (M, K) @ weight_2d.T (K, O) exactly, returned as int64 (M, O)."""
    if dtype == np.int64:
        return patches.astype(np.int64) @ weight_2d.T
    out = patches.astype(dtype) @ weight_2d.T.astype(dtype)
    return out.astype(np.int64)


def synaptic_input(layer, x: np.ndarray, smax_in: int) -> np.ndarray:
    """I for a batch of input spike counts.

    x: (B, *layer.in_shape) integer counts in 0..smax_in (for a dense layer any shape that
    flattens to its fan-in). Returns (B, *layer.out_shape) int64, bias included.
    """
    if isinstance(layer, PoolLayer):
        k = layer.kernel
        b, c, h, w = x.shape
        oh, ow = h // k, w // k
        cropped = x[:, :, : oh * k, : ow * k].astype(np.int64, copy=False)
        return cropped.reshape(b, c, oh, k, ow, k).sum(axis=(3, 5))
    dtype = exact_gemm_dtype(partial_sum_bound(layer, smax_in))
    if isinstance(layer, DenseLayer):
        out = _gemm(x.reshape(x.shape[0], -1), layer.weight, dtype)
        return out + layer.bias
    if isinstance(layer, ConvLayer):
        patches = im2col(x, layer.kernel, layer.stride, layer.padding)
        b, oh, ow, k = patches.shape
        out = _gemm(patches.reshape(b * oh * ow, k), layer.weight.reshape(layer.weight.shape[0], -1), dtype)
        out = out + layer.bias
        return out.reshape(b, oh, ow, -1).transpose(0, 3, 1, 2)
    raise TypeError(f"unknown layer type {type(layer).__name__}")
