"""Datasets as tensors on the training device (docs/algorithms.md#validation-split-and-minibatches,
docs/algorithms.md#student-teacher-data, docs/algorithms.md#preprocessing).

Image datasets are read once through ``torchvision.datasets`` (MNIST, Fashion-MNIST, CIFAR-10),
preprocessed as in the paper (docs/algorithms.md#preprocessing) and kept as flat tensors; minibatches are index
selections from a shuffled permutation, so no per-sample transform runs during training.

* MNIST / Frozen-MNIST: x/255 then (x − 0.1307)/0.3081;  Fashion-MNIST: x/255 only;
  CIFAR-10: x/255 then (x − 0.5)/0.5, flattened channel-major (C, H, W).
  The arithmetic is done in float32 (as ``ToTensor``/``Normalize`` do) and then cast to the run's dtype.
* Validation: 5,000 training samples held out by a seeded random permutation (``random_split``
  semantics: the last 5,000 of the permutation), or none (``no_val_set``).
* ``cifar10-cnn``: the CIFAR-10 data with the same preprocessing, kept as images (N, 3, 32, 32) for the
  CNN of docs/algorithms.md#the-cnn-table-3 (a dataset whose catalog entry's ``input_shape`` is an image).
* ``source="synthetic"``: inputs and learnable labels of the right shapes, generated from a seed,
  no files: everything downstream runs offline.
* :func:`student_teacher`: the synthetic regression data of the toy experiments
  (docs/algorithms.md#student-teacher-data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .. import catalog
from ..catalog import ImageFiles
from ..core.random import randn, rand_uniform
from ..errors import unknown
from ..nets.mlp import MLP
from .formats import FORMATS
from .integrity import DatasetCorruptError, DatasetNotFoundError, check_counts, files_sha256
from .packages import install_hint, origins

__all__ = ["DataSplits", "load_dataset", "student_teacher", "DatasetNotFoundError", "DatasetCorruptError",
           "synthetic_classification", "validation_split", "dataset_files"]


# The facts of every dataset are its tp.catalog entry: the files it reads (Frozen-MNIST reads MNIST's,
# docs/algorithms.md#frozen-mnist;
# cifar10-cnn CIFAR-10's, docs/algorithms.md#the-cnn-table-3), their format, image shape, normalisation and sizes
# (checked on every load by
# tp.data.integrity), and its input shape (images (N, C, H, W) for the CNN, else flat (N, C·H·W) vectors,
# docs/algorithms.md#preprocessing).


@dataclass
class DataSplits:
    """Flat inputs (N, n_0) in the run's dtype and int64 labels (N,) (or targets (N, n_out)).

    *Replica splits* (several seeds trained together, each with its own validation split): ``train_index``
    (R, n_train) and ``val_index`` (R, n_val) select, per replica, rows of the shared pools ``train_x`` /
    ``val_x`` (the same tensors: the full training set), so no replica's data is copied.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    val_x: Tensor | None = None
    val_y: Tensor | None = None
    train_index: Tensor | None = None
    val_index: Tensor | None = None
    #: where the data came from: ``{"data_source": "real" | "synthetic", "data_sha256": {file: digest} | None,
    #: "data_origin": {file: package file} | None}`` (None: tensors not read from dataset files, recorded as
    #: synthetic)
    provenance: dict | None = None

    def summary_fields(self) -> dict:
        """The provenance a run's ``summary.json`` records: ``data_source`` is ``real`` only for data read
        from checked dataset files (with the SHA-256 of each), ``synthetic`` for anything else;
        ``data_origin`` names, for the files unpacked from an operating-system package (:mod:`tp.data.packages`),
        the package's file each came from (None: every file is the data root's own)."""
        p = self.provenance or {}
        return {"data_source": p.get("data_source", "synthetic"), "data_sha256": p.get("data_sha256"),
                "data_origin": p.get("data_origin")}

    @property
    def input_size(self) -> int:
        return self.train_x.shape[-1]

    @property
    def num_train(self) -> int:
        """Training samples (of each replica)."""
        return self.train_index.shape[-1] if self.train_index is not None else self.train_x.shape[0]

    def to(self, device=None, dtype: torch.dtype | None = None) -> "DataSplits":
        """Move to ``device``; cast the floating-point tensors (inputs, regression targets) to ``dtype``."""
        def move(t):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)

        train_x, train_y = move(self.train_x), move(self.train_y)
        shared = self.val_x is self.train_x  # replica splits: one pool
        return DataSplits(train_x, train_y, move(self.test_x), move(self.test_y),
                          train_x if shared else move(self.val_x), train_y if shared else move(self.val_y),
                          move(self.train_index), move(self.val_index), self.provenance)

    def replica_splits(self, val_size: int, generators) -> "DataSplits":
        """Per-replica validation splits of this (unsplit) training set: replica r holds out exactly the
        samples that :func:`validation_split` with ``generators[r]`` holds out in a single run."""
        if self.val_x is not None or self.train_index is not None:
            raise ValueError("replica_splits needs an unsplit training set (loaded with no_val_set=True)")
        pairs = [validation_split(self.train_x.shape[0], val_size, g) for g in generators]
        device = self.train_x.device
        return DataSplits(self.train_x, self.train_y, self.test_x, self.test_y, self.train_x, self.train_y,
                          torch.stack([t for t, _ in pairs]).to(device), torch.stack([v for _, v in pairs]).to(device),
                          self.provenance)


def validation_split(n: int, val_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(train indices, validation indices): ``random_split`` semantics, the last ``val_size`` entries of a
    seeded permutation of the n training samples are the validation set."""
    if val_size >= n:
        raise ValueError(f"validation split of {val_size} samples needs more than {n} training samples")
    perm = torch.randperm(n, generator=generator)
    return perm[: n - val_size], perm[n - val_size:]


# ------------------------------------------------------------------------------------ torchvision
def dataset_files(name: str, root: str | os.PathLike) -> list[Path]:
    """The files a real dataset is read from (their SHA-256 go into each run's summary)."""
    spec = catalog.dataset(name).image
    return FORMATS[spec.format].files(spec, Path(root))


def _split_files(spec: ImageFiles, root: Path, split: str) -> str:
    """The file(s) of one split, for messages."""
    fmt = FORMATS[spec.format]
    return fmt.split_files([str(f) for f in fmt.files(spec, Path(root))], split)


def _read_torchvision(spec: ImageFiles, root: Path, download: bool, verify_integrity: bool):
    fmt = FORMATS[spec.format]  # tp.data.formats: where the files are, their checks, the torchvision reader
    cls = fmt.reader(spec, verify_integrity)
    folder, url = fmt.where(spec, root)
    fmt.prepare(spec, root, download)
    package = f"; or {install_hint(spec.system_package)}" if spec.system_package else ""
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as exc:
        damaged = fmt.damaged(spec, root) if verify_integrity else []
        if damaged and not download:
            raise DatasetCorruptError(f"{spec.name}: {', '.join(damaged)} fail(s) the MD5 check of the official "
                                      f"files; delete them and download again (--download)") from exc
        if download:
            raise DatasetNotFoundError(
                f"downloading {spec.name} failed ({exc}); download it by hand from {url} into {folder} "
                f"(or point --data-root at a folder that holds it){package}") from exc
        raise DatasetNotFoundError(
            f"{spec.name} not found in {folder} (downloads are off). Put the dataset files there "
            f"(torchvision downloads them from {url}), or allow downloads (--download){package}") from exc
    except Exception as exc:  # network errors of the download
        raise DatasetNotFoundError(
            f"downloading {spec.name} from {url} into {folder} failed: {exc}{package}") from exc
    return train, test


def _to_flat(spec: ImageFiles, data, dtype: torch.dtype, flat: bool = True) -> Tensor:
    """ToTensor + Normalize (float32 arithmetic), then the run's dtype: (N, n_0) flattened channel-major, or
    the images (N, C, H, W) with ``flat=False`` (the CNN)."""
    x = torch.as_tensor(data)
    if x.ndim == 4 and x.shape[-1] == 3:  # CIFAR numpy (N, H, W, C) -> (N, C, H, W)
        x = x.permute(0, 3, 1, 2)
    x = x.reshape(x.shape[0], -1).to(torch.float32) / 255.0  # ToTensor (float32)
    if spec.mean is not None:
        x = (x - spec.mean) / spec.std  # Normalize (float32)
    return (x if flat else x.reshape(x.shape[0], *spec.shape)).to(dtype)


def synthetic_classification(num_train: int, num_test: int, input_size: int, num_classes: int = 10,
                             seed: int = 0, dtype=torch.float64) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gaussian inputs labelled by a fixed random linear teacher (argmax): learnable, no files."""
    g = torch.Generator().manual_seed(seed)
    teacher = randn((input_size, num_classes), g, dtype)
    x = randn((num_train + num_test, input_size), g, dtype)
    y = (x @ teacher).argmax(-1)
    return x[:num_train], y[:num_train], x[num_train:], y[num_train:]


def load_dataset(name: str, root: str | os.PathLike = "data", *, download: bool = False,
                 source: str = "real", no_val_set: bool = False,
                 split_generator: "torch.Generator | list[torch.Generator] | None" = None,
                 dtype: torch.dtype = torch.float64, device=None, verify_integrity: bool = True,
                 synthetic_sizes: tuple[int, int] = (1200, 400), synthetic_seed: int = 0,
                 val_size: int | None = None) -> DataSplits:
    """Load an image dataset as flat tensors on ``device``.

    Args:
        name: ``mnist``, ``frozen-mnist``, ``fashion-mnist``, ``cifar10`` or ``cifar10-cnn`` (CIFAR-10 as
            (N, 3, 32, 32) images for the CNN).
        root: torchvision root folder.  download: let torchvision download missing files.
        source: ``real`` (torchvision) or ``synthetic`` (no files; ``synthetic_sizes`` train/test samples).
        no_val_set: train on the whole training set (the ``train`` tuning).
        split_generator: generator of the validation split permutation (required with a validation set);
            a sequence of generators gives replica splits (:meth:`DataSplits.replica_splits`), one per seed.
        verify_integrity: the checks of the files (:mod:`tp.data.integrity`: image and label counts against each
            other and the known sizes; CIFAR-10's MD5 sums); ``False`` is a test hook only (the IDX files'
            headers and sizes are checked, and damaged ones re-unpacked, either way).
        val_size: validation samples (default 5,000 for real data, 1/6 of the synthetic training set).
    """
    entry = catalog.dataset(name)  # an unknown name: ConfigError listing the datasets
    if source not in ("real", "synthetic"):
        raise unknown("data source", source, ("real", "synthetic"))
    spec, images = entry.image, len(entry.input_shape) == 3
    if source == "synthetic":
        n0 = spec.shape[0] * spec.shape[1] * spec.shape[2]
        train_x, train_y, test_x, test_y = synthetic_classification(*synthetic_sizes, n0, spec.num_classes,
                                                                    synthetic_seed, dtype)
        if images:  # the same values as images (channel-major, like the flattening of real ones)
            train_x, test_x = train_x.reshape(-1, *spec.shape), test_x.reshape(-1, *spec.shape)
        val_size = val_size or max(1, synthetic_sizes[0] // 6)
        provenance = {"data_source": "synthetic", "data_sha256": None, "data_origin": None}
    else:
        train, test = _read_torchvision(spec, Path(root), download, verify_integrity)
        if verify_integrity:  # image and label counts against each other and the known sizes
            check_counts(spec.name, {split: (_split_files(spec, Path(root), split), len(d.data), len(d.targets), n)
                                     for split, d, n in (("training", train, spec.num_train),
                                                         ("test", test, spec.num_test))})
        digests = files_sha256(Path(root), dataset_files(name, root))
        provenance = {"data_source": "real", "data_sha256": digests, "data_origin": origins(Path(root), digests)}
        flat = not images
        train_x, test_x = _to_flat(spec, train.data, dtype, flat), _to_flat(spec, test.data, dtype, flat)
        train_y, test_y = torch.as_tensor(train.targets).long(), torch.as_tensor(test.targets).long()
        val_size = val_size or spec.val_size  # docs/algorithms.md#validation-split-and-minibatches (tp.catalog)
    val_x = val_y = None
    if not no_val_set:
        if split_generator is None:
            raise ValueError("a validation split needs a split_generator (seeded from the run's seed)")
        if not isinstance(split_generator, torch.Generator):  # several seeds trained together
            return DataSplits(train_x, train_y, test_x, test_y, provenance=provenance).replica_splits(
                val_size, split_generator).to(device)
        train_idx, val_idx = validation_split(train_x.shape[0], val_size, split_generator)
        train_x, train_y, val_x, val_y = train_x[train_idx], train_y[train_idx], train_x[val_idx], train_y[val_idx]
    return DataSplits(train_x, train_y, test_x, test_y, val_x, val_y, provenance=provenance).to(device)


def student_teacher(num_in: int, num_out: int, num_train: int, num_test: int, num_val: int, seed: int,
                    dtype: torch.dtype = torch.float64, hidden: tuple[int, ...] = (1000,) * 4) -> DataSplits:
    """Student–teacher regression data (docs/algorithms.md#student-teacher-data): x ~ U(−1, 1)^{n_0}, drawn train, test,
    val in this order; y = teacher(x) with a ReLU teacher n_0 → 1000 ×4 → n_out (Xavier normal, gain 3, zero biases)."""
    g = torch.Generator().manual_seed(seed)
    xs = [rand_uniform((n, num_in), -1.0, 1.0, g, dtype) for n in (num_train, num_test, num_val)]
    teacher = MLP.build([num_in, *hidden, num_out], hidden_activation="relu", loss="mse", dtype=dtype)
    params = teacher.init_params(g, init="teacher")
    with torch.no_grad():
        ys = [teacher.forward(params, x).output for x in xs]
    return DataSplits(xs[0], ys[0], xs[1], ys[1], xs[2] if num_val else None, ys[2] if num_val else None)
