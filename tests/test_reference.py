"""Every rule against the slow per-sample reference of ``tests/reference.py``
(docs/algorithms.md#targets-and-the-forward-update, docs/algorithms.md#the-learning-rules).

Small random untrained float64 networks with random (non-zero) biases and feedback biases, explicit
noise; targets (as displacements ĥ − h), forward gradients, feedback gradients and feedback losses must
agree to ≤ 1e-10 relative in the max norm.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import reference as ref
import tp
from cases import ZERO_ATOL, assert_close

SIZES = (7, 6, 5, 4, 3)
B = 5


def random_case(rule, sizes=SIZES, hidden="tanh", loss="cross_entropy", seed=0, batch=B):
    """Network, parameters (random biases), feedback (random d), data and σ-scaled noise."""
    g = torch.Generator().manual_seed(seed)
    net = rule.build_network(sizes, hidden_activation=hidden, loss=loss)
    params = net.init_params(g)
    for k in params:
        if k[0] == "b":
            params[k] = 0.3 * torch.randn(params[k].shape, generator=g, dtype=torch.float64)
    fb = rule.init_feedback(net, g)
    for k in fb:
        if k[0] == "d":
            fb[k] = 0.3 * torch.randn(fb[k].shape, generator=g, dtype=torch.float64)
    x = torch.randn(batch, sizes[0], generator=g, dtype=torch.float64)
    if loss == "cross_entropy":
        y = torch.randint(0, sizes[-1], (batch,), generator=g)
    else:
        y = torch.randn(batch, sizes[-1], generator=g, dtype=torch.float64)
    sigma = rule.hp.get("sigma", 0.0)
    fwd = net.forward(params, x)
    noise = {k: sigma * torch.randn(fwd.h[j].shape, generator=g, dtype=torch.float64)
             for k, j in rule.noise_layers(net).items()}
    rnet = ref.Net(list(sizes), list(net.activations), loss)
    return net, params, fb, x, y, noise, rnet


# (rule, hyperparameters, hidden activation, loss)
TP_CASES = [
    ("dtp", {}, "tanh", "cross_entropy"),
    ("dtp", {"fb_activation": "linear"}, "tanh", "cross_entropy"),
    ("dtp", {}, "tanh", "mse"),
    ("dtpdrl", {}, "tanh", "cross_entropy"),
    ("dtpdrl", {}, "leaky_tanh", "cross_entropy"),
    ("ddtp-linear", {}, "tanh", "cross_entropy"),
    ("ddtp-linear", {}, "tanh", "mse"),
    ("ddtp-control", {}, "tanh", "cross_entropy"),
    ("ddtp-control", {}, "leaky_tanh", "mse"),
    ("ddtp-rhl", {"size_hidden_fb": 8}, "tanh", "cross_entropy"),
    ("ddtp-rhl-rec", {"size_hidden_fb": 8}, "tanh", "cross_entropy"),
    ("ddtp-rhl-rec", {"size_hidden_fb": 8}, "leaky_tanh", "mse"),
    ("dfa", {}, "tanh", "cross_entropy"),
    ("ddtp-ggn", {}, "tanh", "cross_entropy"),
    ("ddtp-ggn", {"hessian_damping": 0.05}, "leaky_tanh", "cross_entropy"),
    ("ddtp-ggn", {"hessian_damping": 0.3}, "tanh", "mse"),
]


@pytest.mark.parametrize("name,hp,hidden,loss", TP_CASES,
                         ids=[f"{n}-{'-'.join(map(str, h.values()))}-{a}-{l}".replace("--", "-")
                              for n, h, a, l in TP_CASES])
def test_rule_matches_reference(name, hp, hidden, loss):
    check_against_reference(name, hp, hidden, loss)


def test_a_new_rule_of_a_known_form_needs_no_change_of_the_reference(monkeypatch):
    """A rule registered here — DDTP-linear's feedback with ψ = tanh by default, under its own name — is checked
    against the float64 reference through the form it declares alone (docs/architecture.md, "Adding a learning
    rule"): no line of tests/reference.py names a rule."""
    from tp.rules.ddtp import DDTPLinear

    class DDTPTanh(DDTPLinear):
        name, paper_name = "ddtp-tanh", "DDTP-tanh"
        hyperparameters = {**DDTPLinear.hyperparameters, "fb_activation": "tanh"}

    monkeypatch.setitem(tp.REGISTRY, "ddtp-tanh", DDTPTanh)
    assert ref.form_of(DDTPTanh) == ref.Form("direct", "drl", fb_activation="tanh")
    check_against_reference("ddtp-tanh", {}, "tanh", "cross_entropy")
    names = set(tp.REGISTRY) | {"ddtp-tanh"}
    assert not any(f'"{n}"' in Path(ref.__file__).read_text() for n in names)


def check_against_reference(name, hp, hidden, loss):
    """The rule's targets, forward gradients, feedback gradients and losses on a random case against the
    reference of the form it declares."""
    beta, sigma = 0.7, 0.15
    declared = tp.REGISTRY[name].hyperparameters  # (DFA has no σ: its feedback is fixed)
    kw = {"target_stepsize": beta} | ({"sigma": sigma} if "sigma" in declared else {}) | hp
    rule = tp.make_rule(name, **kw)
    form = ref.form_of(type(rule))  # what the reference computes: the rule's declared form, not its name
    net, params, fb, x, y, noise, rnet = random_case(rule, hidden=hidden, loss=loss)
    out = rule.step(net, params, fb, x, y, noise=noise)
    fb_act, delta = hp.get("fb_activation"), hp.get("hessian_damping", 0.0)

    h = net.forward(params, x).h
    ref_targets = ref.tp_targets(form, rnet, params, fb, x, y, beta, fb_act, delta)
    ref_h = ref.forward_all(rnet, params, x)
    assert sorted(out.targets) == sorted(ref_targets) == list(range(1, net.L + 1))
    for i, t in ref_targets.items():
        ref_disp = t - torch.stack([hb[i] for hb in ref_h])
        assert ref_disp.abs().max() > 1e-6  # the displacement is resolved, not lost to rounding
        assert_close(out.targets[i] - h[i], ref_disp, f"{name}: ĥ{i} − h{i}")

    ref_grads = ref.local_loss_gradients(rnet, params, x, ref_targets)
    assert sorted(out.forward_grads) == sorted(ref_grads) == sorted(params)
    for k, g in ref_grads.items():
        assert_close(out.forward_grads[k], g, f"{name}: grad {k}")

    if not rule.trains_feedback:
        assert out.feedback_grads == {} and out.feedback_losses == {}
        return
    ref_fb_grads, ref_losses = ref.feedback_gradients(form, rnet, params, fb, x, noise, sigma, fb_act, y, delta)
    assert sorted(out.feedback_grads) == sorted(ref_fb_grads) == sorted(rule.trainable_feedback(fb))
    for k, g in ref_fb_grads.items():
        assert_close(out.feedback_grads[k], g, f"{name}: feedback grad {k}")
    assert sorted(out.feedback_losses) == sorted(ref_losses)
    for k, v in ref_losses.items():
        assert_close(out.feedback_losses[k], v, f"{name}: feedback loss {k}")


def test_ddtp_linear_feedback_bias_gradient_is_zero():
    """For linear g_i the bias cancels in the DRL (docs/algorithms.md#ddtp-linear d): d_i gets an exactly-zero gradient,
    while Q_i's gradient does not vanish."""
    rule = tp.make_rule("ddtp-linear", target_stepsize=0.5, sigma=0.2)
    net, params, fb, x, y, noise, _ = random_case(rule, seed=3)
    grads = rule.step(net, params, fb, x, y, noise=noise).feedback_grads
    assert {k for k in grads if k[0] == "d"} == {f"d{i}" for i in range(1, net.L - 1)}
    for k, g in grads.items():
        assert (g.abs().max() < ZERO_ATOL) == (k[0] == "d"), k


def test_dtp_sigma_floor():
    """DTP's loss uses 1/max(σ, 0.02)²: below the floor the gradients no longer scale like 1/σ²."""
    name, sigma = "dtp", 0.005
    rule = tp.make_rule(name, target_stepsize=0.5, sigma=sigma)
    net, params, fb, x, y, noise, rnet = random_case(rule, seed=4)
    grads, losses = rule.feedback_gradients(net, params, fb, x, noise=noise)
    ref_grads, ref_losses = ref.feedback_gradients(ref.form_of(type(rule)), rnet, params, fb, x, noise, sigma)
    for k, g in ref_grads.items():
        assert_close(grads[k], g, f"dtp σ<0.02: feedback grad {k}")
    for k, v in ref_losses.items():
        assert_close(losses[k], v, f"dtp σ<0.02: loss {k}")


# ----------------------------------------------------------------------------------------------- BP
@pytest.mark.parametrize("loss,hidden", [("cross_entropy", "tanh"), ("mse", "tanh"),
                                         ("cross_entropy", "leaky_tanh")])
def test_bp_equals_autograd(loss, hidden):
    rule = tp.make_rule("bp")
    net, params, fb, x, y, _, rnet = random_case(rule, hidden=hidden, loss=loss, seed=1)
    out = rule.step(net, params, fb, x, y)
    ref_grads = ref.bp_gradients(rnet, params, x, y)
    assert sorted(out.forward_grads) == sorted(ref_grads)
    for k, g in ref_grads.items():
        assert_close(out.forward_grads[k], g, f"bp {loss}: grad {k}")
    # the loss value too: PyTorch's CrossEntropyLoss / MSELoss (mean)
    outputs = torch.stack([hs[-1] for hs in ref.forward_all(rnet, params, x)])
    assert_close(out.loss, rnet.minibatch_loss(outputs, y), "bp loss")


# ---------------------------------------------------------------------------------------------- DFA
def test_dfa_dense_formula():
    """docs/algorithms.md#dfa, docs/algorithms.md#the-output-layer: ΔW_i = (1/B) Σ_b [2 φ′(a_i^b) ⊙ (β/B) Q_i e^b]
    h_{i−1}^bᵀ for hidden layers,
    ΔW_L = (1/B) Σ_b (2β/B) e^b h_{L−1}^bᵀ for the output layer, e^b = softmax(h_L^b) − onehot(y_b)."""
    beta = 0.8
    rule = tp.make_rule("dfa", target_stepsize=beta)
    net, params, fb, x, y, _, _ = random_case(rule, seed=2)
    out = rule.step(net, params, fb, x, y)
    L, nB = net.L, x.shape[0]
    expected = {k: torch.zeros_like(v) for k, v in params.items()}
    for b in range(nB):
        h, a = [x[b]], [None]
        for i in range(1, L + 1):
            a.append(params[f"W{i}"] @ h[-1] + (params[f"b{i}"] if f"b{i}" in params else 0.0))
            h.append(torch.tanh(a[-1]) if i < L else a[-1])
        e = torch.softmax(h[L], 0) - torch.eye(net.sizes[-1], dtype=torch.float64)[y[b]]
        for i in range(1, L + 1):
            delta = 2 * (beta / nB) * (e if i == L else (1 - torch.tanh(a[i]) ** 2) * (fb[f"Q{i}"] @ e))
            expected[f"W{i}"] += torch.outer(delta, h[i - 1]) / nB
            if f"b{i}" in params:
                expected[f"b{i}"] += delta / nB
    # no bias on the last hidden layer (docs/algorithms.md#no-bias-in-the-last-hidden-layer)
    assert "b3" not in params and "d3" not in fb
    assert sorted(out.forward_grads) == sorted(expected)
    for k, v in expected.items():
        assert_close(out.forward_grads[k], v, f"dfa {k}")


# ---------------------------------------------------------------------------------------------- GNT
# layer 1 (width 3) is narrower than n_L = 4: the (JᵀJ + λI)⁻¹Jᵀ branch; layers 2, 3 are wider
GNT_SIZES = (6, 3, 7, 5, 4)


@pytest.mark.parametrize("damping", [0.0, 0.1, 2.0, [0.0, 0.3, 1e-3, 0.5]],
                         ids=["lam0", "lam0.1", "lam2", "per-layer"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gnt_matches_reference(damping, loss):
    rule = tp.make_rule("gnt", gn_damping=damping)
    net, params, fb, x, y, _, rnet = random_case(rule, sizes=GNT_SIZES, loss=loss, seed=5)
    out = rule.forward_update(net, params, fb, x, y)
    h = net.forward(params, x).h
    ref_targets = ref.gnt_targets(rnet, params, x, y, damping)
    ref_h = ref.forward_all(rnet, params, x)
    assert sorted(out.targets) == sorted(ref_targets) == list(range(1, net.L + 1))
    for i, t in ref_targets.items():
        ref_disp = t - torch.stack([hb[i] for hb in ref_h])
        assert_close(out.targets[i] - h[i], ref_disp, f"gnt ĥ{i} − h{i}")
    ref_grads = ref.local_loss_gradients(rnet, params, x, ref_targets)
    assert sorted(out.forward_grads) == sorted(ref_grads)
    for k, g in ref_grads.items():
        assert_close(out.forward_grads[k], g, f"gnt grad {k}")


def test_gnt_ignores_beta_and_output_layer_is_damped_gradient():
    """docs/algorithms.md#gnt-training-ignores-the-target-step-size and #gnt: the output displacement is
    ∂ℒ/∂h_L/(1+λ), no β."""
    lam = 0.25
    rule = tp.make_rule("gnt", gn_damping=lam)
    net, params, fb, x, y, _, rnet = random_case(rule, sizes=GNT_SIZES, seed=6)
    out = rule.forward_update(net, params, fb, x, y)
    h_L = net.forward(params, x).output
    assert_close(h_L - out.targets[net.L], ref.output_gradients(rnet, params, x, y) / (1 + lam), "Δ_L")
