"""BP: error back-propagation (SPEC §4.1), written out as explicit tensor algebra."""

from __future__ import annotations

from torch import Tensor

from ..network import MLP, Forward, Params
from .base import Rule, StepResult

__all__ = ["BP", "backprop_gradients"]


def backprop_gradients(net: MLP, params: Params, fwd: Forward, dL_dhL: Tensor) -> Params:
    """∂ℒ/∂θ for every forward parameter by the chain rule, given ∂ℒ/∂h_L (..., B, n_L):

        δ_L = ∂ℒ/∂h_L ⊙ φ_L′(a_L),   δ_i = (δ_{i+1} W_{i+1}) ⊙ φ_i′(a_i),
        ∂ℒ/∂W_i = Σ_b δ_i^b h_{i−1}^bᵀ,   ∂ℒ/∂b_i = Σ_b δ_i^b

    (``dL_dhL`` already carries the 1/B of the minibatch mean).
    """
    grads: Params = {}
    delta = dL_dhL * net.activation(net.L).derivative(fwd.a[net.L], fwd.h[net.L])  # (..., B, n_L)
    for i in range(net.L, 0, -1):
        grads[f"W{i}"] = delta.mT @ fwd.h[i - 1]  # (..., n_i, n_{i-1})
        if net.bias[i - 1]:
            grads[f"b{i}"] = delta.sum(-2)
        if i > 1:
            delta = (delta @ params[f"W{i}"]) * net.activation(i - 1).derivative(fwd.a[i - 1], fwd.h[i - 1])
    return {k: grads[k] for k in net.param_shapes()}


class BP(Rule):
    """Back-propagation of the minibatch-mean loss; no targets, no feedback parameters."""

    name = "bp"
    paper_name = "BP"
    hyperparameters = {}

    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        dL_dhL = net.output_gradient(fwd.output, y)
        return StepResult(forward_grads=backprop_gradients(net, params, fwd, dL_dhL), targets={},
                          loss=net.loss_value(fwd.output, y), output=fwd.output)
