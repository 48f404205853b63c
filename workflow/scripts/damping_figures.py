"""The damping-search curves behind Table S7 (one figure per dataset, a panel per method and seed): the
mean angle between the method's update and the damped GNT update against λ, one line per hidden layer.

Solid lines with error bars: the paired search (tp.metrics.damping; the same minibatches for every λ), mean ± 2
standard errors of the mean; a filled marker is a λ within 2 SE of the paired difference to the layer's
minimum ("any of" in Table S7), a hollow one is told apart from it.  Dotted lines with crosses: the official
procedure's means (docs/algorithms.md#the-damping-search-table-s7; a few minibatches, different ones for every λ; no
error bars).  A star marks a layer's choice (the paired λ*, else the official one) that is the first or last λ of its
grid ("at the grid edge" in Table S7: at the top the best λ may lie beyond the grid), and the panel title names those
layers.  The x-axis is logarithmic, with λ = 0 drawn one decade left of the smallest positive λ (tick "0").  A
run made before the paired search has only the dotted lines, and its panel says so.  Under the figure: data, epochs, networks,
code version and device of its runs, read from their summaries.
"""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tp.catalog import DATASETS, METHODS  # noqa: E402

NOT_RUN_PAIRED = "paired search not run (made before it)"


def x_position(lams) -> dict[float, float]:
    """λ → its x on the log axis: λ = 0 one decade left of the smallest positive λ."""
    positive = sorted(v for v in lams if v > 0)
    zero_at = positive[0] / 10 if positive else 1.0
    return {v: (zero_at if v == 0 else v) for v in lams}


def load(summaries, methods) -> list[dict]:
    """One entry per run: its summary and its official and paired rows (None where a file is absent)."""
    runs = []
    for path in map(Path, summaries):
        s = json.loads(path.read_text())
        if s["method"] not in methods:
            continue
        official = path.parent / "damping_search.csv"
        paired = path.parent / "damping_paired.csv"
        runs.append({"summary": s, "official": pd.read_csv(official) if official.exists() else None,
                     "paired": pd.read_csv(paired) if paired.exists() else None})
    rank = {m: k for k, m in enumerate(methods)}
    return sorted(runs, key=lambda r: (rank[r["summary"]["method"]], r["summary"]["seed"]))


def edge_choices(run) -> dict[int, tuple[float, float]]:
    """layer → (λ, mean angle) of the choices at the grid edge: the paired λ* where the run has a paired search,
    else the official choice; the edge is the first or last λ of that procedure's curve."""
    s, curve = run["summary"], run["paired"] if run["paired"] is not None else run["official"]
    chosen = s.get("damping_paired_selected") if run["paired"] is not None else s.get("damping_selected")
    if curve is None or not chosen:
        return {}
    out = {}
    for layer, lam in enumerate(chosen, start=1):
        g = curve[curve.layer == layer]
        if len(g) and lam in (g.damping.min(), g.damping.max()):
            out[layer] = (lam, float(g[g.damping == lam].mean_angle.iloc[0]))
    return out


def panel(ax, run, colors, pos) -> None:
    s = run["summary"]
    title = f"{METHODS[s['method']].paper_name}, seed {s['seed']}"
    edges = edge_choices(run)
    for layer, (lam, value) in edges.items():
        ax.scatter([pos[lam]], [value], marker="*", s=70, color=colors.get(layer, "black"), edgecolors="black",
                   linewidths=0.5, zorder=4)
    if run["official"] is not None:
        for layer, g in run["official"].groupby("layer"):
            g = g.sort_values("damping")
            ax.plot(g.damping.map(pos), g.mean_angle, ls=":", marker="x", ms=3, lw=0.8, color=colors[layer])
    if run["paired"] is not None:
        for layer, g in run["paired"].groupby("layer"):
            g = g.sort_values("damping")
            x = g.damping.map(pos)
            ax.errorbar(x, g.mean_angle, yerr=2 * g.se.fillna(0.0), color=colors[layer], lw=1.2, capsize=2,
                        label=f"hidden layer {layer}")
            within = g.within_2se.astype(str).str.lower() == "true"
            ax.scatter(x[within], g.mean_angle[within], color=colors[layer], s=16, zorder=3)
            ax.scatter(x[~within], g.mean_angle[~within], facecolors="white", edgecolors=colors[layer], s=16,
                       zorder=3)
        title += f" ({int(run['paired'].batches.max())} minibatches)"
    else:
        title += f"\n{NOT_RUN_PAIRED}"
    if edges:
        title += f"\nat the grid edge: layer{'s' if len(edges) > 1 else ''} {', '.join(map(str, edges))}"
    ax.set_title(title, fontsize=7)


def figure(runs, dataset: str, source: str):
    lams = sorted({float(v) for r in runs for f in ("official", "paired") if r[f] is not None for v in r[f].damping})
    pos = x_position(lams)
    layers = sorted({int(v) for r in runs for f in ("official", "paired") if r[f] is not None for v in r[f].layer})
    colors = dict(zip(layers, sns.color_palette("colorblind", len(layers))))
    seeds = sorted({r["summary"]["seed"] for r in runs})
    ncols = len(seeds) if len(seeds) > 1 else min(2, len(runs))
    nrows = math.ceil(len(runs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 1.6, 2.3 * nrows + 1.2), sharex=True,
                             squeeze=False, layout="constrained")
    for ax, run in zip(axes.flat, runs):
        panel(ax, run, colors, pos)
        ax.set_xscale("log")
        ax.set_xticks([pos[v] for v in lams], ["0" if v == 0 else f"{v:g}" for v in lams], fontsize=6)
        ax.minorticks_off()
        ax.set_ylabel("angle (°)", fontsize=7)
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("GNT damping λ", fontsize=7)
    handles = [plt.Line2D([], [], color=colors[i], lw=1.2, label=f"hidden layer {i}") for i in layers] + [
        plt.Line2D([], [], color="grey", lw=1.2, marker="o",
                   label="paired: mean ± 2 SE (filled: within 2 SE of the min.)"),
        plt.Line2D([], [], color="grey", lw=0.8, ls=":", marker="x", label="official procedure (docs/algorithms.md#the-damping-search-table-s7)"),
        plt.Line2D([], [], color="grey", lw=0, marker="*", markersize=9, markeredgecolor="black",
                   label="choice at the grid edge")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=6)
    fig.suptitle(f"Damping search (Table S7): {dataset}\nangle between the method's update and the damped GNT "
                 "update against λ" + (" — SYNTHETIC DATA, NOT A RESULT" if source == "synthetic" else ""),
                 fontsize=9)
    return fig


def provenance(runs, source: str) -> str:
    """One line: which data, epochs, networks, code version and device produced the figure's runs."""
    sums = [r["summary"] for r in runs]
    recorded = {s.get("data_source") for s in sums} - {None}
    data = "SYNTHETIC data (smoke run)" if "synthetic" in (recorded or {source}) else "real data"
    nets = sorted({f"CNN conv {'/'.join(map(str, s['config']['conv_channels']))} channels, "
                   f"FC {s['config']['size_hidden']}" if s["config"].get("model") == "cnn" else
                   f"{s['config']['num_hidden']} hidden layers of {s['config']['size_hidden']}" for s in sums})
    return (f"{len(sums)} damping searches: {data}, seed {', '.join(map(str, sorted({s['seed'] for s in sums})))}, "
            f"after {'/'.join(map(str, sorted({s['epochs_run'] for s in sums})))} training epochs; networks: "
            f"{'; '.join(nets)}; code {', '.join(sorted({str(s.get('code_version'))[:12] for s in sums}))}; "
            f"{', '.join(sorted({str(s.get('device_name')) for s in sums}))}")


def main(sm):
    sns.set_theme(style="whitegrid", context="paper")
    source = sm.params.get("source", "real")
    runs = load([p for p in sm.input if str(p).endswith("summary.json")], sm.params.methods)
    if not runs:
        raise ValueError(f"no damping-search runs of {sm.params.methods} among the inputs")
    fig = figure(runs, DATASETS[sm.wildcards.dataset].paper_name, source)
    fig.supxlabel(provenance(runs, source), fontsize=6)
    fig.savefig(sm.output.png, dpi=150)
    fig.savefig(sm.output.pdf, metadata={"CreationDate": None})  # no date: the same figure, the same bytes
    plt.close(fig)


if __name__ == "__main__":
    import contextlib

    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # noqa: F821
        main(snakemake)  # noqa: F821
