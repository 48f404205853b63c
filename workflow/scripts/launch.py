"""Run one `tp` command for a Snakemake job: locally in a subprocess, or as a SLURM job via submitit.

    python workflow/scripts/launch.py --launcher local -- train --method bp --dataset mnist --out DIR ...
    python workflow/scripts/launch.py --launcher slurm --slurm-partition gpu ... -- train ... --out DIR

SLURM mode (the launcher waits while the job runs, so Snakemake keeps the DAG):
* the job id is recorded in DIR/slurm_job.json; submitit's files go to DIR/slurm/;
* SIGINT / SIGTERM / SIGHUP to the launcher (Ctrl-C, or Snakemake being stopped) cancel the job;
* when a recorded job is still queued or running (Snakemake or the login node died and the workflow was
  started again), the launcher re-attaches to it instead of submitting a duplicate;
* a preempted or timed-out job is requeued by submitit (``checkpoint``) and `tp train` resumes from the
  run's checkpoint.pt.

A `tp train` exit status of 3 (the run diverged, its summary.json says so) counts as done: the tables show
diverged runs as such.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

DONE_CODES = (0, 3)  # finished/pruned, diverged (reported in summary.json)
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                 "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT"}


class Interrupted(Exception):
    pass


def _raise_interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def out_dirs(tp_argv: list[str]) -> tuple[Path, list[Path]]:
    """(the launcher's folder: job record, submitit files; the run folders whose summary.json mean done).

    A block of seeds (``--seeds 1-10 --out DIR/seed{seed}``) has one run folder per seed and keeps its job
    record in DIR/seed1-10 (the ``{seed}`` of the pattern replaced by the seed list)."""
    if "--out" not in tp_argv:
        sys.exit("launch.py: the tp command needs --out DIR (the run folder)")
    out = tp_argv[tp_argv.index("--out") + 1]
    if tp_argv[:1] == ["search"]:  # a worker of a shared search: OUT/workers/NAME/summary.json means done
        if "--worker" not in tp_argv:
            sys.exit("launch.py: a tp search job needs --worker NAME")
        folder = Path(out) / "workers" / tp_argv[tp_argv.index("--worker") + 1]
        return folder, [folder]
    if "--seeds" not in tp_argv:
        return Path(out), [Path(out)]
    from tp.cli import parse_seeds

    spec = tp_argv[tp_argv.index("--seeds") + 1]
    if "{seed}" not in out:
        sys.exit("launch.py: a block of seeds needs --out with {seed} (one run folder per seed)")
    return Path(out.replace("{seed}", spec.replace(",", "_"))), [Path(out.replace("{seed}", str(s)))
                                                                 for s in parse_seeds(spec)]


# ----------------------------------------------------------------------------------------------- local
def run_local(tp_argv: list[str]) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "tp", *tp_argv])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
    code = proc.wait()
    return 0 if code in DONE_CODES else code


# ----------------------------------------------------------------------------------------------- slurm
class TrainJob:
    """The callable a SLURM job runs: `tp <argv>` in the job's process.  Requeued on preemption and
    time-out (submitit's checkpoint protocol); `tp train` then resumes from the run's checkpoint."""

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def __call__(self) -> int:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:  # the launcher's OMP_NUM_THREADS=1 came along with the environment: use the job's cores
            import torch

            os.environ["OMP_NUM_THREADS"] = cpus
            torch.set_num_threads(int(cpus))
        from tp.cli import main

        code = main(self.argv)
        if code not in DONE_CODES:
            raise RuntimeError(f"tp {' '.join(self.argv)} exited with status {code}")
        return code

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.argv))


def squeue_state(job_id: str) -> str | None:
    """The job's state while SLURM still lists it, else None."""
    if shutil.which("squeue") is None:
        return None
    res = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    state = res.stdout.strip().splitlines()
    return state[0] if res.returncode == 0 and state else None


def wait(job, poll_seconds: float, status_seconds: float) -> None:
    """Until the job is over: a cheap look for submitit's result file every ``poll_seconds``, and a SLURM
    status query (sacct) only every ``status_seconds`` (hundreds of launchers must not flood slurmdbd),
    which catches jobs that died without a result (killed, out of memory, cancelled)."""
    last_status = time.monotonic()
    while not job.paths.result_pickle.exists():
        if time.monotonic() - last_status >= status_seconds:
            last_status = time.monotonic()
            if job.done(force_check=True):
                return
        time.sleep(poll_seconds)


def run_slurm(tp_argv: list[str], opts) -> int:
    import submitit

    run, runs = out_dirs(tp_argv)
    run.mkdir(parents=True, exist_ok=True)
    folder, record = run / "slurm", run / "slurm_job.json"
    job = None
    if record.exists():
        previous = json.loads(record.read_text())
        state = squeue_state(str(previous["job_id"]))
        if state in ACTIVE_STATES:
            print(f"re-attaching to SLURM job {previous['job_id']} ({state})", flush=True)
            job = submitit.SlurmJob(folder=folder, job_id=str(previous["job_id"]))
    if job is None:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                         slurm_max_num_timeout=opts.slurm_max_num_timeout)
        params = dict(name=f"tp-{run.parent.parent.name}-{run.parent.name}-{run.name}",
                      timeout_min=opts.slurm_timeout_min, mem_gb=opts.slurm_mem_gb,
                      gpus_per_node=opts.slurm_gpus_per_node, cpus_per_task=opts.slurm_cpus_per_task,
                      slurm_wckey="",
                      slurm_additional_parameters=json.loads(opts.slurm_additional_parameters))
        for key in ("partition", "account", "qos"):
            value = getattr(opts, f"slurm_{key}")
            if value:
                params[f"slurm_{key}"] = value
        executor.update_parameters(**params)
        job = executor.submit(TrainJob(tp_argv))
        record.write_text(json.dumps({"job_id": job.job_id, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                      "argv": tp_argv}, indent=2) + "\n")
        print(f"submitted SLURM job {job.job_id}", flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    try:
        wait(job, opts.slurm_poll_seconds, opts.slurm_status_seconds)
    except Interrupted as why:
        print(f"launcher interrupted ({why}): cancelling SLURM job {job.job_id}", flush=True)
        job.cancel(check=False)
        return 130
    try:
        job.result()
    except Exception as exc:  # the job failed: show where its logs are
        print(f"SLURM job {job.job_id} failed: {exc}\nlogs: {job.paths.stdout} {job.paths.stderr}",
              file=sys.stderr, flush=True)
        return 1
    print(f"SLURM job {job.job_id} done", flush=True)
    return 0 if all((r / "summary.json").exists() for r in runs) else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        sys.exit("usage: launch.py [options] -- <tp command and arguments>")
    split = argv.index("--")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--launcher", choices=["local", "slurm"], default="local")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-account", default=None)
    p.add_argument("--slurm-qos", default=None)
    p.add_argument("--slurm-gpus-per-node", type=int, default=1)
    p.add_argument("--slurm-cpus-per-task", type=int, default=4)
    p.add_argument("--slurm-mem-gb", type=float, default=16)
    p.add_argument("--slurm-timeout-min", type=int, default=240)
    p.add_argument("--slurm-max-num-timeout", type=int, default=20)
    p.add_argument("--slurm-additional-parameters", default="{}", help="JSON object of extra sbatch options")
    p.add_argument("--slurm-poll-seconds", type=float, default=5, help="look for the job's result file")
    p.add_argument("--slurm-status-seconds", type=float, default=120, help="ask SLURM (sacct) about the job")
    opts = p.parse_args(argv[:split])
    tp_argv = argv[split + 1:]
    if opts.launcher == "local":
        return run_local(tp_argv)
    return run_slurm(tp_argv, opts)


if __name__ == "__main__":
    sys.exit(main())
