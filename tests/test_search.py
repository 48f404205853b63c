"""The hyperparameter search (tp.search, `tp search`): search spaces, the TPE loop, resume, outputs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from tp.cli import main as tp_main  # noqa: E402
from tp.catalog import METHODS  # noqa: E402
from tp.config import available_configs, resolve_config  # noqa: E402
from tp.errors import ConfigError  # noqa: E402
from tp.data import load_dataset  # noqa: E402
from tp.search import (SearchSettings, TrialReporter, load_space, objective_of, open_study,  # noqa: E402
                       run_search, write_outputs)
from tp.search.cli import trial_trainer  # noqa: E402
from tp.search.space import suggest  # noqa: E402

SMALL = {"num_hidden": 2, "size_hidden": 16, "epochs": 2, "epochs_fb": 1, "batch_size": 64}


def test_every_method_has_a_valid_space_that_holds_its_final_configurations():
    for method in METHODS:
        space = load_space(method)
        if not METHODS[method].beyond_paper:  # the paper's Table S1; DDTP-GGN searches what GGN changes
            assert {"lr", "beta1", "beta2", "epsilon"} <= set(space)
        for (dataset, m), tunings in available_configs().items():
            if m != method:
                continue
            for tuning in set(tunings) & {"test", "train"}:
                cfg = resolve_config(method, dataset, tuning)
                for name, p in space.items():
                    values = cfg[name] if isinstance(cfg[name], list) else [cfg[name]]
                    for v in values:
                        assert p.contains(v), (method, dataset, tuning, name, v, p)


def test_dtp_searches_no_feedback_weight_decay_and_bp_no_feedback():
    assert "feedback_wd" not in load_space("dtp") and "feedback_wd" in load_space("dtp-pretrained")
    assert not {"lr_fb", "sigma", "target_stepsize"} & set(load_space("bp"))


@pytest.mark.parametrize("space,fragment", [
    ({"lrr": {"log_uniform": [1e-5, 1e-3]}}, "unknown configuration key"),
    ({"lr": {"log_uniform": [1e-3, 1e-5]}}, "low < high"),
    ({"lr": {"log_uniform": [0.0, 1e-3]}}, "0 < low"),
    ({"lr": {"normal": [1e-3, 1e-5]}}, "exactly one of"),
    ({"lr": {"choices": []}}, "non-empty list"),
    ({"lr": {"choices": [-1.0]}}, "is not valid"),
])
def test_bad_space_files_name_the_file_and_key(tmp_path, space, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"method": "bp", "space": space}))
    with pytest.raises(ConfigError) as err:
        load_space("bp", path=path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_objective_is_the_tables_quantity_and_never_a_diverged_value():
    s = {"status": "finished", "val_error_best": 3.5, "train_loss_last": 0.1}
    assert objective_of(s, "test") == 3.5 and objective_of(s, "train") == 0.1
    assert objective_of({**s, "status": "diverged"}, "test") is None
    assert objective_of({**s, "status": "pruned"}, "test") is None
    assert objective_of({**s, "val_error_best": float("nan")}, "test") is None


def _load(split_generator):
    return load_dataset("mnist", source="synthetic", split_generator=split_generator, synthetic_sizes=(256, 128),
                        val_size=64)


def test_a_search_in_blocks_ranks_a_diverging_rate_below_a_good_one_and_writes_every_output(tmp_path):
    space = tmp_path / "space.yaml"  # lr: a good value and one that diverges at once
    space.write_text(yaml.safe_dump({"method": "ddtp-linear", "space": {
        "lr": {"choices": [1e-3, 1e300]}, "target_stepsize": {"log_uniform": [0.01, 0.5]}}}))
    settings = SearchSettings("ddtp-linear", "mnist", "test", trials=8, block=4, out=tmp_path / "s",
                              overrides=SMALL, startup_trials=4, space_file=space)
    study = run_search(settings, trial_trainer(_load, 0, "cpu", prune=False, log=lambda m: None),
                       log=lambda m: None)
    states = {t.number: (t.state.name, t.params["lr"]) for t in study.trials}
    assert len(states) == 8
    for state, lr in states.values():
        assert state == ("COMPLETE" if lr == 1e-3 else "FAIL")
    assert any(lr == 1e-3 for _, lr in states.values()) and any(lr == 1e300 for _, lr in states.values())
    for t in study.trials:
        if t.state.name == "FAIL":
            assert t.user_attrs["status"] == "diverged" and t.value is None
    written = write_outputs(study, settings, log=lambda m: None)
    out = tmp_path / "s"
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("trial,state,objective,value")
    for name in ("history", "importances"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
    assert set(written) == {"trials", "best", "history", "importances"}
    # the storage is a real SQLite file holding the 8 trials
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 8
    # best.yaml is a configuration `tp train --config` takes as it is (and it resolves to the best trial's)
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["lr"] == 1e-3 and best["method"] == "ddtp-linear"
    assert best == resolve_config("ddtp-linear", "mnist", "test", {k: v for k, v in best.items()
                                                                   if k not in ("method", "dataset", "tuning",
                                                                                "rule", "model")})
    rc = tp_main(["train", "--config", str(out / "best.yaml"), "--source", "synthetic", "--epochs", "1",
                  "--out", str(tmp_path / "again")])
    assert rc == 0
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert {k: v for k, v in again.items() if k not in ("seed", "epochs")} == \
           {k: v for k, v in best.items() if k != "epochs"}


def _search_cmd(out: Path, trials: int) -> list[str]:
    sets = [a for k, v in {**SMALL, "epochs": 6}.items() for a in ("--set", f"{k}={v}")]
    return [sys.executable, "-m", "tp", "search", "--method", "dtpdrl", "--dataset", "mnist", "--source",
            "synthetic", "--trials", str(trials), "--block", "2", "--startup-trials", "2", "--out", str(out),
            *sets]


@pytest.mark.slow
def test_a_killed_search_resumes_and_asks_the_killed_trials_again(tmp_path):
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_search_cmd(out, 4), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpt = out / "trials" / "0000" / "checkpoint.pt"
    while not ckpt.exists():  # wait until the first block is part-way through its training
        assert proc.poll() is None, "the search ended before it could be interrupted"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(_search_cmd(out, 4), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "marked failed, asked again" in done.stdout and "resuming" in done.stdout + done.stderr
    study = optuna.load_study(study_name="dtpdrl-mnist-test", storage=f"sqlite:///{out / 'study.db'}")
    retried = {t.user_attrs["retry_of"]: t for t in study.trials if "retry_of" in t.user_attrs}
    assert 0 in retried and 1 in retried  # the whole first block was in flight
    for number, retry in retried.items():
        killed = study.trials[number]
        assert killed.state.name == "FAIL" and retry.params == killed.params
        assert retry.user_attrs["out"] == killed.user_attrs["out"]  # same folder: resumed from its checkpoint
        assert retry.state.name == "COMPLETE"
    ended = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")
             and t.number not in retried]
    assert len(ended) == 4


def test_bad_search_arguments_are_named_errors(tmp_path, capsys):
    assert tp_main(["search", "--method", "bp", "--dataset", "mnist", "--trials", "-1",
                    "--out", str(tmp_path)]) == 2
    assert "--trials" in capsys.readouterr().err
    assert tp_main(["search", "--method", "bp", "--dataset", "mnist", "--tuning", "train", "--set", "lrr=1",
                    "--out", str(tmp_path)]) == 2
    assert "'lrr'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_pipeline_search_target_runs_two_workers_on_one_storage(tmp_path):
    """`snakemake search`: two worker jobs share one journal storage; the outputs rule writes the files."""
    repo = Path(__file__).resolve().parents[1]
    cfg = tmp_path / "search.yaml"
    cfg.write_text(yaml.safe_dump({
        "results": str(tmp_path / "results"), "device": "cpu", "epochs": 1,
        "data": {"root": str(tmp_path / "data"), "download": False, "source": "synthetic"},
        "overrides": {"num_hidden": 3, "size_hidden": 16, "batch_size": 64},
        "search": {"method": "bp", "dataset": "mnist", "trials": 4, "block": 2, "workers": 2, "epochs": 2}}))
    res = subprocess.run([sys.executable, "-m", "snakemake", "search", "--snakefile", str(repo / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(repo / "config" / "smoke.yaml"),
                          str(cfg), "--cores", "2"], capture_output=True, text=True, cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = tmp_path / "results" / "search" / "bp" / "mnist" / "test"
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 5  # 4 trials, however the two workers shared them
    workers = [json.loads((out / "workers" / w / "summary.json").read_text()) for w in ("w0", "w1")]
    assert sum(len(w["trials_run"]) for w in workers) == 4
    assert yaml.safe_load((out / "best.yaml").read_text())["method"] == "bp"
    for name in ("history", "importances"):
        assert (out / f"{name}.png").exists() and (out / f"{name}.pdf").exists()


def test_the_median_pruner_stops_a_trial_worse_than_the_median_at_its_epoch(tmp_path):
    """Five earlier trials at 10 % validation error in every epoch: a trial whose rate barely learns (about
    90 %) is stopped after its first epoch, told as PRUNED with that epoch's value."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"method": "bp", "space": {"lr": {"choices": [1e-9]}}}))
    settings = SearchSettings("bp", "mnist", "test", trials=6, out=tmp_path / "s", overrides={**SMALL, "epochs": 3},
                              space_file=space, median_pruner=True)
    study = open_study(settings)
    dist = {"lr": optuna.distributions.CategoricalDistribution([1e-9])}
    for _ in range(5):
        study.add_trial(optuna.trial.create_trial(params={"lr": 1e-9}, distributions=dist, value=10.0,
                                                  intermediate_values={1: 10.0, 2: 10.0, 3: 10.0}))
    study = run_search(settings, trial_trainer(_load, 0, "cpu", prune=False, log=lambda m: None),
                       log=lambda m: None)
    trial = study.trials[-1]
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]
    assert trial.intermediate_values[1] > 50 and "median pruner" in trial.user_attrs["message"]
    folder = settings.trial_folder(trial.user_attrs["out"], trial.number)  # recorded relative to settings.out
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["epochs_run"] == 1


@pytest.mark.parametrize("args,fragment", [
    (["--stale-after", "-5"], "--stale-after"), (["--startup-trials", "-3"], "--startup-trials"),
    (["--seed", "-1"], "--seed"), (["--storage", "foo://bar"], "foo://bar"),
    (["--set", "no_val_set=true"], "no_val_set"), (["--epochs", "0"], "epochs"),
])
def test_bad_settings_are_refused_before_any_trial(tmp_path, capsys, args, fragment):
    rc = tp_main(["search", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--trials", "2",
                  "--out", str(tmp_path / "s"), *args])
    assert rc == 2 and fragment in capsys.readouterr().err
    assert not (tmp_path / "s" / "trials").exists()  # nothing was trained


def test_a_block_searches_only_keys_that_may_differ_between_replicas(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"method": "bp", "space": {"lr": {"log_uniform": [1e-4, 1e-2]},
                                                               "batch_size": {"choices": [32, 64]}}}))
    settings = SearchSettings("bp", "mnist", trials=2, block=2, out=tmp_path / "s", overrides=SMALL,
                              space_file=space)
    with pytest.raises(ConfigError, match="batch_size"):
        run_search(settings, trial_trainer(_load, 0, "cpu"), log=lambda m: None)


def test_a_study_refuses_other_fixed_values(tmp_path):
    open_study(SearchSettings("bp", "mnist", out=tmp_path / "s", overrides={**SMALL, "epochs": 2}))
    with pytest.raises(ConfigError, match="overrides"):
        open_study(SearchSettings("bp", "mnist", out=tmp_path / "s", overrides={**SMALL, "epochs": 3}))


def test_outputs_of_a_search_without_a_completed_trial_say_so(tmp_path):
    space = tmp_path / "space.yaml"  # every trial diverges
    space.write_text(yaml.safe_dump({"method": "bp", "space": {"lr": {"choices": [1e300]}}}))
    settings = SearchSettings("bp", "mnist", trials=2, out=tmp_path / "s", overrides={**SMALL, "epochs": 1},
                              space_file=space)
    study = run_search(settings, trial_trainer(_load, 0, "cpu", prune=False, log=lambda m: None),
                       log=lambda m: None)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    write_outputs(study, settings, log=lambda m: None)
    out = tmp_path / "s"
    assert "No trial" in (out / "best.yaml").read_text() and yaml.safe_load((out / "best.yaml").read_text()) is None
    for name in ("history", "importances"):
        assert (out / f"{name}.png").exists() and (out / f"{name}.pdf").exists()


def test_the_reporter_finds_each_trial_by_its_run_folder(tmp_path):
    """A block whose first trial already ended in its folder trains only the second: the epochs it reports
    belong to the second trial (the replica index of the sub-block is 0)."""
    settings = SearchSettings("bp", "mnist", trials=2, block=2, out=tmp_path / "s", overrides={**SMALL, "epochs": 2})
    study = open_study(settings)
    trials = [study.ask() for _ in range(2)]
    outs = [tmp_path / "s" / "trials" / f"{t.number:04d}" for t in trials]
    for t, out in zip(trials, outs):
        t.set_user_attr("out", str(out))
    cfgs = [resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 2, "lr": lr}) for lr in (1e-3, 3e-3)]
    train_block = trial_trainer(_load, 0, "cpu", prune=False, log=lambda m: None)
    train_block(cfgs[:1], outs[:1], [])  # trial 0 ends before the block
    reporter = TrialReporter(trials, "test", prune=False)
    train_block(cfgs, outs, [reporter])
    assert reporter.reported == {trials[0].number: set(), trials[1].number: {1, 2}}


def _fake_block(cfgs, outs, hooks):
    """Trains nothing: each trial 'finishes' with its lr as the objective (the sampler is what is tested)."""
    return [{"status": "finished", "val_error_best": float(c["lr"])} for c in cfgs]


@pytest.mark.slow
def test_continued_and_concurrent_searches_never_repeat_a_point(tmp_path):
    """Issue 21.1: a search continued with more trials, and two studies asking into one storage at once, draw
    new points (each trial's sampler is seeded from the sampler seed and the trial's number)."""
    settings = dict(method="bp", dataset="mnist", out=tmp_path / "s", overrides=SMALL, startup_trials=10)
    for n in (2, 4, 6):  # `tp search --trials 2`, then 4, then 6: a new process (a new sampler) each time
        study = run_search(SearchSettings(trials=n, **settings), _fake_block, log=lambda m: None)
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(points) == 6 and len(set(points)) == 6, points
    a, b = (open_study(SearchSettings(**{**settings, "out": tmp_path / "c"})) for _ in range(2))
    space = load_space("bp")
    ta, tb = a.ask(), b.ask()  # two workers, each asking its first trial before either trains
    assert (ta.number, tb.number) == (0, 1)
    assert suggest(ta, space) != suggest(tb, space)
    # the points follow from the sampler seed and the trial numbers: the same study again asks the same ones
    again = run_search(SearchSettings(trials=6, **{**settings, "out": tmp_path / "again"}), _fake_block,
                       log=lambda m: None)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    with pytest.raises(ConfigError, match="sampler_seed"):
        SearchSettings(sampler_seed=-1, **settings)


def test_a_method_without_a_space_file_searches_what_its_rule_declares(tmp_path):
    """A method whose tp/configs/search/<method>.yaml is missing (a rule added since) gets the default space:
    the forward Adam always, the target step size and the feedback keys as its rule declares them."""
    import shutil

    from tp.config import config_dir

    shutil.copy(config_dir() / "defaults.yaml", tmp_path / "defaults.yaml")  # a root without search files
    bp, ddtp, dfa = (load_space(m, root=tmp_path) for m in ("bp", "ddtp-linear", "dfa"))
    assert set(bp) == {"lr", "beta1", "beta2", "epsilon"}
    assert set(dfa) == set(bp) | {"target_stepsize"}  # DFA's feedback is fixed
    assert set(ddtp) == set(dfa) | {"sigma", "lr_fb", "beta1_fb", "beta2_fb", "epsilon_fb"}
    shipped = load_space("ddtp-linear")
    assert all(ddtp[k] == shipped[k] for k in ("target_stepsize", "sigma", "lr_fb", "beta1_fb"))
    assert bp["lr"] == load_space("bp")["lr"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_space("bp", path=tmp_path / "missing.yaml")  # a file named by the user must exist
