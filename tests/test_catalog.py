"""The catalog (tp.catalog) is the one list of datasets, methods and tunings: everything else agrees with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tp import catalog
from tp.config import resolve as config
from tp.data import datasets as data
from tp.errors import ConfigError
from tp.rules import REGISTRY
from tp.search.space import load_space

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_config_lists_are_the_catalog():
    """The catalog's tables have no second names: tp.config reads them, it does not copy them."""
    assert not {"METHODS", "DATASETS", "TUNINGS", "DATASET_MODEL", "Method"} & set(vars(config))
    assert tuple(catalog.TUNINGS) == ("test", "train", "alignment", "damping", "ggn")
    assert {d: config.model_of(d) for d in catalog.DATASETS} == {d.slug: d.model for d in catalog.DATASETS.values()}
    assert config.model_of("cifar10-cnn") == "cnn" and config.model_of("mnist") == "mlp"


def test_entries_are_consistent():
    for slug, d in catalog.DATASETS.items():
        assert d.slug == slug and d.files in catalog.FILES and d.model in catalog.MODELS
        assert 0 < d.prune_threshold < 1
        assert (config.config_dir() / "hyperparameters" / f"{slug}.yaml").is_file(), slug
    for slug, m in catalog.METHODS.items():
        assert m.slug == slug and m.rule in REGISTRY and m.paper_name and m.schedule
    # every method has a configuration on some dataset, every dataset for some method
    have = config.available_configs()
    assert {m for _, m in have} == set(catalog.METHODS) and {d for d, _ in have} == set(catalog.DATASETS)
    assert {t for ts in have.values() for t in ts} == {t.configuration for t in catalog.TUNINGS.values()}
    # facts of docs/algorithms.md#preprocessing / docs/algorithms.md#the-cnn-table-3 / docs/algorithms.md#the-early-stop
    assert catalog.dataset("mnist").input_shape == (784,) and catalog.dataset("cifar10").input_shape == (3072,)
    assert catalog.dataset("cifar10-cnn").input_shape == (3, 32, 32)
    assert catalog.dataset("frozen-mnist").files == "mnist" and catalog.dataset("cifar10-cnn").files == "cifar10"
    assert (catalog.dataset("cifar10").num_train, catalog.dataset("cifar10").num_test) == (50000, 10000)
    assert {d.prune_threshold for d in catalog.DATASETS.values() if d.files == "cifar10"} == {0.25}


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="valid choices: mnist, frozen-mnist"):
        catalog.dataset("svhn")
    with pytest.raises(ConfigError, match="valid choices: bp, ddtp-linear"):
        catalog.method("ddtp")
    with pytest.raises(ConfigError, match="valid choices: test, train, alignment, damping, ggn"):
        catalog.tuning("best")


def test_damping_is_the_alignment_configuration_with_the_search():
    """Table S7's search (docs/algorithms.md#the-damping-search-table-s7): every alignment configuration, the search on,
    its 3 epochs."""

    assert catalog.tuning("damping").configuration == "alignment" and not catalog.tuning("damping").shortened
    cells = [(d, m) for (d, m), ts in config.available_configs().items() if "alignment" in ts]
    # the paper's 33 alignment configurations, and DDTP-GGN's on MNIST beyond the paper (read by the tuning ggn)
    assert len([c for c in cells if not catalog.METHODS[c[1]].beyond_paper]) == 33
    assert [c for c in cells if catalog.METHODS[c[1]].beyond_paper] == [("mnist", "ddtp-ggn")]
    for d, m in cells:
        align, damp = config.resolve_config(m, d, "alignment"), config.resolve_config(m, d, "damping")
        assert {k for k in align if align[k] != damp[k]} == {"tuning", "epochs", "gn_damping_hpsearch"}
        after = catalog.tuning("damping").damping_search_after
        assert (damp["tuning"], damp["epochs"], damp["gn_damping_hpsearch"]) == ("damping", after, True)
    # overrides still come last; a method without an alignment configuration has no damping search
    assert config.resolve_config("bp", "mnist", "damping", {"epochs": 5, "lr": 1e-3})["epochs"] == 5
    with pytest.raises(config.ConfigError, match="reads the 'alignment' configuration"):
        config.resolve_config("dfa", "frozen-mnist", "damping")


def test_ggn_is_the_alignment_configuration_over_its_first_epochs_with_the_ggn_angles():
    """Beyond the paper (issue 22): the GGN alignment runs read the alignment configuration, in their own
    folders (tuning ggn), and DDTP-GGN's differs from DDTP-linear's only in its rule and its searched values."""
    ggn = catalog.tuning("ggn")
    assert ggn.configuration == "alignment" and ggn.shortened and ggn.damping_search_after is None
    assert ggn.objective is None  # not searched
    for m in ("ddtp-linear", "ddtp-ggn"):
        align, run = config.resolve_config(m, "mnist", "alignment"), config.resolve_config(m, "mnist", "ggn")
        assert {k for k in align if align[k] != run[k]} == {"tuning", "epochs", "log_interval", "log_alignment_ggn",
                                                             "alignment_hessian_damping"}
        assert (run["epochs"], run["log_interval"], run["log_alignment"], run["log_alignment_ggn"]) == (5, 20, True, True)
        # the H + δP reference uses the δ of DDTP-GGN's own MNIST configuration, for both methods' runs
        assert run["alignment_hessian_damping"] == config.resolve_config("ddtp-ggn", "mnist", "test")["hessian_damping"]
    linear, ggn_run = config.resolve_config("ddtp-linear", "mnist", "ggn"), config.resolve_config("ddtp-ggn", "mnist", "ggn")
    searched = set(load_space("ddtp-ggn"))  # DDTP-GGN's own search: β, lr_fb, hessian_damping (docs/ggn.md)
    assert {k for k in linear if linear[k] != ggn_run[k]} == {"method", "rule"} | searched
    with pytest.raises(config.ConfigError, match="reads the 'alignment' configuration"):
        config.resolve_config("ggnt", "mnist", "ggn")


@pytest.mark.parametrize("slug", list(catalog.DATASETS))
def test_data_module_reads_the_catalog(slug):
    d = catalog.dataset(slug)
    assert d.image is catalog.FILES[d.files] and (len(d.input_shape) == 3) == (d.model == "cnn")
    assert data.dataset_files(slug, "root") == data.dataset_files(d.files, "root")  # the files it reads
    splits = data.load_dataset(slug, source="synthetic", no_val_set=True, synthetic_sizes=(12, 4))
    assert tuple(splits.train_x.shape[1:]) == tuple(splits.test_x.shape[1:]) == d.input_shape
    assert 0 <= int(splits.train_y.min()) and int(splits.train_y.max()) < d.num_classes


def test_training_loop_pruning_thresholds_are_the_catalog():
    from tp.training import PRUNE_THRESHOLDS

    assert PRUNE_THRESHOLDS == {slug: d.prune_threshold for slug, d in catalog.DATASETS.items()}


def test_workflow_schema_reads_the_catalog():
    """The pipeline's schema lists no method, dataset or tuning itself: the Snakefile fills its $defs from the
    catalog (workflow/scripts/catalog_schema.py), and the result validates the shipped experiment matrix."""
    import jsonschema

    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    from catalog_schema import catalog_schema

    text = SCHEMA.read_text()
    for slug in [*catalog.METHODS, *catalog.DATASETS]:
        assert f" {slug}," not in text and f"[{slug}" not in text and f" {slug}]" not in text, slug
    schema = catalog_schema(SCHEMA)
    assert schema["$defs"]["method"]["enum"] == list(catalog.METHODS)
    assert schema["$defs"]["dataset"]["enum"] == list(catalog.DATASETS)
    assert schema["$defs"]["data"]["enum"] == list(catalog.FILES)
    aligned = {d for (d, _), ts in config.available_configs().items() if "alignment" in ts}
    assert sorted(schema["$defs"]["aligned_dataset"]["enum"]) == sorted(aligned)
    assert schema["$defs"]["tuned"]["enum"] == ["test", "train"]
    jsonschema.validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), schema)  # smoke.yaml: overlay
    bad = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    bad["tables"]["table1"]["rows"] = ["bp", "backprop"]
    with pytest.raises(jsonschema.ValidationError, match="backprop"):
        jsonschema.validate(bad, schema)


@pytest.mark.slow
def test_a_bad_pipeline_key_is_one_line_naming_it(tmp_path):
    """Issue 21.8: a typo'd pipeline key, or a value out of range, is a line naming the key (and the valid
    keys), not Snakemake's dump of the whole schema; `snakemake -n` stops with it."""
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    from catalog_schema import catalog_schema, config_errors

    schema = catalog_schema(SCHEMA)
    good = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config_errors(good, schema) == []
    bad = {**good, "epoch": 3, "epochs": 0}
    bad["tables"]["table1"]["columns"] = ["mnist", "mnst"]
    errors = config_errors(bad, schema)
    assert len(errors) == 3, errors
    assert any(e.startswith("config key '(top level)': Additional properties are not allowed ('epoch' was "
                            "unexpected); valid keys here: ") and "epochs" in e for e in errors)
    assert "config key 'epochs': 0 is less than the minimum of 1" in errors
    assert any(e.startswith("config key 'tables.table1.columns[1]': 'mnst' is not one of") for e in errors)
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "epoch=3"], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "config key '(top level)': Additional properties are not allowed ('epoch' was unexpected)" in out
    assert len(out.splitlines()) < 40 and "$defs" not in out, out


def test_table_footnotes_are_the_catalog_cell_notes():
    """A table carries a cell's note (tp.catalog.CELL_NOTES) exactly when it shows a number of that cell (and
    quantity): not under a column that is not run (issue 37)."""
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    import pandas as pd
    from table_notes import notes_for
    from table_runs import RUN_COLUMNS

    control, bp = catalog.CELL_NOTES
    spec = {"rows": ["bp", "ddtp-control"], "columns": ["mnist", "cifar10"], "tuning": "test",
            "quantity": "test_error_at_best_val"}
    runs = pd.DataFrame([{"tuning": "test", "method": m, "dataset": d, "seed": 1, "status": "finished"}
                         for m in spec["rows"] for d in spec["columns"]], columns=RUN_COLUMNS)
    notes = notes_for(spec, runs)
    assert control.text in notes and bp.text not in notes
    assert bp.text in notes_for({**spec, "quantity": "train_loss_last"}, runs)
    assert not {control.text, bp.text} & set(notes_for({**spec, "columns": ["mnist"]}, runs))
    assert not {control.text, bp.text} & set(notes_for(spec, runs[runs.dataset == "mnist"]))  # CIFAR-10 not run
    assert control.text not in notes_for({**spec, "tuning": "train"})
