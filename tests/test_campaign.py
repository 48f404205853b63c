"""Committed runs count as done (a fresh clone plans only the missing runs; seed blocks never hold a finished
seed; partial builds train nothing) and the campaign's plan (priority order, estimates, the time box)."""

from __future__ import annotations

import argparse
import importlib.util
import json
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
SMOKE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def dry_run(cwd: Path, configfile: Path, *extra) -> str:
    res = subprocess.run(SNAKEMAKE + ["-n", "--configfile", str(configfile), *extra], cwd=cwd, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def planned(out: str) -> set[tuple[str, str, str, int]]:
    runs = set()
    for line in out.splitlines():
        if line.strip().startswith("output:"):
            runs |= {(t, m, d, int(s)) for t, m, d, s in
                     re.findall(r"runs/(\w+)/([\w-]+)/([\w-]+)/seed(\d+)/summary\.json", line)}
    return runs


def fake_run(results: Path, tuning, method, dataset, seed) -> None:
    folder = results / "runs" / tuning / method / dataset / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"tuning": tuning, "method": method, "dataset": dataset,
                                                     "seed": seed, "status": "finished", "wall_time_s": 60.0}))
    (folder / "metrics.csv").write_text("epoch,train_loss\n1,0.5\n")
    (folder / "config.yaml").write_text(f"seed: {seed}\n")


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


COMMITTED = [("test", "bp", "mnist", 1), ("test", "bp", "mnist", 2), ("test", "dfa", "mnist", 1)]
#: the outputs of rule toy_figures (Fig. 2, Fig. S3 and their provenance), committed like the runs
TOY = ["fig2_nullspace.png", "fig2_nullspace.pdf", "fig2_nullspace.csv", "fig2_nullspace_summary.csv",
       "figS3_output_space.png", "figS3_output_space.pdf", "figS3_output_space.json", "toy_provenance.json"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of (a copy of) this repository with three committed runs of the MNIST cells."""
    base = tmp_path_factory.mktemp("repo")
    src, dst = base / "src", base / "clone"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith("results/"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    for run in COMMITTED:
        fake_run(src / "results", *run)
    (src / "results" / "figures").mkdir(parents=True)
    for name in TOY:
        (src / "results" / "figures" / name).write_text("committed\n")
    (src / "results" / "campaigns.csv").write_text("started,minutes\n2026-12-03 11:23,108.2\n")
    git("init", "-q", cwd=src)
    git("add", "-A", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "runs", cwd=src)
    git("clone", "-q", str(src), str(dst), cwd=base)
    for path in [*(dst / "tp").rglob("*.py"), *(dst / "workflow").rglob("*")]:  # code edited after the runs
        path.touch()  # (a change that alters no number), or checked out after them
    config = base / "campaign.yaml"
    config.write_text(yaml.safe_dump({**{k: SMOKE[k] for k in ("data", "overrides", "epochs", "device")},
                                      "results": "results", "seeds": [1, 2, 3], "datasets": ["mnist"],
                                      "seed_block": 1}))
    return dst, config


@pytest.mark.slow
def test_a_fresh_clone_plans_only_the_runs_not_committed(clone):
    repo, config = clone
    runs = planned(dry_run(repo, config))
    assert runs and not runs & set(COMMITTED)
    assert ("test", "dfa", "mnist", 2) in runs and ("test", "bp", "mnist", 3) in runs
    assert sum(1 for t, m, d, s in runs if (t, m, d) == ("test", "bp", "mnist")) == 1


@pytest.mark.slow
def test_a_fresh_clone_keeps_the_committed_toy_figures(clone):
    # a rerun on another CPU would change the float32 numbers of Fig. 2 in their 7th digit: the committed
    # outputs count as done although the toy script is newer than them (git sets file times at checkout)
    repo, config = clone
    assert "rule toy_figures:" not in dry_run(repo, config)
    provenance = repo / "results" / "figures" / "toy_provenance.json"
    provenance.rename(provenance.with_suffix(".away"))
    try:  # an output missing: the toy experiments are planned (the check above can fail)
        assert "rule toy_figures:" in dry_run(repo, config)
    finally:
        provenance.with_suffix(".away").rename(provenance)


@pytest.mark.slow
def test_the_results_index_follows_the_campaign_record(clone):
    # campaigns.csv is written by campaign.py, not by a rule: a row added or annotated by hand must still
    # rebuild results/README.md, which shows it
    repo, config = clone
    out = dry_run(repo, config, "--config", "partial=true", "data={root: nowhere, download: false}")
    job = re.search(r"rule results_readme:\n(.*?)\n\n", out, flags=re.S)
    assert job, out[-3000:]
    inputs = next(line for line in job.group(1).splitlines() if line.strip().startswith("input:"))
    assert "results/campaigns.csv" in inputs and "results/tables/table1.md" in inputs


@pytest.mark.slow
def test_every_file_a_table_or_curve_reads_is_an_input(clone):
    """A run's metrics.csv and config.yaml are read by the audit (headline numbers, configuration): they are
    inputs of the tables and curves beside its summary, so editing or deleting one rebuilds them (issue 37)."""
    repo, config = clone
    out = dry_run(repo, config, "--config", "partial=true", "data={root: nowhere, download: false}")
    run = "results/runs/test/bp/mnist/seed1"
    for rule in ("table", "learning_curves"):
        jobs = re.findall(rf"rule {rule}:\n(.*?)\n\n", out, flags=re.S)
        inputs = [line for job in jobs for line in job.splitlines() if line.strip().startswith("input:")]
        assert any(f"{run}/summary.json" in i and f"{run}/metrics.csv" in i and f"{run}/config.yaml" in i
                   for i in inputs), (rule, inputs)


@pytest.mark.slow
def test_seed_blocks_leave_committed_seeds_out(clone):
    repo, config = clone
    out = dry_run(repo, config, "--config", "seed_block=3")
    runs = planned(out)
    assert not runs & set(COMMITTED)
    assert re.search(r"rule train_test_dfa_mnist_seeds2to3:", out)  # the two missing seeds of the DFA cell
    assert not re.search(r"rule train_test_bp_mnist_seeds", out)  # one missing seed: no block


@pytest.mark.slow
def test_a_partial_build_trains_nothing(clone):
    repo, config = clone
    out = dry_run(repo, config, "--config", "partial=true", "data={root: nowhere, download: false}")
    assert not planned(out)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(counts["table"]) == 7 and "datasets_missing" not in counts and "train" not in counts


# ----------------------------------------------------------------------------------------------- the plan
def _campaign():
    spec = importlib.util.spec_from_file_location("campaign", REPO / "workflow" / "scripts" / "campaign.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["campaign"] = module  # (its dataclass looks its module up)
    spec.loader.exec_module(module)
    return module


def _plan():
    """workflow/scripts/campaign_plan.py (on sys.path once campaign.py is loaded)."""
    _campaign()
    import campaign_plan

    return campaign_plan


def test_the_plan_runs_every_cell_seed_1_first_cheap_cells_first(tmp_path):
    campaign = _campaign()
    results = tmp_path / "results"
    for seed, wall in ((1, 600.0), (2, 1200.0), (3, 900.0)):  # DTP measured three times: median 900 s
        fake_run(results, "test", "dtp", "mnist", seed)
        path = results / "runs/test/dtp/mnist" / f"seed{seed}" / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "wall_time_s": wall}))
    fake_run(results, "test", "bp", "mnist", 1)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    args = argparse.Namespace(datasets=["mnist"], seeds=[1, 2, 3, 4], stages=["toy", "damping", "table1"],
                              default_hours=9.0)
    items = campaign.plan(cfg, args, results)
    targets = [i.target for i in items]
    # the toy figures, the 10 seed-42 damping searches and the 3 × 3 of damping_stability, then Table 1
    assert targets[0] == "figures/toy_provenance.json" and all("damping" in t for t in targets[1:20])
    table1 = items[20:]
    seeds = [int(re.search(r"seed(\d+)", i.target).group(1)) for i in table1]
    assert seeds == sorted(seeds) and not any("damping" in i.target for i in table1)  # every cell's seed 1 first
    assert not {"runs/test/bp/mnist/seed1/summary.json", "runs/test/dtp/mnist/seed1/summary.json"} & set(targets)  # done
    first = [i for i in table1 if "seed1/" in i.target]
    assert len(first) == 15 - 2 and [i.hours for i in first] == sorted(i.hours for i in first)
    dtp = next(i for i in items if i.target == "runs/test/dtp/mnist/seed4/summary.json")
    assert dtp.hours == pytest.approx(900 / 3600) and "median of 3" in dtp.why
    # frozen-mnist DTP: never run there, estimated from MNIST's runs scaled by their work (the same here)
    frozen = next(i for i in items if i.target == "runs/test/dtp/frozen-mnist/seed1/summary.json")
    assert frozen.why == "mnist's runs scaled by work" and frozen.hours == pytest.approx(900 / 3600)
    # the time box: a run starts only when its estimate (× margin) ends before the deadline
    assert campaign.pick(table1, now=0, deadline=900 * 1.2, margin=1.15).target.endswith("summary.json")
    assert campaign.pick([dtp], now=0, deadline=900 * 1.1, margin=1.15) is None
    assert campaign.pick([dtp], now=0, deadline=900 * 1.2, margin=1.15) is dtp


def _wall(results, tuning, method, dataset, seed, seconds, device=None, path=None):
    """A finished run of ``seconds`` (made by ``device`` on the step ``path`` when given)."""
    fake_run(results, tuning, method, dataset, seed)
    summary = results / "runs" / tuning / method / dataset / f"seed{seed}" / "summary.json"
    who = {k: v for k, v in (("device_name", device), ("step_path", path)) if v is not None}
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "wall_time_s": seconds, **who}))


def test_the_plan_adds_the_stability_seeds_after_the_seed_42_searches_and_ggn_last(tmp_path):
    """damping_stability's seeds come after every seed-42 search, seed by seed, cheap cells first; the ggn stage
    (beyond the paper) comes after Table 1: the GGN alignment runs, then the DDTP-GGN seeds; DDTP-linear's
    Table 1 runs are planned once, in Table 1's place, or in the ggn stage when it runs alone."""
    campaign = _campaign()
    results = tmp_path / "results"
    for method, seconds in (("ddtp-linear", 900.0), ("dtpdrl", 300.0), ("ddtp-rhl", 600.0)):  # the seed-42 searches
        _wall(results, "damping", method, "mnist", 42, seconds)
    _wall(results, "damping", "dtpdrl", "mnist", 2, 300.0)  # one stability seed already done
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    args = argparse.Namespace(datasets=["mnist"], seeds=[1, 2, 3], stages=["toy", "damping", "table1", "ggn"],
                              default_hours=2.0)
    targets = [i.target for i in campaign.plan(cfg, args, results)]
    damping = [t for t in targets if t.startswith("runs/damping/")]
    assert damping[:7] == [f"runs/damping/{m}/mnist/seed42/summary.json" for m in cfg["alignment"]["methods"]
                           if m not in ("ddtp-linear", "dtpdrl", "ddtp-rhl")]
    assert damping[7:] == [f"runs/damping/{m}/mnist/seed{s}/summary.json" for s in (1, 2, 3)
                           for m in ("dtpdrl", "ddtp-rhl", "ddtp-linear") if (m, s) != ("dtpdrl", 2)]
    last_table1 = max(k for k, t in enumerate(targets) if t.startswith("runs/test/") and "ddtp-ggn" not in t)
    assert targets[last_table1 + 1:] == [
        "runs/ggn/ddtp-linear/mnist/seed42/summary.json", "runs/ggn/ddtp-ggn/mnist/seed42/summary.json",
        *(f"runs/test/ddtp-ggn/mnist/seed{s}/summary.json" for s in (1, 2, 3))]
    assert [targets.count(f"runs/test/ddtp-linear/mnist/seed{s}/summary.json") for s in (1, 2, 3)] == [1, 1, 1]
    # the ggn stage alone plans the DDTP-linear runs its table needs, seed by seed after DDTP-GGN's (cheaper
    # estimate first: DDTP-linear never ran here either, both at --default-hours, in the table's row order)
    alone = [i.target for i in campaign.plan(cfg, argparse.Namespace(**{**vars(args), "stages": ["ggn"]}), results)]
    assert alone == ["runs/ggn/ddtp-linear/mnist/seed42/summary.json", "runs/ggn/ddtp-ggn/mnist/seed42/summary.json",
                     *(f"runs/test/{m}/mnist/seed{s}/summary.json" for s in (1, 2, 3) for m in ("ddtp-ggn", "ddtp-linear"))]
    # without the new sections (null) the plan has neither
    bare = {**cfg, "damping_stability": None, "beyond_paper": None}
    plain = [i.target for i in campaign.plan(bare, args, results)]
    assert not any("/ggn/" in t or "ddtp-ggn" in t or re.search(r"damping/.*seed[123]/", t) for t in plain)


def test_bad_campaign_arguments_name_the_valid_choices(capsys):
    campaign = _campaign()
    with pytest.raises(SystemExit):
        campaign.main(["--minutes", "10", "--datasets", "svhn", "--dry-run"])
    assert "--datasets svhn: valid choices are mnist, fashion-mnist, cifar10" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        campaign.main(["--minutes", "10", "--stages", "toy,beyond", "--dry-run"])
    assert "--stages beyond: valid choices are toy, damping, table1, table2, alignment, ggn" in capsys.readouterr().err


def test_a_run_folder_held_by_a_live_process_is_seen_without_taking_it(tmp_path):
    """The campaign asks :func:`tp.runs.folder.holder` before it starts a run, so that a run another process is
    training (a job left by a killed campaign) is not started twice; asking takes nothing and creates nothing."""
    import os

    from tp.runs.folder import hold_run_folders, holder

    out = tmp_path / "run"
    assert holder(out) is None and not out.exists()
    with hold_run_folders([out]):
        assert holder(out) == str(os.getpid())
        assert holder(out) == str(os.getpid())  # asked twice: still held by its owner
    assert holder(out) is None  # released with the block


def test_estimates_prefer_this_machines_runs_and_follow_the_observed_speed(tmp_path):
    """campaign_speed: a cell's runs made on this machine's CPU model are the estimate when there are any; the
    running runs' seconds per epoch against their estimate scale later start decisions (never below 1)."""
    campaign = _campaign()  # puts workflow/scripts on sys.path
    import campaign_speed as speed

    runs = tmp_path / "runs"
    for seed, (hours, device) in enumerate([(0.3, "Intel, x86_64 CPU (1 threads)"), (0.4, "Intel, x86_64 CPU (1 threads)"),
                                            (1.2, "AMD EPYC, x86_64 CPU (1 threads)")], 1):
        folder = runs / "test" / "ddtp-linear" / "mnist" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"status": "finished", "wall_time_s": hours * 3600,
                                                         "device_name": device}))
    times = speed.finished_times(tmp_path)
    cell = ("test", "ddtp-linear", "mnist")
    assert sorted(h for h, _ in times[cell]) == pytest.approx([0.3, 0.4, 1.2])
    assert _plan().estimate(cell, times, 1.5, ("AMD EPYC, x86_64 CPU (1 threads)", "eager")) == (
        pytest.approx(1.2), "median of 1 this machine's finished run(s)")
    assert _plan().estimate(cell, times, 1.5, ("Other CPU", "eager"))[0] == pytest.approx(0.4)  # all: none here
    # the same CPU on the compiled path is another runner (no step_path in a summary: eager)
    assert _plan().estimate(cell, times, 1.5, ("AMD EPYC, x86_64 CPU (1 threads)", "compiled")) == (
        pytest.approx(0.4), "median of 3 finished run(s)")
    gauge = speed.SpeedGauge()
    run = runs / "test" / "ddtp-linear" / "mnist" / "seed1"
    (run / "metrics.csv").write_text("epoch,seconds\n1,40.0\n")
    assert gauge.observe(run, 0.32, 100) is None and gauge.factor == 1.0  # one epoch: not yet
    (run / "metrics.csv").write_text("epoch,seconds\n1,40.0\n2,44.0\n3,42.0\n")
    assert gauge.observe(run, 0.32, 100) == pytest.approx(42.0 / 11.52)
    assert gauge.factor == pytest.approx(42.0 / 11.52)
    item = campaign.Item("runs/test/dtp/mnist/seed1/summary.json", 0.25, "")
    assert campaign.pick([item], now=0, deadline=3600, margin=1.15) is item
    assert campaign.pick([item], now=0, deadline=3600, margin=1.15, speed=gauge.factor) is None
    fast = speed.SpeedGauge()
    (run / "metrics.csv").write_text("epoch,seconds\n1,4.0\n2,4.0\n")
    fast.observe(run, 0.32, 100)
    assert fast.factor == 1.0


def test_the_plan_follows_issue_34s_priority_order(tmp_path):
    """(a) the damping searches (seed 42, then damping_stability's seeds, Fashion-MNIST included); (b, c) seed 1 of
    every Table 1 cell, then of every Table 2 cell; (d) the alignment runs of the main text's Fig. 4 (Fashion-MNIST);
    (e) seeds 2 and 3 of both tables, seed by seed; (f) the other alignment runs (MNIST, Fig. S5); then ggn."""
    campaign = _campaign()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    args = argparse.Namespace(datasets=["mnist", "fashion-mnist"], seeds=[1, 2, 3], stages=list(campaign.STAGES),
                              default_hours=1.0)
    targets = [i.target for i in campaign.plan(cfg, args, tmp_path / "results")]
    parts = [t.split("/") for t in targets[1:]]  # after the toy figures
    kind = [p[1] if p[1] in ("damping", "alignment", "ggn") else f"{p[1]}-seed{p[4][4:]}" for p in parts]
    blocks = [k for n, k in enumerate(kind) if n == 0 or kind[n - 1] != k]
    assert targets[0] == "figures/toy_provenance.json"
    assert blocks == ["damping", "test-seed1", "train-seed1", "alignment", "test-seed2", "train-seed2", "test-seed3",
                      "train-seed3", "alignment", "ggn", "test-seed1", "test-seed2", "test-seed3"]  # DDTP-GGN's seeds
    damping = [p for p, k in zip(parts, kind) if k == "damping"]
    assert {(p[3], p[4]) for p in damping if p[4] != "seed42"} == {
        (d, f"seed{s}") for d in ("mnist", "fashion-mnist") for s in (1, 2, 3)}
    assert all(p[4] == "seed42" for p in damping[:20]) and len(damping) == 20 + 18
    first_alignment = [parts[n] for n, k in enumerate(kind) if k == "alignment"]
    assert [p[3] for p in first_alignment] == ["fashion-mnist"] * 10 + ["mnist"] * 10
    train = [p for p, k in zip(parts, kind) if k == "train-seed1"]
    assert {p[3] for p in train} == {"mnist", "frozen-mnist", "fashion-mnist"} and len(train) == 8 + 7 + 8
    assert not any("cifar10" in t for t in targets)  # not selected


def test_estimates_of_never_run_cells_borrow_the_slowest_comparable_runs(tmp_path):
    """A Fashion-MNIST cell borrows MNIST's time, never Frozen-MNIST's shorter one (only its last layer trains); a
    Table 2 (train) or alignment cell never run borrows the method's test-tuned runs, its own dataset's first."""
    campaign = _campaign()
    import campaign_speed as speed

    results = tmp_path / "results"
    _wall(results, "test", "ddtp-linear", "mnist", 1, 3600.0)
    _wall(results, "test", "ddtp-linear", "frozen-mnist", 1, 900.0)
    _wall(results, "test", "ddtp-linear", "fashion-mnist", 1, 1800.0)
    times = speed.finished_times(results)
    hours, why = _plan().estimate(("test", "ddtp-linear", "fashion-mnist"), {
        k: v for k, v in times.items() if k[2] != "fashion-mnist"}, 9.0)
    work = _plan().work_of
    assert why == "mnist's runs scaled by work" and hours == pytest.approx(
        1.0 * work("test", "ddtp-linear", "fashion-mnist") / work("test", "ddtp-linear", "mnist"))
    hours, why = _plan().estimate(("train", "ddtp-linear", "fashion-mnist"), times, 9.0)
    assert why == "test fashion-mnist's runs scaled by work" and hours == pytest.approx(
        0.5 * work("train", "ddtp-linear", "fashion-mnist") / work("test", "ddtp-linear", "fashion-mnist"))
    hours, why = _plan().estimate(("alignment", "ddtp-linear", "cifar10"), times, 9.0)
    assert why == "test mnist's runs scaled by work"  # no cifar10 run: the slowest of the others
    assert _plan().estimate(("train", "dfa", "mnist"), times, 9.0) == (9.0, "--default-hours")


def test_this_runners_scaled_runs_come_before_other_runners_runs_of_the_cell(tmp_path):
    """A cell run only by another runner (CPU model or step path) borrows this runner's comparable runs scaled by
    work first: the other runner's time can be 2-4x off, and one longer than every time box never starts."""
    _campaign()
    import campaign_speed as speed

    results = tmp_path / "results"
    here = ("Intel, x86_64 CPU (1 threads)", "compiled")
    _wall(results, "test", "ddtp-rhl", "mnist", 1, 3 * 3600.0, device=here[0], path="eager")
    _wall(results, "train", "ddtp-rhl", "frozen-mnist", 1, 3600.0, device=here[0], path="compiled")
    times = speed.finished_times(results)
    work = _plan().work_of
    hours, why = _plan().estimate(("test", "ddtp-rhl", "fashion-mnist"), times, 9.0, here)
    assert why == "this machine's train frozen-mnist's runs scaled by work" and hours == pytest.approx(
        work("test", "ddtp-rhl", "fashion-mnist") / work("train", "ddtp-rhl", "frozen-mnist"))
    hours, why = _plan().estimate(("test", "ddtp-rhl", "mnist"), times, 9.0, here)  # its own cell: still 2nd
    assert why.startswith("this machine's train frozen-mnist") and hours < 3.0
    elsewhere = ("Other CPU", "compiled")  # no run of this runner: the cell's own runs, then scaled others
    assert _plan().estimate(("test", "ddtp-rhl", "mnist"), times, 9.0, elsewhere) == (
        pytest.approx(3.0), "median of 1 finished run(s)")
    assert _plan().estimate(("test", "ddtp-rhl", "fashion-mnist"), times, 9.0, elsewhere) == (
        pytest.approx(3.0 * work("test", "ddtp-rhl", "fashion-mnist") / work("test", "ddtp-rhl", "mnist")),
        "mnist's runs scaled by work")


def test_the_campaign_record_holds_no_absolute_path(tmp_path):
    """campaigns.csv is committed: the data root of the machine that ran the campaign is written relative to
    the repository."""
    campaign = _campaign()
    data = campaign.REPO.parent / "some-data"
    args = campaign.public_args(["--data-root", str(data), "--results=" + str(campaign.REPO / "results"), "--x", "y"])
    assert args == ["--data-root", "../some-data", "--results=results", "--x", "y"]


def test_only_runs_estimated_from_their_own_cell_gauge_the_speed():
    """The loop reads a running run's epochs through its (tuning, method, dataset); a damping run (its estimate
    holds the search) and a guessed estimate never scale the later starts."""
    campaign = _campaign()
    train = campaign.Item("runs/test/ddtp-linear/mnist/seed2/summary.json", 0.32, "median of 3 finished run(s)")
    assert train.cell == ("test", "ddtp-linear", "mnist") and train.gauges_speed
    assert campaign.epochs_of(*train.cell) == 100 + 6  # training epochs + feedback pre-training epochs
    damping = campaign.Item("runs/damping/ddtp-linear/mnist/seed1/summary.json", 0.03, "median of 1 finished run(s)")
    assert damping.cell == ("damping", "ddtp-linear", "mnist") and not damping.gauges_speed
    guessed = campaign.Item("runs/ggn/ddtp-ggn/mnist/seed42/summary.json", 0.25, "--default-hours")
    assert not guessed.gauges_speed
    toy = campaign.Item("figures/toy_provenance.json", 0.05, "minutes (Fig. 2, S3)")
    assert toy.run is None and not toy.gauges_speed


def test_the_campaign_record_keeps_its_columns_and_a_note_column(tmp_path):
    """campaigns.csv: each row in the file's own columns; what happened beside a command (a pause, a resume) goes
    into the note column by hand, never into the command (issue 37)."""
    campaign = _campaign()
    path = tmp_path / "campaigns.csv"
    campaign.record(path, {"started": "2026-12-04 19:28", "minutes": 1.0, "command": "python x"})
    campaign.record(path, {"command": "python y", "started": "2026-12-04 20:00"})  # another order, fewer keys
    import csv

    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == ["started", "minutes", "command", "note"]
    assert rows[1] == {"started": "2026-12-04 20:00", "minutes": "", "command": "python y", "note": ""}
    with pytest.raises(ValueError, match="no column for machine"):
        campaign.record(path, {"machine": "cpu"})
    committed = list(csv.DictReader(open(REPO / "results" / "campaigns.csv")))
    assert all(not r["command"].endswith(")") for r in committed)  # the notes are in their own column


def test_the_runner_starts_what_fits_copies_what_finished_and_leaves_the_rest(tmp_path, monkeypatch):
    """campaign.run_items with jobs that write their target (the real jobs are Snakemake calls): two slots,
    the runs that fit before the deadline start and are copied into the results folder, a run too long for the
    time box stays in the plan, a job that writes nothing counts as failed."""
    campaign = _campaign()
    monkeypatch.setattr(campaign, "POLL_S", 0.1)
    tree, results = tmp_path / "tree", tmp_path / "results"
    (tree / "results").mkdir(parents=True)
    args = argparse.Namespace(seeds=[1], datasets=["mnist"], data_root=str(tmp_path / "data"), slots=2,
                              margin=1.0, grace=1.0)
    lines = []
    runner = campaign.Runner(args, tree, results, lines.append)
    runner.logdir.mkdir(parents=True)
    write = ("import pathlib, sys; t = pathlib.Path(sys.argv[-1]); "
             "t.parent.mkdir(parents=True, exist_ok=True); 'bad' in str(t) or t.write_text('{}')")
    runner.command = [sys.executable, "-c", write]
    items = [campaign.Item(f"runs/test/{m}/mnist/seed1/summary.json", h, "") for m, h in
             (("bp", 0.001), ("bad", 0.001), ("dfa", 0.002), ("dtp", 10.0))]
    before = signal.getsignal(signal.SIGTERM)
    campaign.run_items(runner, items, deadline=time.time() + 600)
    assert [i.target for i in items] == ["runs/test/dtp/mnist/seed1/summary.json"]  # 10 h: never fits
    assert (runner.finished, runner.failed, runner.stop_all()) == (2, 1, 0)
    assert sorted(p.parts[-4] for p in results.glob("runs/*/*/*/seed1/summary.json")) == ["bp", "dfa"]
    assert any(line.startswith("FAILED (exit 0") and "bad" in line for line in lines)
    assert campaign.snakemake_config(args)[:2] == ["--config", "seeds=[1]"]
    assert signal.getsignal(signal.SIGINT) is not None and signal.getsignal(signal.SIGTERM) == before  # restored
