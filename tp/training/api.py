"""The entry points: :func:`train` (one run) and :func:`train_seeds` (several seeds of one configuration
trained together), with their argument checks and the grouping of seeds by where they stand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..data import DataSplits
from ..errors import ConfigError
from ..run_folder import hold_run_folders
from ..runtime import dtype_of
from .hooks import Hook
from .loop import Options, log_to_stderr, train_block
from .records import CHECKPOINT
from .resume import finished_summary, resume_point

__all__ = ["FAST_MODES", "train", "train_seeds", "train_blocks", "fast_path"]

FAST_MODES = ("auto", "graph", "eager")


def train(cfg: Mapping[str, Any], data: DataSplits, seed: int, out_dir: str | os.PathLike | None = None,
          device="cpu", *, loss: str = "cross_entropy", progress: bool | None = None,
          log: Callable[[str], None] | None = None,
          on_epoch_end: Callable[[int], None] | None = None, keep_checkpoint: bool = False,
          prune: bool = True, fast: str = "auto", hooks: Sequence[Hook] = ()) -> dict:
    """Train one run and return its summary (also written to ``out_dir`` when given).

    ``cfg`` is a resolved configuration (:func:`tp.config.resolve_config`); ``data`` holds the splits in
    the run's dtype.  With an ``out_dir`` that holds a checkpoint of the same configuration and seed, the
    run resumes from it; one that holds a finished summary returns it without training.
    ``on_epoch_end(epoch)`` is called after each training epoch's checkpoint (a test hook).
    ``prune``: apply the official early stop (its thresholds are calibrated for the real datasets).
    ``fast``: ``auto`` (CUDA-graph steps on a CUDA device, :mod:`tp.fast`), ``graph`` (the same, an error
    elsewhere) or ``eager`` (the reference path).  ``hooks``: :class:`tp.training.hooks.Hook` objects the
    loop calls besides those the configuration asks for.
    """
    return train_seeds(cfg, data, [seed], [out_dir], device, loss=loss, progress=progress, log=log,
                       on_epoch_end=on_epoch_end, keep_checkpoint=keep_checkpoint, prune=prune, fast=fast,
                       replicas=False, hooks=hooks)[0]


def train_seeds(cfg: Mapping[str, Any], data: DataSplits, seeds: list[int],
                out_dirs: list[str | os.PathLike | None] | None = None, device="cpu", *,
                loss: str = "cross_entropy", progress: bool | None = None,
                log: Callable[[str], None] | None = None, on_epoch_end: Callable[[int], None] | None = None,
                keep_checkpoint: bool = False, prune: bool = True, fast: str = "auto",
                replicas: bool = True, hooks: Sequence[Hook] = ()) -> list[dict]:
    """Train one configuration for several seeds *together*: the seeds are replicas along a leading
    dimension of every tensor, each drawing from its own seed's generators (initialisation, shuffling,
    noise; validation split through ``data``'s replica splits, :meth:`DataSplits.replica_splits`), so each
    seed's result equals its single-seed run up to floating-point rounding.  One result folder per seed
    (``out_dirs``), in the single-run format; a seed that stops early (diverged, pruned) gets its final
    outputs at once and the others go on.  Seeds already finished in their folder are skipped; seeds
    resumed from checkpoints at different points train as separate blocks.  Returns the summaries in the
    order of ``seeds``.
    """
    cfg = dict(cfg)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"seeds must be distinct non-negative integers and at least one, got {seeds}")
    out_dirs = list(out_dirs) if out_dirs is not None else [None] * len(seeds)
    if len(out_dirs) != len(seeds):
        raise ConfigError(f"{len(seeds)} seeds but {len(out_dirs)} output folders")
    if replicas and (cfg["log_alignment"] or cfg["gn_damping_hpsearch"]):
        raise ConfigError("alignment logging and the damping search run one seed per process; "
                          "train those seeds one at a time (tp train --seed N)")
    rows = data.train_index.shape[0] if data.train_index is not None else None
    if rows is not None and rows != len(seeds):
        raise ConfigError(f"data holds replica splits for {rows} seeds but {len(seeds)} seeds were given")
    if not replicas and (len(seeds) != 1 or rows is not None):
        raise ConfigError("a single run takes one seed and unreplicated data")
    if rows is None and data.val_x is not None and len(seeds) > 1:
        raise ConfigError("several seeds with a validation set need replica splits (one per seed): "
                          "load the data with one split generator per seed")
    device = torch.device(device)
    use_graphs = fast_path(fast, device)
    options = Options(device=device, loss=loss, replicas=replicas, graphs=use_graphs, progress=progress,
                      log=log or log_to_stderr, on_epoch_end=on_epoch_end, keep_checkpoint=keep_checkpoint,
                      prune=prune, hooks=tuple(hooks))
    return train_blocks([cfg] * len(seeds), data, seeds, out_dirs, options, per_replica=False)


def fast_path(fast: str, device: torch.device) -> bool:
    """Whether the steps run as CUDA graphs: ``auto`` on a CUDA device, ``graph`` (an error elsewhere),
    never with ``eager``."""
    if fast not in FAST_MODES:
        raise ConfigError(f"unknown fast mode {fast!r}; valid choices: {', '.join(FAST_MODES)}")
    use_graphs = fast == "graph" or (fast == "auto" and device.type == "cuda")
    if use_graphs:
        from ..fast import graphs_available
        if not graphs_available(device):
            raise ConfigError(f"fast mode 'graph' needs a CUDA device, got {device}; use --fast eager or auto")
    return use_graphs


def train_blocks(cfgs: list[dict], data: DataSplits, seeds: list[int], out_dirs: list, options: Options,
                 per_replica: bool) -> list[dict]:
    """Train the replicas ``(cfgs[r], seeds[r])`` into ``out_dirs[r]`` (arguments already checked): those
    that ended in their folder are skipped, the others train in blocks of replicas that stand at the same
    point (``per_replica``: each with its own configuration).  Their summaries, in order."""
    outs = [Path(o) if o is not None else None for o in out_dirs]
    rows = data.train_index.shape[0] if data.train_index is not None else None
    with hold_run_folders(outs):  # one process per run folder (tp.run_folder)
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
        base = cfgs[0]
        data = data.to(options.device, dtype_of(base))  # SPEC §1
        for key in sorted({k for _, k in pending}):
            block = [pos for pos, k in pending if k == key]
            sub = data if rows is None or len(block) == len(seeds) else replica_subset(data, block)
            summaries = train_block(cfgs[block[0]], sub, [seeds[p] for p in block], [outs[p] for p in block],
                                    options, [cfgs[p] for p in block] if per_replica else None)
            results.update(zip(block, summaries))
    return [results[pos] for pos in range(len(seeds))]


def replica_subset(data: DataSplits, rows: list[int]) -> DataSplits:
    """The replica splits of the seeds at positions ``rows`` (the shared pool unchanged)."""
    idx = torch.tensor(rows, device=data.train_index.device)
    return DataSplits(data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y,
                      data.train_index[idx], data.val_index[idx], data.provenance)
