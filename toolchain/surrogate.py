"""Surrogate gradients for the multi-threshold firing function s = clip(floor(x), 0, Smax).

x = U / theta is the membrane in threshold units. The true derivative is a train of Dirac
spikes at x = 1, 2, ..., Smax. Following Xu, Liu & Yang (2021), each curve is a sum of bumps
centred on the thresholds k (k = 1..Smax) with height parameter ``a`` and steepness ``b``
(paper defaults: curve 2, a = 1, b = 20). The bumps are narrow next to the spacing of 1 between
thresholds, so we evaluate only the bump of the nearest threshold, k* = clip(round(x), 1, Smax),
with d = x - k*: one bump per element instead of Smax. What that leaves out is the neighbouring
bumps' tails, largest midway between two thresholds (|d| = 1/2): at b = 20 they are 9e-4 a
(curve 1), 6.7e-3 a (curve 2) and 0 (curve 3, whose bumps end at 2/sqrt(b) < 1/2). Our exact
formulas (the paper leaves them to implementations; docs/semantics.md):

- curve 1, sigmoid-derivative bumps:  g1(d) = a * b * sig(b d) * (1 - sig(b d))
  each bump integrates to a (the height of one step); its peak a*b/4 can exceed 1 (5 at b=20).
- curve 2, Gaussian bumps:            g2(d) = a * exp(-b d^2)
  bounded by a; standard deviation 1/sqrt(2b) threshold units (0.16 at b = 20).
- curve 3, triangular bumps:          g3(d) = a * max(0, 1 - |d| sqrt(b) / 2)
  bounded by a; half-width 2/sqrt(b) threshold units.

Below the first threshold the bump of k = 1 applies and above Smax the bump of k = Smax, so a
neuron far below threshold or deep in saturation gets (almost) no gradient, as the true
function has none.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SURROGATE_CURVES", "surrogate_derivative", "surrogate_of_offset"]

SURROGATE_CURVES = (1, 2, 3)


def _nearest_threshold_offset(x: torch.Tensor, smax: int) -> torch.Tensor:
    return x - torch.clamp(torch.round(x), 1, smax)


def surrogate_derivative(x: torch.Tensor, smax: int, curve: int = 2, a: float = 1.0, b: float = 20.0) -> torch.Tensor:
    """d s / d x for membrane ``x`` in threshold units, elementwise; same shape and dtype."""
    return surrogate_of_offset(_nearest_threshold_offset(x, smax), curve, a, b)


def surrogate_of_offset(d: torch.Tensor, curve: int, a: float, b: float) -> torch.Tensor:
    """The curve itself, of ``d`` = x minus its nearest threshold in 1..Smax (shared with the
    fused kernels, which compute ``d`` with Smax as a tensor)."""
    if curve == 1:
        sig = torch.sigmoid(b * d)
        return a * b * sig * (1 - sig)
    if curve == 2:
        return a * torch.exp(-b * d * d)
    if curve == 3:
        return a * torch.clamp(1 - d.abs() * (math.sqrt(b) / 2), min=0)
    raise ValueError(f"surrogate curve: expected 1, 2 or 3, found {curve}")
