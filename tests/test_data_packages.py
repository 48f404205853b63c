"""Fashion-MNIST from its operating-system package (Debian/Ubuntu's ``dataset-fashion-mnist``, tp/data/packages.py).

Every test writes its own small "package" folder of IDX ``.gz`` files under a temporary prefix
(``TP_SYSTEM_ROOT``); none reads a package installed on the machine (tests/conftest.py points the prefix at an
empty folder for all the others).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import test_pipeline as pipeline
from cases import workflow_script
from test_data import fake_known_sizes, write_idx, write_mnist_like  # noqa: F401 (autouse: the small files' sizes)
from tp import cli
from tp.data import DatasetCorruptError, DatasetNotFoundError, load_dataset
from tp.data.integrity import IDX_FILES
from tp.data.packages import ORIGIN_RECORD, SYSTEM_ROOT_VARIABLE

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "usr/share/datasets/fashion-mnist"  # where Debian/Ubuntu's dataset-fashion-mnist installs the files
RAW = "FashionMNIST/raw"


@pytest.fixture
def package(tmp_path, monkeypatch):
    """An installed "package" under a temporary prefix: the four IDX files as .gz (as the package installs
    them); returns its folder and the arrays it holds."""
    staging = tmp_path / "staging"
    arrays = write_mnist_like(staging, "F", seed=7)
    folder = tmp_path / "system" / PACKAGE
    folder.mkdir(parents=True)
    for name in IDX_FILES:
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write((staging / "F" / "raw" / name).read_bytes())
    monkeypatch.setenv(SYSTEM_ROOT_VARIABLE, str(tmp_path / "system"))
    return SimpleNamespace(folder=folder, arrays=arrays)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_fashion_mnist_is_read_from_the_package_when_the_data_root_lacks_it(tmp_path, package):
    root = tmp_path / "data"
    before = listing(package.folder)
    d = load_dataset("fashion-mnist", root, no_val_set=True)
    images, labels = package.arrays["train"]
    expected = torch.tensor(images, dtype=torch.float32).reshape(40, -1).double() / 255
    torch.testing.assert_close(d.train_x, expected, rtol=0, atol=1e-6)
    assert torch.equal(d.train_y, torch.tensor(labels)) and d.test_x.shape == (12, 784)
    assert listing(package.folder) == before  # the package's folder is only read
    # the checked plain files are in the data root, as after a download; the summary names where they came from
    fields = d.summary_fields()
    digests = {f"{RAW}/{n}": hashlib.sha256((root / RAW / n).read_bytes()).hexdigest() for n in IDX_FILES}
    assert fields["data_source"] == "real" and fields["data_sha256"] == digests
    assert fields["data_origin"] == {f"{RAW}/{n}": f"{package.folder / n}.gz (Debian/Ubuntu package "
                                                   f"dataset-fashion-mnist)" for n in IDX_FILES}
    # later loads read the root's files and still know their origin (ROOT/.tp-origin.json)
    assert load_dataset("fashion-mnist", root, no_val_set=True).summary_fields() == fields
    assert set(json.loads((root / ORIGIN_RECORD).read_text())) == set(digests)


def test_a_run_summary_records_the_origin(tmp_path, package):
    from tp.config import resolve_config
    from tp.training import train

    d = load_dataset("fashion-mnist", tmp_path / "data", no_val_set=True)
    cfg = resolve_config("bp", "fashion-mnist", "train",
                         {"num_hidden": 1, "size_hidden": 8, "batch_size": 32, "epochs": 1})
    train(cfg, d, seed=0, out_dir=tmp_path / "run", progress=False, log=lambda m: None)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["data_origin"] == d.summary_fields()["data_origin"] and len(s["data_origin"]) == 4
    assert set(s["data_origin"]) == set(s["data_sha256"])


def test_the_data_root_comes_first(tmp_path, package):
    root = tmp_path / "data"
    own = write_mnist_like(root, "FashionMNIST", seed=1)
    d = load_dataset("fashion-mnist", root, no_val_set=True)
    assert torch.equal(d.train_y, torch.tensor(own["train"][1]))
    assert d.summary_fields()["data_origin"] is None and not (root / ORIGIN_RECORD).exists()
    # a root that lacks one file takes only that one from the package
    (root / RAW / "t10k-labels-idx1-ubyte").unlink()
    d = load_dataset("fashion-mnist", root, no_val_set=True)
    assert torch.equal(d.train_y, torch.tensor(own["train"][1]))
    assert torch.equal(d.test_y, torch.tensor(package.arrays["t10k"][1]))
    assert list(d.summary_fields()["data_origin"]) == [f"{RAW}/t10k-labels-idx1-ubyte"]


def test_a_file_replaced_after_the_unpack_is_the_data_roots_own(tmp_path, package):
    root = tmp_path / "data"
    load_dataset("fashion-mnist", root, no_val_set=True)
    write_idx(root / RAW / "train-labels-idx1-ubyte", np.arange(40) % 10)
    origin = load_dataset("fashion-mnist", root, no_val_set=True).summary_fields()["data_origin"]
    assert set(origin) == {f"{RAW}/{n}" for n in IDX_FILES} - {f"{RAW}/train-labels-idx1-ubyte"}


def test_a_damaged_package_file_is_a_named_error(tmp_path, package):
    gz = package.folder / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    with pytest.raises(DatasetCorruptError, match=rf"{gz} is corrupt or truncated .*apt-get install --reinstall "
                                                  r"dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "data", no_val_set=True)
    assert not (tmp_path / "data" / RAW / "train-images-idx3-ubyte").exists()
    assert not [p for p in (tmp_path / "data" / RAW).iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("installed", [False, True])
def test_found_nowhere_still_says_where_to_put_it_and_names_the_package(tmp_path, monkeypatch, installed):
    if installed:  # a package folder that lacks a file is not used
        monkeypatch.setenv(SYSTEM_ROOT_VARIABLE, str(tmp_path / "system"))
        folder = tmp_path / "system" / PACKAGE
        folder.mkdir(parents=True)
        (folder / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist", tmp_path / "data", no_val_set=True)
    msg = str(err.value)
    assert f"not found in {tmp_path / 'data' / RAW}" in msg and "fashion-mnist" in msg and "--download" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and PACKAGE in msg
    assert not isinstance(err.value, DatasetCorruptError)
    with pytest.raises(DatasetNotFoundError) as err:  # MNIST has no package: no such route
        load_dataset("mnist", tmp_path / "data", no_val_set=True)
    assert "apt-get" not in str(err.value)


def test_tp_download_says_which_files_came_from_the_package(tmp_path, package, capsys):
    root = tmp_path / "data"
    assert cli.main(["download", "--dataset", "fashion-mnist", "--data-root", str(root), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist: 40 training and 12 test samples" in out
    assert f"{RAW}/train-images-idx3-ubyte: unpacked from {package.folder}/train-images-idx3-ubyte.gz" in out


# ------------------------------------------------------------------------------------- the pipeline
def test_datacheck_counts_the_package_and_names_apt_get(tmp_path, monkeypatch):
    datacheck = workflow_script("datacheck")
    root = tmp_path / "data"
    assert not datacheck.present("fashion-mnist", root)
    fix = "\n".join(datacheck.fix_commands(["mnist", "fashion-mnist"], root))
    assert "or install fashion-mnist from the Debian/Ubuntu package dataset-fashion-mnist: apt-get install " \
           "dataset-fashion-mnist" in fix and PACKAGE in fix
    assert fix.count("apt-get") == 1  # MNIST has no package
    monkeypatch.setenv(SYSTEM_ROOT_VARIABLE, str(tmp_path / "system"))
    folder = tmp_path / "system" / PACKAGE
    folder.mkdir(parents=True)
    for name in IDX_FILES[:3]:
        (folder / f"{name}.gz").write_bytes(b"x")
    assert not datacheck.present("fashion-mnist", root)  # a package folder without every file does not count
    (folder / f"{IDX_FILES[3]}.gz").write_bytes(b"x")
    assert datacheck.present("fashion-mnist", root) and not datacheck.present("mnist", root)
    head = datacheck.report({"mnist": False, "fashion-mnist": True}, True, root, {}, [], {}, None).splitlines()[0]
    assert f"fashion-mnist present (Debian/Ubuntu package dataset-fashion-mnist: {folder})" in head
    write_mnist_like(root, "FashionMNIST")  # the root's own files: the package is not mentioned
    assert datacheck.status_text("fashion-mnist", True, root) == "present"


@pytest.mark.slow
def test_a_failed_offline_download_names_the_apt_route(tmp_path):
    """What `make data` prints when the download job fails (offline): the reason and the fixes."""
    log = tmp_path / "fashion-mnist.log"
    log.write_text("tp: error: fashion-mnist not found in data/FashionMNIST/raw (downloads are off)\n")
    res = subprocess.run([sys.executable, str(REPO / "workflow" / "scripts" / "datacheck.py"), "hint",
                          "fashion-mnist", "data", str(log)], capture_output=True, text=True, check=True)
    assert res.stderr.startswith("download of fashion-mnist failed: fashion-mnist not found")
    assert "apt-get install dataset-fashion-mnist" in res.stderr and "make data DATASETS=fashion-mnist" in res.stderr


@pytest.mark.slow
def test_the_pipeline_plans_fashion_mnist_from_the_package(tmp_path, package):
    """A dry run without downloads: Fashion-MNIST is present through the package, its cells are planned."""
    res = pipeline.snakemake("-n", "--config", "datasets=[fashion-mnist]",
                             f"data={{root: {tmp_path / 'data'}, download: false}}", directory=tmp_path)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout + res.stderr, flags=re.M))
    assert "datasets_missing" not in counts and int(counts["download"]) == 1
    assert {d for _, _, d, _ in pipeline.planned_runs(res.stdout)} == {"fashion-mnist"}
    assert f"fashion-mnist present (Debian/Ubuntu package dataset-fashion-mnist: {package.folder})" in res.stderr


def test_results_readme_lists_the_files_read_and_their_origin(tmp_path):
    runs = {("fashion-mnist", 1): {f"{RAW}/{IDX_FILES[0]}": "/pkg/train-images-idx3-ubyte.gz (Debian/Ubuntu package "
                                                               "dataset-fashion-mnist)"},
            ("fashion-mnist", 2): {f"{RAW}/{IDX_FILES[0]}": "/pkg/train-images-idx3-ubyte.gz (Debian/Ubuntu package "
                                                               "dataset-fashion-mnist)"},
            ("mnist", 1): None}
    for (dataset, seed), origin in runs.items():
        folder = tmp_path / "runs" / "test" / "bp" / dataset / f"seed{seed}"
        folder.mkdir(parents=True)
        files = RAW if dataset == "fashion-mnist" else "MNIST/raw"
        folder.joinpath("summary.json").write_text(json.dumps(
            {"data_source": "real", "data_sha256": {f"{files}/{IDX_FILES[0]}": dataset[0] * 64},
             "data_origin": origin, "tuning": "test", "method": "bp", "dataset": dataset}))
    cfg = {"data": {"source": "real"}, "seeds": [1, 2], "epochs": None, "overrides": {}, "alignment": {"seed": 42}}
    sm = SimpleNamespace(params=SimpleNamespace(results=str(tmp_path), config=cfg, tables={}, not_run=[]),
                         output=[str(tmp_path / "README.md")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / "results_readme.py"), init_globals={"snakemake": sm})
    text = (tmp_path / "README.md").read_text()
    section = text[text.index("## Data files read"):]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "/raw/" in line]
    assert len(rows) == 2
    fashion = next(r for r in rows if RAW in r)
    assert "f" * 64 in fashion and "/pkg/train-images-idx3-ubyte.gz (Debian/Ubuntu package dataset-fashion-mnist)" \
        in fashion and fashion.rstrip(" |").endswith("2")
    assert "m" * 64 in rows[1 - rows.index(fashion)] and "the data root" in rows[1 - rows.index(fashion)]


def test_a_search_fixes_the_files_content_not_where_they_came_from():
    """A study's fixed data is the files' SHA-256 (a study made before `data_origin` existed still resumes);
    each trial's own summary names the origin."""
    from tp.data import DataSplits, synthetic_classification
    from tp.search.cli import trial_trainer

    provenance = {"data_source": "real", "data_sha256": {f"{RAW}/{IDX_FILES[0]}": "ab" * 32},
                  "data_origin": {f"{RAW}/{IDX_FILES[0]}": "/pkg/x.gz (Debian/Ubuntu package dataset-fashion-mnist)"}}
    data = DataSplits(*synthetic_classification(12, 4, 6, 10, 0), provenance=provenance)
    trainer = trial_trainer(lambda generators: data, 0, "cpu", log=lambda m: None)
    assert trainer.data_fields() == {"data_source": "real", "data_sha256": provenance["data_sha256"]}
