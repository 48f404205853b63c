"""`tp search` under resume, moved folders, damaged storage and bad input (issue 21): each case a named error
or the right behaviour.  The trainer here trains nothing (each trial 'finishes' with its lr as objective, in
a run folder with its config.yaml): what is tested is the search's bookkeeping, in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from tp.cli import main as tp_main  # noqa: E402
from tp.errors import ConfigError  # noqa: E402
from tp.search import SearchSettings, open_study, run_search, write_outputs  # noqa: E402
from tp.search.study import repair_journal  # noqa: E402

SMALL = {"num_hidden": 2, "size_hidden": 16, "epochs": 2, "epochs_fb": 1, "batch_size": 64}
SYNTHETIC = {"data_source": "synthetic", "data_sha256": None}
REAL = {"data_source": "real", "data_sha256": {"train-images-idx3-ubyte": "ab" * 32}}


def quiet(msg):
    pass


def fake_trainer(source="synthetic"):
    def train_block(cfgs, outs, hooks):
        summaries = []
        for cfg, out in zip(cfgs, outs):
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(yaml.safe_dump({"seed": 0, **cfg}, sort_keys=False))
            summaries.append({"status": "finished", "val_error_best": 100 * float(cfg["lr"]),
                              "data_source": source})
        return summaries
    return train_block


def settings(out, **kw):
    return SearchSettings(**{"method": "bp", "dataset": "mnist", "out": out, "overrides": SMALL,
                             "data": SYNTHETIC, **kw})


def test_a_study_keeps_its_data_source_and_records_it(tmp_path):
    """Issue 21.2: synthetic trials, then the same search on real data: refused, not ranked together."""
    out = tmp_path / "s"
    study = run_search(settings(out, trials=2), fake_trainer(), log=quiet)
    with pytest.raises(ConfigError, match=r"other fixed values \(data differ"):
        run_search(settings(out, trials=4, data=REAL), fake_trainer("real"), log=quiet)
    assert len(study.trials) == 2  # the refused call asked nothing
    write_outputs(study, settings(out, data=None), log=quiet)  # --trials 0: the study's own data source
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].split(",")[:6] == ["trial", "state", "objective", "value", "status", "data_source"]
    assert all(r.split(",")[5] == "synthetic" for r in rows[1:])
    assert "# Data: synthetic." in (out / "best.yaml").read_text()
    real = run_search(settings(tmp_path / "r", trials=1, data=REAL), fake_trainer("real"), log=quiet)
    write_outputs(real, settings(tmp_path / "r", data=None), log=quiet)
    assert f"# Data: real (SHA-256 train-images-idx3-ubyte {'ab' * 6}…)." in (tmp_path / "r" / "best.yaml").read_text()


def test_missing_data_is_found_before_any_trial(tmp_path):
    out = tmp_path / "s"
    assert tp_main(["search", "--method", "bp", "--dataset", "mnist", "--trials", "1", "--data-root",
                    str(tmp_path / "none"), "--out", str(out)]) == 4
    assert not (out / "study.db").exists() and not (out / "trials").exists()


def test_a_moved_search_folder_keeps_working(tmp_path):
    """Issue 21.3: the trial folders are recorded relative to the search folder."""
    study = run_search(settings(tmp_path / "a", trials=2), fake_trainer(), log=quiet)
    assert {t.user_attrs["out"] for t in study.trials} == {"trials/0000", "trials/0001"}
    shutil.move(tmp_path / "a", tmp_path / "b")
    study = run_search(settings(tmp_path / "b", trials=4), fake_trainer(), log=quiet)
    assert len(study.trials) == 4
    write_outputs(study, settings(tmp_path / "b"), log=quiet)
    best = (tmp_path / "b" / "best.yaml").read_text()
    assert f"run folder {tmp_path / 'b' / 'trials'}" in best and yaml.safe_load(best)["method"] == "bp"


@pytest.mark.parametrize("where", ["file", "under-file", "proc"])
def test_an_unusable_out_is_a_named_error(tmp_path, capsys, where):
    """Issue 21.4: the cases `tp train` already handles."""
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under-file": tmp_path / "f" / "sub", "proc": Path("/proc/tp-x")}[where]
    assert tp_main(["search", "--method", "bp", "--dataset", "mnist", "--trials", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot use the output folder {out}" in err and "Traceback" not in err


def test_a_journal_cut_short_is_repaired_without_losing_finished_trials(tmp_path):
    """Issue 21.5: the partial last record is dropped (the damaged file kept), the finished trials stay, the
    search goes on; damage inside the journal is a named error."""
    journal = tmp_path / "study.journal"
    s = settings(tmp_path / "s", trials=3, storage=f"journal:{journal}")
    run_search(s, fake_trainer(), log=quiet)
    data = journal.read_bytes()
    journal.write_bytes(data[:-40])
    logs = []
    study = run_search(settings(tmp_path / "s", trials=4, storage=f"journal:{journal}"), fake_trainer(),
                       log=logs.append)
    assert any("cut short" in m for m in logs)
    assert (tmp_path / "study.journal.damaged").read_bytes() == data[:-40]
    states = [t.state.name for t in study.trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and states.count("COMPLETE") >= 4, states
    again = open_study(settings(tmp_path / "s", storage=f"journal:{journal}"), log=quiet)  # readable again
    assert len(again.trials) == len(study.trials)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [b"{not json\n"] + lines[2:]))
    with pytest.raises(ConfigError, match="record 3 is not valid JSON"):
        repair_journal(journal, quiet)


def test_each_study_has_its_own_default_folder_and_a_folder_one_study(tmp_path, monkeypatch, capsys):
    """Issue 21.6: `tp search` without --out writes search/METHOD-DATASET-TUNING; a folder holding another
    study refuses a second one before anything is written."""
    monkeypatch.chdir(tmp_path)
    base = ["search", "--dataset", "mnist", "--trials", "0", "--set", "epochs=2"]
    assert tp_main([*base, "--method", "bp"]) == 0
    assert tp_main([*base, "--method", "dfa"]) == 0
    assert (tmp_path / "search" / "bp-mnist-test" / "best.yaml").exists()
    assert (tmp_path / "search" / "dfa-mnist-test" / "best.yaml").exists()
    capsys.readouterr()
    before = (tmp_path / "search" / "bp-mnist-test" / "trials.csv").read_bytes()
    assert tp_main([*base, "--method", "dfa", "--out", "search/bp-mnist-test"]) == 2
    assert "holds the search bp-mnist-test, not dfa-mnist-test" in capsys.readouterr().err
    assert (tmp_path / "search" / "bp-mnist-test" / "trials.csv").read_bytes() == before


def test_an_empty_storage_beside_trial_folders_is_refused(tmp_path):
    out = tmp_path / "s"
    run_search(settings(out, trials=1), fake_trainer(), log=quiet)
    (out / "study.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="1 trial folder.*no study .*empty"):
        open_study(settings(out), log=quiet)


@pytest.mark.parametrize("args,fragment", [
    (["--worker", "../elsewhere"], "a worker's name is a plain folder name"),
    (["--worker", "/abs/w"], "a worker's name is a plain folder name"),
    (["--sampler-seed", "-1"], "sampler_seed"),
])
def test_bad_search_flags_are_named_errors_that_leave_nothing(tmp_path, capsys, args, fragment):
    out = tmp_path / "s"
    assert tp_main(["search", "--method", "bp", "--dataset", "mnist", "--trials", "0", "--out", str(out),
                    *args]) == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()


def test_user_yaml_files_fail_as_named_errors_or_read_as_meant(tmp_path, capsys):
    """Issue 21.7: a non-UTF-8 --config or --space, an alias bomb, an empty best.yaml are one-line errors
    (exit 2); `lr: 1e-4` is the number it looks like."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("method: bp\ndataset: mnist\nnote: caf\xe9\n".encode("latin-1"))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)) + "method: bp\n")
    empty = tmp_path / "best.yaml"
    empty.write_text("# No trial of the bp-mnist-test search completed (0 complete): there is no best configuration.\n")
    for path, fragment in [(latin, "not UTF-8 text"), (bomb, "an alias (*a): configuration files take none"),
                           (empty, "holds no configuration (it is empty or only comments")]:
        assert tp_main(["train", "--config", str(path), "--source", "synthetic", "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err and len(err.splitlines()) <= 4, err
        assert tp_main(["search", "--method", "bp", "--dataset", "mnist", "--trials", "0", "--space", str(path),
                        "--out", str(tmp_path / "s")]) == 2
        assert fragment in capsys.readouterr().err or path == empty
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("method: bp\ndataset: mnist\nlr: 1e-4\nepochs: 1\nnum_hidden: 1\nsize_hidden: 8\n")
    assert tp_main(["train", "--config", str(cfg), "--source", "synthetic", "--out", str(tmp_path / "r")]) == 0
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["lr"] == 1e-4


@pytest.mark.parametrize("setting,fragment", [
    ("num_hidden=100000000", "at most 1024 hidden layers"),
    ("size_hidden=100000000", "at most 16384 units"),
    ("epochs=10000000", "at most 100000 epochs"),
])
def test_network_sizes_and_epochs_have_bounds_that_say_why(capsys, setting, fragment):
    assert tp_main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--set", setting]) == 2
    assert fragment in capsys.readouterr().err


def test_a_searched_key_cannot_be_fixed_too(tmp_path):
    with pytest.raises(ConfigError, match="--set lr: searched key"):
        run_search(settings(tmp_path / "s", trials=1, overrides={**SMALL, "lr": 1e-3}), fake_trainer(), log=quiet)
    assert not (tmp_path / "s").exists()


def test_outputs_name_a_dead_workers_trial_as_gone_not_running(tmp_path, capsys):
    """Issue 21.7: `--trials 0` after a worker died reports its trial as left by a gone worker."""
    out = tmp_path / "s"
    study = open_study(settings(out), log=quiet)
    trial = study.ask()
    dead = 2 ** 22 + 12345  # above the default pid_max of 32768 · 128: no such process
    for key, value in (("host", __import__("socket").gethostname()), ("pid", dead), ("out", "trials/0000")):
        trial.set_user_attr(key, value)
    assert tp_main(["search", "--method", "bp", "--dataset", "mnist", "--set", "epochs=2", "--set", "num_hidden=2",
                    "--set", "size_hidden=16", "--set", "epochs_fb=1", "--set", "batch_size=64", "--trials", "0",
                    "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "trials [0] were left running by workers that are gone" in text and "still running" not in text
