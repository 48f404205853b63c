"""What a run leaves in its result folder: the summary (with provenance), metrics.csv, alignment.csv,
damping_search.csv, damping_paired.csv, config.yaml, the checkpoint — every file written atomically
(temporary file, then ``os.replace``), so an interrupted write never leaves half a file."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import torch
import yaml

from .. import __version__
from ..metrics.damping import PAIRED_COLUMNS, paired_selection
from ..runs.folder import atomic_write  # unique temporary names; a failed write is a named error
from ..runs.versions import NUMERICS_VERSION
from .hooks import selected_damping
from .state import Record, Run

__all__ = ["CHECKPOINT", "SUMMARY", "METRICS", "CONFIG", "ALIGNMENT", "DAMPING", "DAMPING_PAIRED",
           "METRIC_COLUMNS", "ALIGNMENT_COLUMNS", "DAMPING_COLUMNS", "PAIRED_COLUMNS", "code_version",
           "device_name", "cpu_model", "summary", "atomic_write", "write_csv", "write_outputs", "write_config",
           "write_checkpoint", "pct_error"]

CHECKPOINT, SUMMARY, METRICS, CONFIG = "checkpoint.pt", "summary.json", "metrics.csv", "config.yaml"
ALIGNMENT, DAMPING, DAMPING_PAIRED = "alignment.csv", "damping_search.csv", "damping_paired.csv"
ALIGNMENT_COLUMNS = ["epoch", "step", "batch", "layer", "reference", "damping", "angle"]
METRIC_COLUMNS = ["epoch", "train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error",
                  "reconstruction_loss", "seconds"]
DAMPING_COLUMNS = ["damping", "layer", "mean_angle", "batches"]


def code_version(root: Path | None = None) -> str:
    """``git`` commit of the checkout holding ``tp`` (``+dirty`` with uncommitted changes outside
    ``results/``: the outputs the pipeline writes there are not code); where git cannot tell (a copy of the
    tree without its repository, as a lent GPU machine gets it), ``TP_CODE_VERSION`` when set (the commit
    benchmarks/gpu_window.py checked clean before the copy), else the package version."""
    root = root or Path(__file__).resolve().parents[2]  # tp/training/records.py -> the checkout
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                ":/", ":(top,exclude)results"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("TP_CODE_VERSION") or f"tp {__version__}"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with the architecture and the threads torch uses:
    ``Intel(R) Xeon(R) Processor, x86_64 CPU (1 threads)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = cpu_model()
    return f"{model + ', ' if model else ''}{platform.machine()} CPU ({torch.get_num_threads()} threads)"


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name`` on Linux; None where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def pct_error(acc: float) -> float:
    return 100.0 * (1.0 - acc)


def summary(run: Run, r: int, wall: float) -> dict:
    """The summary of seed r: the result of its run (best epoch by validation error, test error there and
    at the end; none of them for a diverged run) and its provenance (device, versions, step path)."""
    rec = run.records[r]
    rows = rec.metrics or []
    cls = run.net.loss == "cross_entropy"
    best = None
    if cls and rows and rows[0]["val_error"] is not None:
        best = min(range(len(rows)), key=lambda k: (rows[k]["val_error"], k))  # first argmax of val accuracy
    last = rows[-1] if rows else None
    diverged = rec.status == "diverged"
    paired = {}
    if rec.damping_paired:  # only runs that did the paired search (tp.metrics.damping) get its fields
        chosen, within = paired_selection(rec.damping_paired)
        paired = {"damping_paired_selected": chosen, "damping_paired_within_2se": within,
                  "damping_paired_minibatches": max(int(r["batches"]) for r in rec.damping_paired)}
    return {
        "method": run.cfg.get("method"), "dataset": run.cfg.get("dataset"), "tuning": run.cfg.get("tuning"),
        "rule": run.cfg["rule"], "seed": rec.seed, "status": rec.status, "message": rec.message,
        "epochs_run": len(rows), "epochs_configured": run.cfg["epochs"],
        "best_epoch": rows[best]["epoch"] if best is not None else None,
        "test_error_at_best_val": rows[best]["test_error"] if best is not None and not diverged else None,
        "val_error_best": rows[best]["val_error"] if best is not None and not diverged else None,
        "test_error_last": last["test_error"] if last and not diverged else None,
        "train_loss_last": last["train_loss"] if last and not diverged else None,
        "wall_time_s": round(wall, 3), "device": str(run.device), "device_name": device_name(run.device),
        "torch_version": str(torch.__version__), "code_version": code_version(),
        "python_version": platform.python_version(), "numerics_version": NUMERICS_VERSION,
        "feedback_steps": run.fb_steps,
        "damping_selected": selected_damping(rec.damping) if rec.damping else None,
        **paired,
        # seeds trained together in one process (wall_time_s is then the block's) and the step path
        "block_seeds": [x.seed for x in run.records] if run.replicas is not None else None,
        # the paths of every process that trained it ("compiled+eager": resumed on another path); all compute
        # the same mathematics (numerics version), tested equal within 1e-10 per step
        "step_path": "+".join(sorted(run.step_paths)) or "eager",
        **run.data.summary_fields(),  # data_source (real / synthetic) and the files' SHA-256
    }


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Atomic CSV write; None and NaN (an undefined value) are written as empty fields, never as numbers."""
    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if row[k] is None or (isinstance(row[k], float) and math.isnan(row[k]))
                                else row[k]) for k in columns})

    atomic_write(path, write)


def write_outputs(out: Path, rec: Record) -> None:
    """metrics.csv, alignment.csv, damping_search.csv and damping_paired.csv (when they have rows) and
    summary.json."""
    write_csv(out / METRICS, rec.metrics, METRIC_COLUMNS)
    if rec.alignment:
        write_csv(out / ALIGNMENT, rec.alignment, ALIGNMENT_COLUMNS)
    if rec.damping:
        write_csv(out / DAMPING, rec.damping, DAMPING_COLUMNS)
    if rec.damping_paired:
        write_csv(out / DAMPING_PAIRED, rec.damping_paired, PAIRED_COLUMNS)
    atomic_write(out / SUMMARY, lambda tmp: tmp.write_text(json.dumps(rec.summary, indent=2, allow_nan=False)
                                                           + "\n"))


def write_config(out: Path, cfg: dict, seed: int) -> None:
    atomic_write(out / CONFIG, lambda tmp: tmp.write_text(yaml.safe_dump({"seed": seed, **cfg}, sort_keys=False)))


def write_checkpoint(run: Run, r: int) -> None:
    """The checkpoint of seed r in its folder (nothing without one)."""
    out = run.records[r].out
    if out is not None:
        atomic_write(out / CHECKPOINT, lambda tmp: torch.save(run.state_dict(r), tmp))
