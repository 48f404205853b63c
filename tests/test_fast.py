"""The CUDA-graph fast path (tp.fast) against the eager reference.

CUDA graphs need a GPU; on the CPU :class:`tp.fast.CapturedStep` emulates one with the same protocol
(snapshot, warm-up, restore, replay), so these tests check everything but the capture itself: the loop's
static buffers and running sums, the host counters, the last smaller minibatch run eagerly between
replays, the capturable Adam, and checkpoints.  The GPU comparison (graphed vs eager training) is in
``benchmarks/step_speed.py``.
"""

from __future__ import annotations

import csv

import pytest
import torch

import tp.fast
from tp.config import resolve_config
from tp.data import DataSplits, synthetic_classification
from tp.fast import CapturedStep
from tp.train import CHECKPOINT, train

SMALL = {"num_hidden": 2, "size_hidden": 16, "size_hidden_fb": 24, "batch_size": 32, "double_precision": True,
         "epochs": 3, "epochs_fb": 1, "extra_fb_epochs": 1, "normalize_lr": False, "lr": 1e-2, "lr_fb": 1e-3}


def quiet(msg):
    pass


def data() -> DataSplits:
    x, y, tx, ty = synthetic_classification(250, 64, 12, 10, seed=0)  # 200 training samples: a last batch of 8
    return DataSplits(x[:200], y[:200], tx, ty, x[200:], y[200:])


@pytest.fixture
def emulated_graphs(monkeypatch):
    monkeypatch.setattr(tp.fast, "graphs_available", lambda device: True)


def rows(folder):
    return list(csv.DictReader(open(folder / "metrics.csv")))


@pytest.mark.parametrize("method", ["bp", "dfa", "ddtp-linear", "ddtp-rhl-rec", "dtpdrl", "dtp", "ddtp-control"])
def test_graph_path_trains_like_the_eager_path(method, tmp_path, emulated_graphs):
    cfg = resolve_config(method, "mnist", "test", SMALL)
    eager = train(cfg, data(), 4, tmp_path / "eager", log=quiet, progress=False, fast="eager", keep_checkpoint=True)
    graph = train(cfg, data(), 4, tmp_path / "graph", log=quiet, progress=False, fast="graph", keep_checkpoint=True)
    assert eager["step_path"] == "eager" and graph["step_path"] == "graph-emulated"
    assert graph["feedback_steps"] == eager["feedback_steps"]
    for a, b in zip(rows(tmp_path / "eager"), rows(tmp_path / "graph")):
        for key in ("train_loss", "train_error", "val_loss", "test_loss", "reconstruction_loss"):
            if a[key]:
                assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-9), key
    ca, cb = (torch.load(tmp_path / f / CHECKPOINT, weights_only=True) for f in ("eager", "graph"))
    assert ca["fwd_opt"]["step"] == cb["fwd_opt"]["step"] and ca["steps"] == cb["steps"]
    for k in ca["params"]:
        torch.testing.assert_close(cb["params"][k], ca["params"][k], rtol=1e-9, atol=1e-12)
    for k in ca["generators"]:
        assert torch.equal(ca["generators"][k], cb["generators"][k]), k


def test_graph_path_resumes_like_an_uninterrupted_run(tmp_path, emulated_graphs):
    cfg = resolve_config("ddtp-linear", "mnist", "test", SMALL)

    def interrupt(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data(), 5, tmp_path / "a", log=quiet, progress=False, fast="graph", on_epoch_end=interrupt)
    train(cfg, data(), 5, tmp_path / "a", log=quiet, progress=False, fast="graph", keep_checkpoint=True)
    train(cfg, data(), 5, tmp_path / "b", log=quiet, progress=False, fast="graph", keep_checkpoint=True)
    ca, cb = (torch.load(tmp_path / f / CHECKPOINT, weights_only=True) for f in ("a", "b"))
    for k in ca["params"]:
        assert torch.equal(ca["params"][k], cb["params"][k]), k
    assert [r["test_loss"] for r in rows(tmp_path / "a")] == [r["test_loss"] for r in rows(tmp_path / "b")]


def test_capture_changes_nothing_and_replays_advance_counters():
    """Capturing (warm-up executions included) leaves tensors, generators and host counters as they were;
    each replay then does exactly one step."""
    class Host:
        steps = 0

    host = Host()
    w = torch.zeros(3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)

    def step(idx):
        w.add_(torch.randn(3, generator=g, dtype=torch.float64) + idx.to(w.dtype).sum())
        host.steps += 1

    g_state = g.get_state()
    captured = CapturedStep(step, torch.tensor([1, 2]), [w], [g], [(host, "steps")])
    assert torch.equal(w, torch.zeros(3, dtype=torch.float64)) and host.steps == 0
    assert torch.equal(g.get_state(), g_state)
    captured(torch.tensor([0, 1]))
    ref = torch.randn(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1
    assert torch.equal(w, ref) and host.steps == 1


def test_graphed_block_of_seeds_equals_eager_single_runs(tmp_path, emulated_graphs):
    from tp.train import run_generators, train_seeds

    cfg = resolve_config("ddtp-rhl", "mnist", "test", SMALL)
    pool = data()
    full = DataSplits(torch.cat([pool.train_x, pool.val_x]), torch.cat([pool.train_y, pool.val_y]),
                      pool.test_x, pool.test_y)
    seeds = [2, 3]
    block = full.replica_splits(50, [run_generators(s)["split"] for s in seeds])
    summaries = train_seeds(cfg, block, seeds, [tmp_path / f"b{s}" for s in seeds], log=quiet, progress=False,
                            fast="graph")
    assert all(s["step_path"] == "graph-emulated" for s in summaries)
    for s in seeds:
        single = DataSplits(full.train_x[block.train_index[seeds.index(s)]],
                            full.train_y[block.train_index[seeds.index(s)]], full.test_x, full.test_y,
                            full.train_x[block.val_index[seeds.index(s)]], full.train_y[block.val_index[seeds.index(s)]])
        train(cfg, single, s, tmp_path / f"s{s}", log=quiet, progress=False, fast="eager")
        for a, b in zip(rows(tmp_path / f"b{s}"), rows(tmp_path / f"s{s}")):
            assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-9)
            assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-9)


def test_alignment_logging_steps_run_eagerly_between_replays(tmp_path, emulated_graphs):
    cfg = resolve_config("ddtp-linear", "mnist", "test", {**SMALL, "log_alignment": True, "log_interval": 2,
                                                          "gn_damping_per_hidden_layer": [0.1, 0.1]})
    for fast in ("eager", "graph"):
        train(cfg, data(), 6, tmp_path / fast, log=quiet, progress=False, fast=fast)
    a, b = (list(csv.DictReader(open(tmp_path / f / "alignment.csv"))) for f in ("eager", "graph"))
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
        assert (ra["epoch"], ra["batch"], ra["layer"], ra["reference"]) == \
            (rb["epoch"], rb["batch"], rb["layer"], rb["reference"])
        # arccos near 1 amplifies rounding: 1e-16 in the cosine is ~1e-6 degrees
        assert float(rb["angle"]) == pytest.approx(float(ra["angle"]), rel=1e-7, abs=1e-5)


@pytest.mark.parametrize("method", ["bp", "ddtp-linear"])
def test_cnn_graph_path_trains_like_the_eager_path(method, tmp_path, emulated_graphs):
    import math

    x, y, tx, ty = synthetic_classification(100, 32, 3 * 8 * 8, 10, seed=0)  # 70 training images: last batch 6
    images = DataSplits(x[:70].reshape(-1, 3, 8, 8), y[:70], tx.reshape(-1, 3, 8, 8), ty,
                        x[70:].reshape(-1, 3, 8, 8), y[70:])
    cfg = resolve_config(method, "cifar10-cnn", "test", {"conv_channels": [2, 3], "size_hidden": 8,
                                                         "batch_size": 32, "epochs": 2, "epochs_fb": 1})
    for fast in ("eager", "graph"):
        s = train(cfg, images, 1, tmp_path / fast, log=quiet, progress=False, fast=fast)
        assert s["status"] == "finished"
    for a, b in zip(rows(tmp_path / "eager"), rows(tmp_path / "graph")):
        assert math.isclose(float(a["train_loss"]), float(b["train_loss"]), rel_tol=1e-9)
        assert math.isclose(float(a["test_loss"]), float(b["test_loss"]), rel_tol=1e-9)


def test_a_failed_capture_leaves_the_run_as_it_was():
    """A step that fails during the warm-up (out of memory, say) must not leave half-done steps behind:
    the loop falls back to eager steps from exactly the state before."""
    class Host:
        steps = 0

    host = Host()
    w = torch.zeros(2, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    g_state = g.get_state()

    def step(idx):
        w.add_(torch.randn(2, generator=g, dtype=torch.float64))
        host.steps += 1
        if host.steps == 2:
            raise RuntimeError("out of memory (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        CapturedStep(step, torch.tensor([0]), [w], [g], [(host, "steps")])
    assert torch.equal(w, torch.zeros(2, dtype=torch.float64)) and host.steps == 0
    assert torch.equal(g.get_state(), g_state)
