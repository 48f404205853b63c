"""Table S7: the GNT damping λ_i selected per hidden layer by the damping search
(docs/algorithms.md#the-damping-search-table-s7), per method and dataset, next to the values the paper's
alignment-figure configurations use; and beside it the paired search's choice (tp.metrics.damping, issue 23): its argmin, or
"any of …" where the λ within 2 standard errors (of the paired difference) of the minimum cannot be told apart.  Runs
made before the paired search say so.

With more than one seed per cell every seed is its own row (``METHOD (seed S)``)."""

import json
from pathlib import Path

import pandas as pd

from tp.metrics.alignment import DAMPING_CANDIDATES
from tp.catalog import DATASETS, METHODS
from tp.config import resolve_config


#: the paired columns of a run made before the paired search existed (its summary has no paired fields)
NOT_RUN_PAIRED = "not run: made before the paired search"
#: the mark of a choice that is the first or last λ of its search's grid
EDGE = "[edge]"


def grid(folder, name: str) -> list[float]:
    """The λ grid a search of the run in ``folder`` went through (its ``name`` CSV: damping_search.csv,
    damping_paired.csv), else the code's (tp.metrics.alignment.DAMPING_CANDIDATES)."""
    path = Path(folder) / name if folder is not None else None
    if path is not None and path.exists():
        values = sorted({float(v) for v in pd.read_csv(path).damping})
        if values:
            return values
    return sorted(DAMPING_CANDIDATES)


def at_edge(lam, lams) -> bool:
    return lam is not None and lam in (lams[0], lams[-1])


def fmt(v):
    return "—" if v is None else f"{v:g}"


def fmt_paired(best, within, size: int = len(DAMPING_CANDIDATES)) -> str:
    """The paired choice of one layer: λ*, or "any of …" when several λ are within 2 SE of the minimum
    ("any of all 8 λ" when every λ of the search's grid, ``size`` of them, is)."""
    if best is None:
        return "—"
    within = list(within)
    if len(within) <= 1:
        return fmt(best)
    return f"any of all {len(within)} λ" if len(within) == size else \
        "any of " + ", ".join(fmt(v) for v in within)


def provenance(summaries: list, source: str) -> str:
    """Which data, epochs and networks the searches ran on, from their summaries."""
    nets = sorted({f"{DATASETS[s['dataset']].paper_name}: " + (
        f"CNN conv {'/'.join(map(str, s['config']['conv_channels']))} channels, FC {s['config']['size_hidden']}"
        if s["config"].get("model") == "cnn" else f"{s['config']['num_hidden']} hidden layers of {s['config']['size_hidden']}")
        for s in summaries})
    recorded = {s.get("data_source") for s in summaries} - {None}  # the runs' record, else the pipeline's
    data = "SYNTHETIC data (a smoke run: not the paper's datasets, not a result)" if "synthetic" in (recorded or {source}) else \
        "the real datasets"
    versions = sorted({str(s.get("code_version")) for s in summaries})
    return (f"Runs: {len(summaries)} damping searches; data: {data}; {'/'.join(map(str, sorted({s['epochs_run'] for s in summaries})))} "
            f"training epochs before the search; networks: {'; '.join(nets)}; code version: {', '.join(versions)}.")


def write_html(path, md: list[str]) -> None:
    """The Markdown of the table as a small HTML page (Snakemake's report shows it inline)."""
    from html import escape

    body = []
    for block in "\n".join(md).split("\n\n"):
        if block.startswith("|"):
            rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
                    if not set(line) <= set("|:- ")]
            body.append("<table>" + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>"
                                            for r in rows) + "</table>")
        else:
            body.append(f"<p>{escape(block.replace('*', ''))}</p>")
    Path(path).write_text("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Table S7</title><style>"
                          "body{font-family:sans-serif;font-size:14px} td{padding:2px 8px}</style></head><body>"
                          + "".join(body) + "</body></html>\n")


def tidy_rows(summaries: list, folders: list | None = None) -> list[dict]:
    """One row per run and hidden layer: the official choice, the figure configuration's value, and the
    paired choice (``paired_within_2se``: the λ within 2 SE of the minimum, ``;``-separated); each marked when
    it is the first or last λ of its search's grid (``grid_min``, ``grid_max``: the official search's)."""
    rows = []
    for s, folder in zip(summaries, folders or [None] * len(summaries)):
        official, paired = grid(folder, "damping_search.csv"), grid(folder, "damping_paired.csv")
        figure = resolve_config(s["method"], s["dataset"], "alignment")["gn_damping_per_hidden_layer"]
        selected = s.get("damping_selected") or []
        has_paired = s.get("damping_paired_selected") is not None
        for i, lam in enumerate(selected, start=1):
            fig_lam = figure if isinstance(figure, (int, float)) else figure[i - 1]
            best = s["damping_paired_selected"][i - 1] if has_paired else None
            within = s["damping_paired_within_2se"][i - 1] if has_paired else []
            rows.append({"dataset": DATASETS[s["dataset"]].paper_name, "method": METHODS[s["method"]].paper_name,
                         "dataset_slug": s["dataset"], "method_slug": s["method"], "seed": s["seed"], "layer": i,
                         "selected": lam, "figure_config": fig_lam, "differs": lam != fig_lam,
                         "paired_selected": best, "paired_within_2se": ";".join(f"{v:g}" for v in within),
                         "paired_cell": fmt_paired(best, within, len(paired))
                         + (f" {EDGE}" if at_edge(best, paired) else "")
                         if has_paired else NOT_RUN_PAIRED,
                         "paired_minibatches": s.get("damping_paired_minibatches"), "status": s["status"],
                         "grid_min": official[0], "grid_max": official[-1], "at_grid_edge": at_edge(lam, official),
                         "paired_at_grid_edge": at_edge(best, paired) if has_paired else None})
    return rows


def edge_note(tidy: pd.DataFrame, ran: pd.DataFrame) -> str:
    """How many choices are the first or last λ of their grid, and what that means."""
    official = int(tidy.at_grid_edge.sum())
    paired = int(ran.paired_at_grid_edge.astype(bool).sum()) if len(ran) else 0
    lows = sorted({f"{v:g}" for v in tidy.grid_min}), sorted({f"{v:g}" for v in tidy.grid_max})
    return (f"* {EDGE}: the choice is the first or last λ of its search's grid (λ = {', '.join(lows[0])} or "
            f"{', '.join(lows[1])}): {official} of {len(tidy)} official choices"
            + (f" and {paired} of {len(ran)} paired choices" if len(ran) else "")
            + f". At the top ({', '.join(lows[1])}) the minimum may lie beyond the grid (a larger λ: an update still "
            "closer to the gradient), so the search says only that λ is at least that large; at λ = 0 (the undamped "
            "GNT update) there is no grid below.")


def wide_table(part: pd.DataFrame, values: str, order: list[str]) -> pd.DataFrame:
    """Methods (× seeds, when a cell has several) down, hidden layers across, in the catalog's order."""
    several = part.groupby("method").seed.nunique().max() > 1
    part = part.assign(row=part.method + (" (seed " + part.seed.astype(str) + ")" if several else ""))
    wide = part.pivot(index="row", columns="layer", values=values)
    rank = {m: k for k, m in enumerate(order)}
    keys = part.drop_duplicates("row").set_index("row")
    wide = wide.loc[sorted(wide.index, key=lambda r: (rank.get(keys.method[r], len(rank)), keys.seed[r]))]
    wide.columns = [f"layer {c}" for c in wide.columns]
    wide.index.name = None
    return wide.fillna("—")  # (a run with fewer hidden layers than another of the dataset)


def main(sm):
    paths = [Path(p) for p in sm.input if str(p).endswith("summary.json")]
    summaries = [json.loads(p.read_text()) for p in paths]
    tidy = pd.DataFrame(tidy_rows(summaries, [p.parent for p in paths]))
    if len(tidy):  # an integer column with empty fields for the runs without a paired search
        tidy["paired_minibatches"] = tidy["paired_minibatches"].astype("Int64")
    tidy.to_csv(sm.output.csv, index=False)
    source = sm.params.get("source", "real")
    md, tex = ["**Table S7: GNT damping λ selected per hidden layer by the damping search** "
               "(in parentheses: the value of the paper's figure configuration where it differs), "
               "by the official procedure and by the paired one"
               + (" — SYNTHETIC DATA, NOT A RESULT" if source == "synthetic" else ""), ""], []
    for ds in sm.params.datasets:
        part = tidy[tidy.dataset_slug == ds] if len(tidy) else tidy
        if not len(part):
            continue
        order = [METHODS[m].paper_name for m, d in sm.params.cells if d == ds]
        cell = part.apply(lambda r: fmt(r.selected) + (f" {EDGE}" if r.at_grid_edge else "")
                          + ("" if not r.differs else f" ({fmt(r.figure_config)})"), axis=1)
        official = wide_table(part.assign(cell=cell), "cell", order)
        searched = part[part.paired_cell != NOT_RUN_PAIRED]  # runs made before the paired search: one line
        minibatches = part.drop_duplicates(["method", "seed"]).paired_minibatches.dropna().astype(int)
        name = DATASETS[ds].paper_name
        md += [f"*{name}*, official procedure (docs/algorithms.md#the-damping-search-table-s7: one pass per λ, the minibatches ≡ 0 mod log_interval "
               "of each pass)", "", official.to_markdown(), "",
               f"*{name}*, paired procedure (the same "
               + (f"{'/'.join(map(str, sorted(set(minibatches))))} minibatches" if len(minibatches) else "minibatches")
               + " for every λ; \"any of\": within 2 SE of the minimum)", ""]
        paired = wide_table(searched, "paired_cell", order) if len(searched) else None
        md += [paired.to_markdown(), ""] if paired is not None else []
        before = official.index.difference(paired.index if paired is not None else []).tolist()
        if before:
            md += [f"{NOT_RUN_PAIRED}: {', '.join(r for r in official.index if r in before)}.", ""]
        pending = [o for o in order if o not in set(part.method)]
        if pending:  # a partial build (--config partial=true): searches not run yet
            md += [f"Pending on {name} (damping search not run yet): {', '.join(pending)}.", ""]
        tex.append(official.style.to_latex(hrules=True, caption=f"Table S7, {name}: selected GNT damping, "
                                                                "official procedure"))
        if paired is not None:
            tex.append(paired.style.to_latex(hrules=True, caption=f"Table S7, {name}: selected GNT damping, "
                                                                  "paired procedure"))
    for ds, reason in sm.params.get("not_run", []):
        md += [f"*{DATASETS[ds].paper_name}*: {reason}", ""]
    differing = int(tidy["differs"].sum()) if len(tidy) else 0
    md.append(f"* {differing} of {len(tidy)} selected values differ from the figure configurations' values. "
              "The search runs after 3 training epochs with all parameters frozen, over Λ = {0, 1e-5, …, 10}; "
              "the paper's text says after two epochs (docs/algorithms.md#the-damping-search-table-s7).")
    ran = tidy[tidy.paired_cell != NOT_RUN_PAIRED] if len(tidy) else tidy
    undecided = int(ran.paired_cell.str.startswith("any of").sum()) if len(ran) else 0
    md.append("* The paired procedure (tp.metrics.damping) measures the same angle on one draw of full minibatches shared "
              "by every λ (one epoch unless `damping_paired_batches` says otherwise), from the same frozen network "
              "after the official passes; per layer it selects the λ of the smallest mean angle, and a λ whose "
              "mean exceeds that minimum by at most 2 standard errors of the per-minibatch difference is "
              "\"any of\" with it. "
              + (f"{undecided} of {len(ran)} paired values cannot be told apart from other λ. " if len(ran) else "")
              + (f"{len(tidy) - len(ran)} values have no paired search ({NOT_RUN_PAIRED})." if len(ran) < len(tidy)
                 else ""))
    if len(tidy):
        md.append(edge_note(tidy, ran))
    md.append(f"* {provenance(summaries, source)}")
    Path(sm.output.md).write_text("\n".join(md) + "\n")
    write_html(sm.output.html, md)
    Path(sm.output.tex).write_text("\n".join(tex))


if __name__ == "__main__":
    import contextlib

    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # noqa: F821
        main(snakemake)  # noqa: F821
