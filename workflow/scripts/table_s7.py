"""Table S7: the GNT damping λ_i selected per hidden layer by the damping search (SPEC §7.2), per method
and dataset, next to the values the paper's alignment-figure configurations use."""

import json
from pathlib import Path

import pandas as pd

from tp.config import DATASETS, METHODS, resolve_config


def fmt(v):
    return "—" if v is None else f"{v:g}"


def main(sm):
    rows = []
    for path in map(Path, sm.input):
        s = json.loads(path.read_text())
        figure = resolve_config(s["method"], s["dataset"], "alignment")["gn_damping_per_hidden_layer"]
        selected = s.get("damping_selected") or []
        for i, lam in enumerate(selected, start=1):
            fig_lam = figure if isinstance(figure, (int, float)) else figure[i - 1]
            rows.append({"dataset": DATASETS[s["dataset"]], "method": METHODS[s["method"]].paper_name,
                         "dataset_slug": s["dataset"], "method_slug": s["method"], "layer": i, "selected": lam,
                         "figure_config": fig_lam, "differs": lam != fig_lam, "status": s["status"]})
    tidy = pd.DataFrame(rows)
    tidy.to_csv(sm.output.csv, index=False)
    md, tex = ["**Table S7: GNT damping λ selected per hidden layer by the damping search** "
               "(in parentheses: the value of the paper's figure configuration where it differs)", ""], []
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
        md += [f"*{DATASETS[ds]}*", "", wide.to_markdown(), ""]
        tex.append(wide.style.to_latex(hrules=True, caption=f"Table S7, {DATASETS[ds]}: selected GNT damping"))
    differing = int(tidy["differs"].sum()) if len(tidy) else 0
    md.append(f"* {differing} of {len(tidy)} selected values differ from the figure configurations' values. "
              "The search runs after 3 training epochs with all parameters frozen, over Λ = {0, 1e-5, …, 10}; "
              "the paper's text says after two epochs (SPEC §7.2, Q7).")
    Path(sm.output.md).write_text("\n".join(md) + "\n")
    Path(sm.output.tex).write_text("\n".join(tex))


if __name__ == "__main__":
    import contextlib

    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # noqa: F821
        main(snakemake)  # noqa: F821
