"""The toy experiments (tp.toy; docs/algorithms.md#fig-2-null-space-component-of-the-updates,
docs/algorithms.md#fig-s3-direction-of-the-output-change): null-space ratio,
output-space direction, config.

Every reference quantity is computed independently of ``tp.toy``: the weight Jacobian by autograd on the
flattened weight matrix, the null-space projector as I − J⁺J, output changes by re-running the network.
"""

from __future__ import annotations

import math

import pytest
import torch

import tp
from tp import toy
from tp.rules import backprop_gradients
from cases import official_hyperparameters

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """Thousands of tiny tensor ops: intra-op threads only add overhead.  Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_net(seed: int, sizes=(3, 4, 3, 2), acts=("tanh", "tanh", "linear"), bias=True):
    g = torch.Generator().manual_seed(seed)
    net = tp.MLP(sizes, acts, (bias,) * (len(sizes) - 1), "mse", DT)
    params = net.init_params(g)
    if bias:  # non-zero biases, so that the test does not rely on the zero-bias initialisation
        for k in params:
            if k.startswith("b"):
                params[k] = 0.3 * torch.randn(params[k].shape, generator=g, dtype=DT)
    x = 2 * torch.rand(1, sizes[0], generator=g, dtype=DT) - 1
    y = torch.randn(1, sizes[-1], generator=g, dtype=DT)
    return net, params, x, y, g


def autograd_weight_jacobian(net, params, x, layer):
    """∂h_L/∂vec(W_layer) by autograd: (n_L, n_i·n_{i−1}), row-major vec."""
    W = params[f"W{layer}"]

    def f(w_flat):
        p = dict(params)
        p[f"W{layer}"] = w_flat.reshape(W.shape)
        return net.forward(p, x).output[0]

    return torch.autograd.functional.jacobian(f, W.reshape(-1).clone())


def projector_ratio(J, v):
    """‖(I − J⁺J) v‖ / ‖v‖."""
    P = torch.eye(J.shape[1], dtype=J.dtype) - torch.linalg.pinv(J) @ J
    return float((P @ v).norm() / v.norm())


# --------------------------------------------------------------------------------- null-space ratio
@pytest.mark.parametrize("seed", [0, 1])
def test_weight_jacobian_matches_autograd(seed):
    net, params, x, _, _ = tiny_net(seed)
    for i in range(1, net.L + 1):
        J = toy.weight_jacobian(net, params, x, i)
        assert J.shape == (net.sizes[-1], net.sizes[i] * net.sizes[i - 1])
        torch.testing.assert_close(J, autograd_weight_jacobian(net, params, x, i), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nullspace_ratio_equals_explicit_projector(seed):
    net, params, x, _, g = tiny_net(seed)
    for i in range(1, net.L + 1):
        dW = torch.randn(net.sizes[i], net.sizes[i - 1], generator=g, dtype=DT)
        J = autograd_weight_jacobian(net, params, x, i)
        expected = projector_ratio(J, dW.reshape(-1))
        # and the full-SVD formulation (right singular vectors beyond the rank)
        _, S, Vh = torch.linalg.svd(J, full_matrices=True)
        r = int((S > 1e-12 * S.max()).sum())
        assert r == net.sizes[-1]
        svd_ratio = float((Vh[r:] @ dW.reshape(-1)).norm() / dW.norm())
        got = toy.nullspace_ratio(net, params, x, dW, i)
        assert abs(got - expected) <= 1e-10
        assert abs(svd_ratio - expected) <= 1e-10
        assert 0.0 < got < 1.0


def test_nullspace_ratio_row_space_and_null_space():
    net, params, x, _, g = tiny_net(3)
    for i in range(1, net.L + 1):
        J = autograd_weight_jacobian(net, params, x, i)
        shape = (net.sizes[i], net.sizes[i - 1])
        row = (J.T @ torch.randn(J.shape[0], generator=g, dtype=DT)).reshape(shape)  # in the row space of J
        r = torch.randn(J.shape[1], generator=g, dtype=DT)
        null = (r - torch.linalg.pinv(J) @ (J @ r)).reshape(shape)  # in N(J)
        assert toy.nullspace_ratio(net, params, x, row, i) < 1e-12
        assert abs(toy.nullspace_ratio(net, params, x, null, i) - 1.0) < 1e-12


def test_nullspace_ratio_tolerance_rank_and_shape_check():
    net, params, x, _, g = tiny_net(4)
    J = toy.weight_jacobian(net, params, x, 2)
    assert toy.nullspace_basis(J).shape == (J.shape[1], J.shape[1] - 2)
    assert toy.nullspace_basis(J, tol=1e-12).shape == (J.shape[1], J.shape[1] - 2)  # official rule, float64
    with pytest.raises(ValueError, match="per sample"):
        toy.nullspace_ratio(net, params, x.repeat(2, 1), params["W2"], 2)


# ------------------------------------------------------------------------- output-space direction
def output_change(net, params, x, update, lr):
    stepped = {k: p - lr * update.get(k, torch.zeros_like(p)) for k, p in params.items()}
    return (net.forward(stepped, x).output - net.forward(params, x).output)[0]


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def autograd_output_jacobian(net, params, h_i, layer):
    """∂h_L/∂h_i of one sample by autograd on the network's own forward map h_i ↦ h_L: (n_L, n_i)."""
    return torch.autograd.functional.jacobian(lambda h: net.forward_from(params, layer, h.unsqueeze(0))[0], h_i)


def test_gnt_targets_move_the_output_along_minus_error():
    """Theorem 2: J_i (ĥ_i − h_i) = −∂ℒ/∂h_L for every layer (exact, λ = 0), with J_i = ∂h_L/∂h_i taken
    by autograd through the forward pass (not from ``tp.output_jacobians``, which GNT itself uses: J J⁺ e = e
    holds for any full-rank J, so GNT's own Jacobian would pass a wrong one), and ĥ_i − h_i = −J_i⁺ e, the
    minimum-norm solution (no null-space component).  ∂ℒ/∂h_L also by autograd of the MSE loss."""
    net, params, x, y, _ = tiny_net(0, bias=False)
    fwd = net.forward(params, x)
    out = tp.make_rule("gnt").forward_update(net, params, {}, fwd, y)
    output = fwd.output.detach().clone().requires_grad_(True)
    (e,) = torch.autograd.grad(torch.nn.functional.mse_loss(output, y), output)
    e = e[0]
    for i in range(1, net.L + 1):
        J = autograd_output_jacobian(net, params, fwd.h[i][0], i)
        assert J.shape == (net.sizes[-1], net.sizes[i]) and J.dtype == DT
        step = (out.targets[i] - fwd.h[i])[0]
        torch.testing.assert_close(J @ step, -e, rtol=0, atol=1e-13)
        torch.testing.assert_close(step, -torch.linalg.pinv(J) @ e, rtol=1e-10, atol=1e-14)


def angle_deg(a, b):
    return math.degrees(math.acos(max(-1.0, min(1.0, cos(a, b)))))


def test_gnt_output_step_antiparallel_to_error_bp_not():
    """GNT moves the output along −e: exactly through the output layer; through a tanh hidden layer the
    local-loss gradient adds diag φ′(a_i)², so the full step is close to (not exactly) anti-parallel.
    BP's step J_θ J_θᵀ e is in general clearly off that direction."""
    lr = 1e-7
    gnt_angles, bp_angles = [], []
    for seed in range(12):
        net, params, x, y, _ = tiny_net(seed, sizes=(4, 4, 4, 2), bias=False)
        fwd = net.forward(params, x)
        minus_e = (y - fwd.output)[0]  # −(y_before − y)
        gnt = tp.make_rule("gnt").forward_update(net, params, {}, fwd, y).forward_grads
        bp = backprop_gradients(net, params, fwd, net.output_gradient(fwd.output, y))
        assert angle_deg(output_change(net, params, x, {"W3": gnt["W3"]}, lr), minus_e) < 1e-4
        gnt_angles.append(angle_deg(output_change(net, params, x, gnt, lr), minus_e))
        bp_angles.append(angle_deg(output_change(net, params, x, bp, lr), minus_e))
    assert max(gnt_angles + bp_angles) < 90  # both descend the loss
    assert sorted(gnt_angles)[6] < 3.0  # median over 12 networks: ~2°
    assert sorted(bp_angles)[6] > 10.0  # ~18°
    assert max(bp_angles) > 45.0


def test_gnt_output_step_exactly_antiparallel_on_linear_network():
    """φ′ = 1: Δy ∝ Σ_i ‖h_{i−1}‖² J_i J_i⁺ e = (Σ_i ‖h_{i−1}‖²) e (every J_i has full row rank)."""
    net, params, x, y, _ = tiny_net(1, sizes=(4, 4, 4, 2), acts=("linear",) * 3, bias=False)
    fwd = net.forward(params, x)
    e = (fwd.output - y)[0]
    gnt = tp.make_rule("gnt").forward_update(net, params, {}, fwd, y).forward_grads
    assert cos(output_change(net, params, x, gnt, 1e-7), e) < -1 + 1e-10


def test_output_space_experiment():
    res = toy.output_space_experiment()
    assert res.seed == 93 and res.lr == 1e-5
    assert res.y.shape == res.y_before.shape == (2,)
    radius = float((res.y_before - res.y).norm())
    assert math.isclose(res.arrow_length, radius / 2)
    for m in ("gnt", "bp"):
        assert torch.isfinite(res.delta_y[m]).all() and res.delta_y[m].norm() > 0
        assert math.isclose(float(res.arrow[m].norm()), radius / 2, rel_tol=1e-12)
        assert cos(res.arrow[m], res.delta_y[m]) > 1 - 1e-12
        assert res.cos_to_neg_error[m] > 0  # both steps decrease the loss
    assert res.cos_to_neg_error["gnt"] > 0.99
    assert res.grid_x.shape == res.grid_y.shape == (100,)
    assert res.loss_grid.shape == (100, 100)
    assert math.isclose(float(res.grid_x[-1] - res.y[0]), 1.1 * radius, rel_tol=1e-9)
    k, j = 17, 63
    expected = float(((res.grid_x[k] - res.y[0]) ** 2 + (res.grid_y[j] - res.y[1]) ** 2) / 2)
    assert math.isclose(float(res.loss_grid[j, k]), expected, rel_tol=1e-12)
    assert res.levels == 9


# --------------------------------------------------------------------------------- Fig. 2 (tiny run)
@pytest.mark.parametrize("method", ["dtp-pretrained", "ddtp-linear"])
def test_nullspace_experiment_tiny(method):
    kw = dict(epochs_fb=1, epochs=2, extra_fb_epochs=1, num_train=25, num_test=5, log_interval=10)
    state = torch.get_rng_state()
    records = toy.nullspace_experiment(method, seed=3, **kw)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never used
    assert len(records) == 2 * 3 * 3  # epochs × ceil(25/10) samples × L layers
    assert {r["layer"] for r in records} == {1, 2, 3}
    assert {r["sample"] for r in records} == {0, 10, 20}
    assert {r["epoch"] for r in records} == {1, 2}
    assert all(r["method"] == method for r in records)
    assert all(0.0 <= r["ratio"] <= 1.0 + 1e-6 for r in records)
    # the ratio of the output layer's update is 0: ΔW_L = δ h_{L−1}ᵀ lies in the row space of J
    assert all(r["ratio"] < 1e-3 for r in records if r["layer"] == 3)
    assert records == toy.nullspace_experiment(method, seed=3, **kw)  # seeded, no global RNG
    summary = toy.summarize_ratios(records)
    assert {(s["method"], s["layer"], s["n"]) for s in summary} == {(method, i, 6) for i in (1, 2, 3)}


def test_nullspace_hyperparameters():
    hp = toy.nullspace_hyperparameters("ddtp-linear")
    assert hp["sizes"] == (6, 6, 6, 2) and hp["rule"] == "ddtp-linear" and hp["num_train"] == 400
    hp = toy.nullspace_hyperparameters("dtp-pretrained")
    assert hp["rule"] == "dtp" and hp["fb_activation"] == "tanh" and hp["epochs_fb"] == 30
    with pytest.raises(ValueError, match="valid choices"):
        toy.nullspace_hyperparameters("bp")
    assert toy.output_space_hyperparameters()["sizes"] == (4, 4, 4, 2)


# ---------------------------------------------------------------------------------------- config
def test_toy_config_equals_official_hyperparameters():
    official = official_hyperparameters()["toy_experiments"]
    ours = toy.load_toy_config()

    fig2, off2 = ours["fig2_nullspace"], official["fig2_nullspace"]
    for key, value in fig2.items():
        if key != "methods":
            assert off2["config_fixed"][key] == value, key
    for slug, block in fig2["methods"].items():
        off = off2["methods"][block["official"]]
        assert off["network_type_effective"] == {"dtp": "DTP", "ddtp-linear": "DMLPDTP2"}[block["rule"]]
        for key, value in block.items():
            if key not in ("official", "rule", "paper_name"):
                assert off[key] == value and type(off[key]) is type(value), (slug, key)
    for key in ("lr_fb", "feedback_wd", "sigma", "target_stepsize"):  # every method sets its own
        assert all(key in b for b in fig2["methods"].values())

    s3 = ours["figS3_output_space"]
    gnt = official["figS3_output_space"]["toy_figure_output_space_config_GNT"]["config_as_written"]
    bp = official["figS3_output_space"]["toy_figure_output_space_config_BP"]["config_as_written"]
    assert {k: v for k, v in bp.items() if k != "output_space_plot_bp"} == gnt
    for key, value in s3.items():
        if key != "spec_defaults":
            assert gnt[key] == value, key
    for key in ("size_input", "size_hidden", "num_hidden", "size_output", "no_bias", "random_seed", "num_val"):
        assert key in s3
    # docs/algorithms.md#fig-s3-direction-of-the-output-change values not in the official files
    d = s3["spec_defaults"]
    assert (d["num_train"], d["num_test"], d["lr"], d["gn_damping"], d["grid_points"], d["grid_span"],
            d["contour_levels"], d["initialization"], d["double_precision"]) == (
        1000, 1000, 1e-5, 0.0, 100, 1.1, 9, "xavier_uniform", False)
