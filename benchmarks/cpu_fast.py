"""Eager against the compiled CPU step (:mod:`tp.training.compiled`), side by side in one process, one thread.

Two parts, both printed as tables (and written as CSV with ``--csv PREFIX``):

* **Steps** (every MLP rule, the MNIST network 784-256×5-10, batch 128, float64, synthetic inputs of MNIST's
  shape): the training minibatch step (``train_minibatch``: gather, forward pass, targets and updates, the
  feedback step with fresh noise, both Adam steps, the running sums) and the feedback-only step, eager and
  compiled, timed in alternating blocks on the same minibatches (so a disturbance hits both paths alike);
  median milliseconds per step (after 20 untimed steps) of wall time and of this process's CPU time;
  ``floor`` = the step's matrix-product FLOPs (``torch.utils.flop_counter``) over the measured one-thread
  1024×1024 float64 GEMM rate (in CPU time, as ``÷floor`` compares the compiled step's CPU time with it);
  ``rel_dev_1`` / ``rel_dev_20`` = the largest relative deviation (max-norm of the difference over max-norm of
  the eager update, per tensor) of the compiled run's parameter, feedback and Adam-moment updates from the eager
  run's after 1 and after 20 steps, ``param_dev_*`` the same of the parameter and feedback values (the
  measure of ``benchmarks/step_speed.py`` for the CUDA-graph path), ``moment_dev_*`` the same of the Adam moments
  (the first moments hold the rule's gradients: docs/pipeline.md, "Numerics versions"), and ``rel_dev_2threads_20`` the same for the eager step at 2 threads (another
  rounding of the same mathematics, for scale); ``compile_s`` the first call (compile and one step);
  ``*_mm_share``: the share of 3 profiled steps' wall time spent in matrix products
  (``aten::mm``/``addmm``/``bmm``), the rest being elementwise work, reductions and overhead.
* **Epochs** (real MNIST, ``--epoch-methods``): one training epoch through ``tp.training.train`` (everything
  an epoch does: shuffling, every minibatch, the extra feedback epoch, evaluation, checkpoint; no feedback
  pre-training), eager and compiled; seconds of the epoch from ``metrics.csv`` less the compile (paid once
  per run), the same in this process's CPU time (less disturbed by other processes; the compile's C++ work
  in Inductor's worker processes is not in it), and the compile seconds.

    python benchmarks/cpu_fast.py --data-root ../shared/data --csv benchmarks/results/cpu_fast
    python benchmarks/cpu_fast.py --methods ddtp-linear --epoch-methods none      # steps of one rule only
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tp.config import resolve_config  # noqa: E402
from tp.data import DataSplits, load_dataset  # noqa: E402
from tp.training import TrainOptions, run_generators, train  # noqa: E402
from tp.training.compiled import CompiledSteps  # noqa: E402
from tp.training.state import build_run  # noqa: E402
from tp.training.steps import (FEEDBACK_SUMS, TRAIN_SUMS, compiled_minibatch, epoch_sums,  # noqa: E402
                               feedback_minibatch, train_minibatch)

METHODS = ["bp", "dfa", "dtp", "dtpdrl", "ddtp-linear", "ddtp-rhl", "ddtp-rhl-rec", "ddtp-control", "ddtp-ggn",
           "ggnt"]
EPOCH_METHODS = ["bp", "ddtp-linear", "dtpdrl", "ddtp-rhl"]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gemm_rate() -> float:
    a, b = (torch.randn(1024, 1024, dtype=torch.float64) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(5):  # CPU time of this process: less disturbed by other processes than the wall clock
        t0 = time.process_time()
        for _ in range(4):
            a @ b
        best = min(best, (time.process_time() - t0) / 4)
    return 2 * 1024 ** 3 / best


def relative(a, b) -> float:
    scale = b.abs().max()
    return float((a - b).abs().max() / scale) if scale > 0 else float((a - b).abs().max())


def tensors(run) -> dict:
    out = {f"p{k}": v for k, v in run.params.items()} | {f"f{k}": v for k, v in run.feedback.items()}
    for name, opt in (("o", run.fwd_opt), ("q", run.fb_opt)):
        if opt is not None:
            out |= {f"{name}m{k}": v for k, v in opt.exp_avg.items()} | {f"{name}v{k}": v for k, v in
                                                                         opt.exp_avg_sq.items()}
    return {k: v.clone() for k, v in out.items()}


def step_rows(method: str, kind: str, blocks: int, block: int, rate: float) -> dict | None:
    cfg = resolve_config(method, "mnist", "test", {"double_precision": True})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 784, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (4096,), generator=g)
    data = DataSplits(x, y, x[:256], y[:256])
    eager, fast, threads2 = (build_run(cfg, [1], data, torch.device("cpu")) for _ in range(3))
    if kind == "feedback" and eager.fb_opt is None:
        return None
    fast.ctx.compiled = CompiledSteps(print)
    keys = TRAIN_SUMS if kind == "train" else FEEDBACK_SUMS
    sums_e, sums_f, sums_2 = (epoch_sums(r, kind, keys) for r in (eager, fast, threads2))
    body = train_minibatch if kind == "train" else feedback_minibatch
    idxs = [torch.randperm(4096, generator=g)[:128] for _ in range(20 + blocks * block)]
    from torch.utils.flop_counter import FlopCounterMode
    before = tensors(eager)

    def deviation(run):
        a, b = tensors(run), tensors(eager)
        return max(relative(a[n] - before[n], b[n] - before[n]) for n in before)

    def param_deviation(run):  # as benchmarks/step_speed.py measures the CUDA-graph path: of the values
        a, b = tensors(run), tensors(eager)
        return max(relative(a[n], b[n]) for n in before if n[0] in "pf")

    def moment_deviation(run):  # of the Adam moments' values: the first moments hold the rule's gradients
        a, b = tensors(run), tensors(eager)
        return max(relative(a[n], b[n]) for n in before if n[0] in "oq")

    with FlopCounterMode(display=False) as counter:
        body(eager, idxs[0], sums_e)
    t0 = time.perf_counter()
    assert compiled_minibatch(fast, kind, idxs[0], sums_f)
    compile_s = time.perf_counter() - t0
    dev, dev2 = {}, {}
    for k in range(20):  # the untimed first 20 steps: deviations after 1 and 20 steps, and of 2 threads
        if k:
            body(eager, idxs[k], sums_e)
            assert compiled_minibatch(fast, kind, idxs[k], sums_f)
        torch.set_num_threads(2)
        body(threads2, idxs[k], sums_2)
        torch.set_num_threads(1)
        if k in (0, 19):
            dev[k + 1], dev2[k + 1] = deviation(fast), deviation(threads2)
            dev[f"p{k + 1}"], dev[f"m{k + 1}"] = param_deviation(fast), moment_deviation(fast)
    times = {"eager": [], "compiled": []}
    cpu = {"eager": [], "compiled": []}
    k = 20
    for _ in range(blocks):
        for path in ("eager", "compiled"):
            w0, c0 = time.perf_counter(), time.process_time()
            for j in range(block):
                if path == "eager":
                    body(eager, idxs[k + j], sums_e)
                else:
                    assert compiled_minibatch(fast, kind, idxs[k + j], sums_f)
            times[path].append((time.perf_counter() - w0) / block)
            cpu[path].append((time.process_time() - c0) / block)
        k += block
    mm_share = {}
    for path in ("eager", "compiled"):  # where the time goes: matrix products against everything else
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for j in range(3):
                if path == "eager":
                    body(eager, idxs[1 + j], sums_e)
                else:
                    assert compiled_minibatch(fast, kind, idxs[1 + j], sums_f)
            total = time.perf_counter() - t0
        mm = sum(e.self_cpu_time_total for e in prof.key_averages()
                 if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"))
        mm_share[path] = mm / 1e6 / total
    ms = {p: 1e3 * statistics.median(v) for p, v in times.items()}
    cms = {p: 1e3 * statistics.median(v) for p, v in cpu.items()}
    floor = 1e3 * counter.get_total_flops() / rate  # against the CPU time of the step (the GEMM rate is too)
    return {"method": method, "kind": kind, "eager_ms": ms["eager"], "compiled_ms": ms["compiled"],
            "speedup": ms["eager"] / ms["compiled"], "eager_cpu_ms": cms["eager"], "compiled_cpu_ms": cms["compiled"],
            "floor_ms": floor, "compiled_x_floor": cms["compiled"] / floor, "compile_s": compile_s,
            "rel_dev_1": dev[1], "rel_dev_20": dev[20], "param_dev_1": dev["p1"], "param_dev_20": dev["p20"],
            "moment_dev_1": dev["m1"], "moment_dev_20": dev["m20"], "rel_dev_2threads_20": dev2[20],
            "eager_mm_share": mm_share["eager"], "compiled_mm_share": mm_share["compiled"]}


def epoch_rows(method: str, root: str) -> list[dict]:
    rows = []
    cfg = resolve_config(method, "mnist", "test", {"epochs": 1, "epochs_fb": 0})
    data = load_dataset("mnist", root, source="real", no_val_set=cfg["no_val_set"],
                        split_generator=run_generators(1)["split"], dtype=torch.float64,
                        device=torch.device("cpu"))
    for path in ("eager", "compiled"):
        lines = []
        with tempfile.TemporaryDirectory() as tmp:
            c0 = time.process_time()
            s = train(cfg, data, 1, Path(tmp) / "run", TrainOptions(fast=path, progress=False, prune=False,
                                                                     log=lines.append))
            cpu_s = time.process_time() - c0
            seconds = float(list(csv.DictReader(open(Path(tmp) / "run" / "metrics.csv")))[0]["seconds"])
        compiles = [m for m in lines if m.startswith("compiled the")]
        compile_s = sum(float(m.split(" in ")[1].split(" s ")[0]) for m in compiles)
        compile_cpu = sum(float(m.split(" (")[1].split(" s CPU")[0]) for m in compiles)
        rows.append({"method": method, "path": s["step_path"], "epoch_s": seconds - compile_s,
                     "compile_s": compile_s, "epoch_cpu_s": cpu_s - compile_cpu, "compile_cpu_s": compile_cpu,
                     "test_error": s["test_error_last"], "log": " | ".join(m for m in lines if "compil" in m)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="*", default=METHODS)
    p.add_argument("--kinds", nargs="*", default=["train", "feedback"])
    p.add_argument("--epoch-methods", nargs="*", default=EPOCH_METHODS)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--block", type=int, default=6)
    p.add_argument("--data-root", default="data")
    p.add_argument("--csv", default=None, metavar="PREFIX", help="write PREFIX_steps.csv and PREFIX_epochs.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rate = gemm_rate()
    print(f"# {cpu_model()}, torch {torch.__version__}, Python {platform.python_version()}, 1 thread, float64; "
          f"GEMM 1024x1024: {rate / 1e9:.1f} GFLOP/s", flush=True)
    rows = []
    for method in args.methods:
        for kind in args.kinds:
            row = step_rows(method, kind, args.blocks, args.block, rate)
            if row is not None:
                rows.append(row)
                print("STEP " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in row.items()), flush=True)
    if rows:
        print(f"\n{'method':<14}{'kind':<10}{'eager':>8}{'compiled':>10}{'×':>6}{'eager cpu':>11}{'comp. cpu':>11}"
              f"{'floor':>8}{'÷floor':>8}{'compile s':>11}{'dev 1':>10}{'dev 20':>10}{'pdev 20':>10}{'mdev 1':>10}{'2 thr 20':>10}{'mm share e/c':>14}")
        for r in rows:
            print(f"{r['method']:<14}{r['kind']:<10}{r['eager_ms']:>8.2f}{r['compiled_ms']:>10.2f}{r['speedup']:>6.2f}"
                  f"{r['eager_cpu_ms']:>11.2f}{r['compiled_cpu_ms']:>11.2f}{r['floor_ms']:>8.2f}"
                  f"{r['compiled_x_floor']:>8.2f}{r['compile_s']:>11.1f}{r['rel_dev_1']:>10.1e}{r['rel_dev_20']:>10.1e}{r['param_dev_20']:>10.1e}"
                  f"{r['moment_dev_1']:>10.1e}{r['rel_dev_2threads_20']:>10.1e}"
                  f"{r['eager_mm_share']:>8.2f}/{r['compiled_mm_share']:.2f}", flush=True)
    erows = []
    for method in [m for m in args.epoch_methods if m != "none"]:
        erows += epoch_rows(method, args.data_root)
        for r in erows[-2:]:
            print("EPOCH " + "  ".join(f"{k}={v}" for k, v in r.items()), flush=True)
    if args.csv:
        for suffix, table in (("steps", rows), ("epochs", erows)):
            if table:
                with open(f"{args.csv}_{suffix}.csv", "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(table[0]))
                    w.writeheader()
                    w.writerows(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
