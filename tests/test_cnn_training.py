"""The CNN (docs/algorithms.md#the-cnn-table-3) in the training loop and the alignment metrics: damped Gauss–Newton
targets of the conv layers against slow per-sample float64 references, the per-layer forward Adam against one torch Adam
per layer (docs/algorithms.md#cnn-optimisers-and-schedule), the configuration checks, and short training runs through
``tp.training`` (schedule, alignment
logging, damping search, resume)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from tp.metrics.alignment import alignment_angles, angle, bp_reference, gnt_reference
from tp.nets.cnn import ConvNet
from tp.config import resolve_config
from tp.errors import ConfigError
from tp.data import DataSplits, synthetic_classification
from tp.nets.gauss_newton import gn_displacements, output_jacobians
from tp.config.models import build_model, forward_optimizer_settings
from tp.core.optim import Adam
from tp.rules import make_rule
from tp.training import CHECKPOINT, train

DT = torch.float64
B = 3
LAYERS = (1, 2, 3)


@pytest.fixture(scope="module")
def setup():
    net = ConvNet(in_shape=(3, 8, 8), channels=(2, 3), fc=5, n_out=4, dtype=DT)
    g = torch.Generator().manual_seed(1)
    params = net.init_params(g)
    for k in ("b1", "b2", "b3", "b4"):  # non-zero biases
        params[k] = 0.1 * torch.randn(params[k].shape, generator=g, dtype=DT)
    x = torch.randn(B, 3, 8, 8, generator=g, dtype=DT)
    y = torch.tensor([0, 3, 1])
    return net, params, x, y, net.forward(params, x)


def per_sample_jacobian(net, params, k, h_b):
    """∂h_4/∂h_k of ONE sample (n_L, n_k) by torch.autograd.functional.jacobian (no batch trick)."""
    J = torch.autograd.functional.jacobian(lambda h: net.forward_from(params, k, h.unsqueeze(0))[0], h_b)
    return J.reshape(J.shape[0], -1)


# ------------------------------------------------------------------------------- Gauss–Newton targets
def test_conv_output_jacobians_equal_per_sample_references(setup):
    net, params, x, y, fwd = setup
    J = output_jacobians(net, params, fwd, LAYERS)
    for k in LAYERS:
        assert J[k].shape == (B, net.sizes[-1], net.sizes[k])
        for b in range(B):
            ref = per_sample_jacobian(net, params, k, fwd.h[k][b])
            torch.testing.assert_close(J[k][b], ref, rtol=1e-12, atol=1e-14)
    # and one column by central finite differences (max-pool is locally linear away from ties)
    eps, b, j = 1e-6, 1, 5
    e = torch.zeros(net.sizes[1], dtype=DT)
    e[j] = eps
    h = fwd.h[1][b].flatten()
    plus = net.forward_from(params, 1, (h + e).reshape(1, *net.layer_shapes[1]))[0]
    minus = net.forward_from(params, 1, (h - e).reshape(1, *net.layer_shapes[1]))[0]
    torch.testing.assert_close(J[1][b][:, j], (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("lams", [(0.1, 0.01, 1e-4), (0.0, 0.0, 0.0), (10.0, 1.0, 0.0)])
def test_damped_gnt_reference_of_the_cnn_equals_the_slow_formula(setup, lams):
    """Δ_k^b = J_k^bᵀ(J_k^b J_k^bᵀ + λ_k I)⁻¹ g^b (λ = 0: J⁺g) per sample with explicit inverses; the reference
    update of conv block k is the local-loss gradient 2/(B·C·H·W) · autograd.grad(h_k, (W_k, b_k), Δ_k) (the
    Jacobian-vector product of docs/algorithms.md#the-two-references), of FC layer 3 (2/B) Σ_b [φ′(a_3^b) ⊙ Δ_3^b]
    flatten(h_2^b)ᵀ."""
    net, params, x, y, fwd = setup
    g = net.output_gradient(fwd.output, y)  # (B, n_L)
    delta = {}
    for k, lam in zip(LAYERS, lams):
        rows = []
        for b in range(B):
            J = per_sample_jacobian(net, params, k, fwd.h[k][b])
            if lam == 0:
                rows.append(torch.linalg.pinv(J) @ g[b])
            else:
                rows.append(J.T @ torch.linalg.inv(J @ J.T + lam * torch.eye(J.shape[0], dtype=DT)) @ g[b])
        delta[k] = torch.stack(rows).reshape(fwd.h[k].shape)
    ours = gn_displacements(net, params, fwd, g, list(lams), layers=LAYERS)
    for k in LAYERS:
        torch.testing.assert_close(ours[k], delta[k], rtol=1e-9, atol=1e-13)

    ref = {}
    for k in (1, 2):
        W = params[f"W{k}"].clone().requires_grad_(True)
        bias = params[f"b{k}"].clone().requires_grad_(True)
        h = net.conv_block({f"W{k}": W, f"b{k}": bias}, k, fwd.h[k - 1])[2]
        gW, gb = torch.autograd.grad(h, (W, bias), grad_outputs=delta[k])
        count = h.numel()
        ref[f"W{k}"], ref[f"b{k}"] = 2 * gW / count, 2 * gb / count
    d3 = 2 * (1 - fwd.h[3] ** 2) * delta[3]  # (B, n_3)
    ref["W3"], ref["b3"] = d3.T @ fwd.h[2].flatten(1) / B, d3.mean(0)
    got = gnt_reference(net, params, fwd, y, list(lams))
    assert set(got) == set(ref)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-9, atol=1e-15)


def autograd_bp(net, params, x, y):
    """∂ℒ/∂θ by torch.autograd.grad of the mean cross-entropy of the forward pass (not through
    ``output_gradient`` / ``backprop_gradients``)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = torch.nn.functional.cross_entropy(net.forward(leaves, x).output, y)
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


def degrees(a, b):
    """The angle of two updates in degrees, written out (not ``tp.metrics.alignment.angle``)."""
    a, b = a.reshape(-1), b.reshape(-1)
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm()))))))


def test_heavily_damped_gnt_turns_into_the_gradient(setup):
    """Tikhonov: Δ_k → J_kᵀg/λ = ∂ℒ/∂h_k / λ as λ → ∞, so the damped-GNT update of every hidden layer (conv
    included) points along the BP gradient (autograd of the loss).  ``bp_reference`` and the BP rule equal
    that gradient value by value."""
    net, params, x, y, fwd = setup
    expected = autograd_bp(net, params, x, y)
    gnt = gnt_reference(net, params, fwd, y, 1e8)
    for k in LAYERS:
        assert float(angle(gnt[f"W{k}"], expected[f"W{k}"])) < 1e-3, k
    rule_update = make_rule("bp").forward_update(net, params, {}, fwd, y).forward_grads
    for got in (bp_reference(net, params, fwd, y), rule_update):
        assert set(got) == set(expected) == set(params)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=1e-10, atol=1e-15)


def test_alignment_angles_of_the_cnn(setup):
    """Each row's angle against one written out here: BP rows against the autograd gradient, GNT rows
    against ``gnt_reference`` (itself checked against the slow per-sample formula above)."""
    net, params, x, y, fwd = setup
    rule = make_rule("ddtp-linear", target_stepsize=0.3, sigma=0.05)
    fb = rule.init_feedback(net, torch.Generator().manual_seed(2))
    update = rule.forward_update(net, params, fb, fwd, y).forward_grads
    lams = [0.1, 0.1, 1e-4]
    rows = alignment_angles(net, params, fwd, y, update, lams)
    assert [(r["reference"], r["layer"]) for r in rows] == [("bp", i) for i in (1, 2, 3, 4)] + [
        ("gnt", i) for i in LAYERS]
    expected = {"bp": autograd_bp(net, params, x, y), "gnt": gnt_reference(net, params, fwd, y, lams)}
    for r in rows:
        want = degrees(update[f"W{r['layer']}"], expected[r["reference"]][f"W{r['layer']}"])
        assert r["angle"] == pytest.approx(want, abs=1e-9), r
    bp_rows = alignment_angles(net, params, fwd, y, expected["bp"])  # the true gradient is aligned with BP
    assert len(bp_rows) == 4 and all(r["angle"] < 1e-5 for r in bp_rows)


# ----------------------------------------------------------------------------------- configuration
def test_per_layer_forward_adam_equals_one_torch_adam_per_layer():
    """docs/algorithms.md#cnn-optimisers-and-schedule: four Adams (conv 1, conv 2, FC 3, FC 4; W_k and b_k together)
    with lr_k/β and eps_k."""
    cfg = resolve_config("ddtp-linear", "cifar10-cnn", "test")
    net = ConvNet(in_shape=(3, 8, 8), channels=(2, 3), fc=5, n_out=4, dtype=DT)
    params = net.init_params(torch.Generator().manual_seed(0))
    lr, eps = forward_optimizer_settings(cfg, list(params))
    assert lr["W2"] == lr["b2"] == cfg["lr"][1] / cfg["target_stepsize"] and eps["b4"] == cfg["epsilon"][3]
    ours = Adam({k: v.clone() for k, v in params.items()}, lr=lr, eps=eps)
    ref_params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    refs = [torch.optim.Adam([ref_params[f"W{k}"], ref_params[f"b{k}"]], lr=cfg["lr"][k - 1] / cfg["target_stepsize"],
                             eps=cfg["epsilon"][k - 1]) for k in (1, 2, 3, 4)]
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        grads = {k: 1e-4 * torch.randn(v.shape, generator=g, dtype=DT) for k, v in params.items()}
        ours.step(grads)
        for k, p in ref_params.items():
            p.grad = grads[k].clone()
        for opt in refs:
            opt.step()
    for k in params:
        torch.testing.assert_close(ours.params[k], ref_params[k].detach(), rtol=1e-14, atol=1e-16)
    # an MLP configuration keeps one rate and one ε
    mlp = resolve_config("ddtp-linear", "mnist", "test")
    assert forward_optimizer_settings(mlp, ["W1", "b1"]) == (mlp["lr"] / mlp["target_stepsize"], mlp["epsilon"])


def test_cnn_configuration_errors_name_the_bad_value():
    with pytest.raises(ConfigError, match="num_hidden must be 3, got 2"):
        resolve_config("bp", "cifar10-cnn", "test", {"num_hidden": 2})
    with pytest.raises(ConfigError, match="conv_channels .* got \\[4\\]"):
        resolve_config("bp", "cifar10-cnn", "test", {"conv_channels": [4]})
    with pytest.raises(ConfigError, match="lr needs one value per layer \\(4\\)"):
        resolve_config("bp", "cifar10-cnn", "test", {"lr": [1e-3, 1e-3, 1e-3]})
    with pytest.raises(ConfigError, match=r"epsilon must be a finite number > 0 \(or one per layer\).*entry -1.0"):
        resolve_config("bp", "cifar10-cnn", "test", {"epsilon": [1e-8, -1.0, 1e-8, 1e-8]})
    with pytest.raises(ConfigError, match="available on cifar10-cnn: .*ddtp-linear/test"):
        resolve_config("dtp", "cifar10-cnn", "test")
    with pytest.raises(ConfigError, match="no 'train' configuration of method 'ddtp-control'"):
        resolve_config("ddtp-control", "cifar10-cnn", "train")
    with pytest.raises(ConfigError, match="unknown configuration key 'model'"):
        resolve_config("bp", "mnist", "test", {"model": "cnn"})
    cfg = resolve_config("bp", "cifar10-cnn", "test")
    flat = DataSplits(torch.zeros(4, 3 * 8 * 8, dtype=DT), torch.arange(4), torch.zeros(2, 192, dtype=DT),
                      torch.arange(2))
    with pytest.raises(ConfigError, match="image inputs"):
        build_model(cfg, make_rule("bp"), flat, "cross_entropy", DT)
    with pytest.raises(ConfigError, match="rule 'dtp' trains the 'mlp' network"):
        build_model(cfg, make_rule("dtp", target_stepsize=0.1, sigma=0.1), flat, "cross_entropy", DT)


# ------------------------------------------------------------------------------------ training runs
TINY = {"conv_channels": [2, 3], "size_hidden": 8, "batch_size": 32}


def image_data(seed=0, n_train=96, n_test=32, n_val=32, shape=(3, 8, 8)) -> DataSplits:
    x, y, tx, ty = synthetic_classification(n_train + n_val, n_test, math.prod(shape), 10, seed)
    x, tx = x.reshape(-1, *shape), tx.reshape(-1, *shape)
    return DataSplits(x[:n_train], y[:n_train], tx, ty, x[n_train:], y[n_train:])


def quiet(msg):
    pass


@pytest.mark.parametrize("method", ["bp", "dfa", "ddtp-linear", "ddtp-control"])
def test_every_cnn_method_trains_through_the_loop(method, tmp_path):
    cfg = resolve_config(method, "cifar10-cnn", "test", {**TINY, "epochs": 3, "epochs_fb": 1, "extra_fb_epochs": 1,
                                                         "normalize_lr": False, "lr": 3e-3, "lr_fb": 1e-3})
    s = train(cfg, image_data(), seed=1, out_dir=tmp_path, progress=False, log=quiet)
    assert s["status"] == "finished" and s["epochs_run"] == 3 and s["rule"] == method
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    losses = [float(r["train_loss"]) for r in rows]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    # schedule (docs/algorithms.md#one-minibatch-one-epoch): 3 minibatches per epoch; pre-training 1 epoch, then 1
    # training + 1 extra per epoch
    trains_fb = method.startswith("ddtp")
    assert s["feedback_steps"] == (3 * (1 + 3 * 2) if trains_fb else 0)
    assert (rows[0]["reconstruction_loss"] != "") == trains_fb


def test_cnn_alignment_logging_and_damping_search(tmp_path):
    cfg = resolve_config("ddtp-linear", "cifar10-cnn", "alignment", {**TINY, "epochs": 2, "epochs_fb": 0,
                                                                   "log_interval": 2})
    assert cfg["gn_damping_per_hidden_layer"] == [0.1, 0.1, 0.0001]
    train(cfg, image_data(), seed=42, out_dir=tmp_path / "a", progress=False, log=quiet)
    rows = list(csv.DictReader(open(tmp_path / "a" / "alignment.csv")))
    assert len(rows) == 2 * 2 * (4 + 3)  # 2 epochs × batches 0, 2 × (BP: 4 layers, GNT: 3 hidden layers)
    gnt = {(r["layer"], r["damping"]) for r in rows if r["reference"] == "gnt"}
    assert gnt == {("1", "0.1"), ("2", "0.1"), ("3", "0.0001")}
    assert all(0 <= float(r["angle"]) <= 180 for r in rows)
    s = train(dict(cfg, gn_damping_hpsearch=True, epochs=3), image_data(), seed=42, out_dir=tmp_path / "d",
              progress=False, log=quiet)
    assert s["epochs_run"] == 3 and len(s["damping_selected"]) == 3
    search = list(csv.DictReader(open(tmp_path / "d" / "damping_search.csv")))
    assert len(search) == 8 * 3 and {r["layer"] for r in search} == {"1", "2", "3"}


def test_cnn_kill_and_resume_equals_uninterrupted(tmp_path):
    cfg = resolve_config("ddtp-linear", "cifar10-cnn", "test", {**TINY, "epochs": 3, "epochs_fb": 1})
    data = image_data()
    full = train(cfg, data, seed=5, out_dir=tmp_path / "full", progress=False, log=quiet, keep_checkpoint=True)

    class Killed(Exception):
        pass

    def kill_after_1(epoch):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, data, seed=5, out_dir=tmp_path / "cut", progress=False, log=quiet, on_epoch_end=kill_after_1)
    train(cfg, data, seed=5, out_dir=tmp_path / "cut", progress=False, log=quiet, keep_checkpoint=True)

    def rows(folder):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(folder / "metrics.csv"))]

    assert rows(tmp_path / "full") == rows(tmp_path / "cut")
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    for part in ("params", "feedback"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert full["feedback_steps"] == 3 * (1 + 3 * 2)
