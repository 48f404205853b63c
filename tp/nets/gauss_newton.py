"""Ideal (damped) Gauss–Newton targets (paper §3.1, Theorem 2; docs/algorithms.md#gnt,
docs/algorithms.md#computing-gn-displacements).

For every sample b and layer i the Jacobian of the output w.r.t. the layer's post-activation,

    J_i^b = ∂h_L^b / ∂h_i^b ∈ ℝ^{n_L×n_i},

is obtained for all samples at once by n_L batched reverse sweeps written as one matrix recursion
(J_L = I,  J_i = (J_{i+1} ⊙ φ′_{i+1}(a_{i+1})) W_{i+1}), and the damped Gauss–Newton displacement is

    Δ_i^b = J_i^bᵀ (J_i^b J_i^bᵀ + λ I)⁻¹ g^b      (λ > 0; = (JᵀJ + λI)⁻¹ Jᵀ g when n_i ≤ n_L)
    Δ_i^b = (J_i^b)⁺ g^b                          (λ = 0, Moore–Penrose pseudo-inverse)

with g^b = ∂ℒ/∂h_L^b of the minibatch-mean loss.  The GNT target is ĥ_i = h_i − Δ_i.  No loop over samples
or output units: every solve is batched.

The Jacobians are the network's own (:meth:`tp.nets.interface.Network.output_jacobians`): for the MLP the matrix
recursion above, for the CNN of docs/algorithms.md#the-cnn-table-3 (max-pool outputs h_1, h_2 flattened channel-major)
n_L reverse-mode sweeps of autograd through the recomputed layers.  The damped solve is the same for both, and the
displacements are returned in the shape of h_i.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
from torch import Tensor

from ..core.replicas import per_replica
from .interface import Forward, Network, Params

__all__ = ["output_jacobians", "damped_gn_displacement", "gn_displacements", "output_hessian",
           "helmert_basis", "softmax_hessian_eigh", "softmax_hessian_sqrt", "output_hessian_sqrt",
           "output_hessian_roots", "damped_ggn_displacement",
           "ggn_displacements"]


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


# --- generalized Gauss–Newton (paper Appendix D) ------------------------------------------------------------

def output_hessian(net: Network, output: Tensor) -> Tensor:
    """H^b = ∂²ℓ_b/∂(h_L^b)², the Hessian of the per-sample loss ℓ_b w.r.t. the network output (Appendix D),
    (..., B, n_L, n_L).  Cross-entropy after the softmax: diag(p^b) − p^b p^bᵀ with p^b = softmax(h_L^b)
    (PSD, rank n_L − 1: its null space is the all-ones direction, along which the softmax does not change);
    mse (ℓ_b = mean_k (h_{L,k}^b − y_k^b)²): (2/n_L) I.  The L2 loss ½‖h_L − y‖² of the paper's Gauss–Newton
    theory has H = I, for which the GGN targets are the GN targets."""
    n_L = output.shape[-1]
    if net.loss == "cross_entropy":
        p = torch.softmax(output, dim=-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    eye = torch.eye(n_L, dtype=output.dtype, device=output.device)
    return (2.0 / n_L) * eye.expand(*output.shape[:-1], n_L, n_L)


def helmert_basis(n: int, dtype=torch.float64, device=None) -> Tensor:
    """Q (n, n − 1): an orthonormal basis of the vectors orthogonal to the all-ones vector (Helmert's), so
    that Q Qᵀ = I − 11ᵀ/n exactly up to rounding.  Built once per (n, dtype, device); read-only."""
    return _helmert_basis(n, dtype, torch.device(device) if device is not None else torch.device("cpu"))


@functools.lru_cache(maxsize=32)
def _helmert_basis(n: int, dtype, device) -> Tensor:
    Q = torch.zeros(n, n - 1, dtype=torch.float64)
    for k in range(1, n):
        Q[:k, k - 1] = 1.0 / math.sqrt(k * (k + 1))
        Q[k, k - 1] = -k / math.sqrt(k * (k + 1))
    return Q.to(dtype=dtype, device=device)


def softmax_hessian_eigh(p: Tensor) -> tuple[Tensor, Tensor]:
    """(S, V) with diag(p) − ppᵀ = V diag(S) Vᵀ on the vectors orthogonal to the ones vector: V = Q U
    (..., B, n_L, n_L − 1) orthonormal columns, S (..., B, n_L − 1) ascending, ≥ 0.  The Hessian is 0 along
    the all-ones vector, so it is Q H_r Qᵀ with Q the Helmert basis and H_r = QᵀHQ = U diag(S) Uᵀ positive
    definite (every p_k > 0): the null direction is removed exactly, not found by thresholding an eigenvalue
    of rounding size (whose square root would enter a pseudo-inverse as a huge gain), while genuinely small
    eigenvalues (confident predictions) are kept.  One batched ``eigh`` of (n_L − 1)-square matrices."""
    n_L = p.shape[-1]
    Q = helmert_basis(n_L, p.dtype, p.device)
    H = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    S, U = torch.linalg.eigh(Q.mT @ H @ Q)
    return S.clamp_min(0), Q @ U


def softmax_hessian_sqrt(p: Tensor) -> Tensor:
    """M (..., B, n_L − 1, n_L) of full row rank with MᵀM = diag(p) − ppᵀ, the softmax cross-entropy Hessian:
    M = S^{1/2} Vᵀ from :func:`softmax_hessian_eigh`."""
    S, V = softmax_hessian_eigh(p)
    return S.sqrt().unsqueeze(-1) * V.mT


def output_hessian_sqrt(net: Network, output: Tensor) -> Tensor:
    """M with MᵀM = H (:func:`output_hessian`), M of full row rank: ``M h_L`` is the H^{1/2}-transformed output
    of Appendix D (up to a rotation, which changes no GGN quantity).  Cross-entropy: (..., B, n_L − 1, n_L)
    (:func:`softmax_hessian_sqrt`); mse: √(2/n_L) I."""
    n_L = output.shape[-1]
    if net.loss == "cross_entropy":
        return softmax_hessian_sqrt(torch.softmax(output, dim=-1))
    eye = torch.eye(n_L, dtype=output.dtype, device=output.device)
    return math.sqrt(2.0 / n_L) * eye.expand(*output.shape[:-1], n_L, n_L)


def output_hessian_roots(net: Network, output: Tensor, damping=0.0) -> tuple[Tensor, Tensor]:
    """(R, R⁺), each (..., B, n_L, n_L): the symmetric square root R = H_δ^{1/2} of the per-sample output
    Hessian (:func:`output_hessian`) and its pseudo-inverse, for DDTP-GGN's transformed output z = R h_L and
    output target ẑ = z − R⁺(h_L − ĥ_L) (paper Appendix D, eqs. 191–192, 196).

    Appendix D writes the transformed output as S^{1/2}Uᵀh_L from H = U S Uᵀ.  Any rotation of it serves one
    sample equally; the symmetric root U S^{1/2} Uᵀ is that choice which keeps the coordinates of every sample
    aligned with the output units (an eigenvector order sorted by eigenvalue differs between samples), so
    one feedback matrix Q_i can serve the whole minibatch.

    ``damping`` δ ≥ 0 (a number, or (R,) per replica) is added to H's positive spectrum: cross-entropy
    H_δ = H + δ(I − 11ᵀ/n_L) (the all-ones null direction stays null; R⁺ is 0 there), mse H_δ = (2/n_L + δ) I.
    It bounds the gain R⁺ of confident predictions, whose smallest eigenvalues p_k → 0."""
    n_L = output.shape[-1]
    if net.loss == "cross_entropy":
        S, V = softmax_hessian_eigh(torch.softmax(output, dim=-1))  # H = V diag(S) Vᵀ, V (…, n_L, n_L − 1)
        S = S + per_replica(damping, S)
        inv_sqrt = torch.where(S > 0, S.rsqrt(), torch.zeros_like(S))  # pseudo-inverse: 0 where S = 0
        return (V * S.sqrt().unsqueeze(-2)) @ V.mT, (V * inv_sqrt.unsqueeze(-2)) @ V.mT
    eye = torch.eye(n_L, dtype=output.dtype, device=output.device).expand(*output.shape[:-1], n_L, n_L)
    c = 2.0 / n_L + per_replica(damping, output)  # a number, or (R, 1, 1)
    c = c.unsqueeze(-1) if isinstance(c, Tensor) else c
    return c ** 0.5 * eye, c ** -0.5 * eye


def damped_ggn_displacement(J: Tensor, M: Tensor, g: Tensor, damping: float) -> Tensor:
    """Δ = (JᵀHJ + λI)⁻¹ Jᵀ g per sample with H = MᵀM (paper Appendix D: the damped GGN step, eq. 187, taken
    in h_i); λ = 0: (JᵀHJ)⁺ Jᵀ g.  ``J`` (..., B, n_L, n), ``M`` (..., B, r, n_L) (:func:`output_hessian_sqrt`),
    ``g`` (..., B, n_L).

    With J̃ = M J — the Jacobian of the transformed output M h_L — JᵀHJ = J̃ᵀJ̃, so only r × r systems are
    solved, batched: for λ > 0 by Woodbury, (λI + J̃ᵀJ̃)⁻¹ = (I − J̃ᵀ(λI + J̃J̃ᵀ)⁻¹J̃)/λ; for λ = 0 by
    (J̃ᵀJ̃)⁺ = J̃⁺J̃⁺ᵀ."""
    if damping < 0:
        raise ValueError(f"the Gauss-Newton damping must be >= 0, got {damping}")
    Jt = M @ J  # J̃, (..., B, r, n)
    v = J.mT @ g.unsqueeze(-1)  # Jᵀ g, (..., B, n, 1)
    if damping == 0:
        P = torch.linalg.pinv(Jt)  # (..., B, n, r)
        return (P @ (P.mT @ v)).squeeze(-1)
    A = Jt @ Jt.mT + damping * torch.eye(Jt.shape[-2], dtype=J.dtype, device=J.device)
    return ((v - Jt.mT @ torch.linalg.solve_ex(A, Jt @ v)[0]) / damping).squeeze(-1)


def ggn_displacements(net: Network, params: Params, fwd: Forward, dL_dhL: Tensor, M: Tensor,
                      damping: float | Sequence[float], layers: Sequence[int] | None = None) -> dict[int, Tensor]:
    """Δ_i of the damped GGN targets ĥ_i = h_i − Δ_i for the given layers (default 1…L), with the output
    Hessian's factor ``M`` (:func:`output_hessian_sqrt`) and damping λ (one value, or one per listed layer);
    shaped like h_i."""
    layers = list(range(1, net.L + 1)) if layers is None else list(layers)
    lams = [float(damping)] * len(layers) if isinstance(damping, (int, float)) else [float(v) for v in damping]
    if len(lams) != len(layers):
        raise ValueError(f"one damping value per layer expected ({len(layers)} layers {layers}), got {lams}")
    J = net.output_jacobians(params, fwd, layers)
    return {i: net.unflatten_layer(i, damped_ggn_displacement(J[i], M, dL_dhL, lam))
            for i, lam in zip(layers, lams)}
