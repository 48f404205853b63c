"""BP: error back-propagation (docs/algorithms.md#bp): the network's own chain rule (explicit tensor algebra for the
MLP, autograd through conv and max-pool for the CNN)."""

from __future__ import annotations

from torch import Tensor

from ..nets.interface import Forward, Network, Params
from .base import Rule, StepResult

__all__ = ["BP", "backprop_gradients"]


def backprop_gradients(net: Network, params: Params, fwd: Forward, dL_dhL: Tensor) -> Params:
    """∂ℒ/∂θ for every forward parameter given ∂ℒ/∂h_L (..., B, n_L): the network's chain rule
    (:meth:`tp.nets.interface.Network.backprop_gradients`; for the MLP written out, docs/algorithms.md#bp)."""
    return net.backprop_gradients(params, fwd, dL_dhL)


class BP(Rule):
    """Back-propagation of the minibatch-mean loss; no targets, no feedback parameters."""

    name = "bp"
    paper_name = "BP"
    hyperparameters = {}
    networks = ("mlp", "cnn")

    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        dL_dhL = net.output_gradient(fwd.output, y)
        return StepResult(forward_grads=backprop_gradients(net, params, fwd, dL_dhL), targets={},
                          loss=net.loss_value(fwd.output, y), output=fwd.output)
