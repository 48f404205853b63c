"""Hyperparameters that differ between the replicas of a block (:mod:`tp.training.trials`).

A rule hyperparameter (β = ``target_stepsize``, σ = ``sigma``) is a number, or a tensor of one value per
replica, shape (R,).  :func:`per_replica` shapes it to broadcast against a tensor with a leading replica
dimension, so the rules' formulas read the same in both cases.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["per_replica", "is_per_replica"]


def is_per_replica(value) -> bool:
    return isinstance(value, Tensor) and value.dim() == 1


def per_replica(value, like: Tensor):
    """``value`` as it broadcasts against ``like`` (R, …): a number as it is, an (R,) tensor as (R, 1, …, 1)."""
    if is_per_replica(value):
        if like.dim() == 0 or like.shape[0] != value.shape[0]:
            raise ValueError(f"a per-replica hyperparameter of {value.shape[0]} replicas against a tensor of "
                             f"shape {tuple(like.shape)} (no matching leading replica dimension)")
        return value.reshape(value.shape[0], *([1] * (like.dim() - 1)))
    return value
