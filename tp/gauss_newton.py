"""Ideal (damped) Gauss–Newton targets (paper §3.1, Theorem 2; SPEC §4.9, §11).

For every sample b and layer i the Jacobian of the output w.r.t. the layer's post-activation,

    J_i^b = ∂h_L^b / ∂h_i^b ∈ ℝ^{n_L×n_i},

is obtained for all samples at once by n_L batched reverse sweeps written as one matrix recursion
(J_L = I,  J_i = (J_{i+1} ⊙ φ′_{i+1}(a_{i+1})) W_{i+1}), and the damped Gauss–Newton displacement is

    Δ_i^b = J_i^bᵀ (J_i^b J_i^bᵀ + λ I)⁻¹ g^b      (λ > 0; = (JᵀJ + λI)⁻¹ Jᵀ g when n_i ≤ n_L)
    Δ_i^b = (J_i^b)⁺ g^b                          (λ = 0, Moore–Penrose pseudo-inverse)

with g^b = ∂ℒ/∂h_L^b of the minibatch-mean loss.  The GNT target is ĥ_i = h_i − Δ_i.  No loop over samples
or output units: every solve is batched.

For the CNN of SPEC §8 (:class:`tp.cnn.ConvNet`) the Jacobians of the output w.r.t. the hidden layers (the
max-pool outputs h_1, h_2 and the FC layer h_3, flattened channel-major) come from n_L reverse-mode sweeps of
autograd through the recomputed layers (:func:`conv_output_jacobians`); the damped solve is the same, and
the displacements are returned in the shape of h_i.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .cnn import ConvNet
from .network import MLP, Forward, Params

__all__ = ["output_jacobians", "conv_output_jacobians", "damped_gn_displacement", "gn_displacements"]


def output_jacobians(net: MLP, params: Params, fwd: Forward) -> dict[int, Tensor]:
    """``{i: J_i}`` for i = 1…L with J_i of shape (..., B, n_L, n_i)."""
    out = fwd.output
    n_L = out.shape[-1]
    eye = torch.eye(n_L, dtype=out.dtype, device=out.device)
    # J_L = ∂h_L/∂h_L = I for every sample
    J = {net.L: eye.expand(*out.shape[:-1], n_L, n_L)}
    for i in range(net.L - 1, 0, -1):
        dphi = net.activation(i + 1).derivative(fwd.a[i + 1], fwd.h[i + 1])  # (..., B, n_{i+1})
        W = params[f"W{i + 1}"].unsqueeze(-3)  # (..., 1, n_{i+1}, n_i)
        J[i] = (J[i + 1] * dphi.unsqueeze(-2)) @ W  # (..., B, n_L, n_i)
    return dict(sorted(J.items()))


def conv_output_jacobians(net: ConvNet, params: Params, fwd: Forward, layers: Sequence[int]) -> dict[int, Tensor]:
    """``{k: J_k}`` of the CNN for the given layers, J_k^b = ∂h_4^b/∂h_k^b flattened to (B, n_L, n_k).

    Layers lowest+1…4 are recomputed from h_lowest with autograd; row c of every J_k^b is the gradient of
    Σ_b h_4^b[c] w.r.t. h_k (the samples do not interact, so the batch sum separates them): n_L sweeps."""
    layers = sorted(layers)
    if not layers or layers[0] < 1 or layers[-1] > net.L:
        raise ValueError(f"CNN layers are 1…{net.L}, got {layers}")
    with torch.enable_grad():
        h = {layers[0]: fwd.h[layers[0]].detach().requires_grad_(True)}
        for i in range(layers[0] + 1, net.L + 1):  # h_i = f_i(h_{i−1}), keeping the graph
            h[i] = net.conv_block(params, i, h[i - 1])[2] if i <= 2 else net.fc_layer(params, i, h[i - 1])[1]
        out = h[net.L]  # (B, n_L)
        rows = {k: [] for k in layers}
        for c in range(out.shape[-1]):
            grads = torch.autograd.grad(out[:, c].sum(), [h[k] for k in layers], retain_graph=True)
            for k, g in zip(layers, grads):
                rows[k].append(g.flatten(1))  # (B, n_k)
    return {k: torch.stack(rows[k], dim=1) for k in layers}  # (B, n_L, n_k)


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


def gn_displacements(net: MLP, params: Params, fwd: Forward, dL_dhL: Tensor,
                     damping: float | Sequence[float], layers: Sequence[int] | None = None) -> dict[int, Tensor]:
    """Δ_i for the given layers (default 1…L) with damping λ (one value, or one per listed layer), each
    shaped like h_i (for the CNN's conv blocks (B, C, H, W))."""
    layers = list(range(1, net.L + 1)) if layers is None else list(layers)
    lams = [float(damping)] * len(layers) if isinstance(damping, (int, float)) else [float(v) for v in damping]
    if len(lams) != len(layers):
        raise ValueError(f"one damping value per layer expected ({len(layers)} layers {layers}), got {lams}")
    if isinstance(net, ConvNet):
        J = conv_output_jacobians(net, params, fwd, layers)
        return {i: damped_gn_displacement(J[i], dL_dhL, lam).reshape(fwd.h[i].shape) for i, lam in zip(layers, lams)}
    J = output_jacobians(net, params, fwd)
    return {i: damped_gn_displacement(J[i], dL_dhL, lam) for i, lam in zip(layers, lams)}
