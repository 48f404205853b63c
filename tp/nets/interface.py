"""The one network interface every learning rule, :mod:`tp.metrics.alignment` and :mod:`tp.nets.gauss_newton` use.

Two networks implement it: the fully connected network of docs/algorithms.md#the-fully-connected-networks
(:class:`tp.nets.mlp.MLP`) and the CNN of docs/algorithms.md#the-cnn-table-3 (:class:`tp.nets.cnn.ConvNet`).  A rule never
asks which one it has: everything that differs between them (the layer maps, the local loss of a layer, the output
Jacobians, the BP gradient) is a method here.

Conventions (docs/algorithms.md#layers-and-symbols): layers 1…L; ``h_i`` has shape (..., B, *layer_shapes[i]) — (..., B,
n_i) for dense layers, (..., B, C, H, W) for the CNN's conv blocks — where ``...`` is an optional leading replica axis
R; parameters are a plain ``dict[str, Tensor]`` keyed ``W1, b1, …`` (:data:`Params`).  Feedback maps of the rules live
in the flattened space ℝ^{n_i} (``sizes[i] = prod(layer_shapes[i])``): :meth:`Network.flatten_layer` and
:meth:`Network.unflatten_layer` convert.

The losses are written once, here (:class:`Losses`), for both networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor

from .activations import Activation

__all__ = ["Network", "Forward", "Losses", "LOSSES", "Params"]

Params = dict[str, Tensor]
LOSSES = ("cross_entropy", "mse")


@dataclass
class Forward:
    """Activations of one forward pass: ``a[i]``, ``h[i]`` for i = 0…L (``a[0]`` is None, ``h[0] = x``)."""

    a: list
    h: list

    @property
    def output(self) -> Tensor:
        return self.h[-1]


class Losses:
    """ℒ of docs/algorithms.md#the-output-target for a network with a ``loss`` attribute (``"cross_entropy"`` or
    ``"mse"``)."""

    loss: str

    def per_sample_loss(self, output: Tensor, y: Tensor) -> Tensor:
        """Loss of each sample, (..., B): −log softmax(h_L^b)_{y_b}, or the mean of (h_L^b − y^b)²."""
        if self.loss == "cross_entropy":
            logp = torch.log_softmax(output, dim=-1)
            idx = y.expand(output.shape[:-1]).unsqueeze(-1)
            return -logp.gather(-1, idx).squeeze(-1)
        return ((output - y) ** 2).mean(-1)

    def loss_value(self, output: Tensor, y: Tensor) -> Tensor:
        """ℒ per replica: shape ``output.shape[:-2]`` (a scalar without replicas).

        cross-entropy: (1/B) Σ_b −log softmax(h_L^b)_{y_b};  mse: mean over B·n_L of (h_L − y)²
        (PyTorch ``CrossEntropyLoss`` / ``MSELoss`` with their default mean reduction).
        """
        return self.per_sample_loss(output, y).mean(-1)

    def output_gradient(self, output: Tensor, y: Tensor) -> Tensor:
        """∂ℒ/∂h_L of the minibatch-mean loss, per sample: (..., B, n_L).

        cross-entropy: e^b / B with e^b = softmax(h_L^b) − onehot(y_b)   (docs/algorithms.md#the-output-target);
        mse: 2(h_L^b − y^b) / (B·n_L)                                      (docs/algorithms.md#the-output-target).
        """
        B, n_L = output.shape[-2], output.shape[-1]
        if self.loss == "cross_entropy":
            onehot = torch.nn.functional.one_hot(y, n_L).to(output.dtype)
            return (torch.softmax(output, dim=-1) - onehot) / B
        return 2.0 * (output - y) / (B * n_L)

    def accuracy(self, output: Tensor, y: Tensor) -> Tensor:
        """Fraction of correct argmax predictions per replica (classification only)."""
        return (output.argmax(-1) == y).to(output.dtype).mean(-1)


class Network(Protocol):
    """What the rules, the alignment metrics and the Gauss–Newton targets need of a network."""

    L: int  # number of layers (hidden + output)
    loss: str  # "cross_entropy" or "mse" (:data:`LOSSES`)
    dtype: torch.dtype

    @property
    def sizes(self) -> tuple[int, ...]:
        """Flattened widths n_0 … n_L."""

    @property
    def layer_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape of one sample's h_0 … h_L: (n_i,) for dense layers, (C, H, W) for conv blocks."""

    @property
    def bias(self) -> tuple[bool, ...]:
        """Whether each layer 1…L has a bias b_i."""

    def activation(self, i: int) -> Activation:
        """φ_i of layer i (1-based)."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name → shape of one network's parameters, in the order W1, b1, …, WL, bL."""

    def init_params(self, generator, init: str = "xavier_normal", device=None) -> Params:
        """Fresh parameters; a sequence of R generators gives R replicas (replica r from generator r)."""

    def forward(self, params: Params, x: Tensor) -> Forward:
        """The forward pass (a :class:`tp.nets.mlp.Forward`: ``a[i]``, ``h[i]`` for i = 0…L)."""

    def forward_from(self, params: Params, i: int, h_i: Tensor) -> Tensor:
        """F_{i→L}(h_i): the output of layers i+1…L fed with ``h_i``."""

    def local_loss_gradients(self, params: Params, fwd: Forward, targets: dict[int, Tensor]) -> Params:
        """∂ℒ_i/∂(W_i, b_i) of the local loss of each layer i in ``targets`` (ĥ_i, h_{i−1} held constant)."""

    def backprop_gradients(self, params: Params, fwd: Forward, dL_dhL: Tensor) -> Params:
        """∂ℒ/∂θ of every parameter given ∂ℒ/∂h_L (..., B, n_L): the BP gradient."""

    def output_jacobians(self, params: Params, fwd: Forward, layers: Sequence[int] | None = None) -> dict[int, Tensor]:
        """``{i: J_i}``, J_i^b = ∂h_L^b/∂h_i^b flattened to (..., B, n_L, n_i), for ``layers`` (default 1…L)."""

    def flatten_layer(self, i: int, h: Tensor) -> Tensor:
        """A value of layer i, (..., B, *layer_shapes[i]) → (..., B, n_i)."""

    def unflatten_layer(self, i: int, v: Tensor) -> Tensor:
        """(..., B, n_i) → (..., B, *layer_shapes[i])."""

    def per_sample_loss(self, output: Tensor, y: Tensor) -> Tensor: ...

    def loss_value(self, output: Tensor, y: Tensor) -> Tensor: ...

    def output_gradient(self, output: Tensor, y: Tensor) -> Tensor: ...

    def accuracy(self, output: Tensor, y: Tensor) -> Tensor: ...
