# Configuration validation, the job matrix and helpers shared by the rules.  No learning logic here.
import json
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

from job_matrix import Jobs, MatrixError, block_rule_name, normalise  # noqa: E402  (workflow/scripts)

normalise(config)  # values given with --config or a profile arrive as strings

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
#: the dataset whose files a dataset needs (Frozen-MNIST is MNIST, the CNN's cifar10-cnn is CIFAR-10)
DATA_OF = {slug: d.files for slug, d in CATALOG.items()}

import datacheck  # noqa: E402


def _has_runs(data):
    return any(next(Path(RESULTS, "runs").glob(f"*/*/{d}/seed*/summary.json"), None) is not None
               for d, f in DATA_OF.items() if f == data)


# the job matrix (workflow/scripts/job_matrix.py): which data is used, which runs each table and figure needs
try:
    JOBS = Jobs(config, available_configs(), list(METHODS), DATA_OF, list(catalog.FILES),
                present=lambda d: datacheck.present(d, config["data"]["root"]), has_runs=_has_runs)
except MatrixError as exc:
    raise WorkflowError(str(exc)) from None
SELECTED_DATA, DATA_STATUS = JOBS.selected_data, JOBS.data_status
USABLE_DATA, MISSING_DATA = JOBS.usable_data, JOBS.missing_data
has_config, usable, not_run_reason = JOBS.has_config, JOBS.usable, JOBS.not_run_reason
table_cells, not_run_cells = JOBS.table_cells, JOBS.not_run_cells
RUN_CELLS, ALIGN, ALIGN_DATASETS, ALIGN_CELLS = JOBS.run_cells, JOBS.align, JOBS.align_datasets, JOBS.align_cells
STABILITY, STABILITY_RUNS = JOBS.stability, JOBS.stability_runs
BEYOND_TABLES, BEYOND_RUNS, GGN, GGN_CELLS = JOBS.beyond_tables, JOBS.beyond_runs, JOBS.ggn, JOBS.ggn_cells
#: figure name(s) of each dataset's alignment grid (docs/algorithms.md#reading-the-alignment-figures; Fig. 4 is
#: the condensed Fashion-MNIST view; tp.catalog)
ALIGN_FIGURES = {slug: list(d.alignment_figures) for slug, d in CATALOG.items() if d.alignment_figures}

# check the per-run overrides once, on every cell, before anything runs
for _tuning, _method, _dataset in JOBS.resolved_cells():
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
    **JOBS.wildcard_patterns(DATASETS),


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


SEED_BLOCKS = JOBS.seed_blocks(seed_block_size(),
                               lambda t, m, d, s: Path(f"{run_dir(t, m, d, s)}/summary.json").exists())

