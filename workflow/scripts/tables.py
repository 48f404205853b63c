"""Aggregate run summaries into one of the paper's tables (CSV tidy, Markdown, LaTeX).

Each cell is mean ± std (sample std, ddof = 1) over the seeds whose run *finished*; diverged and pruned
runs (docs/algorithms.md#the-early-stop) and missing summaries are counted, shown in the cell and left out of the mean —
never turned into a number.  A (method, dataset) without an official configuration is shown as such.

Run by Snakemake (``script:``) or by hand:
    python workflow/scripts/tables.py --table table1 --results results [--config config/config.yaml]
"""


import argparse
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd

from tp.runs import audit
from tp.runs.versions import DIRTY
from tp.catalog import CELL_NOTES
from tp.catalog import DATASETS, METHODS

QUANTITY = {
    "test_error_at_best_val": ("test error (%)", "{:.2f}"),
    "train_loss_last": ("training loss", "{:.2e}"),
}
STATUS_COUNTS = ("diverged", "pruned", "missing")
RUN_COLUMNS = ["tuning", "method", "dataset", "seed", "status", "epochs_run", "test_error_at_best_val",
               "train_loss_last", "wall_time_s", "code_version", "numerics_version", "device_name",
               "step_path", "epochs_configured", "data_source", "message", "model", "num_hidden", "size_hidden", "conv_channels", "folder",
               "rejected"]


def provenance(runs: pd.DataFrame, source: str) -> str:
    """Which data, epochs and networks produced the table, read from its run summaries (their
    ``data_source``; ``source``, the pipeline's setting, for summaries without one)."""
    recorded = set(runs.data_source.dropna()) if len(runs) else set()
    if "synthetic" in (recorded or {source}):
        data = "SYNTHETIC data (a smoke run: not the paper's datasets, not a result)"
    else:
        data = "the real datasets"
    if not len(runs):
        return f"Runs: none finished yet; data source: {data}."
    epochs = sorted({int(e) for e in runs.epochs_configured.dropna()})
    ep = "—" if not epochs else str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]} (per configuration)"
    nets = []
    for dataset, g in runs.groupby("dataset", sort=False):
        sizes = sorted({(r.model, r.num_hidden, r.size_hidden, r.conv_channels) for r in g.itertuples()})
        for model, nh, sh, conv in sizes:
            nets.append(f"{DATASETS[dataset].paper_name}: " + (f"CNN conv {'/'.join(map(str, conv))} channels, FC {sh}"
                                                    if model == "cnn" else f"{nh} hidden layers of {sh}"))
    versions = sorted({short_version(str(v)) for v in runs.code_version.dropna()})
    dirty = " (+dirty: made from a checkout with uncommitted changes)" if any(
        v.endswith(DIRTY) for v in versions) else ""
    numerics = sorted({int(v) for v in runs.numerics_version.dropna()})
    devices = sorted({str(v) for v in runs.device_name.dropna()})
    paths = sorted({str(v) for v in runs.step_path.fillna("eager")})
    hours = runs.wall_time_s.dropna().astype(float).sum() / 3600
    return (f"Runs: {len(runs)} summaries; data: {data}; epochs: {ep}; networks: {'; '.join(nets)}; "
            f"code version: {', '.join(versions) or 'unknown'}{dirty} (full commits: results/README.md); "
            f"numerics version: {', '.join(map(str, numerics)) or 'unknown'}; device(s): {' | '.join(devices) or 'unknown'}; "
            f"step path(s): {', '.join(paths)}; "
            f"training time {hours:.2f} h in all.")


def short_version(version: str) -> str:
    """A commit shortened to 12 hex digits, its ``+dirty`` kept (the full commits are listed once, in
    results/README.md); anything else (``tp 0.1.0``) as it is."""
    head, dirty, _ = version.partition(DIRTY)
    return head[:12] + dirty if len(head) == 40 and all(c in "0123456789abcdef" for c in head) else version


def mixed_notes(runs: pd.DataFrame) -> list[str]:
    """One note per cell whose averaged runs come from more than one step path or device: which ones.  Paths
    and devices share a numerics version when the tests prove their steps equal within 1e-10 relative
    (docs/pipeline.md, "Numerics versions"), so their runs average together; the note says what a cell mixes."""
    notes = []
    if not len(runs):
        return notes
    for (method, dataset), g in runs.groupby(["method", "dataset"], sort=True):
        paths = sorted({str(v) for v in g.step_path.fillna("eager")})
        devices = sorted({str(v) for v in g.device_name.dropna()})
        if len(paths) > 1 or len(devices) > 1:
            name = METHODS[method].paper_name if method in METHODS else method
            where = DATASETS[dataset].paper_name if dataset in DATASETS else dataset
            notes.append(f"{where} {name} averages runs of step paths {', '.join(paths)} on "
                         f"{' | '.join(devices) or 'unknown devices'} (one numerics version: the same mathematics, "
                         "tested equal within 1e-10 relative per step).")
    return notes


def rejected_notes(runs: pd.DataFrame) -> list[str]:
    """One note per run that failed the audit (tp.runs.audit): its folder and the reason; never averaged."""
    bad = runs[runs.rejected.notna()] if len(runs) else runs
    return [f"Rejected, not averaged: runs/{r.folder}: {r.rejected}. Its seed counts as pending; remove the folder "
            "to train it again." for r in bad.itertuples()]


#: the sections of the specification the project was first checked against that the messages of runs recorded
#: before docs/algorithms.md existed cite, and the page's anchors that replace them
_OLD_CITATIONS = re.compile(r"SPEC §(12\.13|7\.2)\b")
_NOW = {"12.13": "docs/algorithms.md#the-early-stop", "7.2": "docs/algorithms.md#the-damping-search-table-s7"}


def cited(message) -> str:
    """A run's message as a table shows it: an older run's citation of the specification, which is not part of the
    repository, as the anchor of docs/algorithms.md that says the same (issue 37)."""
    return _OLD_CITATIONS.sub(lambda m: _NOW[m.group(1)], str(message))


def stopped_notes(runs: pd.DataFrame, spec: dict, seeds=None) -> list[str]:
    """One note per accepted run of the table's cells that stopped early (diverged, or pruned by the official
    early stop, docs/algorithms.md#the-early-stop): which run, after how many epochs, and its own message; never
    averaged."""
    mine = accepted(runs)
    if len(mine):
        mine = mine[(mine.tuning == spec["tuning"]) & mine.method.isin(spec["rows"]) & mine.dataset.isin(spec["columns"])
                    & mine.status.isin(["diverged", "pruned"]) & (mine.seed.isin(seeds) if seeds else True)]
    return [f"Stopped early, not averaged: {DATASETS[r.dataset].paper_name} {METHODS[r.method].paper_name} seed "
            f"{r.seed}, {r.status} after {r.epochs_run} of {r.epochs_configured} epochs: {cited(r.message)}."
            for r in mine.sort_values(["dataset", "method", "seed"]).itertuples()] if len(mine) else []


def cnn_description(runs: pd.DataFrame) -> str:
    """The CNN of the table's runs (docs/algorithms.md#the-cnn-table-3): its channels and FC width from the
    summaries."""
    cnn = runs[runs.model == "cnn"] if len(runs) else runs
    sizes = sorted({("/".join(map(str, r.conv_channels)), r.size_hidden) for r in cnn.itertuples()})
    shape = "; ".join(f"conv 5×5 with {c} channels, each with tanh and max-pool 3/2; FC {h} tanh; FC 10"
                      for c, h in sizes) or "none run yet"
    return f"the network of docs/algorithms.md#the-cnn-table-3 ({shape})"


def notes_for(spec: dict, runs: pd.DataFrame | None = None) -> list[str]:
    """Footnotes the reader needs (docs/algorithms.md#cifar-10-ddtp-control-builds-ddtp-linear,
    docs/algorithms.md#the-early-stop); network sizes and epochs from the runs."""
    runs = load_runs([]) if runs is None else runs
    shown = {(r.method, r.dataset) for r in runs.itertuples()} if len(runs) else set()  # cells with a number
    notes = [n.text for n in CELL_NOTES if n.method in spec["rows"] and n.dataset in spec["columns"]
             and (n.method, n.dataset) in shown and n.tuning == spec["tuning"]
             and n.quantity in (None, spec["quantity"])]  # tp.catalog: only under a cell that shows a number
    if "cifar10-cnn" in spec["columns"]:
        notes.append(f"CIFAR10 (CNN): {cnn_description(runs)}, float64, one forward Adam per layer; DDTP-linear, "
                     "DDTP-control and DFA send their targets directly from the output to the max-pool outputs "
                     "and to the FC layer.")
        if spec["tuning"] == "train":
            cnn = runs[runs.model == "cnn"] if len(runs) else runs
            epochs = sorted({int(e) for e in cnn.epochs_configured.dropna()})
            notes.append(f"CIFAR10 (CNN), configurations tuned for training loss: "
                         f"{'/'.join(map(str, epochs)) or 'no runs yet, the official files say 300'} epoch(s) on all "
                         "training samples (no validation set; the official files: 300 epochs on all 50,000).")
            if "ddtp-control" in spec["rows"]:
                notes.append("CIFAR10 (CNN) DDTP-control: the official set has no configuration tuned for training "
                             "loss for it, so its cell says \"no configuration\" (no run, no number).")
    for method in spec["rows"]:  # a method the paper derives but never ran (tp.catalog)
        if METHODS[method].beyond_paper:
            notes.append(f"{METHODS[method].paper_name}: beyond the paper ({METHODS[method].beyond_paper}); the "
                         "paper never ran it (docs/ggn.md).")
    notes += list(spec.get("notes") or [])  # the pipeline's own (e.g. which runs a beyond-the-paper cell reuses)
    notes.append("Cells: mean ± std (ddof = 1) over the finished seeds, n = their number (the paper averaged 10 "
                 "seeds per cell; n says how many these average); diverged, pruned "
                 "(training accuracy below the official early-stop threshold), rejected (failed the run audit, "
                 "listed below) and pending (not run yet) seeds are counted and excluded.")
    notes.append("'not run: dataset missing': the dataset's files were not under the data root; the pipeline's "
                 "summary (or `make reproduce`) says how to fetch them.  'not run: not selected': left out with "
                 "the pipeline's `datasets` selection.")
    return notes


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


def cell_text(row: dict, fmt: str, seeds: int) -> str:
    """``2.01 ± 0.05 (n=3)``; with the seeds not (yet) averaged: ``1.95 (n=1; 2 of 3 seeds pending)``,
    ``pending: 0 of 3 seeds finished``, ``— (n=0; 1 diverged)``; a rejected run's seed is pending (it is trained
    again once its folder is removed): ``1.95 (n=1; 2 of 3 seeds pending, 1 rejected)``."""
    n = row["n"]
    flags = [f"{row[k]} {k}" for k in STATUS_COUNTS[:-1] if row[k]]
    if row["missing"]:
        flags.append(f"{row['missing']} of {seeds} seeds pending" + (f", {row['rejected']} rejected"
                                                                     if row["rejected"] else ""))
    if not n and row["missing"] == seeds and not row["rejected"]:
        return f"pending: 0 of {seeds} seeds finished"
    value = "—" if not n else fmt.format(row["mean"]) + (f" ± {fmt.format(row['std'])}" if n > 1 else "")
    return f"{value} (n={n}{'; ' + ', '.join(flags) if flags else ''})"


def aggregate(runs: pd.DataFrame, spec: dict, configured, seeds, table: str, not_run=()) -> pd.DataFrame:
    """Tidy table: one row per (method, dataset) of the spec, in the paper's order.

    configured: the (method, dataset) cells that ran; not_run: [method, dataset, reason] of configured cells
    the pipeline left out (their data missing or not selected).  Only runs that passed the audit
    (``rejected`` empty) and whose seed is one of ``seeds`` are counted: each seed once."""
    configured = {tuple(c) for c in configured}
    not_run = {(m, d): reason for m, d, reason in not_run}
    label, fmt = QUANTITY[spec["quantity"]]
    out = []
    for method in spec["rows"]:
        for dataset in spec["columns"]:
            row = {"table": table, "tuning": spec["tuning"], "quantity": spec["quantity"],
                   "method": METHODS[method].paper_name, "dataset": DATASETS[dataset].paper_name, "method_slug": method,
                   "dataset_slug": dataset, "seeds": len(seeds), "n": 0, "diverged": 0, "pruned": 0,
                   "rejected": 0, "missing": 0, "mean": math.nan, "std": math.nan}
            if (method, dataset) in not_run:
                row["cell"] = not_run[(method, dataset)]
                out.append(row)
                continue
            if (method, dataset) not in configured:
                row["cell"] = "no configuration"
                out.append(row)
                continue
            mine = runs[(runs.tuning == spec["tuning"]) & (runs.method == method) & (runs.dataset == dataset)
                        & runs.seed.isin(seeds)] if len(runs) else runs  # (identity: the folder's, load_runs)
            cell = accepted(mine)
            done = cell[cell.status == "finished"][spec["quantity"]].dropna().astype(float)
            row.update(n=len(done), diverged=int((cell.status == "diverged").sum()),
                       pruned=int((cell.status == "pruned").sum()), rejected=len(mine) - len(cell),
                       missing=len(seeds) - len(set(cell.seed)))  # a rejected run's seed is still pending
            if len(done):
                row["mean"] = float(done.mean())
                row["std"] = float(done.std(ddof=1)) if len(done) > 1 else math.nan
            row["cell"] = cell_text(row, fmt, len(seeds))
            out.append(row)
    tidy = pd.DataFrame(out)
    tidy["method"] = pd.Categorical(tidy["method"], [METHODS[m].paper_name for m in spec["rows"]], ordered=True)
    tidy["dataset"] = pd.Categorical(tidy["dataset"], [DATASETS[d].paper_name for d in spec["columns"]], ordered=True)
    return tidy


def wide(tidy: pd.DataFrame) -> pd.DataFrame:
    table = tidy.pivot(index="method", columns="dataset", values="cell")
    table.index.name, table.columns.name = None, None
    return table


def write_html(path, title: str, table: pd.DataFrame, notes: list[str]) -> None:
    """The table as a small HTML page (Snakemake's report shows it inline): title, table, notes."""
    from html import escape

    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    Path(path).write_text(f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
                          "<style>body{font-family:sans-serif;font-size:14px} td,th{padding:2px 8px;text-align:left}"
                          "table{border-collapse:collapse} tr:nth-child(even){background:#f3f3f3}</style></head>"
                          f"<body><h3>{escape(title)}</h3>{table.to_html(border=0)}<ul>{items}</ul></body></html>\n")


def write(tidy: pd.DataFrame, spec: dict, csv_path, md_path, tex_path, runs=None, source="real",
          html_path=None, seeds=None) -> None:
    runs = load_runs([]) if runs is None else runs
    tidy.to_csv(csv_path, index=False)
    table = wide(tidy)
    notes = ([provenance(accepted(runs), source)] + notes_for(spec, accepted(runs)) + mixed_notes(accepted(runs))
             + stopped_notes(runs, spec, seeds) + rejected_notes(runs))
    averaged = accepted(runs)  # the data label of the title: the averaged runs' record, else the setting
    recorded = set(averaged.data_source.dropna()) if len(averaged) else set()
    title = spec["title"] + (" — SYNTHETIC DATA, NOT A RESULT" if "synthetic" in (recorded or {source}) else "")
    md = [f"**{title}**", "", table.to_markdown(), ""] + [f"* {n}" for n in notes]
    Path(md_path).write_text("\n".join(md) + "\n")
    if html_path is not None:
        write_html(html_path, title, table, notes)
    latex = table.style.to_latex(hrules=True, caption=title, position="t")
    latex = latex.replace("±", r"$\pm$").replace("%", r"\%")
    Path(tex_path).write_text(latex + "".join(f"% {n}\n" for n in notes))


def main_snakemake(sm) -> None:
    runs = load_runs(summaries_of(sm.input), sm.params.overrides, sm.params.epochs, sm.params.source)
    name = sm.params.get("table") or sm.wildcards.table  # (a table beyond the paper: its own wildcard)
    tidy = aggregate(runs, sm.params.spec, sm.params.configured, sm.params.seeds, name, sm.params.not_run)
    write(tidy, sm.params.spec, sm.output.csv, sm.output.md, sm.output.tex, runs, sm.params.source,
          sm.output.html, sm.params.seeds)


def main(argv=None) -> int:
    import yaml

    from tp.config import available_configs

    p = argparse.ArgumentParser(description="Build one table from the run summaries under RESULTS/runs.")
    p.add_argument("--table", required=True)
    p.add_argument("--results", default="results")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--seeds", default=None, help="the seeds of a cell, e.g. 1,2,3 (default: the config's)")
    args = p.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.seeds:
        cfg["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.table not in cfg["tables"]:
        p.error(f"--table {args.table!r}: valid tables are {', '.join(cfg['tables'])}")
    spec = cfg["tables"][args.table]
    have = available_configs()
    configured = [(m, d) for m in spec["rows"] for d in spec["columns"] if spec["tuning"] in have.get((d, m), [])]
    paths = Path(args.results).glob(f"runs/{spec['tuning']}/*/*/seed*/summary.json")
    runs = load_runs(paths, cfg.get("overrides"), cfg.get("epochs"), cfg["data"]["source"])
    tidy = aggregate(runs, spec, configured, cfg["seeds"], args.table)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    write(tidy, spec, out / f"{args.table}.csv", out / f"{args.table}.md", out / f"{args.table}.tex", runs,
          cfg["data"]["source"], seeds=cfg["seeds"])
    print(wide(tidy).to_string())
    return 0


if __name__ == "__main__":
    if "snakemake" in globals():
        import contextlib

        with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):  # noqa: F821
            main_snakemake(snakemake)  # noqa: F821
    else:
        raise SystemExit(main())
