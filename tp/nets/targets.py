"""Output targets, the difference-corrected target chain and the local layer loss
(docs/algorithms.md#targets-and-the-forward-update).

These are the pieces every target-propagation rule shares:

* :func:`output_target` — ĥ_L = h_L − β ∂ℒ/∂h_L   (docs/algorithms.md#the-output-target, supplement eq. 163)
* :func:`difference_target_chain` — ĥ_{i−1} = g_i(ĥ_i) + h_{i−1} − g_i(h_i)   (DTP, paper eq. 7)
* :func:`local_loss_gradients` — ∂/∂W_i of each layer's local loss (the network's own,
  :meth:`tp.nets.interface.Network.local_loss_gradients`), for dense layers :func:`dense_local_loss_gradients`: ∂/∂W_i of
  (1/B) Σ_b ‖h_i^b − ĥ_i^b‖²   (docs/algorithms.md#the-local-layer-loss)
"""

from __future__ import annotations

from typing import Callable, Mapping

from torch import Tensor

from ..core.replicas import per_replica
from .activations import Activation
from .interface import Forward, Network, Params

__all__ = ["output_target", "difference_target_chain", "local_loss_gradients", "dense_local_loss_gradients"]


def output_target(net: Network, fwd: Forward, y: Tensor, target_stepsize) -> tuple[Tensor, Tensor]:
    """Output target ĥ_L = h_L − β·∂ℒ/∂h_L (docs/algorithms.md#the-output-target).

    The gradient is that of the *minibatch-mean* loss, so for cross-entropy the per-sample step is
    β/B: ĥ_L^b = h_L^b − (β/B)(softmax(h_L^b) − onehot(y_b)).  The tuned β values depend on this scale.

    Returns ``(h_hat_L, dL_dhL)``, both (..., B, n_L).
    """
    dL_dhL = net.output_gradient(fwd.output, y)
    return fwd.output - per_replica(target_stepsize, dL_dhL) * dL_dhL, dL_dhL


def difference_target_chain(h: list, h_hat_L: Tensor, g: Callable[[int, Tensor], Tensor],
                            g_clean: Mapping[int, Tensor] | None = None, stop: int = 1) -> dict:
    """Layer-wise difference target propagation (DTP; paper eq. 7, docs/algorithms.md#dtp-and-dtp-pre-trained).

    For i = L, L−1, …, stop+1:   ĥ_{i−1} = g_i(ĥ_i) + h_{i−1} − g_i(h_i).

    Args:
        h: activations ``h[0..L]`` of the forward pass.
        h_hat_L: the output target (..., B, n_L).
        g: ``g(i, z)`` maps a value of layer i to layer i−1 — any feedback maps (trained ones, exact
            inverses in the theory tests).
        g_clean: optional precomputed ``g_i(h_i)`` by i (they do not depend on the targets).
        stop: lowest layer that receives a target.

    Returns ``{i: ĥ_i}`` for i = stop…L.
    """
    L = len(h) - 1
    targets = {L: h_hat_L}
    for i in range(L, stop, -1):
        clean = g_clean[i] if g_clean is not None else g(i, h[i])
        targets[i - 1] = g(i, targets[i]) + h[i - 1] - clean
    return targets


def local_loss_gradients(net: Network, params: Params, fwd: Forward, targets: Mapping[int, Tensor]) -> Params:
    """Gradients of the local losses of the layers in ``targets`` (keyed like ``params``): the network's
    local loss of each layer (docs/algorithms.md#the-local-layer-loss for dense layers,
    docs/algorithms.md#cnn-forward-updates for the CNN's conv blocks)."""
    return net.local_loss_gradients(params, fwd, targets)


def dense_local_loss_gradients(activation: Activation, a_i: Tensor, h_i: Tensor, h_prev: Tensor, h_hat: Tensor,
                               bias: bool) -> tuple[Tensor, Tensor | None]:
    """Gradient of the local loss ℒ_i = (1/B) Σ_b ‖h_i^b − ĥ_i^b‖² of a dense layer
    (docs/algorithms.md#the-local-layer-loss).

    With ĥ_i and h_{i−1} held constant (no ½, so the factor 2 stays — the tuned Adam ε depend on it):

        δ_i^b = 2 φ_i′(a_i^b) ⊙ (h_i^b − ĥ_i^b)
        ∂ℒ_i/∂W_i = (1/B) Σ_b δ_i^b h_{i−1}^bᵀ,   ∂ℒ_i/∂b_i = (1/B) Σ_b δ_i^b.

    ``a_i, h_i, h_hat`` (..., B, n_i), ``h_prev`` (..., B, n_{i−1}).  Returns ``(∂ℒ_i/∂W_i, ∂ℒ_i/∂b_i or None)``.
    """
    B = h_i.shape[-2]
    delta = 2.0 * activation.derivative(a_i, h_i) * (h_i - h_hat)  # (..., B, n_i)
    gW = delta.mT @ h_prev / B  # (..., n_i, n_{i-1})
    return gW, (delta.mean(-2) if bias else None)  # (..., n_i)
