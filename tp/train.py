"""The training loop of SPEC §5: one run of one method on one dataset, resumable and observable.

Per minibatch (SPEC §5.2): forward pass, targets and forward-parameter gradients (not yet applied), then —
for rules with trained feedback — the feedback gradients on the same forward pass with fresh noise and one
feedback Adam step, then the forward Adam step.  Feedback pre-training (``epochs_fb``) runs before training,
``extra_fb_epochs`` feedback-only epochs after every training epoch.  Metrics follow SPEC §5.4 (online
pre-update training averages; evaluation averages per-batch means, so the last, smaller batch weighs like a
full one).  The early stop of SPEC §12.13/§15 ends a run as soon as the training accuracy of an epoch from
the 6th on is below 0.4 (MNIST, Fashion-MNIST) or 0.25 (CIFAR-10): status ``pruned``.

Every random draw comes from generators derived from the run's seed (streams ``init``, ``split``,
``shuffle``, ``noise``), whose states the checkpoint stores: a run interrupted and resumed equals the
uninterrupted run.  NaN/inf in the training loss or the parameters ends the run with status ``diverged``.
The training steps of the TP family, DFA and BP do not synchronise with the host; the loss sums are read
once per epoch.  (Alignment logging, every ``log_interval`` minibatches, and GNT's pseudo-inverse do.)
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import yaml
from torch import Tensor

from . import __version__
from .config import ConfigError, rule_hyperparameters
from .data import DataSplits
from .alignment import DAMPING_CANDIDATES, alignment_angles, angle, gnt_reference
from .models import build_model, forward_optimizer_settings
from .network import MLP
from .optim import Adam
from .rules import make_rule

__all__ = ["train", "train_seeds", "FAST_MODES", "run_generators", "code_version", "METRIC_COLUMNS", "PRUNE_THRESHOLDS", "RunDiverged",
           "GENERATOR_STREAMS"]

ALIGNMENT_COLUMNS = ["epoch", "step", "batch", "layer", "reference", "damping", "angle"]
METRIC_COLUMNS = ["epoch", "train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error",
                  "reconstruction_loss", "seconds"]
#: minimum training accuracy from the 6th epoch on (SPEC §15)
PRUNE_THRESHOLDS = {"mnist": 0.4, "frozen-mnist": 0.4, "fashion-mnist": 0.4, "cifar10": 0.25, "cifar10-cnn": 0.25}
PRUNE_FROM_EPOCH = 6
GENERATOR_STREAMS = ("init", "split", "shuffle", "noise")
CHECKPOINT, SUMMARY, METRICS, CONFIG = "checkpoint.pt", "summary.json", "metrics.csv", "config.yaml"
ALIGNMENT, DAMPING = "alignment.csv", "damping_search.csv"
#: the damping search runs after this many training epochs (SPEC §7.2: end of epoch index 2)
DAMPING_SEARCH_AFTER = 3
EVAL_BATCH = 128


class RunDiverged(RuntimeError):
    pass


def run_generators(seed: int, device=None) -> dict[str, torch.Generator]:
    """Independent generators for each random stream of a run, derived from its seed.

    ``init`` and ``split`` live on the CPU (initialisation and validation split do not depend on the
    device); ``shuffle`` and ``noise`` on the training device (no host round trip per minibatch).
    """
    device = torch.device(device or "cpu")
    children = np.random.SeedSequence(int(seed)).spawn(len(GENERATOR_STREAMS))
    out = {}
    for name, child in zip(GENERATOR_STREAMS, children):
        dev = device if name in ("shuffle", "noise") else torch.device("cpu")
        out[name] = torch.Generator(device=dev).manual_seed(int(child.generate_state(1, np.uint64)[0]))
    return out


def code_version() -> str:
    """``git`` commit of the checkout holding ``tp`` (``+dirty`` with uncommitted changes), else the
    package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"tp {__version__}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU ({torch.get_num_threads()} threads)"


# ------------------------------------------------------------------------------------------- state
@dataclass
class _Record:
    """Bookkeeping of one seed (one result folder); a block of seeds trained together has one each."""

    seed: int
    out: Path | None
    metrics: list = field(default_factory=list)
    status: str = "running"
    message: str = ""
    alignment: list = field(default_factory=list)  # tidy rows of alignment angles (log_alignment)
    damping: list = field(default_factory=list)  # rows of the damping search (gn_damping_hpsearch)
    elapsed: float = 0.0  # wall time when the run stopped (running: the block's)
    summary: dict | None = None  # its summary, fixed when it stopped


@dataclass
class _Run:
    """One run, or a block of R seeds trained together as replicas (every tensor gets a leading replica
    dimension R; each replica draws from its own seed's generators)."""

    cfg: dict
    records: list[_Record]
    replicas: int | None  # None: a single run, tensors without a replica dimension
    device: torch.device
    data: DataSplits
    net: Any
    rule: Any
    params: dict
    feedback: dict
    fwd_opt: Adam
    fb_opt: Adam | None
    gens: dict  # stream -> generator (single run) or list of generators (one per replica)
    pre_epochs_done: int = 0
    epochs_done: int = 0
    elapsed: float = 0.0
    fb_steps: int = 0  # feedback Adam steps taken (all phases), for schedule checks
    steps: int = 0  # training minibatches taken
    graphs: dict = field(default_factory=dict)  # (kind, index shape) -> CapturedStep (fast path)
    fast: bool = False
    sums: dict = field(default_factory=dict)  # kind -> running sums of the current epoch
    batch: int = 0  # index of the current training minibatch in its epoch

    def sel(self, t: Tensor, r: int) -> Tensor:
        """Replica r of a tensor (the tensor itself in a single run)."""
        return t if self.replicas is None else t[r]

    def gen(self, stream: str, r: int) -> torch.Generator:
        g = self.gens[stream]
        return g if self.replicas is None else g[r]

    def running(self) -> list[int]:
        return [r for r, rec in enumerate(self.records) if rec.status == "running"]

    def state_dict(self, r: int = 0) -> dict:
        """The checkpoint of seed r: the single-run format, so a block resumes from single-run
        checkpoints and vice versa."""
        rec = self.records[r]

        def opt_state(opt):  # Adam.state_dict's format, replica r only (sliced before leaving the device)
            opt.sync_step_count()
            return {"step": opt.step_count, **{key: {k: self.sel(v, r).detach().cpu() for k, v in
                                                     getattr(opt, key).items()} for key in ("exp_avg", "exp_avg_sq")}}

        return {
            "format": 1, "config": self.cfg, "seed": rec.seed,
            "pre_epochs_done": self.pre_epochs_done, "epochs_done": self.epochs_done,
            "params": {k: self.sel(v, r).detach().cpu() for k, v in self.params.items()},
            "feedback": {k: self.sel(v, r).detach().cpu() for k, v in self.feedback.items()},
            "fwd_opt": opt_state(self.fwd_opt),
            "fb_opt": opt_state(self.fb_opt) if self.fb_opt is not None else None,
            "generators": {k: self.gen(k, r).get_state() for k in self.gens},
            "metrics": rec.metrics, "elapsed": self.elapsed, "status": rec.status,
            "message": rec.message, "fb_steps": self.fb_steps, "steps": self.steps,
            "alignment": rec.alignment, "damping": rec.damping, "summary": rec.summary,
        }

    def load_state_dict(self, state: Mapping, r: int = 0) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.sel(self.params[k], r).copy_(v)
            for k, v in state["feedback"].items():
                self.sel(self.feedback[k], r).copy_(v)
            for opt, key in ((self.fwd_opt, "fwd_opt"), (self.fb_opt, "fb_opt")):
                if opt is None:
                    continue
                for moment in ("exp_avg", "exp_avg_sq"):
                    for k, v in state[key][moment].items():
                        self.sel(getattr(opt, moment)[k], r).copy_(v)
                opt.set_step_count(state[key]["step"])
        for k in self.gens:
            self.gen(k, r).set_state(state["generators"][k])
        for key in ("pre_epochs_done", "epochs_done", "elapsed", "fb_steps", "steps"):
            setattr(self, key, state[key])
        rec = self.records[r]
        for key in ("metrics", "status", "message", "alignment", "damping"):
            setattr(rec, key, state[key] if state[key] is not None else [])
        rec.summary = state.get("summary") if rec.status != "running" else None


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _build(cfg: dict, seeds: list[int], data: DataSplits, device: torch.device, loss: str,
           replicas: bool, fast: bool) -> _Run:
    dtype = torch.float64 if cfg["double_precision"] else torch.float32
    per_seed = [run_generators(s, device) for s in seeds]
    gens = {k: [g[k] for g in per_seed] for k in GENERATOR_STREAMS} if replicas else per_seed[0]
    rule = make_rule(cfg["rule"], **rule_hyperparameters(cfg))
    net = build_model(cfg, rule, data, loss, dtype)  # the MLP (SPEC §1) or the CNN (SPEC §8) of cfg["model"]
    params = {k: v.to(device) for k, v in net.init_params(gens["init"], init=cfg["initialization"]).items()}
    feedback = {k: v.to(device) for k, v in rule.init_feedback(net, gens["init"]).items()}

    # forward optimiser: lr/β when normalize_lr (SPEC §2.4), per layer for the CNN (§8.5); Frozen-MNIST
    # trains W1, b1 only (SPEC §6)
    names = [k for k in params if not cfg["only_train_first_layer"] or k in ("W1", "b1")]
    lr, eps = forward_optimizer_settings(cfg, names)
    fwd_opt = Adam({k: params[k] for k in names}, lr=lr, betas=(cfg["beta1"], cfg["beta2"]),
                   eps=eps, weight_decay=cfg["forward_wd"], capturable=fast)
    fb_opt = None
    trainable = rule.trainable_feedback(feedback)
    if trainable:
        fb_opt = Adam({k: feedback[k] for k in trainable}, lr=cfg["lr_fb"],
                      betas=(cfg["beta1_fb"], cfg["beta2_fb"]), eps=cfg["epsilon_fb"],
                      weight_decay=cfg["feedback_wd"], capturable=fast)
    return _Run(cfg, [_Record(s, None) for s in seeds], len(seeds) if replicas else None, device, data, net, rule,
                params, feedback, fwd_opt, fb_opt, gens, fast=fast)


# ------------------------------------------------------------------------------------------- steps
def _batches(run: _Run, n: int) -> list[Tensor]:
    """Minibatch index tensors of one shuffled epoch, (B,) — or (R, B), one permutation per replica from
    its own shuffle generator — positions in the (per-replica) training set; drop_last=False."""
    B = run.cfg["batch_size"]
    if run.replicas is None:
        perm = torch.randperm(n, generator=run.gens["shuffle"], device=run.device)
        return [perm[k:k + B] for k in range(0, n, B)]
    perm = torch.stack([torch.randperm(n, generator=g, device=run.device) for g in run.gens["shuffle"]])
    return [perm[:, k:k + B] for k in range(0, n, B)]


def _gather(data: DataSplits, idx: Tensor) -> tuple[Tensor, Tensor]:
    """The minibatch at positions ``idx``: (B, n_0) inputs, or (R, B, n_0) with replicas."""
    if data.train_index is not None:  # replica splits: positions -> rows of the shared pool
        idx = data.train_index.gather(-1, idx)
    return data.train_x[idx], data.train_y[idx]


def _feedback_step(run: _Run, fwd_or_x, cache=None) -> Tensor:
    grads, losses = run.rule.feedback_gradients(run.net, run.params, run.feedback, fwd_or_x,
                                                generator=run.gens["noise"], cache=cache)
    run.fb_opt.step(grads)
    run.fb_steps += 1
    return sum(losses.values())


def _feedback_minibatch(run: _Run, idx: Tensor, sums: dict[str, Tensor]) -> None:
    """A feedback-only step (pre-training, extra feedback epochs) on the minibatch ``idx``."""
    x, _ = _gather(run.data, idx)
    sums["rec"].add_(_feedback_step(run, x))


def _train_minibatch(run: _Run, idx: Tensor, sums: dict[str, Tensor]) -> None:
    """One training minibatch (SPEC §5.2): targets and forward update at the current parameters, the
    feedback step on the same forward pass with fresh noise, then the forward Adam step; the running sums
    of loss, accuracy and reconstruction loss are updated in place (no host synchronisation)."""
    net = run.net
    x, y = _gather(run.data, idx)
    fwd = net.forward(run.params, x)
    result = run.rule.forward_update(net, run.params, run.feedback, fwd, y)  # nothing applied yet
    sums["loss"].add_(result.loss)
    if net.loss == "cross_entropy":
        sums["acc"].add_(net.accuracy(result.output, y))
    if run.fb_opt is not None:
        sums["rec"].add_(_feedback_step(run, fwd, result.cache))
        if run.cfg["extra_fb_minibatches"]:  # 0 in every final configuration
            for e_idx in _batches(run, run.data.num_train)[: run.cfg["extra_fb_minibatches"]]:
                _feedback_step(run, _gather(run.data, e_idx)[0])
    if run.cfg["log_alignment"] and run.batch % run.cfg["log_interval"] == 0:  # before the step (SPEC §7.1)
        _log_alignment(run, fwd, y, result.forward_grads, run.batch)
    run.steps += 1
    # only the parameters the optimiser holds move (Frozen-MNIST: W1, b1)
    run.fwd_opt.step({k: g for k, g in result.forward_grads.items() if k in run.fwd_opt.params})


def _sums(run: _Run, kind: str, keys: tuple[str, ...]) -> dict[str, Tensor]:
    """The epoch's running sums (per replica), zeroed: the same tensors every epoch, so that a captured
    step keeps writing into them."""
    if kind not in run.sums:
        shape = () if run.replicas is None else (run.replicas,)
        run.sums[kind] = {k: torch.zeros(shape, dtype=run.net.dtype, device=run.device) for k in keys}
    for t in run.sums[kind].values():
        t.zero_()
    return run.sums[kind]


def _graph_for(run: _Run, kind: str, idx: Tensor, sums: dict, log: Callable[[str], None]):
    """The captured step for this kind and index shape (None: run eagerly).  Full minibatches are
    replayed from a CUDA graph; the last, smaller minibatch of an epoch and the steps that log alignment
    (every ``log_interval`` minibatches) run the same step function eagerly."""
    if not run.fast or run.cfg["extra_fb_minibatches"]:
        return None
    if idx.shape[-1] != run.cfg["batch_size"]:
        return None
    key = (kind, tuple(idx.shape))
    if key not in run.graphs:
        from .fast import CapturedStep
        fn = _train_minibatch if kind == "train" else _feedback_minibatch
        state = [*run.params.values(), *run.feedback.values(), *sums.values()]
        for opt in (run.fwd_opt, run.fb_opt):
            if opt is not None:
                state += [*opt.exp_avg.values(), *opt.exp_avg_sq.values(), opt._t]
        gens = run.gens["noise"] if run.replicas is not None else [run.gens["noise"]]
        counters = [(run, "steps"), (run, "fb_steps"), (run.fwd_opt, "step_count"), (run.fb_opt, "step_count")]
        try:
            run.graphs[key] = CapturedStep(lambda i: fn(run, i, sums), idx, state, gens, counters)
        except Exception as exc:  # noqa: BLE001 — any capture failure falls back to the eager reference
            log(f"CUDA-graph capture of the {kind} step failed ({type(exc).__name__}: {exc}); running eagerly")
            run.fast = False
            return None
    return run.graphs[key]


def _feedback_epoch(run: _Run, log) -> Tensor:
    sums = _sums(run, "feedback", ("rec",))
    batches = _batches(run, run.data.num_train)
    for idx in batches:
        graph = _graph_for(run, "feedback", idx, sums, log)
        if graph is not None:
            graph(idx)
        else:
            _feedback_minibatch(run, idx, sums)
    return sums["rec"] / len(batches)


def _train_epoch(run: _Run, log) -> dict[str, Tensor]:
    sums = _sums(run, "train", ("loss", "acc", "rec"))
    batches = _batches(run, run.data.num_train)
    for k, idx in enumerate(batches):
        run.batch = k
        logs = run.cfg["log_alignment"] and k % run.cfg["log_interval"] == 0
        graph = None if logs else _graph_for(run, "train", idx, sums, log)
        if graph is not None:
            graph(idx)
        else:
            _train_minibatch(run, idx, sums)
    n = len(batches)
    return {"loss": sums["loss"] / n, "acc": sums["acc"] / n, "rec": sums["rec"] / n}


def _log_alignment(run: _Run, fwd, y, update, batch: int) -> None:
    damping = run.cfg["gn_damping_per_hidden_layer"]
    for row in alignment_angles(run.net, run.params, fwd, y, update, damping):
        row.update(epoch=run.epochs_done + 1, step=run.steps, batch=batch,
                   damping=None if row["reference"] == "bp" else _damping_of(damping, row["layer"]))
        run.records[0].alignment.append(row)


def _damping_of(damping, layer: int):
    return damping if isinstance(damping, (int, float)) else damping[layer - 1]


@torch.no_grad()
def damping_search(run: _Run) -> list[dict]:
    """Table S7 (SPEC §7.2): with every parameter frozen, for each λ ∈ Λ one pass over the shuffled
    training set; on the minibatches with index ≡ 0 (mod log_interval) the angle between the method's
    update and the damped-GNT update of every hidden layer; averaged per (λ, layer)."""
    rows = []
    hidden = run.net.L - 1
    for lam in DAMPING_CANDIDATES:
        batches = _batches(run, run.data.num_train)[:: run.cfg["log_interval"]]
        sums, counts = [0.0] * hidden, [0] * hidden
        for idx in batches:
            x, y = _gather(run.data, idx)
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


@torch.no_grad()
def evaluate(net, params: dict, x: Tensor, y: Tensor, batch_size: int = EVAL_BATCH, chunk: int | None = None,
             index: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(loss, accuracy): means over loader batches of the per-batch means (SPEC §5.4), per replica when
    ``params`` has a replica dimension.  ``index`` (R, N): replica r is evaluated on rows ``index[r]`` of
    ``x`` (its own validation split).  ``chunk``: samples per forward pass (default 8192 flat inputs,
    1024 images: the CNN's float64 activations of 8192 images take about 5 GB)."""
    chunk = chunk or (8192 if x.dim() == 2 else 1024)
    if index is not None:  # R replicas gather R·chunk samples at once: keep the peak near one replica's
        chunk = max(EVAL_BATCH, chunk // index.shape[0])
    n = index.shape[-1] if index is not None else x.shape[0]
    losses, correct = [], []
    for k in range(0, n, chunk):
        if index is not None:
            rows = index[:, k:k + chunk]
            xb, yb = x[rows], y[rows]
        else:
            xb, yb = x[k:k + chunk], y[k:k + chunk]
        out = net.forward(params, xb).output
        losses.append(net.per_sample_loss(out, yb))
        if net.loss == "cross_entropy":
            correct.append((out.argmax(-1) == yb).to(out.dtype))
    loss = torch.cat(losses, -1)  # (..., N)
    nb = -(-n // batch_size)
    counts = torch.full((nb,), float(batch_size), dtype=loss.dtype, device=loss.device)
    counts[-1] = n - (nb - 1) * batch_size

    def mean_of_batch_means(v):  # (..., N) -> mean over loader batches of the per-batch means
        padded = v.new_zeros(v.shape[:-1] + (nb * batch_size,))
        padded[..., :n] = v
        return (padded.view(*v.shape[:-1], nb, batch_size).sum(-1) / counts).mean(-1)

    acc = mean_of_batch_means(torch.cat(correct, -1)) if correct else torch.full_like(loss[..., 0], math.nan)
    return mean_of_batch_means(loss), acc


def _finite_per_replica(run: _Run, tensors) -> list[bool]:
    """Whether every tensor is finite, per replica (one entry in a single run)."""
    if run.replicas is None:
        return [bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())]
    ok = torch.stack([torch.isfinite(t).reshape(run.replicas, -1).all(-1) for t in tensors]).all(0)
    return ok.tolist()


def _values(run: _Run, t: Tensor) -> list[float]:
    """A per-replica scalar tensor as floats, one per record (one host transfer)."""
    return [float(v) for v in (t.reshape(-1).tolist() if run.replicas is not None else [t.item()])]


# ------------------------------------------------------------------------------------------ driver
def _summary(run: _Run, r: int, wall: float) -> dict:
    rec = run.records[r]
    rows = rec.metrics or []
    cls = run.net.loss == "cross_entropy"
    best = None
    if cls and rows and rows[0]["val_error"] is not None:
        best = min(range(len(rows)), key=lambda k: (rows[k]["val_error"], k))  # first argmax of val accuracy
    last = rows[-1] if rows else None
    diverged = rec.status == "diverged"
    return {
        "method": run.cfg.get("method"), "dataset": run.cfg.get("dataset"), "tuning": run.cfg.get("tuning"),
        "rule": run.cfg["rule"], "seed": rec.seed, "status": rec.status, "message": rec.message,
        "epochs_run": len(rows), "epochs_configured": run.cfg["epochs"],
        "best_epoch": rows[best]["epoch"] if best is not None else None,
        "test_error_at_best_val": rows[best]["test_error"] if best is not None and not diverged else None,
        "val_error_best": rows[best]["val_error"] if best is not None and not diverged else None,
        "test_error_last": last["test_error"] if last and not diverged else None,
        "train_loss_last": last["train_loss"] if last and not diverged else None,
        "wall_time_s": round(wall, 3), "device": str(run.device), "device_name": device_name(run.device),
        "torch_version": str(torch.__version__), "code_version": code_version(),
        "python_version": platform.python_version(),
        "feedback_steps": run.fb_steps,
        "damping_selected": selected_damping(rec.damping) if rec.damping else None,
        # seeds trained together in one process (wall_time_s is then the block's) and the step path
        "block_seeds": [x.seed for x in run.records] if run.replicas is not None else None,
        "step_path": ("eager" if not (run.fast and run.graphs) else
                      "cuda-graph" if run.device.type == "cuda" else "graph-emulated"),
    }


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Atomic CSV write; None and NaN (an undefined value) are written as empty fields, never as numbers."""
    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if row[k] is None or (isinstance(row[k], float) and math.isnan(row[k]))
                                else row[k]) for k in columns})

    _atomic_write(path, write)


def _write_outputs(out: Path, rec: _Record) -> None:
    _write_csv(out / METRICS, rec.metrics, METRIC_COLUMNS)
    if rec.alignment:
        _write_csv(out / ALIGNMENT, rec.alignment, ALIGNMENT_COLUMNS)
    if rec.damping:
        _write_csv(out / DAMPING, rec.damping, ["damping", "layer", "mean_angle", "batches"])
    _atomic_write(out / SUMMARY, lambda tmp: tmp.write_text(json.dumps(rec.summary, indent=2, allow_nan=False)
                                                            + "\n"))


def _pct_error(acc: float) -> float:
    return 100.0 * (1.0 - acc)


def _finished_summary(out: Path | None, cfg: dict, seed: int, log) -> dict | None:
    """The summary of a run that already ended in ``out`` (None: nothing to skip)."""
    if out is None:
        return None
    if (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
        _check_same_run(out / CHECKPOINT, state["config"], state["seed"], cfg, seed)
        if state["status"] == "running" or not (out / SUMMARY).exists():
            return None
    elif not (out / SUMMARY).exists():
        return None
    done = json.loads((out / SUMMARY).read_text())
    if done.get("status") == "running":
        return None
    if done.get("config") != cfg or done.get("seed") != seed:
        raise ConfigError(f"{out} holds a finished run of another configuration or seed; "
                          "use another output folder")
    log(f"{out}: already {done['status']}, nothing to do")
    return done


def _check_same_run(path: Path, cfg_found: dict, seed_found: int, cfg: dict, seed: int) -> None:
    if cfg_found != cfg or seed_found != seed:
        diff = sorted(k for k in set(cfg) | set(cfg_found) if cfg.get(k) != cfg_found.get(k))
        raise ConfigError(f"{path} belongs to another run (seed {seed_found}, differing keys: "
                          f"{diff or 'none'}); use another output folder or delete it")


def train(cfg: Mapping[str, Any], data: DataSplits, seed: int, out_dir: str | os.PathLike | None = None,
          device="cpu", *, loss: str = "cross_entropy", progress: bool | None = None,
          log: Callable[[str], None] | None = None,
          on_epoch_end: Callable[[int], None] | None = None, keep_checkpoint: bool = False,
          prune: bool = True, fast: str = "auto") -> dict:
    """Train one run and return its summary (also written to ``out_dir`` when given).

    ``cfg`` is a resolved configuration (:func:`tp.config.resolve_config`); ``data`` holds the splits in
    the run's dtype.  With an ``out_dir`` that holds a checkpoint of the same configuration and seed, the
    run resumes from it; one that holds a finished summary returns it without training.
    ``on_epoch_end(epoch)`` is called after each training epoch's checkpoint (a test hook).
    ``prune``: apply the official early stop (its thresholds are calibrated for the real datasets).
    ``fast``: ``auto`` (CUDA-graph steps on a CUDA device, :mod:`tp.fast`), ``graph`` (the same, an error
    elsewhere) or ``eager`` (the reference path).
    """
    return train_seeds(cfg, data, [seed], [out_dir], device, loss=loss, progress=progress, log=log,
                       on_epoch_end=on_epoch_end, keep_checkpoint=keep_checkpoint, prune=prune, fast=fast,
                       replicas=False)[0]


FAST_MODES = ("auto", "graph", "eager")


def train_seeds(cfg: Mapping[str, Any], data: DataSplits, seeds: list[int],
                out_dirs: list[str | os.PathLike | None] | None = None, device="cpu", *,
                loss: str = "cross_entropy", progress: bool | None = None,
                log: Callable[[str], None] | None = None, on_epoch_end: Callable[[int], None] | None = None,
                keep_checkpoint: bool = False, prune: bool = True, fast: str = "auto",
                replicas: bool = True) -> list[dict]:
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
    if fast not in FAST_MODES:
        raise ConfigError(f"unknown fast mode {fast!r}; valid choices: {', '.join(FAST_MODES)}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {seeds}")
    out_dirs = list(out_dirs) if out_dirs is not None else [None] * len(seeds)
    if len(out_dirs) != len(seeds):
        raise ConfigError(f"{len(seeds)} seeds but {len(out_dirs)} output folders")
    if replicas and cfg.get("model") == "cnn":
        raise ConfigError("the CNN has no replica dimension: train its seeds one per process (tp train --seed N)")
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
    use_graphs = fast == "graph" or (fast == "auto" and device.type == "cuda")
    if use_graphs:
        from .fast import graphs_available
        if not graphs_available(device):
            raise ConfigError(f"fast mode 'graph' needs a CUDA device, got {device}; use --fast eager or auto")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    outs = [Path(o) if o is not None else None for o in out_dirs]
    results: dict[int, dict] = {}
    pending = []  # (position, progress key) of seeds still to train
    for pos, (seed, out) in enumerate(zip(seeds, outs)):
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        done = _finished_summary(out, cfg, seed, log)
        if done is not None:
            results[pos] = done
            if not keep_checkpoint and out is not None:  # the final checkpoint of a seed whose block stopped
                (out / CHECKPOINT).unlink(missing_ok=True)
            continue
        key = (0, 0)
        if out is not None and (out / CHECKPOINT).exists():
            state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
            key = (state["pre_epochs_done"], state["epochs_done"])
        pending.append((pos, key))
    data = data.to(device, torch.float64 if cfg["double_precision"] else torch.float32)  # SPEC §1 precision
    for key in sorted({k for _, k in pending}):
        block = [pos for pos, k in pending if k == key]
        sub = data if rows is None or len(block) == len(seeds) else _replica_subset(data, block)
        summaries = _train_block(cfg, sub, [seeds[p] for p in block], [outs[p] for p in block], device, loss,
                                 replicas, use_graphs, progress, log, on_epoch_end, keep_checkpoint, prune)
        results.update(zip(block, summaries))
    return [results[pos] for pos in range(len(seeds))]


def _replica_subset(data: DataSplits, rows: list[int]) -> DataSplits:
    idx = torch.tensor(rows, device=data.train_index.device)
    return DataSplits(data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y,
                      data.train_index[idx], data.val_index[idx])


def _train_block(cfg, data, seeds, outs, device, loss, replicas, use_graphs, progress, log, on_epoch_end,
                 keep_checkpoint, prune) -> list[dict]:
    run = _build(cfg, seeds, data, device, loss, replicas, use_graphs)
    for r, out in enumerate(outs):
        run.records[r].out = out
        if out is not None and (out / CHECKPOINT).exists():
            # on the CPU: generator states must stay CPU byte tensors; parameters are copied to the device
            state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
            _check_same_run(out / CHECKPOINT, state["config"], state["seed"], cfg, seeds[r])
            run.load_state_dict(state, r)
            log(f"resuming {out} after {run.pre_epochs_done} pre-training and {run.epochs_done} training epochs")
        if out is not None:
            _atomic_write(out / CONFIG, lambda tmp: tmp.write_text(
                yaml.safe_dump({"seed": seeds[r], **cfg}, sort_keys=False)))
    label = f"{cfg.get('method', cfg['rule'])}/{cfg.get('dataset', '')} seed" + (
        f"s {','.join(map(str, seeds))}" if replicas else f" {seeds[0]}")

    def checkpoint(r):
        out = run.records[r].out
        if out is not None:
            _atomic_write(out / CHECKPOINT, lambda tmp: torch.save(run.state_dict(r), tmp))

    def finish(r):
        """Seed r stopped (or ended): its summary is fixed and its outputs written now.  In a block whose
        other seeds go on, its checkpoint (with the final status) stays until the block ends, so that a
        restarted block knows the seed is done even if its summary was removed meanwhile (Snakemake
        deletes a job's outputs before running it again)."""
        rec = run.records[r]
        if rec.summary is None:  # (a seed resumed from a checkpoint that says it ended has its summary)
            rec.elapsed = run.elapsed
            rec.summary = {**_summary(run, r, rec.elapsed), "config": cfg}
        if rec.out is not None:
            _write_outputs(rec.out, rec)
            if keep_checkpoint or run.running():
                checkpoint(r)
            else:
                (rec.out / CHECKPOINT).unlink(missing_ok=True)

    def stop(r, status: str, message: str):
        rec = run.records[r]
        rec.status, rec.message = status, message
        log(f"{label if not replicas else f'seed {rec.seed}'}: run {status}: {message}")

    for r, rec in enumerate(run.records):  # resumed from a checkpoint that says the seed already ended
        if rec.status != "running":
            log(f"{rec.out}: already {rec.status} (its checkpoint says so); writing its outputs")
            finish(r)

    use_bar = sys.stderr.isatty() if progress is None else progress
    total = (cfg["epochs_fb"] if run.fb_opt else 0) + cfg["epochs"]
    bar = None
    if use_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=run.pre_epochs_done + run.epochs_done, unit="epoch", desc=label)
    t_start = time.perf_counter() - run.elapsed
    threshold = PRUNE_THRESHOLDS.get(cfg.get("dataset")) if prune else None

    # --- feedback pre-training (sleep phase), SPEC §5.2
    while run.fb_opt is not None and run.running() and run.pre_epochs_done < cfg["epochs_fb"]:
        rec_loss = _values(run, _feedback_epoch(run, log))
        run.pre_epochs_done += 1
        finite = _finite_per_replica(run, run.feedback.values())
        run.elapsed = time.perf_counter() - t_start
        for r in run.running():
            if not (math.isfinite(rec_loss[r]) and finite[r]):
                stop(r, "diverged", f"non-finite reconstruction loss or feedback parameters in feedback "
                                    f"pre-training epoch {run.pre_epochs_done}")
                finish(r)
            else:
                checkpoint(r)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(rec_loss=", ".join(f"{v:.4g}" for v in rec_loss))
        else:
            log(f"feedback pre-training {run.pre_epochs_done}/{cfg['epochs_fb']}: reconstruction loss "
                + ", ".join(f"{v:.6g}" for v in rec_loss))

    # --- training epochs
    cls = run.net.loss == "cross_entropy"
    while run.running() and run.epochs_done < cfg["epochs"]:
        t0 = time.perf_counter()
        stats = _train_epoch(run, log)
        if run.fb_opt is not None:
            for _ in range(cfg["extra_fb_epochs"]):
                _feedback_epoch(run, log)
        epoch = run.epochs_done + 1
        run.epochs_done = epoch
        train_loss, train_acc, rec_loss = (_values(run, stats[k]) for k in ("loss", "acc", "rec"))
        finite = _finite_per_replica(run, list(run.params.values()) + list(run.feedback.values()))
        val = test = None
        if data.val_x is not None:
            val = [_values(run, v) for v in evaluate(run.net, run.params, data.val_x, data.val_y,
                                                      index=data.val_index)]
        test = [_values(run, v) for v in evaluate(run.net, run.params, data.test_x, data.test_y)]
        seconds = round(time.perf_counter() - t0, 4)
        run.elapsed = time.perf_counter() - t_start
        for r in run.running():
            if not (math.isfinite(train_loss[r]) and finite[r]):
                stop(r, "diverged", f"non-finite training loss or parameters in epoch {epoch} "
                                    f"(train loss {train_loss[r]})")
                finish(r)
                continue
            row = {"epoch": epoch, "train_loss": train_loss[r],
                   "train_error": _pct_error(train_acc[r]) if cls else None,
                   "val_loss": val[0][r] if val else None,
                   "val_error": _pct_error(val[1][r]) if val and cls else None,
                   "test_loss": test[0][r], "test_error": _pct_error(test[1][r]) if cls else None,
                   "reconstruction_loss": rec_loss[r] if run.fb_opt is not None else None, "seconds": seconds}
            if not all(v is None or math.isfinite(v) for v in row.values()):
                stop(r, "diverged", f"non-finite evaluation metrics in epoch {epoch}")
                finish(r)
                continue
            rec = run.records[r]
            rec.metrics.append(row)
            if cfg["gn_damping_hpsearch"] and epoch == DAMPING_SEARCH_AFTER:
                checkpoint(r)  # the 3 training epochs are kept even if the search is interrupted
                rec.damping = damping_search(run)
                rec.status = "finished"
                rec.message = (f"damping search after {epoch} epochs (SPEC §7.2); selected per hidden layer: "
                               f"{selected_damping(rec.damping)}")
                log(rec.message)
            elif cls and threshold is not None and epoch >= PRUNE_FROM_EPOCH and train_acc[r] < threshold:
                stop(r, "pruned", f"training accuracy {train_acc[r]:.3f} < {threshold} in epoch {epoch} "
                                  f"(early stop of the official code, SPEC §12.13)")
            elif epoch == cfg["epochs"]:
                rec.status = "finished"
            run.elapsed = time.perf_counter() - t_start
            if rec.status == "running":
                checkpoint(r)
            else:
                finish(r)
            if bar is None:
                parts = [f"epoch {epoch}/{cfg['epochs']}", f"train loss {train_loss[r]:.6g}"]
                for key in ("train_error", "val_error", "test_error"):
                    if row[key] is not None:
                        parts.append(f"{key.replace('_', ' ')} {row[key]:.2f}%")
                prefix = f"seed {rec.seed}: " if replicas else ""
                log(prefix + ", ".join(parts) + f" ({seconds:.1f} s)")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=", ".join(f"{v:.4g}" for v in train_loss))
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    for r in run.running():  # epochs == 0
        run.records[r].status = "finished"
        run.elapsed = time.perf_counter() - t_start
        finish(r)
    if bar is not None:
        bar.close()
    for rec in run.records:  # the block is over: its seeds' checkpoints go, removed summaries come back
        if rec.out is not None:
            if not (rec.out / SUMMARY).exists():
                _write_outputs(rec.out, rec)
            if not keep_checkpoint:
                (rec.out / CHECKPOINT).unlink(missing_ok=True)
    return [rec.summary for rec in run.records]
