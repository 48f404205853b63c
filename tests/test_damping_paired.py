"""The paired damping search beside the official one (Table S7; tp.metrics.damping, issue 23): the shared-Jacobian
displacement for every λ, the angles against the official per-minibatch computation, identical minibatches
for every λ, the official numbers untouched, the statistics on a constructed example, and the audit's table of
keys added after runs were committed.  float64 throughout."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

import tp
from cases import assert_close
from tp.runs import audit
from tp.runs import versions
from tp.metrics.alignment import DAMPING_CANDIDATES, angle, gnt_reference
from tp.config import resolve_config
from tp.metrics.damping import gn_displacements_all_dampings, paired_gnt_angles, paired_selection, paired_statistics
from tp.data import DataSplits, synthetic_classification
from tp.errors import ConfigError
from tp.nets.gauss_newton import damped_gn_displacement, gn_displacements
from tp.training import build_run, paired_damping_search, train
from tp.training import hooks as hooks_module
from tp.training.resume import check_same_run

REPO = Path(__file__).resolve().parents[1]
LAMS = list(DAMPING_CANDIDATES)


def small_net(seed=0, sizes=(8, 7, 3, 6, 4), batch=6):
    """A tanh MLP with a hidden layer narrower than the output (3 < 4: the (JᵀJ + λI) branch and a
    rank-deficient J J ᵀ at λ = 0), parameters perturbed off their initialisation."""
    g = torch.Generator().manual_seed(seed)
    net = tp.MLP.build(list(sizes))
    params = net.init_params(g)
    params = {k: v + 0.1 * torch.randn(v.shape, dtype=v.dtype, generator=g) for k, v in params.items()}
    x = torch.randn(batch, sizes[0], dtype=torch.float64, generator=g)
    y = torch.randint(0, sizes[-1], (batch,), generator=g)
    return net, params, x, y


def test_one_svd_gives_the_damped_displacement_of_every_lambda():
    """Δ(λ) from one SVD per sample equals :func:`tp.nets.gauss_newton.gn_displacements` run once per λ (its
    batched solves, pinv at λ = 0), value by value, for every hidden layer, the narrow one included."""
    net, params, x, y = small_net()
    fwd = net.forward(params, x)
    g = net.output_gradient(fwd.output, y)
    hidden = list(range(1, net.L))
    J = net.output_jacobians(params, fwd, hidden)
    for i in hidden:
        every = gn_displacements_all_dampings(J[i], g, LAMS)
        assert every.shape == (len(LAMS), x.shape[0], net.sizes[i])
        for k, lam in enumerate(LAMS):
            expected = gn_displacements(net, params, fwd, g, lam, layers=[i])[i]
            assert_close(every[k], expected, f"layer {i}, λ = {lam}", rtol=1e-9)


def test_one_svd_handles_a_rank_deficient_jacobian_like_pinv():
    """An exactly rank-1 J (4 × 5) per sample: at λ = 0 the rounding-size singular values are cut as
    torch.linalg.pinv cuts them, not inverted into huge gains."""
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, 4, 1, dtype=torch.float64, generator=g)
    v = torch.randn(2, 1, 5, dtype=torch.float64, generator=g)
    J, e = u @ v, torch.randn(2, 4, dtype=torch.float64, generator=g)
    every = gn_displacements_all_dampings(J, e, [0.0, 1e-5, 1.0])
    for k, lam in enumerate([0.0, 1e-5, 1.0]):
        assert_close(every[k], damped_gn_displacement(J, e, lam), f"rank 1, λ = {lam}", rtol=1e-9)
    with pytest.raises(ValueError, match=r"damping must be a finite number >= 0, got -1.0"):
        gn_displacements_all_dampings(J, e, [0.0, -1.0])


def test_paired_angles_equal_the_official_angles_on_the_same_minibatch():
    """Per λ and hidden layer the paired angle is the official procedure's on that minibatch:
    ``angle(update, gnt_reference(…, λ))`` — for a random update and for a method's own update."""
    net, params, x, y = small_net(1)
    fwd = net.forward(params, x)
    g = torch.Generator().manual_seed(7)
    random_update = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    bp_update = tp.make_rule("bp").forward_update(net, params, {}, fwd, y).forward_grads
    hidden = list(range(1, net.L))
    for update in (random_update, bp_update):
        paired = paired_gnt_angles(net, params, fwd, y, update, LAMS, hidden)
        assert paired.shape == (len(LAMS), len(hidden))
        for k, lam in enumerate(LAMS):
            ref = gnt_reference(net, params, fwd, y, lam)
            for j, i in enumerate(hidden):
                assert paired[k, j] == pytest.approx(float(angle(update[f"W{i}"], ref[f"W{i}"])), abs=1e-7)


def test_paired_angles_equal_the_official_angles_on_the_cnn():
    """The CNN of docs/algorithms.md#the-cnn-table-3 (conv blocks' Δ unflattened to (B, C, H, W), local losses by
    autograd): the paired angles are gnt_reference's, λ by λ."""
    from tp.nets.cnn import ConvNet

    net = ConvNet(in_shape=(3, 8, 8), channels=(2, 3), fc=5, n_out=4, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    params = net.init_params(g)
    x, y = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 3, 1])
    fwd = net.forward(params, x)
    update = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    paired = paired_gnt_angles(net, params, fwd, y, update, LAMS, [1, 2, 3])
    for k, lam in enumerate(LAMS):
        ref = gnt_reference(net, params, fwd, y, lam)
        for j, i in enumerate((1, 2, 3)):
            assert paired[k, j] == pytest.approx(float(angle(update[f"W{i}"], ref[f"W{i}"])), abs=1e-7)


def small_data(n=200, dim=12, seed=0):
    x, y, tx, ty = synthetic_classification(n + 64, 64, dim, 10, seed=seed)
    return DataSplits(x[:n], y[:n], tx, ty, x[n:], y[n:])


def damping_cfg(**extra):
    return resolve_config("dtp", "mnist", "damping", {"num_hidden": 2, "size_hidden": 16, "log_interval": 2,
                                                      "batch_size": 32, "gn_damping_per_hidden_layer": [1.0, 0.1],
                                                      **extra})


def test_the_paired_search_shares_one_draw_of_minibatches_and_matches_the_official_computation(monkeypatch):
    """The paired search draws one more shuffled epoch from the run's shuffle generator and takes its full
    minibatches (200 samples, B = 32: 6 of them, the smaller 7th left out); every λ sees exactly those: its
    mean angle, SE and paired-difference SE equal the official per-minibatch computation (a forward pass
    per λ, the method's update, gnt_reference, angle) on those minibatches, recomputed here independently."""
    cfg = damping_cfg()
    run = build_run(cfg, [5], small_data(), torch.device("cpu"))
    state = run.gens["shuffle"].get_state()
    seen = []
    real_gather = hooks_module.gather
    monkeypatch.setattr(hooks_module, "gather", lambda data, idx: (seen.append(idx.clone()), real_gather(data, idx))[1])
    rows = paired_damping_search(run)
    monkeypatch.undo()
    assert len(seen) == 6 and all(idx.shape == (32,) for idx in seen)  # one gather per minibatch, for all λ
    run.gens["shuffle"].set_state(state)
    perm = torch.randperm(200, generator=run.gens["shuffle"])
    chosen = [perm[k:k + 32] for k in range(0, 192, 32)]
    assert all(torch.equal(a, b) for a, b in zip(seen, chosen))
    per = np.zeros((6, len(LAMS), 2))  # the official computation, minibatch by minibatch, λ by λ
    for m, idx in enumerate(chosen):
        for k, lam in enumerate(LAMS):
            x, y = run.data.train_x[idx], run.data.train_y[idx]
            fwd = run.net.forward(run.params, x)
            update = run.rule.forward_update(run.net, run.params, run.feedback, fwd, y).forward_grads
            ref = gnt_reference(run.net, run.params, fwd, y, lam)
            per[m, k] = [float(angle(update[f"W{i}"], ref[f"W{i}"])) for i in (1, 2)]
    assert len(rows) == len(LAMS) * 2
    for r in rows:
        k, j = LAMS.index(r["damping"]), r["layer"] - 1
        best = int(np.argmin(per[:, :, j].mean(0)))
        assert r["batches"] == 6
        assert r["mean_angle"] == pytest.approx(per[:, k, j].mean(), abs=1e-7)
        assert r["se"] == pytest.approx(statistics.stdev(per[:, k, j]) / math.sqrt(6), abs=1e-7)
        diff = per[:, k, j] - per[:, best, j]
        assert r["se_diff"] == pytest.approx(statistics.stdev(diff) / math.sqrt(6), abs=1e-7)
        assert r["diff_to_min"] == pytest.approx(diff.mean(), abs=1e-7)


def test_damping_run_writes_both_procedures_and_the_official_numbers_do_not_depend_on_the_paired(tmp_path, monkeypatch):
    """A damping run writes damping_search.csv (the official procedure) and damping_paired.csv; the official
    file is byte-identical to that of the same run without the paired search; damping_paired_batches = 3
    takes 3 minibatches; one the training set cannot hold fails before training, naming the valid range."""
    data = small_data()
    s = train(damping_cfg(damping_paired_batches=3), data, seed=0, out_dir=tmp_path / "both", progress=False,
              log=lambda m: None)
    paired = list(csv.DictReader(open(tmp_path / "both" / "damping_paired.csv")))
    assert len(paired) == len(LAMS) * 2 and {r["batches"] for r in paired} == {"3"}
    best, within = paired_selection(paired)
    assert s["damping_paired_selected"] == best and s["damping_paired_within_2se"] == within
    assert s["damping_paired_minibatches"] == 3 and all(b in w for b, w in zip(best, within))
    assert json.loads((tmp_path / "both" / "summary.json").read_text())["damping_paired_selected"] == best
    monkeypatch.setattr(hooks_module, "paired_damping_search", lambda run: [
        {"damping": 0.0, "layer": 1, "mean_angle": 1.0, "se": 0.0, "diff_to_min": 0.0, "se_diff": 0.0,
         "batches": 1, "within_2se": True}])
    train(damping_cfg(damping_paired_batches=3), data, seed=0, out_dir=tmp_path / "official", progress=False,
          log=lambda m: None)
    official = (tmp_path / "official" / "damping_search.csv").read_bytes()
    assert (tmp_path / "both" / "damping_search.csv").read_bytes() == official
    with pytest.raises(ConfigError, match=r"damping_paired_batches must be null \(one epoch\) or an integer from "
                                          r"1 to 6 .* got 7"):
        train(damping_cfg(damping_paired_batches=7), data, seed=0, out_dir=tmp_path / "bad", progress=False,
              log=lambda m: None)
    with pytest.raises(ConfigError, match="damping_paired_batches must be an integer > 0"):
        damping_cfg(damping_paired_batches=0)


def test_paired_statistics_on_a_constructed_example():
    """4 minibatches, 3 λ, 1 layer.  λ = 1e-5 is the minimum; λ = 0 is above it by exactly 0.1 on every
    minibatch (paired SE 0: told apart, although the two means' own SEs, ≈ 1.3, overlap widely); λ = 1 is
    above it by 0.5 on average with a paired SE of 0.5 (within 2 SE: "any of")."""
    base = np.array([10.0, 12.0, 14.0, 16.0])
    a = np.stack([base + 0.1, base, base + np.array([0.5, -0.5, 1.5, 0.5])], axis=1)[:, :, None]
    rows = paired_statistics(a, [0.0, 1e-5, 1.0], [1])
    by = {r["damping"]: r for r in rows}
    assert by[1e-5]["mean_angle"] == 13.0 and by[1e-5]["diff_to_min"] == 0.0 and by[1e-5]["se_diff"] == 0.0
    assert by[0.0]["se"] == pytest.approx(statistics.stdev(base) / 2)
    assert by[0.0]["diff_to_min"] == pytest.approx(0.1) and by[0.0]["se_diff"] == pytest.approx(0.0, abs=1e-12)
    assert by[1.0]["diff_to_min"] == pytest.approx(0.5)
    assert by[1.0]["se_diff"] == pytest.approx(statistics.stdev([0.5, -0.5, 1.5, 0.5]) / 2)  # 0.408
    assert [by[v]["within_2se"] for v in (0.0, 1e-5, 1.0)] == [False, True, True]
    assert all(r["batches"] == 4 for r in rows)
    assert paired_selection(rows) == ([1e-5], [[1e-5, 1.0]])
    # read back from the CSV (strings): the same selection
    text = [{k: str(v) for k, v in r.items()} for r in rows]
    assert paired_selection(text) == ([1e-5], [[1e-5, 1.0]])
    # a minibatch with an undefined angle (NaN) leaves the layer for every λ; one minibatch: SE undefined,
    # nothing can be told apart
    a2 = np.concatenate([a, np.full((1, 3, 1), np.nan)])
    assert paired_statistics(a2, [0.0, 1e-5, 1.0], [1]) == rows
    one = paired_statistics(a[:1], [0.0, 1e-5, 1.0], [1])
    assert all(math.isnan(r["se"]) and r["within_2se"] for r in one)
    with pytest.raises(ValueError, match=r"expected \(minibatches, 2 dampings, 1 layers\)"):
        paired_statistics(a, [0.0, 1.0], [1])


# --- keys added after runs were committed (tp.runs.versions.KEYS_ADDED_LATER) ------------------------------------

def test_keys_added_later_is_a_plain_table_of_configuration_keys():
    defaults = resolve_config("bp", "mnist", "test")
    assert type(versions.KEYS_ADDED_LATER) is dict and versions.KEYS_ADDED_LATER["damping_paired_batches"] is None
    for key, value in versions.KEYS_ADDED_LATER.items():
        assert key in defaults  # a configuration key, whose absence-value is a value it may hold
        resolve_config("bp", "mnist", "test", {key: value})
    old = {k: v for k, v in defaults.items() if k != "damping_paired_batches"}
    assert versions.with_later_keys(old) == defaults and versions.with_later_keys(defaults) == defaults


def test_a_configuration_recorded_before_a_key_reads_as_its_absence_value(tmp_path, monkeypatch):
    cfg = resolve_config("bp", "mnist", "test")
    old = {k: v for k, v in cfg.items() if k != "damping_paired_batches"}
    assert audit._config_diff(old, cfg) == []
    check_same_run(tmp_path / "checkpoint.pt", old, 1, cfg, 1)  # resuming an older checkpoint
    # a key whose absence means another value than the configuration's: the difference is named
    monkeypatch.setitem(versions.KEYS_ADDED_LATER, "damping_paired_batches", 7)
    assert audit._config_diff(old, cfg) == ["damping_paired_batches 7 ≠ None"]
    with pytest.raises(ConfigError, match="differing keys: \\['damping_paired_batches'\\]"):
        check_same_run(tmp_path / "checkpoint.pt", old, 1, cfg, 1)


@pytest.mark.parametrize("method", ["ddtp-linear", "dtpdrl", "bp"])
def test_committed_damping_runs_still_pass_the_audit(method):
    """The committed seed-42 damping searches (real MNIST, recorded before the paired search and its key)
    are still the cell's configuration."""
    folder = REPO / "results" / "runs" / "damping" / method / "mnist" / "seed42"
    summary = json.loads((folder / "summary.json").read_text())
    assert "damping_paired_batches" not in summary["config"] and not (folder / "damping_paired.csv").exists()
    assert audit.audit_run(folder, summary, audit.expected_config("damping", method, "mnist")) is None


def test_damping_extension_lists_the_decades_up_to_the_bound_and_rejects_a_bound_below_them():
    from tp.metrics.damping import damping_extension

    assert damping_extension(10.0, None) == []
    assert damping_extension(10.0, 1e4) == [100.0, 1000.0, 10000.0]
    assert damping_extension(10.0, 999.0) == [100.0] and damping_extension(10.0, 100) == [100.0]
    for bad in (50.0, math.inf, math.nan, True, "1e4"):
        with pytest.raises(ValueError, match=r"damping_paired_extend_to must be null .* >= 100, got " + repr(bad)):
            damping_extension(10.0, bad)


def _valley(minimum_at: int, size: int, m: int = 5) -> np.ndarray:
    """Angles (m, size) of one layer whose mean has its minimum at index ``minimum_at`` (|k − min|, plus a
    minibatch offset every λ shares)."""
    offsets = np.arange(m, dtype=np.float64)[:, None]
    return np.abs(np.arange(size, dtype=np.float64) - minimum_at)[None, :] + offsets


@pytest.mark.parametrize("minimum_at, kept", [(3, 0), (8, 2), (9, 3), (10, 3), (7, 1)])
def test_grid_extension_keeps_the_smallest_extension_with_every_minimum_inside(minimum_at, kept):
    """Base grid of 8 λ (index 7 = its top, 10), extension 100, 1000, 10000 (indices 8–10).  Layer 1's
    minimum is always at index 2; layer 2's at ``minimum_at``: inside the base grid → nothing added; at index
    8 (λ = 100) → 100 and 1000 (then 100 is inside); at 9 → all three; at 10, the bound → all three and the
    choice stays the grid's top (an edge); at 7 (the base top) → one decade, which shows the top was the
    minimum."""
    from tp.metrics.damping import grid_extension

    base, extra = LAMS, [100.0, 1000.0, 10000.0]
    size = len(base) + len(extra)
    angles = np.stack([_valley(2, size), _valley(minimum_at, size)], axis=2)  # (5, 11, 2)
    assert grid_extension(angles, base, extra, [1, 2]) == kept
    grid = [*base, *extra[:kept]]
    best, _ = paired_selection(paired_statistics(angles[:, :len(grid)], grid, [1, 2]))
    assert best[0] == base[2] and best[1] == [*base, *extra][min(minimum_at, len(grid) - 1)]
    assert (best[1] == grid[-1]) == (minimum_at >= size - 1)  # an edge only when the bound stopped it
    with pytest.raises(ValueError, match="expected"):
        grid_extension(angles[:, :-1], base, extra, [1, 2])


def test_damping_run_extends_the_paired_grid_only_above_and_keeps_the_official_search(tmp_path):
    """damping_paired_extend_to on a real (tiny) damping run: the paired rows cover the paper's 8 λ and a
    prefix of 100, 1000, 10000, chosen by grid_extension's rule; the paper-grid λ have the same mean angles as
    without the extension (the same minibatches and SVDs); the official damping_search.csv is byte-identical;
    a bound below 100 fails before training and names it."""
    data = small_data()
    quiet = lambda m: None  # noqa: E731
    s = train(damping_cfg(damping_paired_batches=3, damping_paired_extend_to=1e4), data, seed=0,
              out_dir=tmp_path / "ext", progress=False, log=quiet)
    train(damping_cfg(damping_paired_batches=3), data, seed=0, out_dir=tmp_path / "base", progress=False, log=quiet)
    ext = list(csv.DictReader(open(tmp_path / "ext" / "damping_paired.csv")))
    base = {(r["damping"], r["layer"]): r for r in csv.DictReader(open(tmp_path / "base" / "damping_paired.csv"))}
    grid = sorted({float(r["damping"]) for r in ext})
    assert grid[:len(LAMS)] == LAMS and grid[len(LAMS):] == [100.0, 1000.0, 10000.0][:len(grid) - len(LAMS)]
    for r in ext:
        if float(r["damping"]) in LAMS:
            assert float(r["mean_angle"]) == pytest.approx(float(base[r["damping"], r["layer"]]["mean_angle"]),
                                                           rel=1e-12)
    best = s["damping_paired_selected"]
    assert grid[-1] not in best or grid[-1] == 1e4  # inside the kept grid, unless the bound was reached
    if len(grid) > len(LAMS):  # extended: without its top λ, some layer's minimum was the shorter grid's top
        means: dict = {}
        for r in ext:
            means.setdefault(r["layer"], {})[float(r["damping"])] = float(r["mean_angle"])
        assert any(min((lam for lam in m if lam < grid[-1]), key=m.get) == grid[-2] for m in means.values())
    official = (tmp_path / "base" / "damping_search.csv").read_bytes()
    assert (tmp_path / "ext" / "damping_search.csv").read_bytes() == official
    with pytest.raises(ConfigError, match=r"damping_paired_extend_to must be null .* >= 100, got 50"):
        train(damping_cfg(damping_paired_extend_to=50), data, seed=0, out_dir=tmp_path / "bad", progress=False,
              log=quiet)
