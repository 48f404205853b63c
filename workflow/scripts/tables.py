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
import sys
from pathlib import Path

import pandas as pd

from tp.catalog import DATASETS, METHODS
from tp.runs import audit

# its sibling modules first (Snakemake runs a copy of this file, and appends the scripts' folder to sys.path last)
sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir) if "snakemake" in globals()
                       else Path(__file__).resolve().parent))
from table_notes import mixed_notes, notes_for, provenance, rejected_notes, stopped_notes  # noqa: E402
from table_runs import accepted, load_runs, summaries_of  # noqa: E402

QUANTITY = {
    "test_error_at_best_val": ("test error (%)", "{:.2f}"),
    "train_loss_last": ("training loss", "{:.2e}"),
}
STATUS_COUNTS = ("diverged", "pruned", "missing")

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
