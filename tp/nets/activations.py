"""Element-wise activation functions of forward layers and feedback maps.

Each activation carries its derivative so that the learning rules can be written as explicit tensor
algebra (no autograd inside a minibatch step).  ``derivative(a, h)`` receives both the pre-activation
``a`` and the output ``h = f(a)`` so that, e.g., tanh reuses ``1 - h**2``.

``leaky_tanh`` (φ(a) = tanh(a) + α·a, α > 0) is a strictly increasing map of ℝ *onto* ℝ, so a network of
square layers with this activation is invertible: the paper's Condition 1 (Lemma 1, Theorem 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import unknown

__all__ = ["Activation", "ACTIVATIONS", "get_activation"]


@dataclass(frozen=True)
class Activation:
    """An element-wise map with its derivative and (where it exists) its inverse."""

    name: str
    fn: Callable[[Tensor], Tensor]
    # derivative(a, h) with h = fn(a): dφ/da, element-wise
    derivative: Callable[[Tensor, Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor] | None = None

    def __call__(self, a: Tensor) -> Tensor:
        return self.fn(a)


LEAKY_TANH_SLOPE = 0.1


def _leaky_tanh_inverse(h: Tensor, iterations: int = 60) -> Tensor:
    """Inverse of φ(a) = tanh(a) + α a by Newton's method (φ is strictly increasing, φ' ≥ α > 0)."""
    alpha = LEAKY_TANH_SLOPE
    a = h / (1.0 + alpha)
    for _ in range(iterations):
        t = torch.tanh(a)
        a = a - (t + alpha * a - h) / (1.0 - t * t + alpha)
    return a


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, lambda a, h: 1.0 - h * h, torch.atanh),
    "linear": Activation("linear", lambda a: a, lambda a, h: torch.ones_like(a), lambda h: h),
    "leaky_tanh": Activation(
        "leaky_tanh",
        lambda a: torch.tanh(a) + LEAKY_TANH_SLOPE * a,
        lambda a, h: 1.0 - torch.tanh(a) ** 2 + LEAKY_TANH_SLOPE,
        _leaky_tanh_inverse,
    ),
    "relu": Activation("relu", torch.relu, lambda a, h: (a > 0).to(a.dtype)),
}


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name; an unknown name is an error listing the valid ones."""
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise unknown("activation", name, sorted(ACTIVATIONS)) from None
