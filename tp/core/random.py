"""Random draws from explicit generators, with an optional leading replica dimension.

Every random quantity in ``tp`` (initialisation, feedback noise) comes from a ``torch.Generator`` that the
caller passes in, never from the global RNG.  A *sequence* of generators means "one replica per
generator": the draw of replica r uses generator r only, so R replicas trained together draw exactly what
R separate single-seed runs would draw.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

Generators = Union[torch.Generator, Sequence[torch.Generator]]

__all__ = ["Generators", "randn", "rand_uniform", "num_replicas"]


def num_replicas(generator: Generators) -> int | None:
    """``None`` for a single generator, else the number of replicas."""
    return None if isinstance(generator, torch.Generator) else len(generator)


def _draw(kind: str, shape, generator: Generators, dtype, device) -> Tensor:
    def one(g: torch.Generator) -> Tensor:
        fn = torch.randn if kind == "normal" else torch.rand
        out = fn(tuple(shape), generator=g, dtype=dtype, device=g.device)
        return out if device is None else out.to(device)

    if isinstance(generator, torch.Generator):
        return one(generator)
    if len(generator) == 0:
        raise ValueError("an empty sequence of generators was given; pass at least one")
    return torch.stack([one(g) for g in generator])  # (R, *shape)


def randn(shape, generator: Generators, dtype=torch.float64, device=None) -> Tensor:
    """Standard normal draw of ``shape`` (``(R, *shape)`` for R generators)."""
    return _draw("normal", shape, generator, dtype, device)


def rand_uniform(shape, low: float, high: float, generator: Generators, dtype=torch.float64,
                 device=None) -> Tensor:
    """Uniform draw on [low, high) of ``shape`` (``(R, *shape)`` for R generators)."""
    return low + (high - low) * _draw("uniform", shape, generator, dtype, device)
