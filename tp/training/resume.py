"""Resuming: which seeds already ended in their folder, where the others stand, and the check that a
folder's checkpoint or summary belongs to the same configuration and seed."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..runs.folder import read_checkpoint, read_summary
from ..runs.versions import with_later_keys
from .records import CHECKPOINT, SUMMARY
from .state import Run

__all__ = ["load_checkpoint", "check_same_run", "finished_summary", "resume_point", "resume"]


def load_checkpoint(out: Path) -> dict | None:
    """The checkpoint in ``out`` (None: none there), loaded on the CPU: generator states must stay CPU
    byte tensors; parameters are copied to the device when loaded into a run."""
    if out is None or not (out / CHECKPOINT).exists():
        return None
    return read_checkpoint(out / CHECKPOINT)  # a corrupt file is a named error (tp.runs.folder)


def check_same_run(path: Path, cfg_found: dict, seed_found: int, cfg: dict, seed: int) -> None:
    """A configuration recorded before a key existed reads as that key's value then (tp.runs.versions.KEYS_ADDED_LATER)."""
    cfg_found, cfg = with_later_keys(cfg_found), with_later_keys(cfg)
    if cfg_found != cfg or seed_found != seed:
        diff = sorted(k for k in set(cfg) | set(cfg_found) if cfg.get(k) != cfg_found.get(k))
        raise ConfigError(f"{path} belongs to another run (seed {seed_found}, differing keys: "
                          f"{diff or 'none'}); use another output folder or delete it")


def finished_summary(out: Path | None, cfg: dict, seed: int, log: Callable[[str], None]) -> dict | None:
    """The summary of a run that already ended in ``out`` (None: nothing to skip)."""
    if out is None:
        return None
    state = load_checkpoint(out)
    if state is not None:
        check_same_run(out / CHECKPOINT, state["config"], state["seed"], cfg, seed)
        if state["status"] == "running" or not (out / SUMMARY).exists():
            return None
    elif not (out / SUMMARY).exists():
        return None
    done = read_summary(out / SUMMARY)
    if done.get("status") == "running":
        return None
    if with_later_keys(done.get("config") or {}) != with_later_keys(cfg) or done.get("seed") != seed:
        raise ConfigError(f"{out} holds a finished run of another configuration or seed; "
                          "use another output folder")
    log(f"{out}: already {done['status']}, nothing to do")
    return done


def resume_point(out: Path | None) -> tuple[int, int]:
    """(feedback pre-training epochs, training epochs) done in ``out``'s checkpoint; (0, 0) without one.
    Seeds at the same point train together."""
    state = load_checkpoint(out)
    return (0, 0) if state is None else (state["pre_epochs_done"], state["epochs_done"])


def resume(run: Run, r: int, cfg: dict, seed: int, log: Callable[[str], None]) -> bool:
    """Load seed r's checkpoint from its folder into the run (after the same-run check); whether there
    was one."""
    out = run.records[r].out
    state = load_checkpoint(out)
    if state is None:
        return False
    check_same_run(out / CHECKPOINT, state["config"], state["seed"], cfg, seed)
    run.load_state_dict(state, r)
    log(f"resuming {out} after {run.pre_epochs_done} pre-training and {run.epochs_done} training epochs")
    return True
