"""Several seeds trained together (replica mode, issue 7): each seed's result equals its single-seed run.

Reference twin: ``train`` of each seed alone, on its own validation split.  The block trains the seeds as
a leading replica dimension of every tensor; the results agree up to floating-point rounding (batched
matrix products round differently), checked tightly in float64.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tp import cli
from tp.catalog import METHODS
from tp.config import resolve_config
from tp.errors import ConfigError
from tp.data import DataSplits, synthetic_classification, validation_split
from tp.training import CHECKPOINT, Hook, TrainOptions, run_generators, train, train_seeds

SMALL = {"num_hidden": 2, "size_hidden": 16, "size_hidden_fb": 24, "batch_size": 32, "double_precision": True}
SEEDS = [3, 1, 7]
VAL = 48


def quiet(msg):
    pass


def pool(n_train=240, n_test=64, dim=12) -> DataSplits:
    x, y, tx, ty = synthetic_classification(n_train, n_test, dim, 10, seed=0)
    return DataSplits(x, y, tx, ty)


def single_data(data: DataSplits, seed: int) -> DataSplits:
    tr, va = validation_split(data.train_x.shape[0], VAL, run_generators(seed)["split"])
    return DataSplits(data.train_x[tr], data.train_y[tr], data.test_x, data.test_y, data.train_x[va],
                      data.train_y[va])


def block_data(data: DataSplits, seeds) -> DataSplits:
    return data.replica_splits(VAL, [run_generators(s)["split"] for s in seeds])


def metrics(folder):
    return list(csv.DictReader(open(folder / "metrics.csv")))


def assert_same_metrics(a, b, rtol=1e-9):
    """Two result folders hold the same ``metrics.csv``: as many rows (at least one), the same columns, every
    value equal up to rounding (``seconds`` aside)."""
    rows_a, rows_b = metrics(a), metrics(b)
    assert len(rows_a) == len(rows_b) > 0, (len(rows_a), len(rows_b))
    for ra, rb in zip(rows_a, rows_b):
        assert set(ra) == set(rb)
        for key in ra:
            if key == "seconds":
                continue
            if ra[key] == "" or rb[key] == "":
                assert ra[key] == rb[key], key
            else:
                assert float(ra[key]) == pytest.approx(float(rb[key]), rel=rtol, abs=1e-12), key


def assert_same_tensors(ta: dict, tb: dict, what: str, rtol: float, atol: float) -> None:
    """The same keys on both sides, every tensor equal up to rounding."""
    assert set(ta) == set(tb), f"{what}: keys {sorted(ta)} != {sorted(tb)}"
    for k in ta:
        torch.testing.assert_close(tb[k], ta[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{what} {k}: {m}")


def assert_same_run(a, b, rtol=1e-9):
    """Two result folders hold the same run: metrics, summary and (kept) final checkpoint — parameters,
    feedback parameters, both Adam moments and the step count of both optimisers, generator states."""
    assert_same_metrics(a, b, rtol)
    sa, sb = (json.loads((f / "summary.json").read_text()) for f in (a, b))
    for key in ("status", "epochs_run", "best_epoch", "seed", "feedback_steps", "config"):
        assert sa[key] == sb[key], key
    ca, cb = (torch.load(f / CHECKPOINT, weights_only=True) for f in (a, b))
    for group in ("params", "feedback"):
        assert_same_tensors(ca[group], cb[group], group, rtol, 1e-12)
    for opt in ("fwd_opt", "fb_opt"):
        assert (ca[opt] is None) == (cb[opt] is None), opt
        if ca[opt] is None:  # a rule without trained feedback
            continue
        assert ca[opt]["step"] == cb[opt]["step"], opt
        assert_same_tensors(ca[opt]["exp_avg"], cb[opt]["exp_avg"], f"{opt} exp_avg", 1e-7, 1e-14)
        assert_same_tensors(ca[opt]["exp_avg_sq"], cb[opt]["exp_avg_sq"], f"{opt} exp_avg_sq", 1e-7, 1e-20)
    assert set(ca["generators"]) == set(cb["generators"])
    for k in ca["generators"]:  # each replica drew exactly what its single run drew
        assert torch.equal(ca["generators"][k], cb["generators"][k]), k


@pytest.mark.parametrize("method", list(METHODS))
def test_block_of_seeds_equals_separate_single_runs(method, tmp_path):
    cfg = resolve_config(method, "mnist", "test", {**SMALL, "epochs": 2, "epochs_fb": 1, "extra_fb_epochs": 1,
                                                   "normalize_lr": False, "lr": 1e-2, "lr_fb": 1e-3})
    data = pool()
    outs = [tmp_path / "block" / f"seed{s}" for s in SEEDS]
    summaries = train_seeds(cfg, block_data(data, SEEDS), SEEDS, outs, log=quiet, progress=False,
                            keep_checkpoint=True, fast="eager")
    assert [s["seed"] for s in summaries] == SEEDS
    assert all(s["block_seeds"] == SEEDS for s in summaries)
    for seed, out in zip(SEEDS, outs):
        ref = tmp_path / "single" / f"seed{seed}"
        s = train(cfg, single_data(data, seed), seed, ref, log=quiet, progress=False, keep_checkpoint=True)
        assert s["block_seeds"] is None
        assert_same_run(out, ref)


def test_no_validation_set_block_shares_the_training_set(tmp_path):
    cfg = resolve_config("ddtp-linear", "mnist", "train", {**SMALL, "epochs": 2, "epochs_fb": 1})
    assert cfg["no_val_set"]
    data = pool()
    seeds = [0, 5]
    outs = [tmp_path / "b" / f"s{s}" for s in seeds]
    train_seeds(cfg, data, seeds, outs, log=quiet, progress=False, keep_checkpoint=True)
    for seed, out in zip(seeds, outs):
        train(cfg, data, seed, tmp_path / "s" / f"s{seed}", log=quiet, progress=False, keep_checkpoint=True)
        assert_same_run(out, tmp_path / "s" / f"s{seed}")


def test_interrupted_block_resumes_as_single_runs_and_skips_finished_seeds(tmp_path):
    """A block's checkpoints are single-run checkpoints: an interrupted block can be finished seed by seed;
    a later block skips the seeds that are done and trains the rest."""
    cfg = resolve_config("dtpdrl", "mnist", "test", {**SMALL, "epochs": 3, "epochs_fb": 1})
    data = pool()
    seeds = [2, 4]
    outs = [tmp_path / "block" / f"seed{s}" for s in seeds]

    def interrupt(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_seeds(cfg, block_data(data, seeds), seeds, outs, log=quiet, progress=False, on_epoch_end=interrupt)
    assert all((o / CHECKPOINT).exists() for o in outs)
    # seed 2 finishes alone from the block's checkpoint
    train(cfg, single_data(data, 2), 2, outs[0], log=quiet, progress=False, keep_checkpoint=True)
    # a block of 2, 4, 6: seed 2 is done, 4 resumes after epoch 1, 6 starts fresh (two sub-blocks)
    more = [2, 4, 6]
    logs = []
    outs3 = [tmp_path / "block" / f"seed{s}" for s in more]
    summaries = train_seeds(cfg, block_data(data, more), more, outs3, log=logs.append, progress=False,
                            keep_checkpoint=True)
    assert any("already finished" in m for m in logs)
    assert [s["status"] for s in summaries] == ["finished"] * 3
    for seed in more:
        ref = tmp_path / "ref" / f"seed{seed}"
        train(cfg, single_data(data, seed), seed, ref, log=quiet, progress=False, keep_checkpoint=True)
        assert_same_run(tmp_path / "block" / f"seed{seed}", ref)


class PoisonReplica0(Hook):
    """Blocks start replica 0 (the first seed) with a NaN weight; a checkpoint resumed into it overwrites it."""

    def built(self, run):
        if run.replicas is not None and run.epochs_done == 0:
            run.params["W1"][0, 0, 0] = float("nan")


@pytest.fixture
def poisoned_replica0():
    """The hooks that poison replica 0 of every block (pass as ``hooks=``)."""
    return [PoisonReplica0()]


def test_a_diverging_replica_stops_alone(tmp_path, poisoned_replica0):
    """NaN in one replica ends that seed (status diverged, no number written); the others go on and
    still equal their single runs."""
    cfg = resolve_config("ddtp-linear", "mnist", "test", {**SMALL, "epochs": 2, "epochs_fb": 0})
    data = pool()
    seeds = [1, 2]
    outs = [tmp_path / f"seed{s}" for s in seeds]
    logs = []
    summaries = train_seeds(cfg, block_data(data, seeds), seeds, outs, log=logs.append, progress=False,
                            keep_checkpoint=True, hooks=poisoned_replica0)
    assert summaries[0]["status"] == "diverged" and summaries[0]["train_loss_last"] is None
    assert summaries[0]["epochs_run"] == 0 and "seed 1: run diverged" in "\n".join(logs)
    assert summaries[1]["status"] == "finished" and summaries[1]["epochs_run"] == 2
    for summary, out in zip(summaries, outs):  # what it returns is what it wrote, fixed when the seed stopped
        assert summary == json.loads((out / "summary.json").read_text())
    assert summaries[0]["feedback_steps"] < summaries[1]["feedback_steps"]
    train(cfg, single_data(data, 2), 2, tmp_path / "ref2", log=quiet, progress=False, keep_checkpoint=True)
    assert_same_run(outs[1], tmp_path / "ref2")


def test_a_restarted_block_restores_the_summary_of_a_seed_that_stopped_early(tmp_path, poisoned_replica0):
    """Snakemake deletes a job's outputs before running it again: a block interrupted after one seed
    diverged, restarted with that seed's summary gone, writes it again from the seed's kept checkpoint."""
    cfg = resolve_config("ddtp-linear", "mnist", "test", {**SMALL, "epochs": 3, "epochs_fb": 0})
    data = pool()
    seeds = [1, 2]
    outs = [tmp_path / f"seed{s}" for s in seeds]

    def interrupt(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_seeds(cfg, block_data(data, seeds), seeds, outs, log=quiet, progress=False, on_epoch_end=interrupt,
                    hooks=poisoned_replica0)
    first = json.loads((outs[0] / "summary.json").read_text())
    assert first["status"] == "diverged" and (outs[0] / CHECKPOINT).exists()  # kept while the block runs
    (outs[0] / "summary.json").unlink()
    logs = []
    summaries = train_seeds(cfg, block_data(data, seeds), seeds, outs, log=logs.append, progress=False,
                            hooks=poisoned_replica0)
    assert json.loads((outs[0] / "summary.json").read_text()) == first == summaries[0]
    assert summaries[1]["status"] == "finished" and summaries[1]["epochs_run"] == 3
    assert not any((o / CHECKPOINT).exists() for o in outs)
    assert any("already diverged" in m for m in logs)

    # the same after an interruption that left the stopped seed's summary in place: skipped, checkpoint gone
    with pytest.raises(KeyboardInterrupt):
        train_seeds(cfg, block_data(data, seeds), seeds, [tmp_path / "b" / f"seed{s}" for s in seeds], log=quiet,
                    progress=False, on_epoch_end=interrupt, hooks=poisoned_replica0)
    later = train_seeds(cfg, block_data(data, seeds), seeds, [tmp_path / "b" / f"seed{s}" for s in seeds],
                        log=quiet, progress=False, hooks=poisoned_replica0)
    assert later[0] == json.loads((tmp_path / "b" / "seed1" / "summary.json").read_text())
    assert not any((tmp_path / "b" / f"seed{s}" / CHECKPOINT).exists() for s in seeds)


def test_block_refuses_bad_input(tmp_path):
    cfg = resolve_config("bp", "mnist", "test", {**SMALL, "epochs": 1})
    data = pool()
    with pytest.raises(ConfigError, match="replica splits"):
        train_seeds(cfg, single_data(data, 1), [1, 2], log=quiet)
    with pytest.raises(ConfigError, match="distinct"):
        train_seeds(cfg, block_data(data, [1, 1]), [1, 1], log=quiet)
    with pytest.raises(ConfigError, match="unknown fast mode 'turbo'"):
        train_seeds(cfg, block_data(data, [1, 2]), [1, 2], log=quiet, fast="turbo")
    with pytest.raises(ConfigError, match="needs a CUDA device, got cpu"):  # on a GPU machine too
        train_seeds(cfg, block_data(data, [1, 2]), [1, 2], device="cpu", log=quiet, fast="graph")
    if torch.cuda.is_available():  # where there is a CUDA device, graph mode on it is accepted
        assert TrainOptions(device="cuda", fast="graph").graphs is True
    with pytest.raises(ConfigError, match="one seed per process"):
        train_seeds(cfg | {"log_alignment": True}, block_data(data, [1, 2]), [1, 2], log=quiet)


def test_cli_trains_a_block_into_one_folder_per_seed(tmp_path, capsys):
    base = ["train", "--method", "ddtp-linear", "--dataset", "mnist", "--source", "synthetic", "--epochs", "1",
            "--set", "num_hidden=1", "--set", "size_hidden=8", "--set", "epochs_fb=0", "--data-root",
            str(tmp_path / "nodata")]
    assert cli.main(base + ["--seeds", "1-2,5", "--out", str(tmp_path / "b" / "seed{seed}"), "--keep-checkpoint"]) == 0
    printed = capsys.readouterr().out
    for s in (1, 2, 5):
        summary = json.loads((tmp_path / "b" / f"seed{s}" / "summary.json").read_text())
        assert summary["seed"] == s and summary["block_seeds"] == [1, 2, 5] and f"seed{s}" in printed
    assert cli.main(base + ["--seed", "2", "--out", str(tmp_path / "single"), "--keep-checkpoint"]) == 0
    assert_same_run(tmp_path / "b" / "seed2", tmp_path / "single")  # every row and column, the checkpoint
    assert cli.main(base + ["--seeds", "1,2", "--out", str(tmp_path / "x")]) == 2
    assert "must contain '{seed}'" in capsys.readouterr().err
    assert cli.main(base + ["--seeds", "1-x"]) == 2
    assert "bad seed list '1-x'" in capsys.readouterr().err
    assert cli.main(base + ["--seeds", "1-2", "--seed", "3"]) == 2
    assert "--seed 3 and --seeds 1-2 together" in capsys.readouterr().err
