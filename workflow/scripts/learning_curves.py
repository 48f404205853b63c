"""Learning curves of one dataset: test error (%) and training loss over the training epochs of every
method's runs of one tuning, mean ± std over the seeds: the test-tuned runs (the runs of Table 1, S6 and, for
the CNN, Table 3) or the runs tuned for training loss (``train``: Table 2, the CNN's Table S10).

Inputs: the runs' ``summary.json`` (``metrics.csv`` lies beside each).  Only runs whose summary says
``finished`` are averaged; diverged, pruned (and unreadable or missing) runs are counted in the legend,
e.g. "DTP (n=2, 1 diverged)", never averaged in.  The rows of ``metrics.csv`` are the training epochs
1..epochs_run (tp.training.loop writes one row per training epoch; feedback pre-training writes none); a row
with an epoch below 1 (not a training epoch) is ignored all the same.  At each epoch: mean and sample std
(ddof = 1, as in the tables; no band with one seed) over the finished seeds with a value there.  The loss
panel has a log y-axis; its band is clipped below at a tenth of the mean (a log axis has no 0), the error
band to [0, 100].

Outputs: the figure (PNG and PDF) and the plotted numbers, tidy (``method, method_slug, epoch, quantity,
mean, std, n``; quantity ``test_error`` or ``train_loss``).  Without a finished run the figure says
"no finished runs yet" and the CSV has its header only.

Snakemake:    script: with output.png/.pdf/.csv, wildcards.dataset, params.tuning, params.rows (the row lists
              of that tuning's tables, in config order: the methods' order) and params.source.
Standalone:   python workflow/scripts/learning_curves.py --dataset mnist --results results [--tuning train]
              [--config config/config.yaml] [--out-dir RESULTS/figures]
"""

import argparse
import json
import math
import sys
import textwrap
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tp.runs import audit  # noqa: E402
from tp.catalog import DATASETS, METHODS  # noqa: E402

QUANTITIES = {"test_error": "test error (%)", "train_loss": "training loss"}
#: the line under each figure's title: which runs, by tuning
TUNING_LINE = {"test": "test-tuned configurations", "train": "configurations tuned for training loss (Table 2)"}
#: the file name prefix of each tuning's curves, after "curves_"
PREFIX = {"test": "", "train": "train_"}
COLUMNS = ["method", "method_slug", "epoch", "quantity", "mean", "std", "n"]
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
#: seaborn's colour-blind palette, reordered so that the first methods of a table get the most distinct hues
#: (its orange, vermilion and brown, its purple and pink, are far apart in this order)
COLOUR_ORDER = [0, 1, 2, 4, 7, 3, 9, 8, 5, 6]
SYNTHETIC = " — SYNTHETIC DATA, NOT A RESULT"


def method_order(rows: list[list[str]]) -> list[str]:
    """The methods of the tables' rows in one order: the first table's (Table 1), each further method
    placed after its predecessor in its own table (Table S6's DDTP-RHL variants after DDTP-RHL)."""
    order: list[str] = []
    for table in rows:
        for k, m in enumerate(table):
            if m not in order:
                after = next((order.index(p) for p in reversed(table[:k]) if p in order), len(order) - 1)
                order.insert(after + 1, m)
    return order


def read_summary(path: Path) -> dict:
    """The summary of a run; for a missing or unreadable one, its method and seed from the folder
    (runs/TUNING/METHOD/DATASET/seedS/summary.json) and status "missing" / "unreadable"."""
    fallback = {"method": path.parent.parent.parent.name, "seed": path.parent.name.removeprefix("seed")}
    if not path.exists():
        return {**fallback, "status": "missing"}
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a run summary")
    except ValueError as exc:
        print(f"{path} is unreadable ({exc}): counted as such, not averaged in", file=sys.stderr)
        return {**fallback, "status": "unreadable"}
    return {**fallback, **summary}


def load(summaries, audit_args: dict | None = None) -> tuple[list[dict], pd.DataFrame]:
    """The runs (their summaries, with ``path``) and the training-epoch rows of the finished ones
    (method, seed, epoch, test_error, train_loss).  With ``audit_args`` (overrides, epochs, data_source of
    tp.runs.audit.collect) a run that fails the audit is counted as "rejected", never averaged, as in the tables."""
    summaries = [Path(p) for p in summaries]
    verdict = {p: r for p, _, r in audit.collect(summaries, **audit_args)} if audit_args is not None else {}
    runs, frames = [], []
    for path in summaries:
        run = {**read_summary(path), "path": path}
        if run["status"] == "finished" and verdict.get(path):
            print(f"{path.parent} rejected: {verdict[path]}", file=sys.stderr)
            run["status"] = "rejected"
        if run["status"] == "finished":
            metrics = path.parent / "metrics.csv"
            if not metrics.exists():
                print(f"{metrics} is missing: run counted as such, not averaged in", file=sys.stderr)
                run["status"] = "without metrics"
            else:
                df = pd.read_csv(metrics)
                df = df[pd.to_numeric(df["epoch"], errors="coerce") >= 1]  # training epochs only
                df = df.astype({"epoch": int}).drop_duplicates("epoch", keep="last")
                frames.append(df.assign(method=run["method"], seed=run["seed"])[
                    ["method", "seed", "epoch", *QUANTITIES]])
        runs.append(run)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["method", "seed", "epoch", *QUANTITIES])
    return runs, rows


def aggregate(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Mean, sample std (ddof = 1) and n per method, epoch and quantity, in float64; tidy."""
    out = []
    for quantity in QUANTITIES:
        values = rows[["method", "epoch", quantity]].astype({quantity: "float64"}).dropna()
        stats = values.groupby(["method", "epoch"])[quantity].agg(["mean", "std", "count"]).reset_index()
        out.append(stats.rename(columns={"count": "n"}).assign(quantity=quantity))
    tidy = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    if not len(tidy):
        return pd.DataFrame(columns=COLUMNS)
    rank = {m: k for k, m in enumerate(order)}
    tidy["method_slug"] = tidy["method"]
    tidy["method"] = tidy["method_slug"].map(lambda m: METHODS[m].paper_name if m in METHODS else m)
    tidy["_q"] = tidy["quantity"].map(list(QUANTITIES).index)
    tidy["_m"] = tidy["method_slug"].map(lambda m: rank.get(m, len(rank)))
    return tidy.sort_values(["_q", "_m", "method_slug", "epoch"])[COLUMNS].reset_index(drop=True)


def legend_labels(runs: list[dict], tidy: pd.DataFrame, order: list[str]) -> dict[str, str]:
    """{method slug: "DTP (n=2, 1 diverged)"} for every method with a run, in ``order``: n is the number
    of finished runs averaged, then the others by status."""
    labels = {}
    present = [m for m in order if any(r["method"] == m for r in runs)]
    present += sorted({r["method"] for r in runs} - set(present))
    for m in present:
        statuses = Counter(r["status"] for r in runs if r["method"] == m)
        averaged = statuses.pop("finished", 0)
        if averaged and not len(tidy[tidy.method_slug == m]):
            statuses["without metrics"] += averaged
            averaged = 0
        others = "".join(f", {k} {s}" for s, k in sorted(statuses.items()))
        labels[m] = f"{METHODS[m].paper_name if m in METHODS else m} (n={averaged}{others})"
    return labels


def synthetic(runs: list[dict], source: str) -> bool:
    """Synthetic data: as the averaged (finished, accepted) runs' summaries record it, else as the pipeline
    says (``source``): a rejected synthetic run does not mark a figure of real runs."""
    recorded = {r.get("data_source") for r in runs if r.get("status") == "finished"} - {None}
    return "synthetic" in (recorded or {source})


def provenance(runs: list[dict], source: str) -> str:
    """One line: the runs behind the figure, their data, seeds, epochs, code version and device."""
    read = [r for r in runs if "config" in r]
    join = lambda values: ", ".join(sorted({str(v) for v in values}, key=lambda v: (len(v), v))) or "—"  # noqa: E731
    statuses = ", ".join(f"{k} {s}" for s, k in sorted(Counter(r["status"] for r in runs).items()))
    data = "SYNTHETIC data (smoke run)" if synthetic(read, source) else "real data"
    return (f"{len(runs)} run{'' if len(runs) == 1 else 's'} ({statuses}): {data}; "
            f"seeds {join(r['seed'] for r in read)}; epochs {join(r['config'].get('epochs') for r in read)}; "
            f"code {join(short(str(r.get('code_version'))) for r in read)} (full commits: results/README.md); "
            f"{join(r.get('device_name') for r in read)}")


def short(version: str) -> str:
    """A commit shortened to 12 hex digits, ``+dirty`` kept; anything else as it is."""
    head, dirty, _ = version.partition("+dirty")
    return head[:12] + dirty if len(head) == 40 else version


def draw(tidy: pd.DataFrame, labels: dict[str, str], title: str, footer: str):
    """Two panels (test error, training loss) over the epochs, a line and a ±1 std band per method."""
    methods = list(labels)
    colours = sns.color_palette("colorblind", 10)
    palette = {m: colours[COLOUR_ORDER[k % 10]] for k, m in enumerate(methods)}
    styles = {m: LINESTYLES[k % len(LINESTYLES)] for k, m in enumerate(methods)}  # colour, line and marker:
    markers = {m: MARKERS[k % len(MARKERS)] for k, m in enumerate(methods)}   # each method differs in three
    fig = plt.figure(figsize=(10, 5.6), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[5, 1])  # the curves; under them the legend, then the footer
    axes = [fig.add_subplot(grid[0, 0])]
    axes.append(fig.add_subplot(grid[0, 1], sharex=axes[0]))
    key = fig.add_subplot(grid[1, :])
    key.axis("off")
    for ax, (quantity, ylabel) in zip(axes, QUANTITIES.items()):
        for m in methods:
            g = tidy[(tidy.method_slug == m) & (tidy.quantity == quantity)]
            x, mean = g["epoch"].to_numpy(float), g["mean"].to_numpy(float)
            std = np.nan_to_num(g["std"].to_numpy(float))  # one seed: no band
            ax.plot(x, mean, color=palette[m], linestyle=styles[m], lw=1.2, marker=markers[m],
                    markevery=max(1, len(x) // 8), markersize=4,
                    label=labels[m])  # (a method without a finished run: its legend entry only)
            if quantity == "train_loss":
                lower, upper = np.maximum(mean - std, mean / 10), mean + std
            else:
                lower, upper = np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100)
            ax.fill_between(x, lower, upper, color=palette[m], alpha=0.15, lw=0)
            if len(x) == 1:  # one epoch (a smoke run): a band of one point is invisible, an error bar is not
                ax.errorbar(x, mean, yerr=[mean - lower, upper - mean], color=palette[m], capsize=3, lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=1))
        if quantity == "test_error" and len(tidy[tidy.quantity == quantity]):
            low, high, first = error_range(tidy)
            ax.set_ylim(low, high)
            if first is not None:
                ax.set_title(f"{ylabel}; before epoch {first}, values above {high:.3g} off the axis", fontsize=8)
        if quantity == "train_loss" and len(tidy[tidy.quantity == quantity]):
            ax.set_yscale("log")
            low, high = ax.get_ylim()
            if high < 10 * low:  # less than a decade: plain numbers on the ticks
                for set_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                    set_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    if not len(tidy):
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes,
                    fontsize=12, color="0.4")
    if methods:
        key.legend(*axes[0].get_legend_handles_labels(), loc="center", ncol=min(len(methods), 4), fontsize=7,
                   frameon=False)
    fig.suptitle(title)
    fig.supxlabel(textwrap.fill(footer, 200), fontsize=6)  # wrapped: the whole provenance inside the figure
    return fig


def error_range(tidy: pd.DataFrame) -> tuple[float, float, int | None]:
    """The test-error axis a reader compares on: the band (mean ± std) of every method from the epoch a quarter
    into the runs on (at least the 2nd), padded by 5 % of the range; the first epoch whose values it leaves
    above the axis (None when nothing is cut)."""
    err = tidy[tidy.quantity == "test_error"]
    top = (err["mean"] + err["std"].fillna(0)).astype(float)
    start = max(2, int(math.ceil(err["epoch"].max() / 4)))
    late = err["epoch"] >= start if (err["epoch"] >= start).any() else err["epoch"] >= err["epoch"].min()
    low = float((err["mean"] - err["std"].fillna(0))[late].min())
    high = float(top[late].max())
    pad = max(0.05 * (high - low), 0.05)
    low, high = max(0.0, low - pad), min(100.0, high + pad)
    cut = err[top > high]
    return low, high, (int(cut["epoch"].max()) + 1 if len(cut) else None)


def build(summaries, dataset: str, rows: list[list[str]], source: str, png, pdf, csv,
          audit_args: dict | None = None, tuning: str = "test") -> pd.DataFrame:
    """Read the runs of ``tuning`` (audited with ``audit_args``, see :func:`load`), write the figure (PNG, PDF)
    and the tidy CSV; the tidy frame."""
    order = method_order(rows)
    runs, metric_rows = load(summaries, audit_args)
    tidy = aggregate(metric_rows, order)
    tidy.to_csv(csv, index=False)
    sns.set_theme(style="whitegrid", context="paper")
    name = DATASETS[dataset].paper_name if dataset in DATASETS else dataset
    title = (f"Learning curves: {name}" + (SYNTHETIC if synthetic(runs, source) else "")
             + f"\n{TUNING_LINE[tuning]}, mean ± std over the finished seeds")
    fig = draw(tidy, legend_labels(runs, tidy, order), title, provenance(runs, source))
    fig.savefig(png, dpi=150)
    fig.savefig(pdf, metadata={"CreationDate": None})  # no date: the same figure gives the same bytes
    plt.close(fig)
    n = Counter(r["status"] for r in runs)
    print(f"{dataset}: {len(runs)} runs ({dict(n)}); {len(tidy)} points written to {csv}")
    return tidy


def main(argv=None) -> int:
    import yaml

    p = argparse.ArgumentParser(description="Learning curves of one dataset from the runs of one tuning.")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--tuning", default="test", choices=sorted(TUNING_LINE))
    p.add_argument("--results", default="results")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--out-dir", default=None, help="folder of the outputs (default: RESULTS/figures)")
    p.add_argument("--no-audit", action="store_true", help="average every finished run without the run audit "
                   "(tp.runs.audit: folder, configuration, metrics, numerics version, data source)")
    args = p.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    tables = [s for s in cfg["tables"].values() if s["tuning"] == args.tuning and args.dataset in s["columns"]]
    methods = set(method_order([s["rows"] for s in tables]))
    summaries = sorted(p for p in Path(args.results).glob(f"runs/{args.tuning}/*/{args.dataset}/seed*/summary.json")
                       if p.parent.parent.parent.name in methods)
    out = Path(args.out_dir or Path(args.results) / "figures")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"curves_{PREFIX[args.tuning]}{args.dataset}"
    build(summaries, args.dataset, [s["rows"] for s in tables], cfg["data"]["source"],
          f"{stem}.png", f"{stem}.pdf", f"{stem}.csv", None if args.no_audit else
          {"overrides": cfg.get("overrides"), "epochs": cfg.get("epochs"), "data_source": cfg["data"]["source"]},
          args.tuning)
    return 0


def main_snakemake(sm) -> None:
    summaries = [p for p in sm.input if str(p).endswith("summary.json")]  # (the runs' other files are inputs too)
    build(summaries, sm.wildcards.dataset, sm.params.rows, sm.params.get("source", "real"),
          sm.output.png, sm.output.pdf, sm.output.csv,
          {"overrides": sm.params.overrides, "epochs": sm.params.epochs, "data_source": sm.params.source},
          sm.params.get("tuning", "test"))


if __name__ == "__main__":
    if "snakemake" in globals():
        import contextlib

        with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):  # noqa: F821
            main_snakemake(snakemake)  # noqa: F821
    else:
        raise SystemExit(main())
