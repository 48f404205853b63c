"""A table's runs as one frame: every summary among the inputs, audited (tp.runs.audit), one row per run with the
columns the tables, notes and claims read; ``rejected`` holds the audit's reason for a run that is never averaged."""

import sys
from pathlib import Path

import pandas as pd

from tp.runs import audit

RUN_COLUMNS = ["tuning", "method", "dataset", "seed", "status", "epochs_run", "test_error_at_best_val",
               "train_loss_last", "wall_time_s", "code_version", "numerics_version", "device_name",
               "step_path", "epochs_configured", "data_source", "message", "model", "num_hidden", "size_hidden", "conv_channels", "folder",
               "rejected"]


def summaries_of(inputs) -> list[str]:
    """The run summaries among a rule's inputs (the runs' other files are inputs too, so that editing or
    deleting one rebuilds the table: workflow/rules/common.smk, ``wanted``)."""
    return [str(p) for p in inputs if str(p).endswith("summary.json")]


def identity(folder: Path) -> dict:
    """tuning, method, dataset and seed of a run from its folder ``…/runs/TUNING/METHOD/DATASET/seedS`` (a folder
    of another shape: {}, the summary's own)."""
    *_, tuning, method, dataset, seed = Path(folder).parts
    if not (seed.startswith("seed") and seed[4:].isdigit()):
        return {}
    return {"tuning": tuning, "method": method, "dataset": dataset, "seed": int(seed[4:])}


def load_runs(paths, overrides=None, epochs=None, data_source=None) -> pd.DataFrame:
    """One row per summary found in ``paths``, audited (tp.runs.audit): ``rejected`` is None for a run that may be
    averaged, else the reason (path, configuration, metrics, numerics version, data source or a copy)."""
    rows = []
    for path, s, reason in audit.collect(paths, overrides, epochs, data_source):
        folder = path.parent
        if s is None:  # a corrupt summary is reported by path; the other runs still count
            print(f"tables: {path} {reason}; counted as missing (delete it and rerun to train that run again)",
                  file=sys.stderr)
            continue
        if reason is not None:
            print(f"tables: {folder} rejected: {reason}", file=sys.stderr)
        cfg = s.get("config") if isinstance(s.get("config"), dict) else {}
        rows.append({k: s.get(k) for k in RUN_COLUMNS[:-6]} | {"numerics_version": s.get("numerics_version", 1)}
                    | identity(folder)  # the cell a run is counted in: its folder's, never its summary's word
                    | {"step_path": s.get("step_path") or "eager"}  # (summaries older than the field: eager)
                    | {"model": cfg.get("model", "mlp"), "num_hidden": cfg.get("num_hidden"),
                       "size_hidden": cfg.get("size_hidden"), "conv_channels": tuple(cfg.get("conv_channels") or ()),
                       "folder": "/".join(Path(folder).parts[-4:]), "rejected": reason})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def accepted(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs.rejected.isna()] if len(runs) else runs
