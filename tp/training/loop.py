"""The epoch loop of one block of seeds (one seed, or several as replicas; docs/algorithms.md#one-minibatch-one-epoch):
feedback pre-training, then training epochs (each followed by ``extra_fb_epochs`` feedback-only epochs),
evaluation, and the stopping rules — ``diverged`` (NaN/inf in a loss, the parameters or the metrics) and
``pruned`` (the early stop of docs/algorithms.md#the-early-stop: training accuracy below the dataset's threshold in
an epoch from the 6th on).  A seed that stops gets its outputs at once; the others go on.  After every epoch each
running seed's checkpoint and metrics.csv are written, so an interrupted block resumes where it stood.
Each training epoch reads top to bottom: train → evaluate → per seed the metrics row → the verdict →
persist (:meth:`Block.persist`, the checkpoint policy in one place).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from .. import catalog
from ..data.datasets import DataSplits
from .compiled import compiled_steps
from .evaluation import evaluate as evaluate_split
from .hooks import config_hooks
from .options import TrainOptions
from .progress import Progress, use_progress_bar
from .records import (CHECKPOINT, METRIC_COLUMNS, METRICS, SUMMARY, pct_error, summary, write_checkpoint,
                      write_config, write_csv, write_outputs)
from .resume import resume
from .state import build_run
from .steps import batches_per_epoch, feedback_epoch, finite_per_replica, train_epoch, values

__all__ = ["PRUNE_THRESHOLDS", "Block", "train_block", "drop_checkpoint"]

#: minimum training accuracy from the 6th epoch on (docs/algorithms.md#the-early-stop), per dataset (tp.catalog)
PRUNE_THRESHOLDS = {slug: d.prune_threshold for slug, d in catalog.DATASETS.items()}


class Block:
    """One block of seeds from build (or resume) to its last epoch."""

    def __init__(self, cfg: dict, data: DataSplits, seeds: list[int], outs: list[Path | None],
                 options: TrainOptions, replicas: bool, replica_cfgs: list[dict] | None = None):
        self.cfg, self.options, self.log, self.replicas = cfg, options, options.log, replicas
        self.run = run = build_run(cfg, seeds, data, options.device, options.loss, replicas, options.graphs,
                                   replica_cfgs)
        if options.compiled:  # the CPU's compiled steps (tp.training.compiled), once the run's length is known
            run.ctx.compiled = compiled_steps(run, options.fast, self.log)
        run.ctx.hooks = config_hooks(cfg) + list(options.hooks)
        for hook in run.ctx.hooks:
            hook.built(run)
        for r, out in enumerate(outs):
            run.records[r].out = out
            resume(run, r, run.cfg_of(r), seeds[r], self.log)
            if out is not None:
                write_config(out, run.cfg_of(r), seeds[r])
        self.label = f"{cfg.get('method', cfg['rule'])}/{cfg.get('dataset', '')} seed" + (
            f"s {','.join(map(str, seeds))}" if replicas else f" {seeds[0]}")
        self.progress = Progress(use_progress_bar(options.progress), self.label)
        self.t_start = 0.0

    # --- per seed
    def checkpoint(self, r: int) -> None:
        write_checkpoint(self.run, r)

    def persist(self, r: int) -> None:
        """The checkpoint policy, in one place: after each epoch a running seed's checkpoint and its
        ``metrics.csv`` so far are written (atomically: a reader never sees half a file); a seed that
        stopped gets its outputs at once (:meth:`finish`), and its checkpoint, with the final status, stays
        while the block's other seeds go on, so that a restarted block knows the seed is done even if its
        summary was removed meanwhile (Snakemake deletes a job's outputs before running it again); then it
        goes (:func:`drop_checkpoint`) unless ``keep_checkpoint``."""
        self._clock()
        run, rec = self.run, self.run.records[r]
        if rec.status == "running":
            self.checkpoint(r)
            if rec.out is not None:
                write_csv(rec.out / METRICS, rec.metrics, METRIC_COLUMNS)
            return
        self.finish(r)
        if rec.out is not None:
            if run.running() or self.options.keep_checkpoint:
                self.checkpoint(r)  # with the final status
            else:
                drop_checkpoint(rec.out, self.options)

    def finish(self, r: int) -> None:
        """Seed r stopped (or ended): its summary is fixed and its outputs written."""
        run, rec = self.run, self.run.records[r]
        if rec.summary is None:  # (a seed resumed from a checkpoint that says it ended has its summary)
            rec.elapsed = run.elapsed
            rec.summary = {**summary(run, r, rec.elapsed), "config": run.cfg_of(r)}
        if rec.out is not None:
            write_outputs(rec.out, rec)

    def stop(self, r: int, status: str, message: str) -> None:
        rec = self.run.records[r]
        rec.status, rec.message = status, message
        self.log(f"{self.label if not self.replicas else f'seed {rec.seed}'}: run {status}: {message}")

    def _clock(self) -> None:
        self.run.elapsed = time.perf_counter() - self.t_start

    # --- the phases
    def train(self) -> list[dict]:
        """Run the block to its end; the summaries of its seeds."""
        run = self.run
        self.t_start = time.perf_counter() - run.elapsed
        for r, rec in enumerate(run.records):  # resumed from a checkpoint that says the seed already ended
            if rec.status != "running":
                self.log(f"{rec.out}: already {rec.status} (its checkpoint says so); writing its outputs")
                self.persist(r)
        while run.fb_opt is not None and run.running() and run.pre_epochs_done < self.cfg["epochs_fb"]:
            self.pretraining_epoch()
        while run.running() and run.epochs_done < self.cfg["epochs"]:
            self.training_epoch()
        for r in run.running():  # epochs == 0
            run.records[r].status = "finished"
            self.persist(r)
        for rec in run.records:  # the block is over: removed summaries come back, checkpoints go
            if rec.out is not None:
                if not (rec.out / SUMMARY).exists():
                    write_outputs(rec.out, rec)
                drop_checkpoint(rec.out, self.options)
        return [rec.summary for rec in run.records]

    def pretraining_epoch(self) -> None:
        """One epoch of feedback pre-training (sleep phase; docs/algorithms.md#one-minibatch-one-epoch): train, then
        per seed the verdict (diverged or not) and persist."""
        run, cfg = self.run, self.cfg
        tick = self.progress.epoch(f"pre-training {run.pre_epochs_done + 1}/{cfg['epochs_fb']}",
                                   batches_per_epoch(run), "rec", "rec_loss")
        rec_loss = values(run, feedback_epoch(run, self.log, tick))
        run.pre_epochs_done += 1
        finite = finite_per_replica(run, run.feedback.values())
        for r in run.running():
            if not (math.isfinite(rec_loss[r]) and finite[r]):
                self.stop(r, "diverged", f"non-finite reconstruction loss or feedback parameters in feedback "
                                         f"pre-training epoch {run.pre_epochs_done}")
            self.persist(r)
        if self.progress.enabled:
            self.progress.end_epoch(rec_loss=rec_loss)
        else:
            self.log(f"feedback pre-training {run.pre_epochs_done}/{cfg['epochs_fb']}: reconstruction loss "
                     + ", ".join(f"{v:.6g}" for v in rec_loss))

    def training_epoch(self) -> None:
        """One training epoch, top to bottom: train (with its extra feedback epochs) → evaluate → per seed
        the metrics row → the verdict → persist."""
        run, epoch = self.run, self.run.epochs_done + 1
        t0 = time.perf_counter()
        tick = self.progress.epoch(f"epoch {epoch}/{self.cfg['epochs']}", batches_per_epoch(run), "loss", "loss")
        stats = self.train_phase(tick)
        scores = self.evaluate()
        seconds = round(time.perf_counter() - t0, 4)
        for r in run.running():
            row = self.metrics_row(r, epoch, stats, scores, seconds)
            recorded = self.verdict(r, epoch, row, stats["finite"][r], stats["acc"][r])
            self.persist(r)
            if recorded and not self.progress.enabled:
                self.log_epoch(r, row)
        if self.progress.enabled:
            self.progress.end_epoch(loss=stats["loss"])
        if self.options.on_epoch_end is not None:
            self.options.on_epoch_end(epoch)

    def train_phase(self, tick) -> dict[str, list]:
        """The training epoch and its ``extra_fb_epochs`` feedback-only epochs; per seed the mean loss,
        accuracy and reconstruction loss, and whether the loss and every parameter are finite."""
        run = self.run
        stats = train_epoch(run, self.log, tick)
        if run.fb_opt is not None:
            for _ in range(self.cfg["extra_fb_epochs"]):
                feedback_epoch(run, self.log)
        run.epochs_done += 1
        out = {k: values(run, stats[k]) for k in ("loss", "acc", "rec")}
        params = finite_per_replica(run, list(run.params.values()) + list(run.feedback.values()))
        out["finite"] = [ok and math.isfinite(loss) for ok, loss in zip(params, out["loss"])]
        return out

    def evaluate(self) -> dict[str, list]:
        """Loss and accuracy on the validation split (when there is one) and the test set, per seed."""
        run, data = self.run, self.run.data
        scores = {}
        if data.val_x is not None:
            scores["val"] = [values(run, v) for v in evaluate_split(run.net, run.params, data.val_x, data.val_y,
                                                                     index=data.val_index)]
        scores["test"] = [values(run, v) for v in evaluate_split(run.net, run.params, data.test_x, data.test_y)]
        return scores

    def metrics_row(self, r: int, epoch: int, stats: dict, scores: dict, seconds: float) -> dict:
        """Seed r's row of ``metrics.csv`` (tp.training.records.METRIC_COLUMNS); errors in percent."""
        cls = self.run.net.loss == "cross_entropy"
        val, test = scores.get("val"), scores["test"]
        return {"epoch": epoch, "train_loss": stats["loss"][r],
                "train_error": pct_error(stats["acc"][r]) if cls else None,
                "val_loss": val[0][r] if val else None, "val_error": pct_error(val[1][r]) if val and cls else None,
                "test_loss": test[0][r], "test_error": pct_error(test[1][r]) if cls else None,
                "reconstruction_loss": stats["rec"][r] if self.run.fb_opt is not None else None,
                "seconds": seconds}

    def verdict(self, r: int, epoch: int, row: dict, finite: bool, train_acc: float) -> bool:
        """Seed r after epoch ``epoch``: diverged (a non-finite training loss, parameter or metric; the row is
        not recorded), else its row is recorded, the hooks may end it (the damping search), and then the
        stopping rules apply (pruned, or finished after the last epoch).  Whether the row was recorded."""
        rec = self.run.records[r]
        if not finite:
            self.stop(r, "diverged", f"non-finite training loss or parameters in epoch {epoch} "
                                     f"(train loss {row['train_loss']})")
            return False
        if not all(v is None or math.isfinite(v) for v in row.values()):
            self.stop(r, "diverged", f"non-finite evaluation metrics in epoch {epoch}")
            return False
        rec.metrics.append(row)
        for hook in self.run.ctx.hooks:
            if rec.status == "running":
                hook.epoch_end(self, r, epoch)
        if rec.status == "running":
            self.stopping_rules(r, epoch, train_acc)
        return True

    def stopping_rules(self, r: int, epoch: int, train_acc: float) -> None:
        """Pruned (the official early stop) or, after the last epoch, finished."""
        threshold = PRUNE_THRESHOLDS.get(self.cfg.get("dataset")) if self.options.prune else None
        cls = self.run.net.loss == "cross_entropy"
        if cls and threshold is not None and epoch >= catalog.PRUNE_FROM_EPOCH and train_acc < threshold:
            self.stop(r, "pruned", f"training accuracy {train_acc:.3f} < {threshold} in epoch {epoch} "
                                   f"(early stop of the official code, docs/algorithms.md#the-early-stop)")
        elif epoch == self.cfg["epochs"]:
            self.run.records[r].status = "finished"

    def log_epoch(self, r: int, row: dict) -> None:
        parts = [f"epoch {row['epoch']}/{self.cfg['epochs']}", f"train loss {row['train_loss']:.6g}"]
        for key in ("train_error", "val_error", "test_error"):
            if row[key] is not None:
                parts.append(f"{key.replace('_', ' ')} {row[key]:.2f}%")
        prefix = f"seed {self.run.records[r].seed}: " if self.replicas else ""
        self.log(prefix + ", ".join(parts) + f" ({row['seconds']:.1f} s)")


def drop_checkpoint(out: Path, options: TrainOptions) -> None:
    """A run that ended loses its checkpoint, unless ``keep_checkpoint`` (:meth:`Block.persist`)."""
    if not options.keep_checkpoint:
        (out / CHECKPOINT).unlink(missing_ok=True)


def train_block(cfg: dict, data: DataSplits, seeds: list[int], outs: list[Path | None], options: TrainOptions,
                replicas: bool, replica_cfgs: list[dict] | None = None) -> list[dict]:
    """Train one block of seeds whose folders stand at the same point (``replicas``: as replicas along a
    leading dimension; ``replica_cfgs``: each replica's own configuration, a block of trials); their
    summaries."""
    return Block(cfg, data, seeds, outs, options, replicas, replica_cfgs).train()
