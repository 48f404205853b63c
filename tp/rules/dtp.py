"""Layer-wise difference target propagation: DTP (Lee et al. 2015) and DTPDRL
(docs/algorithms.md#dtp-and-dtp-pre-trained, docs/algorithms.md#dtpdrl).

Feedback maps g_i : ℝ^{n_i} → ℝ^{n_{i−1}}, i = 2…L,   g_i(z) = ψ(Q_i z + d_i)   (ψ = tanh in all configs,
also for g_L, which inverts the linear output layer).  Targets follow the difference-corrected chain of
:func:`tp.nets.targets.difference_target_chain` down to layer 1; every layer (the last hidden one included) is
trained by its target.

Feedback losses, one block per g_i with noise ε on h_{i−1}, h̃ = h_{i−1} + ε:

* DTP (layer-wise reconstruction):  c(σ) · mean (g_i(f_i(h̃)) − h̃)²,  c(σ) = 1/max(σ, 0.02)²
* DTPDRL (difference reconstruction loss, paper eq. 10 with the layer-wise chain): push ỹ = F_{i−1→L}(h̃)
  back with the fixed upper maps, z_L = ỹ, z_{k−1} = g_k(z_k) + h_{k−1} − g_k(h_k) for k = L…i+1, then
  r = g_i(z_i) + h_{i−1} − g_i(h_i) and the loss (1/σ²) · mean (r − h̃)².
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.random import Generators
from ..core.replicas import is_per_replica, per_replica
from ..nets.activations import get_activation
from ..nets.mlp import MLP, Forward, Params, xavier_normal
from ..nets.targets import difference_target_chain, local_loss_gradients, output_target
from .base import REQUIRED, Rule, StepResult

__all__ = ["DTP", "DTPDRL", "DTP_SIGMA_FLOOR"]

#: the DTP loss uses 1/max(σ, 0.02)² (docs/algorithms.md#dtp-and-dtp-pre-trained)
DTP_SIGMA_FLOOR = 0.02


class DTP(Rule):
    """Layer-wise DTP trained with the layer-wise reconstruction loss.  DTP (pre-trained) is the same
    rule with feedback pre-training epochs (a schedule of the training loop)."""

    name = "dtp"
    paper_name = "DTP"
    hyperparameters = {"target_stepsize": REQUIRED, "sigma": REQUIRED, "fb_activation": "tanh"}
    has_feedback = True
    trains_feedback = True
    feedback_family = "layerwise"
    feedback_loss = "reconstruction"

    def _validate(self) -> None:
        super()._validate()
        get_activation(self.hp["fb_activation"])

    def init_feedback(self, net: MLP, generator: Generators, device=None) -> Params:
        """Q_i ∈ ℝ^{n_{i−1}×n_i} Xavier normal, d_i = 0, for i = 2…L."""
        fb: Params = {}
        for i in range(2, net.L + 1):
            Q = xavier_normal((net.sizes[i - 1], net.sizes[i]), generator, net.dtype, device)
            fb[f"Q{i}"] = Q
            fb[f"d{i}"] = torch.zeros(Q.shape[:-1], dtype=net.dtype, device=Q.device)
        return fb

    def noise_layers(self, net: MLP) -> dict[int, int]:
        return {i: i - 1 for i in range(2, net.L + 1)}  # block i perturbs h_{i−1}

    def _g(self, feedback: Params, i: int, z: Tensor) -> tuple[Tensor, Tensor]:
        u = z @ feedback[f"Q{i}"].mT + feedback[f"d{i}"].unsqueeze(-2)  # (..., B, n_{i−1})
        return u, get_activation(self.hp["fb_activation"])(u)

    def feedback_map(self, feedback: Params, i: int, z: Tensor) -> Tensor:
        """g_i(z): layer i → layer i−1."""
        return self._g(feedback, i, z)[1]

    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        h_hat_L, _ = output_target(net, fwd, y, self.hp["target_stepsize"])
        clean = self._clean(net, feedback, fwd)  # g_i(h_i): the chain's difference terms (and DTPDRL's)
        targets = difference_target_chain(fwd.h, h_hat_L, lambda i, z: self._g(feedback, i, z)[1],
                                          g_clean={i: out for i, (_, out) in clean.items()})
        targets = dict(sorted(targets.items()))
        return StepResult(forward_grads=local_loss_gradients(net, params, fwd, targets), targets=targets,
                          loss=net.loss_value(fwd.output, y), output=fwd.output, cache={"clean": clean})

    def _clean(self, net: MLP, feedback: Params, fwd: Forward) -> dict[int, tuple[Tensor, Tensor]]:
        """(pre-activation, output) of g_i(h_i) for i = 2…L."""
        return {i: self._g(feedback, i, fwd.h[i]) for i in range(2, net.L + 1)}

    def _feedback_gradients(self, net, params, feedback, fwd: Forward, noise, cache):
        dfb = get_activation(self.hp["fb_activation"]).derivative
        sigma = self.hp["sigma"]
        c = 1.0 / (sigma.clamp(min=DTP_SIGMA_FLOOR) if is_per_replica(sigma) else max(sigma, DTP_SIGMA_FLOOR)) ** 2
        grads, losses = {}, {}
        for i in range(2, net.L + 1):
            h_noisy = fwd.h[i - 1] + noise[i]  # h̃_{i−1}
            _, z = net.layer(params, i, h_noisy)  # f_i(h̃_{i−1})
            u, r = self._g(feedback, i, z)
            resid = r - h_noisy
            dU = 2.0 * per_replica(c, resid) * resid / (resid.shape[-2] * resid.shape[-1]) * dfb(u, r)
            grads[f"Q{i}"] = dU.mT @ z
            grads[f"d{i}"] = dU.sum(-2)
            losses[i] = c * (resid ** 2).mean(dim=(-2, -1))
        return grads, losses


class DTPDRL(DTP):
    """DTP's layer-wise feedback trained with the difference reconstruction loss (DRL) through the
    difference-corrected chain of the upper feedback maps (docs/algorithms.md#dtpdrl)."""

    name = "dtpdrl"
    paper_name = "DTPDRL"
    feedback_loss = "drl"

    def _feedback_gradients(self, net, params, feedback, fwd: Forward, noise, cache):
        dfb = get_activation(self.hp["fb_activation"]).derivative
        inv_var = 1.0 / self.hp["sigma"] ** 2
        clean = cache.get("clean") or self._clean(net, feedback, fwd)  # g_k(h_k), shared with the targets
        grads, losses = {}, {}
        for i in range(2, net.L + 1):
            h_prev = fwd.h[i - 1]
            h_noisy = h_prev + noise[i]  # h̃_{i−1}
            z = net.forward_from(params, i - 1, h_noisy)  # z_L = ỹ = F_{i−1→L}(h̃_{i−1})
            for k in range(net.L, i, -1):  # fixed upper maps, difference-corrected
                z = self._g(feedback, k, z)[1] + fwd.h[k - 1] - clean[k][1]
            u_n, g_n = self._g(feedback, i, z)
            u_c, g_c = clean[i]
            resid = g_n + h_prev - g_c - h_noisy  # r − h̃_{i−1}
            G = 2.0 * per_replica(inv_var, resid) * resid / (resid.shape[-2] * resid.shape[-1])
            dU_n, dU_c = G * dfb(u_n, g_n), -G * dfb(u_c, g_c)
            grads[f"Q{i}"] = dU_n.mT @ z + dU_c.mT @ fwd.h[i]
            grads[f"d{i}"] = (dU_n + dU_c).sum(-2)
            losses[i] = inv_var * (resid ** 2).mean(dim=(-2, -1))
        return grads, losses
