"""Table S7: the GNT damping λ_i selected per hidden layer by the damping search (SPEC §7.2), per method
and dataset, next to the values the paper's alignment-figure configurations use."""

import json
from pathlib import Path

import pandas as pd

from tp.catalog import DATASETS, METHODS
from tp.config import resolve_config


def fmt(v):
    return "—" if v is None else f"{v:g}"


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


def main(sm):
    rows = []
    summaries = [json.loads(Path(p).read_text()) for p in sm.input]
    for s in summaries:
        figure = resolve_config(s["method"], s["dataset"], "alignment")["gn_damping_per_hidden_layer"]
        selected = s.get("damping_selected") or []
        for i, lam in enumerate(selected, start=1):
            fig_lam = figure if isinstance(figure, (int, float)) else figure[i - 1]
            rows.append({"dataset": DATASETS[s["dataset"]].paper_name, "method": METHODS[s["method"]].paper_name,
                         "dataset_slug": s["dataset"], "method_slug": s["method"], "layer": i, "selected": lam,
                         "figure_config": fig_lam, "differs": lam != fig_lam, "status": s["status"]})
    tidy = pd.DataFrame(rows)
    tidy.to_csv(sm.output.csv, index=False)
    source = sm.params.get("source", "real")
    md, tex = ["**Table S7: GNT damping λ selected per hidden layer by the damping search** "
               "(in parentheses: the value of the paper's figure configuration where it differs)"
               + (" — SYNTHETIC DATA, NOT A RESULT" if source == "synthetic" else ""), ""], []
    for ds in sm.params.datasets:
        part = tidy[tidy.dataset_slug == ds]
        if not len(part):
            continue
        cell = part.apply(lambda r: fmt(r.selected) + ("" if not r.differs else f" ({fmt(r.figure_config)})"),
                          axis=1)
        wide = part.assign(cell=cell).pivot(index="method", columns="layer", values="cell")
        order = [METHODS[m].paper_name for m, d in sm.params.cells if d == ds]
        wide = wide.reindex([o for o in order if o in wide.index])
        wide.columns = [f"layer {c}" for c in wide.columns]
        wide.index.name = None
        md += [f"*{DATASETS[ds].paper_name}*", "", wide.to_markdown(), ""]
        pending = [o for o in order if o not in wide.index]
        if pending:  # a partial build (--config partial=true): searches not run yet
            md += [f"Pending on {DATASETS[ds].paper_name} (damping search not run yet): {', '.join(pending)}.", ""]
        tex.append(wide.style.to_latex(hrules=True,
                                       caption=f"Table S7, {DATASETS[ds].paper_name}: selected GNT damping"))
    for ds, reason in sm.params.get("not_run", []):
        md += [f"*{DATASETS[ds].paper_name}*: {reason}", ""]
    differing = int(tidy["differs"].sum()) if len(tidy) else 0
    md.append(f"* {differing} of {len(tidy)} selected values differ from the figure configurations' values. "
              "The search runs after 3 training epochs with all parameters frozen, over Λ = {0, 1e-5, …, 10}; "
              "the paper's text says after two epochs (SPEC §7.2, Q7).")
    md.append(f"* {provenance(summaries, source)}")
    Path(sm.output.md).write_text("\n".join(md) + "\n")
    write_html(sm.output.html, md)
    Path(sm.output.tex).write_text("\n".join(tex))


if __name__ == "__main__":
    import contextlib

    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # noqa: F821
        main(snakemake)  # noqa: F821
