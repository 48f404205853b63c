"""CPU throughput of the training jobs: one job with 2 threads against two 1-thread jobs at once, and code
versions compared side by side, on the MNIST network in float64 (issue 19, item 1).

Two measurements, meant for a quiet machine (nothing else running; the campaign paused or finished):

* **steps**: ``benchmarks/rule_step.py`` (one minibatch step of each rule: forward update and feedback
  gradients, median of ``--steps``) for every code version in three modes — ``1x2`` one process with 2
  threads, ``1x1`` one process with 1 thread alone, ``2x1`` two 1-thread processes of the same code at once —
  in an order rotated from round to round, ``--rounds`` times; the table gives the median over the rounds.
  The same benchmark file (this checkout's) runs every code version.
* **jobs**: real ``tp train`` runs of ``--epochs`` epochs on real MNIST, feedback pre-training off
  (``--set epochs_fb=0``), for each of ``--job-methods``: ``1x2`` (the first code version alone, 2 threads)
  and ``2x1`` (two 1-thread jobs at once: the first two code versions side by side, so that both see the same
  machine state, or two jobs of the one version given) — seconds per epoch from each run's ``metrics.csv``.

"per hour" is the work of the whole machine in that mode: steps (or epochs) per hour of every process
together.  Code versions are git revisions (detached worktrees in a temporary folder, removed at the end) or
paths of checkouts.

    python benchmarks/cpu_throughput.py --code HEAD --code d57fa17 --data-root ../shared/data \\
        --csv benchmarks/results/cpu_throughput.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULE_STEP = REPO / "benchmarks" / "rule_step.py"
FIELDS = ["kind", "rule", "code", "mode", "processes", "threads", "unit", "per_process", "per_hour",
          "vs_1x2", "samples"]


def checkout(code: str, stack: ExitStack, tmp: Path) -> tuple[str, Path]:
    """(label, folder) of a code version: a checkout path as it is, or a git revision as a detached worktree."""
    if Path(code).is_dir():
        return code, Path(code).resolve()
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{code}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True)
    if sha.returncode != 0:
        raise SystemExit(f"--code {code}: neither a folder nor a git revision of {REPO}")
    sha = sha.stdout.strip()
    path = tmp / sha[:12]
    subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=REPO, check=True,
                   capture_output=True)
    stack.callback(subprocess.run, ["git", "worktree", "remove", "--force", str(path)], cwd=REPO,
                   capture_output=True)
    return f"{code} ({sha[:12]})", path


def env_for(tree: Path, threads: int) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class JobFailed(RuntimeError):
    pass


def run_together(commands: list[tuple[list[str], dict]]) -> None:
    """Start every command at once and wait for all; JobFailed names a failed command with its output."""
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd, env in commands]
    outs = [p.communicate()[0] for p in procs]
    for p, out, (cmd, _) in zip(procs, outs, commands):
        if p.returncode != 0:
            raise JobFailed(f"failed ({p.returncode}): {' '.join(cmd)}\n{out[-3000:]}")


def step_times(tree: Path, threads: int, copies: int, rules: list[str], steps: int, tmp: Path) -> list[dict]:
    """ms per step of each rule, from ``copies`` processes of rule_step.py run at once (one dict per process)."""
    files = [Path(tempfile.mkstemp(prefix="steps-", suffix=".csv", dir=tmp)[1]) for _ in range(copies)]
    run_together([([sys.executable, str(RULE_STEP), "--threads", str(threads), "--steps", str(steps),
                    "--rules", *rules, "--csv", str(f)], env_for(tree, threads)) for f in files])
    out = []
    for f in files:
        with open(f) as fh:
            out.append({r["rule"]: float(r["ms_per_step"]) for r in csv.DictReader(fh)})
    return out


def epoch_seconds(trees: list[Path], threads: int, method: str, epochs: int, data_root: str, tmp: Path) -> list[float]:
    """Median seconds per epoch of one ``tp train`` job per tree, all run at once."""
    outs = [Path(tempfile.mkdtemp(prefix=f"{method}-", dir=tmp)) / "run" for _ in trees]  # fresh folders
    run_together([([sys.executable, "-m", "tp", "train", "--method", method, "--dataset", "mnist", "--seed", "0",
                    "--epochs", str(epochs), "--set", "epochs_fb=0", "--data-root", data_root, "--out", str(o),
                    "--no-progress"], env_for(t, threads)) for t, o in zip(trees, outs)])
    result = []
    for o in outs:
        with open(o / "metrics.csv") as fh:
            result.append(statistics.median(float(r["seconds"]) for r in csv.DictReader(fh)))
    return result


def measure_jobs(codes, method: str, args, tmp: Path, samples: dict) -> None:
    """1x2: the first code version alone with 2 threads; 2x1: the first two side by side (or two jobs of one)."""
    (label, tree), *rest = codes
    (sec,) = epoch_seconds([tree], 2, method, args.epochs, args.data_root, tmp)
    samples[("job", method, label, "1x2")] = [sec]
    pair = [codes[0], rest[0]] if rest else [codes[0], codes[0]]
    for (label, _), sec in zip(pair, epoch_seconds([t for _, t in pair], 1, method, args.epochs, args.data_root, tmp)):
        samples.setdefault(("job", method, label, "2x1"), []).append(sec)
    print(f"jobs of {method} done", flush=True)


MODES = {"1x2": (1, 2), "1x1": (1, 1), "2x1": (2, 1)}  # processes, threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--code", action="append", default=None, help="git revision or checkout path (repeat; "
                   "default: this checkout)")
    p.add_argument("--rules", nargs="+", default=["bp", "dtpdrl", "ddtp-linear", "ddtp-rhl"])
    p.add_argument("--steps", type=int, default=30, help="timed steps per process (after 5 warm-up steps)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--job-methods", nargs="*", default=["ddtp-linear", "ddtp-rhl"])
    p.add_argument("--epochs", type=int, default=2, help="epochs of each real job")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw (for the real jobs)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = p.parse_args(argv)
    if args.job_methods and not (Path(args.data_root) / "MNIST" / "raw").is_dir():
        p.error(f"--data-root {args.data_root}: no MNIST/raw there (the real jobs need it; or --job-methods "
                "with no value)")
    rows: list[dict] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tp-throughput-")))
        codes = [checkout(c, stack, tmp) for c in (args.code or [str(REPO)])]
        print(f"# {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs; python "
              f"{platform.python_version()}; codes: {', '.join(c for c, _ in codes)}", flush=True)
        samples: dict[tuple, list[float]] = {}
        for rnd in range(args.rounds):
            order = [(m, c) for m in list(MODES)[rnd % 3:] + list(MODES)[:rnd % 3] for c in codes]
            for mode, (label, tree) in order[::-1] if rnd % 2 else order:
                procs, threads = MODES[mode]
                for per in step_times(tree, threads, procs, args.rules, args.steps, tmp):
                    for rule, ms in per.items():
                        samples.setdefault(("step", rule, label, mode), []).append(ms)
            print(f"round {rnd + 1}/{args.rounds} of the step timings done", flush=True)
        for method in args.job_methods:
            try:
                measure_jobs(codes, method, args, tmp, samples)
            except JobFailed as exc:  # the timings so far are kept and printed
                print(f"jobs of {method}: {exc}", file=sys.stderr, flush=True)
    for (kind, rule, label, mode), vals in samples.items():
        procs, threads = MODES[mode]
        per = statistics.median(vals)
        unit = "ms/step" if kind == "step" else "s/epoch"
        scale = 3.6e6 if kind == "step" else 3600.0
        rows.append({"kind": kind, "rule": rule, "code": label, "mode": mode, "processes": procs,
                     "threads": threads, "unit": unit, "per_process": round(per, 3),
                     "per_hour": round(procs * scale / per, 1), "samples": len(vals)})
    for r in rows:
        base = next((b for b in rows if b["kind"] == r["kind"] and b["rule"] == r["rule"]
                     and b["code"] == r["code"] and b["mode"] == "1x2"), None)
        r["vs_1x2"] = round(r["per_hour"] / base["per_hour"], 2) if base else ""
    print(f"{'kind':<5} {'rule':<12} {'code':<26} {'mode':<4} {'per process':>14} {'per hour':>10} {'vs 1x2':>7}")
    for r in rows:
        print(f"{r['kind']:<5} {r['rule']:<12} {r['code'][:26]:<26} {r['mode']:<4} "
              f"{r['per_process']:>9.2f} {r['unit']:<4} {r['per_hour']:>10.1f} {r['vs_1x2']!s:>7}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
