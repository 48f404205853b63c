"""Training runs (docs/algorithms.md#the-training-schedule, docs/algorithms.md#frozen-mnist): learning, schedules,
Frozen-MNIST, resume, divergence, pruning, CLI."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from tp import cli
from tp.catalog import METHODS
from tp.config import resolve_config
from tp.errors import ConfigError
from tp.data import DataSplits, student_teacher, synthetic_classification
from tp.training import CHECKPOINT, TrainOptions, run_generators, train, train_runs

SMALL = {"num_hidden": 2, "size_hidden": 16, "size_hidden_fb": 24, "batch_size": 32}


def small_data(seed=0, n_train=256, n_test=64, n_val=64, dim=12) -> DataSplits:
    x, y, tx, ty = synthetic_classification(n_train + n_val, n_test, dim, 10, seed)
    return DataSplits(x[:n_train], y[:n_train], tx, ty, x[n_train:], y[n_train:])


def quiet(msg):
    pass


def config(method, dataset="mnist", tuning="test", **overrides):
    return resolve_config(method, dataset, tuning, {**SMALL, **overrides})


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_lowers_the_training_loss(method, tmp_path):
    cfg = config(method, epochs=4, epochs_fb=1, normalize_lr=False, lr=1e-2, lr_fb=1e-3, extra_fb_epochs=0)
    s = train(cfg, small_data(), seed=1, out_dir=tmp_path, progress=False, log=quiet)
    assert s["status"] == "finished" and s["epochs_run"] == 4
    losses = [float(r["train_loss"]) for r in csv.DictReader(open(tmp_path / "metrics.csv"))]
    assert losses[-1] < losses[0] - 0.1, losses  # the online training loss of epoch 4 vs epoch 1


def test_regression_on_student_teacher_data():
    data = student_teacher(6, 2, num_train=256, num_test=64, num_val=64, seed=3, hidden=(32, 32))
    cfg = config("ddtp-linear", epochs=6, epochs_fb=1, normalize_lr=False, lr=1e-2)
    cfg["num_hidden"], cfg["size_hidden"] = 2, 6
    s = train(cfg, data, seed=0, loss="mse", progress=False, log=quiet)
    assert s["status"] == "finished" and s["test_error_at_best_val"] is None
    cfg0 = dict(cfg, epochs=1)
    s0 = train(cfg0, data, seed=0, loss="mse", progress=False, log=quiet)
    assert s["train_loss_last"] < 0.8 * s0["train_loss_last"]


@pytest.mark.parametrize("method,epochs_fb,extra,minibatches", [
    ("ddtp-rhl-extrafb", 2, 3, 0), ("dtp-pretrained", 1, 1, 2), ("dtp", 0, 0, 0), ("bp", 3, 3, 0)])
def test_schedule_counts_feedback_steps(method, epochs_fb, extra, minibatches):
    n_train, B, epochs = 200, 32, 2
    nb = math.ceil(n_train / B)  # drop_last=False: 7 minibatches
    cfg = config(method, epochs=epochs, epochs_fb=epochs_fb, extra_fb_epochs=extra, extra_fb_minibatches=minibatches)
    s = train(cfg, small_data(n_train=n_train), seed=0, progress=False, log=quiet)
    trains_fb = method != "bp"
    expected = (epochs_fb * nb + epochs * (nb * (1 + minibatches) + extra * nb)) if trains_fb else 0
    assert s["feedback_steps"] == expected


def test_frozen_mnist_trains_only_the_first_layer(tmp_path):
    cfg = config("ddtp-linear", dataset="frozen-mnist", epochs=2, epochs_fb=1)
    assert cfg["only_train_first_layer"] is True
    train(cfg, small_data(), seed=4, out_dir=tmp_path, progress=False, log=quiet, keep_checkpoint=True)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    from tp.rules import make_rule
    from tp.config import rule_hyperparameters
    rule = make_rule(cfg["rule"], **rule_hyperparameters(cfg))
    net = rule.build_network([12, 16, 16, 10])
    init = net.init_params(run_generators(4)["init"])
    init_fb = rule.init_feedback(net, run_generators(4)["init"])  # drawn after params: redo in order
    g = run_generators(4)["init"]
    init, init_fb = net.init_params(g), rule.init_feedback(net, g)
    for k, v in init.items():
        if k in ("W1", "b1"):
            assert not torch.equal(state["params"][k], v), k
        else:
            assert torch.equal(state["params"][k], v), f"{k} changed in Frozen-MNIST"
    assert all(not torch.equal(state["feedback"][k], init_fb[k]) for k in ("Q1", "Q2"))  # feedback trains


@pytest.mark.parametrize("method", ["ddtp-rhl", "dtpdrl", "bp"])
def test_kill_and_resume_equals_uninterrupted(tmp_path, method):
    cfg = config(method, epochs=4, epochs_fb=1, extra_fb_epochs=1)
    data = small_data()
    full = train(cfg, data, seed=5, out_dir=tmp_path / "full", progress=False, log=quiet, keep_checkpoint=True)

    class Killed(Exception):
        pass

    def kill_after_2(epoch):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, data, seed=5, out_dir=tmp_path / "cut", progress=False, log=quiet, on_epoch_end=kill_after_2)
    assert (tmp_path / "cut" / CHECKPOINT).exists()
    resumed = train(cfg, data, seed=5, out_dir=tmp_path / "cut", progress=False, log=quiet, keep_checkpoint=True)

    def rows(folder):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(folder / "metrics.csv"))]

    assert rows(tmp_path / "full") == rows(tmp_path / "cut")
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k])
    for k in a["feedback"]:
        assert torch.equal(a["feedback"][k], b["feedback"][k])
    assert resumed["feedback_steps"] == full["feedback_steps"]
    assert resumed["test_error_at_best_val"] == full["test_error_at_best_val"]
    # a finished folder is not trained again
    again = train(cfg, data, seed=5, out_dir=tmp_path / "full", progress=False, log=quiet)
    assert again["wall_time_s"] == full["wall_time_s"]


def test_resume_refuses_another_configuration(tmp_path):
    cfg = config("dtp", epochs=2)
    train(cfg, small_data(), seed=0, out_dir=tmp_path, progress=False, log=quiet)
    with pytest.raises(ConfigError, match="another configuration"):
        train(dict(cfg, lr=1.0), small_data(), seed=0, out_dir=tmp_path, progress=False, log=quiet)


def test_divergent_run_is_reported_not_written_as_a_number(tmp_path):
    cfg = config("ddtp-linear", epochs=3, normalize_lr=False, lr=1e300, lr_fb=1e300)
    s = train(cfg, small_data(), seed=0, out_dir=tmp_path, progress=False, log=quiet)
    assert s["status"] == "diverged" and "non-finite" in s["message"]
    assert s["train_loss_last"] is None and s["test_error_at_best_val"] is None
    for name in ("metrics.csv", "summary.json"):
        text = (tmp_path / name).read_text().lower()
        assert "nan" not in text and "inf" not in text.replace("info", "")
    json.loads((tmp_path / "summary.json").read_text())  # strict JSON


def test_pruned_run_is_flagged():
    cfg = config("bp", epochs=7, normalize_lr=False, lr=1e-12)
    s = train(cfg, small_data(), seed=0, progress=False, log=quiet)
    assert s["status"] == "pruned" and s["epochs_run"] == 6


def test_no_validation_set_mode_reports_test_error_last():
    cfg = config("bp", tuning="train", epochs=2)
    assert cfg["no_val_set"] is True
    d = small_data()
    s = train(cfg, DataSplits(d.train_x, d.train_y, d.test_x, d.test_y), seed=0, progress=False, log=quiet)
    assert s["test_error_at_best_val"] is None and s["test_error_last"] is not None


def test_cli_train_on_synthetic_data(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--method", "dfa", "--dataset", "fashion-mnist", "--source", "synthetic",
                     "--epochs", "1", "--seed", "3", "--out", str(out),
                     "--set", "num_hidden=1", "--set", "size_hidden=8"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["seed"] == 3
    assert summary["config"]["size_hidden"] == 8 and summary["config"]["method"] == "dfa"
    for key in ("wall_time_s", "device", "torch_version", "code_version"):
        assert summary[key]
    assert (out / "config.yaml").exists() and not (out / CHECKPOINT).exists()
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error",
                      "reconstruction_loss", "seconds"]


def test_cli_divergence_exit_code(tmp_path):
    code = cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--epochs", "2",
                     "--out", str(tmp_path), "--set", "lr=1e308", "--set", "normalize_lr=False",
                     "--set", "num_hidden=1", "--set", "size_hidden=8", "--set", "double_precision=true"])
    assert code == cli.EXIT_DIVERGED


@pytest.mark.parametrize("argv,needle", [
    (["--set", "learning_rate=1"], "valid keys"),
    (["--set", "epochs=-1"], "epochs"),
])
def test_cli_bad_input_names_the_value(tmp_path, capsys, argv, needle):
    code = cli.main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic",
                     "--out", str(tmp_path)] + argv)
    assert code == cli.EXIT_BAD_INPUT
    assert needle in capsys.readouterr().err


def test_cli_unknown_method_lists_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--method", "ddtp", "--dataset", "mnist"])
    assert "ddtp-linear" in capsys.readouterr().err


def test_evaluation_averages_per_batch_means_like_the_official_loader():
    """docs/algorithms.md#what-a-run-reports: the last, smaller batch weighs like a full one."""
    from tp.nets.mlp import MLP
    from tp.training import evaluate

    net = MLP.build([5, 4, 3])
    g = torch.Generator().manual_seed(0)
    params = net.init_params(g)
    x, y = torch.randn(300, 5, dtype=torch.float64, generator=g), torch.randint(0, 3, (300,), generator=g)
    loss, acc = evaluate(net, params, x, y, batch_size=128)
    outs = [net.forward(params, x[k:k + 128]).output for k in range(0, 300, 128)]
    ref_loss = sum(float(net.loss_value(o, y[k:k + 128])) for o, k in zip(outs, range(0, 300, 128))) / 3
    ref_acc = sum(float(net.accuracy(o, y[k:k + 128])) for o, k in zip(outs, range(0, 300, 128))) / 3
    assert float(loss) == pytest.approx(ref_loss, rel=1e-14) and float(acc) == pytest.approx(ref_acc, rel=1e-14)
    assert float(loss) != pytest.approx(float(net.loss_value(net.forward(params, x).output, y)), rel=1e-6)


def test_a_kept_checkpoint_of_an_ended_run_restores_its_summary(tmp_path):
    """A finished run whose summary.json was removed (its checkpoint kept) gets the same summary back
    without training again."""
    cfg = config("ddtp-linear", epochs=2, epochs_fb=1)
    first = train(cfg, small_data(), seed=3, out_dir=tmp_path, progress=False, log=quiet, keep_checkpoint=True)
    (tmp_path / "summary.json").unlink()
    again = train(cfg, small_data(), seed=3, out_dir=tmp_path, progress=False, log=quiet, keep_checkpoint=True)
    assert again == first == json.loads((tmp_path / "summary.json").read_text())


def test_the_progress_bar_counts_minibatches_per_epoch_and_replaces_the_epoch_lines(capsys):
    """One bar per epoch over its 8 minibatches ("pre-training 1/1", "epoch 2/2"), its postfix the running
    loss; with the bar on, no per-epoch log lines; with it off, one per epoch and no bar."""
    import tp.training.progress

    cfg = config("ddtp-linear", epochs=2, epochs_fb=1, extra_fb_epochs=0)
    logs = []
    train(cfg, small_data(), seed=0, progress=True, log=logs.append)
    err = capsys.readouterr().err
    assert "ddtp-linear/mnist seed 0: pre-training 1/1" in err and "rec_loss=" in err
    for epoch in (1, 2):
        assert f"ddtp-linear/mnist seed 0: epoch {epoch}/2" in err and "8/8" in err
    assert "loss=" in err and not any("train loss" in m for m in logs)
    reads = []

    class Counted(dict):  # the epoch's sums, counting the reads of the running loss
        def __getitem__(self, key):
            reads.append(key)
            return torch.tensor(2.0)

    bar = tp.training.progress.Progress(True, "x")
    tick = bar.epoch("epoch 1/1", 120, "loss", "loss")
    for k in range(120):
        tick(k, Counted())
    bar.end_epoch(loss=[1.0])
    assert reads == ["loss"] * (120 // tp.training.progress.READ_EVERY + 1)  # every 50 minibatches, the last
    capsys.readouterr()
    logs.clear()
    train(cfg, small_data(), seed=0, progress=False, log=logs.append)
    assert "epoch" not in capsys.readouterr().err
    assert [m.split(",")[0] for m in logs if "train loss" in m] == ["epoch 1/2", "epoch 2/2"]


def test_hooks_are_called_at_their_points_and_change_nothing(tmp_path):
    """A caller's hook: built once, step on the minibatches it wants (before the forward step is applied:
    it sees the parameters the update was computed at), epoch_end per epoch; the run equals one without."""
    from tp.training import Hook

    class Spy(Hook):
        def __init__(self):
            self.calls = []

        def built(self, run):
            self.calls.append(("built", run.epochs_done))

        def wants_step(self, run, batch):
            return batch % 3 == 0

        def step(self, run, batch, fwd, y, forward_grads):
            assert run.fwd_opt.step_count == run.steps and "W1" in forward_grads  # not applied yet
            self.calls.append(("step", run.epochs_done + 1, batch, run.steps))

        def epoch_end(self, block, r, epoch):
            self.calls.append(("epoch_end", epoch, len(block.run.records[r].metrics)))

    cfg = config("ddtp-linear", epochs=2, epochs_fb=1, extra_fb_epochs=0)
    spy = Spy()
    with_hook = train(cfg, small_data(), seed=2, out_dir=tmp_path / "a", progress=False, log=quiet,
                      hooks=[spy], keep_checkpoint=True)
    plain = train(cfg, small_data(), seed=2, out_dir=tmp_path / "b", progress=False, log=quiet,
                  keep_checkpoint=True)
    assert spy.calls[0] == ("built", 0)
    steps = [c for c in spy.calls if c[0] == "step"]
    assert steps == [("step", e, b, 8 * (e - 1) + b) for e in (1, 2) for b in (0, 3, 6)]
    assert [c for c in spy.calls if c[0] == "epoch_end"] == [("epoch_end", 1, 1), ("epoch_end", 2, 2)]
    assert with_hook["test_error_last"] == plain["test_error_last"]
    a, b = (torch.load(tmp_path / f / CHECKPOINT, weights_only=True) for f in ("a", "b"))
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k])


def test_training_entries_refuse_bad_input(tmp_path):
    """Every entry (train, train_seeds, train_trials) goes through train_runs and its one set of checks: each
    mistake is a ConfigError naming the bad value (and the valid choices), raised before anything trains."""
    cfg, data = config("bp", epochs=1), small_data()
    for call, message in [
        (lambda: train(cfg, data, 0, tmp_path / "a", "cpu"), "options must be a TrainOptions, got 'cpu'"),
        (lambda: train(cfg, data, 0, devcie="cpu"), "unknown training option 'devcie'; valid choices: device,"),
        (lambda: train(cfg, data, 0, loss="l1"), "unknown loss 'l1'; valid choices: cross_entropy, mse"),
        (lambda: train(cfg, data, 0, device="tpu:x"), "bad device 'tpu:x'"),
        (lambda: train(cfg, data, -1), r"non-negative integers .* got \[-1\]"),
        (lambda: train(cfg, data, 1.5), r"got \[1.5\]"),
        (lambda: train(cfg, data, True), r"got \[True\]"),
        (lambda: train_runs("batch", [cfg], data, [0]), "unknown kind of training 'batch'; valid choices: run,"),
        (lambda: train_runs("run", [cfg, cfg], data, [0, 1]), "a single run takes one seed"),
        (lambda: train_runs("trials", [cfg, cfg], data, [0, 1], [tmp_path / "x", tmp_path / "y" / ".." / "x"]),
         "its own output folder"),
        (lambda: train_runs("seeds", [cfg], data, [0, 1]), "1 configurations need 1 seeds, got 2"),
        (lambda: train(cfg, data, 0, hooks=[print]), "hooks must be tp.training.Hook objects"),
    ]:
        with pytest.raises(ConfigError, match=message):
            call()
    assert not any(tmp_path.iterdir())  # nothing was written
    assert TrainOptions.of(TrainOptions(prune=False), {"fast": "eager"}) == TrainOptions(prune=False, fast="eager")


def test_a_cpu_run_records_the_cpu_model(tmp_path):
    """The provenance of a CPU run names the processor (results from several machines get mixed in one table),
    its architecture and the threads torch used."""
    from tp.training.records import cpu_model, device_name

    name = device_name(torch.device("cpu"))
    assert name.endswith(f"CPU ({torch.get_num_threads()} threads)")
    model = cpu_model()
    if model is not None:  # Linux: /proc/cpuinfo's model name
        assert name.startswith(model + ", ")
    s = train(config("bp", epochs=1), small_data(), seed=0, out_dir=tmp_path, progress=False, log=quiet)
    assert s["device_name"] == name


def test_metrics_csv_grows_as_each_epoch_ends(tmp_path):
    """Issue 21.8: metrics.csv is written (atomically) after every epoch, not only when the run ends."""
    seen = []

    def look(epoch):
        rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
        seen.append([int(r["epoch"]) for r in rows])
        assert (tmp_path / "summary.json").exists() == (epoch == 3)  # the summary only when the run ends

    train(config("ddtp-linear", epochs=3, epochs_fb=1), small_data(), seed=0, out_dir=tmp_path, progress=False,
          log=quiet, on_epoch_end=look)
    assert seen == [[1], [1, 2], [1, 2, 3]]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".tp.lock"]  # no temporaries left
