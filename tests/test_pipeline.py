"""The Snakemake pipeline: the default DAG, validation, the smoke run, interruption, and SLURM.

The SLURM tests need a reachable cluster (``.ci/run`` starts a single-node one with accounting and a fake
GPU); they skip without one, except under CI (``CI=true``), where a missing cluster is a failure.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TABLES = ("table1", "table2", "tableS6", "tableS8", "table3", "tableS9", "tableS10")


def snakemake(*args, cwd=None, directory=None, check=True, timeout=900, env=None):
    cmd = list(SNAKEMAKE)
    if directory is not None:
        cmd += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(directory)]
    cmd += [str(a) for a in args]
    res = subprocess.run(cmd, cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def overlay(tmp_path, name="overlay.yaml", **values) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ dry run
def planned_runs(out: str) -> list[tuple[str, str, str, int]]:
    """(tuning, method, dataset, seed) of every run folder a dry run's jobs write (their outputs)."""
    runs = []
    for line in out.splitlines():
        if line.strip().startswith("output:"):
            runs += [(t, m, d, int(s)) for t, m, d, s in
                     re.findall(r"runs/(\w+)/([\w-]+)/([\w-]+)/seed(\d+)/summary\.json", line)]
    return runs


@pytest.mark.parametrize("seed_block", [10, 1])
def test_dry_run_of_the_default_matrix_lists_every_training_job(tmp_path, seed_block):
    t0 = time.monotonic()
    res = snakemake("-n", "--config", f"seed_block={seed_block}", directory=tmp_path)
    elapsed = time.monotonic() - t0
    out = res.stdout + res.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(counts["download"]) == 3 and int(counts["table"]) == 7 and int(counts["table_s7"]) == 1
    runs = planned_runs(out)
    assert len(runs) == len(set(runs)) == 836  # one result folder per (tuning, method, dataset, seed)
    tunings = [t for t, _, _, _ in runs]
    # the tables: MLP 39 test-tuned and 31 train-tuned cells, CNN 4 test-tuned (Table 3, S9) and 3 train-tuned
    # (Table S10, no DDTP-control) cells, × 10 seeds
    assert tunings.count("test") == 430 and tunings.count("train") == 340
    assert sum(1 for t, _, d, _ in runs if (t, d) == ("test", "cifar10-cnn")) == 40
    assert sum(1 for t, _, d, _ in runs if (t, d) == ("train", "cifar10-cnn")) == 30
    # the alignment figures and the damping search: 10 methods × 3 datasets + 3 CNN methods, one seed each
    assert tunings.count("alignment") == 33 and tunings.count("damping") == 33
    blocks = {k: int(v) for k, v in counts.items() if re.fullmatch(r"train_\w+_seeds1to10", k)}
    if seed_block == 10:
        # every table cell (70 MLP, 7 CNN) is one process of its 10 seeds; alignment and damping runs one each
        assert len(blocks) == 77 and set(blocks.values()) == {1}
        assert int(counts["train"]) == 33 + 33
    else:
        assert not blocks and int(counts["train"]) == 836
    assert int(counts["alignment_figure"]) == 5
    assert elapsed < 60


@pytest.mark.parametrize("change,needle", [
    ({"tables": {"table1": {"rows": ["bp", "ddtp-lin"]}}}, "ddtp-lin"),
    ({"tables": {"table1": {"columns": ["mnist", "svhn"]}}}, "svhn"),
    ({"seeds": ["a", "b"]}, "'a' is not of type 'integer'"),
    ({"colour": "blue"}, "colour"),
    ({"seed_block": 0}, "seed_block"),
    ({"overrides": {"learning_rate": 0.1}}, "learning_rate"),
])
def test_invalid_configuration_fails_validation_naming_the_entry(tmp_path, change, needle):
    res = snakemake("-n", "--configfile", overlay(tmp_path, **change), directory=tmp_path, check=False)
    assert res.returncode != 0
    assert needle in res.stdout + res.stderr


# ---------------------------------------------------------------------------------------- smoke run
def test_smoke_configuration_runs_end_to_end(tmp_path):
    snakemake("--cores", "2", "--configfile", REPO / "config" / "smoke.yaml", directory=tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    results = tmp_path / "results" / "smoke"
    from tp.config import DATASETS, METHODS, available_configs

    have = available_configs()
    for table in TABLES:
        spec = cfg["tables"][table]
        for ext in ("csv", "md", "tex"):
            assert (results / "tables" / f"{table}.{ext}").stat().st_size > 0
        rows = list(csv.DictReader(open(results / "tables" / f"{table}.csv")))
        assert [(r["method_slug"], r["dataset_slug"]) for r in rows] == \
            [(m, d) for m in spec["rows"] for d in spec["columns"]]
        for r in rows:
            assert r["method"] == METHODS[r["method_slug"]].paper_name
            assert r["dataset"] == DATASETS[r["dataset_slug"]]
            if spec["tuning"] not in have.get((r["dataset_slug"], r["method_slug"]), []):
                assert (r["method_slug"], r["dataset_slug"]) in {("dfa", "frozen-mnist"), ("ddtp-control", "cifar10-cnn")}
                assert r["cell"] == "no configuration"
            else:
                assert int(r["n"]) == 2 and "±" in r["cell"], r
        md = (results / "tables" / f"{table}.md").read_text()
        assert all(METHODS[m].paper_name in md for m in spec["rows"])
    assert "DDTP-control: the official set has no configuration tuned for training" in \
        (results / "tables" / "tableS10.md").read_text()
    assert "Table 1" in (results / "README.md").read_text()
    from PIL import Image

    for name in ("fig4_alignment_fashion-mnist", "figS4_alignment_fashion-mnist", "figS5_alignment_mnist",
                 "figS6_alignment_cifar10", "figS7_alignment_cifar10-cnn"):
        assert (results / "figures" / f"{name}.pdf").stat().st_size > 1000
        with Image.open(results / "figures" / f"{name}.png") as img:
            assert img.size[0] >= 600 and img.size[1] >= 400, (name, img.size)
    s7 = list(csv.DictReader(open(results / "tables" / "tableS7.csv")))
    assert len(s7) == 33 * 3 and {r["selected"] for r in s7} <= {str(v) for v in
                                                                   (0.0, 1e-05, 0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)}
    for name in ("fig2_nullspace", "figS3_output_space"):
        with Image.open(results / "figures" / f"{name}.png") as img:
            assert img.size[0] >= 600 and img.size[1] >= 400, (name, img.size)
    bars = list(csv.DictReader(open(results / "figures" / "fig2_nullspace_summary.csv")))
    assert {r["paper_name"] for r in bars} == {"DTP (pre-trained)", "DDTP-linear"}
    assert "Fig. 2" in (results / "README.md").read_text()
    alignment = list(csv.DictReader(open(results / "runs/alignment/ddtp-linear/mnist/seed42/alignment.csv")))
    assert {r["reference"] for r in alignment} == {"bp", "gnt"}
    summary = json.loads((results / "runs/test/ddtp-linear/mnist/seed1/summary.json").read_text())
    assert summary["status"] == "finished" and summary["config"]["num_hidden"] == 3
    assert summary["block_seeds"] == [1, 2]  # the smoke's two seeds trained together (seed_block)
    # the CNN runs: the same rules on images, the smoke's small conv blocks, per-layer Adam settings
    cnn = json.loads((results / "runs/test/ddtp-linear/cifar10-cnn/seed1/summary.json").read_text())
    assert cnn["status"] == "finished" and cnn["rule"] == "ddtp-linear" and cnn["config"]["model"] == "cnn"
    assert cnn["block_seeds"] == [1, 2]  # the CNN cells are seed blocks too
    assert cnn["config"]["conv_channels"] == [4, 8] and len(cnn["config"]["lr"]) == 4
    cnn_alignment = list(csv.DictReader(open(results / "runs/alignment/dfa/cifar10-cnn/seed42/alignment.csv")))
    assert {(r["reference"], r["layer"]) for r in cnn_alignment} == {("bp", str(i)) for i in (1, 2, 3, 4)} | {
        ("gnt", str(i)) for i in (1, 2, 3)}
    assert {r["damping"] for r in cnn_alignment if r["reference"] == "gnt"} == {"1.0", "0.1", "0.01"}


# -------------------------------------------------------------------------------- interrupt (local)
def default_sigint():
    """For a child that must react to Ctrl-C: a shell that starts a job in the background (no job control)
    leaves SIGINT ignored, and an ignored signal stays ignored in every child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_interrupted_smoke_run_resumes_without_recomputing(tmp_path):
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1], epochs=150)
    runs = [results / f"runs/test/{m}/mnist/seed1" for m in ("bp", "ddtp-linear", "dtp")]
    targets = [r / "summary.json" for r in runs]
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
                       "--configfile", str(REPO / "config" / "smoke.yaml"), str(extra), "--"] + [str(t) for t in targets]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, preexec_fn=default_sigint,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # one run finished, another in the middle of its training: Ctrl-C (SIGINT to the process group)
        # (a run that has just finished still has its checkpoint for a moment: look for an unfinished one)
        wait_for(lambda: sum(t.exists() for t in targets) == 1 and any(
            (r / "checkpoint.pt").exists() and not (r / "summary.json").exists() for r in runs), 240,
            "a finished run and a checkpointed one")
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = [t for t in targets if t.exists()]
    cut = [r for r in runs if (r / "checkpoint.pt").exists() and not (r / "summary.json").exists()]
    assert len(done) == 1 and len(cut) == 1
    finished_before = {t: t.stat().st_mtime_ns for t in done}

    # "run the same command again" (README): the workflow's default profile (profiles/default) makes Snakemake
    # redo the jobs it recorded as incomplete instead of stopping with IncompleteFilesException
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    assert all(t.exists() for t in targets)
    for t, mtime in finished_before.items():  # not recomputed
        assert t.stat().st_mtime_ns == mtime
    log = (results / "logs/train/test" / cut[0].parent.parent.name / "mnist/seed1.log").read_text()
    assert "resuming" in log  # continued from its checkpoint
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(cut[0] / "metrics.csv"))]
    assert epochs == list(range(1, 151))  # every epoch once: no duplicate work


def test_a_job_that_ends_after_snakemake_died_is_redone_by_the_same_command(tmp_path):
    """Snakemake killed while a job runs (or Ctrl-C just as it ends): the job still writes its summary, which
    Snakemake recorded as incomplete.  The same command then redoes that job (profiles/default:
    rerun-incomplete) instead of stopping with IncompleteFilesException."""
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1], epochs=40)
    run = results / "runs/test/bp/mnist/seed1"
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
                       "--configfile", str(REPO / "config" / "smoke.yaml"), str(extra), "--", str(run / "summary.json")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run / "checkpoint.pt").exists(), 240, "the training job's first checkpoint")
        proc.kill()  # Snakemake only: its job goes on and ends
        proc.wait(timeout=60)
        wait_for(lambda: (run / "summary.json").exists() and not (run / "checkpoint.pt").exists(), 240,
                 "the orphaned job to finish")
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)  # (the job's process exits after its last write)
    snakemake("--unlock", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
              REPO / "config" / "smoke.yaml", extra)
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "IncompleteFilesException" not in res.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


# ------------------------------------------------------------------------------------------- SLURM
def slurm_env():
    env = dict(os.environ)
    if "SLURM_CONF" not in env and Path("/etc/slurm/slurm.conf").exists():
        env["SLURM_CONF"] = "/etc/slurm/slurm.conf"
    return env


def slurm_reachable() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        return False
    res = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=slurm_env())
    return res.returncode == 0 and "UP" in res.stdout


@pytest.fixture
def slurm():
    if not slurm_reachable():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("no SLURM cluster reachable under CI (.ci/run should have started one)")
        pytest.skip("no SLURM cluster reachable")
    return slurm_env()


def sacct_jobs(env, name_prefix="tp-"):
    res = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State", "-S", "now-1days"],
                         capture_output=True, text=True, env=env, check=True)
    rows = [line.split("|") for line in res.stdout.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows if r[1].startswith(name_prefix)}


def squeue_ids(env):
    res = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env, check=True)
    return set(res.stdout.split())


CHECK_TABLE = {"check": {"title": "SLURM check", "tuning": "test", "quantity": "test_error_at_best_val",
                         "rows": ["bp", "ddtp-linear"], "columns": ["mnist"]}}


def test_slurm_profile_runs_the_smoke_subset_through_sbatch(tmp_path, slurm):
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1, 2], tables=CHECK_TABLE)
    t0 = time.monotonic()
    snakemake("--profile", "slurm", "--configfile", "config/smoke.yaml", extra, "--",
              results / "tables" / "check.csv", cwd=REPO, env=slurm)
    print(f"SLURM smoke subset: {time.monotonic() - t0:.1f} s")
    jobs = sacct_jobs(slurm)
    rows = list(csv.DictReader(open(results / "tables" / "check.csv")))
    assert len(rows) == 2 and all(int(r["n"]) == 2 for r in rows)
    for method in ("bp", "ddtp-linear"):  # one SLURM job trains both seeds (a seed block)
        block = results / f"runs/test/{method}/mnist/seed1_2"
        job_id = json.loads((block / "slurm_job.json").read_text())["job_id"]
        assert jobs[job_id] == (f"tp-{method}-mnist-seed1_2", "COMPLETED")
        for seed in (1, 2):
            summary = json.loads((results / f"runs/test/{method}/mnist/seed{seed}/summary.json").read_text())
            assert summary["status"] == "finished" and summary["block_seeds"] == [1, 2]


def start_long_slurm_run(tmp_path, env, epochs):
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1], epochs=epochs)
    run = results / "runs/test/ddtp-linear/mnist/seed1"
    cmd = SNAKEMAKE + ["--profile", "slurm", "--configfile", "config/smoke.yaml", str(extra), "--",
                       str(run / "summary.json")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, preexec_fn=default_sigint,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = run / "slurm_job.json"
    wait_for(lambda: record.exists(), 120, "the launcher's job record")
    job_id = json.loads(record.read_text())["job_id"]
    wait_for(lambda: subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                                    env=env).stdout.strip() == "RUNNING", 120, f"job {job_id} to run")
    return proc, cmd, extra, run, job_id


def test_slurm_sigint_cancels_the_job(tmp_path, slurm):
    # far too long to finish in the seconds between SIGTERM and SIGKILL that SLURM grants a cancelled job
    proc, _, _, run, job_id = start_long_slurm_run(tmp_path, slurm, epochs=100000)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    wait_for(lambda: job_id not in squeue_ids(slurm), 60, f"job {job_id} to leave the queue")
    assert not (run / "summary.json").exists()


def test_slurm_sigkill_then_restart_reattaches_to_the_running_job(tmp_path, slurm):
    proc, cmd, extra, run, job_id = start_long_slurm_run(tmp_path, slurm, epochs=1500)  # ~1 min
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the launcher die without any chance to clean up
    proc.wait(timeout=30)
    assert job_id in squeue_ids(slurm)  # the job itself lives on
    snakemake("--profile", "slurm", "--unlock", "--configfile", "config/smoke.yaml", extra, cwd=REPO, env=slurm)
    snakemake(*cmd[3:], cwd=REPO, env=slurm)
    log = (run.parents[4] / "logs/train/test/ddtp-linear/mnist/seed1.log").read_text()
    assert f"re-attaching to SLURM job {job_id}" in log
    assert json.loads((run / "slurm_job.json").read_text())["job_id"] == job_id
    same_run = [j for j, (name, _) in sacct_jobs(slurm).items() if name == "tp-ddtp-linear-mnist-seed1"
                and int(j) >= int(job_id)]
    assert same_run == [job_id]  # no duplicate submission
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
