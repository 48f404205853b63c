"""The CUDA-graph fast path (tp.core.fast) against the eager reference.

CUDA graphs need a GPU; on the CPU :class:`tp.core.fast.CapturedStep` emulates one with the same protocol
(snapshot, warm-up, restore, replay), so these tests check everything but the capture itself: the loop's
static buffers and running sums, the host counters, the last smaller minibatch run eagerly between
replays, the capturable Adam, and checkpoints.  The GPU comparison (graphed vs eager training) is in
``benchmarks/step_speed.py``.
"""

from __future__ import annotations

import collections
import csv

import pytest
import torch

import tp.core.fast
import tp.training.steps
from tp.config import resolve_config
from tp.data import DataSplits, synthetic_classification
from tp.core.fast import CapturedStep
from tp.training import CHECKPOINT, train
from test_replicas import assert_same_run

SMALL = {"num_hidden": 2, "size_hidden": 16, "size_hidden_fb": 24, "batch_size": 32, "double_precision": True,
         "epochs": 3, "epochs_fb": 1, "extra_fb_epochs": 1, "normalize_lr": False, "lr": 1e-2, "lr_fb": 1e-3}


def quiet(msg):
    pass


def data() -> DataSplits:
    x, y, tx, ty = synthetic_classification(250, 64, 12, 10, seed=0)  # 200 training samples: a last batch of 8
    return DataSplits(x[:200], y[:200], tx, ty, x[200:], y[200:])


@pytest.fixture
def emulated_graphs(monkeypatch):
    """CUDA graphs "available" on the CPU (emulated by :class:`CapturedStep`); returns the replays of captured
    steps per kind (``train``, ``feedback``), counted around ``captured_step``, so that a test can check the
    graph path ran: a capture failure falls back to eager steps quietly (a log line), and a comparison of
    graph with eager would then compare eager with eager."""
    monkeypatch.setattr(tp.core.fast, "graphs_available", lambda device: True)
    replays = collections.Counter()
    real = tp.training.steps.captured_step

    def counted(run, kind, idx, sums, log):
        graph = real(run, kind, idx, sums, log)
        if graph is None:
            return None

        def replay(i):
            replays[kind] += 1
            graph(i)
        return replay

    monkeypatch.setattr(tp.training.steps, "captured_step", counted)
    return replays


class Log(list):
    """The log lines of runs; ``graphed()`` checks that no capture failed (the fallback to eager says so)."""

    def __call__(self, msg):
        self.append(msg)

    def graphed(self):
        failed = [m for m in self if "capture" in m and "failed" in m]
        assert not failed, failed
        return True


def rows(folder):
    return list(csv.DictReader(open(folder / "metrics.csv")))


def paired_rows(a, b):
    """The rows of two ``metrics.csv`` side by side: as many on both sides, and at least one."""
    ra, rb = rows(a), rows(b)
    assert len(ra) == len(rb) > 0, (len(ra), len(rb))
    return list(zip(ra, rb))


FULL_BATCHES = 6  # 200 training samples in minibatches of 32: 6 full ones (replayed) and one of 8 (eager)


@pytest.mark.parametrize("method", ["bp", "dfa", "ddtp-linear", "ddtp-rhl-rec", "dtpdrl", "dtp", "ddtp-control"])
def test_graph_path_trains_like_the_eager_path(method, tmp_path, emulated_graphs):
    cfg = resolve_config(method, "mnist", "test", SMALL)
    log = Log()
    eager = train(cfg, data(), 4, tmp_path / "eager", log=log, progress=False, fast="eager", keep_checkpoint=True)
    assert not emulated_graphs
    graph = train(cfg, data(), 4, tmp_path / "graph", log=log, progress=False, fast="graph", keep_checkpoint=True)
    assert eager["step_path"] == "eager" and graph["step_path"] == "graph-emulated" and log.graphed()
    assert emulated_graphs["train"] == FULL_BATCHES * graph["epochs_run"] > 0
    assert graph["feedback_steps"] == eager["feedback_steps"]
    for a, b in paired_rows(tmp_path / "eager", tmp_path / "graph"):
        for key in ("train_loss", "train_error", "val_loss", "test_loss", "reconstruction_loss"):
            if a[key]:
                assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-9), key
    assert_same_run(tmp_path / "eager", tmp_path / "graph")  # parameters, both optimisers, generators
    ca, cb = (torch.load(tmp_path / f / CHECKPOINT, weights_only=True) for f in ("eager", "graph"))
    assert ca["steps"] == cb["steps"] and ca["fb_steps"] == cb["fb_steps"]


def test_graph_path_resumes_like_an_uninterrupted_run(tmp_path, emulated_graphs):
    cfg = resolve_config("ddtp-linear", "mnist", "test", SMALL)

    def interrupt(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    log = Log()
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data(), 5, tmp_path / "a", log=log, progress=False, fast="graph", on_epoch_end=interrupt)
    assert emulated_graphs["train"] == 2 * FULL_BATCHES and log.graphed()  # epochs 1 and 2 replayed
    train(cfg, data(), 5, tmp_path / "a", log=log, progress=False, fast="graph", keep_checkpoint=True)
    assert emulated_graphs["train"] == 3 * FULL_BATCHES and log.graphed()  # the resumed epoch 3 too
    s = train(cfg, data(), 5, tmp_path / "b", log=log, progress=False, fast="graph", keep_checkpoint=True)
    assert emulated_graphs["train"] == 6 * FULL_BATCHES and log.graphed() and s["step_path"] == "graph-emulated"
    ca, cb = (torch.load(tmp_path / f / CHECKPOINT, weights_only=True) for f in ("a", "b"))
    assert set(ca["params"]) == set(cb["params"])
    for k in ca["params"]:
        assert torch.equal(ca["params"][k], cb["params"][k]), k
    assert all(ra["test_loss"] == rb["test_loss"] for ra, rb in paired_rows(tmp_path / "a", tmp_path / "b"))


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
    from tp.training import run_generators, train_seeds

    cfg = resolve_config("ddtp-rhl", "mnist", "test", SMALL)
    pool = data()
    full = DataSplits(torch.cat([pool.train_x, pool.val_x]), torch.cat([pool.train_y, pool.val_y]),
                      pool.test_x, pool.test_y)
    seeds = [2, 3]
    block = full.replica_splits(50, [run_generators(s)["split"] for s in seeds])
    log = Log()
    summaries = train_seeds(cfg, block, seeds, [tmp_path / f"b{s}" for s in seeds], log=log, progress=False,
                            fast="graph", keep_checkpoint=True)
    assert all(s["step_path"] == "graph-emulated" for s in summaries) and log.graphed()
    assert emulated_graphs["train"] == FULL_BATCHES * summaries[0]["epochs_run"] > 0  # one replay steps both seeds
    for s in seeds:
        single = DataSplits(full.train_x[block.train_index[seeds.index(s)]],
                            full.train_y[block.train_index[seeds.index(s)]], full.test_x, full.test_y,
                            full.train_x[block.val_index[seeds.index(s)]], full.train_y[block.val_index[seeds.index(s)]])
        train(cfg, single, s, tmp_path / f"s{s}", log=quiet, progress=False, fast="eager",
              keep_checkpoint=True)
        assert_same_run(tmp_path / f"b{s}", tmp_path / f"s{s}")  # every metric, parameters, both optimisers


def test_alignment_logging_steps_run_eagerly_between_replays(tmp_path, emulated_graphs):
    cfg = resolve_config("ddtp-linear", "mnist", "test", {**SMALL, "log_alignment": True, "log_interval": 2,
                                                          "gn_damping_per_hidden_layer": [0.1, 0.1]})
    log = Log()
    summary = {fast: train(cfg, data(), 6, tmp_path / fast, log=log, progress=False, fast=fast)
               for fast in ("eager", "graph")}
    assert summary["graph"]["step_path"] == "graph-emulated" and log.graphed()
    # minibatches 0, 2, 4 (logged) and 6 (the last, of 8) run eagerly: 1, 3, 5 are replayed
    assert emulated_graphs["train"] == 3 * summary["graph"]["epochs_run"] > 0
    assert len(paired_rows(tmp_path / "eager", tmp_path / "graph")) == summary["graph"]["epochs_run"]
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
    log = Log()
    for fast in ("eager", "graph"):
        s = train(cfg, images, 1, tmp_path / fast, log=log, progress=False, fast=fast, keep_checkpoint=True)
        assert s["status"] == "finished"
    assert s["step_path"] == "graph-emulated" and log.graphed()
    assert emulated_graphs["train"] == 2 * s["epochs_run"] > 0  # 70 images: 2 full minibatches of 32, one of 6
    for a, b in paired_rows(tmp_path / "eager", tmp_path / "graph"):
        assert math.isclose(float(a["train_loss"]), float(b["train_loss"]), rel_tol=1e-9)
        assert math.isclose(float(a["test_loss"]), float(b["test_loss"]), rel_tol=1e-9)
    assert_same_run(tmp_path / "eager", tmp_path / "graph")  # parameters, both optimisers, generators


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
