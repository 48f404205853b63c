"""The notes under a table: where its runs come from (data, code versions, devices, step paths, networks), the
cells that mix step paths or devices, the runs the audit rejected or that stopped early, the catalog's notes on
its cells and on the methods beyond the paper.  Used by tables.py (and by the tests through it)."""

import re

import pandas as pd

from tp.catalog import CELL_NOTES, DATASETS, METHODS
from tp.runs.versions import DIRTY

from table_runs import accepted, load_runs  # (workflow/scripts, on sys.path before tables.py imports this)


def provenance(runs: pd.DataFrame, source: str) -> str:
    """Which data, epochs and networks produced the table, read from its run summaries (their
    ``data_source``; ``source``, the pipeline's setting, for summaries without one)."""
    recorded = set(runs.data_source.dropna()) if len(runs) else set()
    if "synthetic" in (recorded or {source}):
        data = "SYNTHETIC data (a smoke run: not the paper's datasets, not a result)"
    else:
        data = "the real datasets"
    if not len(runs):
        return f"Runs: none finished yet; data source: {data}."
    epochs = sorted({int(e) for e in runs.epochs_configured.dropna()})
    ep = "—" if not epochs else str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]} (per configuration)"
    nets = []
    for dataset, g in runs.groupby("dataset", sort=False):
        sizes = sorted({(r.model, r.num_hidden, r.size_hidden, r.conv_channels) for r in g.itertuples()})
        for model, nh, sh, conv in sizes:
            nets.append(f"{DATASETS[dataset].paper_name}: " + (f"CNN conv {'/'.join(map(str, conv))} channels, FC {sh}"
                                                    if model == "cnn" else f"{nh} hidden layers of {sh}"))
    versions = sorted({short_version(str(v)) for v in runs.code_version.dropna()})
    dirty = " (+dirty: made from a checkout with uncommitted changes)" if any(
        v.endswith(DIRTY) for v in versions) else ""
    numerics = sorted({int(v) for v in runs.numerics_version.dropna()})
    devices = sorted({str(v) for v in runs.device_name.dropna()})
    paths = sorted({str(v) for v in runs.step_path.fillna("eager")})
    hours = runs.wall_time_s.dropna().astype(float).sum() / 3600
    return (f"Runs: {len(runs)} summaries; data: {data}; epochs: {ep}; networks: {'; '.join(nets)}; "
            f"code version: {', '.join(versions) or 'unknown'}{dirty} (full commits: results/README.md); "
            f"numerics version: {', '.join(map(str, numerics)) or 'unknown'}; device(s): {' | '.join(devices) or 'unknown'}; "
            f"step path(s): {', '.join(paths)}; "
            f"training time {hours:.2f} h in all.")


def short_version(version: str) -> str:
    """A commit shortened to 12 hex digits, its ``+dirty`` kept (the full commits are listed once, in
    results/README.md); anything else (``tp 0.1.0``) as it is."""
    head, dirty, _ = version.partition(DIRTY)
    return head[:12] + dirty if len(head) == 40 and all(c in "0123456789abcdef" for c in head) else version


def mixed_notes(runs: pd.DataFrame) -> list[str]:
    """One note per cell whose averaged runs come from more than one step path or device: which ones.  Paths
    and devices share a numerics version when the tests prove their steps equal within 1e-10 relative
    (docs/pipeline.md, "Numerics versions"), so their runs average together; the note says what a cell mixes."""
    notes = []
    if not len(runs):
        return notes
    for (method, dataset), g in runs.groupby(["method", "dataset"], sort=True):
        paths = sorted({str(v) for v in g.step_path.fillna("eager")})
        devices = sorted({str(v) for v in g.device_name.dropna()})
        if len(paths) > 1 or len(devices) > 1:
            name = METHODS[method].paper_name if method in METHODS else method
            where = DATASETS[dataset].paper_name if dataset in DATASETS else dataset
            notes.append(f"{where} {name} averages runs of step paths {', '.join(paths)} on "
                         f"{' | '.join(devices) or 'unknown devices'} (one numerics version: the same mathematics, "
                         "tested equal within 1e-10 relative per step).")
    return notes


def rejected_notes(runs: pd.DataFrame) -> list[str]:
    """One note per run that failed the audit (tp.runs.audit): its folder and the reason; never averaged."""
    bad = runs[runs.rejected.notna()] if len(runs) else runs
    return [f"Rejected, not averaged: runs/{r.folder}: {r.rejected}. Its seed counts as pending; remove the folder "
            "to train it again." for r in bad.itertuples()]


#: the sections of the specification the project was first checked against that the messages of runs recorded
#: before docs/algorithms.md existed cite, and the page's anchors that replace them
_OLD_CITATIONS = re.compile(r"SPEC §(12\.13|7\.2)\b")
_NOW = {"12.13": "docs/algorithms.md#the-early-stop", "7.2": "docs/algorithms.md#the-damping-search-table-s7"}


def cited(message) -> str:
    """A run's message as a table shows it: an older run's citation of the specification, which is not part of the
    repository, as the anchor of docs/algorithms.md that says the same (issue 37)."""
    return _OLD_CITATIONS.sub(lambda m: _NOW[m.group(1)], str(message))


def stopped_notes(runs: pd.DataFrame, spec: dict, seeds=None) -> list[str]:
    """One note per accepted run of the table's cells that stopped early (diverged, or pruned by the official
    early stop, docs/algorithms.md#the-early-stop): which run, after how many epochs, and its own message; never
    averaged."""
    mine = accepted(runs)
    if len(mine):
        mine = mine[(mine.tuning == spec["tuning"]) & mine.method.isin(spec["rows"]) & mine.dataset.isin(spec["columns"])
                    & mine.status.isin(["diverged", "pruned"]) & (mine.seed.isin(seeds) if seeds else True)]
    return [f"Stopped early, not averaged: {DATASETS[r.dataset].paper_name} {METHODS[r.method].paper_name} seed "
            f"{r.seed}, {r.status} after {r.epochs_run} of {r.epochs_configured} epochs: {cited(r.message)}."
            for r in mine.sort_values(["dataset", "method", "seed"]).itertuples()] if len(mine) else []


def cnn_description(runs: pd.DataFrame) -> str:
    """The CNN of the table's runs (docs/algorithms.md#the-cnn-table-3): its channels and FC width from the
    summaries."""
    cnn = runs[runs.model == "cnn"] if len(runs) else runs
    sizes = sorted({("/".join(map(str, r.conv_channels)), r.size_hidden) for r in cnn.itertuples()})
    shape = "; ".join(f"conv 5×5 with {c} channels, each with tanh and max-pool 3/2; FC {h} tanh; FC 10"
                      for c, h in sizes) or "none run yet"
    return f"the network of docs/algorithms.md#the-cnn-table-3 ({shape})"


def notes_for(spec: dict, runs: pd.DataFrame | None = None) -> list[str]:
    """Footnotes the reader needs (docs/algorithms.md#cifar-10-ddtp-control-builds-ddtp-linear,
    docs/algorithms.md#the-early-stop); network sizes and epochs from the runs."""
    runs = load_runs([]) if runs is None else runs
    shown = {(r.method, r.dataset) for r in runs.itertuples()} if len(runs) else set()  # cells with a number
    notes = [n.text for n in CELL_NOTES if n.method in spec["rows"] and n.dataset in spec["columns"]
             and (n.method, n.dataset) in shown and n.tuning == spec["tuning"]
             and n.quantity in (None, spec["quantity"])]  # tp.catalog: only under a cell that shows a number
    if "cifar10-cnn" in spec["columns"]:
        notes.append(f"CIFAR10 (CNN): {cnn_description(runs)}, float64, one forward Adam per layer; DDTP-linear, "
                     "DDTP-control and DFA send their targets directly from the output to the max-pool outputs "
                     "and to the FC layer.")
        if spec["tuning"] == "train":
            cnn = runs[runs.model == "cnn"] if len(runs) else runs
            epochs = sorted({int(e) for e in cnn.epochs_configured.dropna()})
            notes.append(f"CIFAR10 (CNN), configurations tuned for training loss: "
                         f"{'/'.join(map(str, epochs)) or 'no runs yet, the official files say 300'} epoch(s) on all "
                         "training samples (no validation set; the official files: 300 epochs on all 50,000).")
            if "ddtp-control" in spec["rows"]:
                notes.append("CIFAR10 (CNN) DDTP-control: the official set has no configuration tuned for training "
                             "loss for it, so its cell says \"no configuration\" (no run, no number).")
    for method in spec["rows"]:  # a method the paper derives but never ran (tp.catalog)
        if METHODS[method].beyond_paper:
            notes.append(f"{METHODS[method].paper_name}: beyond the paper ({METHODS[method].beyond_paper}); the "
                         "paper never ran it (docs/ggn.md).")
    notes += list(spec.get("notes") or [])  # the pipeline's own (e.g. which runs a beyond-the-paper cell reuses)
    notes.append("Cells: mean ± std (ddof = 1) over the finished seeds, n = their number (the paper averaged 10 "
                 "seeds per cell; n says how many these average); diverged, pruned "
                 "(training accuracy below the official early-stop threshold), rejected (failed the run audit, "
                 "listed below) and pending (not run yet) seeds are counted and excluded.")
    notes.append("'not run: dataset missing': the dataset's files were not under the data root; the pipeline's "
                 "summary (or `make reproduce`) says how to fetch them.  'not run: not selected': left out with "
                 "the pipeline's `datasets` selection.")
    return notes
