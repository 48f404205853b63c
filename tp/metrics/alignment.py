"""Alignment of any rule's forward update with the loss gradient and with damped Gauss–Newton targets
(paper §4 / Fig. 4, S4–S7; docs/algorithms.md#alignment-with-bp-and-gnt-updates).  Metrics only: no rule imports this
module.

For a minibatch at parameters θ, the *method's update* of layer i is the weight part ΔW_i of its
``forward_grads`` (what the optimiser would descend).  It is compared, per layer, on the flattened matrix,
with

* **BP**: ∂ℒ/∂W_i of the same minibatch loss, and
* **damped GNT**: the local-loss gradient (docs/algorithms.md#the-local-layer-loss) of the Gauss–Newton target ĥ_i = h_i
  − Δ_i with
  Δ_i = J_iᵀ(J_iJ_iᵀ + λ_i I)⁻¹ ∂ℒ/∂h_L and a damping λ_i per hidden layer (docs/algorithms.md#the-two-references), and,
  when asked (``log_alignment_ggn``; beyond the paper),
* **damped GGN**: the same with the generalized Gauss–Newton target of paper Appendix D,
  Δ_i = (J_iᵀ H J_i + λ_i I)⁻¹ J_iᵀ ∂ℒ/∂h_L, H the per-sample Hessian of the loss w.r.t. h_L (docs/ggn.md),

by angle(A, B) = (180/π)·arccos(⟨A, B⟩_F / (‖A‖_F ‖B‖_F)), the cosine clipped to [−1, 1].

Everything goes through the network interface (:mod:`tp.nets.interface`), so the CNN of docs/algorithms.md#the-cnn-table-3
(Fig. S7) gets the same quantities per layer, conv kernels flattened: its BP gradient by autograd, and damped GNT with
Δ_k from the Jacobians of the output w.r.t. the max-pool outputs h_1, h_2 and h_3, turned into updates by the CNN's
local losses (docs/algorithms.md#cnn-forward-updates: conv blocks ∝ autograd.grad(h_k, W_k, Δ_k); FC 3 by
docs/algorithms.md#the-local-layer-loss).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from ..nets.gauss_newton import ggn_displacements, gn_displacements, output_hessian_roots, output_hessian_sqrt
from ..nets.interface import Forward, Network, Params

__all__ = ["angle", "bp_reference", "gnt_reference", "ggn_reference", "alignment_angles", "DAMPING_CANDIDATES"]

#: the damping values of the search (docs/algorithms.md#the-damping-search-table-s7)
DAMPING_CANDIDATES = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def angle(a: Tensor, b: Tensor) -> Tensor:
    """Angle in degrees between two updates, flattened over all their elements (a 0-d tensor).

    Scale-invariant; 0° for identical and 180° for opposite directions.  A zero update has no direction:
    it is an error, never a silent 90°.
    """
    a, b = a.reshape(-1), b.reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"updates of different sizes: {a.numel()} and {b.numel()} elements")
    na, nb = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    if bool(na == 0) or bool(nb == 0):
        raise ValueError("angle of a zero update: it has no direction")
    cos = torch.clamp(torch.dot(a, b) / (na * nb), -1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def bp_reference(net: Network, params: Params, fwd: Forward, y: Tensor) -> Params:
    """∂ℒ/∂θ of the minibatch loss (the BP gradient) at the forward pass ``fwd``."""
    return net.backprop_gradients(params, fwd, net.output_gradient(fwd.output, y))


def gnt_reference(net: Network, params: Params, fwd: Forward, y: Tensor,
                  damping: float | Sequence[float]) -> Params:
    """Local-loss gradients of the damped GNT targets of the hidden layers 1…L−1
    (docs/algorithms.md#the-two-references).

    ``damping``: one λ, or one per hidden layer (``gn_damping_per_hidden_layer`` of the figure configs).
    """
    hidden, lams = _hidden_dampings(net, damping)
    delta = gn_displacements(net, params, fwd, net.output_gradient(fwd.output, y), lams, layers=hidden)
    return net.local_loss_gradients(params, fwd, {i: fwd.h[i] - d for i, d in delta.items()})


def ggn_reference(net: Network, params: Params, fwd: Forward, y: Tensor,
                  damping: float | Sequence[float], hessian_damping: float = 0.0) -> Params:
    """Local-loss gradients of the damped GGN targets of the hidden layers 1…L−1 (paper Appendix D, eq. 187 in
    h_i; :func:`tp.nets.gauss_newton.ggn_displacements`), with the λ_i of :func:`gnt_reference`; ``hessian_damping``
    δ > 0: of H_δ = H + δP instead of H (the Hessian DDTP-GGN's feedback reads, ``output_hessian_roots``)."""
    hidden, lams = _hidden_dampings(net, damping)
    if hessian_damping:
        M = output_hessian_roots(net, fwd.output, hessian_damping)[0]  # RᵀR = H_δ per sample (R symmetric)
    else:
        M = output_hessian_sqrt(net, fwd.output)  # MᵀM = H per sample
    delta = ggn_displacements(net, params, fwd, net.output_gradient(fwd.output, y), M, lams, layers=hidden)
    return net.local_loss_gradients(params, fwd, {i: fwd.h[i] - d for i, d in delta.items()})


def _hidden_dampings(net: Network, damping) -> tuple[list[int], list[float]]:
    hidden = list(range(1, net.L))
    return hidden, [float(damping)] * len(hidden) if isinstance(damping, (int, float)) else list(damping)


def alignment_angles(net: Network, params: Params, fwd: Forward, y: Tensor, update: Mapping[str, Tensor],
                     damping: float | Sequence[float] | None = None, ggn: bool = False,
                     ggn_hessian_damping: float | None = None) -> list[dict]:
    """Tidy rows ``{layer, reference, angle}``: the angle of the update of every weight matrix with BP
    (all layers) and, when ``damping`` is given, with damped GNT (hidden layers), and with ``ggn`` also with
    damped GGN (reference ``"ggn"``, the same λ_i) and, given ``ggn_hessian_damping`` δ, with the damped GGN
    update of H + δP (reference ``"ggn_delta"``).  A layer whose update
    (or reference) is exactly zero has no direction: it gets ``nan`` (written as an empty field), never
    a number it does not have."""
    rows = []
    refs = {"bp": bp_reference(net, params, fwd, y)}
    if damping is not None:
        refs["gnt"] = gnt_reference(net, params, fwd, y, damping)
        if ggn:
            refs["ggn"] = ggn_reference(net, params, fwd, y, damping)
        if ggn and ggn_hessian_damping is not None:
            refs["ggn_delta"] = ggn_reference(net, params, fwd, y, damping, ggn_hessian_damping)
    elif ggn:
        raise ValueError("the GGN reference needs the damping λ_i (gn_damping_per_hidden_layer)")
    for reference, grads in refs.items():
        for i in range(1, net.L + 1):
            key = f"W{i}"
            if key not in grads or key not in update:
                continue
            try:
                value = float(angle(update[key], grads[key]))
            except ValueError:
                value = math.nan
            rows.append({"layer": i, "reference": reference, "angle": value})
    return rows
