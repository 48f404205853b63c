"""The fully connected network of SPEC §1 as a stateless description plus a parameter dictionary.

Notation (SPEC §0, paper convention): layers 1…L, ``sizes = (n_0, n_1, …, n_L)``; for every layer

    a_i = W_i h_{i-1} + b_i,   h_i = φ_i(a_i),   h_0 = x,

with φ_i = tanh for hidden layers and φ_L = identity (the logits).  Batches are row-major: ``h_i`` has
shape ``(..., B, n_i)`` and ``a_i = h_{i-1} @ W_iᵀ + b_i``.  ``...`` is an optional leading *replica*
dimension R: parameters of shape ``(R, n_i, n_{i-1})`` hold R independent networks (e.g. R seeds) that
are evaluated together; every function here broadcasts over it.

Parameters live in a plain ``dict[str, Tensor]`` keyed ``W1, b1, …, WL, bL`` (no ``b_i`` when layer i has
no bias), so that updates are dictionaries with the same keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from .activations import Activation, get_activation
from .random import Generators, rand_uniform, randn

__all__ = ["MLP", "Forward", "INITIALIZATIONS", "LOSSES", "xavier_normal"]

Params = dict[str, Tensor]

INITIALIZATIONS = ("xavier_normal", "xavier_uniform", "teacher")
LOSSES = ("cross_entropy", "mse")


def xavier_normal(shape: tuple[int, int], generator: Generators, dtype, device=None,
                  gain: float = 1.0) -> Tensor:
    """Glorot/Xavier normal draw for a matrix of ``shape = (fan_out, fan_in)``:
    std = gain·√(2 / (fan_in + fan_out))  (SPEC §1)."""
    fan_out, fan_in = shape
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return std * randn(shape, generator, dtype, device)


@dataclass
class Forward:
    """Activations of one forward pass: ``a[i]``, ``h[i]`` for i = 0…L (``a[0]`` is None, ``h[0] = x``)."""

    a: list
    h: list

    @property
    def output(self) -> Tensor:
        return self.h[-1]


@dataclass(frozen=True)
class MLP:
    """A fully connected network description (no parameters inside).

    Args:
        sizes: ``(n_0, …, n_L)``.
        activations: activation name of each layer 1…L (``len = L``).
        bias: whether each layer 1…L has a bias (``len = L``).
        loss: ``"cross_entropy"`` (softmax cross-entropy on the linear output, mean over the batch) or
            ``"mse"`` (PyTorch ``MSELoss``: mean over batch and output units).
        dtype: parameter dtype (float64 by default: SPEC §12.1).
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    bias: tuple[bool, ...]
    loss: str = "cross_entropy"
    dtype: torch.dtype = torch.float64
    _acts: tuple[Activation, ...] = field(init=False, repr=False, compare=False)

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
            raise ValueError(f"unknown loss {self.loss!r}; valid choices: {', '.join(LOSSES)}")
        object.__setattr__(self, "activations", acts)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "_acts", tuple(get_activation(a) for a in acts))

    # ------------------------------------------------------------------------------------------ build
    @classmethod
    def build(cls, sizes: Sequence[int], hidden_activation: str = "tanh",
              output_activation: str = "linear", bias: bool | Sequence[bool] = True,
              loss: str = "cross_entropy", dtype: torch.dtype = torch.float64) -> "MLP":
        """The SPEC §1 network: ``hidden_activation`` on layers 1…L−1, ``output_activation`` on L."""
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
        """Fresh parameters: weights by ``init`` (SPEC §1), biases zero.

        ``init``: ``xavier_normal`` (all final configs), ``xavier_uniform`` (the code's ``xavier``,
        bound √(6/(fan_in+fan_out))), ``teacher`` (Xavier normal with gain 3, SPEC §9.1).
        A sequence of R generators gives parameters with a leading replica dimension R.
        """
        if init not in INITIALIZATIONS:
            raise ValueError(f"unknown initialization {init!r}; valid choices: {', '.join(INITIALIZATIONS)}")
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
        """F_{i→L}: the output h_L obtained by feeding ``h_i`` through layers i+1…L (SPEC §0)."""
        h = h_i
        for k in range(i + 1, self.L + 1):
            _, h = self.layer(params, k, h)
        return h

    # ------------------------------------------------------------------------------------------- loss
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

        cross-entropy: e^b / B with e^b = softmax(h_L^b) − onehot(y_b)   (SPEC §2.1);
        mse: 2(h_L^b − y^b) / (B·n_L)                                      (SPEC §15).
        """
        B, n_L = output.shape[-2], output.shape[-1]
        if self.loss == "cross_entropy":
            onehot = torch.nn.functional.one_hot(y, n_L).to(output.dtype)
            return (torch.softmax(output, dim=-1) - onehot) / B
        return 2.0 * (output - y) / (B * n_L)

    def accuracy(self, output: Tensor, y: Tensor) -> Tensor:
        """Fraction of correct argmax predictions per replica (classification only)."""
        return (output.argmax(-1) == y).to(output.dtype).mean(-1)
