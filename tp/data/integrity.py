"""Integrity of the dataset files: safe unpacking, structure and size checks, and SHA-256 provenance.

* MNIST-style IDX files (MNIST, Fashion-MNIST): a ``.gz`` is unpacked to a unique temporary name in the same
  folder, checked, and renamed over the plain file, so a killed unpack never leaves a partial file and two
  unpacks at once cannot see each other's half-written output.  A plain file whose header or size is wrong
  is unpacked again from its ``.gz``; without one it is a named error.  A corrupt ``.gz`` is a named error.
  :func:`install_idx_file` does the same from a file elsewhere (an operating-system package's, :mod:`tp.data.packages`).
* Every dataset: the numbers of images and labels of each split must agree with each other and with the
  dataset's known sizes (``num_train`` / ``num_test`` of :data:`tp.catalog.FILES`), so a test file
  copied over the training file, or train and test swapped, never trains.  (CIFAR-10's batch files are also
  checked against torchvision's MD5 sums; the official MNIST ``.gz`` files are MD5-checked by torchvision
  when it downloads them.)
* :func:`files_sha256`: the SHA-256 of each file a run read, for its ``summary.json``; computed once per
  data root and cached there (``.tp-sha256.json``, keyed by path, size and modification time).

Every failure is a :class:`DatasetCorruptError` (a :class:`DatasetNotFoundError`: exit status 4) that names
the file, what was expected and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import struct
import re
import secrets
import time
import zlib
from pathlib import Path

__all__ = ["DatasetNotFoundError", "DatasetCorruptError", "IDX_FILES", "idx_problem", "prepare_idx_folder",
           "install_idx_file",
           "check_counts", "files_sha256", "SHA256_CACHE", "unique_temporary",
           "remove_temporaries"]

#: the four files of an MNIST-style dataset (torchvision's names), in the order train images, train labels,
#: test images, test labels
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
SHA256_CACHE = ".tp-sha256.json"
_UBYTE = 0x08  # IDX data type of every MNIST-style file


class DatasetNotFoundError(RuntimeError):
    """The dataset's files are missing (downloads off) or the download failed."""


class DatasetCorruptError(DatasetNotFoundError):
    """A dataset file is truncated, corrupt, or not the file its name says (wrong counts)."""


def idx_problem(path: Path, image_shape: tuple[int, int] = (28, 28), kind: str | None = None) -> str | None:
    """What is wrong with the IDX file ``path`` (None: its header is right and its size matches it).
    ``kind``: ``images`` (samples of ``image_shape``) or ``labels``; default: from the file name."""
    kind = kind or ("images" if "-images-" in path.name else "labels")
    expected = tuple(image_shape) if kind == "images" else ()  # the dims after the sample count
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4 + 4 * (1 + len(expected)))
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if len(head) < 4:
        return f"is {size} bytes long, shorter than an IDX header"
    magic = struct.unpack(">I", head[:4])[0]
    if magic >> 8 != _UBYTE or magic & 0xFF != 1 + len(expected):
        return (f"is not an IDX file of {1 + len(expected)}-dimensional unsigned bytes (magic number "
                f"{magic:#010x}, expected {(_UBYTE << 8) + 1 + len(expected):#010x})")
    if len(head) < 4 + 4 * (1 + len(expected)):
        return f"is {size} bytes long, shorter than its header"
    dims = struct.unpack(f">{1 + len(expected)}I", head[4:])
    if tuple(dims[1:]) != expected:
        return f"holds samples of shape {tuple(dims[1:])}, expected {expected}"
    want = len(head) + dims[0] * math.prod(expected)
    if size != want:
        return f"is {size} bytes long; its header ({dims[0]} samples) needs {want} (truncated?)"
    return None


def unique_temporary(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process or thread uses (PID and a random part):
    written there, then renamed over ``path``, a file is never seen half-written."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


_TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


def remove_temporaries(folder: Path, older_than_s: float = 0.0) -> None:
    """Remove the temporary files of :func:`unique_temporary` that a killed process left in ``folder``
    (those not modified for ``older_than_s`` seconds: a live writer keeps touching its file)."""
    now = time.time()
    for path in folder.iterdir() if folder.is_dir() else []:
        if _TEMPORARY.match(path.name):
            try:
                if now - path.stat().st_mtime >= older_than_s:
                    path.unlink()
            except OSError:
                pass


def _unpack(gz: Path, plain: Path, image_shape, fix: str | None = None) -> None:
    """``gz`` → ``plain`` through a unique temporary file in the same folder (renamed when complete); a plain
    ``gz`` (no ``.gz`` suffix) is copied the same way.  ``fix``: what a damaged ``gz`` asks the user to do
    (default: delete it and download it again)."""
    tmp = unique_temporary(plain)
    opener = gzip.open if gz.suffix == ".gz" else open
    try:
        with open(tmp, "xb") as dst, opener(gz, "rb") as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        problem = idx_problem(Path(tmp), image_shape, "images" if "-images-" in plain.name else "labels")
        if problem is not None:
            raise DatasetCorruptError(f"{gz} {'unpacks to a file that ' if opener is gzip.open else ''}{problem}; "
                                      f"{fix or f'delete {gz} and download it again (--download)'}")
        os.replace(tmp, plain)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetCorruptError(f"{gz} is corrupt or truncated ({type(exc).__name__}: {exc}); "
                                  f"{fix or 'delete it and download it again (--download)'}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def install_idx_file(source: Path, plain: Path, image_shape: tuple[int, int], fix: str) -> None:
    """The IDX file ``source`` (``.gz`` or plain, e.g. in a read-only folder elsewhere) as the checked plain file
    ``plain``, written atomically; a damaged ``source`` is a :class:`DatasetCorruptError` that says ``fix``."""
    _unpack(Path(source), Path(plain), image_shape, fix)


def prepare_idx_folder(folder: Path, image_shape: tuple[int, int] = (28, 28), download: bool = False) -> None:
    """Make the plain IDX files of ``folder`` whole before torchvision reads them: unpack the ``.gz`` of a
    missing or damaged plain file; a damaged plain file without a ``.gz`` is an error (with ``download``, a
    damaged file is removed instead so that torchvision fetches it again).  Missing files are left to
    torchvision (its "not found" / download path)."""
    if not folder.is_dir():
        return
    remove_temporaries(folder, older_than_s=3600)  # unpacks killed long ago
    for name in IDX_FILES:
        plain, gz = folder / name, folder / f"{name}.gz"
        problem = idx_problem(plain, image_shape) if plain.exists() else "is missing"
        if problem is None:
            continue
        if gz.exists():
            try:
                _unpack(gz, plain, image_shape)
                continue
            except DatasetCorruptError:
                if not download:
                    raise
                gz.unlink(missing_ok=True)  # torchvision downloads it again (and checks its MD5)
        if plain.exists():
            if download:
                plain.unlink()
                continue
            raise DatasetCorruptError(f"{plain} {problem}; delete it and download the dataset again "
                                      f"(--download), or put the official file there")


def check_counts(dataset: str, splits: dict[str, tuple[str, int, int, int]]) -> None:
    """``splits``: split name → (its files, images read, labels read, the dataset's known size)."""
    known = {split: n for split, (_, _, _, n) in splits.items()}
    for split, (files, images, labels, size) in splits.items():
        if images != labels:
            raise DatasetCorruptError(f"{dataset} {split} set: {images} images but {labels} labels in {files}; "
                                      f"the files do not belong together: replace them with the official ones")
        if images != size:
            other = [s for s, n in known.items() if s != split and n == images]
            hint = f" (the size of the {other[0]} set: are files swapped or copied?)" if other else ""
            raise DatasetCorruptError(f"{dataset} {split} set: {files} hold(s) {images} samples, expected {size}"
                                      f"{hint}; replace them with the official files (delete them and run "
                                      f"with --download)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


_MEMORY: dict[tuple[str, int, int], str] = {}


def files_sha256(root: Path, paths: list[Path]) -> dict[str, str]:
    """``{path relative to root: SHA-256}``; cached in ``root/.tp-sha256.json`` (and in memory when the data
    root is read-only), so each file is hashed once until it changes (size or modification time)."""
    root = Path(root)
    cache_file = root / SHA256_CACHE
    try:
        cache = json.loads(cache_file.read_text())
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    out, changed = {}, False
    for path in paths:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        entry = cache.get(rel)
        if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns \
                and isinstance(entry.get("sha256"), str):
            out[rel] = entry["sha256"]
        else:
            out[rel] = _MEMORY.get(key) or _sha256(path)
            cache[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": out[rel]}
            changed = True
        _MEMORY[key] = out[rel]
    if changed:
        try:
            tmp = unique_temporary(cache_file)
            try:
                with open(tmp, "x") as f:
                    json.dump(cache, f, indent=1, sort_keys=True)
                os.replace(tmp, cache_file)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError:  # a read-only data root: the in-memory cache serves this process
            pass
    return out
