"""Do two code versions write the same outputs?  The check a restructuring must pass ("change no
numbers"): each scenario runs at every ``--code`` (a git revision, checked out as a detached worktree, or a
checkout folder) through the command line, which both versions share, and every file it writes is compared
byte for byte, except what legitimately differs between two runs of the same code: wall times
(``wall_time_s``, the ``seconds`` column, ``elapsed``), the code version, timestamps and the names of the
temporary folders.  Checkpoints (binary, with wall times) are not kept.

Scenarios (synthetic data of MNIST's shape, a small network, a few epochs; minutes on 2 cores):

* ``single``: one run (``tp train --seed 1``);
* ``block``: a seed block (``tp train --seeds 1-3``, seeds as replicas);
* ``trials``: a block of three trials (``tp.training.train_trials``: configurations that differ in lr, β and σ;
  through the Python API, as a search's sampler may change between versions);
* ``resume``: a run killed (SIGKILL) after its first epoch's checkpoint, then run again to its end;
* ``alignment``: alignment logging (``alignment.csv``, docs/algorithms.md#when-the-angles-are-measured);
* ``damping``: the damping search (``damping_search.csv``, docs/algorithms.md#the-damping-search-table-s7);
* ``smoke``: the pipeline on synthetic data (``snakemake --configfile config/smoke.yaml``: run folders,
  tables, figures' data).

    python benchmarks/same_outputs.py --code 969f181 --code .
    python benchmarks/same_outputs.py --code 969f181 --code . --scenario single --scenario resume

Prints one line per scenario (same / the files that differ, with the first differing line) and exits 1 if
any differs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from cpu_throughput import checkout  # noqa: E402  (a revision as a detached worktree, removed at the end)

SMALL = ["--source", "synthetic", "--set", "num_hidden=2", "--set", "size_hidden=16", "--set", "epochs_fb=1"]
TRAIN = ["train", "--method", "ddtp-linear", "--dataset", "mnist", "--epochs", "2", *SMALL]
SCENARIOS = {
    "single": [[*TRAIN, "--seed", "1", "--out", "{out}/run"]],
    "block": [[*TRAIN, "--seeds", "1-3", "--out", "{out}/seed{{seed}}"]],
    "trials": "trials",
    "resume": "resume",
    "alignment": [[*TRAIN, "--seed", "2", "--set", "log_alignment=true", "--set", "log_interval=20", "--set",
                   "gn_damping_per_hidden_layer=[1.0, 0.1]", "--out", "{out}/run"]],
    "damping": [[*TRAIN, "--seed", "3", "--epochs", "3", "--set", "gn_damping_hpsearch=true",
                 "--set", "log_interval=20", "--out", "{out}/run"]],
    "smoke": "smoke",
}
#: the trials scenario: keyword arguments both the old (device=...) and the new entry (TrainOptions fields) take
TRIALS = """
import sys
from pathlib import Path
try:
    from tp.training import train_trials
except ImportError:
    from tp.training.trials import train_trials
from tp.config import resolve_config
from tp.data import load_dataset
from tp.training import run_generators
small = dict(num_hidden=2, size_hidden=16, epochs=2, epochs_fb=1)
cfgs = [resolve_config("ddtp-linear", "mnist", "test", dict(small, lr=lr, target_stepsize=b, sigma=s))
        for lr, b, s in [(1e-3, 0.1, 0.05), (3e-4, 0.3, 0.01), (1e-4, 0.03, 0.1)]]
data = load_dataset("mnist", source="synthetic", split_generator=[run_generators(7)["split"] for _ in cfgs])
train_trials(cfgs, data, [7, 7, 7], [Path(sys.argv[1]) / f"trial{r}" for r in range(3)], device="cpu",
             progress=False, log=lambda m: None)
"""
#: what differs between two runs of the same code (masked before comparing)
VOLATILE_KEYS = {"wall_time_s", "code_version", "elapsed", "seconds", "datetime_start", "datetime_complete",
                 "duration", "duration_s", "started", "finished", "time", "date"}
SKIP = {"checkpoint.pt", "study.db", ".tp.lock"}  # binary with wall times; the holder's PID
TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?")


TP = [sys.executable, "-m", "tp.cli"]


def environment(code: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}


def run_scenario(name: str, code: Path, out: Path) -> None:
    out.mkdir(parents=True)
    env = environment(code)
    if SCENARIOS[name] == "smoke":
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml",
                        "--config", f"results={out}/results", "--quiet", "all"], cwd=code, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    if SCENARIOS[name] == "trials":
        subprocess.run([sys.executable, "-c", TRIALS, str(out)], cwd=code, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    if SCENARIOS[name] == "resume":
        args = [*TRAIN, "--epochs", "4", "--seed", "4", "--out", str(out / "run")]
        proc = subprocess.Popen([*TP, *args], cwd=code, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None and not (out / "run" / "checkpoint.pt").exists():
            time.sleep(0.05)
        time.sleep(0.5)  # into the second epoch
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        subprocess.run([*TP, *args], cwd=code, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return
    for args in SCENARIOS[name]:
        subprocess.run([*TP, *[a.format(out=out) for a in args]], cwd=code, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def masked(path: Path, root: Path) -> list[str]:
    """The file's lines with the volatile values blanked and the scenario folder written as ``{out}``."""
    text = path.read_text(errors="replace").replace(str(root), "{out}")
    if path.suffix == ".json":
        def scrub(obj):
            if isinstance(obj, dict):
                return {k: "…" if k in VOLATILE_KEYS else scrub(v) for k, v in obj.items()}
            return [scrub(v) for v in obj] if isinstance(obj, list) else obj
        return json.dumps(scrub(json.loads(text)), indent=1, sort_keys=True).splitlines()
    lines = text.splitlines()
    if path.suffix == ".csv" and lines:
        header = lines[0].split(",")
        drop = {i for i, h in enumerate(header) if h in VOLATILE_KEYS or h.startswith("datetime")}
        lines = [",".join("…" if i in drop else v for i, v in enumerate(line.split(","))) for line in lines]
    return [TIME.sub("<time>", line) for line in lines]


def files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in SKIP and "logs" not in p.parts and ".snakemake" not in p.parts
            and p.suffix not in (".png", ".pdf", ".log")}


def compare(a: Path, b: Path) -> list[str]:
    """The differences between two scenario folders (empty: the same)."""
    fa, fb = files(a), files(b)
    out = [f"only in the first: {k}" for k in sorted(set(fa) - set(fb))]
    out += [f"only in the second: {k}" for k in sorted(set(fb) - set(fa))]
    for key in sorted(set(fa) & set(fb)):
        la, lb = masked(fa[key], a), masked(fb[key], b)
        if la != lb:
            diff = [d for d in difflib.unified_diff(la, lb, lineterm="", n=0) if d[:1] in "+-" and d[:3] not in
                    ("---", "+++")]
            out.append(f"{key}: {diff[0][:150]} | {diff[1][:150] if len(diff) > 1 else ''}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--code", action="append", required=True, help="git revision or checkout folder (twice)")
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="default: all")
    args = p.parse_args(argv)
    if len(args.code) != 2:
        p.error(f"--code twice (the two versions to compare), got {len(args.code)}")
    failed = False
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="same-outputs-") as tmp:
        tmp = Path(tmp)
        codes = [checkout(c, stack, tmp) for c in args.code]
        for name in args.scenario or list(SCENARIOS):
            folders = []
            t0 = time.perf_counter()
            for k, (label, code) in enumerate(codes):
                folder = tmp / "out" / name / str(k)
                run_scenario(name, code, folder)
                folders.append(folder)
            diff = compare(*folders)
            failed |= bool(diff)
            print(f"{name:10s} {'same' if not diff else 'DIFFERENT'}: {len(files(folders[0]))} files "
                  f"({time.perf_counter() - t0:.0f} s; {codes[0][0]} vs {codes[1][0]})", flush=True)
            for line in diff:
                print(f"    {line}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
