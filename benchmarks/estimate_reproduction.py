"""Estimate the compute time of the full reproduction from measured per-step times.

For every training job of the pipeline's default matrix (config/config.yaml: tables, seeds) the time is

    epochs_fb · N_b · t_fb  +  epochs · [N_b · (t_step + extra_fb_epochs · t_fb) + t_eval]

with N_b = ⌈N_train / 128⌉ minibatches per epoch (55,000/45,000 with a validation split, 60,000/50,000
without), t_step the measured time of one training minibatch (forward update + feedback gradients + both
Adam steps), t_fb of one feedback-only minibatch, and t_eval of evaluating validation and test sets.
Each (rule, architecture, precision) is timed once on this machine (median of ``--steps`` steps).  The CNN
cells (dataset cifar10-cnn, docs/algorithms.md#the-cnn-table-3) are timed on (128, 3, 32, 32) images with the configured
CNN; their evaluation time is measured on 1,536 images and scaled to the 15,000 validation and test images.

    python benchmarks/estimate_reproduction.py [--device cuda] [--steps 20] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

import tp
from tp.nets.cnn import ConvNet
from tp.config import resolve_config, rule_hyperparameters
from tp.core.optim import Adam
from tp.core.runtime import dtype_of, resolve_device
from tp.training import evaluate

REPO = Path(__file__).resolve().parents[1]
TRAIN_SIZE = {"mnist": 60000, "frozen-mnist": 60000, "fashion-mnist": 60000, "cifar10": 50000, "cifar10-cnn": 50000}
INPUT = {"mnist": 784, "frozen-mnist": 784, "fashion-mnist": 784, "cifar10": 3072, "cifar10-cnn": (3, 32, 32)}


def _median(fn, steps: int, warmup: int, device) -> float:
    times = []
    for k in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_config(cfg: dict, device, steps: int, warmup: int) -> dict[str, float]:
    dtype = dtype_of(cfg)
    rule = tp.make_rule(cfg["rule"], **rule_hyperparameters(cfg))
    if cfg.get("model") == "cnn":
        shape, n_eval = INPUT[cfg["dataset"]], 1536
        net = ConvNet(in_shape=shape, channels=tuple(cfg["conv_channels"]), fc=cfg["size_hidden"],
                      n_out=10, dtype=dtype)
    else:
        sizes = [INPUT[cfg["dataset"]]] + [cfg["size_hidden"]] * cfg["num_hidden"] + [10]
        shape, n_eval = (sizes[0],), 15000
        net = rule.build_network(sizes, dtype=dtype)
    g = torch.Generator(device=device).manual_seed(0)
    params = {k: v.to(device) for k, v in net.init_params(torch.Generator().manual_seed(0)).items()}
    fb = {k: v.to(device) for k, v in rule.init_feedback(net, torch.Generator().manual_seed(1)).items()}
    fwd_opt = Adam(params, lr=1e-6)
    fb_opt = Adam({k: fb[k] for k in rule.trainable_feedback(fb)}, lr=1e-6)
    x = torch.randn(128, *shape, dtype=dtype, device=device, generator=g)
    y = torch.randint(0, 10, (128,), device=device, generator=g)

    def step():
        out = rule.step(net, params, fb, x, y, generator=g if rule.trains_feedback else None)
        if rule.trains_feedback:
            fb_opt.step(out.feedback_grads)
        fwd_opt.step(out.forward_grads)

    def fb_only():
        grads, _ = rule.feedback_gradients(net, params, fb, x, generator=g)
        fb_opt.step(grads)

    x_eval = torch.randn(n_eval, *shape, dtype=dtype, device=device, generator=g)
    y_eval = torch.randint(0, 10, (n_eval,), device=device, generator=g)
    t_eval = _median(lambda: evaluate(net, params, x_eval, y_eval), max(3, steps // 5), 1, device)
    return {"t_step": _median(step, steps, warmup, device),
            "t_fb": _median(fb_only, steps, warmup, device) if rule.trains_feedback else 0.0,
            "t_eval_15k": t_eval * 15000 / n_eval}


def job_seconds(cfg: dict, train_size: int, t_step: float, t_fb: float, t_eval_15k: float,
                epochs: int | None = None) -> tuple[float, float]:
    """(seconds of a run, seconds of one training epoch) by the formula of the module docstring, from the
    per-step times and the evaluation time of 15,000 samples (``epochs``: instead of the configured)."""
    nb = math.ceil((train_size - (0 if cfg["no_val_set"] else 5000)) / cfg["batch_size"])
    if not tp.rules.REGISTRY[cfg["rule"]].trains_feedback:
        t_fb = 0.0
    per_epoch = nb * (t_step + cfg["extra_fb_epochs"] * t_fb) \
        + t_eval_15k * (10000 + (0 if cfg["no_val_set"] else 5000)) / 15000
    return cfg["epochs_fb"] * nb * t_fb + (cfg["epochs"] if epochs is None else epochs) * per_epoch, per_epoch


def write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--csv", default=None)
    p.add_argument("--datasets", nargs="*", default=None, choices=list(TRAIN_SIZE),
                   help="only the cells of these datasets (e.g. cifar10-cnn)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)  # TF32 off on CUDA
    pipeline = yaml.safe_load(Path(args.config).read_text())
    seeds = len(pipeline["seeds"])
    have = tp.config.available_configs()
    cells = sorted({(s["tuning"], m, d) for s in pipeline["tables"].values() for m in s["rows"] for d in s["columns"]
                    if s["tuning"] in have.get((d, m), []) and (args.datasets is None or d in args.datasets)})
    cache: dict = {}
    rows = []
    for tuning, method, dataset in cells:
        cfg = resolve_config(method, dataset, tuning)
        key = (cfg["rule"], INPUT[dataset], cfg["double_precision"], cfg["num_hidden"], cfg["size_hidden"],
               cfg["size_hidden_fb"], str(cfg["conv_channels"]))
        if key not in cache:
            cache[key] = time_config(cfg, device, args.steps, args.warmup)
        t = cache[key]
        run_s, per_epoch = job_seconds(cfg, TRAIN_SIZE[dataset], t["t_step"], t["t_fb"], t["t_eval_15k"])
        rows.append({"tuning": tuning, "method": method, "dataset": dataset, "precision":
                     "float64" if cfg["double_precision"] else "float32", "ms_step": 1e3 * t["t_step"],
                     "ms_fb_step": 1e3 * t["t_fb"], "s_per_epoch": per_epoch, "epochs": cfg["epochs"],
                     "h_per_run": run_s / 3600, "h_all_seeds": seeds * run_s / 3600})
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# reproduction estimate on {device} ({where}), torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; {len(cells)} cells × {seeds} seeds = {len(cells) * seeds} training jobs")
    print(f"{'tuning':<6} {'method':<22} {'dataset':<14} {'prec':<8} {'ms/step':>8} {'ms/fb':>7} {'s/epoch':>8} "
          f"{'h/run':>7} {'h/seeds':>8}")
    for r in rows:
        print(f"{r['tuning']:<6} {r['method']:<22} {r['dataset']:<14} {r['precision']:<8} {r['ms_step']:>8.2f} "
              f"{r['ms_fb_step']:>7.2f} {r['s_per_epoch']:>8.1f} {r['h_per_run']:>7.2f} {r['h_all_seeds']:>8.1f}")
    total = sum(r["h_all_seeds"] for r in rows)
    print(f"total: {total:.1f} hours of sequential compute on this device")
    if args.csv:
        write_csv(args.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
