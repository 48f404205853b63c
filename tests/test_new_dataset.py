"""Adding a dataset is one catalog entry plus its configuration file (docs/architecture.md, "Adding a dataset").

The test proves it on a copy of the project: it appends a small dataset of its own to the copy's
``tp/catalog.py`` (the files: 300 + 100 IDX images read by torchvision's KMNIST class; the table column) and
writes its ``tp/configs/hyperparameters/<slug>.yaml`` — nothing else of the copy changes — then trains it
with ``tp train`` on the files it wrote and asks ``snakemake -n`` for a table with the new column: the copy's
schema, data check, job matrix and tables accept it, and the training job is planned.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from cases import changed_in_copy, run_in_copy

REPO = Path(__file__).resolve().parents[1]
SLUG = "kmnist-mini"
#: the two lines a user adds to the lists of tp/catalog.py (after the given entries): its files and its column
ENTRIES = {
    '    ImageFiles("cifar10", ':
        f'    ImageFiles("{SLUG}", "KMNIST", (1, 28, 28), 0.19, 0.35, 300, 100, val_size=50),',
    '    Dataset("cifar10-cnn", ': f'    Dataset("{SLUG}", "KMNIST (mini)", "{SLUG}", "mlp", 0.0),',
}
CONFIG = """dataset:
  num_hidden: 2
  size_hidden: 16
  batch_size: 32
methods:
  bp:
    test:
      lr: 0.01
      double_precision: false
"""
TABLE = f"""tables:
  tablex:
    title: "Table X: test error (%) on the new dataset"
    tuning: test
    quantity: test_error_at_best_val
    rows: [bp]
    columns: [{SLUG}]
alignment: {{seed: 42, datasets: [], methods: [], smooth: 3}}
seeds: [1]
"""


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (LeCun) file: magic 0x0000 08 ndim, big-endian int32 dims, uint8 data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 + array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project with the new dataset's catalog entries and configuration file, and its data."""
    copy = tmp_path_factory.mktemp("project")
    for name in ("tp", "workflow", "config", "profiles"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "Snakefile", copy / "Snakefile")
    catalog = copy / "tp" / "catalog.py"
    lines = catalog.read_text().splitlines()
    for after, entry in ENTRIES.items():
        (k,) = [k for k, line in enumerate(lines) if line.startswith(after)]
        lines.insert(k + 1, entry)
    catalog.write_text("\n".join(lines) + "\n")
    (copy / "tp" / "configs" / "hyperparameters" / f"{SLUG}.yaml").write_text(CONFIG)
    raw = copy / "data" / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 100)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        images[np.arange(n), labels, :] = 255  # a learnable pattern: the label's row is bright
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return copy


@pytest.mark.slow
def test_only_the_two_additions_changed_and_each_is_needed(project):
    """The copy differs from the project in the two files only (so the tests below, which train and plan the
    new dataset, prove that nothing else is needed), and each of the two is needed: without the configuration
    file ``tp train`` refuses (exit 2) naming the file it looked for; without the catalog's Dataset entry it
    refuses naming the unknown dataset and the valid ones.  Both files are restored afterwards."""
    assert changed_in_copy(project) == ["tp/catalog.py", f"tp/configs/hyperparameters/{SLUG}.yaml"]
    train = (sys.executable, "-m", "tp", "train", "--method", "bp", "--dataset", SLUG, "--seed", "1", "--epochs", "1",
             "--data-root", "data", "--out", str(project / "runs" / "needed"), "--no-progress")
    config = project / "tp" / "configs" / "hyperparameters" / f"{SLUG}.yaml"
    catalog = project / "tp" / "catalog.py"
    saved_config, saved_catalog = config.read_bytes(), catalog.read_bytes()
    try:
        config.unlink()
        res = run_in_copy(project, *train)
        assert res.returncode == 2 and f"hyperparameters/{SLUG}.yaml" in res.stderr, res.stderr
        config.write_bytes(saved_config)
        dataset_line = ENTRIES['    Dataset("cifar10-cnn", ']
        catalog.write_text("".join(line for line in saved_catalog.decode().splitlines(keepends=True)
                                   if line.rstrip("\n") != dataset_line))
        res = run_in_copy(project, *train)
        assert res.returncode == 2 and SLUG in res.stderr and "mnist" in res.stderr.replace(SLUG, ""), res.stderr
    finally:
        config.write_bytes(saved_config)
        catalog.write_bytes(saved_catalog)
    assert not (project / "runs" / "needed" / "summary.json").exists()


@pytest.mark.slow
def test_tp_train_trains_the_new_dataset(project):
    out = project / "runs" / "bp"
    res = run_in_copy(project, sys.executable, "-m", "tp", "train", "--method", "bp", "--dataset", SLUG, "--seed", "1",
              "--epochs", "3", "--data-root", "data", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dataset"], summary["status"], summary["epochs_run"]) == (SLUG, "finished", 3)
    files = {f"KMNIST/raw/{split}-{kind}-ubyte" for split in ("train", "t10k")
             for kind in ("images-idx3", "labels-idx1")}
    assert summary["data_source"] == "real" and set(summary["data_sha256"]) == files
    assert summary["config"]["num_hidden"] == 2 and summary["config"]["lr"] == 0.01
    assert summary["test_error_at_best_val"] < 60  # it learns the files' labels (chance: 90 %)


@pytest.mark.slow
def test_the_pipeline_plans_the_new_column(project):
    overlay = project / "new.yaml"
    overlay.write_text(TABLE)
    res = run_in_copy(project, sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(overlay),
              "--config",
              f"datasets=[{SLUG}]", "data={root: data, download: false}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert re.search(rf"results/runs/test/bp/{SLUG}/seed1/summary\.json", out), out[-3000:]
    assert f"{SLUG} present" in out and "tablex" in out
