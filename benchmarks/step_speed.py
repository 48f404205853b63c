"""Time per minibatch step of the training loop, per method and architecture, eager vs CUDA graph, one seed
and R seeds trained together.

For each (method, architecture) with an official configuration this measures the step the training loop
runs (``tp.training.train_minibatch``: minibatch gather, forward pass, targets and forward update, feedback
step with fresh noise, both Adam steps, running sums) and, for rules that train their feedback, the
feedback-only step of pre-training and extra feedback epochs (``tp.training.feedback_minibatch``):

* ``path``: ``eager`` (the reference) or ``graph`` (the step captured as one CUDA graph, :mod:`tp.core.fast`;
  CUDA only); for the CNN also ``graph-gemm``, the graphed step with the im2col GEMM convolution
  (:func:`tp.nets.cnn.conv2d_gemm`, opt-in) instead of ``F.conv2d`` (cuDNN);
* ``R``: 1 (a single run, no replica dimension) and ``--replicas`` seeds together (MLPs; the CNN has no
  replica dimension);
* ``ms_step``: median over ``--blocks`` timed blocks of ``--block`` consecutive steps after warm-up
  (synchronised wall clock, so a block measures throughput including launch gaps); ``ms_seed_step`` =
  ms_step / R;
* ``gflop``: matrix-product FLOPs of one step (``torch.utils.flop_counter``), and ``floor_ms`` = those FLOPs
  over the measured dense GEMM rate of the device in the run's precision (the arithmetic floor);
* ``official_ms``: the per-step time of the official implementation on an H200 (measured for the project),
  and the speed-up;
* ``graph_vs_eager``: for graph rows, the largest relative difference of all parameters after
  ``--check-steps`` steps between the graphed run and an eager run of the same code on the same minibatches
  (the CUDA-graph path is tested against the eager path here, on the GPU); ``vs_reference`` the same
  against the plain eager reference (plain Adam: equal up to rounding).

Also timed: evaluation of 15,000 samples per architecture (for the reproduction estimate), and a whole-step
CUDA-graph BP step written with ``torch.nn`` + autograd + ``torch.optim.Adam(capturable=True)``, the floor
the project's speed goals name for BP and DFA.

    python benchmarks/step_speed.py --device cpu --blocks 3 --block 3          # anyone, small
    python benchmarks/step_speed.py --device cuda --csv step_speed.csv         # the GPU table
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tp.config import available_configs, resolve_config  # noqa: E402
from tp.data import DataSplits  # noqa: E402
from tp.rules import REGISTRY  # noqa: E402
from tp.core.runtime import resolve_device  # noqa: E402
from tp.training import (FEEDBACK_SUMS, TRAIN_SUMS, build_run, captured_step, epoch_sums,  # noqa: E402
                         evaluate, feedback_minibatch, train_minibatch)

METHODS = ["bp", "dfa", "dtp", "dtpdrl", "ddtp-linear", "ddtp-rhl", "ddtp-rhl-rec", "ddtp-control"]
ARCHS = {"mnist": (784,), "cifar10": (3072,), "cifar10-cnn": (3, 32, 32)}
#: official implementation, one H200, float64, batch 128, ms per step: (combined step, feedback-only step)
OFFICIAL_H200 = {
    ("bp", "mnist"): (3.5, None), ("dfa", "mnist"): (5.0, None), ("dtp", "mnist"): (10.3, None),
    ("ddtp-linear", "mnist"): (14.8, 10.0), ("dtpdrl", "mnist"): (14.5, 10.4), ("ddtp-rhl", "mnist"): (15.3, 9.1),
    ("ddtp-control", "mnist"): (12.8, 7.8), ("ddtp-linear", "cifar10"): (9.5, 5.9), ("bp", "cifar10"): (2.7, None),
    ("bp", "cifar10-cnn"): (10.2, None), ("ddtp-linear", "cifar10-cnn"): (12.3, 7.6),
}
COLUMNS = ["method", "arch", "precision", "R", "path", "kind", "ms_step", "ms_seed_step", "gflop", "floor_ms",
           "official_ms", "speedup_vs_official", "graph_vs_eager", "vs_reference"]


def quiet(msg):
    pass


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(method: str, arch: str) -> dict | None:
    """The method's ``test`` configuration on the architecture (or its ``-extrafb`` variant's: the same
    rule and step), in float64 (the paper's TP configurations; BP/DFA are float32 in some official
    configurations, the official figures are float64)."""
    for slug in (method, f"{method}-extrafb"):
        if "test" in available_configs().get((arch, slug), []):
            return resolve_config(slug, arch, "test", {"double_precision": True})
    return None


def synthetic(arch: str, n: int, device, dtype) -> DataSplits:
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((n, *ARCHS[arch]), generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataSplits(x, y, x[:256], y[:256]).to(device)


def make_run(cfg, R: int, data, device, fast: bool, conv: str | None = None):
    seeds = list(range(1, R + 1))
    run = build_run(cfg, seeds, data, device, "cross_entropy", replicas=R > 1, fast=fast)
    if conv is not None:  # the CNN's convolution: cuDNN/CPU kernels ("direct") or im2col GEMM (tp.nets.cnn)
        run.net = dataclasses.replace(run.net, conv=conv)
    return run


def index_stream(R: int, n: int, B: int, count: int, device) -> list[torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(1)
    out = []
    for _ in range(count):
        shape = (B,) if R == 1 else (R, B)
        out.append(torch.randint(0, n, shape, generator=g).to(device))
    return out


def step_fn(run, kind: str, path: str):
    """fn(idx) running one step of ``kind`` on ``path`` (None when the rule has no such step)."""
    if kind == "feedback" and run.fb_opt is None:
        return None
    sums = epoch_sums(run, kind, TRAIN_SUMS if kind == "train" else FEEDBACK_SUMS)
    body = train_minibatch if kind == "train" else feedback_minibatch
    if path == "eager":
        return lambda idx: body(run, idx, sums)

    def graphed(idx):
        step = captured_step(run, kind, idx, sums, print)
        if step is None:
            raise RuntimeError(f"no CUDA graph for the {kind} step (capture failed or not applicable)")
        step(idx)

    return graphed


def time_steps(fn, idxs, device, blocks: int, block: int, warmup: int) -> float:
    for k in range(warmup):
        fn(idxs[k % len(idxs)])
    sync(device)
    times = []
    k = 0
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(block):
            fn(idxs[k % len(idxs)])
            k += 1
        sync(device)
        times.append((time.perf_counter() - t0) / block)
    return 1e3 * statistics.median(times)


def step_flops(run, kind: str, idx) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    fn = step_fn(run, kind, "eager")
    with FlopCounterMode(display=False) as counter:
        fn(idx)
    return float(counter.get_total_flops())


def gemm_rate(device, dtype) -> float:
    """Measured dense matrix-product rate (FLOP/s) of the device in ``dtype``."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 10 if device.type == "cuda" else 3
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def max_rel_diff(run_a, run_b) -> float:
    worst = 0.0
    for group in ("params", "feedback"):
        for k, a in getattr(run_a, group).items():
            b = getattr(run_b, group)[k]
            worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-300)))
    return worst


def check_graph(cfg, R, data, device, idxs, steps: int) -> tuple[float, float]:
    """(graph vs eager of the same code, graph vs the plain eager reference) after ``steps`` train steps."""
    runs = {name: make_run(cfg, R, data, device, fast) for name, fast in
            (("graph", True), ("eager", True), ("reference", False))}
    fns = {"graph": step_fn(runs["graph"], "train", "graph"), "eager": step_fn(runs["eager"], "train", "eager"),
           "reference": step_fn(runs["reference"], "train", "eager")}
    for k in range(steps):
        for fn in fns.values():
            fn(idxs[k % len(idxs)])
    sync(device)
    return max_rel_diff(runs["graph"], runs["eager"]), max_rel_diff(runs["graph"], runs["reference"])


def autograd_bp_graph_ms(device, blocks, block) -> float | None:
    """A whole-step CUDA-graph BP step with torch.nn, autograd and torch.optim.Adam (MNIST MLP, float64)."""
    if device.type != "cuda":
        return None
    torch.manual_seed(0)
    layers = []
    sizes = [784] + [256] * 5 + [10]
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]).double())
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, capturable=True, foreach=True)
    x = torch.randn(128, 784, dtype=torch.float64, device=device)
    y = torch.randint(0, 10, (128,), device=device)

    def step():
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return time_steps(lambda _: graph.replay(), [None], device, blocks, block, 10)


def environment(device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            env["driver"] = "unknown"
    else:
        env["cpu"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return env


def fmt(v, spec=".3f"):
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--replicas", type=int, default=10, help="R of the multi-seed rows (1: none)")
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--block", type=int, default=10, help="steps per timed block")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--check-steps", type=int, default=30, help="steps of the graph-vs-eager check (0: none)")
    p.add_argument("--paths", default=None, help="eager,graph (default: graph only where CUDA is)")
    p.add_argument("--csv", default=None)
    p.add_argument("--json", default=None, help="also write the environment and the rows as JSON")
    args = p.parse_args(argv)
    device = resolve_device(args.device)  # TF32 off on CUDA
    paths = args.paths.split(",") if args.paths else (["eager", "graph"] if device.type == "cuda" else ["eager"])
    env = environment(device)
    rate = gemm_rate(device, torch.float64)
    env["float64_gemm_tflops"] = round(rate / 1e12, 3)
    print("# " + ", ".join(f"{k}: {v}" for k, v in env.items()), flush=True)
    rows = []
    sink = None
    if args.csv:  # written row by row: a run cut short keeps what it measured
        handle = open(args.csv, "w", newline="")
        handle.write("# " + json.dumps(env) + "\n")
        sink = csv.DictWriter(handle, fieldnames=COLUMNS)
        sink.writeheader()

    def add(row):
        rows.append(row)
        if sink is not None:
            sink.writerow(row)
            handle.flush()
    n = 128 * 40
    for arch in args.archs.split(","):
        data = synthetic(arch, n, device, torch.float64)
        for method in args.methods.split(","):
            cfg = config(method, arch)
            if cfg is None:
                continue
            trains_fb = REGISTRY[cfg["rule"]].trains_feedback
            reps = [1] + ([args.replicas] if args.replicas > 1 and arch != "cifar10-cnn" else [])
            for R in reps:
                idxs = index_stream(R, n, cfg["batch_size"], 64, device)
                flops = {}
                for path in paths + (["graph-gemm"] if arch == "cifar10-cnn" and "graph" in paths else []):
                    # graph-gemm: the CNN's graphed step with the im2col GEMM convolution instead of F.conv2d
                    run = make_run(cfg, R, data, device, fast=path.startswith("graph"),
                                   conv="gemm" if path == "graph-gemm" else None)
                    for kind in ("train", "feedback") if trains_fb else ("train",):
                        if kind not in flops:
                            flops[kind] = step_flops(make_run(cfg, R, data, device, False), kind, idxs[0])
                        fn = step_fn(run, kind, path.split("-")[0])
                        try:
                            ms = time_steps(fn, idxs, device, args.blocks, args.block, args.warmup)
                        except Exception as exc:  # noqa: BLE001 — report and go on with the other rows
                            print(f"FAILED {method} {arch} R={R} {path} {kind}: {type(exc).__name__}: {exc}",
                                  flush=True)
                            continue
                        official = OFFICIAL_H200.get((method, arch), (None, None))[0 if kind == "train" else 1]
                        official = official if device.type == "cuda" else None  # H200 figures: compare on GPUs
                        row = {"method": method, "arch": arch, "precision": "float64", "R": R, "path": path,
                               "kind": kind, "ms_step": ms, "ms_seed_step": ms / R, "gflop": flops[kind] / 1e9,
                               "floor_ms": 1e3 * flops[kind] / rate, "official_ms": official,
                               "speedup_vs_official": official / (ms / R) if official else None,
                               "graph_vs_eager": None, "vs_reference": None}
                        if path == "graph" and kind == "train" and args.check_steps:
                            try:
                                row["graph_vs_eager"], row["vs_reference"] = check_graph(
                                    cfg, R, data, device, idxs, args.check_steps)
                            except Exception as exc:  # noqa: BLE001
                                print(f"FAILED check {method} {arch} R={R}: {type(exc).__name__}: {exc}", flush=True)
                        add(row)
                        print("  ".join(f"{c}={fmt(row[c], '.4g')}" for c in COLUMNS), flush=True)
        # evaluation of 15,000 samples (validation + test of a run), one seed and R seeds
        cfg = config("bp", arch)
        for R in [1] + ([args.replicas] if args.replicas > 1 and arch != "cifar10-cnn" else []):
            run = make_run(cfg, R, data, device, False)
            xe = data.train_x[:n].repeat((3,) + (1,) * (data.train_x.ndim - 1))[:15000]
            ye = data.train_y.repeat(3)[:15000]
            ms = time_steps(lambda _: evaluate(run.net, run.params, xe, ye), [None], device, 3, 1, 1)
            add({"method": "evaluate-15k", "arch": arch, "precision": "float64", "R": R, "path": "eager",
                         "kind": "eval", "ms_step": ms, "ms_seed_step": ms / R, "gflop": None, "floor_ms": None,
                         "official_ms": None, "speedup_vs_official": None, "graph_vs_eager": None,
                         "vs_reference": None})
            print(f"evaluate 15k samples {arch} R={R}: {ms:.2f} ms", flush=True)
    ms = autograd_bp_graph_ms(device, args.blocks, max(args.block, 20))
    if ms is not None:
        add({"method": "bp-autograd-cudagraph", "arch": "mnist", "precision": "float64", "R": 1,
                     "path": "graph", "kind": "train", "ms_step": ms, "ms_seed_step": ms, "gflop": None,
                     "floor_ms": None, "official_ms": 3.5, "speedup_vs_official": 3.5 / ms,
                     "graph_vs_eager": None, "vs_reference": None})
    print()
    print(f"{'method':<22}{'arch':<13}{'R':>3} {'path':<12}{'kind':<9}{'ms/step':>9}{'ms/seed':>9}{'floor':>8}"
          f"{'official':>9}{'speedup':>9}{'graph-eager':>12}{'vs ref':>9}")
    for r in rows:
        print(f"{r['method']:<22}{r['arch']:<13}{r['R']:>3} {r['path']:<12}{r['kind']:<9}{fmt(r['ms_step']):>9}"
              f"{fmt(r['ms_seed_step']):>9}{fmt(r['floor_ms']):>8}{fmt(r['official_ms'], '.1f'):>9}"
              f"{fmt(r['speedup_vs_official'], '.1f'):>9}{fmt(r['graph_vs_eager'], '.1e'):>12}"
              f"{fmt(r['vs_reference'], '.1e'):>9}")
    if sink is not None:
        handle.close()
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
