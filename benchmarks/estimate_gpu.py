"""Estimate the device-hours of the full default reproduction from times measured on one GPU.

Inputs: ``step_speed.csv`` of ``benchmarks/step_speed.py`` (per-step times of every method and architecture,
eager and CUDA graph, 1 and R seeds; evaluation of 15,000 samples) and ``epochs.csv`` of
``benchmarks/gpu_checks.sh`` (measured wall times of real training runs: alignment epochs and damping
searches).  Method of estimation, per training job of the default DAG (config/config.yaml, ``seed_block``):

* a run or block does ``epochs_fb`` pre-training epochs of N_b feedback-only steps, then ``epochs`` epochs
  of N_b training steps + ``extra_fb_epochs`` · N_b feedback-only steps + one evaluation of the validation
  and test sets (N_b = ⌈N_train/128⌉; 55,000/45,000 training samples with a validation split, else
  60,000/50,000): ``epochs_fb·N_b·t_fb + epochs·(N_b·(t_step + extra_fb_epochs·t_fb) + t_eval)``;
* the pipeline's configuration ``epochs``/``overrides`` are not applied (the default reproduction has none);
* t_step, t_fb: the CUDA-graph step of the configuration's method on its architecture (MNIST-shaped
  784-256×5-10 for MNIST, Frozen-MNIST and Fashion-MNIST; 3072-1024×3-10 for CIFAR-10; the CNN), float64
  (the BP/DFA configurations in float32 are counted at their float64 time), with R = ``seed_block`` seeds
  per process for the MLP table cells and R = 1 for the CNN, alignment and damping runs; the variants map
  to the measured step of their rule (``-extrafb`` and ``dtp-pretrained`` share their base rule's step);
* t_eval: the measured evaluation of 15,000 samples, scaled to the split's size;
* alignment runs: the same plus, per logged minibatch (every ``log_interval``-th), the measured alignment
  overhead of the architecture (the BP and damped-GNT references and the eager logging step, independent
  of the method): (measured wall time of an alignment epoch of DDTP-linear − this formula's epoch) / logged
  minibatches per epoch;
* damping searches: pre-training and 3 logged epochs as above, then the search: 8 dampings × the logged
  minibatches of an epoch, each costing one logged minibatch (forward update + GNT reference, eager).

    python benchmarks/estimate_gpu.py --steps step_speed.csv --epochs epochs.csv [--csv estimate.csv]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from estimate_reproduction import job_seconds, write_csv  # noqa: E402  (the same formula as the CPU estimate)

from tp.config import available_configs, resolve_config  # noqa: E402
from tp.rules import REGISTRY  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCH = {"mnist": "mnist", "frozen-mnist": "mnist", "fashion-mnist": "mnist", "cifar10": "cifar10",
        "cifar10-cnn": "cifar10-cnn"}
TRAIN_SIZE = {"mnist": 60000, "cifar10": 50000, "cifar10-cnn": 50000}
ALIAS = {"ddtp-rhl-extrafb": "ddtp-rhl", "ddtp-rhl-rec-extrafb": "ddtp-rhl-rec", "dtp-pretrained": "dtp"}


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


class Steps:
    """Per-step seconds from step_speed.csv: (method, arch, R, kind) -> s of the CUDA-graph path
    (``cnn_path`` for the CNN: the row label of the convolution the runs use)."""

    def __init__(self, rows: list[dict], cnn_path: str = "graph"):
        self.t = {}
        for r in rows:
            want = cnn_path if r["arch"] == "cifar10-cnn" and r["kind"] != "eval" else "graph"
            if r["ms_step"] and (r["path"] == want or r["kind"] == "eval"):
                self.t[(r["method"], r["arch"], int(r["R"]), r["kind"])] = float(r["ms_step"]) / 1e3

    def step(self, method: str, arch: str, R: int, kind: str) -> float:
        m = ALIAS.get(method, method)
        try:
            return self.t[(m, arch, R, kind)]
        except KeyError:
            raise SystemExit(f"step_speed.csv has no {kind} step of {m} on {arch} with R={R}") from None

    def eval15k(self, arch: str, R: int) -> float:
        return self.t[("evaluate-15k", arch, R, "eval")]


def logged_steps(cfg: dict, arch: str) -> int:
    """Minibatches per epoch on which an alignment run logs (and a damping search evaluates)."""
    n_train = TRAIN_SIZE[arch] - (0 if cfg["no_val_set"] else 5000)
    return math.ceil(math.ceil(n_train / cfg["batch_size"]) / cfg["log_interval"])


def run_seconds(cfg: dict, steps: Steps, arch: str, R: int, epochs: int | None = None) -> tuple[float, float]:
    """(seconds of the whole run, seconds of one training epoch) by the formula of the docstring."""
    trains_fb = REGISTRY[cfg["rule"]].trains_feedback
    return job_seconds(cfg, TRAIN_SIZE[arch], steps.step(cfg["method"], arch, R, "train"),
                       steps.step(cfg["method"], arch, R, "feedback") if trains_fb else 0.0,
                       steps.eval15k(arch, R), epochs)


def alignment_overheads(measured: list[dict], steps: Steps) -> tuple[dict[str, float], list[str]]:
    """Seconds of alignment overhead per logged minibatch, by architecture (the BP and damped-GNT references,
    the eager logging step), from the measured alignment epochs of DDTP-linear (``epochs.csv`` rows); an MLP
    architecture without a measurement takes the measured MLP one (the overhead is launch-bound on a GPU: J_i
    has only n_L = 10 rows), said in the notes."""
    per_logged = {}
    for r in measured:
        if r.get("method") == "ddtp-linear" and r.get("tuning") == "alignment" and r["file"].startswith("align"):
            arch = ARCH[r["dataset"]]
            cfg = resolve_config("ddtp-linear", r["dataset"], "alignment")
            per_logged[arch] = (float(r["s_epoch"]) - run_seconds(cfg, steps, arch, 1)[1]) / logged_steps(cfg, arch)
    notes = []
    for arch in ("mnist", "cifar10"):
        if arch not in per_logged and "mnist" in per_logged:
            per_logged[arch] = per_logged["mnist"]
            notes.append(f"{arch}: alignment overhead per logged step taken from MNIST (not measured)")
    return per_logged, notes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", required=True, help="step_speed.csv")
    p.add_argument("--epochs", required=True, help="epochs.csv of gpu_checks.sh (alignment, damping runs)")
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--cnn-path", default="graph",
                   help="step_speed.csv path label of the CNN rows with the convolution the runs use")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    steps = Steps(read_csv(Path(args.steps)), args.cnn_path)
    measured = read_csv(Path(args.epochs))
    pipeline = yaml.safe_load(Path(args.config).read_text())
    seeds = len(pipeline["seeds"])
    block = pipeline.get("seed_block") or 1
    block = 10 if block == "auto" else int(block)  # auto: 10 seeds a block where the jobs get a GPU
    have = available_configs()
    rows = []

    def add(kind, tuning, method, dataset, jobs, R, seconds):
        rows.append({"kind": kind, "tuning": tuning, "method": method, "dataset": dataset, "processes": jobs,
                     "seeds_per_process": R, "h_per_process": seconds / 3600, "h_total": jobs * seconds / 3600})

    cells = sorted({(s["tuning"], m, d) for s in pipeline["tables"].values() for m in s["rows"]
                    for d in s["columns"] if s["tuning"] in have.get((d, m), [])})
    for tuning, method, dataset in cells:
        cfg = resolve_config(method, dataset, tuning)
        arch = ARCH[dataset]
        size = block if arch != "cifar10-cnn" and block > 1 else 1
        chunks = [min(size, seeds - k) for k in range(0, seeds, size)]  # the pipeline's blocks (last smaller)
        for R in sorted(set(chunks)):
            add("table", tuning, method, dataset, chunks.count(R), R, run_seconds(cfg, steps, arch, R)[0])

    per_logged, notes = alignment_overheads(measured, steps)
    align = pipeline.get("alignment") or {}
    for dataset in align.get("datasets", []):
        for method in align.get("methods", []):
            if "alignment" not in have.get((dataset, method), []):
                continue
            cfg = resolve_config(method, dataset, "alignment")
            arch = ARCH[dataset]
            t_log = per_logged.get(arch, math.nan)
            total, _ = run_seconds(cfg, steps, arch, 1)
            add("alignment", "alignment", method, dataset, 1, 1,
                total + cfg["epochs"] * logged_steps(cfg, arch) * t_log)
            # damping search: pre-training + 3 epochs, then 8 dampings × the logged minibatches (eager)
            pre3, _ = run_seconds(cfg, steps, arch, 1, epochs=3)
            add("damping", "damping", method, dataset, 1, 1,
                pre3 + 3 * logged_steps(cfg, arch) * t_log + 8 * logged_steps(cfg, arch) * t_log)
    total = sum(r["h_total"] for r in rows)
    by_kind = {k: sum(r["h_total"] for r in rows if r["kind"] == k) for k in ("table", "alignment", "damping")}
    print(f"{'kind':<10}{'tuning':<10}{'method':<22}{'dataset':<14}{'procs':>6}{'R':>4}{'h/proc':>9}{'h':>9}")
    for r in rows:
        print(f"{r['kind']:<10}{r['tuning']:<10}{r['method']:<22}{r['dataset']:<14}{r['processes']:>6}"
              f"{r['seeds_per_process']:>4}{r['h_per_process']:>9.3f}{r['h_total']:>9.3f}")
    print("alignment overhead per logged minibatch (ms): " + ", ".join(f"{k} {1e3 * v:.2f}"
                                                                    for k, v in per_logged.items()))
    for note in notes:
        print("note: " + note)
    print("device-hours: " + ", ".join(f"{k} {v:.2f}" for k, v in by_kind.items()) + f"; total {total:.2f}")
    if args.csv:
        write_csv(args.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
