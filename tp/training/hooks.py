"""Things the training loop calls at fixed points, beside the training itself: alignment logging
(docs/algorithms.md#when-the-angles-are-measured) and the Table S7 damping search
(docs/algorithms.md#the-damping-search-table-s7), and any hook a caller passes
(``train(..., hooks=[...])``).

A :class:`Hook` may act at three points, each optional:

* :meth:`Hook.built` — the run was built (fresh parameters, before a checkpoint is loaded into it);
* :meth:`Hook.wants_step` / :meth:`Hook.step` — on the training minibatches it wants, after the forward
  update is computed and before it is applied (those minibatches run eagerly, never from a CUDA graph);
* :meth:`Hook.epoch_end` — after a training epoch's metrics row of a seed is recorded; it may end the
  seed (set its record's status), and the loop's own stopping rules then do not apply.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import catalog
from ..errors import ConfigError
from ..metrics.alignment import DAMPING_CANDIDATES, alignment_angles, angle, gnt_reference
from ..metrics.damping import damping_extension, grid_extension, paired_gnt_angles, paired_selection, paired_statistics
from .state import Run
from .steps import batches, gather

__all__ = ["Hook", "AlignmentLogger", "DampingSearch", "damping_search", "paired_damping_search",
           "paired_batches", "selected_damping", "config_hooks"]


class Hook:
    """Base class: every method does nothing."""

    def built(self, run: Run) -> None:
        """The run was built (its parameters are fresh: nothing resumed yet)."""

    def wants_step(self, run: Run, batch: int) -> bool:
        """Whether :meth:`step` observes training minibatch ``batch`` (its index in the epoch)."""
        return False

    def step(self, run: Run, batch: int, fwd, y, forward_grads: dict) -> None:
        """Training minibatch ``batch``: its forward pass, targets and forward update, not yet applied."""

    def epoch_end(self, block, r: int, epoch: int) -> None:
        """Training epoch ``epoch`` of seed r ended (its metrics row recorded).  ``block``:
        :class:`tp.training.loop.Block` (its ``run``, ``checkpoint(r)``, ``log``)."""


class AlignmentLogger(Hook):
    """docs/algorithms.md#when-the-angles-are-measured: every ``log_interval`` minibatches, the angles between the
    method's update and the BP and damped-GNT updates of every layer (with ``ggn``, also damped GGN: beyond the paper),
    before the step; rows kept in the seed's record (``alignment.csv``).  One seed per process."""

    def __init__(self, interval: int, damping, ggn: bool = False, ggn_hessian_damping: float | None = None):
        self.interval, self.damping, self.ggn, self.ggn_hessian_damping = interval, damping, ggn, ggn_hessian_damping

    def wants_step(self, run: Run, batch: int) -> bool:
        return batch % self.interval == 0

    def step(self, run: Run, batch: int, fwd, y, forward_grads: dict) -> None:
        for row in alignment_angles(run.net, run.params, fwd, y, forward_grads, self.damping, self.ggn,
                                    self.ggn_hessian_damping):
            row.update(epoch=run.epochs_done + 1, step=run.steps, batch=batch,
                       damping=None if row["reference"] == "bp" else _damping_of(self.damping, row["layer"]))
            run.records[0].alignment.append(row)


def _damping_of(damping, layer: int):
    return damping if isinstance(damping, (int, float)) else damping[layer - 1]


class DampingSearch(Hook):
    """docs/algorithms.md#the-damping-search-table-s7: after the damping tuning's ``damping_search_after`` training
    epochs (3, :mod:`tp.catalog`), :func:`damping_search` (the official procedure), then :func:`paired_damping_search`
    on the same frozen network, then the seed ends (status ``finished``, message naming both selections per hidden
    layer)."""

    def built(self, run: Run) -> None:
        paired_batches(run)  # a damping_paired_batches the training set cannot hold fails before training
        paired_grid(run)  # as does a damping_paired_extend_to below the grid's top

    def epoch_end(self, block, r: int, epoch: int) -> None:
        if epoch != catalog.tuning("damping").damping_search_after:
            return
        rec = block.run.records[r]
        block.checkpoint(r)  # the 3 training epochs are kept even if the search is interrupted
        rec.damping = damping_search(block.run)
        rec.damping_paired = paired_damping_search(block.run)  # after: the official passes are as they were
        best, within = paired_selection(rec.damping_paired)
        rec.status = "finished"
        rec.message = (f"damping search after {epoch} epochs (docs/algorithms.md#the-damping-search-table-s7); selected per hidden layer: "
                       f"{selected_damping(rec.damping)}; paired search ({rec.damping_paired[0]['batches']} "
                       f"minibatches): {best}, within 2 SE of the minimum: {within}")
        block.log(rec.message)


def config_hooks(cfg: dict) -> list[Hook]:
    """The hooks a configuration asks for (``log_alignment``, ``gn_damping_hpsearch``)."""
    hooks: list[Hook] = []
    if cfg["log_alignment"]:
        hooks.append(AlignmentLogger(cfg["log_interval"], cfg["gn_damping_per_hidden_layer"],
                                     cfg.get("log_alignment_ggn", False), cfg.get("alignment_hessian_damping")))
    if cfg["gn_damping_hpsearch"]:
        hooks.append(DampingSearch())
    return hooks


@torch.no_grad()
def damping_search(run: Run) -> list[dict]:
    """Table S7 (docs/algorithms.md#the-damping-search-table-s7): with every parameter frozen, for each λ ∈ Λ one pass
    over the shuffled training set; on the minibatches with index ≡ 0 (mod log_interval) the angle between the method's
    update and the damped-GNT update of every hidden layer; averaged per (λ, layer)."""
    rows = []
    hidden = run.net.L - 1
    for lam in DAMPING_CANDIDATES:
        epoch = batches(run, run.data.num_train)[:: run.cfg["log_interval"]]
        sums, counts = [0.0] * hidden, [0] * hidden
        for idx in epoch:
            x, y = gather(run.data, idx)
            fwd = run.net.forward(run.params, x)
            update = run.rule.forward_update(run.net, run.params, run.feedback, fwd, y).forward_grads
            reference = gnt_reference(run.net, run.params, fwd, y, lam)
            for i in range(1, hidden + 1):
                try:
                    sums[i - 1] += float(angle(update[f"W{i}"], reference[f"W{i}"]))
                    counts[i - 1] += 1
                except ValueError:  # a zero update has no direction: this minibatch does not count
                    pass
        rows += [{"damping": lam, "layer": i, "batches": counts[i - 1],
                  "mean_angle": sums[i - 1] / counts[i - 1] if counts[i - 1] else math.nan}
                 for i in range(1, hidden + 1)]
    return rows


def selected_damping(rows: list[dict]) -> list[float]:
    """λ_i* = argmin over λ of the mean angle, per hidden layer (first minimum in Λ's order)."""
    layers = sorted({r["layer"] for r in rows})
    best = []
    for i in layers:
        valid = [r for r in rows if r["layer"] == i and not math.isnan(r["mean_angle"])]
        best.append(min(valid, key=lambda r: r["mean_angle"])["damping"] if valid else None)
    return best


def paired_batches(run: Run) -> int:
    """M, the paired search's number of minibatches: ``damping_paired_batches``, or (null) every full
    minibatch of one epoch, ⌊N/B⌋ (the one smaller minibatch when N < B)."""
    n, B = run.data.num_train, run.cfg["batch_size"]
    full = max(n // B, 1)
    wanted = run.cfg.get("damping_paired_batches")
    if wanted is None:
        return full
    if not (isinstance(wanted, int) and not isinstance(wanted, bool) and 1 <= wanted <= full):
        raise ConfigError(f"damping_paired_batches must be null (one epoch) or an integer from 1 to {full} "
                          f"(the full minibatches of {B} in the {n} training samples), got {wanted!r}")
    return wanted


def paired_grid(run: Run) -> tuple[list[float], list[float]]:
    """The paired search's grid Λ (the official one, :data:`DAMPING_CANDIDATES`) and the λ above it that
    ``damping_paired_extend_to`` lets it add (:func:`tp.metrics.damping.damping_extension`)."""
    base = sorted(DAMPING_CANDIDATES)
    try:
        return base, damping_extension(base[-1], run.cfg.get("damping_paired_extend_to"))
    except ValueError as e:
        raise ConfigError(str(e)) from None


@torch.no_grad()
def paired_damping_search(run: Run) -> list[dict]:
    """The paired damping search (issue 23, :mod:`tp.metrics.damping`), run after :func:`damping_search` on the
    same frozen parameters: one more shuffled epoch from the run's shuffle generator (so the official
    passes draw exactly what they drew before), its first M full minibatches (:func:`paired_batches`)
    shared by every λ ∈ Λ; per minibatch one forward pass, one method update and one set of Jacobians for
    all λ.  Rows per (λ, hidden layer): mean angle, its SE, the paired difference to the layer's minimum
    and its SE, minibatches, within 2 SE (:func:`tp.metrics.damping.paired_statistics`), over Λ and the part of the
    extension above it that :func:`tp.metrics.damping.grid_extension` keeps (``damping_paired_extend_to``)."""
    layers = list(range(1, run.net.L))
    m, B = paired_batches(run), run.cfg["batch_size"]
    epoch = batches(run, run.data.num_train)
    chosen = ([idx for idx in epoch if idx.shape[-1] == B] or epoch)[:m]
    base, extra = paired_grid(run)
    angles = []  # (M, Λ and its extension, hidden layers)
    for idx in chosen:
        x, y = gather(run.data, idx)
        fwd = run.net.forward(run.params, x)
        update = run.rule.forward_update(run.net, run.params, run.feedback, fwd, y).forward_grads
        angles.append(paired_gnt_angles(run.net, run.params, fwd, y, update, [*base, *extra], layers))
    grid = [*base, *extra[:grid_extension(angles, base, extra, layers)]]
    return paired_statistics(np.asarray(angles)[:, :len(grid)], grid, layers)
