"""The fast path of the training loop on the CPU: the arithmetic of a minibatch step compiled by
``torch.compile`` (Dynamo + Inductor's C++ backend), the eager step kept as the reference.

On a CPU the eager step of a TP rule is some 850 small ATen calls around its matrix products; about half its
time is elementwise work between the products.  Inductor fuses that work into a few C++ loops and calls the
same BLAS for the products.  What is compiled is exactly the eager step's arithmetic, from the same code:

* the **training step** (:func:`_train_arith`): forward pass, the rule's targets and forward update
  (``rule._forward_update``), the feedback gradients on the same forward pass
  (``rule._feedback_gradients`` with the step's cache), both Adam updates, the loss, accuracy and
  reconstruction-loss values;
* the **feedback-only step** (:func:`_feedback_arith`): forward pass, feedback gradients, feedback Adam.

What stays outside, so that a compiled run draws exactly what an eager one draws and keeps every host value:
the minibatch gather, the feedback noise (``rule._noise``, from the run's own generators, in the same order),
Adam's step counts and bias corrections (computed on the host exactly as :class:`tp.core.optim.Adam` does and passed
in as 0-d tensors, so one compiled graph serves every step), the counters and the running sums.

One graph per (kind, minibatch shape), compiled with ``fullgraph=True`` and static shapes when first met:
the full minibatches only — the last, smaller minibatch of an epoch runs eagerly, as on the CUDA-graph path,
so a run compiles at most two graphs, once per process (Inductor's on-disk cache, ``TORCHINDUCTOR_CACHE_DIR``,
makes a resumed run's compile cheaper).  Where compiling fails (no C++ compiler, an unsupported operation)
the run says so in one line and continues eagerly: nothing was applied before the failure (``fullgraph``
compiles before running).  Block of trials (per-replica Adam), the CNN, alignment-logged minibatches and
``extra_fb_minibatches`` run eagerly.

Equality with the eager step: ``tests/test_compiled.py`` (every MLP rule, float64: values and Adam moments
≤ 1e-10 relative after 1 and after 20 steps, updates ≤ 1e-9, each path's update Adam's from its own moments,
generators bit-equal; docs/pipeline.md, "Numerics versions", on why the updates get 1e-9).
"""

from __future__ import annotations

import math
import os
import shutil
import time
import types
from typing import Callable

import torch
from torch import Tensor

from ..core.replicas import is_per_replica
from ..nets.interface import Forward
from .state import Run

__all__ = ["COMPILE_MIN_STEPS", "compiler_missing", "compilable", "planned_steps", "compiled_steps", "CompiledSteps"]

#: ``fast: auto`` compiles the CPU steps of runs with at least this many minibatch steps: a compile costs
#: 30–130 s of one core (two graphs, the MNIST network), which about 5,000 steps repay; shorter runs (tests,
#: smoke runs on small synthetic data) stay eager.  ``fast: compiled`` compiles whatever the run's length.
COMPILE_MIN_STEPS = 5000


def compiler_missing() -> str | None:
    """Why this machine cannot compile a CPU step (None: it can): Inductor's CPU backend needs a C++ compiler."""
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None and shutil.which("c++") is None and shutil.which("clang++") is None:
        return f"no C++ compiler found ({cxx}, c++, clang++)"
    return None


def compilable(run: Run) -> bool:
    """Whether this run's steps can take the compiled path: the MLP on the CPU, a single run or a block of seeds
    (not of trials: no per-replica hyperparameters)."""
    opts = [o for o in (run.fwd_opt, run.fb_opt) if o is not None]
    return (run.device.type == "cpu" and run.cfg.get("model", "mlp") == "mlp"
            and not any(o.per_replica or o.capturable for o in opts)
            and not any(is_per_replica(v) for v in run.rule.hp.values()))  # blocks of trials: eager (untested)


def planned_steps(run: Run) -> int:
    """Minibatch steps the whole run takes: pre-training, then per epoch its training and extra feedback epochs."""
    cfg = run.cfg
    n = -(-run.data.num_train // cfg["batch_size"])
    fb = run.fb_opt is not None
    return n * ((cfg["epochs_fb"] if fb else 0) + cfg["epochs"] * (1 + (cfg["extra_fb_epochs"] if fb else 0)))


def compiled_steps(run: Run, mode: str, log: Callable[[str], None]) -> "CompiledSteps | None":
    """The run's compiled steps for the fast mode ``mode`` (None: eager).  ``auto`` compiles runs of at least
    :data:`COMPILE_MIN_STEPS` steps; where compiling is impossible the run says so in one line."""
    if mode not in ("auto", "compiled") or not compilable(run):
        return None
    if mode == "auto" and planned_steps(run) < COMPILE_MIN_STEPS:
        return None
    missing = compiler_missing()
    if missing:
        log(f"compiled CPU step not possible: {missing}; running eagerly (fast 'eager')")
        return None
    return CompiledSteps(log)


def _scalars(opt, dtype) -> tuple[Tensor, Tensor] | None:
    """The next Adam step's host values as :class:`tp.core.optim.Adam.step` computes them: (−lr/(1−β₁ᵗ) per
    parameter, √(1−β₂ᵗ)), as float64 0-d tensors; None where a rate overflows the dtype (eager handles it)."""
    beta1, beta2 = opt.betas
    t = opt.step_count + 1
    bias_correction1 = 1 - beta1 ** t
    step = [-opt.lr[k] / bias_correction1 for k in opt.params]
    if any(abs(s) > torch.finfo(dtype).max for s in step):
        return None
    return (torch.tensor(step, dtype=torch.float64),
            torch.tensor(math.sqrt(1 - beta2 ** t), dtype=torch.float64))


def _adam(opt, grads: dict, step_sizes: Tensor, bc2_sqrt: Tensor) -> None:
    """:meth:`tp.core.optim.Adam.step`'s update of every parameter in ``grads``, with the host values as tensors
    (the moments by the same :meth:`tp.core.optim.Adam.moments`)."""
    for j, k in enumerate(opt.params):
        if k not in grads:
            continue
        denom = opt.moments(k, grads[k], bc2_sqrt)
        p = opt.params[k]
        p.add_(step_sizes[j].to(p.dtype) * (opt.exp_avg[k] / denom))  # addcdiv: p + s·(m/denom)


def _train_arith(run: Run, x: Tensor, y: Tensor, noise: dict, fwd_s, fb_s):
    """The arithmetic of :func:`tp.training.steps.train_minibatch` (no hooks, no extra feedback minibatches)."""
    net, rule = run.net, run.rule
    fwd = net.forward(run.params, x)
    result = rule._forward_update(net, run.params, run.feedback, fwd, y)
    acc = net.accuracy(result.output, y) if net.loss == "cross_entropy" else None
    rec = None
    if run.fb_opt is not None:
        grads, losses = rule._feedback_gradients(net, run.params, run.feedback, fwd, noise, result.cache)
        _adam(run.fb_opt, grads, *fb_s)
        rec = sum(losses.values())
    _adam(run.fwd_opt, {k: g for k, g in result.forward_grads.items() if k in run.fwd_opt.params}, *fwd_s)
    return result.loss, acc, rec


def _feedback_arith(run: Run, x: Tensor, noise: dict, fb_s):
    """The arithmetic of :func:`tp.training.steps.feedback_minibatch`."""
    net = run.net
    fwd = net.forward(run.params, x)
    grads, losses = run.rule._feedback_gradients(net, run.params, run.feedback, fwd, noise, {})
    _adam(run.fb_opt, grads, *fb_s)
    return sum(losses.values())


def _noise(run: Run, x: Tensor) -> dict:
    """The step's feedback noise, drawn as the eager step draws it (``rule._noise``: same generators, order
    and shapes; only the shapes of the forward pass are read, so empty tensors stand in for it)."""
    if not run.rule.trains_feedback:
        return {}
    lead = x.shape[:-1]
    h = [torch.empty(*lead, n, dtype=x.dtype, device=x.device) for n in run.net.sizes]
    return run.rule._noise(run.net, Forward([None] * len(h), h), run.gens["noise"], None)


class CompiledSteps:
    """The run's compiled steps, one per (kind, minibatch shape), compiled when first needed.

    ``train(run, x, y)`` / ``feedback(run, x)`` return the step's values (loss, accuracy, reconstruction loss
    / the reconstruction loss) after applying both Adam updates, or None where the step must run eagerly
    (the caller then runs the eager step: nothing was drawn or applied)."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.failed = False
        self.fns: dict = {}
        self.compiles = 0  # graphs compiled in this process (tests: one per kind and shape)
        self.steps = 0  # steps that ran compiled
        self.compile_s = 0.0  # wall seconds of the first call of each graph (its compile and one step)

    def _fn(self, key, arith):
        if key not in self.fns:
            # a fresh code object per run: Dynamo keeps its compiled graphs per code object, with a limit on
            # their number (8), which a process training many runs (tp search, the tests) would otherwise reach
            fresh = types.FunctionType(arith.__code__.replace(), arith.__globals__, arith.__name__)
            self.fns[key] = torch.compile(fresh, fullgraph=True, dynamic=False)
            self.compiles += 1
        return self.fns[key]

    def _call(self, key, arith, run: Run, *args):
        first = key not in self.fns
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = self._fn(key, arith)(run, *args)
            self.steps += 1
            if first:
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                self.compile_s += dt
                self.log(f"compiled the {key[0]} step for minibatches of shape {list(key[1])} in {dt:.1f} s "
                         f"({cpu:.1f} s CPU; once per process)")
            return out
        except Exception as exc:  # noqa: BLE001 — a failed compile falls back to the eager reference
            self.failed = True
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.log(f"compiling the {key[0]} step failed ({type(exc).__name__}: {first[:200]}); "
                     "running eagerly (fast 'eager')")
            return None

    def train(self, run: Run, x: Tensor, y: Tensor):
        if self.failed:
            return None
        fwd_s = _scalars(run.fwd_opt, x.dtype)
        fb_s = _scalars(run.fb_opt, x.dtype) if run.fb_opt is not None else None
        if fwd_s is None or (run.fb_opt is not None and fb_s is None):
            return None
        key = ("train", tuple(x.shape))
        gen_state = _gen_states(run) if key not in self.fns else None
        noise = _noise(run, x)
        out = self._call(key, _train_arith, run, x, y, noise, fwd_s, fb_s)
        if out is None:
            _restore_gens(run, gen_state)
        return out

    def feedback(self, run: Run, x: Tensor):
        if self.failed:
            return None
        fb_s = _scalars(run.fb_opt, x.dtype)
        if fb_s is None:
            return None
        key = ("feedback", tuple(x.shape))
        gen_state = _gen_states(run) if key not in self.fns else None
        noise = _noise(run, x)
        out = self._call(key, _feedback_arith, run, x, noise, fb_s)
        if out is None:
            _restore_gens(run, gen_state)
        return out


def _gen_states(run: Run):
    g = run.gens["noise"]
    return [x.get_state() for x in (g if isinstance(g, (list, tuple)) else [g])]


def _restore_gens(run: Run, states) -> None:
    g = run.gens["noise"]
    for x, s in zip(g if isinstance(g, (list, tuple)) else [g], states):
        x.set_state(s)
