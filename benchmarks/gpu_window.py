"""One prepared GPU window (issue 36): the pending runs, in the campaign's priority order, as seed blocks, many
``tp train`` processes at once on one GPU, the finished run folders packed for the trip back.

Here, before a window (the tree must be committed: the runs record its commit):

    python benchmarks/gpu_window.py stage --data-root ../shared/data   # .gpuwindow/: the data .gz, CODE_VERSION
    python benchmarks/gpu_window.py plan --budget 470                   # the jobs and their estimates

On the lent GPU (the device tool's run, carry [".gpuwindow"], timeout_s about 540):

    bash benchmarks/gpu_window.sh 470      # = python3 benchmarks/gpu_window.py run --budget 470 --out $OUT

Back here: ``python benchmarks/gpu_window.py unpack FOLDER/window.tar.gz`` copies the finished runs into
``results/runs/`` (never over a run already there) and appends the window's row to ``results/campaigns.csv``;
then ``make tables``.

* The plan: ``workflow/scripts/campaign_plan.py``'s order (stages ``table1,table2,alignment`` by default: seed 1 of
  every Table 1 and 2 cell, the Fig. 4 alignment runs, the other seeds, the other alignment runs), its runs
  grouped by cell into blocks of up to ``--block`` seeds (one ``tp train --seeds`` process; on an H200 ten seeds
  of the MNIST network cost about twice one), in the order of each cell's first pending run.
* Estimates: the measured H200 step times (``benchmarks/results/h200_step_speed.csv``, R = 1 or 10 seeds) and
  alignment overheads (``h200_epochs.csv``) through ``estimate_gpu.py``'s formula, plus ``--startup`` seconds;
  times the slowdown the running jobs show (``campaign_speed.SpeedGauge``).  A job starts only when that ends
  before the budget's end less ``--reserve`` (the packing).
* Jobs at once: each level of ``--parallel`` (4, 8, 12) in turn for ``--probe`` seconds (after ``--settle``),
  measuring the estimated work done per second (finished jobs' estimates, running jobs' epochs × their
  estimated epoch time); then the best level for the rest of the window.
* At the budget's end the jobs still running are stopped; ``$OUT/window.tar.gz`` holds ``runs/`` (each finished
  seed's small files, never a checkpoint) and ``window.json``; ``$OUT/jobs.csv`` the per-job timings;
  ``$OUT/window.log`` what happened.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "workflow" / "scripts")]

from campaign import SMALL_FILES, copy_run, record  # noqa: E402  (the CPU campaign's files and record)
from campaign_plan import epochs_of, plan  # noqa: E402
from campaign_speed import SpeedGauge  # noqa: E402

STAGE = REPO / ".gpuwindow"   # the default stage: git-ignored; travels with the device run (carry)
DATA_FILES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}   # the files a window can read (42 MB .gz)
RESULTS = Path("benchmarks/results")


def jobs_of(args) -> list[dict]:
    """The pending runs as jobs (tuning, method, dataset, seeds), in the plan's order, with estimates."""
    import yaml
    from estimate_gpu import ARCH, Steps, alignment_overheads, logged_steps, read_csv, run_seconds

    from tp.config import resolve_config

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ns = argparse.Namespace(stages=args.stages.split(","), datasets=args.datasets.split(","),
                            seeds=args.seeds, default_hours=1.0)
    cells: dict[tuple, list[int]] = {}
    for item in plan(cfg, ns, Path(args.results)):
        if item.run:
            cells.setdefault(item.cell, []).append(int(Path(item.run).name.removeprefix("seed")))
    steps = Steps(read_csv(REPO / RESULTS / "h200_step_speed.csv"))
    per_logged, _ = alignment_overheads(read_csv(REPO / RESULTS / "h200_epochs.csv"), steps)
    jobs = []
    for (tuning, method, dataset), seeds in cells.items():
        run_cfg = resolve_config(method, dataset, tuning)
        epochs = args.epochs or run_cfg["epochs"]
        for k in range(0, len(seeds), args.block):
            block, arch = sorted(seeds[k:k + args.block]), ARCH[dataset]
            total, per_epoch = run_seconds(run_cfg, steps, arch, 1 if len(block) == 1 else 10, epochs)
            if run_cfg.get("log_alignment"):
                total += epochs * logged_steps(run_cfg, arch) * per_logged.get(arch, 0.0)
            jobs.append({"job": len(jobs) + 1, "tuning": tuning, "method": method, "dataset": dataset,
                         "seeds": block, "epochs": epochs + run_cfg.get("epochs_fb", 0),
                         "estimate_s": round(total + args.startup, 1), "epoch_s": per_epoch})
    return jobs[:args.limit] if args.limit else jobs


def command(job: dict, args, out: Path) -> list[str]:
    seeds = job["seeds"]
    return [sys.executable, "-m", "tp", "train", "--method", job["method"], "--dataset", job["dataset"],
            "--tuning", job["tuning"], *(["--seed", str(seeds[0])] if len(seeds) == 1 else
                                         ["--seeds", ",".join(map(str, seeds))]),
            "--device", args.device, "--data-root", str(args.data_root), "--source", args.source, "--no-download",
            "--no-progress", "--out", str(out / "runs" / job["tuning"] / job["method"] / job["dataset"] / "seed{seed}"),
            *(["--epochs", str(args.epochs)] if args.epochs else [])]


def rows_done(job: dict, out: Path) -> int:
    """Training epochs in the metrics.csv of the job's first seed so far."""
    path = out / "runs" / job["tuning"] / job["method"] / job["dataset"] / f"seed{job['seeds'][0]}" / "metrics.csv"
    try:
        return max(0, sum(1 for _ in open(path)) - 1)
    except OSError:
        return 0


def run(args) -> int:
    t0, out = time.time(), Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="gpuwindow-"))
    deadline = t0 + args.budget - args.reserve
    log = open(out / "window.log", "a", buffering=1)

    def say(msg):
        print(line := f"{time.time() - t0:6.1f} s  {msg}", flush=True)
        log.write(line + "\n")

    pending = jobs_of(args)
    say(f"{len(pending)} job(s) planned, budget {args.budget:.0f} s; levels {args.parallel}")
    stage_dir = Path(args.stage)
    code = (stage_dir / "CODE_VERSION").read_text().strip() if (stage_dir / "CODE_VERSION").exists() else None
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **({"TP_CODE_VERSION": code} if code else {})}
    levels, level, probe = list(args.parallel), 0, {"since": t0 + args.settle, "work": 0.0}
    rates: dict[int, float] = {}
    running, done, gauge = {}, [], SpeedGauge()

    def work_done():  # estimated seconds of work done: finished jobs' estimates, running jobs' epochs
        return sum(j["estimate_s"] for j in done if j["status"] == "finished") + sum(
            min(j["estimate_s"], rows_done(j, work) * j["epoch_s"]) for j, _ in running.values())

    while (pending or running) and time.time() < deadline:
        for pid, (job, proc) in list(running.items()):
            if proc.poll() is not None:
                del running[pid]
                job.update(end_s=round(time.time() - t0, 1), rc=proc.returncode,
                           status="finished" if proc.returncode in (0, 3) else "failed")
                done.append(job)
                say(f"job {job['job']} {job['status']} (rc {proc.returncode}) after {job['end_s'] - job['start_s']:.0f} s")
            else:
                gauge.observe(work / "runs" / job["tuning"] / job["method"] / job["dataset"] / f"seed{job['seeds'][0]}",
                              job["estimate_s"] / 3600, job["epochs"])
        now = time.time()
        if level < len(levels) and now >= probe["since"] + args.probe:  # the level's rate, then the next level
            rates[levels[level]] = (work_done() - probe["work"]) / (now - probe["since"])
            say(f"{levels[level]} jobs at once: {rates[levels[level]]:.2f} s of estimated work per second")
            level += 1
            probe = {"since": now + args.settle, "work": None}
        if probe.get("work") is None and now >= probe["since"]:
            probe["work"] = work_done()
        slots = levels[level] if level < len(levels) else max(rates, key=rates.get)
        factor = max(1.0, gauge.factor)
        while len(running) < slots and pending:
            job = next((j for j in pending if time.time() + j["estimate_s"] * factor * args.margin < deadline), None)
            if job is None:
                break
            pending.remove(job)
            job.update(start_s=round(time.time() - t0, 1), at_once=slots, factor=round(factor, 2))
            logfile = open(work / f"job{job['job']}.log", "w")
            proc = subprocess.Popen(command(job, args, work), env=env, cwd=REPO, stdout=logfile,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            running[proc.pid] = (job, proc)
            say(f"start job {job['job']} ({slots} at once): {job['tuning']} {job['method']} {job['dataset']} "
                f"seeds {job['seeds']}, expect {job['estimate_s'] * factor:.0f} s")
        if not running and pending and not any(time.time() + j["estimate_s"] * factor * args.margin < deadline
                                               for j in pending):
            break
        time.sleep(args.poll)
    for job, proc in running.values():
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        job.update(end_s=round(time.time() - t0, 1), rc=proc.returncode, status="stopped")
        done.append(job)
        say(f"stopped job {job['job']} at the budget's end")
    pack(args, out, work, done, pending, rates, t0)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def pack(args, out: Path, work: Path, done: list[dict], pending: list[dict], rates: dict, t0: float) -> None:
    """window.tar.gz (runs/: the small files of every seed with a summary; window.json) and jobs.csv under ``out``."""
    import torch

    from tp.training.records import device_name

    finished = [p.parent for p in work.glob("runs/*/*/*/seed*/summary.json")]
    version = Path(args.stage) / "CODE_VERSION"
    window = {"started": time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)), "minutes": round((time.time() - t0) / 60, 1),
              "commit": version.read_text().strip() if version.exists() else "",
              "command": f"bash benchmarks/gpu_window.sh {args.budget:.0f}",
              "machine": f"{device_name(torch.device(args.device))}, {os.cpu_count()} CPUs",
              "slots": max(rates, key=rates.get) if rates else args.parallel[0], "rates": rates,
              "finished": len(finished), "failed": sum(j["status"] == "failed" for j in done),
              "stopped": sum(j["status"] == "stopped" for j in done), "not_started": len(pending)}
    (work / "window.json").write_text(json.dumps(window, indent=1))
    with tarfile.open(out / "window.tar.gz", "w:gz") as tar:
        tar.add(work / "window.json", "window.json")
        for folder in finished:
            for name in SMALL_FILES:
                if (folder / name).exists():
                    tar.add(folder / name, str((folder / name).relative_to(work)))
    fields = ["job", "tuning", "method", "dataset", "seeds", "epochs", "estimate_s", "at_once", "factor", "start_s",
              "end_s", "rc", "status"]
    with open(out / "jobs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows({**j, "seeds": " ".join(map(str, j["seeds"]))} for j in done + [
            {**j, "status": "not started"} for j in pending])
    print(f"packed {len(finished)} run folder(s) into {out / 'window.tar.gz'}", flush=True)


def unpack(args) -> int:
    """The finished runs of a window's archive into RESULTS/runs (never over one there) and its campaigns.csv row."""
    results = Path(args.results)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(args.archive) as tar:
        tar.extractall(tmp, filter="data")
        window = json.loads((Path(tmp) / "window.json").read_text())
        copied = 0
        for summary in sorted(Path(tmp).glob("runs/*/*/*/seed*/summary.json")):
            run = summary.parent.relative_to(tmp)
            if (results / run / "summary.json").exists():
                print(f"{run}: already in {results}, left as it is")
                continue
            copy_run(summary.parent, results / run)
            copied += 1
    window.pop("rates", None)
    record(results / "campaigns.csv", window)
    print(f"{copied} run(s) copied into {results / 'runs'}; campaigns.csv row appended")
    return 0


def stage(args) -> int:
    """The stage (.gpuwindow/): the data files a window reads and the commit its runs record (a clean tree only)."""
    from tp.training.records import code_version

    stage_dir = Path(args.stage)
    version = code_version(REPO)
    if version.endswith("+dirty") and not args.allow_dirty:
        raise SystemExit("gpu_window stage: the tree has uncommitted changes outside results/; commit them first "
                         "(the runs record the commit), or --allow-dirty for a rehearsal")
    for name, folder in DATA_FILES.items():
        src = Path(args.data_root) / folder / "raw"
        files = sorted(src.glob("*-ubyte.gz"))
        if len(files) != 4:
            raise SystemExit(f"gpu_window stage: {name}: expected the four IDX .gz files in {src}, found {len(files)}")
        (stage_dir / "data" / folder / "raw").mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, stage_dir / "data" / folder / "raw" / f.name)
    (stage_dir / "CODE_VERSION").write_text(version + "\n")
    print(f"staged {stage_dir} (code {version}): carry it with the device run")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", default=str(STAGE), help="the staged folder (data, CODE_VERSION) the device run carries")
    sub = p.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("stage", help="copy the data and the commit into .gpuwindow/ (here, before a window)")
    s.add_argument("--data-root", required=True)
    s.add_argument("--allow-dirty", action="store_true")
    u = sub.add_parser("unpack", help="copy a window's finished runs into RESULTS/runs")
    u.add_argument("archive")
    u.add_argument("--results", default=str(REPO / "results"))
    for verb in ("plan", "run"):
        r = sub.add_parser(verb, help="print the jobs" if verb == "plan" else "run the window (on the GPU)")
        r.add_argument("--budget", type=float, default=470, help="seconds for the whole window, packing included")
        r.add_argument("--out", default=os.environ.get("OUT", "."))
        r.add_argument("--results", default=str(REPO / "results"), help="the committed runs (done)")
        r.add_argument("--stages", default="table1,table2,alignment")
        r.add_argument("--datasets", default="mnist,fashion-mnist", help="dataset files")
        r.add_argument("--seeds", default="1-10")
        r.add_argument("--block", type=int, default=10, help="seeds a process")
        r.add_argument("--parallel", default="4,8,12", help="levels of jobs at once to measure, in this order")
        r.add_argument("--probe", type=float, default=40, help="seconds each level is measured")
        r.add_argument("--settle", type=float, default=20, help="seconds before a level's measurement")
        r.add_argument("--margin", type=float, default=1.1)
        r.add_argument("--startup", type=float, default=15, help="seconds a process takes to start")
        r.add_argument("--reserve", type=float, default=25, help="seconds kept for stopping and packing")
        r.add_argument("--poll", type=float, default=2)
        r.add_argument("--limit", type=int, default=0, help="at most this many jobs (0: all)")
        r.add_argument("--epochs", type=int, default=None, help="shortened runs (a rehearsal; never a result)")
        r.add_argument("--device", default="cuda")
        r.add_argument("--source", default="real", choices=["real", "synthetic"])
        r.add_argument("--data-root", default=None, help="default: the stage's data/")
    args = p.parse_args(argv)
    if args.verb in ("stage", "unpack"):
        return stage(args) if args.verb == "stage" else unpack(args)
    a, _, b = args.seeds.partition("-")
    args.seeds = list(range(int(a), int(b) + 1)) if b else [int(x) for x in args.seeds.split(",")]
    args.parallel = [int(x) for x in args.parallel.split(",")]
    args.data_root = args.data_root or str(Path(args.stage) / "data")
    if args.verb == "plan":
        jobs = jobs_of(args)
        for j in jobs:
            print(f"{j['estimate_s']:8.0f} s  {j['tuning']:<9} {j['method']:<22} {j['dataset']:<14} seeds {j['seeds']}")
        print(f"{len(jobs)} jobs, {sum(j['estimate_s'] for j in jobs) / 60:.1f} GPU-minutes one after another")
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
