"""Dataset loading through the real torchvision code, on small files the test writes
(docs/algorithms.md#preprocessing)."""

from __future__ import annotations

import pickle
import struct
from dataclasses import replace
from urllib.error import URLError

import numpy as np
import pytest
import torch

from tp.catalog import FILES
from tp.data import DatasetNotFoundError, load_dataset, student_teacher

#: (training, test) samples of the small files these tests write (the real datasets' sizes are checked)
FAKE_SIZES = {"mnist": (40, 12), "fashion-mnist": (40, 12), "cifar10": (30, 6)}


@pytest.fixture(autouse=True)
def fake_known_sizes(monkeypatch):
    """The loader checks the counts against the datasets' known sizes: here those of the small files."""
    for name, (n_train, n_test) in FAKE_SIZES.items():
        monkeypatch.setitem(FILES, name, replace(FILES[name], num_train=n_train, num_test=n_test))


def write_idx(path, array: np.ndarray) -> None:
    """IDX (LeCun) file: magic 0x0000 08 ndim, big-endian int32 dims, uint8 data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 + array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist_like(root, folder, n_train=40, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("name,folder,mean,std", [("mnist", "MNIST", 0.1307, 0.3081),
                                                  ("frozen-mnist", "MNIST", 0.1307, 0.3081),
                                                  ("fashion-mnist", "FashionMNIST", 0.0, 1.0)])
def test_mnist_like_idx_files_are_parsed_and_normalised(tmp_path, name, folder, mean, std):
    arrays = write_mnist_like(tmp_path, folder)
    d = load_dataset(name, tmp_path, no_val_set=True, dtype=torch.float64)
    images, labels = arrays["train"]
    expected = ((torch.tensor(images, dtype=torch.float32).reshape(40, -1) / 255 - mean) / std).double()
    assert d.train_x.shape == (40, 784) and d.train_x.dtype == torch.float64
    torch.testing.assert_close(d.train_x, expected, rtol=0, atol=1e-6)
    assert torch.equal(d.train_y, torch.tensor(labels))
    assert d.test_x.shape == (12, 784) and d.val_x is None


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    write_mnist_like(tmp_path, "MNIST")
    a = load_dataset("mnist", tmp_path, split_generator=torch.Generator().manual_seed(1), val_size=10)
    b = load_dataset("mnist", tmp_path, split_generator=torch.Generator().manual_seed(1), val_size=10)
    c = load_dataset("mnist", tmp_path, split_generator=torch.Generator().manual_seed(2), val_size=10)
    assert a.train_x.shape[0] == 30 and a.val_x.shape[0] == 10
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    full = load_dataset("mnist", tmp_path, no_val_set=True)
    rows = {tuple(r.tolist()) for r in full.train_x}
    assert {tuple(r.tolist()) for r in torch.cat([a.train_x, a.val_x])} == rows


def test_gzipped_mnist_files_are_decompressed(tmp_path):
    import gzip, shutil
    write_mnist_like(tmp_path, "MNIST")
    for f in (tmp_path / "MNIST" / "raw").iterdir():
        with open(f, "rb") as src, gzip.open(f"{f}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        f.unlink()
    assert load_dataset("mnist", tmp_path, no_val_set=True).train_x.shape == (40, 784)


def write_cifar(root, n_per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072)).astype(np.uint8)  # row = C,H,W major
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        batches[name] = (data, labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)
    return batches


def test_cifar10_pickles_are_parsed_channel_major(tmp_path):
    batches = write_cifar(tmp_path)
    # the files are not the real archives: bypass only the MD5 check (documented test hook)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10", tmp_path, no_val_set=True)
    d = load_dataset("cifar10", tmp_path, no_val_set=True, verify_integrity=False)
    assert d.train_x.shape == (30, 3072) and d.test_x.shape == (6, 3072)
    data, labels = batches["data_batch_1"]
    expected = ((torch.tensor(data[:6], dtype=torch.float32) / 255 - 0.5) / 0.5).double()
    torch.testing.assert_close(d.train_x[:6], expected, rtol=0, atol=1e-6)
    assert d.train_y[:6].tolist() == labels
    assert d.train_x.min() >= -1 and d.train_x.max() <= 1


def test_cifar10_cnn_keeps_the_images(tmp_path):
    """cifar10-cnn: the same preprocessed CIFAR-10 values as (N, 3, 32, 32) images for the CNN
    (docs/algorithms.md#preprocessing)."""
    write_cifar(tmp_path)
    flat = load_dataset("cifar10", tmp_path, no_val_set=True, verify_integrity=False)
    img = load_dataset("cifar10-cnn", tmp_path, no_val_set=True, verify_integrity=False)
    assert img.train_x.shape == (30, 3, 32, 32) and img.test_x.shape == (6, 3, 32, 32)
    assert torch.equal(img.train_x.flatten(1), flat.train_x) and torch.equal(img.train_y, flat.train_y)
    assert torch.equal(img.test_x.flatten(1), flat.test_x)
    synth = load_dataset("cifar10-cnn", source="synthetic", split_generator=torch.Generator().manual_seed(0))
    synth_flat = load_dataset("cifar10", source="synthetic", split_generator=torch.Generator().manual_seed(0))
    assert synth.train_x.shape[1:] == (3, 32, 32) and torch.equal(synth.val_x.flatten(1), synth_flat.val_x)


@pytest.mark.parametrize("name,folder,url", [("mnist", "MNIST/raw", "ossci-datasets"),
                                             ("fashion-mnist", "FashionMNIST/raw", "fashion-mnist"),
                                             ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz")])
def test_missing_dataset_names_folder_and_url(tmp_path, name, folder, url):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, tmp_path, download=False, no_val_set=True)
    msg = str(err.value)
    assert str(tmp_path / folder) in msg and url in msg and "--download" in msg


def test_failed_download_names_folder_and_url(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def offline(*args, **kwargs):
        raise URLError("network unreachable")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", tmp_path, download=True, no_val_set=True)
    assert "cifar-10-python.tar.gz" in str(err.value) and "network unreachable" in str(err.value)


def test_unknown_dataset_and_source_list_the_choices():
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="synthetic"):
        load_dataset("mnist", source="hdf5")


def test_synthetic_source_has_the_real_shapes_and_is_seeded():
    a = load_dataset("cifar10", source="synthetic", split_generator=torch.Generator().manual_seed(0))
    b = load_dataset("cifar10", source="synthetic", split_generator=torch.Generator().manual_seed(0))
    assert a.train_x.shape[1] == 3072 and set(a.train_y.unique().tolist()) <= set(range(10))
    assert len(a.train_y.unique()) > 5
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)


def test_student_teacher_data():
    d = student_teacher(6, 2, num_train=50, num_test=20, num_val=5, seed=7, hidden=(40, 40))
    assert d.train_x.shape == (50, 6) and d.train_y.shape == (50, 2) and d.val_x.shape == (5, 6)
    assert d.train_x.abs().max() <= 1
    d2 = student_teacher(6, 2, num_train=50, num_test=20, num_val=5, seed=7, hidden=(40, 40))
    assert torch.equal(d.train_y, d2.train_y)
    assert d.train_y.std() > 0.5  # gain-3 teacher: a strongly nonlinear, non-trivial map
