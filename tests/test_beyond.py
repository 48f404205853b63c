"""Table S7's reproducibility (issue 23: tp.metrics.damping.seed_agreement, workflow/scripts/table_s7_stability.py) and
the outputs beyond the paper (issue 22): the DDTP-GGN vs DDTP-linear table (workflow/scripts/tables.py on the
beyond_paper configuration) and the GGN alignment figure (tuning ggn), on constructed and tiny synthetic runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tp.runs import audit
from cases import Job, workflow_script as script
from tp.config import resolve_config
from tp.metrics.damping import seed_agreement
from tp.data import DataSplits, synthetic_classification
from tp.training import train

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SMALL = {"num_hidden": 2, "size_hidden": 8, "batch_size": 32, "epochs": 1, "epochs_fb": 0, "extra_fb_epochs": 0}




def data():
    x, y, tx, ty = synthetic_classification(96 + 32, 32, 12, 10, 0)
    return DataSplits(x[:96], y[:96], tx, ty, x[96:], y[96:])


# ------------------------------------------------------------------------------------------ seed agreement
def test_seed_agreement_counts_identical_choices_and_overlapping_within_sets():
    rows = seed_agreement([[1.0, 10.0, 0.0], [1.0, 1.0, 0.0], [1.0, 10.0, 0.0]],
                          [[[1.0], [1.0, 10.0], [0.0, 1e-5]], [[1.0, 10.0], [1.0], [0.0]], [[1.0], [10.0], [0.0]]])
    assert [r["same"] for r in rows] == [True, False, True]
    assert [r["overlap"] for r in rows] == [True, False, True] and rows[0]["common"] == [1.0]
    assert rows[1]["choices"] == [10.0, 1.0, 10.0] and rows[2]["common"] == [0.0]
    official = seed_agreement([[0.1, None], [0.1, None]])  # a layer without a selection never agrees
    assert [r["same"] for r in official] == [True, False] and "overlap" not in official[0]
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_agreement([[1.0]])
    with pytest.raises(ValueError, match=r"different numbers of hidden layers: \[1, 2\]"):
        seed_agreement([[1.0], [1.0, 1.0]])


# -------------------------------------------------------------------------------------- stability table
def search(method, seed, official, paired=None, within=None, status="finished"):
    """A damping-search summary as the damping runs write it (paired fields only in runs that made it)."""
    s = {"method": method, "dataset": "mnist", "tuning": "damping", "seed": seed, "status": status,
         "damping_selected": official}
    if paired is not None:
        s.update(damping_paired_selected=paired, damping_paired_within_2se=within)
    return s


def test_stability_table_compares_the_seeds_and_says_what_is_pending(tmp_path):
    stability = script("table_s7_stability")
    summaries = [
        # DDTP-linear: three seeds, official choices agree in layer 1 only, paired argmins in layers 1-2, their
        # "within 2 SE" sets overlap in all three layers
        search("ddtp-linear", 1, [1.0, 1e-5, 0.0], [1.0, 1.0, 0.1], [[1.0], [1.0, 10.0], [0.1, 1.0]]),
        search("ddtp-linear", 2, [1.0, 1.0, 1e-5], [1.0, 1.0, 1.0], [[1.0, 10.0], [1.0], [1.0]]),
        search("ddtp-linear", 3, [1.0, 10.0, 0.0], [1.0, 1.0, 0.1], [[1.0], [1.0], [0.1, 1.0]]),
        search("ddtp-linear", 42, [10.0, 10.0, 10.0], [10.0, 10.0, 10.0], [[10.0], [10.0], [10.0]]),  # not a seed here
        # DTPDRL: one finished seed, one diverged: pending
        search("dtpdrl", 1, [10.0, 1.0, 1.0], [10.0, 1.0, 1.0], [[10.0], [1.0], [1.0]]),
        search("dtpdrl", 2, [], status="diverged"),
        # DDTP-RHL: two seeds, one made before the paired search
        search("ddtp-rhl", 1, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [[1.0], [1.0], [1.0]]),
        search("ddtp-rhl", 2, [1.0, 1.0, 10.0]),
    ]
    paths = []
    for k, s in enumerate(summaries):
        path = tmp_path / "runs" / f"{k}" / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(s))
        paths.append(path)
    out = {ext: tmp_path / f"tableS7_stability.{ext}" for ext in ("csv", "md", "html")}
    cells = [("ddtp-linear", "mnist"), ("dtpdrl", "mnist"), ("ddtp-rhl", "mnist")]
    stability.main(Job(paths, out, cells=cells, seeds=[1, 2, 3], source="synthetic",
                       not_run=[["fashion-mnist", "not run: not selected (datasets: mnist)"]]))
    rows = {(r["method_slug"], r["procedure"]): r for r in csv.DictReader(open(out["csv"]))}
    lin = rows[("ddtp-linear", "official")]
    assert (lin["n"], lin["layers"], lin["same"], lin["overlap"]) == ("3", "3", "1", "")
    assert lin["cell"] == "same λ in 1 of 3 layers (n=3)" and lin["finished_seeds"] == "1,2,3"
    assert lin["choices"] == "seed 1: 1, 1e-05, 0; seed 2: 1, 1, 1e-05; seed 3: 1, 10, 0"
    paired = rows[("ddtp-linear", "paired")]
    assert (paired["same"], paired["overlap"]) == ("2", "3")
    assert paired["cell"] == "same λ in 2 of 3 layers; \"within 2 SE\" sets overlap in 3 of 3 (n=3)"
    assert rows[("dtpdrl", "official")]["cell"] == "pending: 1 of 3 seeds finished"
    assert rows[("dtpdrl", "paired")]["same"] == ""
    rhl = rows[("ddtp-rhl", "official")]
    assert rhl["cell"] == "same λ in 2 of 3 layers (n=2; 1 of 3 seeds pending)"
    assert rows[("ddtp-rhl", "paired")]["cell"] == "pending: 1 of 3 seeds finished with a paired search"
    md = out["md"].read_text()
    assert "SYNTHETIC DATA, NOT A RESULT" in md and "seeds 1, 2, 3" in md and "DDTP-RHL" in md
    assert "*Fashion-MNIST*: not run: not selected" in md
    assert "same λ in 1 of 3 layers (n=3)" in out["html"].read_text()


# ------------------------------------------------------------------------------- DDTP-GGN vs DDTP-linear
@pytest.fixture(scope="module")
def test_runs(tmp_path_factory):
    """Tiny test-tuned runs on synthetic data: DDTP-GGN seeds 1 and 2, DDTP-linear seed 1 (the folders of a
    Table 1 run)."""
    root = tmp_path_factory.mktemp("beyond")
    splits, paths = data(), []
    for method, seed in (("ddtp-ggn", 1), ("ddtp-ggn", 2), ("ddtp-linear", 1)):
        out = root / "runs" / "test" / method / "mnist" / f"seed{seed}"
        train(audit.expected_config("test", method, "mnist", SMALL), splits, seed, out, progress=False,
              log=lambda m: None)
        paths.append(out / "summary.json")
    return paths


def test_ggn_ddtp_table_is_titled_beyond_the_paper_and_counts_pending_seeds(test_runs, tmp_path):
    tables = script("tables")
    spec = CONFIG["beyond_paper"]["tables"]["ggn_ddtp"]
    assert spec["rows"] == ["ddtp-ggn", "ddtp-linear"] and spec["seeds"] == [1, 2, 3] and spec["tuning"] == "test"
    note = "DDTP-linear on MNIST: the runs of Table 1 (runs/test/ddtp-linear/mnist/seedS, seeds 1, 2, 3), not a second copy."
    out = {ext: tmp_path / f"ggn_ddtp.{ext}" for ext in ("csv", "md", "tex", "html")}
    overrides = {k: v for k, v in SMALL.items() if k != "epochs"}
    tables.main_snakemake(Job(test_runs, out, table="ggn_ddtp", spec={**spec, "notes": [note]}, seeds=spec["seeds"],
                              configured=[["ddtp-ggn", "mnist"], ["ddtp-linear", "mnist"]], not_run=[],
                              source="synthetic", overrides=overrides, epochs=1))
    rows = {r["method_slug"]: r for r in csv.DictReader(open(out["csv"]))}
    assert rows["ddtp-ggn"]["table"] == "ggn_ddtp" and rows["ddtp-ggn"]["method"] == "DDTP-GGN"
    assert (rows["ddtp-ggn"]["n"], rows["ddtp-ggn"]["missing"], rows["ddtp-ggn"]["rejected"]) == ("2", "1", "0")
    assert " ± " in rows["ddtp-ggn"]["cell"] and rows["ddtp-ggn"]["cell"].endswith("(n=2; 1 of 3 seeds pending)")
    assert rows["ddtp-linear"]["cell"].endswith("(n=1; 2 of 3 seeds pending)")
    md = out["md"].read_text()
    assert md.startswith("**Beyond the paper (Appendix D): DDTP-GGN vs DDTP-linear") and "SYNTHETIC DATA" in md
    assert "DDTP-GGN: beyond the paper (Appendix D: DDTP-linear with the H^{1/2}-transformed output)" in md
    assert note in md and "Runs: 3 summaries" in md
    assert "Beyond the paper" in out["tex"].read_text() and "DDTP-GGN" in out["html"].read_text()
    # nothing run yet: every cell says it is pending
    tables.main_snakemake(Job([], out, table="ggn_ddtp", spec=spec, seeds=spec["seeds"],
                              configured=[["ddtp-ggn", "mnist"], ["ddtp-linear", "mnist"]], not_run=[],
                              source="real", overrides={}, epochs=None))
    assert {r["cell"] for r in csv.DictReader(open(out["csv"]))} == {"pending: 0 of 3 seeds finished"}


# --------------------------------------------------------------------------------------- GGN alignment
def test_ggn_alignment_runs_log_four_references_and_the_figure_shows_them(tmp_path):
    splits, paths = data(), []
    for method in CONFIG["beyond_paper"]["ggn_alignment"]["methods"]:
        cfg = resolve_config(method, "mnist", "ggn", {**SMALL, "log_interval": 1,
                                                      "gn_damping_per_hidden_layer": [1.0, 0.1]})
        out = tmp_path / "runs" / "ggn" / method / "mnist" / "seed42"
        train(cfg, splits, 42, out, progress=False, log=lambda m: None)
        refs = {(r["reference"], r["layer"]) for r in csv.DictReader(open(out / "alignment.csv"))}
        assert {ref for ref, _ in refs} == {"bp", "gnt", "ggn", "ggn_delta"}, method  # ggn_delta: H + δP
        assert {layer for ref, layer in refs if ref == "ggn"} == {layer for ref, layer in refs if ref == "ggn_delta"} \
            == {"1", "2"}
        paths.append(out / "summary.json")
    figure = {"png": tmp_path / "ggn_alignment_mnist.png", "pdf": tmp_path / "ggn_alignment_mnist.pdf"}
    script("alignment_figures").main(Job(paths, figure, {"dataset": "mnist"}, methods=["ddtp-linear", "ddtp-ggn"],
                                         smooth=3, condensed=False, source="synthetic",
                                         title="Beyond the paper (Appendix D): alignment"))
    from PIL import Image

    with Image.open(figure["png"]) as img:
        assert img.size[0] >= 600 and img.size[1] >= 300
    assert figure["pdf"].stat().st_size > 1000


def test_results_index_lists_the_stability_table_and_the_outputs_beyond_the_paper(tmp_path):
    import runpy
    from types import SimpleNamespace

    (tmp_path / "figures").mkdir()
    (tmp_path / "tables").mkdir()
    for name in ("figS5_alignment_mnist.png", "ggn_alignment_mnist.png"):
        (tmp_path / "figures" / name).write_bytes(b"")
    (tmp_path / "tables" / "tableS7_stability.csv").write_text(
        "method,procedure,same,cell\nDDTP-linear,official,2,x\nDDTP-linear,paired,,pending\n")
    (tmp_path / "tables" / "ggn_ddtp.csv").write_text("method,n,missing,cell\nDDTP-GGN,0,3,p\nDDTP-linear,2,1,q\n")
    cfg = {"data": {"source": "real"}, "seeds": [1, 2], "epochs": None, "overrides": {}, "alignment": {"seed": 42}}
    title = CONFIG["beyond_paper"]["tables"]["ggn_ddtp"]["title"]
    sm = SimpleNamespace(params=SimpleNamespace(results=str(tmp_path), config=cfg, tables={}, not_run=[],
                                                beyond_tables={"ggn_ddtp": title}, stability_seeds=[1, 2, 3]),
                         output=[str(tmp_path / "README.md")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / "results_readme.py"), init_globals={"snakemake": sm})
    text = (tmp_path / "README.md").read_text()
    assert "select the same λ** — `tables/tableS7_stability.csv`" in text and "1 of 2 method × procedure" in text
    assert "## Beyond the paper" in text and f"**{title}** — `tables/ggn_ddtp.csv`" in text
    assert "2 finished runs, 4 missing" in text
    assert "* `figures/ggn_alignment_mnist.png` (and `.pdf`): alignment of DDTP-linear's" in text
    assert "* `figures/figS5_alignment_mnist.png` (and `.pdf`)" in text and \
        "* `figures/ggn_alignment_mnist.png` (and `.pdf`)\n" not in text
