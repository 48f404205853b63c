"""Alignment metrics (docs/algorithms.md#alignment-with-bp-and-gnt-updates): the angle helper, the BP and damped-GNT
references, logging, damping search."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import reference as ref
import tp
from cases import assert_close
from tp.metrics.alignment import (DAMPING_CANDIDATES, alignment_angles, angle, bp_reference, ggn_reference,
                          gnt_reference)
from tp.config import resolve_config
from tp.data import DataSplits, synthetic_classification
from tp.training import train


def test_angle_basic_properties():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, dtype=torch.float64, generator=g)
    b = torch.randn(5, 4, dtype=torch.float64, generator=g)
    assert float(angle(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(angle(a, -a)) == pytest.approx(180.0, abs=1e-6)
    assert float(angle(3.7 * a, 0.2 * b)) == pytest.approx(float(angle(a, b)), rel=1e-12)
    c = torch.cat([torch.ones(1), torch.zeros(3)]).double()
    d = torch.cat([torch.zeros(1), torch.ones(1), torch.zeros(2)]).double()
    assert float(angle(c, d)) == pytest.approx(90.0, abs=1e-12)
    # rounding pushes the cosine of (nearly) identical vectors above 1: clipped, not NaN
    big = torch.full((1000,), 0.1, dtype=torch.float64)
    assert not math.isnan(float(angle(big, big * (1 + 1e-16))))
    with pytest.raises(ValueError, match="zero update"):
        angle(torch.zeros(3), torch.ones(3))


def small_net(seed=0, sizes=(8, 7, 6, 5, 4)):
    g = torch.Generator().manual_seed(seed)
    net = tp.MLP.build(list(sizes))
    params = net.init_params(g)
    params = {k: v + 0.1 * torch.randn(v.shape, dtype=v.dtype, generator=g) for k, v in params.items()}
    x = torch.randn(6, sizes[0], dtype=torch.float64, generator=g)
    y = torch.randint(0, sizes[-1], (6,), generator=g)
    return net, params, x, y


def reference_net(net):
    """The slow per-sample twin (``tests/reference.py``) of an ``MLP``."""
    return ref.Net(list(net.sizes), list(net.activations), net.loss)


def test_gnt_rule_update_equals_the_damped_gnt_reference_at_zero_damping():
    """docs/algorithms.md#gnt, docs/algorithms.md#the-two-references: the GNT rule's update and ``gnt_reference`` at λ =
    0 against the per-sample float64 twin (Δ_i = J_i⁺g with J_i by ``torch.func.jacrev``, explicit pinv, local-loss
    gradients by autograd), value by value: a wrong scale fails, not only a wrong direction."""
    net, params, x, y = small_net()
    fwd = net.forward(params, x)
    update = tp.make_rule("gnt", gn_damping=0.0).forward_update(net, params, {}, fwd, y).forward_grads
    rnet = reference_net(net)
    expected = ref.local_loss_gradients(rnet, params, x, ref.gnt_targets(rnet, params, x, y, 0.0))
    assert set(update) == set(expected) == set(params)
    for k in expected:
        assert_close(update[k], expected[k], f"gnt rule {k}", rtol=1e-9)
    reference = gnt_reference(net, params, fwd, y, 0.0)
    hidden = {k for k in params if int(k[1:]) < net.L}
    assert set(reference) == hidden
    for k in hidden:
        assert_close(reference[k], expected[k], f"gnt_reference {k}", rtol=1e-9)


def test_damped_gnt_turns_towards_the_gradient_as_damping_grows():
    """Tikhonov: Jᵀ(JJᵀ + λI)⁻¹g → Jᵀg/λ, whose local-loss gradient is the BP gradient up to scale."""
    net, params, x, y = small_net(1)
    fwd = net.forward(params, x)
    bp = bp_reference(net, params, fwd, y)
    for i in range(1, net.L):
        angles = [float(angle(gnt_reference(net, params, fwd, y, lam)[f"W{i}"], bp[f"W{i}"]))
                  for lam in (1e-4, 1e-2, 1.0, 1e2, 1e6)]
        assert all(a >= b - 1e-9 for a, b in zip(angles, angles[1:])), angles
        assert angles[-1] < 0.01 and angles[0] > 1.0


def degrees(a, b):
    """The angle of two updates in degrees, written out (not ``tp.metrics.alignment.angle``)."""
    a, b = a.reshape(-1), b.reshape(-1)
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm()))))))


def test_alignment_rows_cover_every_layer_and_reference():
    """Every row's angle against the per-sample twin's BP gradient (autograd) and damped-GNT update
    (explicit (JJᵀ + λI)⁻¹), for a random update; and the BP rule's update equals the autograd gradient
    value by value (BP is not compared with ``backprop_gradients`` itself)."""
    net, params, x, y = small_net()
    fwd = net.forward(params, x)
    rnet = reference_net(net)
    bp_expected = ref.bp_gradients(rnet, params, x, y)
    bp_update = tp.make_rule("bp").forward_update(net, params, {}, fwd, y).forward_grads
    assert set(bp_update) == set(bp_expected)
    for k in bp_expected:
        assert_close(bp_update[k], bp_expected[k], f"bp rule {k}")
    lams = [1.0, 0.1, 0.0]
    gnt_expected = ref.local_loss_gradients(rnet, params, x, {
        i: h for i, h in ref.gnt_targets(rnet, params, x, y, lams + [0.0]).items() if i < net.L})
    g = torch.Generator().manual_seed(5)
    update = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    rows = alignment_angles(net, params, fwd, y, update, damping=lams)
    assert {(r["layer"], r["reference"]) for r in rows} == \
        {(i, "bp") for i in range(1, 5)} | {(i, "gnt") for i in range(1, 4)}
    assert len(rows) == 4 + 3
    for r in rows:
        expected = bp_expected if r["reference"] == "bp" else gnt_expected
        want = degrees(update[f"W{r['layer']}"], expected[f"W{r['layer']}"])
        assert r["angle"] == pytest.approx(want, abs=1e-9), r
    bp_rows = alignment_angles(net, params, fwd, y, bp_expected)  # the true gradient is aligned with BP
    assert len(bp_rows) == 4 and all(r["angle"] < 1e-5 for r in bp_rows)


@pytest.mark.parametrize("lams", [[1.0, 0.1, 0.0], 0.3])
def test_ggn_reference_rows_against_the_per_sample_twin(lams):
    """``log_alignment_ggn`` (beyond the paper): the GGN reference equals the local-loss gradient of the
    per-sample twin's damped GGN targets (autograd Hessian of each sample's loss, n_i × n_i solves; λ = 0:
    pinv) value by value, and its rows are the angles of the update with it."""
    net, params, x, y = small_net(2)
    fwd = net.forward(params, x)
    rnet = reference_net(net)
    per_layer = lams + [0.0] if isinstance(lams, list) else lams
    expected = ref.local_loss_gradients(rnet, params, x, {
        i: h for i, h in ref.ggnt_targets(rnet, params, x, y, per_layer).items() if i < net.L})
    got = ggn_reference(net, params, fwd, y, lams)
    assert set(got) == set(expected) == {k for k in params if int(k[1:]) < net.L}
    for k in expected:
        assert_close(got[k], expected[k], f"ggn_reference {k}", rtol=1e-7)
    g = torch.Generator().manual_seed(6)
    update = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    rows = alignment_angles(net, params, fwd, y, update, damping=lams, ggn=True)
    assert {(r["layer"], r["reference"]) for r in rows} == \
        {(i, "bp") for i in range(1, 5)} | {(i, ref_) for i in range(1, 4) for ref_ in ("gnt", "ggn")}
    for r in (r for r in rows if r["reference"] == "ggn"):
        assert r["angle"] == pytest.approx(degrees(update[f"W{r['layer']}"], expected[f"W{r['layer']}"]),
                                           abs=1e-6), r
    assert alignment_angles(net, params, fwd, y, update, damping=lams) == [r for r in rows
                                                                          if r["reference"] != "ggn"]
    with pytest.raises(ValueError, match="GGN reference needs the damping"):
        alignment_angles(net, params, fwd, y, update, ggn=True)


@pytest.mark.parametrize("delta", [0.1, 2.0])
def test_ggn_reference_of_the_damped_hessian_against_the_per_sample_twin(delta):
    """``alignment_hessian_damping`` δ: the reference ``ggn_delta`` is the local-loss gradient of the twin's
    damped GGN targets with H_δ = H + δP (P: the projector off the ones vector) in place of H, value by value;
    it differs from the exact-H reference, and tends to it as δ → 0."""
    net, params, x, y = small_net(2)
    fwd = net.forward(params, x)
    rnet, lams = reference_net(net), [1.0, 0.1, 1e-3]
    expected = ref.local_loss_gradients(rnet, params, x, {
        i: h for i, h in ref.ggnt_targets(rnet, params, x, y, lams + [0.0], hessian_damping=delta).items()
        if i < net.L})
    got = ggn_reference(net, params, fwd, y, lams, hessian_damping=delta)
    exact = ggn_reference(net, params, fwd, y, lams)
    for k in expected:
        assert_close(got[k], expected[k], f"ggn_reference δ={delta} {k}", rtol=1e-7)
        assert float(degrees(got[k], exact[k])) > 0.1  # δ changes the reference
    tiny = ggn_reference(net, params, fwd, y, lams, hessian_damping=1e-9)
    assert all(float(degrees(tiny[k], exact[k])) < 1e-3 for k in exact)
    g = torch.Generator().manual_seed(6)
    update = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    rows = alignment_angles(net, params, fwd, y, update, damping=lams, ggn=True, ggn_hessian_damping=delta)
    assert {r["layer"] for r in rows if r["reference"] == "ggn_delta"} == {1, 2, 3}
    for r in (r for r in rows if r["reference"] == "ggn_delta"):
        assert r["angle"] == pytest.approx(degrees(update[f"W{r['layer']}"], expected[f"W{r['layer']}"]), abs=1e-6)


def small_data(n=256, dim=12):
    x, y, tx, ty = synthetic_classification(n + 64, 64, dim, 10, seed=0)
    return DataSplits(x[:n], y[:n], tx, ty, x[n:], y[n:])


def test_alignment_logging_during_training(tmp_path):
    cfg = resolve_config("ddtp-linear", "fashion-mnist", "alignment",
                         {"num_hidden": 3, "size_hidden": 16, "epochs": 2, "epochs_fb": 1, "extra_fb_epochs": 1,
                          "log_interval": 3, "batch_size": 32, "gn_damping_per_hidden_layer": [1.0, 1.0, 0.0]})
    assert cfg["log_alignment"] and cfg["double_precision"] is False  # the F-MNIST figure runs are float32
    train(cfg, small_data(), seed=0, out_dir=tmp_path, progress=False, log=lambda m: None)
    rows = list(csv.DictReader(open(tmp_path / "alignment.csv")))
    logged = len(range(0, 8, 3))  # 8 minibatches per epoch, every 3rd
    assert len(rows) == 2 * logged * (4 + 3)
    assert {r["reference"] for r in rows} == {"bp", "gnt"}
    assert all(0.0 <= float(r["angle"]) <= 180.0 for r in rows)
    assert {r["damping"] for r in rows if r["reference"] == "gnt" and r["layer"] == "3"} == {"0.0"}


def test_alignment_logging_with_the_ggn_reference(tmp_path):
    """``log_alignment_ggn: true`` adds one GGN row per hidden layer and logged minibatch, with the GNT λ_i;
    without log_alignment it is a configuration error naming what it needs."""
    over = {"num_hidden": 2, "size_hidden": 12, "epochs": 1, "epochs_fb": 0, "extra_fb_epochs": 0,
            "log_interval": 4, "batch_size": 32, "gn_damping_per_hidden_layer": [1.0, 0.0], "log_alignment_ggn": True}
    cfg = resolve_config("ddtp-ggn", "mnist", "test", {**over, "log_alignment": True})
    train(cfg, small_data(dim=784), seed=0, out_dir=tmp_path, progress=False, log=lambda m: None)
    rows = list(csv.DictReader(open(tmp_path / "alignment.csv")))
    assert len(rows) == 2 * (3 + 2 + 2)  # minibatches 0 and 4: BP on 3 layers, GNT and GGN on 2
    assert {(r["layer"], r["damping"]) for r in rows if r["reference"] == "ggn"} == {("1", "1.0"), ("2", "0.0")}
    with pytest.raises(tp.ConfigError, match="log_alignment_ggn .* needs log_alignment: true"):
        resolve_config("ddtp-ggn", "mnist", "test", over)
    # alignment_hessian_damping adds the H + δP reference, with the same λ_i; alone it is an error
    delta = {**over, "log_alignment": True, "alignment_hessian_damping": 0.5}
    train(resolve_config("ddtp-ggn", "mnist", "test", delta), small_data(dim=784), seed=0, out_dir=tmp_path / "d",
          progress=False, log=lambda m: None)
    rows_d = list(csv.DictReader(open(tmp_path / "d" / "alignment.csv")))
    assert [r for r in rows_d if r["reference"] != "ggn_delta"] == rows  # the other rows unchanged
    assert {(r["layer"], r["damping"]) for r in rows_d if r["reference"] == "ggn_delta"} == {("1", "1.0"), ("2", "0.0")}
    with pytest.raises(tp.ConfigError, match="alignment_hessian_damping .* needs log_alignment_ggn: true"):
        resolve_config("ddtp-ggn", "mnist", "test", {**over, "log_alignment": True, "log_alignment_ggn": False,
                                                      "alignment_hessian_damping": 0.5})


def test_damping_search_stops_after_three_epochs_and_selects_the_argmin(tmp_path):
    cfg = resolve_config("dtp", "mnist", "alignment",
                         {"num_hidden": 2, "size_hidden": 16, "epochs": 10, "log_interval": 2, "batch_size": 32,
                          "gn_damping_hpsearch": True, "gn_damping_per_hidden_layer": [1.0, 0.1]})
    s = train(cfg, small_data(), seed=0, out_dir=tmp_path, progress=False, log=lambda m: None)
    assert s["epochs_run"] == 3 and "damping search" in s["message"]
    rows = list(csv.DictReader(open(tmp_path / "damping_search.csv")))
    assert len(rows) == len(DAMPING_CANDIDATES) * 2
    for layer in (1, 2):
        mine = [r for r in rows if int(r["layer"]) == layer]
        best = min(mine, key=lambda r: float(r["mean_angle"]))
        assert s["damping_selected"][layer - 1] == float(best["damping"])
        assert all(int(r["batches"]) == 4 for r in mine)  # 8 minibatches, every 2nd
    assert json.loads((tmp_path / "summary.json").read_text())["damping_selected"] == s["damping_selected"]
