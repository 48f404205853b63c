"""The learning-curve figures (workflow/scripts/learning_curves.py): the plotted means and stds against a hand
computation, diverged and pruned runs left out and counted, the synthetic-data mark, the files written."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEADER = "epoch,train_loss,train_error,val_loss,val_error,test_loss,test_error,reconstruction_loss,seconds"
ROWS = [["bp", "ddtp-linear", "dtp"], ["bp", "ddtp-linear", "ddtp-rhl-extrafb", "dtp"]]  # Table 1, Table S6


@pytest.fixture(scope="module")
def curves():
    path = REPO / "workflow" / "scripts" / "learning_curves.py"
    spec = importlib.util.spec_from_file_location("learning_curves", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(results: Path, method: str, seed: int, status: str, test_error: list[float], train_loss: list[float],
             source: str = "real", dataset: str = "mnist", extra_rows: str = "", tuning: str = "test") -> Path:
    """A run folder as tp.training writes it: summary.json and metrics.csv (one row per training epoch)."""
    out = results / "runs" / tuning / method / dataset / f"seed{seed}"
    out.mkdir(parents=True)
    summary = {"method": method, "dataset": dataset, "tuning": tuning, "seed": seed, "status": status,
               "epochs_run": len(test_error), "data_source": source, "code_version": "abc123", "device_name": "cpu",
               "config": {"epochs": 3}}
    (out / "summary.json").write_text(json.dumps(summary))
    lines = [HEADER] + ([extra_rows] if extra_rows else [])
    lines += [f"{e},{loss},10.0,0.5,5.0,0.4,{err},,1.0" for e, (err, loss) in
              enumerate(zip(test_error, train_loss), start=1)]
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    return out / "summary.json"


def tidy_rows(path) -> dict:
    return {(r["method_slug"], int(r["epoch"]), r["quantity"]): r for r in csv.DictReader(open(path))}


def test_means_and_stds_of_the_finished_runs(curves, tmp_path):
    bp = [[10.0, 5.0, 3.0], [12.0, 6.0, 2.0], [11.0, 8.0, 4.0]]
    bp_loss = [[1.0, 0.5, 0.25], [2.0, 0.4, 0.125], [1.5, 0.3, 0.1]]
    summaries = [fake_run(tmp_path, "bp", s + 1, "finished", e, l) for s, (e, l) in enumerate(zip(bp, bp_loss))]
    # DTP: two finished seeds and one that diverged in epoch 2 (its epoch-1 row must not count)
    summaries += [fake_run(tmp_path, "dtp", 1, "finished", [20.0, 15.0, 12.5], [2.0, 1.0, 0.5]),
                  fake_run(tmp_path, "dtp", 2, "finished", [22.0, 17.0, 11.5], [2.5, 1.5, 0.75]),
                  fake_run(tmp_path, "dtp", 3, "diverged", [90.0], [1e6])]
    # DDTP-linear: one finished seed (no std), one pruned; an epoch-0 row is not a training epoch
    summaries += [fake_run(tmp_path, "ddtp-linear", 1, "finished", [30.0, 25.0, 24.0], [3.0, 2.0, 1.0],
                           extra_rows="0,9.0,90.0,9.0,90.0,9.0,90.0,,0.0"),
                  fake_run(tmp_path, "ddtp-linear", 2, "pruned", [80.0, 80.0], [5.0, 5.0])]
    png, pdf, out = tmp_path / "c.png", tmp_path / "c.pdf", tmp_path / "c.csv"
    tidy = curves.build(summaries, "mnist", ROWS, "real", png, pdf, out)
    assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert pdf.read_bytes()[:4] == b"%PDF"
    rows = tidy_rows(out)
    assert next(csv.reader(open(out))) == curves.COLUMNS
    for quantity, values in (("test_error", bp), ("train_loss", bp_loss)):
        for epoch in (1, 2, 3):
            xs = [v[epoch - 1] for v in values]
            mean = math.fsum(xs) / 3
            std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / 2)  # ddof = 1
            r = rows[("bp", epoch, quantity)]
            assert float(r["mean"]) == pytest.approx(mean, rel=1e-14)
            assert float(r["std"]) == pytest.approx(std, rel=1e-14)
            assert int(r["n"]) == 3 and r["method"] == "BP"
    # DTP: the diverged seed is not averaged in (epoch 1 would be (20 + 22 + 90) / 3 with it)
    assert float(rows[("dtp", 1, "test_error")]["mean"]) == pytest.approx(21.0, rel=1e-14)
    assert float(rows[("dtp", 1, "test_error")]["std"]) == pytest.approx(math.sqrt(2.0), rel=1e-14)
    assert float(rows[("dtp", 3, "train_loss")]["mean"]) == pytest.approx(0.625, rel=1e-14)
    assert {int(r["n"]) for k, r in rows.items() if k[0] == "dtp"} == {2}
    # DDTP-linear: one seed, std undefined (an empty field), no epoch 0, the pruned run left out
    assert sorted(e for m, e, q in rows if m == "ddtp-linear" and q == "test_error") == [1, 2, 3]
    r = rows[("ddtp-linear", 2, "test_error")]
    assert float(r["mean"]) == 25.0 and r["std"] == "" and r["n"] == "1"
    # methods in the order of the table rows, quantity by quantity
    order = list(dict.fromkeys(tidy[tidy.quantity == "test_error"].method_slug))
    assert order == ["bp", "ddtp-linear", "dtp"]
    labels = curves.legend_labels(curves.load(summaries)[0], tidy, curves.method_order(ROWS))
    assert labels == {"bp": "BP (n=3)", "ddtp-linear": "DDTP-linear (n=1, 1 pruned)", "dtp": "DTP (n=2, 1 diverged)"}


def test_method_order_places_the_table_s6_variants_after_their_predecessor(curves):
    assert curves.method_order(ROWS) == ["bp", "ddtp-linear", "ddtp-rhl-extrafb", "dtp"]
    assert curves.method_order([["bp", "dfa"], ["bp", "ddtp-linear", "ddtp-control", "dfa"]]) == [
        "bp", "ddtp-linear", "ddtp-control", "dfa"]


def test_synthetic_runs_mark_the_title(curves, tmp_path, monkeypatch):
    titles = []
    draw = curves.draw
    monkeypatch.setattr(curves, "draw", lambda tidy, labels, title, footer: titles.append((title, footer))
                        or draw(tidy, labels, title, footer))
    synthetic = [fake_run(tmp_path / "s", "bp", 1, "finished", [50.0], [1.0], source="synthetic")]
    real = [fake_run(tmp_path / "r", "bp", 1, "finished", [50.0], [1.0])]
    for name, runs in (("s", synthetic), ("r", real)):
        curves.build(runs, "mnist", ROWS, "real", tmp_path / f"{name}.png", tmp_path / f"{name}.pdf",
                     tmp_path / f"{name}.csv")
    assert "SYNTHETIC DATA, NOT A RESULT" in titles[0][0] and "SYNTHETIC data" in titles[0][1]
    assert "SYNTHETIC" not in titles[1][0] and "real data" in titles[1][1]


def test_without_a_finished_run_the_figure_says_so(curves, tmp_path):
    runs = [fake_run(tmp_path, "dtp", 1, "diverged", [90.0], [1e6]), tmp_path / "runs/test/bp/mnist/seed1/summary.json"]
    out = tmp_path / "c.csv"
    tidy = curves.build(runs, "mnist", ROWS, "real", tmp_path / "c.png", tmp_path / "c.pdf", out)
    assert len(tidy) == 0 and out.read_text().strip() == ",".join(curves.COLUMNS)
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "c.pdf").stat().st_size > 1000
    labels = curves.legend_labels(curves.load(runs)[0], tidy, curves.method_order(ROWS))
    assert labels == {"bp": "BP (n=0, 1 missing)", "dtp": "DTP (n=0, 1 diverged)"}


def test_standalone_entry_reads_the_results_folder(curves, tmp_path):
    fake_run(tmp_path, "bp", 1, "finished", [10.0, 9.0], [1.0, 0.5], dataset="fashion-mnist")
    fake_run(tmp_path, "bp", 2, "finished", [12.0, 7.0], [2.0, 0.25], dataset="fashion-mnist")
    fake_run(tmp_path, "bp", 1, "finished", [99.0, 99.0], [9.0, 9.0], dataset="mnist")  # another dataset
    assert curves.main(["--dataset", "fashion-mnist", "--results", str(tmp_path), "--no-audit",
                        "--config", str(REPO / "config" / "config.yaml")]) == 0
    rows = tidy_rows(tmp_path / "figures" / "curves_fashion-mnist.csv")
    assert float(rows[("bp", 2, "test_error")]["mean"]) == 8.0 and rows[("bp", 2, "test_error")]["n"] == "2"
    assert (tmp_path / "figures" / "curves_fashion-mnist.pdf").exists()


def test_the_runs_tuned_for_training_loss_have_their_own_curves(curves, tmp_path, monkeypatch):
    """Table 2's runs (tuning train) go into figures/curves_train_DATASET, titled as such; the test-tuned runs of
    the same cells are not read."""
    titles = []
    draw = curves.draw
    monkeypatch.setattr(curves, "draw", lambda tidy, labels, title, footer: titles.append(title)
                        or draw(tidy, labels, title, footer))
    fake_run(tmp_path, "ddtp-linear", 1, "finished", [3.0, 2.0], [0.1, 0.01], tuning="train")
    fake_run(tmp_path, "ddtp-linear", 2, "finished", [3.0, 2.0], [0.1, 0.03], tuning="train")
    fake_run(tmp_path, "ddtp-linear", 1, "finished", [9.0, 9.0], [9.0, 9.0])  # the test-tuned run of the cell
    assert curves.main(["--dataset", "mnist", "--tuning", "train", "--results", str(tmp_path), "--no-audit",
                        "--config", str(REPO / "config" / "config.yaml")]) == 0
    rows = tidy_rows(tmp_path / "figures" / "curves_train_mnist.csv")
    assert float(rows[("ddtp-linear", 2, "train_loss")]["mean"]) == pytest.approx(0.02)
    assert rows[("ddtp-linear", 2, "train_loss")]["n"] == "2"
    assert "tuned for training loss (Table 2)" in titles[0] and not (tmp_path / "figures" / "curves_mnist.csv").exists()


def test_results_index_holds_no_absolute_data_root(tmp_path, monkeypatch):
    """results/README.md is committed: an absolute data root is written relative to the folder Snakemake ran in."""
    import runpy
    from types import SimpleNamespace

    monkeypatch.chdir(tmp_path)
    root = tmp_path.parent / "datasets"
    cfg = {"data": {"source": "real", "root": str(root), "download": False}, "seeds": [1], "epochs": None,
           "overrides": {}, "alignment": {"seed": 42}}
    sm = SimpleNamespace(params=SimpleNamespace(results=str(tmp_path), config=cfg, tables={}, not_run=[]),
                         output=[str(tmp_path / "README.md")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / "results_readme.py"), init_globals={"snakemake": sm})
    text = (tmp_path / "README.md").read_text()
    assert str(root) not in text and "root: ../datasets" in text


def test_results_index_lists_the_curves(tmp_path):
    import runpy
    from types import SimpleNamespace

    (tmp_path / "figures").mkdir()
    for name in ("figS5_alignment_mnist.png", "curves_mnist.png", "curves_cifar10-cnn.png"):
        (tmp_path / "figures" / name).write_bytes(b"")
    cfg = {"data": {"source": "real"}, "seeds": [1, 2], "epochs": None, "overrides": {}, "alignment": {"seed": 42}}
    sm = SimpleNamespace(params=SimpleNamespace(results=str(tmp_path), config=cfg, tables={}, not_run=[]),
                         output=[str(tmp_path / "README.md")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / "results_readme.py"), init_globals={"snakemake": sm})
    text = (tmp_path / "README.md").read_text()
    assert "* `figures/figS5_alignment_mnist.png` (and `.pdf`)" in text
    assert "* `figures/curves_mnist.png` (and `.pdf`; the plotted numbers in `.csv`)" in text
    assert text.index("Learning curves") < text.index("curves_cifar10-cnn.png")


def test_the_error_axis_shows_the_range_a_reader_compares(curves):
    """From a quarter into the runs on, every method's band fits the axis; the early epochs above it are said
    (a DTP run at 85 % in epoch 1 no longer flattens 4-11 % differences, issue 37)."""
    import pandas as pd

    rows = [{"method": m, "method_slug": m, "epoch": e, "quantity": "test_error", "mean": v, "std": 0.5, "n": 3}
            for m, curve in (("bp", [6.0] + [4.0] * 19), ("dtp", [85.0, 40.0] + [11.0] * 18)) for e, v in
            enumerate(curve, start=1)]
    low, high, first = curves.error_range(pd.DataFrame(rows))
    assert low == pytest.approx(3.5 - 0.05 * 8.0) and high == pytest.approx(11.5 + 0.05 * 8.0)
    assert first == 3  # epochs 1 and 2 of DTP are above the axis
    flat = [{**r, "mean": 5.0} for r in rows]
    assert curves.error_range(pd.DataFrame(flat))[2] is None
