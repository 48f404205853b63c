"""The numbers behind each claim of results/claims.md (workflow/scripts/claims.py): one *side* of a comparison.

A side is what one method measured on one dataset, with the runs it waits for:

* ``table`` — the per-seed values of a table's cell (test error or training loss), read from the run
  summaries through the tables' own audit (workflow/scripts/tables.py ``load_runs``, ``accepted``), so a
  rejected run never counts; finished runs give the values, diverged and pruned runs count as done but give
  no value (as in the tables).  Checked against the table's tidy CSV (n and mean) when it exists;
* ``fig2`` — the null-space ratio of one layer from figures/fig2_nullspace_summary.csv (mean, std, n);
* ``alignment`` — per-epoch mean angle (over the hidden layers and the logged minibatches of the epoch) of an
  alignment run (seed ``alignment.seed``) with the BP gradient or the damped GNT update (alignment.csv);
* ``tableS7`` — the λ each damping search selected, per seed and hidden layer (tables/tableS7.csv).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean, stdev

import pandas as pd

from table_runs import accepted, load_runs
from tp.catalog import DATASETS, METHODS


@dataclass
class Side:
    label: str
    values: list = field(default_factory=list)  # per unit (seed, epoch, selection); empty: summary statistics only
    n: int = 0  # the units the test uses
    done: int = 0  # the units present (a diverged or pruned seed is done and has no value)
    mean: float = math.nan
    sd: float = math.nan
    waits: str | None = None  # what the side waits for; None: testable
    note: str = ""  # e.g. "1 pruned, not averaged"

    @classmethod
    def of(cls, label, values, done=None, **kw):
        values = [float(v) for v in values]
        return cls(label, values, len(values), len(values) if done is None else done,
                   fmean(values) if values else math.nan, stdev(values) if len(values) > 1 else math.nan, **kw)


@dataclass
class Context:
    results: Path
    tables: dict  # name → table spec (tuning, quantity, rows, columns; beyond tables with their seeds)
    seeds: list
    align_seed: int
    missing: dict  # dataset → why it has no runs ("not run: dataset missing")
    min_n: int = 3
    overrides: dict = field(default_factory=dict)
    epochs: int | None = None
    source: str = "real"


def name(method: str, dataset: str | None = None) -> str:
    return (f"{DATASETS[dataset].paper_name} " if dataset else "") + METHODS[method].paper_name


def _missing(ctx: Context, dataset: str) -> str:
    reason = ctx.missing.get(dataset)
    return f" ({reason.removeprefix('not run: ')})" if reason else ""


def table_side(ctx: Context, table: str, method: str, dataset: str) -> Side:
    spec = ctx.tables[table]
    seeds = spec.get("seeds") or ctx.seeds
    label = name(method)
    paths = [ctx.results / "runs" / spec["tuning"] / method / dataset / f"seed{s}" / "summary.json" for s in seeds]
    runs = accepted(load_runs([p for p in paths if p.exists()], ctx.overrides, ctx.epochs, ctx.source))
    runs = runs[runs.seed.isin(seeds)] if len(runs) else runs
    finished = runs[runs.status == "finished"][spec["quantity"]].dropna().astype(float).tolist() if len(runs) else []
    stopped = runs[runs.status.isin(["diverged", "pruned"])] if len(runs) else runs
    note = ", ".join(f"{k} {s}" for s, k in stopped.status.value_counts().items()) if len(stopped) else ""
    side = Side.of(label, finished, done=len(finished) + len(stopped), note=note + (" (not averaged)" if note else ""))
    _check_against_table(ctx, table, method, dataset, side)
    if side.done < ctx.min_n:
        side.waits = (f"{name(method, dataset)} ({spec['tuning']}-tuned): {side.done} of {ctx.min_n} seeds"
                      + _missing(ctx, dataset))
    elif side.n < 2:
        side.waits = f"{name(method, dataset)}: fewer than 2 finished seeds ({note})"
    return side


def _check_against_table(ctx: Context, table: str, method: str, dataset: str, side: Side) -> None:
    """The claims read the runs the table averaged: its tidy CSV must have the same n and mean."""
    csv = ctx.results / "tables" / f"{table}.csv"
    if not csv.exists():
        return
    tidy = pd.read_csv(csv)
    row = tidy[(tidy.method_slug == method) & (tidy.dataset_slug == dataset)]
    if not len(row):
        return
    n, mean = int(row.n.iloc[0]), float(row["mean"].iloc[0])
    if n != side.n or (n and not math.isclose(mean, side.mean, rel_tol=1e-9, abs_tol=1e-12)):
        raise ValueError(f"claims: {table} {name(method, dataset)}: the table has n={n}, mean {mean!r}, the runs "
                         f"n={side.n}, mean {side.mean!r}: rebuild the table (snakemake … {csv})")


def fig2_side(ctx: Context, method: str, layer: int) -> Side:
    path = ctx.results / "figures" / "fig2_nullspace_summary.csv"
    label = name(method)
    if not path.exists():
        return Side(label, waits="Fig. 2: the toy experiment (figures/fig2_nullspace_summary.csv)")
    df = pd.read_csv(path)
    row = df[(df.method == method) & (df.layer == layer)]
    if not len(row):
        return Side(label, waits=f"Fig. 2: {label}, layer {layer}")
    r = row.iloc[0]
    side = Side(label, [], int(r.n), int(r.n), float(r["mean"]), float(r["std"]))
    if side.n < ctx.min_n:
        side.waits = f"Fig. 2: {label}: {side.n} of {ctx.min_n} samples"
    return side


def alignment_side(ctx: Context, method: str, dataset: str, reference: str) -> Side:
    folder = ctx.results / "runs" / "alignment" / method / dataset / f"seed{ctx.align_seed}"
    label = name(method)
    runs = accepted(load_runs([folder / "summary.json"] if (folder / "summary.json").exists() else [],
                              ctx.overrides, ctx.epochs, ctx.source))
    waits = (f"{name(method, dataset)} alignment run (seed {ctx.align_seed}): 0 of 1" + _missing(ctx, dataset))
    if not len(runs) or runs.status.iloc[0] != "finished" or not (folder / "alignment.csv").exists():
        return Side(label, waits=waits)
    angles = pd.read_csv(folder / "alignment.csv")
    hidden = runs.num_hidden.iloc[0] if runs.model.iloc[0] != "cnn" else 3
    angles = angles[(angles.reference == reference) & (angles.layer <= hidden)].dropna(subset=["angle"])
    per_epoch = angles.groupby("epoch").angle.mean().sort_index().tolist()
    side = Side.of(label, per_epoch)
    if side.n < ctx.min_n:
        side.waits = f"{name(method, dataset)} alignment run: {side.n} of {ctx.min_n} epochs"
    return side


def s7_selections(ctx: Context, method: str, dataset: str, procedure: str) -> tuple[Side, pd.DataFrame]:
    """The selections of one method's damping searches on one dataset (every seed and hidden layer): the side
    (values: the selected λ) and the rows of tables/tableS7.csv they come from."""
    path = ctx.results / "tables" / "tableS7.csv"
    label = name(method)
    waits = f"{name(method, dataset)} damping search ({procedure} procedure)" + _missing(ctx, dataset)
    rows = pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()
    if len(rows):
        rows = rows[(rows.method_slug == method) & (rows.dataset_slug == dataset) & (rows.status == "finished")]
        if procedure == "paired":
            if len(rows) and rows.paired_selected.isna().all():
                waits += " (its searches here were made before the paired search)"
            rows = rows[rows.paired_selected.notna()]
    if not len(rows):
        return Side(label, waits=waits), rows
    column = "selected" if procedure == "official" else "paired_selected"
    return Side.of(label, rows[column].tolist()), rows
