"""Blocks of *trials*: replicas that differ in their continuous hyperparameters as well as in their seeds
(the block path of :mod:`tp.search`, and any sweep of rates over one rule and network shape).

Replica r trains configuration ``cfgs[r]`` from seed ``seeds[r]``; the configurations may differ only in
:data:`PER_REPLICA_KEYS` — the forward and feedback Adam rates, ε, betas and weight decays, the output
target stepsize β and the feedback noise σ.  These become per-replica values of the optimisers
(:class:`tp.optim.Adam`) and (R,) tensors of the rule, broadcast over each replica's slice, so that replica
r computes exactly what the run of ``cfgs[r]`` alone computes (float64: equal up to rounding; tested).
Each trial has its own result folder in the single-run format (its own ``config.yaml``, checkpoint and
summary), so a trial trained in a block resumes alone and vice versa.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import torch

from ..data import DataSplits
from ..errors import ConfigError
from ..validation import KEYS
from .api import fast_path, train_blocks
from .hooks import Hook
from .loop import Options, log_to_stderr

__all__ = ["PER_REPLICA_KEYS", "check_trial_configs", "train_trials"]

#: configuration keys whose values may differ between the replicas of one block (tp.validation.KEYS)
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
    if len(cfgs) > 1 and (base["log_alignment"] or base["gn_damping_hpsearch"]):
        raise ConfigError("alignment logging and the damping search run one configuration per process")


def train_trials(cfgs: Sequence[Mapping[str, Any]], data: DataSplits, seeds: Sequence[int],
                 out_dirs: Sequence[str | os.PathLike | None] | None = None, device="cpu", *,
                 loss: str = "cross_entropy", progress: bool | None = None,
                 log: Callable[[str], None] | None = None, on_epoch_end: Callable[[int], None] | None = None,
                 keep_checkpoint: bool = False, prune: bool = True, fast: str = "auto",
                 hooks: Sequence[Hook] = ()) -> list[dict]:
    """Train trial r (configuration ``cfgs[r]``, seed ``seeds[r]``) for every r as one block of replicas;
    their summaries (also written to ``out_dirs[r]``).  ``data`` needs one replica split per trial
    (:meth:`DataSplits.replica_splits`, e.g. ``load_dataset(..., split_generator=[...])``) unless it has
    no validation set.  The other arguments are those of :func:`tp.training.train_seeds`."""
    cfgs = [dict(c) for c in cfgs]
    seeds = [int(s) for s in seeds]
    check_trial_configs(cfgs)
    if len(seeds) != len(cfgs) or (seeds and min(seeds) < 0):
        raise ConfigError(f"{len(cfgs)} trial configurations need {len(cfgs)} non-negative seeds, got {seeds}")
    out_dirs = list(out_dirs) if out_dirs is not None else [None] * len(cfgs)
    if len(out_dirs) != len(cfgs):
        raise ConfigError(f"{len(cfgs)} trials but {len(out_dirs)} output folders")
    if len({str(o) for o in out_dirs if o is not None}) != sum(o is not None for o in out_dirs):
        raise ConfigError("every trial needs its own output folder")
    rows = data.train_index.shape[0] if data.train_index is not None else None
    if rows is not None and rows != len(cfgs):
        raise ConfigError(f"data holds replica splits for {rows} trials but {len(cfgs)} trials were given")
    if rows is None and data.val_x is not None:
        raise ConfigError("trials with a validation set need replica splits (one per trial): load the data "
                          "with one split generator per trial")
    device = torch.device(device)
    options = Options(device=device, loss=loss, replicas=True, graphs=fast_path(fast, device), progress=progress,
                      log=log or log_to_stderr, on_epoch_end=on_epoch_end, keep_checkpoint=keep_checkpoint,
                      prune=prune, hooks=tuple(hooks))
    return train_blocks(cfgs, data, seeds, out_dirs, options, per_replica=True)
