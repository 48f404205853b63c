# Configuration validation, the job matrix and helpers shared by the rules.  No learning logic here.
import json
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate


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


for _key in ("seeds", "seed_block", "epochs", "data", "slurm", "overrides", "launcher", "device"):
    if _key in config:
        config[_key] = _parse_strings(config[_key])

validate(config, "../schemas/config.schema.yaml")

from tp.catalog import DATASETS as CATALOG  # noqa: E402
from tp.catalog import TUNINGS as TUNING_OF  # noqa: E402
from tp.config import DATASET_MODEL, DATASETS, METHODS, ConfigError, available_configs, resolve_config  # noqa: E402

RESULTS = config["results"].rstrip("/")
PYTHON = sys.executable
LAUNCH = str(Path(workflow.basedir) / "workflow" / "scripts" / "launch.py")
CONFIGS = available_configs()  # {(dataset, method): [tunings]} of tp/configs/hyperparameters
#: the dataset whose files a dataset needs (Frozen-MNIST is MNIST, the CNN's cifar10-cnn is CIFAR-10)
DATA_OF = {slug: d.files for slug, d in CATALOG.items()}


def has_config(tuning, method, dataset):
    return tuning in CONFIGS.get((dataset, method), [])


def table_cells(spec):
    """(method, dataset) cells of a table that have an official configuration."""
    return [(m, d) for m in spec["rows"] for d in spec["columns"] if has_config(spec["tuning"], m, d)]


# every (tuning, method, dataset) that some table needs, each trained for every seed
RUN_CELLS = sorted({(spec["tuning"], m, d) for spec in config["tables"].values() for m, d in table_cells(spec)})

# alignment-figure runs and damping-search runs (tuning "damping": the alignment configuration, stopped after
# the search; tp.catalog), one seed each
ALIGN = config.get("alignment") or {"seed": 42, "datasets": [], "methods": [], "smooth": 30}
ALIGN_CELLS = [(m, d) for d in ALIGN["datasets"] for m in ALIGN["methods"] if has_config("alignment", m, d)]
#: figure name(s) of each dataset's alignment grid (SPEC Q5; Fig. 4 is the condensed Fashion-MNIST view)
ALIGN_FIGURES = {"fashion-mnist": ["figS4", "fig4"], "mnist": ["figS5"], "cifar10": ["figS6"], "cifar10-cnn": ["figS7"]}

# check the per-run overrides once, on every cell, before anything runs
for _tuning, _method, _dataset in RUN_CELLS + [("alignment", m, d) for m, d in ALIGN_CELLS]:
    try:
        resolve_config(_method, _dataset, _tuning, config.get("overrides") or {})
    except ConfigError as exc:
        raise ValueError(f"config: overrides: {exc}") from None


def run_dir(tuning, method, dataset, seed):
    return f"{RESULTS}/runs/{tuning}/{method}/{dataset}/seed{seed}"


def run_summaries(cells):
    return [f"{run_dir(t, m, d, s)}/summary.json" for t, m, d in cells for s in config["seeds"]]


def table_inputs(wildcards):
    spec = config["tables"][wildcards.table]
    return run_summaries([(spec["tuning"], m, d) for m, d in table_cells(spec)])


def table_outputs():
    return expand(f"{RESULTS}/tables/{{table}}.{{ext}}", table=list(config["tables"]), ext=["csv", "md", "tex"])


def alignment_summaries(kind, dataset=None):
    """Summaries of the alignment (kind "alignment") or damping-search (kind "damping") runs."""
    return [f"{run_dir(kind, m, d, ALIGN['seed'])}/summary.json" for m, d in ALIGN_CELLS
            if dataset is None or d == dataset]


def alignment_outputs():
    if not ALIGN_CELLS:
        return []
    figures = [f"{RESULTS}/figures/{name}_alignment_{d}.{ext}" for d in ALIGN["datasets"]
               for name in ALIGN_FIGURES[d] for ext in ("png", "pdf")]
    return figures + expand(f"{RESULTS}/tables/tableS7.{{ext}}", ext=["csv", "md", "tex"])


wildcard_constraints:
    tuning="|".join(sorted({t for t, _, _ in RUN_CELLS} | ({"alignment", "damping"} if ALIGN_CELLS else set()))),
    method="|".join(sorted({m for _, m, _ in RUN_CELLS} | {m for m, _ in ALIGN_CELLS}, key=len, reverse=True)),
    dataset="|".join(sorted(DATASETS, key=len, reverse=True)),
    data="|".join(sorted(set(DATA_OF.values()))),
    seed="|".join(str(s) for s in sorted(set(config["seeds"]) | {ALIGN["seed"]})),
    table="|".join(config["tables"]),


def seed_blocks():
    """(tuning, method, dataset, seeds) of the training processes that train several seeds together:
    every table cell (MLP and CNN), its seeds in chunks of ``seed_block`` (none when it is 1)."""
    size = int(config.get("seed_block") or 1)
    seeds = list(config["seeds"])
    return [(t, m, d, seeds[k:k + size]) for t, m, d in RUN_CELLS
            for k in range(0, len(seeds), size) if size > 1 and len(seeds[k:k + size]) > 1]


def block_rule_name(block):
    tuning, method, dataset, seeds = block
    return "train_" + "_".join([tuning, method, dataset, f"seeds{seeds[0]}to{seeds[-1]}"]).replace("-", "_")


SEED_BLOCKS = seed_blocks()
