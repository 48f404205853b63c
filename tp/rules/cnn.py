"""Learning rules of the CIFAR-10 CNN (SPEC §8): BP, DFA, DDTP-linear and DDTP-control on :class:`tp.cnn.ConvNet`.

Feedback (SPEC §8.2), directly from the output h_4 ∈ ℝ^{n_L} to the max-pool outputs h_1, h_2 and to h_3:

* conv blocks k = 1, 2:  g_k(z) = reshape(Q_k z) to (C, H, W),  Q_k ∈ ℝ^{(C·H·W)×n_L}, no bias, linear;
* FC layer 3:            g_3(z) = Q_3 z + d_3,                  Q_3 ∈ ℝ^{n_3×n_L}.

Targets: ĥ_4 = h_4 − β ∂ℒ/∂h_4 (SPEC §2.1) and ĥ_k = g_k(ĥ_4) + h_k − g_k(h_4) for k = 1, 2, 3.

Forward updates (SPEC §8.3): conv block k gets the gradient of mean_{B·C·H·W}(h_k − ĥ_k)² w.r.t. its kernel
and bias, by autograd through max-pool and tanh on a recomputation of the block (ĥ_k and h_{k−1} detached);
layers 3 and 4 get the local-loss gradient of SPEC §2.2 (:func:`tp.targets.local_loss_gradients`).

Feedback losses (SPEC §8.4), block k = 1, 2, 3, noise ε on h_k (post-pool for the conv blocks),
h̃_k = h_k + ε, ỹ = F_{k→4}(h̃_k):

* DRL (DDTP-linear):  (1/σ²)·mean(g_k(ỹ) + h_k − g_k(h_4) − h̃_k)²   (mean over B·C·H·W or B·n_3);
* control:            mean(g_k(ỹ) − h̃_k)².

Their gradients w.r.t. Q_k, d_3 are written out (the losses are quadratic in the feedback parameters).
DFA-CNN is DDTP-linear with Q, d frozen (no feedback loss, β = 1).  BP-CNN is autograd of the CE loss.

Like the MLP rules they broadcast over a leading replica dimension (R generators: R networks) and are registered in :data:`tp.rules.REGISTRY` as ``bp-cnn``, ``dfa-cnn``,
``ddtp-linear-cnn`` and ``ddtp-control-cnn`` (``model = "cnn"``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..cnn import ConvForward, ConvNet
from ..network import Forward, Params, xavier_normal
from ..random import Generators
from ..targets import local_loss_gradients, output_target
from .base import REQUIRED, Rule, StepResult

__all__ = ["CNNRule", "CNNBP", "CNNDFA", "CNNDDTPLinear", "CNNDDTPControl", "conv_block_gradients",
           "target_gradients"]


def _check_net(rule: Rule, net) -> None:
    if not isinstance(net, ConvNet):
        raise TypeError(f"rule {rule.name!r} works on a tp.cnn.ConvNet, got {type(net).__name__}")


def target_gradients(net: ConvNet, params: Params, fwd: ConvForward, targets: dict[int, Tensor]) -> Params:
    """Forward-parameter gradients of the local losses of the layers in ``targets`` (SPEC §8.3):

    * conv blocks k ∈ {1, 2}: ∂/∂(W_k, b_k) of mean_{B·C·H·W}(h_k − ĥ_k)² (:func:`conv_block_gradients`);
    * FC layers 3, 4: the SPEC §2.2 formula (2/B) Σ_b [φ′(a_i^b) ⊙ (h_i^b − ĥ_i^b)] h_{i−1}^bᵀ, with h_2
      flattened channel-major as the input of layer 3.

    ``targets[k]`` is shaped like ``fwd.h[k]`` ((B, C, H, W) for the conv blocks, (B, n) for 3, 4)."""
    grads: Params = {}
    for k in (1, 2):
        if k in targets:
            grads.update(conv_block_gradients(net, params, fwd, k, targets[k]))
    fc = {i: targets[i] for i in (3, 4) if i in targets}
    if fc:
        flat = Forward(a=[None, None, None, fwd.a[3], fwd.a[4]],
                       h=[None, None, fwd.h[2].flatten(-3), fwd.h[3], fwd.h[4]])
        grads.update(local_loss_gradients(net, params, flat, fc))
    return {k: grads[k] for k in net.param_shapes() if k in grads}


def conv_block_gradients(net: ConvNet, params: Params, fwd: ConvForward, k: int, target: Tensor) -> Params:
    """∂/∂(W_k, b_k) of ℓ_k = mean over all B·C·H·W elements of (h_k − ĥ_k)² for conv block k ∈ {1, 2},
    through max-pool (routed to the arg-max positions) and tanh, with ĥ_k and h_{k−1} constant
    (SPEC §8.3; autograd on a recomputation of the block)."""
    with torch.enable_grad():
        W = params[f"W{k}"].detach().requires_grad_(True)
        b = params[f"b{k}"].detach().requires_grad_(True)
        h = net.conv_block({f"W{k}": W, f"b{k}": b}, k, fwd.h[k - 1].detach())[2]
        loss = ((h - target.detach()) ** 2).flatten(-4).mean(-1)  # ℓ_k per replica
        gW, gb = torch.autograd.grad(loss.sum(), (W, b))  # replica r's gradient is that of its own ℓ_k
    return {f"W{k}": gW, f"b{k}": gb}


class CNNRule(Rule):
    """Common structure of the CNN rules."""

    model = "cnn"

    def build_network(self, *, in_shape=(3, 32, 32), channels=(32, 64), fc: int = 512, n_out: int = 10,
                      loss: str = "cross_entropy", dtype: torch.dtype = torch.float64) -> ConvNet:
        """The SPEC §8.1 CNN (same architecture for every CNN rule); keyword arguments only."""
        return ConvNet(in_shape=in_shape, channels=channels, fc=fc, n_out=n_out, loss=loss, dtype=dtype)


class CNNBP(CNNRule):
    """BP-CNN: the autograd gradient of the minibatch-mean cross-entropy w.r.t. every parameter."""

    name = "bp-cnn"
    paper_name = "BP"
    hyperparameters = {}

    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        _check_net(self, net)
        names = list(net.param_shapes())
        with torch.enable_grad():
            p = {k: params[k].detach().requires_grad_(True) for k in names}
            out = net.forward(p, fwd.h[0].detach()).output
            grads = torch.autograd.grad(net.loss_value(out, y).sum(), [p[k] for k in names])  # per replica
        return StepResult(forward_grads=dict(zip(names, grads)), targets={},
                          loss=net.loss_value(fwd.output, y), output=fwd.output)


class CNNDirectRule(CNNRule):
    """Direct linear feedback from the output to h_1, h_2, h_3 (DDTP-linear, DDTP-control, DFA)."""

    has_feedback = True
    #: "drl", "control" or None (fixed feedback: DFA)
    feedback_loss: ClassVar[str | None] = "drl"
    #: the feedback blocks (= the layers that receive targets from the output)
    blocks: ClassVar[tuple[int, ...]] = (1, 2, 3)
    #: the feedback maps g_k are linear (``fb_activation=linear`` of every CNN configuration, SPEC §8.2)
    fb_activation_name: ClassVar[str] = "linear"

    def init_feedback(self, net: ConvNet, generator: Generators, device=None) -> Params:
        """Q_1, Q_2, Q_3 Xavier normal (std √(2/(n_k + n_L)) with n_k = C·H·W for the conv blocks), in
        this order from ``generator``; d_3 = 0 (the conv feedback maps have no bias)."""
        _check_net(self, net)
        n_L = net.sizes[-1]
        fb: Params = {}
        for k in self.blocks:
            fb[f"Q{k}"] = xavier_normal((net.sizes[k], n_L), generator, net.dtype, device)
        fb["d3"] = torch.zeros(fb["Q3"].shape[:-1], dtype=net.dtype, device=fb["Q3"].device)
        return fb

    def trainable_feedback(self, feedback) -> list[str]:
        return [k for k in feedback if k[0] in "Qd"] if self.trains_feedback else []

    def noise_layers(self, net) -> dict[int, int]:
        return {k: k for k in self.blocks} if self.trains_feedback else {}

    # ------------------------------------------------------------------------------- feedback maps
    @staticmethod
    def _g_flat(feedback: Params, k: int, z: Tensor) -> Tensor:
        """g_k(z) flattened to (..., B, n_k)."""
        u = z @ feedback[f"Q{k}"].mT
        if k == 3:
            u = u + feedback["d3"].unsqueeze(-2)
        return u

    def feedback_map(self, net: ConvNet, feedback: Params, k: int, z: Tensor) -> Tensor:
        """g_k(z) for output-space values z (..., B, n_L), shaped like h_k ((..., B, C, H, W) for k = 1, 2)."""
        return self._g_flat(feedback, k, z).reshape(*z.shape[:-1], *net.layer_shapes[k])

    # ------------------------------------------------------------------------------------- update
    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        _check_net(self, net)
        h_hat_L, _ = output_target(net, fwd, y, self.hp["target_stepsize"])
        targets = {}
        for k in self.blocks:  # ĥ_k = g_k(ĥ_4) + h_k − g_k(h_4)
            targets[k] = (self.feedback_map(net, feedback, k, h_hat_L) + fwd.h[k]
                          - self.feedback_map(net, feedback, k, fwd.output))
        targets[net.L] = h_hat_L
        return StepResult(forward_grads=target_gradients(net, params, fwd, targets), targets=targets,
                          loss=net.loss_value(fwd.output, y), output=fwd.output)

    # ---------------------------------------------------------------------------- feedback losses
    def _feedback_gradients(self, net, params, feedback, fwd, noise, cache):
        _check_net(self, net)
        h_L = fwd.output
        grads, losses = {}, {}
        for k in self.blocks:
            h = fwd.h[k]
            h_noisy = h + noise[k].reshape(h.shape)  # h̃_k
            y_noisy = net.forward_from(params, k, h_noisy)  # ỹ = F_{k→4}(h̃_k)
            dims = len(net.layer_shapes[k])
            hf, hnf = h.flatten(-dims), h_noisy.flatten(-dims)  # (..., B, n_k)
            count = hf.shape[-2] * hf.shape[-1]  # mean over B·C·H·W (conv) or B·n_3
            g_n = self._g_flat(feedback, k, y_noisy)
            if self.feedback_loss == "drl":
                scale = 1.0 / self.hp["sigma"] ** 2
                resid = g_n + hf - self._g_flat(feedback, k, h_L) - hnf  # r − h̃_k
                G = 2.0 * scale * resid / count  # ∂L/∂r, (B, n_k)
                gQ = G.mT @ y_noisy - G.mT @ h_L
                gd = G.sum(-2) - G.sum(-2)  # d_3 cancels in the difference correction: zero
            else:  # control
                scale = 1.0
                resid = g_n - hnf
                G = 2.0 * resid / count
                gQ, gd = G.mT @ y_noisy, G.sum(-2)
            grads[f"Q{k}"] = gQ
            if k == 3:
                grads["d3"] = gd
            losses[k] = scale * (resid ** 2).mean(dim=(-2, -1))
        return grads, losses


class CNNDDTPLinear(CNNDirectRule):
    """DDTP-linear on the CNN (code ``DDTPConvCIFAR``): feedback trained with the DRL."""

    name = "ddtp-linear-cnn"
    paper_name = "DDTP-linear"
    hyperparameters = {"target_stepsize": REQUIRED, "sigma": REQUIRED}
    trains_feedback = True
    feedback_loss = "drl"


class CNNDDTPControl(CNNDirectRule):
    """DDTP-control on the CNN (code ``DDTPConvControlCIFAR``): feedback trained with the control loss."""

    name = "ddtp-control-cnn"
    paper_name = "DDTP-control"
    hyperparameters = {"target_stepsize": REQUIRED, "sigma": REQUIRED}
    trains_feedback = True
    feedback_loss = "control"


class CNNDFA(CNNDirectRule):
    """DFA on the CNN (code ``DFAConvCIFAR``): DDTP-linear's targets with fixed random Q_k, d_3 (never
    trained): ĥ_k = h_k + reshape(Q_k(ĥ_4 − h_4)); β = 1."""

    name = "dfa-cnn"
    paper_name = "DFA"
    hyperparameters = {"target_stepsize": 1.0}
    trains_feedback = False
    feedback_loss = None
