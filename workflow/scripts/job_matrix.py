"""The pipeline's job matrix: which runs the tables and figures need, from the configuration, the configured
cells of ``tp/configs`` and the data on disk.

Plain Python without Snakemake, so that the tests call it directly; ``workflow/rules/common.smk`` builds one
:class:`Jobs` when the Snakefile is read and hands its fields to the rules.  Nothing here trains or reads a
result: the learning logic is ``tp``'s.

* :func:`normalise`: values given with ``--config`` or a profile arrive as strings; read them as YAML.
* :class:`Jobs`: the datasets selected, usable and missing; the cells of each table that run and those that
  do not (with the reason); the alignment, damping-stability, beyond-the-paper and GGN runs, checked; the
  seed blocks of the training jobs; the wildcard patterns of the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import yaml

#: configuration keys whose values may arrive as strings (--config, a profile) and are read as YAML
YAML_KEYS = ("seeds", "seed_block", "partial", "epochs", "data", "slurm", "overrides", "launcher", "device",
             "datasets", "search")
#: sections that may be given as one string (null); their titles stay text
YAML_SECTIONS = ("damping_stability", "beyond_paper")
#: the alignment section when the configuration has none
NO_ALIGNMENT = {"seed": 42, "datasets": [], "methods": [], "smooth": 30}
NO_GGN = {"methods": [], "datasets": [], "seed": 42, "smooth": 10}


class MatrixError(ValueError):
    """A configuration the matrix cannot be built from; the message names the key and the valid choices."""


def parse_strings(value):
    """A value given with --config or a profile, read as a YAML scalar or list (a profile's null arrives as the
    string "None"); dicts and lists element by element; text that is not YAML stays text."""
    if isinstance(value, str):
        if value == "None":
            return None
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, dict):
        return {k: parse_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [parse_strings(v) for v in value]
    return value


def normalise(config: dict) -> dict:
    """``config`` with its string-valued keys read as YAML (in place, as Snakemake's ``config`` is shared) and
    ``datasets`` given as "mnist,cifar10" split into a list."""
    for key in YAML_KEYS:
        if key in config:
            config[key] = parse_strings(config[key])
    for key in YAML_SECTIONS:
        if isinstance(config.get(key), str):
            config[key] = parse_strings(config[key])
    if isinstance(config.get("datasets"), str):  # --config datasets=mnist,cifar10
        config["datasets"] = [d.strip() for d in config["datasets"].split(",") if d.strip()]
    return config


@dataclass
class Jobs:
    """The job matrix of one configuration.

    ``configs``: {(dataset, method): [tunings]} with an official configuration (``tp.config.available_configs``);
    ``methods``: the catalog's method slugs, in its order (error messages list them so);
    ``data_of``: dataset slug → the dataset files it reads (``tp.catalog``: Frozen-MNIST reads MNIST's);
    ``files``: every dataset of files, in the catalog's order; ``present``: files → on disk (or synthetic);
    ``has_runs``: files → some run summary of a dataset reading them exists (a partial build shows its cells).
    """

    config: dict
    configs: dict
    methods: list[str]
    data_of: dict[str, str]
    files: list[str]
    present: Callable[[str], bool]
    has_runs: Callable[[str], bool]
    selected_data: list[str] = field(init=False)
    data_status: dict[str, bool] = field(init=False)
    usable_data: list[str] = field(init=False)
    missing_data: list[str] = field(init=False)

    def __post_init__(self):
        cfg = self.config
        self.partial = bool(cfg.get("partial"))
        self.selected_data = [d for d in self.files if d in (cfg.get("datasets") or self.files)]
        self.data_status = {d: cfg["data"]["source"] == "synthetic" or self.present(d) for d in self.selected_data}
        # the datasets the DAG trains on: selected, and present or fetched by their download job; in a partial
        # build (nothing is trained): selected, and present or with runs (their cells are then "pending")
        self.usable_data = [d for d in self.selected_data if self.data_status[d] or (
            self.has_runs(d) if self.partial else cfg["data"]["download"])]
        # selected but missing and not downloaded: their cells are left out, the tables mark them
        self.missing_data = [d for d in self.selected_data if d not in self.usable_data]
        self.run_cells = sorted({(spec["tuning"], m, d) for spec in cfg["tables"].values()
                                 for m, d in self.table_cells(spec)})
        self.align = cfg.get("alignment") or dict(NO_ALIGNMENT)
        self.align_datasets = [d for d in self.align["datasets"] if self.usable(d)]
        self.align_cells = [(m, d) for d in self.align_datasets for m in self.align["methods"]
                            if self.has_config("alignment", m, d)]
        self.stability = cfg.get("damping_stability") or {"methods": [], "datasets": [], "seeds": []}
        beyond = cfg.get("beyond_paper") or {}
        self.beyond_tables = beyond.get("tables") or {}
        self.ggn = beyond.get("ggn_alignment") or dict(NO_GGN)
        self._check_sections()
        self.stability_runs = [(m, d, s) for d in self.stability["datasets"] if self.usable(d)
                               for m in self.stability["methods"] for s in self.stability["seeds"]]
        self.beyond_runs = sorted({(spec["tuning"], m, d, s) for spec in self.beyond_tables.values()
                                   for m, d in self.table_cells(spec) for s in spec["seeds"]})
        self.ggn_cells = [(m, d) for d in self.ggn["datasets"] if self.usable(d) for m in self.ggn["methods"]]

    # ----------------------------------------------------------------------------------------- cells
    def has_config(self, tuning: str, method: str, dataset: str) -> bool:
        return tuning in self.configs.get((dataset, method), [])

    def usable(self, dataset: str) -> bool:
        return self.data_of[dataset] in self.usable_data

    def not_run_reason(self, dataset: str) -> str:
        if self.data_of[dataset] in self.missing_data:
            return "not run: dataset missing"
        return f"not run: not selected (datasets: {', '.join(self.selected_data)})"

    def configured_cells(self, spec: dict) -> list[tuple[str, str]]:
        """(method, dataset) cells of a table that have an official configuration."""
        return [(m, d) for m in spec["rows"] for d in spec["columns"] if self.has_config(spec["tuning"], m, d)]

    def table_cells(self, spec: dict) -> list[tuple[str, str]]:
        """The configured cells of a table that run: their data is selected and present (or downloaded)."""
        return [(m, d) for m, d in self.configured_cells(spec) if self.usable(d)]

    def not_run_cells(self, spec: dict) -> list[list[str]]:
        """[method, dataset, reason] of the configured cells that do not run."""
        return [[m, d, self.not_run_reason(d)] for m, d in self.configured_cells(spec) if not self.usable(d)]

    def _check_sections(self) -> None:
        for what, spec in (("damping_stability", self.stability), ("beyond_paper.ggn_alignment", self.ggn)):
            for m in spec["methods"]:
                for d in spec["datasets"]:
                    if not self.has_config("alignment", m, d):
                        with_one = ", ".join(mm for mm in self.methods if self.has_config("alignment", mm, d))
                        raise MatrixError(f"config key '{what}': method {m!r} has no alignment configuration on "
                                          f"{d!r} (its runs read it); methods with one there: {with_one}")
        for name in sorted(set(self.beyond_tables) & set(self.config["tables"])):
            raise MatrixError(f"config key 'beyond_paper.tables.{name}': the name of a table of `tables`; "
                              f"choose another")

    def resolved_cells(self) -> list[tuple[str, str, str]]:
        """(tuning, method, dataset) of every training run the matrix plans, to check the overrides on each."""
        return (self.run_cells + [("alignment", m, d) for m, d in self.align_cells]
                + [("ggn", m, d) for m, d in self.ggn_cells] + sorted({r[:3] for r in self.beyond_runs}))

    # ---------------------------------------------------------------------------------- seed blocks
    def seed_blocks(self, size: int, finished: Callable[[str, str, str, int], bool]) -> list[tuple]:
        """(tuning, method, dataset, seeds) of the training processes that train several seeds together: every
        table cell's seeds that have not ``finished``, in chunks of ``size`` (none when it is 1).  A block never
        holds a finished seed, so that it never retrains (or deletes) a committed run."""
        blocks = []
        for t, m, d in self.run_cells:
            seeds = [s for s in self.config["seeds"] if not finished(t, m, d, s)]
            blocks += [(t, m, d, seeds[k:k + size]) for k in range(0, len(seeds), size)
                       if size > 1 and len(seeds[k:k + size]) > 1]
        return blocks

    # ------------------------------------------------------------------------------------ wildcards
    def wildcard_patterns(self, datasets) -> dict[str, str]:
        """The regular expressions of the rules' wildcards: every value the matrix plans (longest first where
        one value is a prefix of another)."""
        tunings = ({t for t, _, _ in self.run_cells} | ({"alignment", "damping"} if self.align_cells else set())
                   | ({"damping"} if self.stability_runs else set()) | ({"ggn"} if self.ggn_cells else set())
                   | {t for t, _, _, _ in self.beyond_runs})
        methods = ({m for _, m, _ in self.run_cells} | {m for m, _ in self.align_cells}
                   | {m for m, _, _ in self.stability_runs} | {m for m, _ in self.ggn_cells}
                   | {m for _, m, _, _ in self.beyond_runs})
        seeds = (set(self.config["seeds"]) | {self.align["seed"], self.ggn["seed"]}
                 | {s for _, _, s in self.stability_runs} | {s for *_, s in self.beyond_runs})
        return {"tuning": "|".join(sorted(tunings)),
                "method": "|".join(sorted(methods, key=len, reverse=True)),
                "dataset": "|".join(sorted(datasets, key=len, reverse=True)),
                "data": "|".join(sorted(set(self.data_of.values()))),
                "seed": "|".join(str(s) for s in sorted(seeds)),
                "table": "|".join(self.config["tables"])}


def block_rule_name(block: tuple) -> str:
    """The Snakemake rule name of a seed block: train_TUNING_METHOD_DATASET_seedsAtoB (identifier characters)."""
    tuning, method, dataset, seeds = block
    return "train_" + "_".join([tuning, method, dataset, f"seeds{seeds[0]}to{seeds[-1]}"]).replace("-", "_")
