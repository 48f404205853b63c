"""A time-boxed results campaign: the pending runs of the selected cells, in priority order, from a fixed commit.

    python workflow/scripts/campaign.py --minutes 150 --datasets mnist [--seeds 1,2,3] [--commit HEAD]
    make campaign MINUTES=150 DATASETS=mnist

1. The code is a ``git worktree`` of one commit (``.campaign/COMMIT/``, git-ignored), run with this checkout's
   virtual environment (``PYTHONPATH`` puts the worktree's ``tp`` first), so editing the checkout never reaches
   a running job, and every run records that commit as its clean code version.
2. The plan (``--dry-run`` prints it; campaign_plan.py), by stages (``--stages``), in this order: the toy
   figures (Fig. 2, S3); the damping searches of Table S7 (then the more seeds of ``damping_stability``); the
   first seed of every Table 1 cell, then of every Table 2 cell (cheap cells first); the alignment runs of the
   main text's figure (Fig. 4, Fashion-MNIST); the other seeds of Table 1 and 2, seed by seed; the other
   alignment runs (Fig. S5, …); beyond the paper (``ggn``): the GGN alignment runs, then the ``beyond_paper``
   tables' runs.  A run whose summary is already under ``RESULTS/runs/`` (committed, or copied by an earlier
   campaign) is done.
3. ``--slots`` jobs at a time (default: the CPU count, one thread each: on the 2-core CPU two 1-thread jobs do
   more work per hour than one 2-thread job, docs/speed.md).  A run starts only when its expected time fits
   before the deadline: the median ``wall_time_s`` of the cell's finished runs made by this runner (CPU model and
   step path), else this runner's comparable runs scaled by work, else any runner's (campaign_plan.estimate),
   else ``--default-hours``; times ``--margin``, times the slowdown the running runs show against their estimates
   (campaign_speed.py: another machine's times can be 4x off).
4. Each job is a Snakemake call in the worktree for one run; when it ends, the run's small files
   (``summary.json``, ``metrics.csv``, ``config.yaml``, ``alignment.csv``, ``damping_search.csv``,
   ``damping_paired.csv``; never the checkpoint) are copied into ``RESULTS/runs/`` (the toy figures into
   ``RESULTS/figures/``).  At the hard deadline the jobs still running are stopped; their checkpoints stay in
   the worktree, and the next campaign on the same machine resumes them (on a fresh machine they restart
   cleanly).
5. Then the tables, figures and ``RESULTS/README.md`` are rebuilt from the runs present
   (``snakemake --config partial=true``), ready to commit.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign_plan import STAGES, Item, epochs_of, plan  # noqa: E402
from campaign_speed import SpeedGauge, machine_name  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SMALL_FILES = ("summary.json", "metrics.csv", "config.yaml", "alignment.csv", "damping_search.csv",
               "damping_paired.csv")
POLL_S = 5  # seconds between looks at the running jobs
TOY_FILES = ("fig2_nullspace.png", "fig2_nullspace.pdf", "fig2_nullspace.csv", "fig2_nullspace_summary.csv",
             "figS3_output_space.png", "figS3_output_space.pdf", "figS3_output_space.json", "toy_provenance.json")


def git(*args, cwd=REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def public_args(argv: list[str]) -> list[str]:
    """The command's arguments as campaigns.csv (committed) records them: an absolute path (the data root of
    this machine) relative to the repository root."""
    def public(arg: str) -> str:
        key, eq, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        return key + eq + (os.path.relpath(value, REPO) if os.path.isabs(value) else value)

    return [public(a) for a in argv]


def record(path: Path, row: dict) -> None:
    """Append one campaign's row to ``campaigns.csv`` (committed with the runs; results/README.md shows it) in
    the file's own columns (``note``: what happened beside the command, written by hand; empty here)."""
    if not path.exists():
        header = list(dict.fromkeys([*row, "note"]))
        path.write_text(",".join(header) + "\n")
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    missing = [k for k in row if k not in header]
    if missing:
        raise ValueError(f"{path}: no column for {', '.join(missing)} (columns: {', '.join(header)})")
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=header, restval="").writerow(row)


def pick(items: list[Item], now: float, deadline: float, margin: float, speed: float = 1.0) -> Item | None:
    """The first item of the plan whose expected time (× margin × ``speed``, the observed slowdown of this
    machine: campaign_speed.SpeedGauge) ends before the deadline."""
    return next((i for i in items if now + i.hours * 3600 * margin * speed < deadline), None)


def worktree(commit: str) -> Path:
    sha = git("rev-parse", f"{commit}^{{commit}}")
    path = REPO / ".campaign" / sha[:12]
    if not (path / ".git").exists():
        git("worktree", "add", "--detach", str(path), sha)
    elif git("rev-parse", "HEAD", cwd=path) != sha:
        raise SystemExit(f"campaign: {path} is not at {sha}; remove it (git worktree remove --force {path})")
    return path


def copy_run(src: Path, dst: Path) -> None:
    """The run's small files into ``dst`` (through a temporary folder renamed into place)."""
    tmp = dst.with_name(f".{dst.name}.copy")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SMALL_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, tmp / name)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


def parse_args(argv) -> argparse.Namespace:
    """The command line, checked: unknown datasets or stages are an error naming the valid choices."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, required=True, help="time box: no run starts that would end later")
    p.add_argument("--datasets", default="mnist", help="comma-separated dataset files: mnist, fashion-mnist, cifar10")
    p.add_argument("--seeds", default="1,2,3", help="seeds of the Table 1 cells, in this order")
    p.add_argument("--stages", default=",".join(STAGES), help=f"any of {', '.join(STAGES)} (module docstring)")
    p.add_argument("--commit", default="HEAD", help="the code the runs are made with")
    p.add_argument("--results", default=str(REPO / "results"))
    p.add_argument("--data-root", default=str(REPO / "data"))
    p.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="jobs at a time (1 thread each)")
    p.add_argument("--margin", type=float, default=1.15, help="safety factor on the estimates")
    p.add_argument("--grace", type=float, default=10, help="minutes after the time box before the runs still "
                   "going are stopped (their checkpoints stay)")
    p.add_argument("--default-hours", type=float, default=1.5, help="estimate of a cell never run")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.add_argument("--no-tables", action="store_true", help="do not rebuild the tables at the end")
    args = p.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.stages = [s.strip() for s in args.stages.split(",")]
    from tp.catalog import DATASETS

    files = list(dict.fromkeys(d.files for d in DATASETS.values()))
    for name, values, valid in (("--datasets", args.datasets, files),
                                ("--stages", args.stages, STAGES)):
        bad = [v for v in values if v not in valid]
        if bad:
            p.error(f"{name} {','.join(bad)}: valid choices are {', '.join(valid)}")
    return args


def seeds_and_data(args) -> list[str]:
    """The ``--config`` values of the jobs and of the rebuild: the seeds, the data root (never downloads)."""
    return [f"seeds=[{','.join(map(str, args.seeds))}]",
            f"data={{root: {Path(args.data_root).resolve()}, download: false}}"]


def snakemake_config(args) -> list[str]:
    """The ``--config`` of every job: the seeds and data, one seed a job, the selected datasets."""
    return ["--config", *seeds_and_data(args), "seed_block=1", f"datasets=[{','.join(args.datasets)}]"]


class Runner:
    """The jobs of one campaign: each a Snakemake call in the worktree ``tree`` for one item, at most ``slots``
    at a time; finished runs' small files copied into ``results``; the speed gauge fed from the running runs."""

    def __init__(self, args, tree: Path, results: Path, say):
        self.args, self.tree, self.results, self.say = args, tree, results, say
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{tree}{os.pathsep}"
                    f"{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)}
        self.command = [str(Path(sys.executable).with_name("snakemake")), "--nolock", "--cores", "1",
                        *snakemake_config(args)]
        self.logdir = results / "logs" / "campaign"
        self.running: dict[str, tuple[subprocess.Popen, float, Item]] = {}
        self.finished = self.failed = 0
        self.gauge, self.factor = SpeedGauge(), 1.0

    def start(self, item: Item) -> None:
        self.say(f"start (expect {item.hours * 60 * self.factor:.0f} min) {item.target}")
        out = open(self.logdir / f"{item.target.replace('/', '_')}.log", "a")
        proc = subprocess.Popen(self.command + ["--", f"results/{item.target}"], cwd=self.tree, env=self.env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.running[item.target] = (proc, time.time(), item)

    def reap(self) -> None:
        """Note the jobs that ended and copy what they made into ``results``."""
        for target, (proc, t0, item) in list(self.running.items()):
            if proc.poll() is None:
                continue
            del self.running[target]
            done = (self.tree / "results" / target).exists()
            self.say(f"{'done' if done else 'FAILED'} (exit {proc.returncode}, {(time.time() - t0) / 60:.1f} min) "
                     f"{target}")
            self.finished, self.failed = self.finished + done, self.failed + (not done)
            if done and item.run:
                copy_run(self.tree / "results" / item.run, self.results / item.run)
            elif done:
                (self.results / "figures").mkdir(parents=True, exist_ok=True)
                for name in TOY_FILES:
                    shutil.copy2(self.tree / "results" / "figures" / name, self.results / "figures" / name)

    def gauge_speed(self) -> None:
        """This machine's speed, from the running runs' own epochs: later starts expect that much longer."""
        for _, _, item in self.running.values():
            if item.gauges_speed:
                self.gauge.observe(self.tree / "results" / item.run, item.hours, epochs_of(*item.cell))
        if self.gauge.factor > self.factor * 1.05:
            self.factor = self.gauge.factor
            self.say(f"runs here take {self.factor:.2f}x their estimates (seconds per epoch so far): later starts "
                     f"use that")

    def stop_all(self) -> int:
        """Stop the jobs still running (their checkpoints stay); how many there were."""
        for target, (proc, _, _) in self.running.items():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            self.say(f"stopped {target}")
        return len(self.running)


def run_items(runner: Runner, items: list[Item], deadline: float) -> None:
    """Start the items in plan order while each fits before ``deadline`` and a slot is free, until none is
    left, none fits, SIGTERM/SIGINT, or the hard deadline (``--grace`` minutes later) stops the rest."""
    args, stopped = runner.args, False

    def stop(*_):
        nonlocal stopped
        stopped = True

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while (items or runner.running) and not stopped:
            runner.reap()
            runner.gauge_speed()
            while len(runner.running) < args.slots and items:
                item = pick(items, time.time(), deadline, args.margin, runner.factor)
                if item is None:
                    break
                items.remove(item)
                runner.start(item)
            if not runner.running:
                break
            if time.time() > deadline + 60 * args.grace:  # a run far beyond its estimate: stop it, keep its checkpoint
                runner.say("hard deadline: stopping the runs still going (their checkpoints stay)")
                break
            time.sleep(POLL_S)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def rebuild_tables(args, results: Path, say) -> None:
    """The tables, figures and README from the runs present (every dataset: those neither here nor run say
    "not run: dataset missing")."""
    rebuild = [str(Path(sys.executable).with_name("snakemake")), "--cores", "1", "--config", "partial=true",
               *seeds_and_data(args), f"results={results}"]
    say("rebuilding tables, figures and README: " + " ".join(rebuild))
    subprocess.run(rebuild, cwd=REPO, check=False)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    results = Path(args.results).resolve()
    deadline = time.time() + 60 * args.minutes
    items = plan(cfg, args, results)
    print(f"campaign: {len(items)} pending item(s), {args.slots} slot(s), until "
          f"{time.strftime('%H:%M', time.localtime(deadline))}")
    for i in items:
        print(f"  {i.hours * 60:7.1f} min  {i.target}  ({i.why})")
    if args.dry_run:
        return 0
    tree = worktree(args.commit)
    from tp.runs.folder import holder

    for item in [i for i in items if i.run and holder(tree / "results" / i.run)]:  # e.g. a killed campaign's job
        items.remove(item)
        print(f"campaign: {item.target} is being trained by another process (PID "
              f"{holder(tree / 'results' / item.run)}): not started again")
    logdir = results / "logs" / "campaign"
    logdir.mkdir(parents=True, exist_ok=True)
    log = open(logdir / time.strftime("%Y%m%d-%H%M%S.log"), "a", buffering=1)

    def say(msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log.write(line + "\n")

    say(f"code {git('rev-parse', 'HEAD', cwd=tree)} in {tree}")
    started = time.time()
    runner = Runner(args, tree, results, say)
    run_items(runner, items, deadline)
    stopped = runner.stop_all()
    left = [i.target for i in items]
    say(f"{len(left)} item(s) not started (no time left): {', '.join(left) or 'none'}")
    record(results / "campaigns.csv", {
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "minutes": round((time.time() - started) / 60, 1), "commit": git("rev-parse", "HEAD", cwd=tree),
        "command": " ".join(["python workflow/scripts/campaign.py",
                             *public_args(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{machine_name().replace(' (1 threads)', '')}, {os.cpu_count()} CPUs",
        "slots": args.slots, "finished": runner.finished, "failed": runner.failed, "stopped": stopped,
        "not_started": len(left)})
    if not args.no_tables:
        rebuild_tables(args, results, say)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
