# Configuration validation, the job matrix and helpers shared by the rules.  No learning logic here.
import json
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError


def _parse_strings(value):
    """Values given with --config or a profile arrive as strings: read them as YAML scalars/lists."""
    if isinstance(value, str):
        if value == "None":  # a profile's null arrives as the string "None"
            return None
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, dict):
        return {k: _parse_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_parse_strings(v) for v in value]
    return value


for _key in ("seeds", "seed_block", "partial", "epochs", "data", "slurm", "overrides", "launcher", "device", "datasets",
             "search"):
    if _key in config:
        config[_key] = _parse_strings(config[_key])
for _key in ("damping_stability", "beyond_paper"):  # a whole section given as one string (null); titles stay text
    if isinstance(config.get(_key), str):
        config[_key] = _parse_strings(config[_key])
if isinstance(config.get("datasets"), str):  # --config datasets=mnist,cifar10
    config["datasets"] = [d.strip() for d in config["datasets"].split(",") if d.strip()]

from catalog_schema import catalog_schema, config_errors  # noqa: E402
from report_labels import labels as report_labels_of  # noqa: E402


def _validate_with_catalog(cfg):
    """The configuration against config.schema.yaml with the catalog's enumerations filled in; each error in
    one line naming the key (Snakemake's validate() prints the whole schema, hundreds of lines)."""
    schema = catalog_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
    errors = config_errors(cfg, schema)
    if errors:
        raise WorkflowError("invalid pipeline configuration (config/config.yaml, --configfile, --config):\n  "
                            + "\n  ".join(errors))


_validate_with_catalog(config)

from tp.catalog import DATASETS as CATALOG  # noqa: E402
from tp.catalog import TUNINGS as TUNING_OF  # noqa: E402
from tp.catalog import figure_label  # noqa: E402
from tp import catalog  # noqa: E402
from tp.catalog import DATASETS, METHODS  # noqa: E402
from tp.config import available_configs, resolve_config  # noqa: E402
from tp.errors import ConfigError  # noqa: E402

RESULTS = config["results"].rstrip("/")
#: partial: the tables, figures and index are built from the runs present and nothing is trained (their cells
#: say how many seeds are pending); otherwise every run they need is a job
PARTIAL = bool(config.get("partial"))


#: the files of a run folder beside its summary that the tables and figures read (tp.runs.audit, the scripts)
RUN_FILES = ("metrics.csv", "config.yaml", "alignment.csv", "damping_search.csv", "damping_paired.csv")


def wanted(paths):
    """The files a table or figure reads: the run summaries (all of them, or (partial) those present) and, beside
    each summary present, the run's other files (RUN_FILES): editing or deleting any of them rebuilds what read
    it.  The scripts pick the summaries out of their inputs."""
    summaries = [p for p in paths if Path(p).exists()] if PARTIAL else list(paths)
    return summaries + [str(Path(p).parent / f) for p in summaries if Path(p).exists() for f in RUN_FILES
                        if (Path(p).parent / f).exists()]

PYTHON = sys.executable
LAUNCH = str(Path(workflow.basedir) / "workflow" / "scripts" / "launch.py")
CONFIGS = available_configs()  # {(dataset, method): [tunings]} of tp/configs/hyperparameters
#: the dataset whose files a dataset needs (Frozen-MNIST is MNIST, the CNN's cifar10-cnn is CIFAR-10)
DATA_OF = {slug: d.files for slug, d in CATALOG.items()}


def has_config(tuning, method, dataset):
    return tuning in CONFIGS.get((dataset, method), [])


# ----------------------------------------------------------------------------- which data the DAG uses
import datacheck  # noqa: E402

#: the datasets (files) selected with config `datasets` (null: all); MNIST covers MNIST and Frozen-MNIST,
#: CIFAR-10 the MLP and the CNN columns
SELECTED_DATA = [d for d in catalog.FILES if d in (config.get("datasets") or catalog.FILES)]  # the dataset files
DATA_STATUS = {d: config["data"]["source"] == "synthetic" or datacheck.present(d, config["data"]["root"])
               for d in SELECTED_DATA}
def _has_runs(data):
    return any(next(Path(RESULTS, "runs").glob(f"*/*/{d}/seed*/summary.json"), None) is not None
               for d, f in DATA_OF.items() if f == data)


#: datasets the DAG trains on: selected, and present or fetched by their download job (data.download); in a
#: partial build (nothing is trained): selected, and present or with runs (their cells are then "pending")
USABLE_DATA = [d for d in SELECTED_DATA if DATA_STATUS[d] or _has_runs(d)] if PARTIAL else \
    [d for d in SELECTED_DATA if DATA_STATUS[d] or config["data"]["download"]]
#: selected but missing and not downloaded: their cells are left out, the tables mark them, the run fails
MISSING_DATA = [d for d in SELECTED_DATA if d not in USABLE_DATA]


def usable(dataset):
    return DATA_OF[dataset] in USABLE_DATA


def not_run_reason(dataset):
    if DATA_OF[dataset] in MISSING_DATA:
        return "not run: dataset missing"
    return f"not run: not selected (datasets: {', '.join(SELECTED_DATA)})"


def configured_cells(spec):
    """(method, dataset) cells of a table that have an official configuration."""
    return [(m, d) for m in spec["rows"] for d in spec["columns"] if has_config(spec["tuning"], m, d)]


def table_cells(spec):
    """The configured cells of a table that run: their data is selected and present (or downloaded)."""
    return [(m, d) for m, d in configured_cells(spec) if usable(d)]


def not_run_cells(spec):
    """[method, dataset, reason] of the configured cells that do not run."""
    return [[m, d, not_run_reason(d)] for m, d in configured_cells(spec) if not usable(d)]


# every (tuning, method, dataset) that some table needs, each trained for every seed
RUN_CELLS = sorted({(spec["tuning"], m, d) for spec in config["tables"].values() for m, d in table_cells(spec)})

# alignment-figure runs and damping-search runs (tuning "damping": the alignment configuration, stopped after
# the search; tp.catalog), one seed each
ALIGN = config.get("alignment") or {"seed": 42, "datasets": [], "methods": [], "smooth": 30}
ALIGN_DATASETS = [d for d in ALIGN["datasets"] if usable(d)]
ALIGN_CELLS = [(m, d) for d in ALIGN_DATASETS for m in ALIGN["methods"] if has_config("alignment", m, d)]
#: figure name(s) of each dataset's alignment grid (docs/algorithms.md#reading-the-alignment-figures; Fig. 4 is the condensed Fashion-MNIST view; tp.catalog)
ALIGN_FIGURES = {slug: list(d.alignment_figures) for slug, d in CATALOG.items() if d.alignment_figures}
# more seeds of some damping searches (Table S7's reproducibility, issue 23) and the runs beyond the paper
# (issue 22): their cells, checked here; their rules and outputs in beyond.smk
STABILITY = config.get("damping_stability") or {"methods": [], "datasets": [], "seeds": []}
BEYOND_TABLES = (config.get("beyond_paper") or {}).get("tables") or {}
GGN = (config.get("beyond_paper") or {}).get("ggn_alignment") or {"methods": [], "datasets": [], "seed": 42, "smooth": 10}
for _what, _spec in (("damping_stability", STABILITY), ("beyond_paper.ggn_alignment", GGN)):
    for _m in _spec["methods"]:
        for _d in _spec["datasets"]:
            if not has_config("alignment", _m, _d):
                raise WorkflowError(f"config key '{_what}': method {_m!r} has no alignment configuration on {_d!r} "
                                    f"(its runs read it); methods with one there: "
                                    f"{', '.join(m for m in METHODS if has_config('alignment', m, _d))}")
for _name in set(BEYOND_TABLES) & set(config["tables"]):
    raise WorkflowError(f"config key 'beyond_paper.tables.{_name}': the name of a table of `tables`; choose another")
#: (method, dataset, seed) of the extra damping searches; (tuning, method, dataset, seed) of the beyond tables' runs
STABILITY_RUNS = [(m, d, s) for d in STABILITY["datasets"] if usable(d) for m in STABILITY["methods"]
                  for s in STABILITY["seeds"]]
BEYOND_RUNS = sorted({(spec["tuning"], m, d, s) for spec in BEYOND_TABLES.values() for m, d in table_cells(spec)
                      for s in spec["seeds"]})
GGN_CELLS = [(m, d) for d in GGN["datasets"] if usable(d) for m in GGN["methods"]]

# check the per-run overrides once, on every cell, before anything runs
for _tuning, _method, _dataset in RUN_CELLS + [("alignment", m, d) for m, d in ALIGN_CELLS] + [
        ("ggn", m, d) for m, d in GGN_CELLS] + sorted({r[:3] for r in BEYOND_RUNS}):
    try:
        resolve_config(_method, _dataset, _tuning, config.get("overrides") or {})
    except ConfigError as exc:
        raise ValueError(f"config: overrides: {exc}") from None


def data_report(final=False):
    """The data report (datacheck.report) before any job runs, or the summary after the run; "" for
    synthetic data."""
    if config["data"]["source"] == "synthetic":
        return ""
    # a download job that ran (its log is there) and left no ready flag failed
    failed = [d for d in USABLE_DATA if Path(f"{RESULTS}/logs/download/{d}.log").exists()
              and not Path(f"{RESULTS}/data/{d}.ready").exists()] if final else None
    status = {d: ok or (final and Path(f"{RESULTS}/data/{d}.ready").exists()) for d, ok in DATA_STATUS.items()}
    return datacheck.report(status, config["data"]["download"], config["data"]["root"], config["tables"],
                            ALIGN["datasets"], DATA_OF, has_config, failed=failed)


if config["data"]["source"] != "synthetic" and not PARTIAL:  # before any job runs: which data is there, what that means
    print(data_report(), file=sys.stderr)


def report_labels(paper):
    """Labels of a report entry (`snakemake --report`), read from the summaries among the job's inputs when the
    report is built: which paper table/figure, the data source, epochs, code version and device."""

    def labels(wildcards, input):
        name = paper(wildcards) if callable(paper) else paper
        runs = [json.loads(Path(f).read_text()) for f in input if str(f).endswith("summary.json") and Path(f).exists()]
        return report_labels_of(name, runs, config["data"]["source"])

    return labels


def run_dir(tuning, method, dataset, seed):
    return f"{RESULTS}/runs/{tuning}/{method}/{dataset}/seed{seed}"


def run_summaries(cells):
    return [f"{run_dir(t, m, d, s)}/summary.json" for t, m, d in cells for s in config["seeds"]]


def table_inputs(wildcards):
    spec = config["tables"][wildcards.table]
    return wanted(run_summaries([(spec["tuning"], m, d) for m, d in table_cells(spec)]))


def table_outputs():
    return expand(f"{RESULTS}/tables/{{table}}.{{ext}}", table=list(config["tables"]), ext=["csv", "md", "tex", "html"])


def alignment_summaries(kind, dataset=None):
    """Summaries of the alignment (kind "alignment") or damping-search (kind "damping") runs."""
    return wanted(f"{run_dir(kind, m, d, ALIGN['seed'])}/summary.json" for m, d in ALIGN_CELLS
                  if dataset is None or d == dataset)


def damping_summaries(dataset=None):
    """Summaries of every damping search: the alignment seed's of each alignment cell, then the more seeds of
    ``damping_stability``."""
    return alignment_summaries("damping", dataset) + wanted(
        f"{run_dir('damping', m, d, s)}/summary.json" for m, d, s in STABILITY_RUNS if dataset in (None, d))


def damping_datasets():
    return list(dict.fromkeys(ALIGN_DATASETS + [d for _, d, _ in STABILITY_RUNS]))


def alignment_outputs():
    if not ALIGN_CELLS and not STABILITY_RUNS:
        return []
    # partial: the figures of the datasets whose alignment runs have all finished, Table S7 and the damping
    # curves of the damping searches present
    datasets = [d for d in ALIGN_DATASETS if not PARTIAL or all(
        Path(f"{run_dir('alignment', m, d, ALIGN['seed'])}/summary.json").exists() for m, dd in ALIGN_CELLS if dd == d)]
    figures = [f"{RESULTS}/figures/{name}_alignment_{d}.{ext}" for d in datasets
               for name in ALIGN_FIGURES[d] for ext in ("png", "pdf")]
    s7 = not PARTIAL or damping_summaries()
    damping = [f"{RESULTS}/figures/damping_search_{d}.{ext}" for d in damping_datasets()
               if damping_summaries(d) for ext in ("png", "pdf")]  # (partial: searches present)
    return figures + damping + (expand(f"{RESULTS}/tables/tableS7.{{ext}}", ext=["csv", "md", "tex", "html"])
                                if s7 else [])


wildcard_constraints:
    tuning="|".join(sorted({t for t, _, _ in RUN_CELLS} | ({"alignment", "damping"} if ALIGN_CELLS else set())
                           | ({"damping"} if STABILITY_RUNS else set()) | ({"ggn"} if GGN_CELLS else set())
                           | {t for t, _, _, _ in BEYOND_RUNS})),
    method="|".join(sorted({m for _, m, _ in RUN_CELLS} | {m for m, _ in ALIGN_CELLS} | {m for m, _, _ in STABILITY_RUNS}
                           | {m for m, _ in GGN_CELLS} | {m for _, m, _, _ in BEYOND_RUNS}, key=len, reverse=True)),
    dataset="|".join(sorted(DATASETS, key=len, reverse=True)),
    data="|".join(sorted(set(DATA_OF.values()))),
    seed="|".join(str(s) for s in sorted(set(config["seeds"]) | {ALIGN["seed"], GGN["seed"]}
                                         | {s for _, _, s in STABILITY_RUNS} | {s for *_, s in BEYOND_RUNS})),
    table="|".join(config["tables"]),


def seed_block_size():
    """``seed_block``; ``auto``: 10 where the training jobs get a GPU (one on this host with device auto or
    cuda, or SLURM jobs with gpus_per_node), else 1 (a CPU: one seed a job)."""
    size = config.get("seed_block") or 1
    if size != "auto":
        return int(size)
    slurm_gpu = config["launcher"] == "slurm" and (config.get("slurm") or {}).get("gpus_per_node")
    import torch

    local_gpu = config["launcher"] == "local" and config["device"] != "cpu" and torch.cuda.is_available()
    return 10 if slurm_gpu or local_gpu else 1


def seed_blocks():
    """(tuning, method, dataset, seeds) of the training processes that train several seeds together:
    every table cell (MLP and CNN), its seeds whose summary is missing in chunks of ``seed_block`` (none when
    it is 1).  A block never holds a finished seed, so that it never retrains (or deletes) a committed run."""
    size = seed_block_size()
    blocks = []
    for t, m, d in RUN_CELLS:
        seeds = [s for s in config["seeds"] if not Path(f"{run_dir(t, m, d, s)}/summary.json").exists()]
        blocks += [(t, m, d, seeds[k:k + size]) for k in range(0, len(seeds), size)
                   if size > 1 and len(seeds[k:k + size]) > 1]
    return blocks


def block_rule_name(block):
    tuning, method, dataset, seeds = block
    return "train_" + "_".join([tuning, method, dataset, f"seeds{seeds[0]}to{seeds[-1]}"]).replace("-", "_")


SEED_BLOCKS = seed_blocks()
