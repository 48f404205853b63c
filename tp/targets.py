"""Output targets, the difference-corrected target chain and the local layer loss (SPEC §2).

These are the pieces every target-propagation rule shares:

* :func:`output_target` — ĥ_L = h_L − β ∂ℒ/∂h_L   (SPEC §2.1, supplement eq. 163)
* :func:`difference_target_chain` — ĥ_{i−1} = g_i(ĥ_i) + h_{i−1} − g_i(h_i)   (DTP, paper eq. 7)
* :func:`local_loss_gradients` — ∂/∂W_i of (1/B) Σ_b ‖h_i^b − ĥ_i^b‖²   (SPEC §2.2–2.3)
"""

from __future__ import annotations

from typing import Callable, Mapping

from torch import Tensor

from .network import MLP, Forward, Params

__all__ = ["output_target", "difference_target_chain", "local_loss_gradients"]


def output_target(net: MLP, fwd: Forward, y: Tensor, target_stepsize: float) -> tuple[Tensor, Tensor]:
    """Output target ĥ_L = h_L − β·∂ℒ/∂h_L (SPEC §2.1).

    The gradient is that of the *minibatch-mean* loss, so for cross-entropy the per-sample step is
    β/B: ĥ_L^b = h_L^b − (β/B)(softmax(h_L^b) − onehot(y_b)).  The tuned β values depend on this scale.

    Returns ``(h_hat_L, dL_dhL)``, both (..., B, n_L).
    """
    dL_dhL = net.output_gradient(fwd.output, y)
    return fwd.output - target_stepsize * dL_dhL, dL_dhL


def difference_target_chain(h: list, h_hat_L: Tensor, g: Callable[[int, Tensor], Tensor],
                            g_clean: Mapping[int, Tensor] | None = None, stop: int = 1) -> dict:
    """Layer-wise difference target propagation (DTP; paper eq. 7, SPEC §4.3 (b)).

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


def local_loss_gradients(net: MLP, params: Params, fwd: Forward, targets: Mapping[int, Tensor]) -> Params:
    """Gradient of the local layer losses ℒ_i = (1/B) Σ_b ‖h_i^b − ĥ_i^b‖² (SPEC §2.2).

    With ĥ_i and h_{i−1} held constant (no ½, so the factor 2 stays — the tuned Adam ε depend on it):

        δ_i^b = 2 φ_i′(a_i^b) ⊙ (h_i^b − ĥ_i^b)
        ∂ℒ_i/∂W_i = (1/B) Σ_b δ_i^b h_{i−1}^bᵀ,   ∂ℒ_i/∂b_i = (1/B) Σ_b δ_i^b.

    Returns gradients for the layers in ``targets`` only, keyed like ``params``.
    """
    grads: Params = {}
    for i, h_hat in targets.items():
        a_i, h_i, h_prev = fwd.a[i], fwd.h[i], fwd.h[i - 1]
        B = h_i.shape[-2]
        delta = 2.0 * net.activation(i).derivative(a_i, h_i) * (h_i - h_hat)  # (..., B, n_i)
        grads[f"W{i}"] = delta.mT @ h_prev / B  # (..., n_i, n_{i-1})
        if net.bias[i - 1]:
            grads[f"b{i}"] = delta.mean(-2)  # (..., n_i)
    return dict(sorted(grads.items(), key=lambda kv: (int(kv[0][1:]), kv[0][0] == "b")))
