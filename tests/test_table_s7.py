"""Table S7 and its damping curves (workflow/scripts/table_s7.py, damping_figures.py) from both kinds of
damping runs: committed ones made before the paired search (official rows only) and new ones carrying both
procedures (issue 23)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from cases import Job, workflow_script as script
from tp.config import resolve_config
from tp.data import DataSplits, synthetic_classification
from tp.training import train

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "runs" / "damping" / "ddtp-linear" / "mnist" / "seed42"




@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The committed DDTP-linear search (real MNIST, seed 42, no paired rows) and two tiny new DTP searches
    (synthetic data, seeds 1 and 2, 2 hidden layers) with both procedures, laid out as the pipeline does."""
    root = tmp_path_factory.mktemp("s7") / "runs" / "damping"
    shutil.copytree(COMMITTED, root / "ddtp-linear" / "mnist" / "seed42")
    x, y, tx, ty = synthetic_classification(160 + 32, 32, 12, 10, seed=0)
    data = DataSplits(x[:160], y[:160], tx, ty, x[160:], y[160:])
    cfg = resolve_config("dtp", "mnist", "damping", {"num_hidden": 2, "size_hidden": 16, "log_interval": 2,
                                                     "batch_size": 32, "gn_damping_per_hidden_layer": [1.0, 0.1]})
    for seed in (1, 2):
        train(cfg, data, seed=seed, out_dir=root / "dtp" / "mnist" / f"seed{seed}", progress=False, log=lambda m: None)
    return [root / "ddtp-linear" / "mnist" / "seed42" / "summary.json",
            root / "dtp" / "mnist" / "seed1" / "summary.json", root / "dtp" / "mnist" / "seed2" / "summary.json"]


def test_table_s7_shows_both_procedures_and_says_why_old_runs_have_no_paired_choice(runs, tmp_path):
    out = {ext: tmp_path / f"tableS7.{ext}" for ext in ("csv", "md", "tex", "html")}
    script("table_s7").main(Job(runs, out, cells=[("ddtp-linear", "mnist"), ("dtp", "mnist")], datasets=["mnist"],
                                source="synthetic"))
    rows = list(csv.DictReader(open(out["csv"])))
    assert len(rows) == 5 + 2 * 2  # one per run and hidden layer
    old = [r for r in rows if r["method_slug"] == "ddtp-linear"]
    assert [r["selected"] for r in old] == ["1.0", "1e-05", "1e-05", "1e-05", "1e-05"]  # the committed choice
    assert all(r["paired_cell"] == "not run: made before the paired search" and r["paired_selected"] == ""
               for r in old)
    new = [r for r in rows if r["method_slug"] == "dtp"]
    for r in new:
        within = r["paired_within_2se"].split(";")
        assert f"{float(r['paired_selected']):g}" in within and r["paired_minibatches"] == "5"
        cell = script("table_s7").fmt_paired(float(r["paired_selected"]), map(float, within))
        assert r["paired_cell"] == cell + (" [edge]" if r["paired_at_grid_edge"] == "True" else "")
    md = out["md"].read_text()
    assert "official procedure" in md and "paired procedure" in md
    assert "DDTP-linear (seed 42)" in md and "DTP (seed 1)" in md and "DTP (seed 2)" in md
    assert md.index("DDTP-linear (seed 42)") < md.index("DTP (seed 1)") < md.index("DTP (seed 2)")
    assert "not run: made before the paired search" in md and "SYNTHETIC DATA, NOT A RESULT" in md
    assert "values have no paired search" in md
    assert out["tex"].read_text().count("\\begin{table}") == 2 and "<table>" in out["html"].read_text()


def test_paired_cells_say_any_of_where_lambda_values_cannot_be_told_apart():
    fmt_paired = script("table_s7").fmt_paired
    assert fmt_paired(1.0, [1.0]) == "1" and fmt_paired(None, []) == "—"
    assert fmt_paired(1e-5, [0.0, 1e-5, 1.0]) == "any of 0, 1e-05, 1"
    assert fmt_paired(10.0, [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]) == "any of all 8 λ"


def test_table_s7_of_committed_runs_only_still_renders(runs, tmp_path):
    out = {ext: tmp_path / f"tableS7.{ext}" for ext in ("csv", "md", "tex", "html")}
    script("table_s7").main(Job(runs[:1], out, cells=[("ddtp-linear", "mnist")], datasets=["mnist"]))
    md = out["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| DDTP-linear "))  # the committed choice
    assert [c.strip() for c in row.strip("|").split("|")] == ["DDTP-linear", "1", "1e-05 (1)", "1e-05 (1)",
                                                              "1e-05 (1)", "1e-05 (0.0001)"]
    # one line names the runs made before the paired search, not a cell per layer (issue 37: it was 5 per run)
    assert "not run: made before the paired search: DDTP-linear." in md
    assert md.count("not run: made before the paired search") == 2  # that line and the note under the table


def test_damping_figure_renders_new_and_committed_runs(runs, tmp_path):
    from PIL import Image

    module = script("damping_figures")
    assert module.x_position([0.0, 1e-5, 1.0]) == pytest.approx({0.0: 1e-6, 1e-5: 1e-5, 1.0: 1.0}, rel=1e-12)
    for name, inputs in (("both", runs), ("committed", runs[:1])):
        out = {"png": tmp_path / f"{name}.png", "pdf": tmp_path / f"{name}.pdf"}
        module.main(Job(inputs, out, wildcards={"dataset": "mnist"}, methods=["ddtp-linear", "dtp"], source="real"))
        assert out["pdf"].stat().st_size > 1000
        with Image.open(out["png"]) as img:
            assert img.size[0] >= 600 and img.size[1] >= 400


EDGE_RUN = {"method": "ddtp-rhl", "dataset": "mnist", "seed": 1, "status": "finished", "epochs_run": 3,
            "code_version": "abc", "data_source": "real", "config": {"num_hidden": 5, "size_hidden": 256},
            "damping_selected": [10.0, 1.0, 0.0, 1.0, 1e-5], "damping_paired_selected": [10.0, 10.0, 1.0, 0.0, 1.0],
            "damping_paired_within_2se": [[10.0], [1.0, 10.0], [1.0], [0.0], [1.0]], "damping_paired_minibatches": 5}
GRID = [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]


def test_a_choice_at_the_first_or_last_lambda_of_its_grid_is_marked(tmp_path):
    import pandas as pd

    module = script("table_s7")
    rows = module.tidy_rows([EDGE_RUN])
    assert [r["at_grid_edge"] for r in rows] == [True, False, True, False, False]
    assert [r["paired_at_grid_edge"] for r in rows] == [True, True, False, True, False]
    assert rows[1]["paired_cell"] == "any of 1, 10 [edge]" and rows[2]["paired_cell"] == "1"
    # a run whose search went beyond λ = 10 (its own damping_search.csv): 10 is inside that grid
    folder = tmp_path / "runs" / "damping" / "ddtp-rhl" / "mnist" / "seed1"
    folder.mkdir(parents=True)
    pd.DataFrame({"damping": GRID + [100.0], "layer": 1, "mean_angle": 1.0}).to_csv(folder / "damping_search.csv")
    wider = module.tidy_rows([EDGE_RUN], [folder])
    assert wider[0]["at_grid_edge"] is False and (wider[0]["grid_min"], wider[0]["grid_max"]) == (0.0, 100.0)
    # the table: the cell and a note that counts them
    (folder / "damping_search.csv").unlink()
    (folder / "summary.json").write_text(json.dumps(EDGE_RUN))
    out = {ext: tmp_path / f"tableS7.{ext}" for ext in ("csv", "md", "tex", "html")}
    module.main(Job([folder / "summary.json"], out, cells=[("ddtp-rhl", "mnist")], datasets=["mnist"]))
    md = out["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| DDTP-RHL "))
    assert [c.strip() for c in row.strip("|").split("|")][1:4] == ["10 [edge] (1)", "1", "0 [edge] (1)"]
    assert "[edge]: the choice is the first or last λ of its search's grid (λ = 0 or 10): 2 of 5 official " \
           "choices and 3 of 5 paired choices" in md
    assert next(csv.DictReader(open(out["csv"])))["at_grid_edge"] == "True"


def test_the_damping_figure_stars_the_choices_at_the_grid_edge():
    import pandas as pd

    module = script("damping_figures")
    curve = pd.DataFrame([{"damping": lam, "layer": layer, "mean_angle": 40.0 + layer + lam}
                          for layer in range(1, 6) for lam in GRID])
    edges = module.edge_choices({"summary": EDGE_RUN, "official": curve, "paired": curve})
    assert edges == {1: (10.0, 51.0), 2: (10.0, 52.0), 4: (0.0, 44.0)}  # the paired choices
    official = module.edge_choices({"summary": EDGE_RUN, "official": curve, "paired": None})
    assert sorted(official) == [1, 3]  # runs without a paired search: the official choices
