"""The GPU window (benchmarks/gpu_window.py, issue 36) rehearsed on the CPU: synthetic data, one epoch, a 2-minute
budget; its archive unpacks into results/runs/ as the CPU campaign's runs do, never over a run already there."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WINDOW = [sys.executable, str(REPO / "benchmarks" / "gpu_window.py")]


def window(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*WINDOW, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """A window of the two cheapest pending jobs (BP on MNIST and Frozen-MNIST, seeds 1-2 each as one block)."""
    base = tmp_path_factory.mktemp("window")
    (base / "committed").mkdir()
    res = window("--stage", base / "stage", "run", "--device", "cpu", "--source", "synthetic", "--epochs", 1,
                 "--budget", 120, "--parallel", "1,2", "--probe", 3, "--settle", 1, "--limit", 2, "--seeds", "1-2",
                 "--datasets", "mnist", "--stages", "table1", "--results", base / "committed", "--out", base / "out",
                 "--startup", 5)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return base


@pytest.mark.slow
def test_the_rehearsal_packs_every_finished_seed_and_times_every_job(rehearsal):
    out = rehearsal / "out"
    jobs = list(csv.DictReader(open(out / "jobs.csv")))
    assert [(j["method"], j["dataset"], j["seeds"], j["status"]) for j in jobs] == [
        ("bp", "mnist", "1 2", "finished"), ("bp", "frozen-mnist", "1 2", "finished")]
    assert all(float(j["end_s"]) > float(j["start_s"]) > 0 and int(j["at_once"]) in (1, 2) for j in jobs)
    with tarfile.open(out / "window.tar.gz") as tar:
        names = tar.getnames()
    runs = sorted({str(Path(n).parent) for n in names if n.startswith("runs/")})
    assert runs == [f"runs/test/bp/{d}/seed{s}" for d in ("frozen-mnist", "mnist") for s in (1, 2)]
    assert "window.json" in names and not any(n.endswith(("checkpoint.pt", ".lock")) for n in names)
    assert "finished" in (out / "window.log").read_text()


def test_the_archive_unpacks_into_results_runs_never_over_a_run(rehearsal, tmp_path):
    results = tmp_path / "results"
    kept = results / "runs/test/bp/mnist/seed2"
    kept.mkdir(parents=True)
    (kept / "summary.json").write_text('{"status": "finished", "mine": true}')
    res = window("unpack", rehearsal / "out" / "window.tar.gz", "--results", results)
    assert res.returncode == 0, res.stderr
    assert "3 run(s) copied" in res.stdout and "runs/test/bp/mnist/seed2: already in" in res.stdout
    assert json.loads((kept / "summary.json").read_text()) == {"status": "finished", "mine": True}
    summary = json.loads((results / "runs/test/bp/mnist/seed1/summary.json").read_text())
    assert summary["status"] == "finished" and summary["data_source"] == "synthetic" and summary["seed"] == 1
    assert (results / "runs/test/bp/mnist/seed1/metrics.csv").exists()
    row = list(csv.DictReader(open(results / "campaigns.csv")))[-1]
    assert row["command"] == "bash benchmarks/gpu_window.sh 120" and row["finished"] == "4"
    assert row["not_started"] == "0" and "CPUs" in row["machine"]


def _idx(path: Path, kind: str, n: int) -> None:
    head = (0x0803, n, 28, 28) if kind == "images" else (0x0801, n)
    body = b"".join(v.to_bytes(4, "big") for v in head) + bytes(n * (784 if kind == "images" else 1))
    path.write_bytes(gzip.compress(body))


@pytest.mark.slow
def test_stage_copies_the_data_and_the_commit_and_refuses_missing_files(tmp_path):
    data = tmp_path / "data"
    for folder in ("MNIST", "FashionMNIST"):
        raw = data / folder / "raw"
        raw.mkdir(parents=True)
        for split, n in (("train", 3), ("t10k", 2)):
            _idx(raw / f"{split}-images-idx3-ubyte.gz", "images", n)
            _idx(raw / f"{split}-labels-idx1-ubyte.gz", "labels", n)
    res = window("--stage", tmp_path / "stage", "stage", "--data-root", data, "--allow-dirty")
    assert res.returncode == 0, res.stderr
    staged = sorted(p.relative_to(tmp_path / "stage").as_posix() for p in (tmp_path / "stage").rglob("*.gz"))
    assert len(staged) == 8 and "data/FashionMNIST/raw/t10k-labels-idx1-ubyte.gz" in staged
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert (tmp_path / "stage" / "CODE_VERSION").read_text().startswith(head)
    (data / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").unlink()
    res = window("--stage", tmp_path / "stage2", "stage", "--data-root", data, "--allow-dirty")
    assert res.returncode != 0 and "fashion-mnist: expected the four IDX .gz files" in res.stderr


def test_a_tree_without_its_repository_records_the_staged_commit(tmp_path, monkeypatch):
    """On the GPU machine the tree arrives without .git: the runs record TP_CODE_VERSION (the staged commit)."""
    from tp.training.records import code_version

    monkeypatch.setenv("TP_CODE_VERSION", "0123abcd")
    assert code_version(tmp_path) == "0123abcd"
    monkeypatch.delenv("TP_CODE_VERSION")
    assert code_version(tmp_path).startswith("tp ")
