"""Time one minibatch step of every rule (forward update + feedback gradients, nothing applied).

Default shapes: the MNIST network of docs/algorithms.md#the-fully-connected-networks (784 → 256 ×5 → 10), batch 128,
float64.  Prints a table (median milliseconds over ``--steps`` steps after ``--warmup``, and the ratio to ``bp``) and
optionally writes it as CSV.

    python benchmarks/rule_step.py                       # CPU, all rules
    python benchmarks/rule_step.py --device cuda --steps 200 --csv bench.csv
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time

import torch

import tp

# hyperparameters of the MNIST `test` configurations (values irrelevant for timing, kept realistic)
HP = {
    "bp": {},
    "dfa": {},
    "dtp": {"target_stepsize": 0.2195, "sigma": 0.08372},
    "dtpdrl": {"target_stepsize": 0.06859, "sigma": 0.05688},
    "ddtp-linear": {"target_stepsize": 0.06097, "sigma": 0.09075},
    "ddtp-rhl": {"target_stepsize": 0.04352, "sigma": 0.04162, "size_hidden_fb": 1024},
    "ddtp-rhl-rec": {"target_stepsize": 0.0137, "sigma": 0.0572, "size_hidden_fb": 1024},
    "ddtp-control": {"target_stepsize": 0.09417, "sigma": 0.00872},
    "gnt": {"gn_damping": 0.0},
}


def time_rule(name: str, sizes, batch: int, dtype, device, steps: int, warmup: int) -> float:
    rule = tp.make_rule(name, **HP[name])
    net = rule.build_network(sizes, dtype=dtype)
    g = torch.Generator(device=device).manual_seed(0)
    params = net.init_params(g, device=device)
    fb = rule.init_feedback(net, g, device=device)
    x = torch.randn(batch, sizes[0], dtype=dtype, device=device, generator=g)
    y = torch.randint(0, sizes[-1], (batch,), device=device, generator=g)
    times = []
    for k in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        rule.step(net, params, fb, x, y, generator=g)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mlp_rules = tp.rules.rules_for_model("mlp")  # the rules that train the MLP (all of them)
    p.add_argument("--rules", nargs="*", default=mlp_rules, choices=mlp_rules)
    p.add_argument("--sizes", type=int, nargs="+", default=[784] + [256] * 5 + [10])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    # TF32 off by hand, not through tp.core.runtime: this benchmark also times older code versions
    # (benchmarks/cpu_throughput.py --code REV) that predate that module
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# one minibatch step (forward update + feedback gradients); sizes {args.sizes}, batch {args.batch}, "
          f"{args.dtype}, {device} ({where}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps")
    rows = []
    for name in args.rules:
        ms = time_rule(name, args.sizes, args.batch, dtype, device, args.steps, args.warmup)
        rows.append({"rule": name, "ms_per_step": ms})
    bp = next((r["ms_per_step"] for r in rows if r["rule"] == "bp"), None)
    print(f"{'rule':<14}{'ms/step':>10}{'× bp':>8}")
    for r in rows:
        r["ratio_to_bp"] = r["ms_per_step"] / bp if bp else float("nan")
        print(f"{r['rule']:<14}{r['ms_per_step']:>10.2f}{r['ratio_to_bp']:>8.2f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["rule", "ms_per_step", "ratio_to_bp"])
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
