"""Direct feedback from the output to every hidden layer: the DDTP family and DFA (docs/algorithms.md#dfa,
docs/algorithms.md#the-learning-rules).

Every hidden layer i = 1…L−1 has a feedback map g_i from the output space,

    g_i(z; h_i) = ψ(Q_i · u_i(z; h_i) + d_i),

whose input features u_i are z itself (DFA, DDTP-linear, DDTP-control, the last hidden layer of DDTP-RHL),
the fixed random hidden layer s(z) = tanh(R z + r) (DDTP-RHL) or [s(z); h_i] with the *clean* h_i
(DDTP-RHL (rec), paper eq. 63–66).  Targets use the difference correction (paper eq. 8)

    ĥ_i = g_i(ĥ_L) + h_i − g_i(h_L),

and the forward update is the local-loss gradient of docs/algorithms.md#the-local-layer-loss.  DDTP-GGN (paper Appendix
D, beyond the paper) reads the output through a per-sample linear map instead of as it is (:class:`OutputSpace`: z = R
h_L with R the root of the loss Hessian, output target ẑ = z − R⁺(h_L − ĥ_L)).  The feedback losses (one block per
hidden layer i, noise ε on h_i, ỹ = F_{i→L}(h_i + ε)):

* DRL (paper eq. 10, docs/algorithms.md#ddtp-linear):  (1/σ²) · mean_{b,units} (g_i(ỹ) + h_i − g_i(h_L) − (h_i + ε))²
* control (docs/algorithms.md#ddtp-control):           mean_{b,units} (g_i(ỹ) − (h_i + ε))²

The same rules train the CNN of docs/algorithms.md#the-cnn-table-3 (DFA, DDTP-linear, DDTP-control;
docs/algorithms.md#the-cnn-table-3): the feedback maps live in the flattened layer space ℝ^{n_i} (a conv block's g_k(z)
= reshape(Q_k z) to (C, H, W)), the noise is on the max-pool outputs, and the network supplies its own local loss
(:mod:`tp.nets.interface`).  A feedback map has a bias d_i where its layer is dense and has a forward bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..core.random import Generators, rand_uniform
from ..core.replicas import per_replica
from ..errors import HyperparameterError
from ..nets.activations import get_activation
from ..nets.interface import Forward, Network, Params
from ..nets.mlp import xavier_normal
from ..nets.targets import local_loss_gradients, output_target
from .base import Rule, StepResult

__all__ = ["DirectFeedbackRule", "OutputSpace"]


@dataclass(frozen=True)
class OutputSpace:
    """Where the feedback maps read output-layer values: h_L itself (``T`` None), or a per-sample linear
    transform z = T h_L whose output target is ẑ = T h_L − T⁺(h_L − ĥ_L) (DDTP-GGN: T = H^{1/2}, paper
    Appendix D, eqs. 192, 196).  T is taken at the clean output of the step and held fixed in it."""

    T: Tensor | None = None  # (..., B, n_L, n_L)
    T_pinv: Tensor | None = None  # T⁺, (..., B, n_L, n_L)

    def __call__(self, v: Tensor) -> Tensor:
        """z = T v for output-space values v (..., B, n_L)."""
        return v if self.T is None else (self.T @ v.unsqueeze(-1)).squeeze(-1)

    def target(self, h_L: Tensor, h_hat_L: Tensor) -> Tensor:
        """The feedback's input for the output target ĥ_L: ĥ_L, or ẑ = T h_L − T⁺(h_L − ĥ_L)."""
        if self.T is None:
            return h_hat_L
        return self(h_L) - (self.T_pinv @ (h_L - h_hat_L).unsqueeze(-1)).squeeze(-1)


IDENTITY = OutputSpace()


class DirectFeedbackRule(Rule):
    """Shared implementation of the direct-feedback rules; subclasses choose the features, the
    feedback activation, the loss (``"drl"``, ``"control"`` or ``None`` for fixed feedback) and
    the bias layout."""

    has_feedback = True
    networks = ("mlp", "cnn")
    feedback_family = "direct"
    #: feedback reconstruction loss: "drl", "control" or None (feedback fixed: DFA)
    feedback_loss: ClassVar[str | None] = "drl"
    #: the space the feedback reads the output in: "identity" (h_L) or "hessian-root" (z = R h_L, DDTP-GGN)
    output_space: ClassVar[str] = "identity"
    #: the last hidden layer has a forward bias (and its feedback map a bias d_{L-1})
    last_hidden_bias: ClassVar[bool] = True
    #: hidden layers i ≤ L−2 read the random hidden feedback layer s(z) (DDTP-RHL)
    random_layer: ClassVar[bool] = False
    #: hidden layers i ≤ L−2 also read their own clean activation h_i (DDTP-RHL (rec))
    recurrent_input: ClassVar[bool] = False

    def _validate(self) -> None:
        super()._validate()
        get_activation(self.fb_activation_name)
        if "size_hidden_fb" in self.hp and not (isinstance(self.hp["size_hidden_fb"], int)
                                                and self.hp["size_hidden_fb"] > 0):
            raise HyperparameterError(f"rule {self.name!r}: size_hidden_fb must be a positive integer, "
                                      f"got {self.hp['size_hidden_fb']!r}")

    @property
    def fb_activation_name(self) -> str:
        return self.hp.get("fb_activation", "linear")

    # ------------------------------------------------------------------------------------ structure
    def forward_bias(self, num_layers: int) -> tuple[bool, ...]:
        bias = [True] * num_layers
        if not self.last_hidden_bias and num_layers >= 2:
            bias[num_layers - 2] = False  # layer L−1 (docs/algorithms.md#no-bias-in-the-last-hidden-layer)
        return tuple(bias)

    def _uses_random_layer(self, net: Network, i: int) -> bool:
        # layer L−1 bypasses it (docs/algorithms.md#the-last-hidden-layer-of-ddtp-rhl-skips-the-random-layer)
        return self.random_layer and i <= net.L - 2

    def _feature_size(self, net: Network, i: int) -> int:
        if not self._uses_random_layer(net, i):
            return net.sizes[-1]
        m = self.hp["size_hidden_fb"]
        return m + net.sizes[i] if self.recurrent_input else m

    def init_feedback(self, net: Network, generator: Generators, device=None) -> Params:
        """Q_i Xavier normal on the full (n_i × features) matrix, d_i = 0; DDTP-RHL's random layer
        R, r ~ U(−1/√n_L, 1/√n_L) (PyTorch's ``nn.Linear`` default, docs/algorithms.md#the-fully-connected-networks)."""
        fb: Params = {}
        n_L = net.sizes[-1]
        if self.random_layer:
            m, bound = self.hp["size_hidden_fb"], n_L ** -0.5
            fb["R"] = rand_uniform((m, n_L), -bound, bound, generator, net.dtype, device)
            fb["r"] = rand_uniform((m,), -bound, bound, generator, net.dtype, device)
        for i in range(1, net.L):
            Q = xavier_normal((net.sizes[i], self._feature_size(net, i)), generator, net.dtype, device)
            fb[f"Q{i}"] = Q
            if self._has_fb_bias(net, i):
                fb[f"d{i}"] = torch.zeros(Q.shape[:-1], dtype=net.dtype, device=Q.device)
        return fb

    def _has_fb_bias(self, net: Network, i: int) -> bool:
        """d_i exists where layer i is dense and has a forward bias (the MLP: not on layer L−1 without
        ``last_hidden_bias``, docs/algorithms.md#no-bias-in-the-last-hidden-layer; the CNN: d_3 only,
        docs/algorithms.md#cnn-targets)."""
        return net.bias[i - 1] and len(net.layer_shapes[i]) == 1

    def trainable_feedback(self, feedback) -> list[str]:
        return [k for k in feedback if k[0] in "Qd"] if self.trains_feedback else []

    def noise_layers(self, net: Network) -> dict[int, int]:
        return {i: i for i in range(1, net.L)} if self.trains_feedback else {}

    # ------------------------------------------------------------------------------- feedback maps
    def _shared(self, feedback: Params, z: Tensor) -> Tensor | None:
        """s(z) = tanh(R z + r), the fixed random hidden feedback layer (DDTP-RHL), else None."""
        if not self.random_layer:
            return None
        return torch.tanh(z @ feedback["R"].mT + feedback["r"].unsqueeze(-2))  # (..., B, m)

    def _features(self, net: Network, i: int, z: Tensor, s: Tensor | None, h_i: Tensor) -> Tensor:
        """u_i(z; h_i): the input of Q_i."""
        if not self._uses_random_layer(net, i):
            return z  # (..., B, n_L)
        if self.recurrent_input:
            return torch.cat([s, h_i.expand(*s.shape[:-1], h_i.shape[-1])], dim=-1)  # (..., B, m+n_i)
        return s  # (..., B, m)

    def _g(self, net: Network, feedback: Params, i: int, feat: Tensor) -> tuple[Tensor, Tensor]:
        """(pre-activation, output) of g_i given its features."""
        u = feat @ feedback[f"Q{i}"].mT  # (..., B, n_i)
        if self._has_fb_bias(net, i):
            u = u + feedback[f"d{i}"].unsqueeze(-2)
        return u, get_activation(self.fb_activation_name)(u)

    def feedback_map(self, net: Network, feedback: Params, i: int, z: Tensor, h_i: Tensor) -> Tensor:
        """g_i(z; h_i) for a batch of output-space values z (..., B, n_L), shaped like h_i."""
        h_flat = net.flatten_layer(i, h_i)
        g = self._g(net, feedback, i, self._features(net, i, z, self._shared(feedback, z), h_flat))[1]
        return net.unflatten_layer(i, g)

    # ------------------------------------------------------------------------------------- targets
    def _output_space(self, net: Network, fwd: Forward) -> OutputSpace:
        """How the feedback reads output-layer values in this step (DDTP-GGN overrides it)."""
        return IDENTITY

    def _clean(self, net, feedback, fwd: Forward, space: OutputSpace) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
        """(features, pre-activation, output) of g_i(h_L) for every hidden layer."""
        z = space(fwd.output)
        s = self._shared(feedback, z)
        out = {}
        for i in range(1, net.L):
            feat = self._features(net, i, z, s, net.flatten_layer(i, fwd.h[i]))
            out[i] = (feat, *self._g(net, feedback, i, feat))
        return out

    def _forward_update(self, net, params, feedback, fwd, y) -> StepResult:
        h_hat_L, _ = output_target(net, fwd, y, self.hp["target_stepsize"])
        space = self._output_space(net, fwd)
        z_hat = space.target(fwd.output, h_hat_L)  # the feedback's input for the output target
        s_hat = self._shared(feedback, z_hat)
        clean = self._clean(net, feedback, fwd, space)
        targets = {}
        for i in range(1, net.L):
            h_i = net.flatten_layer(i, fwd.h[i])  # (..., B, n_i)
            g_hat = self._g(net, feedback, i, self._features(net, i, z_hat, s_hat, h_i))[1]
            targets[i] = net.unflatten_layer(i, g_hat + h_i - clean[i][2])  # ĥ_i = g_i(ĥ_L) + h_i − g_i(h_L)
        targets[net.L] = h_hat_L
        return StepResult(forward_grads=local_loss_gradients(net, params, fwd, targets), targets=targets,
                          loss=net.loss_value(fwd.output, y), output=fwd.output,
                          cache={"clean": clean, "space": space})

    # ----------------------------------------------------------------------------- feedback losses
    def _feedback_gradients(self, net, params, feedback, fwd, noise, cache):
        dfb = get_activation(self.fb_activation_name).derivative
        clean, space = None, cache.get("space") or self._output_space(net, fwd)
        if self.feedback_loss == "drl":  # g_i(h_L) at the clean output, shared with the targets
            clean = cache.get("clean") or self._clean(net, feedback, fwd, space)
        grads, losses = {}, {}
        for i in range(1, net.L):
            h_noisy = fwd.h[i] + noise[i]  # h̃_i
            y_noisy = space(net.forward_from(params, i, h_noisy))  # ỹ = F_{i→L}(h̃_i) (transformed: T ỹ)
            h_i, h_noisy = net.flatten_layer(i, fwd.h[i]), net.flatten_layer(i, h_noisy)  # (..., B, n_i)
            feat_n = self._features(net, i, y_noisy, self._shared(feedback, y_noisy), h_i)
            u_n, g_n = self._g(net, feedback, i, feat_n)
            count = h_i.shape[-2] * h_i.shape[-1]  # mean over B × n_i
            if self.feedback_loss == "drl":
                feat_c, u_c, g_c = clean[i]
                resid = g_n + h_i - g_c - h_noisy  # r − h̃_i
                scale = 1.0 / self.hp["sigma"] ** 2  # a number, or (R,) per replica
                G = 2.0 * per_replica(scale, resid) * resid / count  # ∂L/∂r
                dU_n, dU_c = G * dfb(u_n, g_n), -G * dfb(u_c, g_c)
                gQ = dU_n.mT @ feat_n + dU_c.mT @ feat_c
                gd = (dU_n + dU_c).sum(-2)
            else:  # control: no difference correction, no 1/σ²
                resid, scale = g_n - h_noisy, 1.0
                dU_n = 2.0 * resid / count * dfb(u_n, g_n)
                gQ, gd = dU_n.mT @ feat_n, dU_n.sum(-2)
            grads[f"Q{i}"] = gQ
            if self._has_fb_bias(net, i):
                grads[f"d{i}"] = gd
            losses[i] = scale * (resid ** 2).mean(dim=(-2, -1))  # per replica: (R,) * (R,)
        return grads, losses
