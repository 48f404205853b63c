"""Things the training loop calls at fixed points, beside the training itself: alignment logging
(SPEC §7.1) and the Table S7 damping search (SPEC §7.2), and any hook a caller passes
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

import torch

from .. import catalog
from ..alignment import DAMPING_CANDIDATES, alignment_angles, angle, gnt_reference
from .state import Run
from .steps import batches, gather

__all__ = ["Hook", "AlignmentLogger", "DampingSearch", "damping_search",
           "selected_damping", "config_hooks"]



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
    """SPEC §7.1: every ``log_interval`` minibatches, the angles between the method's update and the BP
    and damped-GNT updates of every layer (with ``ggn``, also damped GGN: beyond the paper), before the step;
    rows kept in the seed's record (``alignment.csv``).  One seed per process."""

    def __init__(self, interval: int, damping, ggn: bool = False):
        self.interval, self.damping, self.ggn = interval, damping, ggn

    def wants_step(self, run: Run, batch: int) -> bool:
        return batch % self.interval == 0

    def step(self, run: Run, batch: int, fwd, y, forward_grads: dict) -> None:
        for row in alignment_angles(run.net, run.params, fwd, y, forward_grads, self.damping, self.ggn):
            row.update(epoch=run.epochs_done + 1, step=run.steps, batch=batch,
                       damping=None if row["reference"] == "bp" else _damping_of(self.damping, row["layer"]))
            run.records[0].alignment.append(row)


def _damping_of(damping, layer: int):
    return damping if isinstance(damping, (int, float)) else damping[layer - 1]


class DampingSearch(Hook):
    """SPEC §7.2: after the damping tuning's ``damping_search_after`` training epochs (3, :mod:`tp.catalog`),
    :func:`damping_search`, then the seed ends (status ``finished``, message naming the selected λ per hidden
    layer)."""

    def epoch_end(self, block, r: int, epoch: int) -> None:
        if epoch != catalog.tuning("damping").damping_search_after:
            return
        rec = block.run.records[r]
        block.checkpoint(r)  # the 3 training epochs are kept even if the search is interrupted
        rec.damping = damping_search(block.run)
        rec.status = "finished"
        rec.message = (f"damping search after {epoch} epochs (SPEC §7.2); selected per hidden layer: "
                       f"{selected_damping(rec.damping)}")
        block.log(rec.message)


def config_hooks(cfg: dict) -> list[Hook]:
    """The hooks a configuration asks for (``log_alignment``, ``gn_damping_hpsearch``)."""
    hooks: list[Hook] = []
    if cfg["log_alignment"]:
        hooks.append(AlignmentLogger(cfg["log_interval"], cfg["gn_damping_per_hidden_layer"],
                                     cfg.get("log_alignment_ggn", False)))
    if cfg["gn_damping_hpsearch"]:
        hooks.append(DampingSearch())
    return hooks


@torch.no_grad()
def damping_search(run: Run) -> list[dict]:
    """Table S7 (SPEC §7.2): with every parameter frozen, for each λ ∈ Λ one pass over the shuffled
    training set; on the minibatches with index ≡ 0 (mod log_interval) the angle between the method's
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
