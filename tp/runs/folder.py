"""A run's output folder: one owner at a time, whole files only, readable errors.

* :func:`hold_run_folders`: creates each folder and holds an advisory lock on it (``fcntl.flock`` on
  ``.tp.lock``, which records the holder's PID) for as long as a process trains into it; a second process
  gets :class:`RunFolderBusy` at once, naming the folder and the holder.  The kernel drops the lock when the
  holder ends, however it ends (``kill -9`` included): a stale lock file never blocks.
* :func:`atomic_write`: every output is written under a unique temporary name in the same folder and renamed
  over its final name, so a reader (or a crash) never sees a half-written file; a failed write (disk full,
  read-only file system) removes its temporary file and raises :class:`RunFolderError` naming the path.
* :func:`read_checkpoint` / :func:`read_summary`: a truncated, empty or foreign ``checkpoint.pt`` or
  ``summary.json`` is a :class:`RunFolderError` with the path and what to do, never a bare traceback.

The CLI turns :class:`RunFolderError` into exit status 2 (see :mod:`tp.cli`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from ..data.integrity import remove_temporaries, unique_temporary

__all__ = ["RunFolderError", "RunFolderBusy", "usable_folder", "hold_run_folders", "holder", "atomic_write",
           "read_checkpoint", "read_summary", "LOCK_FILE", "CHECKPOINT_KEYS"]

LOCK_FILE = ".tp.lock"
#: keys every checkpoint holds (tp.training's state dict, format 1)
CHECKPOINT_KEYS = ("format", "config", "seed", "pre_epochs_done", "epochs_done", "params", "feedback", "fwd_opt",
                   "fb_opt", "generators", "metrics", "elapsed", "status", "message", "fb_steps", "steps",
                   "alignment", "damping")


class RunFolderError(RuntimeError):
    """An output folder or a file in it cannot be used (exit status 2)."""


class RunFolderBusy(RunFolderError):
    """Another process trains into the folder."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def usable_folder(out: Path, option: str = "--out") -> Path:
    """``out``, made if missing and checked writable: a file, a path under a file, a read-only or special
    location is a :class:`RunFolderError` naming it (instead of an OSError traceback)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".tp-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise RunFolderError(f"cannot use the output folder {out}: {_why(exc)}"
                             f"{f' ({exc.filename})' if exc.filename else ''}; choose another one ({option})") from None
    return out


def _lock(out: Path):
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True)
        f = open(out / LOCK_FILE, "a+")
    except OSError as exc:
        raise RunFolderError(f"cannot use the output folder {out}: {_why(exc)}"
                             f"{f' ({exc.filename})' if exc.filename else ''}; choose another output folder "
                             f"(--out)") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return f  # a file system without locks (ENOLCK, EOPNOTSUPP): train unguarded, as before
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunFolderBusy(f"the output folder {out} is in use by another tp process (PID {holder}); "
                            f"wait for it to end, or train into another folder") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        remove_temporaries(out)  # the folder is ours: temporaries in it are from killed processes
    except OSError as exc:
        f.close()
        raise RunFolderError(f"cannot write in the output folder {out}: {_why(exc)}; free space or choose "
                             f"another output folder (--out)") from None
    return f


def holder(out: Path) -> str | None:
    """The PID of the live process that holds the run folder ``out`` (as the file records it), or None when
    no process holds it; creates nothing (a scheduler asks before it starts a run a second time)."""
    import fcntl

    try:
        f = open(Path(out) / LOCK_FILE)
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when the file closes
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return f.read().strip() or "unknown"
        return None


@contextlib.contextmanager
def hold_run_folders(outs) -> Iterator[None]:
    """Create and lock every folder of ``outs`` (None entries: no folder) until the block ends."""
    with contextlib.ExitStack() as stack:
        for out in outs:
            if out is not None:
                stack.callback(_lock(Path(out)).close)  # closing the file releases its lock
        yield


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a unique temporary name beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = unique_temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        raise RunFolderError(f"cannot write {path}: {exc}; free space on its file system or choose another "
                             f"output folder (--out)") from None
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: Path) -> dict:
    """A run's checkpoint (``weights_only``: tensors and plain containers only), checked for its keys."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — every unreadable file is the same problem for the user
        detail = str(exc).splitlines()[0] if str(exc) else ""
        detail = f": {detail}" if detail and len(detail) < 100 else ""  # (torch's weights_only advice misleads)
        raise RunFolderError(f"{path} is corrupt or not a tp checkpoint ({type(exc).__name__}{detail}); delete "
                             f"it to start this run again from epoch 0") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else ["all"]
    if missing:
        raise RunFolderError(f"{path} is not a tp checkpoint (missing {', '.join(missing)}); delete it to start "
                             f"this run again from epoch 0")
    return state


def read_summary(path: Path) -> dict:
    """A run's ``summary.json`` as a dict."""
    path = Path(path)
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path} is corrupt ({type(exc).__name__}: {exc}); delete it (the run is then "
                             f"trained again, or its summary rewritten from checkpoint.pt if that is there)") from None
    if not isinstance(done, dict):
        raise RunFolderError(f"{path} is not a run summary (a JSON {type(done).__name__}, not an object); "
                             f"delete it (the run is then trained again)")
    return done
