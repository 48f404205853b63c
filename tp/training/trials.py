"""Blocks of *trials* (:func:`tp.training.train_trials`): replicas that differ in their continuous
hyperparameters as well as in their seeds (the block path of :mod:`tp.search`, and any sweep of rates over
one rule and network shape).

Replica r trains configuration ``cfgs[r]`` from seed ``seeds[r]``; the configurations may differ only in
:data:`PER_REPLICA_KEYS` — the forward and feedback Adam rates, ε, betas and weight decays, the output
target stepsize β and the feedback noise σ.  These become per-replica values of the optimisers
(:class:`tp.core.optim.Adam`) and (R,) tensors of the rule, broadcast over each replica's slice, so that replica
r computes exactly what the run of ``cfgs[r]`` alone computes (float64: equal up to rounding; tested).
Each trial has its own result folder in the single-run format (its own ``config.yaml``, checkpoint and
summary), so a trial trained in a block resumes alone and vice versa.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..config.validation import KEYS
from ..errors import ConfigError

__all__ = ["PER_REPLICA_KEYS", "check_trial_configs"]

#: configuration keys whose values may differ between the replicas of one block (tp.config.validation.KEYS)
PER_REPLICA_KEYS = tuple(name for name, key in KEYS.items() if key.per_replica)


def check_trial_configs(cfgs: Sequence[Mapping[str, Any]]) -> None:
    """The configurations of one block must agree in every key but :data:`PER_REPLICA_KEYS`."""
    if not cfgs:
        raise ConfigError("a block of trials needs at least one configuration")
    base = cfgs[0]
    for r, cfg in enumerate(cfgs[1:], start=1):
        keys = sorted(k for k in set(base) | set(cfg) if k not in PER_REPLICA_KEYS and base.get(k) != cfg.get(k))
        if keys:
            raise ConfigError(f"trial {r} differs from trial 0 in {', '.join(keys)}; the trials of one block may "
                              f"differ only in {', '.join(PER_REPLICA_KEYS)}")
