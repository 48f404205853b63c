"""Ideal (damped) Gauss–Newton targets (paper §3.1, Theorem 2; SPEC §4.9, §11).

For every sample b and layer i the Jacobian of the output w.r.t. the layer's post-activation,

    J_i^b = ∂h_L^b / ∂h_i^b ∈ ℝ^{n_L×n_i},

is obtained for all samples at once by n_L batched reverse sweeps written as one matrix recursion
(J_L = I,  J_i = (J_{i+1} ⊙ φ′_{i+1}(a_{i+1})) W_{i+1}), and the damped Gauss–Newton displacement is

    Δ_i^b = J_i^bᵀ (J_i^b J_i^bᵀ + λ I)⁻¹ g^b      (λ > 0; = (JᵀJ + λI)⁻¹ Jᵀ g when n_i ≤ n_L)
    Δ_i^b = (J_i^b)⁺ g^b                          (λ = 0, Moore–Penrose pseudo-inverse)

with g^b = ∂ℒ/∂h_L^b of the minibatch-mean loss.  The GNT target is ĥ_i = h_i − Δ_i.  No loop over samples
or output units: every solve is batched.

The Jacobians are the network's own (:meth:`tp.interface.Network.output_jacobians`): for the MLP the matrix
recursion above, for the CNN of SPEC §8 (max-pool outputs h_1, h_2 flattened channel-major) n_L reverse-mode
sweeps of autograd through the recomputed layers.  The damped solve is the same for both, and the
displacements are returned in the shape of h_i.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .interface import Forward, Network, Params

__all__ = ["output_jacobians", "damped_gn_displacement", "gn_displacements"]


def output_jacobians(net: Network, params: Params, fwd: Forward,
                     layers: Sequence[int] | None = None) -> dict[int, Tensor]:
    """``{i: J_i}`` for ``layers`` (default i = 1…L), J_i of shape (..., B, n_L, n_i) (n_i flattened)."""
    return net.output_jacobians(params, fwd, layers)


def damped_gn_displacement(J: Tensor, g: Tensor, damping: float) -> Tensor:
    """Δ = Jᵀ(JJᵀ + λI)⁻¹ g per sample (λ = 0: J⁺ g).  ``J`` (..., B, n_L, n), ``g`` (..., B, n_L)."""
    n_L, n = J.shape[-2], J.shape[-1]
    g = g.unsqueeze(-1)  # (..., B, n_L, 1)
    if damping == 0:
        return (torch.linalg.pinv(J) @ g).squeeze(-1)
    if damping < 0:
        raise ValueError(f"the Gauss-Newton damping must be >= 0, got {damping}")
    Jt = J.mT
    if n <= n_L:  # (JᵀJ + λI)⁻¹ Jᵀ g, an n×n system
        A = Jt @ J + damping * torch.eye(n, dtype=J.dtype, device=J.device)
        return torch.linalg.solve_ex(A, Jt @ g)[0].squeeze(-1)  # _ex: no host sync for error checks
    A = J @ Jt + damping * torch.eye(n_L, dtype=J.dtype, device=J.device)  # n_L×n_L system
    return (Jt @ torch.linalg.solve_ex(A, g)[0]).squeeze(-1)


def gn_displacements(net: Network, params: Params, fwd: Forward, dL_dhL: Tensor,
                     damping: float | Sequence[float], layers: Sequence[int] | None = None) -> dict[int, Tensor]:
    """Δ_i for the given layers (default 1…L) with damping λ (one value, or one per listed layer), each
    shaped like h_i (for the CNN's conv blocks (B, C, H, W))."""
    layers = list(range(1, net.L + 1)) if layers is None else list(layers)
    lams = [float(damping)] * len(layers) if isinstance(damping, (int, float)) else [float(v) for v in damping]
    if len(lams) != len(layers):
        raise ValueError(f"one damping value per layer expected ({len(layers)} layers {layers}), got {lams}")
    J = net.output_jacobians(params, fwd, layers)
    return {i: net.unflatten_layer(i, damped_gn_displacement(J[i], dL_dhL, lam)) for i, lam in zip(layers, lams)}
