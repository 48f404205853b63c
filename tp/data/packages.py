"""Dataset files that an operating-system package installs, read when the data root lacks them.

Debian/Ubuntu's ``dataset-fashion-mnist`` puts the four Fashion-MNIST IDX files (``.gz``) into
``/usr/share/datasets/fashion-mnist/``; a dataset's package is its catalog entry's
:attr:`tp.catalog.ImageFiles.system_package`.  The data root stays the first choice: only the files it lacks
(neither plain nor ``.gz``) are taken from the package, and only when one of the package's folders holds every
file of the dataset.  They are unpacked into the data root, where torchvision reads them (the package's folder
is read-only), checked like any other file (:func:`tp.data.integrity.install_idx_file`), and recorded in
``ROOT/.tp-origin.json`` with the SHA-256 of the file written.  A run's summary then names, in ``data_origin``,
the package file each file it read came from (:func:`origins`); a file replaced since no longer matches its
record and counts as the data root's own.

A package may recompress the ``.gz`` files, whose bytes (and MD5 sums) then differ from the published archives'
while the unpacked files are the release's: tp checks the unpacked files (IDX header, size, counts against the
dataset's known sizes) and records their SHA-256, never a ``.gz`` MD5 sum.

``TP_SYSTEM_ROOT`` (default ``/``) is the prefix under which the packages' folders are looked for: the tests
write their own package folders under a temporary prefix and never read an installed package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..catalog import SystemPackage
from .integrity import DatasetNotFoundError, files_sha256, install_idx_file, unique_temporary

__all__ = ["ORIGIN_RECORD", "SYSTEM_ROOT_VARIABLE", "package_folders", "package_folder", "describe", "install_hint",
           "adopt", "origins"]

#: the record of the files taken from a package, in the data root: {file relative to the root: its origin}
ORIGIN_RECORD = ".tp-origin.json"
#: the environment variable that moves the packages' folders under another prefix (tests)
SYSTEM_ROOT_VARIABLE = "TP_SYSTEM_ROOT"


def package_folders(package: SystemPackage) -> list[Path]:
    """The folders where ``package`` installs its files, under ``TP_SYSTEM_ROOT`` (default ``/``)."""
    prefix = Path(os.environ.get(SYSTEM_ROOT_VARIABLE) or "/")
    return [prefix / Path(folder).relative_to(Path(folder).anchor) for folder in package.folders]


def _holds(folder: Path, names: list[tuple[str, ...]]) -> bool:
    return all(any((folder / n).is_file() for n in alternatives) for alternatives in names)


def package_folder(package: SystemPackage | None, names: list[tuple[str, ...]]) -> Path | None:
    """The first folder of ``package`` that holds every file (one of each file's alternative names: plain or
    ``.gz``), or None (no package, or not installed)."""
    if package is None:
        return None
    return next((folder for folder in package_folders(package) if _holds(folder, names)), None)


def describe(package: SystemPackage) -> str:
    """``Debian/Ubuntu package dataset-fashion-mnist``."""
    return f"{package.distributions} package {package.name}"


def install_hint(package: SystemPackage) -> str:
    """The route through the package, for messages: what to install and where its files are read from."""
    return (f"install the {describe(package)} ({package.install}): tp reads its files from "
            f"{' or '.join(str(f) for f in package_folders(package))} when the data root lacks them")


def _read_record(root: Path) -> dict:
    try:
        record = json.loads((root / ORIGIN_RECORD).read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def adopt(package: SystemPackage, source: Path, folder: Path, root: Path, names: list[tuple[str, ...]],
          image_shape: tuple[int, int]) -> list[Path]:
    """Unpack into ``folder`` (under the data root ``root``) the files it lacks, from the package's folder
    ``source``; ``names``: each file's alternative names, the plain one first (the name written).  Records
    each file written in ``root/.tp-origin.json`` and returns them.  A damaged package file is a
    :class:`~tp.data.integrity.DatasetCorruptError`, a data root that cannot be written a
    :class:`~tp.data.integrity.DatasetNotFoundError` (exit status 4 of ``tp``)."""
    try:
        return _adopt(package, source, folder, root, names, image_shape)
    except DatasetNotFoundError:
        raise
    except OSError as exc:
        raise DatasetNotFoundError(f"cannot unpack the files of the {describe(package)} from {source} into "
                                   f"{folder} ({exc}); give a writable --data-root") from None


def _adopt(package, source, folder, root, names, image_shape) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[Path, Path] = {}  # file written → the package's file it came from
    for alternatives in names:
        if any((folder / n).is_file() for n in alternatives):
            continue  # the data root's own file comes first
        src = next(source / n for n in alternatives if (source / n).is_file())
        install_idx_file(src, folder / alternatives[0], image_shape,
                         fix=f"reinstall the package ({package.installer} --reinstall {package.name}), or put the "
                             f"official file into {folder}")
        written[folder / alternatives[0]] = src
    if written:
        digests = files_sha256(root, list(written))  # cached: the run's own SHA-256 record reads them again
        record = _read_record(root)
        for path, src in written.items():
            rel = path.relative_to(root).as_posix()
            record[rel] = {"source": str(src), "package": describe(package), "sha256": digests[rel]}
        tmp = unique_temporary(root / ORIGIN_RECORD)
        try:
            with open(tmp, "x") as f:
                json.dump(record, f, indent=1, sort_keys=True)
            os.replace(tmp, root / ORIGIN_RECORD)
        finally:
            tmp.unlink(missing_ok=True)
    return list(written)


def origins(root: Path, sha256: dict[str, str]) -> dict[str, str] | None:
    """Of the files a run read (``sha256``: ``{file relative to root: SHA-256}``), those taken from a package whose
    content is still the one recorded: ``{file: "SOURCE (Debian/Ubuntu package NAME)"}``; None when every file is
    the data root's own."""
    record = _read_record(Path(root))
    out = {rel: f"{entry['source']} ({entry['package']})" for rel, digest in sha256.items()
           if isinstance(entry := record.get(rel), dict) and entry.get("sha256") == digest
           and isinstance(entry.get("source"), str) and isinstance(entry.get("package"), str)}
    return out or None
