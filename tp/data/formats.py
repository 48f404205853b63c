"""The file formats of the image datasets: where each keeps its files, which files they are, how they are checked
and which torchvision class reads them (docs/algorithms.md#preprocessing).

A dataset's catalog entry names its format (:attr:`tp.catalog.ImageFiles.format`), and :mod:`tp.data` asks
the format, never the dataset's name: a new dataset in a format listed here is a catalog entry only; a new
format is one class here and its line in :data:`FORMATS`.

* ``idx``: the IDX files of MNIST and Fashion-MNIST, ``ROOT/<torchvision class>/raw/{train,t10k}-…-ubyte``,
  made whole and checked by :func:`tp.data.integrity.prepare_idx_folder` before torchvision reads them; the files the
  root lacks are taken from the dataset's operating-system package when it is installed (:mod:`tp.data.packages`).
* ``cifar-batches``: the pickled batches of CIFAR-10, ``ROOT/cifar-10-batches-py/``, with torchvision's MD5
  sums (skipped with ``verify_integrity=False``, a test hook).
"""

from __future__ import annotations

from pathlib import Path

from ..catalog import ImageFiles
from .integrity import IDX_FILES, prepare_idx_folder
from .packages import adopt, package_folder

__all__ = ["IdxFormat", "CifarBatches", "FORMATS"]


def _torchvision(spec: ImageFiles):
    from torchvision import datasets

    return getattr(datasets, spec.torchvision_class)


class IdxFormat:
    """MNIST-style IDX files."""

    def reader(self, spec: ImageFiles, verify_integrity: bool):
        """The torchvision dataset class that reads the files (the IDX files are checked by :meth:`prepare`)."""
        return _torchvision(spec)

    def where(self, spec: ImageFiles, root: Path) -> tuple[Path, str]:
        """(folder to fill, URL torchvision downloads from)."""
        return root / spec.torchvision_class / "raw", _torchvision(spec).mirrors[0]

    def files(self, spec: ImageFiles, root: Path) -> list[Path]:
        return [self.where(spec, root)[0] / f for f in IDX_FILES]

    def split_files(self, files: list[str], split: str) -> str:
        """The file(s) of one split (``training`` or ``test``), for messages."""
        prefix = "train" if split == "training" else "t10k"
        return " and ".join(f for f in files if f.rsplit("/", 1)[-1].startswith(prefix))

    def system_folder(self, spec: ImageFiles, root: Path) -> Path | None:
        """The folder of the dataset's operating-system package that the files the data root lacks come from:
        None when the root has them all, or no installed package holds them all (:mod:`tp.data.packages`)."""
        folder, names = self.expected(spec, root)
        if spec.system_package is None or all(any((folder / n).is_file() for n in alt) for alt in names):
            return None
        return package_folder(spec.system_package, names)

    def prepare(self, spec: ImageFiles, root: Path, download: bool) -> None:
        """Whole, checked plain files before torchvision reads them (:mod:`tp.data.integrity`): those the data root
        lacks unpacked from the dataset's installed package first (:func:`tp.data.packages.adopt`)."""
        folder, names = self.expected(spec, root)
        source = self.system_folder(spec, root)
        if source is not None:
            adopt(spec.system_package, source, folder, root, names, spec.shape[1:])
        prepare_idx_folder(folder, spec.shape[1:], download)

    def damaged(self, spec: ImageFiles, root: Path) -> list[str]:
        """Files that are there but fail the format's own check (the IDX check raises in :meth:`prepare`)."""
        return []

    def expected(self, spec: ImageFiles, root: Path) -> tuple[Path, list[tuple[str, ...]]]:
        """(folder, [alternative names of each file]) whose presence means the dataset is there (plain or .gz)."""
        gz = [name for name, _ in _torchvision(spec).resources]
        return self.where(spec, root)[0], [(n.removesuffix(".gz"), n) for n in gz]


class CifarBatches:
    """CIFAR-10's pickled batches with torchvision's MD5 sums."""

    def reader(self, spec: ImageFiles, verify_integrity: bool):
        cls = _torchvision(spec)
        if verify_integrity:
            return cls

        class Unverified(cls):
            """Without the MD5 sums of the files (a test hook): torchvision then only checks that the files
            exist; reading and parsing are unchanged."""

            train_list = [[name, None] for name, _ in cls.train_list]
            test_list = [[name, None] for name, _ in cls.test_list]
            meta = {**cls.meta, "md5": None}

        return Unverified

    def where(self, spec: ImageFiles, root: Path) -> tuple[Path, str]:
        cls = _torchvision(spec)
        return root / cls.base_folder, cls.url

    def files(self, spec: ImageFiles, root: Path) -> list[Path]:
        cls = _torchvision(spec)
        return [self.where(spec, root)[0] / f for f, _ in cls.train_list + cls.test_list]

    def split_files(self, files: list[str], split: str) -> str:
        return ", ".join(f for f in files if ("test" in f) == (split == "test"))

    def system_folder(self, spec: ImageFiles, root: Path) -> Path | None:
        """None: files in this format are read from the data root only (no package is looked for)."""
        return None

    def prepare(self, spec: ImageFiles, root: Path, download: bool) -> None:
        """Nothing before reading: torchvision checks the batches' MD5 sums itself."""

    def damaged(self, spec: ImageFiles, root: Path) -> list[str]:
        """Batch files that are there but fail torchvision's MD5 check."""
        from torchvision.datasets.utils import check_integrity

        cls, folder = _torchvision(spec), self.where(spec, root)[0]
        return [str(folder / f) for f, md5 in cls.train_list + cls.test_list
                if (folder / f).exists() and not check_integrity(str(folder / f), md5)]

    def expected(self, spec: ImageFiles, root: Path) -> tuple[Path, list[tuple[str, ...]]]:
        cls = _torchvision(spec)
        names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return self.where(spec, root)[0], [(n,) for n in names]


#: format name (:attr:`tp.catalog.ImageFiles.format`) → its reader
FORMATS = {"idx": IdxFormat(), "cifar-batches": CifarBatches()}
