"""The pipeline's job matrix (workflow/scripts/job_matrix.py), without Snakemake: which data is used, which
cells run and why the others do not, the checks of the extra sections, the seed blocks and the wildcards.

The configured cells here are made up (two methods, three datasets, two of them reading the same files), so
each rule of the matrix is seen on its own; tests/test_pipeline.py plans the real matrix with ``snakemake -n``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from job_matrix import Jobs, MatrixError, block_rule_name, normalise, parse_strings  # noqa: E402

CONFIGS = {("mnist", "bp"): ["test", "train", "alignment"], ("mnist", "dtp"): ["test"],
           ("frozen-mnist", "bp"): ["test"], ("fashion-mnist", "bp"): ["test", "alignment"],
           ("fashion-mnist", "dtp"): ["test", "alignment"]}
DATA_OF = {"mnist": "mnist", "frozen-mnist": "mnist", "fashion-mnist": "fashion-mnist"}
FILES = ["mnist", "fashion-mnist"]
TABLE = {"tuning": "test", "rows": ["bp", "dtp"], "columns": ["mnist", "frozen-mnist", "fashion-mnist"]}


def config(**changes) -> dict:
    cfg = {"seeds": [1, 2, 3], "data": {"source": "real", "download": False, "root": "data"},
           "tables": {"table1": TABLE}, "alignment": {"seed": 42, "datasets": ["mnist", "fashion-mnist"],
                                                      "methods": ["bp", "dtp"], "smooth": 30}}
    cfg.update(changes)
    return cfg


def jobs(cfg=None, present=("mnist",), runs=()) -> Jobs:
    return Jobs(cfg or config(), CONFIGS, ["bp", "dtp"], DATA_OF, FILES, present=lambda d: d in present,
                has_runs=lambda d: d in runs)


def test_strings_from_the_command_line_are_read_as_yaml():
    assert parse_strings("[1, 2]") == [1, 2] and parse_strings("None") is None and parse_strings("a: [b") == "a: [b"
    cfg = normalise({"seeds": "[1,2]", "partial": "true", "datasets": "mnist, fashion-mnist",
                     "damping_stability": "None", "title": "1"})
    assert cfg == {"seeds": [1, 2], "partial": True, "datasets": ["mnist", "fashion-mnist"],
                   "damping_stability": None, "title": "1"}


def test_missing_data_leaves_its_cells_out_with_the_reason():
    j = jobs()
    assert j.usable_data == ["mnist"] and j.missing_data == ["fashion-mnist"]
    assert j.table_cells(TABLE) == [("bp", "mnist"), ("bp", "frozen-mnist"), ("dtp", "mnist")]
    assert j.not_run_cells(TABLE) == [["bp", "fashion-mnist", "not run: dataset missing"],
                                      ["dtp", "fashion-mnist", "not run: dataset missing"]]
    assert j.run_cells == [("test", "bp", "frozen-mnist"), ("test", "bp", "mnist"), ("test", "dtp", "mnist")]
    assert j.align_cells == [("bp", "mnist")]  # dtp has no alignment configuration on MNIST


def test_downloads_selection_and_partial_builds_decide_what_is_usable():
    assert jobs(config(data={"source": "real", "download": True, "root": "d"})).usable_data == FILES
    assert jobs(config(data={"source": "synthetic", "download": False, "root": "d"}), present=()).usable_data == FILES
    only = jobs(config(datasets=["fashion-mnist"]), present=FILES)
    assert only.selected_data == ["fashion-mnist"]
    assert only.not_run_reason("mnist") == "not run: not selected (datasets: fashion-mnist)"
    # a partial build trains nothing: data with runs is usable (its cells say "pending"), a download is not
    partial = config(partial=True, data={"source": "real", "download": True, "root": "d"})
    assert jobs(partial, present=(), runs=("fashion-mnist",)).usable_data == ["fashion-mnist"]


@pytest.mark.parametrize("section, needle", [
    ({"damping_stability": {"methods": ["dtp"], "datasets": ["mnist"], "seeds": [1]}},
     "config key 'damping_stability': method 'dtp' has no alignment configuration on 'mnist' (its runs read it); "
     "methods with one there: bp"),
    ({"beyond_paper": {"ggn_alignment": {"methods": ["dtp"], "datasets": ["mnist"], "seed": 42, "smooth": 10}}},
     "config key 'beyond_paper.ggn_alignment': method 'dtp'"),
    ({"beyond_paper": {"tables": {"table1": TABLE}}}, "config key 'beyond_paper.tables.table1': the name of a table"),
])
def test_extra_sections_are_checked_naming_the_key_and_the_choices(section, needle):
    with pytest.raises(MatrixError) as err:
        jobs(config(**section))
    assert needle in str(err.value)


def test_seed_blocks_hold_only_unfinished_seeds():
    j = jobs()
    done = {("test", "bp", "mnist", 2)}
    blocks = j.seed_blocks(2, lambda t, m, d, s: (t, m, d, s) in done)
    assert ("test", "bp", "mnist", [1, 3]) in blocks and ("test", "dtp", "mnist", [1, 2]) in blocks
    assert ("test", "dtp", "mnist", [3]) not in blocks  # a block of one seed is the ordinary job
    assert j.seed_blocks(1, lambda *a: False) == []
    assert block_rule_name(("test", "ddtp-linear", "frozen-mnist", [1, 3])) == \
        "train_test_ddtp_linear_frozen_mnist_seeds1to3"


def test_wildcard_patterns_name_every_planned_value_longest_first():
    j = jobs(config(damping_stability={"methods": ["bp"], "datasets": ["mnist"], "seeds": [7]}))
    p = j.wildcard_patterns(["mnist", "frozen-mnist", "fashion-mnist"])
    assert p["tuning"] == "alignment|damping|test" and p["method"] == "dtp|bp"  # longest first
    assert p["dataset"] == "fashion-mnist|frozen-mnist|mnist" and p["data"] == "fashion-mnist|mnist"
    assert p["seed"] == "1|2|3|7|42" and p["table"] == "table1"
    assert j.resolved_cells() == j.run_cells + [("alignment", "bp", "mnist")]
