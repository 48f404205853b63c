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
from dataclasses import dataclass
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

__all__ = ["train", "run_generators", "code_version", "METRIC_COLUMNS", "PRUNE_THRESHOLDS", "RunDiverged",
           "GENERATOR_STREAMS"]

ALIGNMENT_COLUMNS = ["epoch", "step", "batch", "layer", "reference", "damping", "angle"]
METRIC_COLUMNS = ["epoch", "train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error",
                  "reconstruction_loss", "seconds"]
#: minimum training accuracy from the 6th epoch on (SPEC §15)
PRUNE_THRESHOLDS = {"mnist": 0.4, "frozen-mnist": 0.4, "fashion-mnist": 0.4, "cifar10": 0.25}
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
class _Run:
    cfg: dict
    seed: int
    device: torch.device
    net: MLP
    rule: Any
    params: dict
    feedback: dict
    fwd_opt: Adam
    fb_opt: Adam | None
    gens: dict[str, torch.Generator]
    pre_epochs_done: int = 0
    epochs_done: int = 0
    metrics: list | None = None
    elapsed: float = 0.0
    status: str = "running"
    message: str = ""
    fb_steps: int = 0  # feedback Adam steps taken (all phases), for schedule checks
    steps: int = 0  # training minibatches taken
    alignment: list | None = None  # tidy rows of alignment angles (log_alignment)
    damping: list | None = None  # rows of the damping search (gn_damping_hpsearch)

    def state_dict(self) -> dict:
        return {
            "format": 1, "config": self.cfg, "seed": self.seed,
            "pre_epochs_done": self.pre_epochs_done, "epochs_done": self.epochs_done,
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "feedback": {k: v.detach().cpu() for k, v in self.feedback.items()},
            "fwd_opt": self.fwd_opt.state_dict(),
            "fb_opt": self.fb_opt.state_dict() if self.fb_opt is not None else None,
            "generators": {k: g.get_state() for k, g in self.gens.items()},
            "metrics": self.metrics, "elapsed": self.elapsed, "status": self.status,
            "message": self.message, "fb_steps": self.fb_steps, "steps": self.steps,
            "alignment": self.alignment, "damping": self.damping,
        }

    def load_state_dict(self, state: Mapping) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
            for k, v in state["feedback"].items():
                self.feedback[k].copy_(v)
        self.fwd_opt.load_state_dict(state["fwd_opt"])
        if self.fb_opt is not None:
            self.fb_opt.load_state_dict(state["fb_opt"])
        for k, g in self.gens.items():
            g.set_state(state["generators"][k])
        for key in ("pre_epochs_done", "epochs_done", "metrics", "elapsed", "status", "message", "fb_steps",
                    "steps", "alignment", "damping"):
            setattr(self, key, state[key])


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _build(cfg: dict, seed: int, data: DataSplits, device: torch.device, loss: str) -> _Run:
    dtype = torch.float64 if cfg["double_precision"] else torch.float32
    gens = run_generators(seed, device)
    rule = make_rule(cfg["rule"], **rule_hyperparameters(cfg))
    net = build_model(cfg, rule, data, loss, dtype)  # the MLP (SPEC §1) or the CNN (SPEC §8) of cfg["model"]
    params = {k: v.to(device) for k, v in net.init_params(gens["init"], init=cfg["initialization"]).items()}
    feedback = {k: v.to(device) for k, v in rule.init_feedback(net, gens["init"]).items()}

    # forward optimiser: lr/β when normalize_lr (SPEC §2.4), per layer for the CNN (§8.5); Frozen-MNIST
    # trains W1, b1 only (SPEC §6)
    names = [k for k in params if not cfg["only_train_first_layer"] or k in ("W1", "b1")]
    lr, eps = forward_optimizer_settings(cfg, names)
    fwd_opt = Adam({k: params[k] for k in names}, lr=lr, betas=(cfg["beta1"], cfg["beta2"]),
                   eps=eps, weight_decay=cfg["forward_wd"])
    fb_opt = None
    trainable = rule.trainable_feedback(feedback)
    if trainable:
        fb_opt = Adam({k: feedback[k] for k in trainable}, lr=cfg["lr_fb"],
                      betas=(cfg["beta1_fb"], cfg["beta2_fb"]), eps=cfg["epsilon_fb"],
                      weight_decay=cfg["feedback_wd"])
    return _Run(cfg, seed, device, net, rule, params, feedback, fwd_opt, fb_opt, gens, metrics=[], alignment=[],
                damping=[])


# ------------------------------------------------------------------------------------------- steps
def _batches(run: _Run, n: int):
    perm = torch.randperm(n, generator=run.gens["shuffle"], device=run.device)
    B = run.cfg["batch_size"]
    return [perm[k:k + B] for k in range(0, n, B)]  # drop_last=False


def _feedback_step(run: _Run, fwd_or_x, generator, cache=None) -> Tensor:
    grads, losses = run.rule.feedback_gradients(run.net, run.params, run.feedback, fwd_or_x, generator=generator,
                                                cache=cache)
    run.fb_opt.step(grads)
    run.fb_steps += 1
    return sum(losses.values())


def _feedback_epoch(run: _Run, data: DataSplits) -> Tensor:
    total = torch.zeros((), dtype=run.net.dtype, device=run.device)
    batches = _batches(run, data.train_x.shape[0])
    for idx in batches:
        total = total + _feedback_step(run, data.train_x[idx], run.gens["noise"])
    return total / len(batches)


def _train_epoch(run: _Run, data: DataSplits) -> dict[str, Tensor]:
    cfg, rule, net = run.cfg, run.rule, run.net
    zero = torch.zeros((), dtype=net.dtype, device=run.device)
    loss_sum, acc_sum, rec_sum = zero, zero, zero
    batches = _batches(run, data.train_x.shape[0])
    for k, idx in enumerate(batches):
        x, y = data.train_x[idx], data.train_y[idx]
        fwd = net.forward(run.params, x)
        result = rule.forward_update(net, run.params, run.feedback, fwd, y)  # nothing applied yet
        loss_sum = loss_sum + result.loss
        if net.loss == "cross_entropy":
            acc_sum = acc_sum + net.accuracy(result.output, y)
        if run.fb_opt is not None:
            rec_sum = rec_sum + _feedback_step(run, fwd, run.gens["noise"], result.cache)
            if cfg["extra_fb_minibatches"]:  # 0 in every final configuration
                extra = _batches(run, data.train_x.shape[0])[: cfg["extra_fb_minibatches"]]
                for e_idx in extra:
                    _feedback_step(run, data.train_x[e_idx], run.gens["noise"])
        if cfg["log_alignment"] and k % cfg["log_interval"] == 0:  # before the forward step (SPEC §7.1)
            _log_alignment(run, fwd, y, result.forward_grads, k)
        run.steps += 1
        # only the parameters the optimiser holds move (Frozen-MNIST: W1, b1)
        run.fwd_opt.step({k: g for k, g in result.forward_grads.items() if k in run.fwd_opt.params})
    n = len(batches)
    return {"loss": loss_sum / n, "acc": acc_sum / n, "rec": rec_sum / n}


def _log_alignment(run: _Run, fwd, y, update, batch: int) -> None:
    damping = run.cfg["gn_damping_per_hidden_layer"]
    for row in alignment_angles(run.net, run.params, fwd, y, update, damping):
        row.update(epoch=run.epochs_done + 1, step=run.steps, batch=batch,
                   damping=None if row["reference"] == "bp" else _damping_of(damping, row["layer"]))
        run.alignment.append(row)


def _damping_of(damping, layer: int):
    return damping if isinstance(damping, (int, float)) else damping[layer - 1]


@torch.no_grad()
def damping_search(run: _Run, data: DataSplits) -> list[dict]:
    """Table S7 (SPEC §7.2): with every parameter frozen, for each λ ∈ Λ one pass over the shuffled
    training set; on the minibatches with index ≡ 0 (mod log_interval) the angle between the method's
    update and the damped-GNT update of every hidden layer; averaged per (λ, layer)."""
    rows = []
    hidden = run.net.L - 1
    for lam in DAMPING_CANDIDATES:
        batches = _batches(run, data.train_x.shape[0])[:: run.cfg["log_interval"]]
        sums, counts = [0.0] * hidden, [0] * hidden
        for idx in batches:
            x, y = data.train_x[idx], data.train_y[idx]
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
def evaluate(net: MLP, params: dict, x: Tensor, y: Tensor, batch_size: int = EVAL_BATCH,
             chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """(loss, accuracy): means over loader batches of the per-batch means (SPEC §5.4)."""
    losses, correct = [], []
    for k in range(0, x.shape[0], chunk):
        out = net.forward(params, x[k:k + chunk]).output
        losses.append(net.per_sample_loss(out, y[k:k + chunk]))
        if net.loss == "cross_entropy":
            correct.append((out.argmax(-1) == y[k:k + chunk]).to(out.dtype))
    loss = torch.cat(losses)
    n = loss.shape[0]
    nb = -(-n // batch_size)
    counts = torch.full((nb,), float(batch_size), dtype=loss.dtype, device=loss.device)
    counts[-1] = n - (nb - 1) * batch_size

    def mean_of_batch_means(v):  # (N,) -> mean over loader batches of the per-batch means
        padded = torch.zeros(nb * batch_size, dtype=v.dtype, device=v.device)
        padded[:n] = v
        return (padded.view(nb, batch_size).sum(-1) / counts).mean()

    acc = mean_of_batch_means(torch.cat(correct)) if correct else torch.tensor(float("nan"))
    return mean_of_batch_means(loss), acc


def _all_finite(tensors) -> bool:
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


# ------------------------------------------------------------------------------------------ driver
def _summary(run: _Run, wall: float) -> dict:
    rows = run.metrics or []
    cls = run.net.loss == "cross_entropy"
    best = None
    if cls and rows and rows[0]["val_error"] is not None:
        best = min(range(len(rows)), key=lambda k: (rows[k]["val_error"], k))  # first argmax of val accuracy
    last = rows[-1] if rows else None
    diverged = run.status == "diverged"
    return {
        "method": run.cfg.get("method"), "dataset": run.cfg.get("dataset"), "tuning": run.cfg.get("tuning"),
        "rule": run.cfg["rule"], "seed": run.seed, "status": run.status, "message": run.message,
        "epochs_run": len(rows), "epochs_configured": run.cfg["epochs"],
        "best_epoch": rows[best]["epoch"] if best is not None else None,
        "test_error_at_best_val": rows[best]["test_error"] if best is not None and not diverged else None,
        "val_error_best": rows[best]["val_error"] if best is not None and not diverged else None,
        "test_error_last": last["test_error"] if last and not diverged else None,
        "train_loss_last": last["train_loss"] if last and not diverged else None,
        "wall_time_s": round(wall, 3), "device": str(run.device), "device_name": device_name(run.device),
        "torch_version": torch.__version__, "code_version": code_version(),
        "python_version": platform.python_version(),
        "feedback_steps": run.fb_steps,
        "damping_selected": selected_damping(run.damping) if run.damping else None,
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


def _write_outputs(out: Path, run: _Run, wall: float) -> dict:
    _write_csv(out / METRICS, run.metrics, METRIC_COLUMNS)
    if run.alignment:
        _write_csv(out / ALIGNMENT, run.alignment, ALIGNMENT_COLUMNS)
    if run.damping:
        _write_csv(out / DAMPING, run.damping, ["damping", "layer", "mean_angle", "batches"])
    summary = _summary(run, wall)
    summary["config"] = run.cfg
    _atomic_write(out / SUMMARY, lambda tmp: tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n"))
    return summary


def _pct_error(acc: float) -> float:
    return 100.0 * (1.0 - acc)


def train(cfg: Mapping[str, Any], data: DataSplits, seed: int, out_dir: str | os.PathLike | None = None,
          device="cpu", *, loss: str = "cross_entropy", progress: bool | None = None,
          log: Callable[[str], None] | None = None,
          on_epoch_end: Callable[[int], None] | None = None, keep_checkpoint: bool = False,
          prune: bool = True) -> dict:
    """Train one run and return its summary (also written to ``out_dir`` when given).

    ``cfg`` is a resolved configuration (:func:`tp.config.resolve_config`); ``data`` holds the splits in
    the run's dtype.  With an ``out_dir`` that holds a checkpoint of the same configuration and seed, the
    run resumes from it; one that holds a finished summary returns it without training.
    ``on_epoch_end(epoch)`` is called after each training epoch's checkpoint (a test hook).
    ``prune``: apply the official early stop (its thresholds are calibrated for the real datasets).
    """
    cfg = dict(cfg)
    device = torch.device(device)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if (out / SUMMARY).exists() and not (out / CHECKPOINT).exists():
            done = json.loads((out / SUMMARY).read_text())
            if done.get("status") != "running":
                if done.get("config") != cfg or done.get("seed") != seed:
                    raise ConfigError(f"{out} holds a finished run of another configuration or seed; "
                                     "use another output folder")
                log(f"{out}: already {done['status']}, nothing to do")
                return done

    data = data.to(device, torch.float64 if cfg["double_precision"] else torch.float32)  # SPEC §1 precision
    run = _build(cfg, seed, data, device, loss)
    if out is not None and (out / CHECKPOINT).exists():
        # on the CPU: generator states must stay CPU byte tensors; parameters are copied to the device
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
        if state["config"] != cfg or state["seed"] != seed:
            diff = sorted(k for k in set(cfg) | set(state["config"]) if cfg.get(k) != state["config"].get(k))
            raise ConfigError(f"{out / CHECKPOINT} belongs to another run (seed {state['seed']}, differing keys: "
                             f"{diff or 'none'}); use another output folder or delete it")
        run.load_state_dict(state)
        log(f"resuming {out} after {run.pre_epochs_done} pre-training and {run.epochs_done} training epochs")
    if out is not None:
        _atomic_write(out / CONFIG, lambda tmp: tmp.write_text(yaml.safe_dump({"seed": seed, **cfg}, sort_keys=False)))

    def checkpoint():
        if out is not None:
            _atomic_write(out / CHECKPOINT, lambda tmp: torch.save(run.state_dict(), tmp))

    use_bar = sys.stderr.isatty() if progress is None else progress
    total = (cfg["epochs_fb"] if run.fb_opt else 0) + cfg["epochs"]
    bar = None
    if use_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=run.pre_epochs_done + run.epochs_done, unit="epoch",
                   desc=f"{cfg.get('method', cfg['rule'])}/{cfg.get('dataset', '')} seed {seed}")
    t_start = time.perf_counter() - run.elapsed
    threshold = PRUNE_THRESHOLDS.get(cfg.get("dataset")) if prune else None

    def stop(status: str, message: str):
        run.status, run.message = status, message
        log(f"run {status}: {message}")

    # --- feedback pre-training (sleep phase), SPEC §5.2
    while run.fb_opt is not None and run.status == "running" and run.pre_epochs_done < cfg["epochs_fb"]:
        rec = float(_feedback_epoch(run, data))
        run.pre_epochs_done += 1
        if not (math.isfinite(rec) and _all_finite(run.feedback.values())):
            stop("diverged", f"non-finite reconstruction loss or feedback parameters in feedback "
                             f"pre-training epoch {run.pre_epochs_done}")
            break
        run.elapsed = time.perf_counter() - t_start
        checkpoint()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(rec_loss=f"{rec:.4g}")
        else:
            log(f"feedback pre-training {run.pre_epochs_done}/{cfg['epochs_fb']}: reconstruction loss {rec:.6g}")

    # --- training epochs
    while run.status == "running" and run.epochs_done < cfg["epochs"]:
        t0 = time.perf_counter()
        stats = _train_epoch(run, data)
        if run.fb_opt is not None:
            for _ in range(cfg["extra_fb_epochs"]):
                _feedback_epoch(run, data)
        epoch = run.epochs_done + 1
        train_loss = float(stats["loss"])
        if not (math.isfinite(train_loss) and _all_finite(list(run.params.values()) + list(run.feedback.values()))):
            run.epochs_done = epoch
            stop("diverged", f"non-finite training loss or parameters in epoch {epoch} (train loss {train_loss})")
            break
        cls = run.net.loss == "cross_entropy"
        row = {"epoch": epoch, "train_loss": train_loss,
               "train_error": _pct_error(float(stats["acc"])) if cls else None,
               "val_loss": None, "val_error": None}
        if data.val_x is not None:
            vl, va = evaluate(run.net, run.params, data.val_x, data.val_y)
            row.update(val_loss=float(vl), val_error=_pct_error(float(va)) if cls else None)
        tl, ta = evaluate(run.net, run.params, data.test_x, data.test_y)
        row.update(test_loss=float(tl), test_error=_pct_error(float(ta)) if cls else None,
                   reconstruction_loss=float(stats["rec"]) if run.fb_opt is not None else None,
                   seconds=round(time.perf_counter() - t0, 4))
        if not all(v is None or math.isfinite(v) for v in row.values()):
            run.epochs_done = epoch
            stop("diverged", f"non-finite evaluation metrics in epoch {epoch}")
            break
        run.metrics.append(row)
        run.epochs_done = epoch
        if cfg["gn_damping_hpsearch"] and epoch == DAMPING_SEARCH_AFTER:
            run.elapsed = time.perf_counter() - t_start
            checkpoint()  # the 3 training epochs are kept even if the search is interrupted
            run.damping = damping_search(run, data)
            run.status = "finished"
            run.message = (f"damping search after {epoch} epochs (SPEC §7.2); selected per hidden layer: "
                           f"{selected_damping(run.damping)}")
            log(run.message)
        elif cls and threshold is not None and epoch >= PRUNE_FROM_EPOCH and float(stats["acc"]) < threshold:
            stop("pruned", f"training accuracy {float(stats['acc']):.3f} < {threshold} in epoch {epoch} "
                           f"(early stop of the official code, SPEC §12.13)")
        elif run.epochs_done == cfg["epochs"]:
            run.status = "finished"
        run.elapsed = time.perf_counter() - t_start
        checkpoint()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4g}", test_err=f"{row['test_error']}")
        else:
            parts = [f"epoch {epoch}/{cfg['epochs']}", f"train loss {train_loss:.6g}"]
            for key in ("train_error", "val_error", "test_error"):
                if row[key] is not None:
                    parts.append(f"{key.replace('_', ' ')} {row[key]:.2f}%")
            log(", ".join(parts) + f" ({row['seconds']:.1f} s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if run.status == "running":  # epochs == 0
        run.status = "finished"
    if bar is not None:
        bar.close()
    run.elapsed = time.perf_counter() - t_start
    summary = _summary(run, run.elapsed)
    summary["config"] = cfg
    if out is not None:
        summary = _write_outputs(out, run, run.elapsed)
        if not keep_checkpoint:
            (out / CHECKPOINT).unlink(missing_ok=True)
        else:
            checkpoint()
    return summary
