"""The compiled CPU step (tp.training.compiled) against the eager reference step, float64.

For every MLP rule (one method per rule), two runs of the same seed on the same minibatches: one takes the
eager steps of :mod:`tp.training.steps` (``train_minibatch`` / ``feedback_minibatch``), the other the compiled
ones (``compiled_minibatch``, ``torch.compile`` with Inductor's C++ backend).  After 1 step and after 20 steps
every parameter and feedback value, both Adam moments, the running sums and the counters agree to ≤ 1e-10
relative (max-norm of the difference over max-norm of the eager tensor; the updates, the change since the
start, to 1e-9: see ``RTOL_UPDATE``), and the noise generators are bit-equal: the compiled step draws exactly
what the eager one draws.  Each path's change of every parameter is Adam's update computed from its own
moments (``adam_misfit``): so the rule's gradients, which the first moments hold, agree within 1e-10, and the
larger deviation of the first updates is only Adam's division by √v̂ + ε (docs/speed.md measures both on the
MNIST network).
Tiny networks (2 hidden layers of 16, batch 32) keep each compile short (12 compiles, 10–25 s each on a
2-core CPU).
"""

from __future__ import annotations

import pytest
import torch

from tp.catalog import METHODS
from tp.config import resolve_config
from tp.data import DataSplits, synthetic_classification
from tp.training import TrainOptions, train
from tp.training import compiled as compiled_mod
from tp.training.compiled import CompiledSteps, compiler_missing
from tp.training.state import build_run
from tp.training.steps import (FEEDBACK_SUMS, TRAIN_SUMS, compiled_minibatch, epoch_sums, feedback_minibatch,
                               train_minibatch)

pytestmark = pytest.mark.skipif(compiler_missing() is not None, reason="no C++ compiler for Inductor")

SMALL = {"num_hidden": 2, "size_hidden": 16, "size_hidden_fb": 24, "batch_size": 32, "double_precision": True}
#: one method per MLP rule
METHOD_OF_RULE = {}
for slug, m in METHODS.items():
    METHOD_OF_RULE.setdefault(m.rule, slug)
RTOL = 1e-10
#: the updates themselves (the change of each tensor since the start): Adam divides each gradient entry by
#: √v + ε, so in its first steps an entry near ε (where the rounding of a sum of many terms is large against the
#: entry) moves by a sizeable part of lr on either path, and any reordering of the sums (a compiled kernel, the
#: batched products of a seed block, another CPU's vector width) shows there: measured up to 1.5e-10 (DTPDRL,
#: step 1) on these networks; 1e-9 is the tolerance of the seed blocks (tests/test_replicas.py)
RTOL_UPDATE = 1e-9


def quiet(msg):
    pass


def data() -> DataSplits:
    x, y, tx, ty = synthetic_classification(256, 64, 12, 10, seed=0)
    return DataSplits(x, y, tx, ty)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a − b| / max|b| (0 when both are 0)."""
    scale = b.abs().max()
    diff = (a - b).abs().max()
    return float(diff / scale) if scale > 0 else float(diff)


def state(run) -> dict[str, torch.Tensor]:
    out = {f"param {k}": v.clone() for k, v in run.params.items()}
    out |= {f"feedback {k}": v.clone() for k, v in run.feedback.items()}
    for name, opt in (("fwd", run.fwd_opt), ("fb", run.fb_opt)):
        if opt is not None:
            out |= {f"{name} m {k}": v.clone() for k, v in opt.exp_avg.items()}
            out |= {f"{name} v {k}": v.clone() for k, v in opt.exp_avg_sq.items()}
    return out


def worst(before: dict | None, eager: dict, fast: dict) -> tuple[float, str]:
    """The largest relative deviation of the compiled update (the change from ``before``; None: of the values)
    from the eager one, and where."""
    if before is None:
        rel = {k: relative(fast[k], eager[k]) for k in eager}
    else:
        rel = {k: relative(fast[k] - before[k], eager[k] - before[k]) for k in before}
    k = max(rel, key=rel.get)
    return rel[k], k


def optimisers(run):
    return [(name, opt) for name, opt in (("fwd", run.fwd_opt), ("fb", run.fb_opt)) if opt is not None]


def adam_misfit(run, previous: dict, counts: dict) -> tuple[float, str]:
    """How far this step's change of each parameter is from Adam's update computed, by the formula of
    :class:`tp.core.optim.Adam`, from the moments the run holds after the step: −lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε).
    The largest elementwise |change − formula| over (1e-9 |formula| + 4 ulp of the parameter), and where;
    tensors that did not move (not stepped) are left out.  When both paths take exactly this step, the
    difference of their updates is the difference of their moments carried through the formula: it is
    m/(√v̂ + ε), whose denominator is ε for gradient entries near zero, that turns a 1e-17 rounding difference
    of such an entry into a 1e-9 one of its update in Adam's first steps (the tolerance ``RTOL_UPDATE``)."""
    worst_ratio, where = 0.0, ""
    for name, opt in optimisers(run):
        if opt.step_count == counts[name]:
            continue  # this optimiser did not step (the feedback-only step leaves the forward one)
        t = opt.step_count
        beta1, beta2 = opt.betas
        for k, p in opt.params.items():
            change = p - previous[name][k]
            if not bool(change.any()):
                continue
            denom = opt.exp_avg_sq[k].sqrt() / (1 - beta2 ** t) ** 0.5 + opt.eps[k]
            formula = -opt.lr[k] / (1 - beta1 ** t) * opt.exp_avg[k] / denom
            ulp = torch.finfo(p.dtype).eps * torch.maximum(p.abs(), previous[name][k].abs())
            ratio = float(((change - formula).abs() / (1e-9 * formula.abs() + 4 * ulp + 1e-300)).max())
            if ratio > worst_ratio:
                worst_ratio, where = ratio, f"{name} {k}"
    return worst_ratio, where


def twin_runs(method: str, kind: str):
    cfg = resolve_config(method, "mnist", "test", SMALL)
    d = data()
    eager, fast = (build_run(cfg, [5], d, torch.device("cpu")) for _ in range(2))
    fast.ctx.compiled = CompiledSteps(quiet)
    keys = TRAIN_SUMS if kind == "train" else FEEDBACK_SUMS
    return cfg, eager, fast, epoch_sums(eager, kind, keys), epoch_sums(fast, kind, keys)


#: the training step of every rule; the feedback-only step (the same feedback arithmetic without the targets)
#: of one rule of each feedback family: direct maps (the DDTP rules, DFA) and layer-wise maps (DTP, DTPDRL)
CASES = [(rule, "train") for rule in sorted(METHOD_OF_RULE)] + [("ddtp-linear", "feedback"), ("dtpdrl", "feedback")]


@pytest.mark.parametrize("rule, kind", CASES)
@pytest.mark.slow
def test_compiled_step_equals_eager(rule, kind):
    method = METHOD_OF_RULE[rule]
    cfg, eager, fast, sums_e, sums_f = twin_runs(method, kind)
    if kind == "feedback" and eager.fb_opt is None:
        pytest.skip(f"{method} trains no feedback")
    g = torch.Generator().manual_seed(11)
    before = state(eager)
    assert all(torch.equal(before[k], v) for k, v in state(fast).items())
    step = train_minibatch if kind == "train" else feedback_minibatch
    for k in range(20):
        idx = torch.randperm(eager.data.num_train, generator=g)[: cfg["batch_size"]]
        previous = [({name: {key: p.clone() for key, p in opt.params.items()} for name, opt in optimisers(r)},
                     {name: opt.step_count for name, opt in optimisers(r)}) for r in (eager, fast)]
        step(eager, idx, sums_e)
        assert compiled_minibatch(fast, kind, idx, sums_f), "the compiled step did not run"
        if k in (0, 19):
            for path, r, (params, counts) in (("eager", eager, previous[0]), ("compiled", fast, previous[1])):
                misfit, where = adam_misfit(r, params, counts)
                assert misfit <= 1, f"{method} {kind}, step {k + 1}: the {path} step of {where} is not Adam's " \
                                    f"update from its moments ({misfit:.2g} × the tolerance)"
            dev, where = worst(None, state(eager), state(fast))
            assert dev <= RTOL, f"{method} {kind}, step {k + 1}: {where} deviates {dev:.2e}"
            dev, where = worst(before, state(eager), state(fast))
            assert dev <= RTOL_UPDATE, f"{method} {kind}, step {k + 1}: the update of {where} deviates {dev:.2e}"
            for key in sums_e:
                assert relative(sums_f[key], sums_e[key]) <= RTOL, key
    assert fast.ctx.compiled.steps == 20 and fast.ctx.compiled.compiles == 1 and not fast.ctx.compiled.failed
    for a, b in ((eager.steps, fast.steps), (eager.fb_steps, fast.fb_steps),
                 (eager.fwd_opt.step_count, fast.fwd_opt.step_count)):
        assert a == b
    if eager.fb_opt is not None:
        assert eager.fb_opt.step_count == fast.fb_opt.step_count
    for stream in eager.gens:
        assert torch.equal(eager.gens[stream].get_state(), fast.gens[stream].get_state()), stream


def test_fallback_without_compiler_says_so(monkeypatch, tmp_path):
    """No C++ compiler: ``fast: compiled`` trains eagerly after one line saying why; the summary says eager."""
    monkeypatch.setattr(compiled_mod, "compiler_missing", lambda: "no C++ compiler found (test)")
    lines = []
    cfg = resolve_config("dfa", "mnist", "test", {**SMALL, "epochs": 1})
    s = train(cfg, data(), 1, tmp_path / "run", TrainOptions(fast="compiled", log=lines.append, progress=False))
    notes = [m for m in lines if "compiled CPU step not possible" in m]
    assert len(notes) == 1 and "no C++ compiler found (test)" in notes[0] and s["step_path"] == "eager"


def test_failed_compile_falls_back_once(monkeypatch, tmp_path):
    """A compile that fails (here: a backend that raises) leaves the run as it was and trains on eagerly,
    saying so once; the run equals an eager run of the same seed."""
    def broken(*args, **kwargs):
        def fn(*a, **k):
            raise RuntimeError("backend unavailable (test)")
        return fn

    monkeypatch.setattr(compiled_mod.torch, "compile", broken)
    cfg = resolve_config("ddtp-linear", "mnist", "test", {**SMALL, "epochs": 1, "epochs_fb": 1})
    lines = []
    a = train(cfg, data(), 2, tmp_path / "a", TrainOptions(fast="compiled", log=lines.append, progress=False))
    b = train(cfg, data(), 2, tmp_path / "b", TrainOptions(fast="eager", log=quiet, progress=False))
    assert len([m for m in lines if "running eagerly" in m]) == 1
    assert a["step_path"] == b["step_path"] == "eager"
    assert (a["train_loss_last"], a["test_error_last"]) == (b["train_loss_last"], b["test_error_last"])


def test_auto_compiles_long_runs_only():
    """``fast: auto`` on the CPU compiles runs of ≥ COMPILE_MIN_STEPS steps; shorter runs stay eager."""
    cfg = resolve_config("ddtp-linear", "mnist", "test", SMALL)
    run = build_run(cfg, [1], data(), torch.device("cpu"))
    steps = compiled_mod.planned_steps(run)
    assert steps == 8 * (cfg["epochs_fb"] + cfg["epochs"] * (1 + cfg["extra_fb_epochs"]))
    assert (compiled_mod.compiled_steps(run, "auto", quiet) is None) == (steps < compiled_mod.COMPILE_MIN_STEPS)
    assert compiled_mod.compiled_steps(run, "compiled", quiet) is not None
    assert compiled_mod.compiled_steps(run, "eager", quiet) is None
    assert TrainOptions(fast="auto").compiled and not TrainOptions(fast="eager").compiled
