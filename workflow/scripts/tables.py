"""Aggregate run summaries into one of the paper's tables (CSV tidy, Markdown, LaTeX).

Each cell is mean ± std (sample std, ddof = 1) over the seeds whose run *finished*; diverged and pruned
runs (SPEC §12.13) and missing summaries are counted, shown in the cell and left out of the mean — never
turned into a number.  A (method, dataset) without an official configuration is shown as such.

Run by Snakemake (``script:``) or by hand:
    python workflow/scripts/tables.py --table table1 --results results [--config config/config.yaml]
"""


import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from tp.config import DATASETS, METHODS

QUANTITY = {
    "test_error_at_best_val": ("test error (%)", "{:.2f}"),
    "train_loss_last": ("training loss", "{:.2e}"),
}
STATUS_COUNTS = ("diverged", "pruned", "missing")


def notes_for(spec: dict) -> list[str]:
    """Footnotes the reader needs (SPEC §12.6, §15)."""
    notes = []
    if "ddtp-control" in spec["rows"] and "cifar10" in spec["columns"] and spec["tuning"] == "test":
        notes.append("CIFAR10 DDTP-control: the official configuration file builds DDTP-linear (SPEC §12.6, Q1); "
                     "this cell runs the real DDTP-control with those hyperparameters, so the published entry was "
                     "most likely produced by DDTP-linear.")
    if spec["quantity"] == "train_loss_last" and spec["tuning"] == "test" and "bp" in spec["rows"] \
            and "cifar10" in spec["columns"]:
        notes.append("CIFAR10 BP: the official test configuration trains 150 epochs; its training loss is the "
                     "one after epoch 150.")
    if "cifar10-cnn" in spec["columns"]:
        notes.append("CIFAR10 (CNN): the network of SPEC §8 (conv 5×5, 32 and 64 channels, each with tanh and "
                     "max-pool 3/2; FC 512 tanh; FC 10), float64, one forward Adam per layer; DDTP-linear, "
                     "DDTP-control and DFA send their targets directly from the output to the max-pool outputs "
                     "and to the FC layer.")
        if spec["tuning"] == "train":
            notes.append("CIFAR10 (CNN), configurations tuned for training loss: 300 epochs on all 50,000 training "
                         "samples (no validation set), as the official files say.")
            if "ddtp-control" in spec["rows"]:
                notes.append("CIFAR10 (CNN) DDTP-control: the official set has no configuration tuned for training "
                             "loss for it, so its cell says \"no configuration\" (no run, no number).")
    notes.append("Cells: mean ± std (ddof = 1) over the finished seeds; diverged, pruned (training accuracy below "
                 "the official early-stop threshold) and missing runs are counted and excluded.")
    return notes


def load_runs(paths) -> pd.DataFrame:
    rows = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            continue
        try:  # a corrupt summary is reported by path and counted as missing; the other runs still count
            s = json.loads(path.read_text())
            if not isinstance(s, dict):
                raise ValueError(f"a JSON {type(s).__name__}, not an object")
        except (OSError, ValueError) as exc:
            print(f"tables: {path} is corrupt ({exc}); counted as missing (delete it and rerun to train that "
                  f"run again)", file=sys.stderr)
            continue
        rows.append({k: s.get(k) for k in ("tuning", "method", "dataset", "seed", "status", "epochs_run",
                                            "test_error_at_best_val", "train_loss_last", "wall_time_s",
                                            "code_version", "device_name")})
    return pd.DataFrame(rows, columns=["tuning", "method", "dataset", "seed", "status", "epochs_run",
                                       "test_error_at_best_val", "train_loss_last", "wall_time_s", "code_version",
                                       "device_name"])


def aggregate(runs: pd.DataFrame, spec: dict, configured, seeds, table: str) -> pd.DataFrame:
    """Tidy table: one row per (method, dataset) of the spec, in the paper's order."""
    configured = {tuple(c) for c in configured}
    label, fmt = QUANTITY[spec["quantity"]]
    out = []
    for method in spec["rows"]:
        for dataset in spec["columns"]:
            row = {"table": table, "tuning": spec["tuning"], "quantity": spec["quantity"],
                   "method": METHODS[method].paper_name, "dataset": DATASETS[dataset], "method_slug": method,
                   "dataset_slug": dataset, "seeds": len(seeds), "n": 0, "diverged": 0, "pruned": 0,
                   "missing": 0, "mean": math.nan, "std": math.nan}
            if (method, dataset) not in configured:
                row["cell"] = "no configuration"
                out.append(row)
                continue
            cell = runs[(runs.tuning == spec["tuning"]) & (runs.method == method) & (runs.dataset == dataset)
                        & runs.seed.isin(seeds)]
            done = cell[cell.status == "finished"][spec["quantity"]].dropna().astype(float)
            row.update(n=len(done), diverged=int((cell.status == "diverged").sum()),
                       pruned=int((cell.status == "pruned").sum()),
                       missing=len(seeds) - len(cell))
            if len(done):
                row["mean"] = float(done.mean())
                row["std"] = float(done.std(ddof=1)) if len(done) > 1 else math.nan
            text = "—" if not len(done) else fmt.format(row["mean"]) + (
                f" ± {fmt.format(row['std'])}" if len(done) > 1 else "")
            flags = [f"{row[k]} {k}" for k in STATUS_COUNTS if row[k]]
            row["cell"] = text + (f" ({', '.join(flags)})" if flags else "")
            out.append(row)
    tidy = pd.DataFrame(out)
    tidy["method"] = pd.Categorical(tidy["method"], [METHODS[m].paper_name for m in spec["rows"]], ordered=True)
    tidy["dataset"] = pd.Categorical(tidy["dataset"], [DATASETS[d] for d in spec["columns"]], ordered=True)
    return tidy


def wide(tidy: pd.DataFrame) -> pd.DataFrame:
    table = tidy.pivot(index="method", columns="dataset", values="cell")
    table.index.name, table.columns.name = None, None
    return table


def write(tidy: pd.DataFrame, spec: dict, csv_path, md_path, tex_path) -> None:
    tidy.to_csv(csv_path, index=False)
    table = wide(tidy)
    notes = notes_for(spec)
    md = [f"**{spec['title']}**", "", table.to_markdown(), ""] + [f"* {n}" for n in notes]
    Path(md_path).write_text("\n".join(md) + "\n")
    latex = table.style.to_latex(hrules=True, caption=spec["title"], position="t")
    latex = latex.replace("±", r"$\pm$").replace("%", r"\%")
    Path(tex_path).write_text(latex + "".join(f"% {n}\n" for n in notes))


def main_snakemake(sm) -> None:
    runs = load_runs(sm.input)
    tidy = aggregate(runs, sm.params.spec, sm.params.configured, sm.params.seeds, sm.wildcards.table)
    write(tidy, sm.params.spec, sm.output.csv, sm.output.md, sm.output.tex)


def main(argv=None) -> int:
    import yaml

    from tp.config import available_configs

    p = argparse.ArgumentParser(description="Build one table from the run summaries under RESULTS/runs.")
    p.add_argument("--table", required=True)
    p.add_argument("--results", default="results")
    p.add_argument("--config", default="config/config.yaml")
    args = p.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    spec = cfg["tables"][args.table]
    have = available_configs()
    configured = [(m, d) for m in spec["rows"] for d in spec["columns"] if spec["tuning"] in have.get((d, m), [])]
    paths = Path(args.results).glob(f"runs/{spec['tuning']}/*/*/seed*/summary.json")
    tidy = aggregate(load_runs(paths), spec, configured, cfg["seeds"], args.table)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    write(tidy, spec, out / f"{args.table}.csv", out / f"{args.table}.md", out / f"{args.table}.tex")
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
