"""The epoch loop of one block of seeds (one seed, or several as replicas), SPEC §5.2: feedback
pre-training, then training epochs (each followed by ``extra_fb_epochs`` feedback-only epochs),
evaluation, and the stopping rules — ``diverged`` (NaN/inf in a loss, the parameters or the metrics) and
``pruned`` (the early stop of SPEC §12.13/§15: training accuracy below the dataset's threshold in an epoch
from the 6th on).  A seed that stops gets its outputs at once; the others go on.  After every epoch each
running seed's checkpoint is written, so an interrupted block resumes where it stood.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import catalog
from ..data import DataSplits
from .evaluation import evaluate
from .hooks import Hook, config_hooks
from .progress import Progress, use_progress_bar
from .records import CHECKPOINT, SUMMARY, pct_error, summary, write_checkpoint, write_config, write_outputs
from .resume import resume
from .state import build_run
from .steps import batches_per_epoch, feedback_epoch, finite_per_replica, train_epoch, values

__all__ = ["PRUNE_THRESHOLDS", "Options", "Block", "train_block"]

#: minimum training accuracy from the 6th epoch on (SPEC §15), per dataset (tp.catalog)
PRUNE_THRESHOLDS = {slug: d.prune_threshold for slug, d in catalog.DATASETS.items()}


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Options:
    """How a block trains (everything but the configuration, the data and the seeds)."""

    device: torch.device = torch.device("cpu")
    loss: str = "cross_entropy"
    replicas: bool = False  # seeds as replicas along a leading dimension (else exactly one seed)
    graphs: bool = False  # CUDA-graph steps (tp.fast)
    progress: bool | None = None  # progress bar; None: only on a terminal
    log: Callable[[str], None] = log_to_stderr
    on_epoch_end: Callable[[int], None] | None = None  # after each training epoch's checkpoints
    keep_checkpoint: bool = False  # keep the final checkpoint beside the summary
    prune: bool = True  # apply the early stop
    hooks: Sequence[Hook] = ()  # besides those the configuration asks for (tp.training.hooks)


class Block:
    """One block of seeds from build (or resume) to its last epoch."""

    def __init__(self, cfg: dict, data: DataSplits, seeds: list[int], outs: list[Path | None], options: Options,
                 replica_cfgs: list[dict] | None = None):
        self.cfg, self.options, self.log = cfg, options, options.log
        self.run = run = build_run(cfg, seeds, data, options.device, options.loss, options.replicas,
                                   options.graphs, replica_cfgs)
        run.hooks = config_hooks(cfg) + list(options.hooks)
        for hook in run.hooks:
            hook.built(run)
        for r, out in enumerate(outs):
            run.records[r].out = out
            resume(run, r, run.cfg_of(r), seeds[r], self.log)
            if out is not None:
                write_config(out, run.cfg_of(r), seeds[r])
        self.label = f"{cfg.get('method', cfg['rule'])}/{cfg.get('dataset', '')} seed" + (
            f"s {','.join(map(str, seeds))}" if options.replicas else f" {seeds[0]}")
        self.progress = Progress(use_progress_bar(options.progress), self.label)
        self.t_start = 0.0

    # --- per seed
    def checkpoint(self, r: int) -> None:
        write_checkpoint(self.run, r)

    def finish(self, r: int) -> None:
        """Seed r stopped (or ended): its summary is fixed and its outputs written now.  In a block whose
        other seeds go on, its checkpoint (with the final status) stays until the block ends, so that a
        restarted block knows the seed is done even if its summary was removed meanwhile (Snakemake
        deletes a job's outputs before running it again)."""
        run, rec = self.run, self.run.records[r]
        if rec.summary is None:  # (a seed resumed from a checkpoint that says it ended has its summary)
            rec.elapsed = run.elapsed
            rec.summary = {**summary(run, r, rec.elapsed), "config": run.cfg_of(r)}
        if rec.out is not None:
            write_outputs(rec.out, rec)
            if self.options.keep_checkpoint or run.running():
                self.checkpoint(r)
            else:
                (rec.out / CHECKPOINT).unlink(missing_ok=True)

    def stop(self, r: int, status: str, message: str) -> None:
        rec = self.run.records[r]
        rec.status, rec.message = status, message
        self.log(f"{self.label if not self.options.replicas else f'seed {rec.seed}'}: run {status}: {message}")

    def _clock(self) -> None:
        self.run.elapsed = time.perf_counter() - self.t_start

    # --- the phases
    def train(self) -> list[dict]:
        """Run the block to its end; the summaries of its seeds."""
        run = self.run
        for r, rec in enumerate(run.records):  # resumed from a checkpoint that says the seed already ended
            if rec.status != "running":
                self.log(f"{rec.out}: already {rec.status} (its checkpoint says so); writing its outputs")
                self.finish(r)
        self.t_start = time.perf_counter() - run.elapsed
        while run.fb_opt is not None and run.running() and run.pre_epochs_done < self.cfg["epochs_fb"]:
            self.pretraining_epoch()
        while run.running() and run.epochs_done < self.cfg["epochs"]:
            self.training_epoch()
        for r in run.running():  # epochs == 0
            run.records[r].status = "finished"
            self._clock()
            self.finish(r)
        for rec in run.records:  # the block is over: its seeds' checkpoints go, removed summaries come back
            if rec.out is not None:
                if not (rec.out / SUMMARY).exists():
                    write_outputs(rec.out, rec)
                if not self.options.keep_checkpoint:
                    (rec.out / CHECKPOINT).unlink(missing_ok=True)
        return [rec.summary for rec in run.records]

    def pretraining_epoch(self) -> None:
        """One epoch of feedback pre-training (sleep phase), SPEC §5.2."""
        run, cfg = self.run, self.cfg
        tick = self.progress.epoch(f"pre-training {run.pre_epochs_done + 1}/{cfg['epochs_fb']}",
                                   batches_per_epoch(run), "rec", "rec_loss")
        rec_loss = values(run, feedback_epoch(run, self.log, tick))
        run.pre_epochs_done += 1
        finite = finite_per_replica(run, run.feedback.values())
        self._clock()
        for r in run.running():
            if not (math.isfinite(rec_loss[r]) and finite[r]):
                self.stop(r, "diverged", f"non-finite reconstruction loss or feedback parameters in feedback "
                                         f"pre-training epoch {run.pre_epochs_done}")
                self.finish(r)
            else:
                self.checkpoint(r)
        if self.progress.enabled:
            self.progress.end_epoch(rec_loss=rec_loss)
        else:
            self.log(f"feedback pre-training {run.pre_epochs_done}/{cfg['epochs_fb']}: reconstruction loss "
                     + ", ".join(f"{v:.6g}" for v in rec_loss))

    def training_epoch(self) -> None:
        """One training epoch, its extra feedback epochs, evaluation, the stopping rules and checkpoints."""
        run, cfg, data = self.run, self.cfg, self.run.data
        t0 = time.perf_counter()
        epoch = run.epochs_done + 1
        tick = self.progress.epoch(f"epoch {epoch}/{cfg['epochs']}", batches_per_epoch(run), "loss", "loss")
        stats = train_epoch(run, self.log, tick)
        if run.fb_opt is not None:
            for _ in range(cfg["extra_fb_epochs"]):
                feedback_epoch(run, self.log)
        run.epochs_done = epoch
        train_loss, train_acc, rec_loss = (values(run, stats[k]) for k in ("loss", "acc", "rec"))
        finite = finite_per_replica(run, list(run.params.values()) + list(run.feedback.values()))
        val = None
        if data.val_x is not None:
            val = [values(run, v) for v in evaluate(run.net, run.params, data.val_x, data.val_y,
                                                     index=data.val_index)]
        test = [values(run, v) for v in evaluate(run.net, run.params, data.test_x, data.test_y)]
        seconds = round(time.perf_counter() - t0, 4)
        self._clock()
        cls = run.net.loss == "cross_entropy"
        for r in run.running():
            if not (math.isfinite(train_loss[r]) and finite[r]):
                self.stop(r, "diverged", f"non-finite training loss or parameters in epoch {epoch} "
                                         f"(train loss {train_loss[r]})")
                self.finish(r)
                continue
            row = {"epoch": epoch, "train_loss": train_loss[r],
                   "train_error": pct_error(train_acc[r]) if cls else None,
                   "val_loss": val[0][r] if val else None,
                   "val_error": pct_error(val[1][r]) if val and cls else None,
                   "test_loss": test[0][r], "test_error": pct_error(test[1][r]) if cls else None,
                   "reconstruction_loss": rec_loss[r] if run.fb_opt is not None else None, "seconds": seconds}
            if not all(v is None or math.isfinite(v) for v in row.values()):
                self.stop(r, "diverged", f"non-finite evaluation metrics in epoch {epoch}")
                self.finish(r)
                continue
            rec = run.records[r]
            rec.metrics.append(row)
            for hook in run.hooks:  # the damping search ends its seed here
                if rec.status == "running":
                    hook.epoch_end(self, r, epoch)
            if rec.status == "running":
                self.stopping_rules(r, epoch, train_acc[r])
            self._clock()
            if rec.status == "running":
                self.checkpoint(r)
            else:
                self.finish(r)
            if not self.progress.enabled:
                self.log_epoch(r, row)
        if self.progress.enabled:
            self.progress.end_epoch(loss=train_loss)
        if self.options.on_epoch_end is not None:
            self.options.on_epoch_end(epoch)

    def stopping_rules(self, r: int, epoch: int, train_acc: float) -> None:
        """Pruned (the official early stop) or, after the last epoch, finished."""
        threshold = PRUNE_THRESHOLDS.get(self.cfg.get("dataset")) if self.options.prune else None
        cls = self.run.net.loss == "cross_entropy"
        if cls and threshold is not None and epoch >= catalog.PRUNE_FROM_EPOCH and train_acc < threshold:
            self.stop(r, "pruned", f"training accuracy {train_acc:.3f} < {threshold} in epoch {epoch} "
                                   f"(early stop of the official code, SPEC §12.13)")
        elif epoch == self.cfg["epochs"]:
            self.run.records[r].status = "finished"

    def log_epoch(self, r: int, row: dict) -> None:
        parts = [f"epoch {row['epoch']}/{self.cfg['epochs']}", f"train loss {row['train_loss']:.6g}"]
        for key in ("train_error", "val_error", "test_error"):
            if row[key] is not None:
                parts.append(f"{key.replace('_', ' ')} {row[key]:.2f}%")
        prefix = f"seed {self.run.records[r].seed}: " if self.options.replicas else ""
        self.log(prefix + ", ".join(parts) + f" ({row['seconds']:.1f} s)")


def train_block(cfg: dict, data: DataSplits, seeds: list[int], outs: list[Path | None],
                options: Options, replica_cfgs: list[dict] | None = None) -> list[dict]:
    """Train one block of seeds whose folders stand at the same point (``replica_cfgs``: each replica's own
    configuration, :func:`tp.training.trials.train_trials`); their summaries."""
    return Block(cfg, data, seeds, outs, options, replica_cfgs).train()
