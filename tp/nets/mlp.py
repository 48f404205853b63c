"""The fully connected network of docs/algorithms.md#the-fully-connected-networks as a stateless description plus a
parameter dictionary.

Notation (docs/algorithms.md#layers-and-symbols, paper convention): layers 1…L, ``sizes = (n_0, n_1, …, n_L)``; for
every layer

    a_i = W_i h_{i-1} + b_i,   h_i = φ_i(a_i),   h_0 = x,

with φ_i = tanh for hidden layers and φ_L = identity (the logits).  Batches are row-major: ``h_i`` has
shape ``(..., B, n_i)`` and ``a_i = h_{i-1} @ W_iᵀ + b_i``.  ``...`` is an optional leading *replica*
dimension R: parameters of shape ``(R, n_i, n_{i-1})`` hold R independent networks (e.g. R seeds) that
are evaluated together; every function here broadcasts over it.

Parameters live in a plain ``dict[str, Tensor]`` keyed ``W1, b1, …, WL, bL`` (no ``b_i`` when layer i has
no bias), so that updates are dictionaries with the same keys.  The MLP implements the network interface of
:mod:`tp.nets.interface` (shared with the CNN); its losses are :class:`tp.nets.interface.Losses`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ..core.random import Generators, rand_uniform, randn
from ..errors import unknown
from .activations import Activation, get_activation
from .interface import LOSSES, Forward, Losses, Params
from .targets import dense_local_loss_gradients

__all__ = ["MLP", "Forward", "Params", "INITIALIZATIONS", "LOSSES", "xavier_normal"]

INITIALIZATIONS = ("xavier_normal", "xavier_uniform", "teacher")


def xavier_normal(shape: tuple[int, int], generator: Generators, dtype, device=None,
                  gain: float = 1.0) -> Tensor:
    """Glorot/Xavier normal draw for a matrix of ``shape = (fan_out, fan_in)``:
    std = gain·√(2 / (fan_in + fan_out))  (docs/algorithms.md#the-fully-connected-networks)."""
    fan_out, fan_in = shape
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return std * randn(shape, generator, dtype, device)


@dataclass(frozen=True)
class MLP(Losses):
    """A fully connected network description (no parameters inside).

    Args:
        sizes: ``(n_0, …, n_L)``.
        activations: activation name of each layer 1…L (``len = L``).
        bias: whether each layer 1…L has a bias (``len = L``).
        loss: ``"cross_entropy"`` (softmax cross-entropy on the linear output, mean over the batch) or
            ``"mse"`` (PyTorch ``MSELoss``: mean over batch and output units).
        dtype: parameter dtype (float64 by default: docs/algorithms.md#float64-against-lost-target-displacements).
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    bias: tuple[bool, ...]
    loss: str = "cross_entropy"
    dtype: torch.dtype = torch.float64
    _acts: tuple[Activation, ...] = field(init=False, repr=False, compare=False)
    _shapes: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        sizes = tuple(int(n) for n in self.sizes)
        object.__setattr__(self, "sizes", sizes)
        if len(sizes) < 2 or any(n <= 0 for n in sizes):
            raise ValueError(f"sizes must list at least an input and an output width > 0, got {sizes}")
        L = len(sizes) - 1
        acts, bias = tuple(self.activations), tuple(bool(b) for b in self.bias)
        if len(acts) != L:
            raise ValueError(f"activations must name one activation per layer ({L}), got {acts}")
        if len(bias) != L:
            raise ValueError(f"bias must have one entry per layer ({L}), got {bias}")
        if self.loss not in LOSSES:
            raise unknown("loss", self.loss, LOSSES)
        object.__setattr__(self, "activations", acts)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "_acts", tuple(get_activation(a) for a in acts))
        object.__setattr__(self, "_shapes", tuple((n,) for n in sizes))  # read on every step: built once

    # ------------------------------------------------------------------------------------------ build
    @classmethod
    def build(cls, sizes: Sequence[int], hidden_activation: str = "tanh",
              output_activation: str = "linear", bias: bool | Sequence[bool] = True,
              loss: str = "cross_entropy", dtype: torch.dtype = torch.float64) -> "MLP":
        """The docs/algorithms.md#the-fully-connected-networks network: ``hidden_activation`` on layers 1…L−1,
        ``output_activation`` on L."""
        L = len(sizes) - 1
        acts = (hidden_activation,) * (L - 1) + (output_activation,)
        if isinstance(bias, bool):
            bias = (bias,) * L
        return cls(tuple(sizes), acts, tuple(bias), loss, dtype)

    @property
    def L(self) -> int:
        """Number of layers (hidden + output)."""
        return len(self.sizes) - 1

    def activation(self, i: int) -> Activation:
        """φ_i of layer i (1-based)."""
        return self._acts[i - 1]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for i in range(1, self.L + 1):
            shapes[f"W{i}"] = (self.sizes[i], self.sizes[i - 1])
            if self.bias[i - 1]:
                shapes[f"b{i}"] = (self.sizes[i],)
        return shapes

    def init_params(self, generator: Generators, init: str = "xavier_normal", device=None) -> Params:
        """Fresh parameters: weights by ``init`` (docs/algorithms.md#the-fully-connected-networks), biases zero.

        ``init``: ``xavier_normal`` (all final configs), ``xavier_uniform`` (the code's ``xavier``,
        bound √(6/(fan_in+fan_out))), ``teacher`` (Xavier normal with gain 3, docs/algorithms.md#student-teacher-data).
        A sequence of R generators gives parameters with a leading replica dimension R.
        """
        if init not in INITIALIZATIONS:
            raise unknown("initialization", init, INITIALIZATIONS)
        params: Params = {}
        for i in range(1, self.L + 1):
            shape = (self.sizes[i], self.sizes[i - 1])
            if init == "xavier_uniform":
                bound = math.sqrt(6.0 / sum(shape))
                W = rand_uniform(shape, -bound, bound, generator, self.dtype, device)
            else:
                W = xavier_normal(shape, generator, self.dtype, device, 3.0 if init == "teacher" else 1.0)
            params[f"W{i}"] = W
            if self.bias[i - 1]:
                params[f"b{i}"] = torch.zeros(W.shape[:-1], dtype=self.dtype, device=W.device)
        return params

    # ---------------------------------------------------------------------------------------- forward
    def layer(self, params: Params, i: int, h_prev: Tensor) -> tuple[Tensor, Tensor]:
        """f_i: ``(a_i, h_i)`` from ``h_{i-1}`` (..., B, n_{i-1})."""
        a = h_prev @ params[f"W{i}"].mT  # (..., B, n_i)
        if self.bias[i - 1]:
            a = a + params[f"b{i}"].unsqueeze(-2)
        return a, self.activation(i)(a)

    def forward(self, params: Params, x: Tensor) -> Forward:
        """Forward pass storing every a_i, h_i.  ``x``: (..., B, n_0), flattened inputs."""
        a, h = [None], [x]
        for i in range(1, self.L + 1):
            ai, hi = self.layer(params, i, h[-1])
            a.append(ai)
            h.append(hi)
        return Forward(a, h)

    def forward_from(self, params: Params, i: int, h_i: Tensor) -> Tensor:
        """F_{i→L}: the output h_L obtained by feeding ``h_i`` through layers i+1…L
        (docs/algorithms.md#layers-and-symbols)."""
        h = h_i
        for k in range(i + 1, self.L + 1):
            _, h = self.layer(params, k, h)
        return h

    # ------------------------------------------------------------------------- gradients and Jacobians
    def local_loss_gradients(self, params: Params, fwd: Forward, targets) -> Params:
        """∂/∂(W_i, b_i) of ℒ_i = (1/B) Σ_b ‖h_i^b − ĥ_i^b‖² for the layers in ``targets``
        (docs/algorithms.md#the-local-layer-loss, :func:`tp.nets.targets.dense_local_loss_gradients`), keyed like
        ``params``."""
        grads: Params = {}
        for i, h_hat in targets.items():
            gW, gb = dense_local_loss_gradients(self.activation(i), fwd.a[i], fwd.h[i], fwd.h[i - 1], h_hat,
                                                self.bias[i - 1])
            grads[f"W{i}"] = gW
            if gb is not None:
                grads[f"b{i}"] = gb
        return dict(sorted(grads.items(), key=lambda kv: (int(kv[0][1:]), kv[0][0] == "b")))

    def backprop_gradients(self, params: Params, fwd: Forward, dL_dhL: Tensor) -> Params:
        """∂ℒ/∂θ for every parameter by the chain rule, given ∂ℒ/∂h_L (..., B, n_L) (docs/algorithms.md#bp):

            δ_L = ∂ℒ/∂h_L ⊙ φ_L′(a_L),   δ_i = (δ_{i+1} W_{i+1}) ⊙ φ_i′(a_i),
            ∂ℒ/∂W_i = Σ_b δ_i^b h_{i−1}^bᵀ,   ∂ℒ/∂b_i = Σ_b δ_i^b

        (``dL_dhL`` already carries the 1/B of the minibatch mean).
        """
        grads: Params = {}
        delta = dL_dhL * self.activation(self.L).derivative(fwd.a[self.L], fwd.h[self.L])  # (..., B, n_L)
        for i in range(self.L, 0, -1):
            grads[f"W{i}"] = delta.mT @ fwd.h[i - 1]  # (..., n_i, n_{i-1})
            if self.bias[i - 1]:
                grads[f"b{i}"] = delta.sum(-2)
            if i > 1:
                delta = (delta @ params[f"W{i}"]) * self.activation(i - 1).derivative(fwd.a[i - 1], fwd.h[i - 1])
        return {k: grads[k] for k in self.param_shapes()}

    def output_jacobians(self, params: Params, fwd: Forward, layers: Sequence[int] | None = None) -> dict:
        """``{i: J_i}`` with J_i^b = ∂h_L^b/∂h_i^b of shape (..., B, n_L, n_i), for ``layers`` (default 1…L):
        J_L = I,  J_i = (J_{i+1} ⊙ φ′_{i+1}(a_{i+1})) W_{i+1}  (all samples at once, no loop over them)."""
        layers = list(range(1, self.L + 1)) if layers is None else sorted(layers)
        out = fwd.output
        n_L = out.shape[-1]
        eye = torch.eye(n_L, dtype=out.dtype, device=out.device)
        J = {self.L: eye.expand(*out.shape[:-1], n_L, n_L)}  # J_L = ∂h_L/∂h_L = I for every sample
        for i in range(self.L - 1, layers[0] - 1, -1):
            dphi = self.activation(i + 1).derivative(fwd.a[i + 1], fwd.h[i + 1])  # (..., B, n_{i+1})
            W = params[f"W{i + 1}"].unsqueeze(-3)  # (..., 1, n_{i+1}, n_i)
            J[i] = (J[i + 1] * dphi.unsqueeze(-2)) @ W  # (..., B, n_L, n_i)
        return {i: J[i] for i in layers}

    @property
    def layer_shapes(self) -> tuple[tuple[int, ...], ...]:
        """(n_i,) for i = 0…L: every layer is dense."""
        return self._shapes

    def flatten_layer(self, i: int, h: Tensor) -> Tensor:
        """Dense layers are flat already: ``h`` itself."""
        return h

    def unflatten_layer(self, i: int, v: Tensor) -> Tensor:
        return v
