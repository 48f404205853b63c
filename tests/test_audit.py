"""The run audit (tp.runs.audit) and the tables built on it: a run is averaged only when its folder, configuration,
metrics and numerics version agree — tried as a hostile user would (an edited number, a copied summary as an
extra seed, a relabelled method, other network sizes or epochs, another numerics version)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tp.runs import audit
from tp.runs import versions
from tp.training.records import code_version

from conftest import TINY

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
from table_runs import RUN_COLUMNS  # noqa: E402  (the columns of a table's runs frame)
SMALL = TINY  # the configuration of conftest.genuine_runs


def _tables():
    spec = importlib.util.spec_from_file_location("tables", REPO / "workflow" / "scripts" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def real_run(genuine_runs):
    """One genuine (tiny, synthetic-data) run of the bp/mnist test cell (conftest.genuine_runs)."""
    return genuine_runs["bp"]


def clone(run: Path, root: Path, rel: str = "runs/test/bp/mnist/seed1") -> Path:
    dst = root / rel
    shutil.copytree(run, dst)
    return dst


def edit_summary(folder: Path, **changes) -> dict:
    s = json.loads((folder / "summary.json").read_text())
    s.update(changes)
    (folder / "summary.json").write_text(json.dumps(s))
    return s


def reason(folder: Path, expected=None, source="synthetic"):
    s = json.loads((folder / "summary.json").read_text())
    return audit.audit_run(folder, s, expected or audit.expected_config("test", "bp", "mnist", SMALL), source)


def test_a_genuine_run_passes_and_its_headline_is_its_metrics(real_run):
    s = json.loads((real_run / "summary.json").read_text())
    assert s["numerics_version"] == versions.NUMERICS_VERSION and s["data_source"] == "synthetic"
    assert reason(real_run) is None
    rows = audit.read_metrics(real_run / "metrics.csv")
    best = min(range(len(rows)), key=lambda k: (rows[k]["val_error"], k))  # the slow, obvious reference
    assert s["test_error_at_best_val"] == rows[best]["test_error"] and s["train_loss_last"] == rows[-1]["train_loss"]


def test_an_edited_number_is_rejected(real_run, tmp_path):
    run = clone(real_run, tmp_path)
    s = edit_summary(run, test_error_at_best_val=1.23)
    assert "disagrees with its metrics.csv: test_error_at_best_val 1.23" in reason(run)
    edit_summary(run, test_error_at_best_val=json.loads((real_run / "summary.json").read_text())["test_error_at_best_val"])
    lines = (run / "metrics.csv").read_text().splitlines()
    head, rest = lines[0], lines[1:]
    (run / "metrics.csv").write_text("\n".join([head] + rest[:-1]) + "\n")  # the last epoch cut off
    assert "finished after 2 epochs in metrics.csv, but the configuration has 3" in reason(run)
    assert s["seed"] == 1


def test_a_relabelled_method_or_seed_is_rejected(real_run, tmp_path):
    moved = clone(real_run, tmp_path, "runs/test/ddtp-linear/mnist/seed1")
    assert "its summary.json says method 'bp', but it lies in test/ddtp-linear/mnist/seed1" in reason(moved)
    edit_summary(moved, method="ddtp-linear")  # relabelled inside too: its configuration is still BP's
    r = reason(moved, audit.expected_config("test", "ddtp-linear", "mnist", SMALL))
    assert "not the cell's resolved configuration" in r and "method 'bp' ≠ 'ddtp-linear'" in r
    reseeded = clone(real_run, tmp_path, "runs/test/bp/mnist/seed2")
    edit_summary(reseeded, seed=2)
    assert reason(reseeded) == "config.yaml says seed 1, summary.json says 2"


@pytest.mark.parametrize("key, value", [("num_hidden", 5), ("epochs", 100)])
def test_runs_of_other_sizes_or_epochs_are_not_the_cell(real_run, key, value):
    expected = audit.expected_config("test", "bp", "mnist", {**SMALL, key: value})
    assert f"{key} {SMALL[key]!r} ≠ {value!r}" in reason(real_run, expected)


def test_other_numerics_versions_and_data_are_rejected(real_run, tmp_path):
    assert reason(real_run, source="real") == "data source 'synthetic', expected 'real'"
    run = clone(real_run, tmp_path)
    edit_summary(run, numerics_version=versions.NUMERICS_VERSION + 1)
    assert reason(run).startswith(f"numerics version {versions.NUMERICS_VERSION + 1}, this code's is")
    s = edit_summary(run)
    del s["numerics_version"]  # summaries older than the field are version 1
    (run / "summary.json").write_text(json.dumps(s))
    assert (reason(run) is None) == (versions.NUMERICS_VERSION == 1)


def test_tested_step_paths_share_the_numerics_version(real_run, tmp_path):
    """Step paths proven equal to the eager reference within 1e-10 per step (compiled, CUDA graph; mixed by a
    resume) average with eager runs under one numerics version; a path the tests do not cover is rejected;
    summaries without the field are eager runs.  A cell mixing paths or devices says so under its table."""
    tables = _tables()
    run = clone(real_run, tmp_path)
    for path in ("eager", "compiled", "cuda-graph", "compiled+eager"):
        edit_summary(run, step_path=path)
        assert reason(run) is None, path
    edit_summary(run, step_path="float32-kernels")
    assert "step path 'float32-kernels' is not one the tests prove equal" in reason(run)
    s = edit_summary(run)
    del s["step_path"]
    (run / "summary.json").write_text(json.dumps(s))
    assert reason(run) is None
    assert tables.load_runs([run / "summary.json"]).step_path.tolist() == ["eager"]

    def row(seed, path, device):
        return {"tuning": "test", "method": "bp", "dataset": "mnist", "seed": seed, "status": "finished",
                "device_name": device, "step_path": path}

    one = pd.DataFrame([row(1, "eager", "AMD EPYC"), row(2, "eager", "AMD EPYC")], columns=RUN_COLUMNS)
    mixed = pd.DataFrame([row(1, "eager", "AMD EPYC"), row(2, "compiled", "Intel Xeon")],
                         columns=RUN_COLUMNS)
    assert tables.mixed_notes(one) == []
    assert tables.mixed_notes(mixed) == ["MNIST BP averages runs of step paths compiled, eager on AMD EPYC | Intel "
                                         "Xeon (one numerics version: the same mathematics, tested equal within "
                                         "1e-10 relative per step)."]
    assert "step path(s): compiled, eager" in tables.provenance(mixed, "real")


def test_the_table_averages_each_genuine_seed_once_and_lists_the_rest(real_run, tmp_path):
    tables = _tables()
    good = clone(real_run, tmp_path)
    copy = clone(real_run, tmp_path, "runs/test/bp/mnist/seed2")  # a copied summary as an extra seed
    edit_summary(copy, seed=2)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    (copy / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": 2}, sort_keys=False))
    short = clone(real_run, tmp_path, "runs/test/bp/mnist/seed3")  # 1 hidden layer instead of 2
    summary = edit_summary(short, seed=3, config={**json.loads((real_run / "summary.json").read_text())["config"],
                                                  "num_hidden": 2})
    (short / "config.yaml").write_text(yaml.safe_dump({"seed": 3, **summary["config"]}, sort_keys=False))
    paths = [p / "summary.json" for p in (good, copy, short)]
    runs = tables.load_runs(paths, {k: v for k, v in SMALL.items() if k != "epochs"}, 3, "synthetic")
    assert list(runs.rejected.isna()) == [True, False, False]
    assert "equal those of seed1 (a copy" in runs.rejected[1] and "num_hidden 2 ≠ 1" in runs.rejected[2]
    spec = {"tuning": "test", "quantity": "test_error_at_best_val", "rows": ["bp"], "columns": ["mnist"]}
    tidy = tables.aggregate(runs, spec, [("bp", "mnist")], [1, 2, 3, 4], "t")
    row = tidy.iloc[0]
    value = json.loads((good / "summary.json").read_text())["test_error_at_best_val"]
    assert (row.n, row.rejected, row.missing) == (1, 2, 3) and row["mean"] == value  # rejected seeds: pending
    assert row.cell == f"{value:.2f} (n=1; 3 of 4 seeds pending, 2 rejected)"
    notes = tables.rejected_notes(runs)
    assert len(notes) == 2 and notes[0].startswith("Rejected, not averaged: runs/test/bp/mnist/seed2: ")
    assert tables.cell_text({"n": 0, "diverged": 0, "pruned": 0, "rejected": 0, "missing": 3}, "{:.2f}", 3) == \
        "pending: 0 of 3 seeds finished"


def test_code_versions_are_short_with_the_dirty_marker_kept(real_run):
    tables = _tables()
    runs = tables.load_runs([real_run / "summary.json"])
    runs.loc[0, "code_version"] = "0123456789abcdef0123456789abcdef01234567+dirty"
    text = tables.provenance(runs, "synthetic")
    # short hashes under a table, the full list once in results/README.md (issue 37)
    assert "code version: 0123456789ab+dirty" in text and "uncommitted changes" in text
    assert "0123456789abcdef0123456789abcdef01234567" not in text and "results/README.md" in text
    import table_notes  # (its folder on sys.path once tables.py is loaded)

    assert table_notes.short_version("tp 0.1.0") == "tp 0.1.0"


def test_the_code_version_is_the_full_commit_dirty_only_for_code_changes(tmp_path):
    # a run records the checkout it ran from; outputs under results/ (the pipeline's own writes, e.g. a rerun of
    # committed toy figures) are not code, an edited tracked file is, an untracked file is not
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True,  # noqa: E731
                                    text=True).stdout.strip()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "fig.csv").write_text("1\n")
    (tmp_path / "rule.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    head = git("rev-parse", "HEAD")
    assert code_version(tmp_path) == head and len(head) == 40
    (tmp_path / "results" / "fig.csv").write_text("2\n")
    (tmp_path / "new.py").write_text("y = 2\n")
    assert code_version(tmp_path) == code_version(tmp_path / "results") == head  # (any folder: the checkout)
    (tmp_path / "rule.py").write_text("x = 2\n")
    assert code_version(tmp_path) == head + "+dirty"
    assert code_version(tmp_path / "results") == head + "+dirty"


def test_the_learning_curves_leave_rejected_runs_out(real_run, tmp_path):
    spec = importlib.util.spec_from_file_location("curves", REPO / "workflow" / "scripts" / "learning_curves.py")
    curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curves)
    good = clone(real_run, tmp_path)
    edited = clone(real_run, tmp_path, "runs/test/bp/mnist/seed2")
    edit_summary(edited, seed=2)
    args = {"overrides": {k: v for k, v in SMALL.items() if k != "epochs"}, "epochs": 3, "data_source": "synthetic"}
    runs, rows = curves.load([good / "summary.json", edited / "summary.json"], args)
    assert [r["status"] for r in runs] == ["finished", "rejected"] and set(rows.seed) == {1}


def test_runs_that_stopped_early_are_named_under_the_table_with_their_reason():
    tables = _tables()
    pruned = "training accuracy 0.338 < 0.4 in epoch 6 (early stop of the official code, docs/algorithms.md#the-early-stop)"

    def run(method, dataset, seed, status, message=None, rejected=None, epochs_run=100):
        return {"tuning": "test", "method": method, "dataset": dataset, "seed": seed, "status": status,
                "epochs_run": epochs_run, "epochs_configured": 100, "message": message, "rejected": rejected}

    runs = pd.DataFrame([run("dtp", "frozen-mnist", 2, "pruned", pruned, epochs_run=6),
                         run("dtp", "frozen-mnist", 1, "finished"),
                         run("bp", "mnist", 3, "diverged", "non-finite loss in epoch 2", epochs_run=2),
                         run("bp", "mnist", 4, "diverged", "outside the table's seeds", epochs_run=1),
                         run("dfa", "mnist", 1, "pruned", "a method the table does not show", epochs_run=6),
                         run("bp", "mnist", 2, "pruned", "rejected runs are listed as such", "an edited number", 6)],
                        columns=RUN_COLUMNS)
    spec = {"tuning": "test", "rows": ["bp", "dtp"], "columns": ["mnist", "frozen-mnist"]}
    assert tables.stopped_notes(runs, spec, [1, 2, 3]) == [
        f"Stopped early, not averaged: Frozen-MNIST DTP seed 2, pruned after 6 of 100 epochs: {pruned}.",
        "Stopped early, not averaged: MNIST BP seed 3, diverged after 2 of 100 epochs: non-finite loss in epoch 2."]
    assert len(tables.stopped_notes(runs, spec)) == 3  # no seed list: every seed present
    assert tables.stopped_notes(runs.iloc[:0], spec, [1, 2, 3]) == []


def test_a_rejected_synthetic_run_does_not_mark_a_table_of_real_runs(tmp_path):
    """The title's data label comes from the averaged runs only (issue 37): one rejected synthetic run among real
    ones leaves the title alone; a table whose averaged runs are synthetic is marked."""
    tables = _tables()

    def run(seed, source, rejected=None):
        return {"tuning": "test", "method": "bp", "dataset": "mnist", "seed": seed, "status": "finished",
                "epochs_run": 100, "test_error_at_best_val": 2.0, "epochs_configured": 100, "data_source": source,
                "numerics_version": 1, "model": "mlp", "num_hidden": 5, "size_hidden": 256, "rejected": rejected}

    spec = {"title": "Table 1: test error", "tuning": "test", "quantity": "test_error_at_best_val", "rows": ["bp"],
            "columns": ["mnist"]}
    for runs, marked in (([run(1, "real"), run(2, "synthetic", "data source synthetic, expected real")], False),
                         ([run(1, "synthetic")], True)):
        frame = pd.DataFrame(runs, columns=RUN_COLUMNS)
        tidy = tables.aggregate(frame, spec, [("bp", "mnist")], [1, 2], "table1")
        out = {ext: tmp_path / f"t.{ext}" for ext in ("csv", "md", "tex", "html")}
        tables.write(tidy, spec, out["csv"], out["md"], out["tex"], frame, "real", out["html"], [1, 2])
        title = out["md"].read_text().splitlines()[0]
        assert ("SYNTHETIC DATA, NOT A RESULT" in title) == marked, title


def test_a_cell_note_appears_only_under_a_table_that_shows_the_cell():
    """The CIFAR-10 DDTP-control note (tp.catalog.CELL_NOTES) belongs under a number of that cell, not under a
    table whose CIFAR-10 column is not run (issue 37)."""
    tables = _tables()
    spec = {"title": "Table 1", "tuning": "test", "quantity": "test_error_at_best_val",
            "rows": ["bp", "ddtp-control"], "columns": ["mnist", "cifar10"]}

    def runs(*cells):
        return pd.DataFrame([{"tuning": "test", "method": m, "dataset": d, "seed": 1, "status": "finished"}
                             for m, d in cells], columns=RUN_COLUMNS)

    note = "CIFAR10 DDTP-control: the official configuration file builds DDTP-linear"
    assert not any(n.startswith(note) for n in tables.notes_for(spec, runs(("bp", "mnist"), ("ddtp-control", "mnist"))))
    assert any(n.startswith(note) for n in tables.notes_for(spec, runs(("ddtp-control", "cifar10"))))
    assert any("the paper averaged 10 seeds" in n for n in tables.notes_for(spec, runs()))


def test_older_runs_messages_cite_the_projects_own_page_in_tables():
    """A run recorded before docs/algorithms.md cites the specification's section in its message; a table shows
    the page's anchor instead (the committed summaries stay as recorded)."""
    _tables()
    import table_notes  # (its folder on sys.path once tables.py is loaded)

    old = "training accuracy 0.338 < 0.4 in epoch 6 (early stop of the official code, SPEC " + "§12.13)"
    assert table_notes.cited(old) == ("training accuracy 0.338 < 0.4 in epoch 6 (early stop of the official code, "
                                 "docs/algorithms.md#the-early-stop)")
