"""GGNT: training with ideal damped *generalized* Gauss–Newton targets (paper Appendix D; beyond the paper's
experiments, which never ran them)."""

from __future__ import annotations

from ..nets.gauss_newton import ggn_displacements, output_hessian_sqrt
from ..nets.targets import local_loss_gradients
from .base import StepResult
from .gnt import GNT

__all__ = ["GGNT"]


class GGNT(GNT):
    """ĥ_i = h_i − Δ_i with Δ_i = (J_iᵀ H J_i + λI)⁻¹ J_iᵀ ∂ℒ/∂h_L for every layer i = 1…L, H the Hessian of
    the per-sample loss w.r.t. h_L (softmax + cross-entropy: diag(p) − ppᵀ), then the local-loss gradient
    of docs/algorithms.md#the-local-layer-loss.  With H = I (the L2 loss of the GN theory) these are GNT's targets; the
    step, like GNT's, is a unit step on ∂ℒ/∂h_L.  ``gn_damping`` is λ: one value, or one per layer 1…L."""

    name = "ggnt"
    paper_name = "GGNT"

    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        dL_dhL = net.output_gradient(fwd.output, y)
        M = output_hessian_sqrt(net, fwd.output)  # MᵀM = H, the per-sample loss Hessian w.r.t. h_L
        delta = ggn_displacements(net, params, fwd, dL_dhL, M, self.hp["gn_damping"])
        targets = {i: fwd.h[i] - d for i, d in delta.items()}  # ĥ_i = h_i − Δ_i
        return StepResult(forward_grads=local_loss_gradients(net, params, fwd, targets), targets=targets,
                          loss=net.loss_value(fwd.output, y), output=fwd.output)
