"""Write RESULTS/README.md: an index of every table (Table S7 included) and figure, with the data source, the
dataset files read (their SHA-256 and where they came from), the code version and configuration behind it, and what
was not run (datasets missing or not selected)."""


import json
import os
import time
from pathlib import Path

import pandas as pd
import yaml


def run_times(results: Path) -> list[str]:
    """The measured wall time of the runs per cell (table runs, alignment and damping runs), from their
    summaries: what a run of each cell costs on the machines that made them."""
    rows = []
    for path in results.glob("runs/*/*/*/seed*/summary.json"):
        s = json.loads(path.read_text())
        rows.append({"tuning": s.get("tuning"), "method": s.get("method"), "dataset": s.get("dataset"),
                     "status": s.get("status"), "hours": (s.get("wall_time_s") or float("nan")) / 3600,
                     "epochs": s.get("epochs_run"), "device": s.get("device_name"),
                     "block": bool(s.get("block_seeds"))})
    if not rows:
        return []
    df = pd.DataFrame(rows)
    cells = (df.groupby(["tuning", "method", "dataset", "device", "block"], dropna=False)
             .agg(runs=("hours", "size"), finished=("status", lambda v: int((v == "finished").sum())),
                  epochs=("epochs", "max"), hours_mean=("hours", "mean"), hours_min=("hours", "min"),
                  hours_max=("hours", "max"))
             .reset_index().sort_values(["tuning", "dataset", "hours_mean"]))
    cells["block"] = cells["block"].map({True: "seed block", False: "one seed"})
    return ["", "## Wall time per run", "",
            "Measured: `wall_time_s` of each run's summary (a seed block's is the block's), in hours, per cell and "
            "device.", "", cells.to_markdown(index=False, floatfmt=".3f")]


def data_files(results: Path) -> list[str]:
    """The dataset files the runs read (``data_sha256`` of their summaries: each file's SHA-256) and where each
    came from (``data_origin``: the package file it was unpacked from; else the data root's own file)."""
    runs: dict[tuple[str, str, str], int] = {}
    for path in results.glob("runs/*/*/*/seed*/summary.json"):
        s = json.loads(path.read_text())
        origin = s.get("data_origin") or {}
        for file, digest in (s.get("data_sha256") or {}).items():
            key = (file, digest, origin.get(file, "the data root"))
            runs[key] = runs.get(key, 0) + 1
    if not runs:
        return []
    table = pd.DataFrame([{"file (under the data root)": f, "SHA-256": d, "read from": o, "runs": n}
                          for (f, d, o), n in sorted(runs.items())])
    return ["", "## Data files read", "",
            "The dataset files the runs read: `data_sha256` (the SHA-256 of each unpacked file) and `data_origin` of "
            "their summaries. \"the data root\": downloaded or put there; otherwise the operating-system package "
            "file it was unpacked from (a package may recompress the `.gz` files, whose MD5 sums then differ from "
            "the published archives': the SHA-256 is the unpacked file's).", "", table.to_markdown(index=False)]


def campaigns(results: Path) -> list[str]:
    """The campaigns that made the runs (``campaigns.csv``: one row per campaign, appended by
    workflow/scripts/campaign.py): when, which commit, which command, on which machine, what finished."""
    path = results / "campaigns.csv"
    if not path.exists():
        return []
    return ["", "## Campaigns", "", "The commands that made the runs above (`campaigns.csv`).", "",
            pd.read_csv(path).to_markdown(index=False)]


def public_config(cfg: dict, base: Path) -> dict:
    """The pipeline configuration as a reader may see it: an absolute data root (the builder's machine) is
    written relative to ``base``, the folder Snakemake ran in (the repository root)."""
    cfg = dict(cfg)
    root = str((cfg.get("data") or {}).get("root", ""))
    if os.path.isabs(root):
        cfg["data"] = {**cfg["data"], "root": os.path.relpath(root, base)}
    return cfg


def claims(results: Path) -> list[str]:
    """One line on `claims.md` (workflow/scripts/claims.py), with its count of verdicts, when it exists."""
    path = results / "claims.csv"
    if not path.exists():
        return []
    per = pd.read_csv(path).drop_duplicates("claim_id").claim_verdict.value_counts()
    pending, total = int(per.get("pending", 0)), int(per.sum())
    return ["## The paper's claims", "", f"[`claims.md`](claims.md) (and `claims.csv`): each claim of the paper that "
            f"these runs can test, with its test and verdict: {total - pending} of {total} claims tested: "
            f"{int(per.get('supported', 0))} supported, {int(per.get('not supported', 0))} not supported, "
            f"{int(per.get('contradicted', 0))} contradicted; {pending} pending (waiting for runs).", ""]


def header(results: Path, cfg: dict) -> list[str]:
    """The title (a smoke run says it is not results) and what the runs are: code versions, devices, data,
    seeds, epochs, overrides."""
    versions, devices, runs = set(), set(), 0
    for path in results.glob("runs/*/*/*/seed*/summary.json"):
        s = json.loads(path.read_text())
        runs += 1
        versions.add(s.get("code_version"))
        devices.add(s.get("device_name"))
    source = cfg["data"]["source"]
    return ["# Results" + (" of a SMOKE RUN on synthetic data: not results" if source == "synthetic" else ""), "",
            f"Written by the Snakemake workflow on {time.strftime('%Y-%m-%d %H:%M %Z')} from {runs} run summaries "
            f"under `runs/` (one folder per tuning/method/dataset/seed: `metrics.csv`, `summary.json`, "
            f"`config.yaml`).", "",
            f"* code version(s): {', '.join(sorted(v for v in versions if v)) or 'unknown'}",
            f"* device(s): {' | '.join(sorted(d for d in devices if d)) or 'unknown'}",
            f"* data source: {cfg['data']['source']}; seeds: {cfg['seeds']}; "
            f"epochs: {'as configured' if cfg.get('epochs') is None else cfg['epochs']}; "
            f"overrides: {cfg.get('overrides') or 'none'}",
            "* run hyperparameters: `tp/configs/hyperparameters/` of that code version (the paper's final "
            "configurations); the pipeline configuration is below.", ""]


def tables(results: Path, specs: dict, stability_seeds) -> list[str]:
    """One line per table: its files and how many runs finished, diverged, were pruned, are missing; Table S7
    and its reproducibility table."""
    lines = ["## Tables", ""]
    for name, spec in specs.items():
        tidy = pd.read_csv(results / "tables" / f"{name}.csv")
        counts = {k: int(tidy[k].sum()) for k in ("n", "diverged", "pruned", "missing")}
        not_run = int(tidy["cell"].astype(str).str.startswith("not run").sum())
        lines.append(f"* **{spec['title']}** — `tables/{name}.csv` (tidy), `tables/{name}.md`, `tables/{name}.tex`; "
                     f"{counts['n']} finished runs, {counts['diverged']} diverged, {counts['pruned']} pruned, "
                     f"{counts['missing']} missing" + (f"; {not_run} cells not run" if not_run else "") + ".")
    s7 = results / "tables" / "tableS7.csv"
    if s7.exists():
        rows = pd.read_csv(s7) if s7.stat().st_size > 1 else pd.DataFrame()
        datasets = ", ".join(dict.fromkeys(rows["dataset"])) if len(rows) else "none"
        lines.append("* **Table S7: GNT damping λ selected per hidden layer by the damping search** — "
                     "`tables/tableS7.csv` (tidy), `tables/tableS7.md`, `tables/tableS7.tex`; "
                     f"{len(rows)} selected values ({datasets}).")
    else:
        lines.append("* **Table S7: GNT damping λ selected per hidden layer by the damping search** — not built: "
                     "no alignment dataset ran (see below).")
    stability = results / "tables" / "tableS7_stability.csv"
    if stability_seeds and stability.exists():
        rows = pd.read_csv(stability)
        done = int((rows["same"].notna()).sum()) if len(rows) else 0
        lines.append("* **Table S7, reproducibility: how often the damping searches of seeds "
                     f"{', '.join(map(str, stability_seeds))} select the same λ** — "
                     "`tables/tableS7_stability.csv` (tidy), `tables/tableS7_stability.md`; "
                     f"{done} of {len(rows)} method × procedure cells compared, the others pending.")
    return lines


def beyond_the_paper(results: Path, beyond: dict, ggn: list[str]) -> list[str]:
    """The tables of the methods the paper derives but never ran, and the GGN alignment figures."""
    lines = []
    if beyond:
        lines += ["", "## Beyond the paper", "",
                  "Methods the paper derives (its Appendix D) but never ran, measured with the same pipeline "
                  "(docs/ggn.md):", ""]
        for name, title in beyond.items():
            tidy = pd.read_csv(results / "tables" / f"{name}.csv")
            lines.append(f"* **{title}** — `tables/{name}.csv` (tidy), `tables/{name}.md`, `tables/{name}.tex`; "
                         f"{int(tidy['n'].sum())} finished runs, {int(tidy['missing'].sum())} missing.")
    lines += [f"* `figures/{name}` (and `.pdf`): alignment of DDTP-linear's and DDTP-GGN's updates with the BP "
              "gradient, the damped GNT and the damped GGN update over the first epochs (tuning `ggn`), per "
              "hidden layer" for name in ggn]
    return lines


def figures(results: Path, cfg: dict, ggn: list[str]) -> list[str]:
    """The figures by kind (alignment, toy, damping searches, learning curves), Fig. 2's numbers and the toy
    figures' provenance."""
    names = sorted(p.name for p in (results / "figures").glob("*.png")) if (results / "figures").exists() else []
    if not names:
        return []
    curves = [name for name in names if name.startswith("curves_")]
    damping = [name for name in names if name.startswith("damping_search_")]
    alignment = [name for name in names if "_alignment_" in name and name not in ggn]
    lines = ["", "## Figures", ""]
    if alignment:
        lines += ["Alignment of each method's weight updates with the BP gradient and the damped GNT update over "
                  "training (smoothed, ±1 std band), from the alignment-figure configurations (seed "
                  f"{cfg.get('alignment', {}).get('seed')}); our reading of the lost captions (docs/algorithms.md#reading-the-alignment-figures): Fig. S4 = "
                  "Fashion-MNIST, S5 = MNIST, S6 = CIFAR-10 (MLP), S7 = CIFAR-10 (CNN: conv blocks 1, 2 and FC "
                  "layer 3), Fig. 4 = the first and last hidden layer of S4:", ""]
        lines += [f"* `figures/{name}` (and `.pdf`)" for name in alignment]
    else:
        lines += ["Alignment figures (Fig. 4, S4-S7): none yet (their runs are pending).", ""]
    toy = [name for name in names if name not in curves + damping + ggn + alignment]
    if toy:
        lines += ["", "The toy experiments (student-teacher regression): Fig. 2, the null-space component of "
                  "the updates; Fig. S3, the output-space view:", ""]
        lines += [f"* `figures/{name}` (and `.pdf`)" for name in toy]
    if damping:
        lines += ["", "Damping searches behind Table S7: the mean angle with the damped GNT update against λ, per "
                  "hidden layer, by the paired search (mean ± 2 SE, the same minibatches for every λ) and the "
                  "official procedure (dotted), one figure per dataset:", ""]
        lines += [f"* `figures/{name}` (and `.pdf`)" for name in damping]
    if curves:
        lines += ["", "Learning curves: test error and training loss (log scale) per epoch of every method's "
                  "test-tuned runs (`curves_DATASET`: Table 1, S6; the CNN's Table 3) and of its runs tuned for "
                  "training loss (`curves_train_DATASET`: Table 2; the CNN's Table S10), mean ± std over the "
                  "finished seeds (diverged and pruned runs counted in the legend, not averaged in), one figure "
                  "per tuning and dataset:", ""]
        lines += [f"* `figures/{name}` (and `.pdf`; the plotted numbers in `.csv`)" for name in curves]
    summary = results / "figures" / "fig2_nullspace_summary.csv"
    if summary.exists():
        bars = pd.read_csv(summary)
        bars = bars[bars.layer == 2]
        lines += ["", "Fig. 2 (null-space component ‖ΔW₂^null‖/‖ΔW₂‖ of the second hidden layer's update, "
                  "student–teacher toy, mean ± std over the logged samples): " + "; ".join(
                      f"{r.paper_name} {r['mean']:.4f} ± {r['std']:.4f}" for _, r in bars.iterrows()) + "."]
    made = results / "figures" / "toy_provenance.json"
    if made.exists():  # (toy outputs made before the provenance file existed have none)
        p = json.loads(made.read_text())
        lines += ["", f"Fig. 2 and S3 were made at code `{p['code_version']}` on {p['device']} in "
                      f"{sum(p['wall_time_s'].values()):.0f} s ({p['finished']}; `figures/toy_provenance.json`)."]
    return lines


def main(sm) -> None:
    results = Path(sm.params.results)
    cfg = sm.params.config
    ggn = sorted(p.name for p in (results / "figures").glob("ggn_alignment_*.png")) \
        if (results / "figures").exists() else []
    lines = header(results, cfg) + claims(results)
    lines += tables(results, sm.params.tables, getattr(sm.params, "stability_seeds", None))
    lines += beyond_the_paper(results, getattr(sm.params, "beyond_tables", None) or {}, ggn)
    if sm.params.not_run:
        lines += ["", "## Not run", ""] + [f"* {line}" for line in sm.params.not_run]
    lines += figures(results, cfg, ggn)
    lines += data_files(results) + run_times(results) + campaigns(results)
    lines += ["", "## Pipeline configuration", "", "```yaml",
              yaml.safe_dump(public_config(cfg, Path.cwd()), sort_keys=False).rstrip(),
              "```", ""]
    Path(sm.output[0]).write_text("\n".join(lines))


if "snakemake" in globals():  # run by the Snakefile's readme rule (tests import the functions)
    main(snakemake)  # noqa: F821
