"""Alignment figures (Fig. 4, S4-S7; docs/algorithms.md#when-the-angles-are-measured,
docs/algorithms.md#reading-the-alignment-figures): angle of each method's weight update with the BP
gradient and with the damped-GNT update, per hidden layer, over training.

For each method and layer the sequence of logged angles is smoothed with a rolling mean (window
``smooth`` logged points, ``min_periods=1``) with a ±1 rolling-std band; x = logged-point index ×
log_interval (≈ minibatches).  The output layer is omitted.  The full grid has one row per method and one
column per hidden layer; the condensed view (Fig. 4) shows the first and last hidden layer with all
methods per panel (each method its own colour and line style).  For the CNN (Fig. S7) the hidden layers are
conv block 1, conv block 2 (angles of the flattened kernels) and the FC layer 3.  The bands are clipped to
[0°, 180°], the range of an angle.  Under each figure: the data source, epochs, networks, code version and
device of its runs, read from their summaries.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tp.catalog import figure_label  # noqa: E402
from tp.catalog import METHODS  # noqa: E402

#: GGN: beyond the paper; ggn_delta: the GGN update of H + δP (alignment_hessian_damping, DDTP-GGN's δ)
REFERENCES = {"bp": "BP gradient", "gnt": "damped GNT", "ggn": "damped GGN", "ggn_delta": "damped GGN of H + δP"}
#: the references of the paper's condensed view (Fig. 4)
CONDENSED = ("BP gradient", "damped GNT")
#: line styles cycled over the methods of the condensed view (colour alone does not keep 10 apart)
LINESTYLES = ["-", "--", "-.", ":"]
#: column titles of the CNN's hidden layers (docs/algorithms.md#cnn-architecture)
CNN_LAYERS = {1: "conv block 1", 2: "conv block 2", 3: "FC layer 3"}


def provenance(summaries, source: str) -> str:
    """One line: which data, epochs, networks, code version and device produced the figure's runs."""
    runs = [json.loads(Path(p).read_text()) for p in summaries]
    epochs = sorted({r["config"]["epochs"] for r in runs})
    nets = sorted({f"CNN conv {'/'.join(map(str, r['config']['conv_channels']))} channels, FC {r['config']['size_hidden']}"
                   if r["config"].get("model") == "cnn" else
                   f"{r['config']['num_hidden']} hidden layers of {r['config']['size_hidden']}" for r in runs})
    recorded = {r.get("data_source") for r in runs} - {None}  # the runs' own record, else the pipeline's setting
    data = "SYNTHETIC data (smoke run)" if "synthetic" in (recorded or {source}) else "real data"
    seeds = sorted({r["seed"] for r in runs})
    return (f"{len(runs)} runs: {data}, seed {', '.join(map(str, seeds))}, "
            f"{'/'.join(map(str, epochs))} epoch{'' if epochs == [1] else 's'}; networks: {'; '.join(nets)}; "
            f"code {', '.join(sorted({str(r.get('code_version'))[:12] for r in runs}))}; "
            f"{', '.join(sorted({str(r.get('device_name')) for r in runs}))}")


def load(summaries, methods) -> pd.DataFrame:
    frames = []
    for path in map(Path, summaries):
        summary = json.loads(path.read_text())
        if summary["method"] not in methods or not (path.parent / "alignment.csv").exists():
            continue
        df = pd.read_csv(path.parent / "alignment.csv")
        df["method"] = METHODS[summary["method"]].paper_name
        df["log_interval"] = summary["config"]["log_interval"]
        df["hidden_layers"] = summary["config"]["num_hidden"]
        df["model"] = summary["config"].get("model", "mlp")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df = df[df.layer <= df.hidden_layers].dropna(subset=["angle"])
    order = [METHODS[m].paper_name for m in methods if METHODS[m].paper_name in set(df.method)]
    df["method"] = pd.Categorical(df["method"], order, ordered=True)
    df["reference"] = pd.Categorical(df["reference"].map(REFERENCES), list(REFERENCES.values()), ordered=True)
    return df


def smoothed(df: pd.DataFrame, window: int) -> pd.DataFrame:
    out = []
    for key, g in df.sort_values("step").groupby(["method", "layer", "reference"], observed=True):
        g = g.copy()
        g["x"] = range(0, len(g) * int(g.log_interval.iloc[0]), int(g.log_interval.iloc[0]))
        roll = g["angle"].rolling(window, min_periods=1)
        g["mean"], g["std"] = roll.mean(), roll.std().fillna(0.0)
        out.append(g)
    return pd.concat(out, ignore_index=True)


def layer_title(df: pd.DataFrame, layer: int) -> str:
    return CNN_LAYERS[layer] if (df.model == "cnn").all() else f"hidden layer {layer}"


def draw(ax, g, color, label, linestyle="-", alpha=0.2):
    ax.plot(g["x"], g["mean"], color=color, lw=1.2, label=label, linestyle=linestyle)
    # an angle lies in [0°, 180°]: so does its ±1 std band
    lower, upper = (g["mean"] - g["std"]).clip(0, 180), (g["mean"] + g["std"]).clip(0, 180)
    ax.fill_between(g["x"], lower, upper, color=color, alpha=alpha, lw=0)


def grid(df: pd.DataFrame, dataset: str):
    methods, layers = list(df.method.cat.categories), sorted(df.layer.unique())
    # colorblind palette: blue, orange, green, then purple (its 4th, dark orange, is too near GNT's orange)
    colors = dict(zip(REFERENCES.values(), [sns.color_palette("colorblind")[i] for i in (0, 1, 2, 4)]))
    fig, axes = plt.subplots(len(methods), len(layers), figsize=(max(7.0, 2.6 * len(layers)), 1.9 * len(methods) + 0.8),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for r, method in enumerate(methods):
        for c, layer in enumerate(layers):
            ax = axes[r][c]
            for ref in REFERENCES.values():
                g = df[(df.method == method) & (df.layer == layer) & (df.reference == ref)]
                if len(g):
                    draw(ax, g, colors[ref], ref)
            if r == 0:
                ax.set_title(layer_title(df, layer))
            if c == 0:
                ax.set_ylabel(f"{method}\nangle (°)", fontsize=8)
            if r == len(methods) - 1:
                ax.set_xlabel("minibatch")
    axes[0][0].set_ylim(0, 180)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    shown = " / ".join(f"the {r}" + ("" if r.startswith("BP") else " update") for r in REFERENCES.values()
                       if (df.reference == r).any())
    fig.suptitle(f"{dataset}\nangle between each method's weight update\nand {shown}")
    return fig


def condensed(df: pd.DataFrame, dataset: str):
    layers = sorted(df.layer.unique())
    first_last = [layers[0], layers[-1]]
    methods = list(df.method.cat.categories)
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    styles = {m: LINESTYLES[i % len(LINESTYLES)] for i, m in enumerate(methods)}
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True, sharey=True, squeeze=False, layout="constrained")
    for r, ref in enumerate(reversed(CONDENSED)):
        for c, layer in enumerate(first_last):
            ax = axes[r][c]
            for method in df.method.cat.categories:
                g = df[(df.method == method) & (df.layer == layer) & (df.reference == ref)]
                if len(g):
                    draw(ax, g, palette[method], method, styles[method], alpha=0.08)
            ax.set_title(f"{ref}, {layer_title(df, layer)}")
            ax.set_ylabel("angle (°)")
            if r == 1:
                ax.set_xlabel("minibatch")
    axes[0][0].set_ylim(0, 180)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, handlelength=3)
    fig.suptitle(f"{dataset}\nfirst and last hidden layer")
    return fig


def main(sm):
    from tp.catalog import DATASETS

    sns.set_theme(style="whitegrid", context="paper")
    summaries = [p for p in sm.input if str(p).endswith("summary.json")]  # (the runs' other files are inputs too)
    df = smoothed(load(summaries, sm.params.methods), sm.params.smooth)
    name = DATASETS[sm.wildcards.dataset].paper_name
    source = sm.params.get("source", "real")
    label = sm.params.get("title") or figure_label(sm.wildcards.figure)  # a title of its own: beyond the paper
    title = f"{label}: {name}" + (" — SYNTHETIC DATA, NOT A RESULT" if source == "synthetic" else "")
    fig = condensed(df, title) if sm.params.get("condensed") else grid(df, title)
    fig.supxlabel(provenance(summaries, source), fontsize=6)  # the runs behind the figure
    fig.savefig(sm.output.png, dpi=150)
    fig.savefig(sm.output.pdf, metadata={"CreationDate": None})  # no date: the same figure, the same bytes


if __name__ == "__main__":
    import contextlib

    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # noqa: F821
        main(snakemake)  # noqa: F821
