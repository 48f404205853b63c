"""Table S7's reproducibility (issue 23): how often the damping searches of several seeds select the same λ.

Per method, dataset and procedure (the official search, docs/algorithms.md#the-damping-search-table-s7, and the paired
one, tp.metrics.damping): over the hidden layers, the number where every finished seed selected the same λ (``same``) and, for
the paired procedure, the number where the seeds' sets of λ "within 2 SE of the minimum" share a λ (``overlap``: the
seeds' choices are compatible); the comparison itself is ``tp.metrics.damping.seed_agreement``.  A cell with fewer than 2
finished seeds (with a paired search, for the paired procedure) says what is pending instead of a number. Outputs: CSV
(one row per method, dataset and procedure), Markdown and HTML.

Run by Snakemake (rule ``table_s7_stability``); ``tables(summaries, cells, seeds)`` is the table as data.
"""

import json
from pathlib import Path

import pandas as pd

from tp.catalog import DATASETS, METHODS
from tp.metrics.damping import seed_agreement

PROCEDURES = {"official": "official (docs/algorithms.md#the-damping-search-table-s7)", "paired": "paired (tp.metrics.damping)"}
COLUMNS = ["dataset", "method", "procedure", "dataset_slug", "method_slug", "seeds", "finished_seeds", "n",
           "layers", "same", "overlap", "choices", "cell"]


def fmt(v) -> str:
    return "—" if v is None else f"{v:g}"


def _cell(procedure: str, n: int, seeds: list[int], agree: list[dict] | None) -> str:
    pending = len(seeds) - n
    if agree is None:  # fewer than 2 seeds to compare
        what = "seeds finished" if procedure == "official" else "seeds finished with a paired search"
        return f"pending: {n} of {len(seeds)} {what}"
    layers = len(agree)
    text = f"same λ in {sum(r['same'] for r in agree)} of {layers} layers"
    if procedure == "paired":
        text += f"; \"within 2 SE\" sets overlap in {sum(r['overlap'] for r in agree)} of {layers}"
    return text + f" (n={n}" + (f"; {pending} of {len(seeds)} seeds pending)" if pending else ")")


def tables(summaries: list[dict], cells: list, seeds: list[int]) -> pd.DataFrame:
    """One row per (method, dataset) of ``cells`` and procedure, from the damping-search summaries of
    ``seeds`` (others are ignored); a seed counts when its run finished (and, for the paired procedure, made
    the paired search)."""
    rows = []
    for method, dataset in cells:
        mine = sorted((s for s in summaries if s["method"] == method and s["dataset"] == dataset
                       and s["seed"] in seeds and s.get("status") == "finished" and s.get("damping_selected")),
                      key=lambda s: s["seed"])
        for procedure in PROCEDURES:
            runs = mine if procedure == "official" else [s for s in mine if s.get("damping_paired_selected")]
            key = "damping_selected" if procedure == "official" else "damping_paired_selected"
            agree = None
            if len(runs) >= 2:
                agree = seed_agreement([s[key] for s in runs],
                                       [s["damping_paired_within_2se"] for s in runs] if procedure == "paired" else None)
            choices = "; ".join(f"seed {s['seed']}: " + ", ".join(fmt(v) for v in s[key]) for s in runs)
            rows.append({"dataset": DATASETS[dataset].paper_name, "method": METHODS[method].paper_name,
                         "procedure": procedure, "dataset_slug": dataset, "method_slug": method,
                         "seeds": ",".join(map(str, seeds)), "finished_seeds": ",".join(str(s["seed"]) for s in runs),
                         "n": len(runs), "layers": len(agree) if agree else None,
                         "same": sum(r["same"] for r in agree) if agree else None,
                         "overlap": sum(r["overlap"] for r in agree) if agree and procedure == "paired" else None,
                         "choices": choices, "cell": _cell(procedure, len(runs), seeds, agree)})
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("layers", "same", "overlap"):
        df[col] = df[col].astype("Int64")
    return df


def markdown(df: pd.DataFrame, seeds: list[int], source: str, not_run=()) -> list[str]:
    title = ("**Table S7, reproducibility: how often the damping searches of seeds "
             f"{', '.join(map(str, seeds))} select the same λ per hidden layer**"
             + (" — SYNTHETIC DATA, NOT A RESULT" if source == "synthetic" else ""))
    md = [title, ""]
    for dataset, part in df.groupby("dataset_slug", sort=False):
        wide = part.pivot(index="method", columns="procedure", values="cell")
        wide = wide.loc[list(dict.fromkeys(part.method)), list(PROCEDURES)]
        wide.columns = [PROCEDURES[c] for c in wide.columns]
        wide.index.name = None
        md += [f"*{DATASETS[dataset].paper_name}*", "", wide.to_markdown(), ""]
        choices = [f"- {r.method}, {r.procedure}: {r.choices}" for r in part.itertuples() if r.choices]
        if choices:
            md += ["Selected λ per hidden layer (layer 1 first):", ""] + choices + [""]
    md += [f"*{DATASETS[d].paper_name}*: {reason}" for d, reason in not_run] + ([""] if not_run else [])
    md += ["* Each search: the damping run of Table S7 (the alignment configuration, 3 training epochs, then the "
           "search on the frozen network), one per seed. \"same λ\": every finished seed selected the same λ for "
           "that hidden layer; for the paired procedure, \"within 2 SE\" sets overlap: some λ is within 2 "
           "standard errors of the minimum for every seed (the seeds' choices are compatible). A cell with "
           "fewer than 2 finished seeds says what is pending. The per-seed rows are in Table S7 and the "
           "curves in figures/damping_search_DATASET."]
    return md


def write_html(path, df: pd.DataFrame, md: list[str]) -> None:
    """A small HTML page (Snakemake's report shows it inline): the title, the tidy rows, the notes."""
    from html import escape

    shown = df[["dataset", "method", "procedure", "cell", "choices"]]
    notes = "".join(f"<p>{escape(line.strip('*').lstrip('* '))}</p>" for line in md[1:] if line.startswith("* "))
    Path(path).write_text("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Table S7 reproducibility</title>"
                          "<style>body{font-family:sans-serif;font-size:14px} td,th{padding:2px 8px}</style></head>"
                          f"<body><h3>{escape(md[0].strip('*'))}</h3>{shown.to_html(index=False, border=0)}{notes}"
                          "</body></html>\n")


def main(sm):
    summaries = [json.loads(Path(p).read_text()) for p in sm.input if str(p).endswith("summary.json")]
    seeds = list(sm.params.seeds)
    df = tables(summaries, [tuple(c) for c in sm.params.cells], seeds)
    df.to_csv(sm.output.csv, index=False)
    md = markdown(df, seeds, sm.params.get("source", "real"), sm.params.get("not_run", []))
    Path(sm.output.md).write_text("\n".join(md) + "\n")
    write_html(sm.output.html, df, md)


if __name__ == "__main__":
    import contextlib

    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # noqa: F821
        main(snakemake)  # noqa: F821
