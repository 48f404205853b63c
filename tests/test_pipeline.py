"""The Snakemake pipeline: the default DAG, validation, missing data, the smoke run and its report,
interruption, and SLURM.

No test has a wall-clock limit of its own (a busy machine is slow, not wrong; CI's job limit is the
backstop): a waiting test fails when the process it waits for ends without the awaited state.  The SLURM
tests need a reachable cluster (``.ci/run`` starts a single-node one with accounting and a fake
GPU); they skip without one, except under CI (``CI=true``), where a missing cluster is a failure.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TABLES = ("table1", "table2", "tableS6", "tableS8", "table3", "tableS9", "tableS10")


def snakemake(*args, cwd=None, directory=None, check=True, env=None):
    cmd = list(SNAKEMAKE)
    if directory is not None:
        cmd += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(directory)]
    cmd += [str(a) for a in args]
    res = subprocess.run(cmd, cwd=cwd or REPO, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def overlay(tmp_path, name="overlay.yaml", **values) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ dry run
def planned_runs(out: str) -> list[tuple[str, str, str, int]]:
    """(tuning, method, dataset, seed) of every run folder a dry run's jobs write (their outputs)."""
    runs = []
    for line in out.splitlines():
        if line.strip().startswith("output:"):
            runs += [(t, m, d, int(s)) for t, m, d, s in
                     re.findall(r"runs/(\w+)/([\w-]+)/([\w-]+)/seed(\d+)/summary\.json", line)]
    return runs


@pytest.mark.parametrize("seed_block", [10, 1])
@pytest.mark.slow
def test_dry_run_of_the_default_matrix_lists_every_training_job(tmp_path, seed_block):
    res = snakemake("-n", "--config", f"seed_block={seed_block}", directory=tmp_path)
    out = res.stdout + res.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(counts["download"]) == 3 and int(counts["table"]) == 7 and int(counts["table_s7"]) == 1
    runs = planned_runs(out)
    # one result folder per (tuning, method, dataset, seed): the paper's 836, and 23 of the new sections
    assert len(runs) == len(set(runs)) == 836 + 23
    paper = [r for r in runs if r not in EXTRA_RUNS]
    assert len(paper) == 836 and set(EXTRA_RUNS) <= set(runs)
    tunings = [t for t, _, _, _ in paper]
    # the tables: MLP 39 test-tuned and 31 train-tuned cells, CNN 4 test-tuned (Table 3, S9) and 3 train-tuned
    # (Table S10, no DDTP-control) cells, × 10 seeds
    assert tunings.count("test") == 430 and tunings.count("train") == 340
    assert sum(1 for t, _, d, _ in runs if (t, d) == ("test", "cifar10-cnn")) == 40
    assert sum(1 for t, _, d, _ in runs if (t, d) == ("train", "cifar10-cnn")) == 30
    # the alignment figures and the damping search: 10 methods × 3 datasets + 3 CNN methods, one seed each
    assert tunings.count("alignment") == 33 and tunings.count("damping") == 33
    assert {s for t, _, _, s in paper if t in ("alignment", "damping")} == {42}
    blocks = {k: int(v) for k, v in counts.items() if re.fullmatch(r"train_\w+_seeds1to10", k)}
    if seed_block == 10:
        # every table cell (70 MLP, 7 CNN) is one process of its 10 seeds; alignment, damping and the new
        # sections' runs one each (DDTP-linear's seeds of ggn_ddtp are its Table 1 block's)
        assert len(blocks) == 77 and set(blocks.values()) == {1}
        assert int(counts["train"]) == 33 + 33 + 23
    else:
        assert not blocks and int(counts["train"]) == 836 + 23
    assert int(counts["alignment_figure"]) == 5
    assert int(counts["table_s7_stability"]) == int(counts["beyond_table"]) == int(counts["ggn_alignment_figure"]) == 1


#: the runs of config/config.yaml's damping_stability (3 methods × MNIST and Fashion-MNIST × seeds 1-3) and
#: beyond_paper (DDTP-GGN's test runs, seeds 1-3; the GGN alignment runs of DDTP-linear and DDTP-GGN, seed 42)
EXTRA_RUNS = [("damping", m, d, s) for m in ("ddtp-linear", "dtpdrl", "ddtp-rhl") for d in ("mnist", "fashion-mnist")
              for s in (1, 2, 3)] + [
    ("test", "ddtp-ggn", "mnist", s) for s in (1, 2, 3)] + [("ggn", m, "mnist", 42) for m in ("ddtp-linear", "ddtp-ggn")]


@pytest.mark.slow
def test_without_the_new_sections_the_dry_run_plans_none_of_their_jobs(tmp_path):
    res = snakemake("-n", "--config", "seed_block=1", "damping_stability=null", "beyond_paper=null",
                    directory=tmp_path)
    out = res.stdout + res.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    runs = planned_runs(out)
    assert len(runs) == 836 and not set(EXTRA_RUNS) & set(runs)
    assert not {"table_s7_stability", "beyond_table", "ggn_alignment_figure"} & set(counts)
    assert "ggn_ddtp" not in out and "tableS7_stability" not in out


@pytest.mark.parametrize("change,needle", [
    ({"tables": {"table1": {"rows": ["bp", "ddtp-lin"]}}}, "ddtp-lin"),
    ({"tables": {"table1": {"columns": ["mnist", "svhn"]}}}, "svhn"),
    ({"seeds": ["a", "b"]}, "'a' is not of type 'integer'"),
    ({"colour": "blue"}, "colour"),
    ({"seed_block": 0}, "seed_block"),
    ({"overrides": {"learning_rate": 0.1}}, "learning_rate"),
    ({"damping_stability": {"methods": ["ddtp-lin"]}}, "config key 'damping_stability.methods[0]': 'ddtp-lin' is not one of"),
    ({"damping_stability": {"seeds": [1]}}, "config key 'damping_stability.seeds'"),
    ({"damping_stability": {"datasets": ["frozen-mnist"]}}, "'frozen-mnist' is not one of ['mnist', 'fashion-mnist'"),
    ({"damping_stability": {"methods": ["ggnt"]}},
     "config key 'damping_stability': method 'ggnt' has no alignment configuration on 'mnist'"),
    ({"beyond_paper": {"ggn_alignment": {"methods": ["ggnt"]}}},
     "config key 'beyond_paper.ggn_alignment': method 'ggnt' has no alignment configuration on 'mnist'"),
    ({"beyond_paper": {"tables": {"ggn_ddtp": {"seeds": []}}}}, "config key 'beyond_paper.tables.ggn_ddtp.seeds'"),
    ({"beyond_paper": {"tables": {"ggn_ddtp": {"tuning": "alignment"}}}}, "'alignment' is not one of ['test', 'train']"),
    ({"beyond_paper": {"colour": 1}}, "valid keys here: ggn_alignment, tables"),
    ({"claims": 5}, "config key 'claims': 5 is not of type 'string', 'null'"),
    ({"beyond_paper": {"tables": {"table1": {"title": "t", "tuning": "test", "quantity": "train_loss_last",
                                             "rows": ["bp"], "columns": ["mnist"], "seeds": [1]}}}},
     "config key 'beyond_paper.tables.table1': the name of a table of `tables`"),
])
@pytest.mark.slow
def test_invalid_configuration_fails_validation_naming_the_entry(tmp_path, change, needle):
    res = snakemake("-n", "--configfile", overlay(tmp_path, **change), directory=tmp_path, check=False)
    assert res.returncode != 0
    assert needle in res.stdout + res.stderr


def test_check_config_names_the_file_and_line_of_a_yaml_error_and_the_bad_keys(tmp_path, capsys):
    """Issue 21.8: Snakemake reads --configfile before the workflow and says only "Config file is not valid JSON
    or YAML"; workflow/scripts/check_config.py (make check-config) names file, line and column, then the keys."""
    from cases import workflow_script

    check = workflow_script("check_config")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seeds: [1, 2\nepochs: 3\n")
    assert check.main([str(broken)]) == 1
    assert f"{broken}, line 2, column 7: not valid YAML" in capsys.readouterr().err
    assert check.main([str(overlay(tmp_path, seeds=[1], epochz=3))]) == 1
    assert "'epochz' was unexpected" in capsys.readouterr().err
    assert check.main([str(overlay(tmp_path, tables={"table1": {"rows": ["ddtp-lin"]}}))]) == 1
    assert "config key 'tables.table1.rows[0]': 'ddtp-lin' is not one of" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "latin1.yaml").write_bytes("seeds: [1]  # \xe9\n".encode("latin-1"))
    for name, needle in [("list.yaml", "is a mapping of keys"), ("latin1.yaml", "cannot be read")]:
        assert check.main([str(tmp_path / name)]) == 1 and needle in capsys.readouterr().err
    assert check.main([str(REPO / "config" / "smoke.yaml"), str(overlay(tmp_path, seeds=[3]))]) == 0
    assert check.merged([REPO / "config" / "smoke.yaml", overlay(tmp_path, seeds=[3])])["seeds"] == [3]


def test_a_broken_default_configuration_is_named_with_its_line(tmp_path):
    """config/config.yaml, read by the Snakefile's ``configfile:``: a YAML error names the file and line."""
    for part in ("Snakefile", "workflow", "config", "profiles"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy2
        copy(REPO / part, tmp_path / part)
    cfg = tmp_path / "config" / "config.yaml"
    lines = cfg.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("seeds:"))
    lines[at] = "seeds: [1, 2"
    cfg.write_text("\n".join(lines) + "\n")
    res = subprocess.run([*SNAKEMAKE, "-n"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0
    assert re.search(rf"{re.escape(str(cfg))}, line {at + 2}, column \d+: not valid YAML", res.stdout + res.stderr)


# ------------------------------------------------------------------------------------- missing data
def fake_mnist(root: Path) -> Path:
    """Files with MNIST's names (the presence check looks at names; a dry run reads no data)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (raw / name).write_bytes(b"")
    return root


@pytest.mark.parametrize("select", [["--config", "datasets=[mnist]"], ["--config", "datasets=mnist"]])
@pytest.mark.slow
def test_mnist_only_plans_only_the_mnist_cells(tmp_path, select):
    root = fake_mnist(tmp_path / "data")
    res = snakemake("-n", *select, f"data={{root: {root}}}", directory=tmp_path)
    out = res.stdout + res.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(counts["download"]) == 1 and "datasets_missing" not in counts
    runs = planned_runs(out)
    assert runs and {d for _, _, d, _ in runs} == {"mnist", "frozen-mnist"}
    assert int(counts["alignment_figure"]) == 1  # Fig. S5
    assert "mnist present; not selected: fashion-mnist, cifar10" in res.stderr


@pytest.mark.slow
def test_without_downloads_the_cells_without_data_are_left_out(tmp_path):
    root = fake_mnist(tmp_path / "data")
    res = snakemake("-n", "--config", f"data={{root: {root}, download: false}}", directory=tmp_path)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout + res.stderr, flags=re.M))
    assert {d for _, _, d, _ in planned_runs(res.stdout)} == {"mnist", "frozen-mnist"}
    assert int(counts["download"]) == 1 and int(counts["datasets_missing"]) == 1
    report = res.stderr[res.stderr.index("tp pipeline, data"):]
    assert "mnist present, fashion-mnist MISSING, cifar10 MISSING" in report
    assert "cifar10: Table 1 (8 cells)" in report and "Table 3 (4 cells)" in report
    assert "make data DATASETS=fashion-mnist,cifar10" in report and "make reproduce DATASETS=mnist" in report
    assert f"{root}/cifar-10-batches-py/" in report


@pytest.mark.slow
def test_offline_without_data_builds_what_it_can_and_fails_with_a_summary(tmp_path):
    extra = overlay(tmp_path, data={"root": str(tmp_path / "empty"), "download": False, "source": "real"})
    res = snakemake("--cores", "2", "--keep-going", "--configfile", REPO / "config" / "smoke.yaml", extra,
                    directory=tmp_path, check=False)
    assert res.returncode != 0
    results = tmp_path / "results" / "smoke"
    assert (results / "figures" / "fig2_nullspace.png").exists()  # the data-free toy experiments ran
    for table in TABLES:
        rows = list(csv.DictReader(open(results / "tables" / f"{table}.csv")))
        assert {r["cell"] for r in rows} <= {"not run: dataset missing", "no configuration"}
        assert "not run: dataset missing" in (results / "tables" / f"{table}.md").read_text()
    index = (results / "README.md").read_text()
    assert "## Not run" in index and "Table S7" in index
    # the summary comes last, after Snakemake's error report, with the commands that fix it
    tail = res.stderr[res.stderr.rindex("Error in rule datasets_missing"):]
    assert "tp pipeline, data (summary)" in tail and "make data DATASETS=mnist,fashion-mnist,cifar10" in tail


@pytest.mark.slow
def test_a_failed_download_says_why_on_the_console(tmp_path):
    log = tmp_path / "cifar10.log"
    log.write_text("some torchvision output\ntp: error: downloading cifar10 from https://x failed: no network\n")
    res = subprocess.run([sys.executable, str(REPO / "workflow" / "scripts" / "datacheck.py"), "hint", "cifar10",
                          "data", str(log)], capture_output=True, text=True, check=True)
    assert res.stderr.startswith("download of cifar10 failed: downloading cifar10 from https://x failed: no network")
    assert "make reproduce DATA_ROOT=/datasets" in res.stderr and "data/cifar-10-batches-py/" in res.stderr


# ---------------------------------------------------------------------------------------- smoke run
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke pipeline, run once for the tests of its outputs: the working directory it ran in."""
    directory = tmp_path_factory.mktemp("smoke")
    snakemake("--cores", "2", "--configfile", REPO / "config" / "smoke.yaml", directory=directory)
    return directory


@pytest.mark.slow
def test_smoke_configuration_runs_end_to_end(smoke_run):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    results = smoke_run / "results" / "smoke"
    from tp.catalog import DATASETS, METHODS
    from tp.config import available_configs

    have = available_configs()
    for table in TABLES:
        spec = cfg["tables"][table]
        for ext in ("csv", "md", "tex"):
            assert (results / "tables" / f"{table}.{ext}").stat().st_size > 0
        rows = list(csv.DictReader(open(results / "tables" / f"{table}.csv")))
        assert [(r["method_slug"], r["dataset_slug"]) for r in rows] == \
            [(m, d) for m in spec["rows"] for d in spec["columns"]]
        for r in rows:
            assert r["method"] == METHODS[r["method_slug"]].paper_name
            assert r["dataset"] == DATASETS[r["dataset_slug"]].paper_name
            if spec["tuning"] not in have.get((r["dataset_slug"], r["method_slug"]), []):
                assert (r["method_slug"], r["dataset_slug"]) in {("dfa", "frozen-mnist"), ("ddtp-control", "cifar10-cnn")}
                assert r["cell"] == "no configuration"
            else:
                assert int(r["n"]) == 2 and "±" in r["cell"], r
        md = (results / "tables" / f"{table}.md").read_text()
        assert all(METHODS[m].paper_name in md for m in spec["rows"])
    assert "DDTP-control: the official set has no configuration tuned for training" in \
        (results / "tables" / "tableS10.md").read_text()
    assert "Table 1" in (results / "README.md").read_text()
    from PIL import Image

    for name in ("fig4_alignment_fashion-mnist", "figS4_alignment_fashion-mnist", "figS5_alignment_mnist",
                 "figS6_alignment_cifar10", "figS7_alignment_cifar10-cnn"):
        assert (results / "figures" / f"{name}.pdf").stat().st_size > 1000
        with Image.open(results / "figures" / f"{name}.png") as img:
            assert img.size[0] >= 600 and img.size[1] >= 400, (name, img.size)
    s7 = list(csv.DictReader(open(results / "tables" / "tableS7.csv")))
    # the 33 seed-42 searches and damping_stability's (3 methods × MNIST and Fashion-MNIST × seeds 1, 2 in the smoke), 3 layers
    assert len(s7) == (33 + 12) * 3 and {r["selected"] for r in s7} <= {str(v) for v in
                                                                         (0.0, 1e-05, 0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)}
    stability = list(csv.DictReader(open(results / "tables" / "tableS7_stability.csv")))
    # 3 methods × 2 procedures × MNIST and Fashion-MNIST
    assert len(stability) == 3 * 2 * 2 and {r["n"] for r in stability} == {"2"} and all(" of 3 layers" in r["cell"]
                                                                                    for r in stability)
    # beyond the paper: DDTP-GGN vs DDTP-linear (the latter's runs are the Table 1 block's), the GGN alignment
    beyond = {r["method_slug"]: r for r in csv.DictReader(open(results / "tables" / "ggn_ddtp.csv"))}
    assert set(beyond) == {"ddtp-ggn", "ddtp-linear"} and {r["n"] for r in beyond.values()} == {"2"}
    assert "SYNTHETIC DATA, NOT A RESULT" in (results / "tables" / "ggn_ddtp.md").read_text()
    assert (results / "figures" / "ggn_alignment_mnist.pdf").stat().st_size > 1000
    ggn = list(csv.DictReader(open(results / "runs/ggn/ddtp-ggn/mnist/seed42/alignment.csv")))
    assert {r["reference"] for r in ggn} == {"bp", "gnt", "ggn", "ggn_delta"}  # ggn_delta: H + δP (docs/ggn.md)
    assert "Beyond the paper" in (results / "README.md").read_text()
    for name in ("fig2_nullspace", "figS3_output_space"):
        with Image.open(results / "figures" / f"{name}.png") as img:
            assert img.size[0] >= 600 and img.size[1] >= 400, (name, img.size)
    bars = list(csv.DictReader(open(results / "figures" / "fig2_nullspace_summary.csv")))
    assert {r["paper_name"] for r in bars} == {"DTP (pre-trained)", "DDTP-linear"}
    toy = json.loads((results / "figures" / "toy_provenance.json").read_text())  # the toy's provenance
    assert toy["tiny"] is True and toy["experiments"]["figS3_output_space"]["seed"] == 93
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|tp \S+", toy["code_version"]) and toy["wall_time_s"]["fig2_nullspace"] > 0
    assert "Fig. 2 and S3 were made at code" in (results / "README.md").read_text()
    for table in TABLES:  # a smoke table can never pass for a real one
        assert "SYNTHETIC DATA, NOT A RESULT" in (results / "tables" / f"{table}.md").read_text()
    assert "CNN conv 4/8 channels, FC 16" in (results / "tables" / "table3.md").read_text()
    assert "Table S7" in (results / "README.md").read_text()
    # the claims (issue 38): made, marked, and with 2 smoke seeds (min_n 3) every table claim waits for runs
    assert "SYNTHETIC DATA, NOT A RESULT" in (results / "claims.md").read_text()
    claims = list(csv.DictReader(open(results / "claims.csv")))
    assert all(r["verdict"] == "pending" for r in claims if r["claim_id"].startswith("T1-"))
    assert "claims tested" in (results / "README.md").read_text()
    alignment = list(csv.DictReader(open(results / "runs/alignment/ddtp-linear/mnist/seed42/alignment.csv")))
    assert {r["reference"] for r in alignment} == {"bp", "gnt"}
    summary = json.loads((results / "runs/test/ddtp-linear/mnist/seed1/summary.json").read_text())
    assert summary["status"] == "finished" and summary["config"]["num_hidden"] == 3
    assert summary["block_seeds"] == [1, 2]  # the smoke's two seeds trained together (seed_block)
    # the CNN runs: the same rules on images, the smoke's small conv blocks, per-layer Adam settings
    cnn = json.loads((results / "runs/test/ddtp-linear/cifar10-cnn/seed1/summary.json").read_text())
    assert cnn["status"] == "finished" and cnn["rule"] == "ddtp-linear" and cnn["config"]["model"] == "cnn"
    assert cnn["block_seeds"] == [1, 2]  # the CNN cells are seed blocks too
    assert cnn["config"]["conv_channels"] == [4, 8] and len(cnn["config"]["lr"]) == 4
    cnn_alignment = list(csv.DictReader(open(results / "runs/alignment/dfa/cifar10-cnn/seed42/alignment.csv")))
    assert {(r["reference"], r["layer"]) for r in cnn_alignment} == {("bp", str(i)) for i in (1, 2, 3, 4)} | {
        ("gnt", str(i)) for i in (1, 2, 3)}
    assert {r["damping"] for r in cnn_alignment if r["reference"] == "gnt"} == {"1.0", "0.1", "0.01"}


@pytest.mark.slow
def test_report_of_the_smoke_run_has_every_table_and_figure(smoke_run):
    snakemake("--configfile", REPO / "config" / "smoke.yaml", "--report", smoke_run / "report.html",
              directory=smoke_run)
    html = (smoke_run / "report.html").read_text()
    for table in TABLES + ("tableS7", "tableS7_stability", "ggn_ddtp"):
        assert f"{table}.html" in html
    for figure in ("fig2_nullspace", "figS3_output_space", "fig4_alignment_fashion-mnist",
                   "figS4_alignment_fashion-mnist", "figS5_alignment_mnist", "figS6_alignment_cifar10",
                   "figS7_alignment_cifar10-cnn", "ggn_alignment_mnist"):
        assert f"{figure}.png" in html
    assert '"paper": "Table 1", "data": "synthetic"' in html and '"paper": "Fig. S7"' in html
    assert "the paper&#x27;s Table 1" in html or "the paper's Table 1" in html  # the caption
    assert "not results" in html  # the workflow description of a smoke run


# -------------------------------------------------------------------------------- interrupt (local)
def default_sigint():
    """For a child that must react to Ctrl-C: a shell that starts a job in the background (no job control)
    leaves SIGINT ignored, and an ignored signal stays ignored in every child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, proc, what):
    """Poll until ``predicate()``; fail when ``proc`` (the process that should bring it about; None: one the
    test has no handle on) has ended without it.  No clock: a slow machine only waits longer."""
    while not predicate():
        if proc is not None and proc.poll() is not None:
            if predicate():
                return
            raise AssertionError(f"the process ended (exit status {proc.returncode}) before {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_interrupted_smoke_run_resumes_without_recomputing(tmp_path):
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1], epochs=150)
    runs = [results / f"runs/test/{m}/mnist/seed1" for m in ("bp", "ddtp-linear", "dtp")]
    targets = [r / "summary.json" for r in runs]
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
                       "--configfile", str(REPO / "config" / "smoke.yaml"), str(extra), "--"] + [str(t) for t in targets]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, preexec_fn=default_sigint,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # one run finished, another in the middle of its training: Ctrl-C (SIGINT to the process group)
        # (a run that has just finished still has its checkpoint for a moment: look for an unfinished one)
        wait_for(lambda: sum(t.exists() for t in targets) == 1 and any(
            (r / "checkpoint.pt").exists() and not (r / "summary.json").exists() for r in runs), proc,
            "a finished run and a checkpointed one")
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = [t for t in targets if t.exists()]
    cut = [r for r in runs if (r / "checkpoint.pt").exists() and not (r / "summary.json").exists()]
    assert len(done) == 1 and len(cut) == 1
    finished_before = {t: t.stat().st_mtime_ns for t in done}

    # "run the same command again" (README): the workflow's default profile (profiles/default) makes Snakemake
    # redo the jobs it recorded as incomplete instead of stopping with IncompleteFilesException
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    assert all(t.exists() for t in targets)
    for t, mtime in finished_before.items():  # not recomputed
        assert t.stat().st_mtime_ns == mtime
    log = (results / "logs/train/test" / cut[0].parent.parent.name / "mnist/seed1.log").read_text()
    assert "resuming" in log  # continued from its checkpoint
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(cut[0] / "metrics.csv"))]
    assert epochs == list(range(1, 151))  # every epoch once: no duplicate work


@pytest.mark.slow
def test_a_job_that_ends_after_snakemake_died_is_redone_by_the_same_command(tmp_path):
    """Snakemake killed while a job runs (or Ctrl-C just as it ends): the job still writes its summary, which
    Snakemake recorded as incomplete.  The same command then redoes that job (profiles/default:
    rerun-incomplete) instead of stopping with IncompleteFilesException."""
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1], epochs=40)
    run = results / "runs/test/bp/mnist/seed1"
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
                       "--configfile", str(REPO / "config" / "smoke.yaml"), str(extra), "--", str(run / "summary.json")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run / "checkpoint.pt").exists(), proc, "the training job's first checkpoint")
        proc.kill()  # Snakemake only: its job goes on and ends
        proc.wait()
        wait_for(lambda: (run / "summary.json").exists() and not (run / "checkpoint.pt").exists(), None,
                 "the orphaned job to finish")
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)  # (the job's process exits after its last write)
    snakemake("--unlock", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
              REPO / "config" / "smoke.yaml", extra)
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "IncompleteFilesException" not in res.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


# ------------------------------------------------------------------------------------------- SLURM
def slurm_env():
    env = dict(os.environ)
    if "SLURM_CONF" not in env and Path("/etc/slurm/slurm.conf").exists():
        env["SLURM_CONF"] = "/etc/slurm/slurm.conf"
    return env


def slurm_reachable() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        return False
    res = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=slurm_env())
    return res.returncode == 0 and "UP" in res.stdout


@pytest.fixture
def slurm():
    if not slurm_reachable():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("no SLURM cluster reachable under CI (.ci/run should have started one)")
        pytest.skip("no SLURM cluster reachable")
    return slurm_env()


def sacct_jobs(env, name_prefix="tp-"):
    res = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State", "-S", "now-1days"],
                         capture_output=True, text=True, env=env, check=True)
    rows = [line.split("|") for line in res.stdout.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows if r[1].startswith(name_prefix)}


def squeue_ids(env):
    res = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env, check=True)
    return set(res.stdout.split())


CHECK_TABLE = {"check": {"title": "SLURM check", "tuning": "test", "quantity": "test_error_at_best_val",
                         "rows": ["bp", "ddtp-linear"], "columns": ["mnist"]}}


@pytest.mark.slow
def test_slurm_profile_runs_the_smoke_subset_through_sbatch(tmp_path, slurm):
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1, 2], tables=CHECK_TABLE)
    t0 = time.monotonic()
    snakemake("--profile", "slurm", "--configfile", "config/smoke.yaml", extra, "--",
              results / "tables" / "check.csv", cwd=REPO, env=slurm)
    print(f"SLURM smoke subset: {time.monotonic() - t0:.1f} s")
    jobs = sacct_jobs(slurm)
    rows = list(csv.DictReader(open(results / "tables" / "check.csv")))
    assert len(rows) == 2 and all(int(r["n"]) == 2 for r in rows)
    for method in ("bp", "ddtp-linear"):  # one SLURM job trains both seeds (a seed block)
        block = results / f"runs/test/{method}/mnist/seed1_2"
        job_id = json.loads((block / "slurm_job.json").read_text())["job_id"]
        assert jobs[job_id] == (f"tp-{method}-mnist-seed1_2", "COMPLETED")
        for seed in (1, 2):
            summary = json.loads((results / f"runs/test/{method}/mnist/seed{seed}/summary.json").read_text())
            assert summary["status"] == "finished" and summary["block_seeds"] == [1, 2]


def start_long_slurm_run(tmp_path, env, epochs):
    results = tmp_path / "res"
    extra = overlay(tmp_path, results=str(results), seeds=[1], epochs=epochs)
    run = results / "runs/test/ddtp-linear/mnist/seed1"
    cmd = SNAKEMAKE + ["--profile", "slurm", "--configfile", "config/smoke.yaml", str(extra), "--",
                       str(run / "summary.json")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, preexec_fn=default_sigint,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = run / "slurm_job.json"
    wait_for(lambda: record.exists(), proc, "the launcher's job record")
    job_id = json.loads(record.read_text())["job_id"]
    wait_for(lambda: subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                                    env=env).stdout.strip() == "RUNNING", proc, f"job {job_id} to run")
    return proc, cmd, extra, run, job_id


@pytest.mark.slow
def test_slurm_sigint_cancels_the_job(tmp_path, slurm):
    # far too long to finish in the seconds between SIGTERM and SIGKILL that SLURM grants a cancelled job
    proc, _, _, run, job_id = start_long_slurm_run(tmp_path, slurm, epochs=100000)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    while job_id in squeue_ids(slurm):  # the launchers are gone: SLURM itself removes the cancelled job
        time.sleep(0.2)
    assert not (run / "summary.json").exists()


@pytest.mark.slow
def test_slurm_sigkill_then_restart_reattaches_to_the_running_job(tmp_path, slurm):
    proc, cmd, extra, run, job_id = start_long_slurm_run(tmp_path, slurm, epochs=1500)  # ~1 min
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the launcher die without any chance to clean up
    proc.wait()
    assert job_id in squeue_ids(slurm)  # the job itself lives on
    snakemake("--profile", "slurm", "--unlock", "--configfile", "config/smoke.yaml", extra, cwd=REPO, env=slurm)
    snakemake(*cmd[3:], cwd=REPO, env=slurm)
    log = (run.parents[4] / "logs/train/test/ddtp-linear/mnist/seed1.log").read_text()
    assert f"re-attaching to SLURM job {job_id}" in log
    assert json.loads((run / "slurm_job.json").read_text())["job_id"] == job_id
    same_run = [j for j, (name, _) in sacct_jobs(slurm).items() if name == "tp-ddtp-linear-mnist-seed1"
                and int(j) >= int(job_id)]
    assert same_run == [job_id]  # no duplicate submission
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_report_labels_stay_narrow_when_runs_come_from_several_commits_and_machines():
    """Issue 21.8: the report's sidebar is as wide as its labels; four code versions and three device names
    left the opened table ~80 of 1400 pixels.  A label holds one value or the count of the distinct ones."""
    from cases import workflow_script

    labels = workflow_script("report_labels").labels
    run = lambda version, device, epochs=100: {"data_source": "real", "code_version": version,  # noqa: E731
                                               "device_name": device, "config": {"epochs": epochs}}
    one = labels("Table 1", [run("229eae3f29c2d57f", "AMD EPYC, x86_64 CPU (1 threads)")] * 2, "real")
    assert one == {"order": "T0-01", "paper": "Table 1", "data": "real", "runs": 2, "epochs": "100",
                   "code version": "229eae3f29c2", "device": "AMD EPYC"}  # the model; the notes hold the rest
    mixed = labels("Table 1", [run(f"{c}" * 40, d) for c, d in zip("abcd", ["AMD EPYC, x86_64 CPU (1 threads)",
                                                                           "x86_64 CPU (1 threads)"] * 2)], "real")
    assert mixed["code version"] == "4 versions (see notes)" and mixed["device"] == "2 devices (see notes)"
    assert max(len(str(v)) for v in mixed.values()) <= 24
    model = workflow_script("report_labels").device_model
    assert [model(d) for d in ("Intel(R) Xeon(R) Processor, x86_64 CPU (2 threads)", "x86_64 CPU (1 threads)",
                               "NVIDIA H200", None)] == ["Intel Xeon", "CPU", "NVIDIA H200", None]
    assert labels("Fig. 2", [], "synthetic") == {"order": "F0-02", "paper": "Fig. 2", "data": "synthetic"}
    # the report sorts by the first label as text: the paper's order, not "Table S10" before "Table S6" (issue 37)
    order = workflow_script("report_labels").paper_order
    papers = ["Table 1", "Table 2", "Table 3", "Table S6", "Table S7", "Table S8", "Table S9", "Table S10"]
    assert sorted(papers, key=order) == papers and sorted(map(order, papers)) == list(map(order, papers))
    assert order("learning curves (MNIST)") > order("Fig. S7") > order("Fig. 4")  # (figures: their own category)
    assert order("beyond the paper") == "Z-beyond"  # short, as every label: the sidebar is as wide as they are
    legacy = labels("Table S7", [{"config": {"epochs": 3}}], "real")  # a summary without the newer keys
    assert legacy["data"] == "real" and legacy["code version"] == "" and legacy["device"] == ""


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_the_report_introduction_renders_its_bold_words(source):
    """Issue 21.8: the introduction's bold data source stays bold however Jinja treats the newline after a
    block tag (Snakemake's report renders the RST after Jinja)."""
    import docutils.core
    import jinja2

    text = (REPO / "workflow" / "report" / "workflow.rst").read_text()
    config = {"results": "results", "data": {"source": source}, "seeds": [1, 2], "epochs": None, "overrides": {}}
    for trim in (False, True):
        rst = jinja2.Environment(trim_blocks=trim).from_string(text).render(snakemake={"config": config})
        html = docutils.core.publish_parts(rst, writer="html")["body"]
        assert f"<strong>{source}</strong>" in html and "**" not in html, html
        assert ("<strong>not results</strong>" in html) == (source == "synthetic")
