"""Checks of finished run folders before anything averages them (tables, learning curves).

Committed runs come from many machines and commits, so a table never trusts a ``summary.json`` on its word.
:func:`audit_run` accepts a run folder ``…/TUNING/METHOD/DATASET/seedS/`` only when

* its path agrees with its summary (tuning, method, dataset, seed) and with its ``config.yaml`` (seed, values);
* its recorded configuration is the cell's resolved configuration (:func:`tp.config.resolve_config` with the
  pipeline's overrides): a run of 1 hidden layer or of 1 epoch is not a run of the paper's configuration;
  a key added to the configuration after runs were committed (:data:`KEYS_ADDED_LATER`) that a recorded
  configuration lacks reads as the value its absence means;
* its headline numbers are those of its ``metrics.csv`` (best epoch by validation error, test error there,
  last training loss, epochs run); a finished run has all its configured epochs;
* its numerics version is this code's :data:`NUMERICS_VERSION` (runs whose numbers another version of the
  mathematics produced are never averaged with these; summaries older than the field are version 1), and its
  step path one that the tests prove equal to the eager reference (:data:`STEP_PATHS`);
* its data source is the one expected (a synthetic smoke run never enters a real table).

:func:`collect` (what the tables call) also checks what a run says about its data and its code against what can
be verified, and finds copies of a run in any cell (:mod:`tp.runs.provenance`).  Every refusal is a one-line reason
naming the value and what was expected.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import provenance
from .versions import NUMERICS_VERSION, STEP_PATHS, with_later_keys

__all__ = ["audit_run", "headline", "collect", "expected_config"]

_HEADLINE = ("best_epoch", "test_error_at_best_val", "val_error_best", "test_error_last", "train_loss_last")


def _number(text: str) -> float | None:
    return None if text in ("", None) else float(text)


def read_metrics(path: Path) -> list[dict[str, float | None]]:
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def headline(rows: list[dict], status: str) -> dict[str, Any]:
    """The summary's headline numbers recomputed from ``metrics.csv`` rows (tp.training.records.summary):
    the best epoch is the first minimum of the validation error; a diverged run has no numbers."""
    valid = [k for k, r in enumerate(rows) if r.get("val_error") is not None]
    best = min(valid, key=lambda k: (rows[k]["val_error"], k)) if valid else None
    last = rows[-1] if rows else None
    ok = status != "diverged"
    return {"epochs_run": len(rows),
            "best_epoch": int(rows[best]["epoch"]) if best is not None else None,
            "test_error_at_best_val": rows[best]["test_error"] if best is not None and ok else None,
            "val_error_best": rows[best]["val_error"] if best is not None and ok else None,
            "test_error_last": last["test_error"] if last and ok else None,
            "train_loss_last": last["train_loss"] if last and ok else None}


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def _canonical(cfg: Mapping) -> dict:
    return json.loads(json.dumps(dict(cfg), sort_keys=True))  # tuples → lists, as JSON and YAML hold them


def _config_diff(recorded: Mapping, expected: Mapping) -> list[str]:
    rec, exp = _canonical(with_later_keys(recorded)), _canonical(with_later_keys(expected))
    first = ("method", "dataset", "tuning", "rule", "model")  # the identity of the run, then its values
    keys = sorted(set(rec) | set(exp), key=lambda k: (k not in first, first.index(k) if k in first else 0, k))
    return [f"{k} {rec.get(k, '(absent)')!r} ≠ {exp.get(k, '(absent)')!r}" for k in keys
            if not _same(rec.get(k), exp.get(k))]


def audit_run(folder: Path, summary: Mapping, expected_config: Mapping | None,
              data_source: str | None = "real") -> str | None:
    """Why the run in ``folder`` (with its parsed ``summary.json``) must not be averaged; None when it may.

    expected_config: the cell's resolved configuration (None: not checked); data_source: the expected
    ``data_source`` of the summary (None: not checked)."""
    folder = Path(folder)
    tuning, method, dataset, seed_dir = folder.parts[-4:]
    claimed = {"tuning": tuning, "method": method, "dataset": dataset,
               "seed": int(seed_dir[4:]) if seed_dir.startswith("seed") and seed_dir[4:].isdigit() else seed_dir}
    wrong = [f"{k} {summary.get(k)!r}" for k, v in claimed.items() if summary.get(k) != v]
    if wrong:
        return f"its summary.json says {', '.join(wrong)}, but it lies in {'/'.join(folder.parts[-4:])}"
    version = summary.get("numerics_version", 1)
    if version != NUMERICS_VERSION:
        return (f"numerics version {version!r}, this code's is {NUMERICS_VERSION}: its numbers come from other "
                f"mathematics, so they are not averaged with this version's runs (train it again)")
    paths = str(summary.get("step_path") or "eager").split("+")
    untested = [p for p in paths if p not in STEP_PATHS]
    if untested:
        return (f"step path {untested[0]!r} is not one the tests prove equal to the eager reference "
                f"({', '.join(STEP_PATHS)})")
    if data_source is not None and summary.get("data_source") != data_source:
        return f"data source {summary.get('data_source')!r}, expected {data_source!r}"
    recorded = summary.get("config")
    if not isinstance(recorded, dict):
        return "its summary.json records no configuration"
    if expected_config is not None:
        diff = _config_diff(recorded, expected_config)
        if diff:
            shown = "; ".join(diff[:4]) + (f"; … ({len(diff)} keys)" if len(diff) > 4 else "")
            return f"its configuration is not the cell's resolved configuration (recorded ≠ expected: {shown})"
    cfg_file = folder / "config.yaml"
    if not cfg_file.is_file():
        return "config.yaml is missing"
    try:
        on_disk = yaml.safe_load(cfg_file.read_text()) or {}
    except yaml.YAMLError as exc:
        return f"config.yaml is not YAML ({exc.__class__.__name__})"
    if on_disk.get("seed") != summary.get("seed"):
        return f"config.yaml says seed {on_disk.get('seed')!r}, summary.json says {summary.get('seed')!r}"
    diff = _config_diff({k: v for k, v in on_disk.items() if k != "seed"}, recorded)
    if diff:
        return f"config.yaml and summary.json record different configurations ({'; '.join(diff[:3])})"
    if not (folder / "metrics.csv").is_file():
        return "metrics.csv is missing"
    try:
        rows = read_metrics(folder / "metrics.csv")
    except (OSError, ValueError, csv.Error) as exc:
        return f"metrics.csv cannot be read ({exc})"
    status = summary.get("status")
    if status == "finished" and len(rows) != recorded.get("epochs"):
        return f"status finished after {len(rows)} epochs in metrics.csv, but the configuration has {recorded.get('epochs')}"
    mine = headline(rows, status)
    off = [f"{k} {summary.get(k)!r} (metrics.csv: {v!r})" for k, v in mine.items() if not _same(summary.get(k), v)]
    if off:
        return f"its summary.json disagrees with its metrics.csv: {'; '.join(off)}"
    return None


def expected_config(tuning: str, method: str, dataset: str, overrides: Mapping | None = None,
                    epochs: int | None = None) -> dict | None:
    """The resolved configuration a run of the cell must record: the catalog's configuration with the
    pipeline's ``overrides`` and, for tunings that may be shortened, its ``epochs`` setting (as the
    pipeline's training rules pass them).  None when the cell has no configuration."""
    from ..catalog import tuning as tuning_entry
    from ..config.resolve import resolve_config
    from ..errors import ConfigError

    extra = dict(overrides or {})
    try:
        if epochs is not None and tuning_entry(tuning).shortened:
            extra["epochs"] = int(epochs)
        return resolve_config(method, dataset, tuning, extra)
    except (ConfigError, KeyError, ValueError):
        return None


def collect(paths, overrides: Mapping | None = None, epochs: int | None = None,
            data_source: str | None = "real") -> list[tuple[Path, dict | None, str | None]]:
    """``(path, summary, reason)`` of every ``summary.json`` path in ``paths`` that exists (summary None: the
    file is corrupt, ``reason`` says how): ``reason`` is None for a run that may be averaged, else why not
    (:func:`audit_run`; :mod:`tp.runs.provenance`: its data files, its code version, a copy of another run; an
    unreadable or unconfigured summary)."""
    out, expected = [], {}
    for path in map(Path, paths):
        if not path.exists():
            continue
        folder = path.parent
        try:
            summary = json.loads(path.read_text())
            if not isinstance(summary, dict):
                raise ValueError(f"a JSON {type(summary).__name__}, not an object")
        except (OSError, ValueError) as exc:
            out.append((path, None, f"is corrupt ({exc})"))
            continue
        cell = tuple(folder.parts[-4:-1])
        if cell not in expected:
            expected[cell] = expected_config(*cell, overrides=overrides, epochs=epochs)
        reason = ("the cell has no configuration" if expected[cell] is None
                  else audit_run(folder, summary, expected[cell], data_source))
        out.append((path, summary, reason))
    # what a run says about its data and code, checked (tp.runs.provenance); then copies of a run, in any cell
    out = [(p, s, r or provenance.data_problem(s, p.parent.parts[-2]) or
            provenance.commit_problem(p.parent, s.get("code_version"))) if s is not None else (p, s, r)
           for p, s, r in out]
    copies = provenance.copies([p.parent for p, _, r in out if r is None])
    return [(p, s, copies.get(p.parent, r)) for p, s, r in out]
