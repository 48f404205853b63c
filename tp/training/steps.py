"""The training steps (docs/algorithms.md#one-minibatch-one-epoch): minibatches of a shuffled epoch, the training
minibatch (targets, feedback step, forward step), the feedback-only minibatch, and the epochs made of them.

The steps do not synchronise with the host: the running sums of loss, accuracy and reconstruction loss
stay on the device (:func:`epoch_sums`) and are read once per epoch by the loop.  On CUDA, full minibatches
replay a captured CUDA graph of the same step function (:func:`captured_step`, :mod:`tp.core.fast`); on the CPU
they run the step's arithmetic compiled (:func:`compiled_minibatch`, :mod:`tp.training.compiled`); the last,
smaller minibatch of an epoch and the minibatches a hook observes (alignment logging) run eagerly.

    run = build_run(cfg, [seed], data, device)
    sums = epoch_sums(run, "train", TRAIN_SUMS)
    for idx in batches(run, run.data.num_train):
        train_minibatch(run, idx, sums)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..data.datasets import DataSplits
from .state import Run

__all__ = ["TRAIN_SUMS", "FEEDBACK_SUMS", "batches", "batches_per_epoch", "gather", "feedback_minibatch",
           "train_minibatch", "epoch_sums", "captured_step", "compiled_minibatch", "step_path", "feedback_epoch", "train_epoch",
           "finite_per_replica", "values"]

TRAIN_SUMS = ("loss", "acc", "rec")
FEEDBACK_SUMS = ("rec",)
#: per-minibatch callback of an epoch: (minibatch index, the epoch's running sums)
OnMinibatch = Callable[[int, dict], None]


def batches(run: Run, n: int) -> list[Tensor]:
    """Minibatch index tensors of one shuffled epoch, (B,) — or (R, B), one permutation per replica from
    its own shuffle generator — positions in the (per-replica) training set; drop_last=False."""
    B = run.cfg["batch_size"]
    if run.replicas is None:
        perm = torch.randperm(n, generator=run.gens["shuffle"], device=run.device)
        return [perm[k:k + B] for k in range(0, n, B)]
    perm = torch.stack([torch.randperm(n, generator=g, device=run.device) for g in run.gens["shuffle"]])
    return [perm[:, k:k + B] for k in range(0, n, B)]


def batches_per_epoch(run: Run) -> int:
    return -(-run.data.num_train // run.cfg["batch_size"])


def gather(data: DataSplits, idx: Tensor) -> tuple[Tensor, Tensor]:
    """The minibatch at positions ``idx``: (B, n_0) inputs, or (R, B, n_0) with replicas."""
    if data.train_index is not None:  # replica splits: positions -> rows of the shared pool
        idx = data.train_index.gather(-1, idx)
    return data.train_x[idx], data.train_y[idx]


def feedback_step(run: Run, fwd_or_x, cache=None) -> Tensor:
    """The rule's feedback gradients (fresh noise from stream ``noise``) and one feedback Adam step;
    returns the reconstruction loss summed over layers."""
    grads, losses = run.rule.feedback_gradients(run.net, run.params, run.feedback, fwd_or_x,
                                                generator=run.gens["noise"], cache=cache)
    run.fb_opt.step(grads)
    run.fb_steps += 1
    return sum(losses.values())


def feedback_minibatch(run: Run, idx: Tensor, sums: dict[str, Tensor]) -> None:
    """A feedback-only step (pre-training, extra feedback epochs) on the minibatch ``idx``."""
    x, _ = gather(run.data, idx)
    sums["rec"].add_(feedback_step(run, x))


def train_minibatch(run: Run, idx: Tensor, sums: dict[str, Tensor], batch: int | None = None) -> None:
    """One training minibatch (docs/algorithms.md#one-minibatch-one-epoch): targets and forward update at the
    current parameters, the feedback step on the same forward pass with fresh noise, then the forward Adam step;
    the running sums of loss, accuracy and reconstruction loss are updated in place (no host synchronisation).  ``batch``: its
    index in the epoch, for the run's hooks — those that want it see the forward update before it is applied
    (docs/algorithms.md#when-the-angles-are-measured); None (a captured CUDA-graph step): no hook observes it."""
    net = run.net
    x, y = gather(run.data, idx)
    fwd = net.forward(run.params, x)
    result = run.rule.forward_update(net, run.params, run.feedback, fwd, y)  # nothing applied yet
    sums["loss"].add_(result.loss)
    if net.loss == "cross_entropy":
        sums["acc"].add_(net.accuracy(result.output, y))
    if run.fb_opt is not None:
        sums["rec"].add_(feedback_step(run, fwd, result.cache))
        if run.cfg["extra_fb_minibatches"]:  # 0 in every final configuration
            for e_idx in batches(run, run.data.num_train)[: run.cfg["extra_fb_minibatches"]]:
                feedback_step(run, gather(run.data, e_idx)[0])
    for hook in run.ctx.hooks if batch is not None else ():
        if hook.wants_step(run, batch):
            hook.step(run, batch, fwd, y, result.forward_grads)
    run.steps += 1
    # only the parameters the optimiser holds move (Frozen-MNIST: W1, b1)
    run.fwd_opt.step({k: g for k, g in result.forward_grads.items() if k in run.fwd_opt.params})


def epoch_sums(run: Run, kind: str, keys: tuple[str, ...]) -> dict[str, Tensor]:
    """The epoch's running sums (per replica), zeroed: the same tensors every epoch, so that a captured
    step keeps writing into them."""
    if kind not in run.ctx.sums:
        shape = () if run.replicas is None else (run.replicas,)
        run.ctx.sums[kind] = {k: torch.zeros(shape, dtype=run.net.dtype, device=run.device) for k in keys}
    for t in run.ctx.sums[kind].values():
        t.zero_()
    return run.ctx.sums[kind]


def captured_step(run: Run, kind: str, idx: Tensor, sums: dict, log: Callable[[str], None]):
    """The captured step for this kind (``train`` or ``feedback``) and index shape (None: run eagerly).
    Full minibatches are replayed from a CUDA graph; the last, smaller minibatch runs eagerly.  A capture
    failure switches the run to the eager path (and says so through ``log``)."""
    if not run.ctx.fast or run.cfg["extra_fb_minibatches"]:
        return None
    if idx.shape[-1] != run.cfg["batch_size"]:
        return None
    key = (kind, tuple(idx.shape))
    if key not in run.ctx.graphs:
        from ..core.fast import CapturedStep
        fn = train_minibatch if kind == "train" else feedback_minibatch
        state = [*run.params.values(), *run.feedback.values(), *sums.values()]
        for opt in (run.fwd_opt, run.fb_opt):
            if opt is not None:
                state += [*opt.exp_avg.values(), *opt.exp_avg_sq.values(), opt.device_step]
        gens = run.gens["noise"] if run.replicas is not None else [run.gens["noise"]]
        counters = [(run, "steps"), (run, "fb_steps"), (run.fwd_opt, "step_count"), (run.fb_opt, "step_count")]
        try:
            run.ctx.graphs[key] = CapturedStep(lambda i: fn(run, i, sums), idx, state, gens, counters)
        except Exception as exc:  # noqa: BLE001 — any capture failure falls back to the eager reference
            log(f"CUDA-graph capture of the {kind} step failed ({type(exc).__name__}: {exc}); running eagerly")
            run.ctx.fast = False
            return None
    return run.ctx.graphs[key]


def compiled_minibatch(run: Run, kind: str, idx: Tensor, sums: dict) -> bool:
    """The step of this kind (``train`` or ``feedback``) on a full minibatch, compiled (True), or nothing
    (False: the caller runs the eager step; nothing was drawn or applied)."""
    steps = run.ctx.compiled
    if steps is None or run.cfg["extra_fb_minibatches"] or idx.shape[-1] != run.cfg["batch_size"]:
        return False
    x, y = gather(run.data, idx)
    if kind == "train":
        out = steps.train(run, x, y)
        if out is None:
            return False
        loss, acc, rec = out
        sums["loss"].add_(loss)
        if acc is not None:
            sums["acc"].add_(acc)
        run.steps += 1
        run.fwd_opt.step_count += 1
    else:
        rec = steps.feedback(run, x)
        if rec is None:
            return False
    if rec is not None:
        sums["rec"].add_(rec)
        run.fb_steps += 1
        run.fb_opt.step_count += 1
    return True


def step_path(run: Run) -> str:
    """The path this process's full minibatches take: ``compiled`` (CPU), ``cuda-graph`` (its CPU emulation in
    the tests: ``graph-emulated``) or ``eager``."""
    if run.ctx.compiled is not None and run.ctx.compiled.steps and not run.ctx.compiled.failed:
        return "compiled"
    if run.ctx.fast and run.ctx.graphs:
        return "cuda-graph" if run.device.type == "cuda" else "graph-emulated"
    return "eager"


def feedback_epoch(run: Run, log: Callable[[str], None], on_minibatch: OnMinibatch | None = None) -> Tensor:
    """One feedback-only epoch; the mean reconstruction loss over its minibatches (per replica)."""
    sums = epoch_sums(run, "feedback", FEEDBACK_SUMS)
    epoch = batches(run, run.data.num_train)
    for k, idx in enumerate(epoch):
        graph = captured_step(run, "feedback", idx, sums, log)
        if graph is not None:
            graph(idx)
        elif not compiled_minibatch(run, "feedback", idx, sums):
            feedback_minibatch(run, idx, sums)
        if on_minibatch is not None:
            on_minibatch(k, sums)
    run.step_paths.add(step_path(run))
    return sums["rec"] / len(epoch)


def train_epoch(run: Run, log: Callable[[str], None], on_minibatch: OnMinibatch | None = None) -> dict[str, Tensor]:
    """One training epoch; the means of loss, accuracy and reconstruction loss over its minibatches."""
    sums = epoch_sums(run, "train", TRAIN_SUMS)
    epoch = batches(run, run.data.num_train)
    for k, idx in enumerate(epoch):
        observed = any(hook.wants_step(run, k) for hook in run.ctx.hooks)  # observed minibatches run eagerly
        graph = None if observed else captured_step(run, "train", idx, sums, log)
        if graph is not None:
            graph(idx)
        elif observed or not compiled_minibatch(run, "train", idx, sums):
            train_minibatch(run, idx, sums, batch=k)
        if on_minibatch is not None:
            on_minibatch(k, sums)
    run.step_paths.add(step_path(run))
    n = len(epoch)
    return {key: sums[key] / n for key in TRAIN_SUMS}


def finite_per_replica(run: Run, tensors) -> list[bool]:
    """Whether every tensor is finite, per replica (one entry in a single run)."""
    if run.replicas is None:
        return [bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())]
    ok = torch.stack([torch.isfinite(t).reshape(run.replicas, -1).all(-1) for t in tensors]).all(0)
    return ok.tolist()


def values(run: Run, t: Tensor) -> list[float]:
    """A per-replica scalar tensor as floats, one per record (one host transfer)."""
    return [float(v) for v in (t.reshape(-1).tolist() if run.replicas is not None else [t.item()])]
