"""Reliability (issue 13): wrong data never trains, an interrupted unpack heals, one process per run folder,
every bad value is a named error before training, divergence in any precision, Ctrl-C then the same
Snakemake command, corrupt run files and unusable output folders as one clear line.  CPU, seconds each."""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tp import cli
from tp.config import parse_override, resolve_config
from tp.errors import ConfigError
from tp.catalog import FILES
from tp.data import DataSplits, load_dataset, synthetic_classification
from tp.data.integrity import IDX_FILES, SHA256_CACHE, DatasetCorruptError, prepare_idx_folder
from tp.core.optim import Adam
from tp.runs.folder import LOCK_FILE, RunFolderBusy, RunFolderError, atomic_write, hold_run_folders
from tp.training import CHECKPOINT, SUMMARY, train

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 40, 12
SMALL = {"num_hidden": 1, "size_hidden": 8, "batch_size": 32}


def quiet(msg):
    pass


def small_data(n_train=96, n_test=32, n_val=32, dim=6) -> DataSplits:
    x, y, tx, ty = synthetic_classification(n_train + n_val, n_test, dim, 10, 0)
    return DataSplits(x[:n_train], y[:n_train], tx, ty, x[n_train:], y[n_train:])


def write_idx(path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 + array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist(tmp_path, monkeypatch):
    """A data root with small MNIST IDX files (40 training, 12 test samples: made the known sizes here)."""
    monkeypatch.setitem(FILES, "mnist", replace(FILES["mnist"], num_train=N_TRAIN, num_test=N_TEST))
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return tmp_path / "data"


def gzip_all(raw: Path) -> dict[str, bytes]:
    """Replace the plain files by their .gz; returns the plain contents."""
    plain = {}
    for name in IDX_FILES:
        plain[name] = (raw / name).read_bytes()
        with gzip.open(raw / f"{name}.gz", "wb") as f:
            f.write(plain[name])
        (raw / name).unlink()
    return plain


# ----------------------------------------------------------------------------- 1. wrong data trains silently
def test_the_known_sizes_are_the_official_ones():
    sizes = {k: (v.num_train, v.num_test) for k, v in FILES.items()}
    assert sizes == {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000), "cifar10": (50000, 10000)}


def test_test_images_copied_over_the_training_images_are_refused(mnist, capsys):
    raw = mnist / "MNIST" / "raw"
    shutil.copy(raw / "t10k-images-idx3-ubyte", raw / "train-images-idx3-ubyte")
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("mnist", mnist, no_val_set=True)
    msg = str(err.value)
    assert "12 images but 40 labels" in msg and str(raw / "train-images-idx3-ubyte") in msg
    assert cli.main(["download", "--dataset", "mnist", "--no-download", "--data-root", str(mnist)]) == 4
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


def test_swapped_training_and_test_files_are_refused(mnist):
    raw = mnist / "MNIST" / "raw"
    for kind in ("images-idx3", "labels-idx1"):
        a, b = raw / f"train-{kind}-ubyte", raw / f"t10k-{kind}-ubyte"
        a.rename(raw / "swap")
        b.rename(a)
        (raw / "swap").rename(b)
    with pytest.raises(DatasetCorruptError, match=r"training set: .* hold\(s\) 12 samples, expected 40 \(the size "
                                                  r"of the test set"):
        load_dataset("mnist", mnist, no_val_set=True)


def test_a_run_records_its_data_source_and_the_sha256_of_each_file(mnist, tmp_path, monkeypatch):
    raw = mnist / "MNIST" / "raw"
    d = load_dataset("mnist", mnist, no_val_set=True)
    expected = {f"MNIST/raw/{n}": hashlib.sha256((raw / n).read_bytes()).hexdigest() for n in IDX_FILES}
    assert d.summary_fields() == {"data_source": "real", "data_sha256": expected, "data_origin": None}
    assert (mnist / SHA256_CACHE).exists()
    import tp.data.integrity as integrity

    integrity._MEMORY.clear()
    monkeypatch.setattr(integrity, "_sha256", lambda path: pytest.fail(f"{path} hashed again"))
    assert load_dataset("mnist", mnist, no_val_set=True).summary_fields()["data_sha256"] == expected  # cached
    cfg = resolve_config("bp", "mnist", "train", {**SMALL, "epochs": 1})
    s = train(cfg, d, seed=0, out_dir=tmp_path / "run", progress=False, log=quiet)
    assert s["data_source"] == "real" and s["data_sha256"] == expected
    synthetic = load_dataset("mnist", source="synthetic", no_val_set=True, synthetic_sizes=(64, 16))
    s = train(cfg, synthetic, seed=0, progress=False, log=quiet)
    assert s["data_source"] == "synthetic" and s["data_sha256"] is None


# ------------------------------------------------------------------- 2. an interrupted unpack breaks the folder
def test_a_partial_plain_file_next_to_its_gz_is_unpacked_again(mnist):
    raw = mnist / "MNIST" / "raw"
    plain = gzip_all(raw)
    (raw / "train-images-idx3-ubyte").write_bytes(plain["train-images-idx3-ubyte"][:5000])  # killed unpack
    d = load_dataset("mnist", mnist, no_val_set=True)
    assert d.train_x.shape == (N_TRAIN, 784)
    assert (raw / "train-images-idx3-ubyte").read_bytes() == plain["train-images-idx3-ubyte"]


def test_a_partial_plain_file_without_gz_is_a_named_error(mnist):
    raw = mnist / "MNIST" / "raw"
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetCorruptError, match=rf"{path} is 5000 bytes long; its header \(40 samples\) needs "
                                                  rf"31376 .*delete it"):
        load_dataset("mnist", mnist, no_val_set=True)


def test_a_truncated_gz_is_a_named_error_and_leaves_no_file(mnist, capsys):
    raw = mnist / "MNIST" / "raw"
    gzip_all(raw)
    gz = raw / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:400])
    before = sorted(p.name for p in raw.iterdir())
    with pytest.raises(DatasetCorruptError, match=rf"{gz} is corrupt or truncated .*download it again"):
        load_dataset("mnist", mnist, no_val_set=True)
    assert not (raw / "train-images-idx3-ubyte").exists()
    assert sorted(p.name for p in raw.iterdir() if "train-images" in p.name) == ["train-images-idx3-ubyte.gz"]
    assert cli.main(["download", "--dataset", "mnist", "--no-download", "--data-root", str(mnist)]) == 4
    assert str(gz) in capsys.readouterr().err
    assert sorted(p.name for p in raw.iterdir()) == before  # nothing partial or temporary left


def test_an_unpack_killed_midway_leaves_no_plain_file(mnist, monkeypatch):
    raw = mnist / "MNIST" / "raw"
    gzip_all(raw)
    real_read = gzip.GzipFile.read

    def killed(self, *args):
        if "train-images" in str(self.name):
            raise KeyboardInterrupt
        return real_read(self, *args)

    monkeypatch.setattr(gzip.GzipFile, "read", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_idx_folder(raw)
    assert not (raw / "train-images-idx3-ubyte").exists()
    assert [p.name for p in raw.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    monkeypatch.setitem(FILES, "mnist", replace(FILES["mnist"], num_train=N_TRAIN, num_test=N_TEST))
    assert load_dataset("mnist", mnist, no_val_set=True).train_x.shape == (N_TRAIN, 784)


def test_concurrent_unpacks_all_succeed(mnist):
    raw = mnist / "MNIST" / "raw"
    plain = gzip_all(raw)
    errors = []

    def unpack():
        try:
            prepare_idx_folder(raw)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=unpack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all((raw / n).read_bytes() == plain[n] for n in IDX_FILES)


# ------------------------------------------------------------------ 3. two runs into one folder, shared tmp name
def test_a_busy_run_folder_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    with hold_run_folders([out]):
        assert str(os.getpid()) in (out / LOCK_FILE).read_text()
        with pytest.raises(RunFolderBusy, match=rf"{out} is in use by another tp process \(PID {os.getpid()}\)"):
            train(resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 1}), small_data(), 0, out,
                  progress=False, log=quiet)
        rc = cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--epochs", "1",
                       "--out", str(out), "--set", "num_hidden=1", "--set", "size_hidden=8"])
        assert rc == 2 and f"PID {os.getpid()}" in capsys.readouterr().err
    assert not (out / SUMMARY).exists()
    s = train(resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 1}), small_data(), 0, out,
              progress=False, log=quiet)  # free again
    assert s["status"] == "finished"


def test_concurrent_writes_of_one_file_use_distinct_temporary_names(tmp_path):
    path, errors = tmp_path / "checkpoint.pt", []

    def writer(k):
        try:
            for i in range(40):
                atomic_write(path, lambda tmp: tmp.write_text(f"{k} {i}"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and path.read_text().endswith(" 39")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


# --------------------------------------------------------------- 4. values that pass validation, then traceback
@pytest.mark.parametrize("override,key", [
    ("beta1=abc", "beta1"), ("forward_wd=abc", "forward_wd"), ("beta2_fb=abc", "beta2_fb"),
    ("epsilon_fb=abc", "epsilon_fb"), ("hidden_activation=foo", "hidden_activation"),
    ("initialization=foo", "initialization"), ("target_stepsize=abc", "target_stepsize"), ("beta1=2", "beta1"),
    ("beta2=-0.1", "beta2"), ("lr=.inf", "lr"), ("lr=1e400", "lr"), ("lr_fb=nan", "lr_fb"), ("sigma=0", "sigma"),
    ("feedback_wd=-1", "feedback_wd"), ("epsilon=[1e-8, abc]", "epsilon")])
def test_bad_values_are_named_errors_where_the_config_is_resolved(override, key, capsys):
    k, v = parse_override(override)
    with pytest.raises(ConfigError, match=rf"{key}"):
        resolve_config("ddtp-linear", "mnist", "test", {k: v})
    rc = cli.main(["train", "--method", "ddtp-linear", "--dataset", "mnist", "--source", "synthetic",
                   "--out", "/nonexistent/never/created", "--set", override])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("tp: error: ") and key in err and repr(v) in err and "Traceback" not in err


def test_a_negative_seed_is_a_named_error(capsys):
    assert cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--seed", "-1",
                     "--out", "/nonexistent/never/created"]) == 2
    assert "seed must be an integer >= 0, got -1" in capsys.readouterr().err


def test_float32_optimiser_overflow_is_divergence_not_a_crash(tmp_path, capsys):
    p = {"w": torch.ones(3, dtype=torch.float32)}
    opt = Adam(p, lr=1e38, betas=(0.9, 0.999))
    opt.step({"w": torch.ones(3, dtype=torch.float32)})  # lr / (1 − β₁) = 1e39 > float32 max
    assert not torch.isfinite(p["w"]).any()
    out = tmp_path / "bp"
    rc = cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--epochs", "1",
                   "--out", str(out), "--set", "num_hidden=1", "--set", "size_hidden=8", "--set", "lr=1e38"])
    assert rc == 3
    s = json.loads((out / SUMMARY).read_text())
    assert s["status"] == "diverged" and s["config"]["double_precision"] is False and s["train_loss_last"] is None


@pytest.mark.slow
def test_bad_pipeline_overrides_fail_the_dry_run(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("overrides:\n  beta1: abc\n")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(REPO / "config" / "smoke.yaml"),
                          str(overlay)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "beta1 must be a finite number >= 0 and < 1, got 'abc'" in res.stdout + res.stderr


# --------------------------------------------------------------------- 5. Ctrl-C, then the same snakemake command
def test_the_default_profile_reruns_incomplete_jobs():
    """Snakemake reads profiles/default beside the Snakefile; with rerun-incomplete, the same command after a
    Ctrl-C redoes the interrupted jobs (tests/test_pipeline.py interrupts real runs and reruns the command).
    (Every official configuration still passes the value checks: tests/test_config.py resolves them all.)"""
    from snakemake.cli import parse_args

    for argv in (["--snakefile", str(REPO / "Snakefile"), "-n"],
                 ["--snakefile", str(REPO / "Snakefile"), "--profile", str(REPO / "slurm"), "-n"]):
        _, args = parse_args(argv)
        assert args.rerun_incomplete is True, argv


# -------------------------------------------------------------- 6. corrupt checkpoint / summary: raw tracebacks
@pytest.mark.parametrize("content", [b"", os.urandom(1000), "truncated"], ids=["empty", "random", "truncated"])
def test_a_corrupt_checkpoint_names_its_path(tmp_path, content, capsys):
    cfg = resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 2})
    out = tmp_path / "run"
    if content == "truncated":
        train(cfg, small_data(), 0, out, progress=False, log=quiet, keep_checkpoint=True)
        (out / SUMMARY).unlink()
        content = (out / CHECKPOINT).read_bytes()[:3000]
    out.mkdir(exist_ok=True)
    (out / CHECKPOINT).write_bytes(content)
    with pytest.raises(RunFolderError, match=rf"{out / CHECKPOINT} is corrupt or not a tp checkpoint .*delete it"):
        train(cfg, small_data(), 0, out, progress=False, log=quiet)
    rc = cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and str(out / CHECKPOINT) in err and "Traceback" not in err
    assert (out / CHECKPOINT).read_bytes() == content  # nothing else lost


@pytest.mark.parametrize("content,needle", [('{"status": "fini', "is corrupt"), ("[1, 2]", "is not a run summary")])
def test_a_corrupt_summary_names_its_path(tmp_path, content, needle):
    out = tmp_path / "run"
    out.mkdir()
    (out / SUMMARY).write_text(content)
    with pytest.raises(RunFolderError, match=rf"{out / SUMMARY} {needle}"):
        train(resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 1}), small_data(), 0, out,
              progress=False, log=quiet)


def test_tables_count_a_corrupt_summary_as_missing(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tables", REPO / "workflow" / "scripts" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    good, bad, odd = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    good.write_text(json.dumps({"tuning": "test", "method": "bp", "dataset": "mnist", "seed": 1, "status": "finished",
                                "test_error_at_best_val": 2.0}))
    bad.write_text('{"tuning": "te')
    odd.write_text("[]")
    runs = tables.load_runs([good, bad, odd])
    assert list(runs["seed"]) == [1]
    err = capsys.readouterr().err
    assert f"{bad} is corrupt" in err and f"{odd} is corrupt" in err and "counted as missing" in err


# ------------------------------------------------------------------------ 7. output location errors: tracebacks
def test_an_output_folder_under_a_file_is_a_named_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc = cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--epochs", "1",
                   "--out", str(tmp_path / "file" / "run"), "--set", "num_hidden=1", "--set", "size_hidden=8"])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot use the output folder {tmp_path / 'file' / 'run'}: Not a directory" in err


def test_a_read_only_output_folder_is_a_named_error(tmp_path, monkeypatch, capsys):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    rc = cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--epochs", "1",
                   "--out", str(tmp_path / "run"), "--set", "num_hidden=1", "--set", "size_hidden=8"])
    assert rc == 2 and "Read-only file system" in capsys.readouterr().err


def test_a_full_disk_is_a_named_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    cfg = resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 3})
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint: half written, then the disk is full
            Path(f).write_bytes(b"PK\x03\x04 partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 0 vs 1")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(RunFolderError, match=rf"cannot write {out / CHECKPOINT}: .*free space"):
        train(cfg, small_data(), 0, out, progress=False, log=quiet)
    # the first epoch's checkpoint and metrics.csv (written after each epoch), no partial file
    left = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
    assert left == [CHECKPOINT, "config.yaml", "metrics.csv"]
    assert [r["epoch"] for r in csv.DictReader(open(out / "metrics.csv"))] == ["1"]
    monkeypatch.undo()
    s = train(cfg, small_data(), 0, out, progress=False, log=quiet)  # resumes from the intact checkpoint
    assert s["status"] == "finished" and s["epochs_run"] == 3


def test_temporaries_of_killed_writers_are_removed(tmp_path, mnist):
    """kill -9 during a write leaves its unique temporary file: the next owner of the run folder removes it;
    in a data folder, one untouched for an hour (a live unpack keeps writing to its own)."""
    from tp.data.integrity import unique_temporary

    out = tmp_path / "run"
    out.mkdir()
    left = unique_temporary(out / CHECKPOINT)
    left.write_bytes(b"half a checkpoint")
    train(resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 1}), small_data(), 0, out, progress=False,
          log=quiet)
    assert not left.exists() and (out / SUMMARY).exists()
    raw = mnist / "MNIST" / "raw"
    old, fresh = unique_temporary(raw / IDX_FILES[0]), unique_temporary(raw / IDX_FILES[1])
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (0, 0))
    load_dataset("mnist", mnist, no_val_set=True)
    assert not old.exists() and fresh.exists()
