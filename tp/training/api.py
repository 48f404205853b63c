"""The one training entry, :func:`train_runs`, and its thin wrappers :func:`train` (one run),
:func:`train_seeds` (several seeds of one configuration trained together) and :func:`train_trials` (a block
of trials: replicas with their own continuous hyperparameters, :mod:`tp.training.trials`).

Every path goes through the same argument checks (:func:`check_job`), the same skipping of replicas that
already ended in their folder, the same grouping of the others by where they stand (a block per resume
point) and the same epoch loop (:class:`tp.training.loop.Block`); how they train is a
:class:`tp.training.options.TrainOptions`.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..core.runtime import dtype_of
from ..data.datasets import DataSplits
from ..errors import ConfigError, unknown
from ..runs.folder import hold_run_folders
from .loop import train_block
from .options import TrainOptions
from .records import CHECKPOINT
from .resume import finished_summary, resume_point
from .trials import check_trial_configs

__all__ = ["KINDS", "train_runs", "train", "train_seeds", "train_trials", "check_job", "replica_subset"]

#: what one call trains: ``run`` — one seed, tensors without a replica dimension; ``seeds`` — one
#: configuration, the seeds as replicas along a leading dimension; ``trials`` — replicas whose
#: configurations differ in the per-replica keys (tp.training.trials.PER_REPLICA_KEYS)
KINDS = ("run", "seeds", "trials")

Folder = str | os.PathLike | None


def train(cfg: Mapping[str, Any], data: DataSplits, seed: int, out_dir: Folder = None,
          options: TrainOptions | None = None, **option_values) -> dict:
    """Train one run and return its summary (also written to ``out_dir`` when given).

    ``cfg`` is a resolved configuration (:func:`tp.config.resolve_config`); ``data`` holds the splits in
    the run's dtype.  With an ``out_dir`` that holds a checkpoint of the same configuration and seed, the
    run resumes from it; one that holds a finished summary returns it without training.  ``options`` and
    ``option_values`` (its fields as keywords, e.g. ``device="cuda"``): :class:`TrainOptions`.
    """
    return train_runs("run", [cfg], data, [seed], [out_dir], TrainOptions.of(options, option_values))[0]


def train_seeds(cfg: Mapping[str, Any], data: DataSplits, seeds: Sequence[int],
                out_dirs: Sequence[Folder] | None = None, options: TrainOptions | None = None,
                **option_values) -> list[dict]:
    """Train one configuration for several seeds *together*: the seeds are replicas along a leading
    dimension of every tensor, each drawing from its own seed's generators (initialisation, shuffling,
    noise; validation split through ``data``'s replica splits, :meth:`DataSplits.replica_splits`), so each
    seed's result equals its single-seed run up to floating-point rounding.  One result folder per seed
    (``out_dirs``), in the single-run format; a seed that stops early (diverged, pruned) gets its final
    outputs at once and the others go on.  Returns the summaries in the order of ``seeds``."""
    return train_runs("seeds", [cfg] * len(seeds), data, seeds, out_dirs, TrainOptions.of(options, option_values))


def train_trials(cfgs: Sequence[Mapping[str, Any]], data: DataSplits, seeds: Sequence[int],
                 out_dirs: Sequence[Folder] | None = None, options: TrainOptions | None = None,
                 **option_values) -> list[dict]:
    """Train trial r (configuration ``cfgs[r]``, seed ``seeds[r]``) for every r as one block of replicas;
    their summaries (also written to ``out_dirs[r]``).  ``data`` needs one replica split per trial
    (:meth:`DataSplits.replica_splits`) unless it has no validation set or there is one trial."""
    return train_runs("trials", cfgs, data, seeds, out_dirs, TrainOptions.of(options, option_values))


def check_job(kind: str, cfgs: Sequence[Mapping], data: DataSplits, seeds: Sequence[int],
              out_dirs: Sequence[Folder] | None) -> tuple[list[dict], list[int], list[Path | None]]:
    """The checks every training entry makes, before anything trains: the configurations, seeds and
    folders (normalised) of one call of ``kind``."""
    if kind not in KINDS:
        raise unknown("kind of training", kind, KINDS)
    cfgs = [dict(c) for c in cfgs]
    given = list(seeds)
    try:  # ints, numpy ints; not floats, strings or booleans
        seeds = [operator.index(s) for s in given if not isinstance(s, bool)]
    except TypeError:
        seeds = []
    if not given or len(seeds) != len(given) or min(seeds) < 0:
        raise ConfigError(f"seeds must be non-negative integers and at least one, got {given}")
    if len(cfgs) != len(seeds):
        raise ConfigError(f"{len(cfgs)} configurations need {len(cfgs)} seeds, got {len(seeds)}")
    if kind == "seeds" and len(set(seeds)) != len(seeds):
        raise ConfigError(f"the seeds of one block must be distinct, got {seeds}")
    outs = list(out_dirs) if out_dirs is not None else [None] * len(seeds)
    if len(outs) != len(seeds):
        raise ConfigError(f"{len(seeds)} seeds but {len(outs)} output folders")
    outs = [Path(o) if o is not None else None for o in outs]
    named = [o.resolve() for o in outs if o is not None]
    if len(set(named)) != len(named):
        raise ConfigError("every run needs its own output folder")
    if kind == "trials":
        check_trial_configs(cfgs)
    if kind != "run" and any(c["log_alignment"] or c["gn_damping_hpsearch"] for c in cfgs):
        raise ConfigError("alignment logging and the damping search run one seed per process; "
                          "train those seeds one at a time (tp train --seed N)")
    rows = data.train_index.shape[0] if data.train_index is not None else None
    if kind == "run" and (len(seeds) != 1 or rows is not None):
        raise ConfigError("a single run takes one seed and unreplicated data")
    if rows is not None and rows != len(seeds):
        raise ConfigError(f"data holds replica splits for {rows} replicas but {len(seeds)} were given")
    if rows is None and data.val_x is not None and len(seeds) > 1:
        raise ConfigError("several replicas with a validation set need replica splits (one per replica): "
                          "load the data with one split generator per seed")
    return cfgs, seeds, outs


def train_runs(kind: str, cfgs: Sequence[Mapping], data: DataSplits, seeds: Sequence[int],
               out_dirs: Sequence[Folder] | None = None, options: TrainOptions | None = None) -> list[dict]:
    """The one training entry: replica r trains ``cfgs[r]`` from ``seeds[r]`` into ``out_dirs[r]``, as
    ``kind`` says (:data:`KINDS`).  Replicas that already ended in their folder are skipped (their summary
    is read back); the others train in blocks of replicas that stand at the same point (resumed from
    checkpoints at different epochs: separate blocks).  The summaries, in the order of ``seeds``."""
    cfgs, seeds, outs = check_job(kind, cfgs, data, seeds, out_dirs)
    options = options or TrainOptions()
    rows = data.train_index.shape[0] if data.train_index is not None else None
    with hold_run_folders(outs):  # one process per run folder (tp.runs.folder)
        results: dict[int, dict] = {}
        pending = []  # (position, resume point) of replicas still to train
        for pos, (cfg, seed, out) in enumerate(zip(cfgs, seeds, outs)):
            done = finished_summary(out, cfg, seed, options.log)
            if done is not None:
                results[pos] = done
                if not options.keep_checkpoint and out is not None:  # the final checkpoint of a stopped replica
                    (out / CHECKPOINT).unlink(missing_ok=True)
                continue
            pending.append((pos, resume_point(out)))
        data = data.to(options.device, dtype_of(cfgs[0]))  # docs/algorithms.md#the-fully-connected-networks
        for key in sorted({k for _, k in pending}):
            block = [pos for pos, k in pending if k == key]
            sub = data if rows is None or len(block) == len(seeds) else replica_subset(data, block)
            summaries = train_block(cfgs[block[0]], sub, [seeds[p] for p in block], [outs[p] for p in block],
                                    options, replicas=kind != "run",
                                    replica_cfgs=[cfgs[p] for p in block] if kind == "trials" else None)
            results.update(zip(block, summaries))
    return [results[pos] for pos in range(len(seeds))]


def replica_subset(data: DataSplits, rows: list[int]) -> DataSplits:
    """The replica splits of the seeds at positions ``rows`` (the shared pool unchanged)."""
    idx = torch.tensor(rows, device=data.train_index.device)
    return DataSplits(data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y,
                      data.train_index[idx], data.val_index[idx], data.provenance)
