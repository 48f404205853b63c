"""GNT: training with ideal (damped) Gauss–Newton targets (docs/algorithms.md#gnt; code ``GN2``)."""

from __future__ import annotations

from ..errors import HyperparameterError
from ..nets.gauss_newton import gn_displacements
from ..nets.targets import local_loss_gradients
from .base import Rule, StepResult

__all__ = ["GNT"]


class GNT(Rule):
    """ĥ_i = h_i − Δ_i with Δ_i = J_iᵀ(J_iJ_iᵀ + λI)⁻¹ ∂ℒ/∂h_L for every layer i = 1…L (output included,
    where J_L = I and Δ_L = ∂ℒ/∂h_L/(1+λ)), then the local-loss gradient of docs/algorithms.md#the-local-layer-loss.  As
    in the official code the step ignores β (unit step on ∂ℒ/∂h_L;
    docs/algorithms.md#gnt-training-ignores-the-target-step-size).
    ``gn_damping`` is λ: one value, or
    one per layer 1…L."""

    name = "gnt"
    paper_name = "GNT"
    hyperparameters = {"gn_damping": 0.0}
    networks = ("mlp", "cnn")

    def _validate(self) -> None:
        lam = self.hp["gn_damping"]
        values = [lam] if isinstance(lam, (int, float)) else list(lam)
        if not all(isinstance(v, (int, float)) and v >= 0 for v in values):
            raise HyperparameterError(f"rule {self.name!r}: gn_damping must be >= 0 (a number or one per layer), "
                                      f"got {lam!r}")

    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        dL_dhL = net.output_gradient(fwd.output, y)
        delta = gn_displacements(net, params, fwd, dL_dhL, self.hp["gn_damping"])
        targets = {i: fwd.h[i] - d for i, d in delta.items()}  # ĥ_i = h_i − Δ_i
        return StepResult(forward_grads=local_loss_gradients(net, params, fwd, targets), targets=targets,
                          loss=net.loss_value(fwd.output, y), output=fwd.output)
