"""Fig. 2 and Fig. S3 of the paper: the toy experiments (docs/algorithms.md#fig-2-null-space-component-of-the-updates,
docs/algorithms.md#fig-s3-direction-of-the-output-change; library: tp.toy).

Outputs (in --out-dir):
  fig2_nullspace.png/.pdf          bar chart of ‖ΔW₂^null‖/‖ΔW₂‖ (layer 2 = second hidden layer): bar = mean
                                   over the logged samples (200 in the full run), error bar = std
  fig2_nullspace.csv               tidy per-sample ratios (method, paper_name, seed, epoch, sample, layer, ratio)
  fig2_nullspace_summary.csv       method, paper_name, layer, mean, std, n  (every layer)
  figS3_output_space.png/.pdf      MSE contours around the target y and the directions of the output change
                                   of one BP and one GNT step, drawn from y_before
  figS3_output_space.json          the numbers behind Fig. S3
  toy_provenance.json              how they were made: resolved toy configuration, seeds, full code version,
                                   CPU, torch, wall time of each experiment, date

Standalone and in the pipeline (rule toy_figures, a shell rule):
    python workflow/scripts/toy_figures.py --out-dir results/figures [--tiny] [--seed 42]
"""

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from tp import toy  # noqa: E402
from tp.runs.versions import NUMERICS_VERSION  # noqa: E402
from tp.training.records import code_version, device_name  # noqa: E402

#: the tiny mode: a smoke run of the whole script in seconds
TINY = dict(epochs_fb=1, epochs=1, extra_fb_epochs=1, num_train=40, num_test=10, log_interval=10)
BAR_LAYER = 2  # Fig. 2 shows the second hidden layer


def run_nullspace(seed: int | None, tiny: bool, log=print) -> pd.DataFrame:
    frames = []
    for method, paper_name in toy.NULLSPACE_METHODS.items():
        hp = toy.nullspace_hyperparameters(method)
        s = int(hp["random_seed"] if seed is None else seed)
        t0 = time.perf_counter()
        records = toy.nullspace_experiment(method, hp, seed=s, **(TINY if tiny else {}))
        log(f"fig2: {paper_name}: {len(records)} records in {time.perf_counter() - t0:.1f} s")
        df = pd.DataFrame(records)
        df.insert(1, "paper_name", paper_name)
        df.insert(2, "seed", s)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def summary_table(tidy: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for s in toy.summarize_ratios(tidy.to_dict("records")):
        rows.append({"method": s["method"], "paper_name": toy.NULLSPACE_METHODS[s["method"]], "layer": s["layer"],
                     "mean": s["mean"], "std": s["std"], "n": s["n"]})
    order = {m: k for k, m in enumerate(toy.NULLSPACE_METHODS)}
    rows.sort(key=lambda r: (r["layer"], order[r["method"]]))
    return pd.DataFrame(rows)


def save(fig, stem: Path) -> None:
    """PNG and PDF; the PDF without its creation date, so that the same figure gives the same bytes."""
    fig.savefig(stem.with_suffix(".png"), dpi=200)
    fig.savefig(stem.with_suffix(".pdf"), dpi=200, metadata={"CreationDate": None})
    plt.close(fig)


def provenance(tiny: bool, seed: int | None, output_space_seed: int, seconds: dict[str, float]) -> dict:
    """What made the toy outputs (the toy counterpart of a run's summary.json provenance)."""
    return {
        "experiments": {"fig2_nullspace": {m: int(toy.nullspace_hyperparameters(m)["random_seed"] if seed is None
                                                   else seed) for m in toy.NULLSPACE_METHODS},
                        "figS3_output_space": {"seed": output_space_seed}},
        "tiny": tiny,
        "config": toy.load_toy_config(),
        "code_version": code_version(),
        "numerics_version": NUMERICS_VERSION,
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "wall_time_s": {k: round(v, 2) for k, v in seconds.items()},
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def plot_nullspace(summary: pd.DataFrame, out: Path, tiny: bool) -> None:
    sel = summary[summary["layer"] == BAR_LAYER].set_index("method").loc[list(toy.NULLSPACE_METHODS)]
    colors = sns.color_palette("colorblind", len(sel))
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    xs = range(len(sel))
    ax.bar(xs, sel["mean"], yerr=sel["std"], capsize=6, color=colors, edgecolor="black", linewidth=0.6)
    # the method and its sample count under its bar: no legend over the data
    ax.set_xticks(list(xs), [f"{p}\n(n = {n})" for p, n in zip(sel["paper_name"], sel["n"])])
    ax.set_ylabel(r"$\|\Delta W_2^{\mathrm{null}}\|_F \,/\, \|\Delta W_2\|_F$")
    ax.set_xlabel("method")
    ax.set_ylim(0, max(1.0, float((sel["mean"] + sel["std"]).max()) * 1.05))
    ax.set_title("Fig. 2: null-space component of the layer-2 update\nstudent–teacher toy, mean ± std over samples"
                 + ("\n(TINY RUN: a smoke check, not a result)" if tiny else ""), fontsize=9)
    sns.despine(ax=ax)
    fig.tight_layout()
    save(fig, out / "fig2_nullspace")


def plot_output_space(res: toy.OutputSpaceResult, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.0, 5.6))
    cs = ax.contourf(res.grid_x.numpy(), res.grid_y.numpy(), res.loss_grid.numpy(), levels=res.levels,
                     cmap="Blues_r", alpha=0.8)
    fig.colorbar(cs, ax=ax, label=r"MSE$(\cdot, y)$", shrink=0.8)
    colors = sns.color_palette("colorblind", 3)
    start = res.y_before.numpy()
    width = 0.012 * (float(res.grid_x[-1] - res.grid_x[0]))
    # GNT drawn wide underneath, BP narrow on top: both stay visible when they (nearly) coincide
    for (name, label, w), c in zip((("gnt", "GNT", 1.8), ("bp", "BP", 0.8)), (colors[2], colors[1])):
        d = res.arrow[name].numpy()
        ax.arrow(start[0], start[1], d[0], d[1], width=w * width, head_width=3 * w * width,
                 length_includes_head=True, color=c,
                 label=f"{label} step (cos to $-e$ = {res.cos_to_neg_error[name]:.4f})")
    ax.plot(*res.y.numpy(), marker="*", markersize=14, color="black", linestyle="none", label="target $y$")
    ax.plot(*start, marker="o", markersize=6, color=colors[0], linestyle="none",
            label=r"output before the step, $y_{\mathrm{before}}$")
    ax.set_xlabel(r"output $y_1$")
    ax.set_ylabel(r"output $y_2$")
    ax.set_aspect("equal")
    ax.set_title(f"Direction of the output change\none SGD step on all layers, lr = {res.lr:g}", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, framealpha=0.9)
    fig.tight_layout()
    save(fig, out / "figS3_output_space")


def run(out_dir, tiny: bool = False, seed: int | None = None, output_space_seed: int | None = None,
        log=print) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # batch size 1: thousands of tiny tensor ops
    sns.set_theme(context="paper", style="whitegrid")

    t0 = time.perf_counter()
    tidy = run_nullspace(seed, tiny, log)
    t_fig2 = time.perf_counter() - t0
    tidy.to_csv(out / "fig2_nullspace.csv", index=False)
    summary = summary_table(tidy)
    summary.to_csv(out / "fig2_nullspace_summary.csv", index=False)
    plot_nullspace(summary, out, tiny)
    for _, r in summary[summary["layer"] == BAR_LAYER].iterrows():
        log(f"fig2: layer {BAR_LAYER} {r['paper_name']}: {r['mean']:.4f} ± {r['std']:.4f} (n = {r['n']})")

    t0 = time.perf_counter()
    res = toy.output_space_experiment(output_space_seed)
    t_s3 = time.perf_counter() - t0
    plot_output_space(res, out)
    info = {
        "seed": res.seed, "lr": res.lr, "x": res.x.tolist(), "y": res.y.tolist(), "y_before": res.y_before.tolist(),
        "delta_y": {k: v.tolist() for k, v in res.delta_y.items()},
        "cos_to_neg_error": res.cos_to_neg_error, "arrow_length": res.arrow_length, **res.meta,
    }
    (out / "figS3_output_space.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"figS3: cos(Δy, −e): GNT {res.cos_to_neg_error['gnt']:.5f}, BP {res.cos_to_neg_error['bp']:.5f}")
    (out / "toy_provenance.json").write_text(json.dumps(
        provenance(tiny, seed, res.seed, {"fig2_nullspace": t_fig2, "figS3_output_space": t_s3}), indent=2) + "\n")
    log(f"fig2 wall time {t_fig2:.1f} s, figS3 {t_s3:.1f} s; outputs in {out}")
    return {"summary": summary, "output_space": res, "fig2_seconds": t_fig2}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Fig. 2 (null-space ratios) and Fig. S3 (output-space direction).")
    p.add_argument("--out-dir", default="results/figures", help="folder of the figures and CSVs")
    p.add_argument("--tiny", action="store_true", help="smoke run: 1 pre-training epoch, 1 epoch, 40 samples")
    p.add_argument("--seed", type=int, default=None, help="seed of Fig. 2 (default: tp/configs/toy.yaml, 42)")
    p.add_argument("--output-space-seed", type=int, default=None,
                   help="seed of Fig. S3 (default: tp/configs/toy.yaml, 93)")
    args = p.parse_args(argv)
    run(args.out_dir, args.tiny, args.seed, args.output_space_seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
