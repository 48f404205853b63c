"""The state of one run (or of a block of seeds trained together) and its checkpoint format.

A :class:`Run` holds what training changes — parameters, feedback weights, both Adam states, the random
generators of every stream (docs/algorithms.md#the-training-schedule: ``init``, ``split``, ``shuffle``, ``noise``,
derived from the seed) and the epoch counters — plus what a block needs to carry per seed (:class:`Record`: metrics,
status, alignment rows, damping rows, summary).  :meth:`Run.state_dict` writes the single-run checkpoint of one seed;
:meth:`Run.load_state_dict` reads it back into any replica, so a block resumes from single-run checkpoints and vice
versa.  :func:`build_run` makes a fresh run from a resolved configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..config.models import build_model, forward_optimizer_settings, trained_parameters
from ..config.resolve import rule_hyperparameters
from ..core.optim import Adam
from ..core.runtime import dtype_of
from ..data.datasets import DataSplits
from ..rules import make_rule

__all__ = ["GENERATOR_STREAMS", "CHECKPOINT_FORMAT", "RunDiverged", "Record", "StepContext", "Run", "run_generators",
           "build_run"]

GENERATOR_STREAMS = ("init", "split", "shuffle", "noise")
CHECKPOINT_FORMAT = 1


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


@dataclass
class Record:
    """Bookkeeping of one seed (one result folder); a block of seeds trained together has one each."""

    seed: int
    out: Path | None
    metrics: list = field(default_factory=list)
    status: str = "running"
    message: str = ""
    alignment: list = field(default_factory=list)  # tidy rows of alignment angles (log_alignment)
    damping: list = field(default_factory=list)  # rows of the damping search (gn_damping_hpsearch)
    damping_paired: list = field(default_factory=list)  # rows of the paired damping search (tp.metrics.damping)
    elapsed: float = 0.0  # wall time when the run stopped (running: the block's)
    summary: dict | None = None  # its summary, fixed when it stopped
    cfg: dict | None = None  # its own configuration in a block of trials (None: the run's)


@dataclass
class StepContext:
    """What the steps (:mod:`tp.training.steps`) keep besides the run's state — nothing of it is
    checkpointed: whether full minibatches replay CUDA graphs, the captured steps, the epoch's running sums
    and the hooks that observe minibatches."""

    fast: bool = False  # capture full minibatches as CUDA graphs (tp.core.fast)
    graphs: dict = field(default_factory=dict)  # (kind, index shape) -> CapturedStep
    compiled: Any = None  # the compiled CPU steps (tp.training.compiled.CompiledSteps), None: eager
    sums: dict = field(default_factory=dict)  # kind -> running sums of the current epoch
    hooks: list = field(default_factory=list)  # tp.training.hooks.Hook objects, called by the loop and steps


@dataclass
class Run:
    """One run, or a block of R seeds trained together as replicas (every tensor gets a leading replica
    dimension R; each replica draws from its own seed's generators): what it is (configuration, network,
    rule, data), its state — everything :meth:`state_dict` checkpoints: parameters, feedback weights, both
    optimisers, generators, counters, the seeds' records — and the per-step context ``ctx``."""

    cfg: dict
    records: list[Record]
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
    # counters (stored in the checkpoint)
    pre_epochs_done: int = 0
    epochs_done: int = 0
    elapsed: float = 0.0
    fb_steps: int = 0  # feedback Adam steps taken (all phases), for schedule checks
    steps: int = 0  # training minibatches taken
    # the step paths that trained this run, over all its processes (a resumed run may mix them)
    step_paths: set = field(default_factory=set)
    ctx: StepContext = field(default_factory=StepContext)  # the step path's own, never stored

    def sel(self, t: Tensor, r: int) -> Tensor:
        """Replica r of a tensor (the tensor itself in a single run)."""
        return t if self.replicas is None else t[r]

    def gen(self, stream: str, r: int) -> torch.Generator:
        g = self.gens[stream]
        return g if self.replicas is None else g[r]

    def cfg_of(self, r: int) -> dict:
        """The configuration of replica r (its own in a block of trials, else the run's)."""
        return self.records[r].cfg or self.cfg

    def running(self) -> list[int]:
        return [r for r, rec in enumerate(self.records) if rec.status == "running"]

    def _opt_state(self, opt: Adam, r: int) -> dict:
        """Adam.state_dict's format, replica r only (sliced before leaving the device)."""
        opt.sync_step_count()
        return {"step": opt.step_count, **{key: {k: self.sel(v, r).detach().cpu() for k, v in
                                                 getattr(opt, key).items()} for key in ("exp_avg", "exp_avg_sq")}}

    def state_dict(self, r: int = 0) -> dict:
        """The checkpoint of seed r: the single-run format, so a block resumes from single-run
        checkpoints and vice versa."""
        rec = self.records[r]
        return {
            "format": CHECKPOINT_FORMAT, "config": self.cfg_of(r), "seed": rec.seed,
            "pre_epochs_done": self.pre_epochs_done, "epochs_done": self.epochs_done,
            "params": {k: self.sel(v, r).detach().cpu() for k, v in self.params.items()},
            "feedback": {k: self.sel(v, r).detach().cpu() for k, v in self.feedback.items()},
            "fwd_opt": self._opt_state(self.fwd_opt, r),
            "fb_opt": self._opt_state(self.fb_opt, r) if self.fb_opt is not None else None,
            "generators": {k: self.gen(k, r).get_state() for k in self.gens},
            "metrics": rec.metrics, "elapsed": self.elapsed, "status": rec.status,
            "message": rec.message, "fb_steps": self.fb_steps, "steps": self.steps,
            "alignment": rec.alignment, "damping": rec.damping, "damping_paired": rec.damping_paired,
            "summary": rec.summary, "step_paths": sorted(self.step_paths),
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
        # checkpoints older than the field were written by eager processes (CPU) or CUDA-graph ones (not told
        # apart then: both compute the same mathematics)
        self.step_paths |= set(state.get("step_paths", ["eager"] if state["fb_steps"] or state["steps"] else []))
        rec = self.records[r]
        for key in ("metrics", "status", "message", "alignment", "damping"):
            setattr(rec, key, state[key] if state[key] is not None else [])
        rec.damping_paired = state.get("damping_paired") or []  # (checkpoints older than the paired search)
        rec.summary = state.get("summary") if rec.status != "running" else None


def build_run(cfg: dict, seeds: list[int], data: DataSplits, device: torch.device, loss: str = "cross_entropy",
              replicas: bool = False, fast: bool = False, replica_cfgs: list[dict] | None = None) -> Run:
    """A fresh run of ``cfg`` for ``seeds`` (one seed, or several as replicas when ``replicas``): the
    seeds' generators, the network, its initial parameters and feedback weights (stream ``init``) and
    both optimisers.  ``fast``: capturable optimisers (CUDA-graph steps).  ``replica_cfgs``: one
    configuration per replica, differing from ``cfg`` only in continuous hyperparameters
    (:data:`tp.training.trials.PER_REPLICA_KEYS`), which then become per-replica tensors of the rule and
    per-replica values of both optimisers."""
    dtype = dtype_of(cfg)
    cfgs = replica_cfgs or [cfg]
    per_seed = [run_generators(s, device) for s in seeds]
    gens = {k: [g[k] for g in per_seed] for k in GENERATOR_STREAMS} if replicas else per_seed[0]
    rule = make_rule(cfg["rule"], **_per_replica([rule_hyperparameters(c) for c in cfgs], dtype, device))
    # the MLP (docs/algorithms.md#the-fully-connected-networks) or the CNN (docs/algorithms.md#the-cnn-table-3) of
    # cfg["model"]
    net = build_model(cfg, rule, data, loss, dtype)
    params = {k: v.to(device) for k, v in net.init_params(gens["init"], init=cfg["initialization"]).items()}
    feedback = {k: v.to(device) for k, v in rule.init_feedback(net, gens["init"]).items()}

    # forward optimiser: lr/β when normalize_lr (docs/algorithms.md#normalised-learning-rates), per layer for the CNN
    # (docs/algorithms.md#cnn-optimisers-and-schedule); Frozen-MNIST trains W1, b1 only
    # (docs/algorithms.md#frozen-mnist)
    names = trained_parameters(cfg, params)
    settings = [forward_optimizer_settings(c, names) for c in cfgs]
    fwd = _per_replica([{"lr": _by_name(lr, names), "eps": _by_name(eps, names), "beta1": c["beta1"],
                         "beta2": c["beta2"], "wd": c["forward_wd"]} for (lr, eps), c in zip(settings, cfgs)])
    fwd_opt = Adam({k: params[k] for k in names}, lr=fwd["lr"], betas=(fwd["beta1"], fwd["beta2"]),
                   eps=fwd["eps"], weight_decay=fwd["wd"], capturable=fast)
    fb_opt = None
    trainable = rule.trainable_feedback(feedback)
    if trainable:
        fb = _per_replica([{k: c[k] for k in ("lr_fb", "beta1_fb", "beta2_fb", "epsilon_fb", "feedback_wd")}
                           for c in cfgs])
        fb_opt = Adam({k: feedback[k] for k in trainable}, lr=fb["lr_fb"], betas=(fb["beta1_fb"], fb["beta2_fb"]),
                      eps=fb["epsilon_fb"], weight_decay=fb["feedback_wd"], capturable=fast)
    records = [Record(s, None, cfg=c) for s, c in zip(seeds, replica_cfgs or [None] * len(seeds))]
    return Run(cfg, records, len(seeds) if replicas else None, device, data, net, rule,
               params, feedback, fwd_opt, fb_opt, gens, ctx=StepContext(fast=fast))


def _by_name(value, names) -> dict:
    return dict(value) if isinstance(value, Mapping) else {k: value for k in names}


def _per_replica(values: list[dict], dtype=None, device=None) -> dict:
    """Merge one dict of settings per replica: a value shared by every replica stays as it is; one that
    differs becomes the list of the replicas' values (optimiser settings) or, given a dtype, a tensor (R,)
    on ``device`` (rule hyperparameters); nested dicts (per-parameter rates) merge key by key."""
    out = {}
    for key in values[0]:
        column = [v[key] for v in values]
        if isinstance(column[0], Mapping):
            out[key] = _per_replica(column, dtype, device)
        elif all(c == column[0] for c in column):
            out[key] = column[0]
        else:
            out[key] = column if dtype is None else torch.tensor(column, dtype=dtype, device=device)
    return out
