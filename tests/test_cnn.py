"""The CNN of docs/algorithms.md#the-cnn-table-3 (tp.nets.cnn.ConvNet) and the rules that train it (BP, DFA, DDTP-linear,
DDTP-control: the same rule classes as on the MLP) against slow dense references.

The references below never call autograd through ``conv2d`` / ``max_pool2d``: the convolution is unfolded
into a matrix product (``F.unfold``) and the max-pool is evaluated window by window on an explicitly
(−∞-)padded map, with its gradient routed to the arg-max positions by a scatter-add.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tp.nets.cnn import ConvForward, ConvNet
from tp.errors import HyperparameterError
from tp.rules import BP as CNNBP
from tp.rules.ddtp import DDTPControl as CNNDDTPControl, DDTPLinear as CNNDDTPLinear
from tp.rules.dfa import DFA as CNNDFA

DT = torch.float64
B = 3
BETA, SIGMA = 0.3, 0.05


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@pytest.fixture(scope="module")
def setup():
    net = ConvNet(in_shape=(3, 8, 8), channels=(2, 3), fc=5, n_out=4, dtype=DT)
    g = torch.Generator().manual_seed(0)
    params = net.init_params(g)
    # non-zero biases so that their gradients are exercised
    for k in ("b1", "b2", "b3", "b4"):
        params[k] = 0.1 * torch.randn(params[k].shape, generator=g, dtype=DT)
    x = torch.randn(B, 3, 8, 8, generator=g, dtype=DT)
    y = torch.tensor([0, 3, 1])
    return net, params, x, y


# ------------------------------------------------------------------------------ dense references
def ref_conv(x, W, b):
    """conv2d(5×5, stride 1, pad 2) as W_mat @ unfold(x): returns (a (B,C,H,W), patches (B, C_in·25, H·W))."""
    Bn, _, H, Wd = x.shape
    X = F.unfold(x, kernel_size=5, padding=2)
    A = W.reshape(W.shape[0], -1) @ X + b[:, None]
    return A.reshape(Bn, W.shape[0], H, Wd), X


def ref_pool(t):
    """MaxPool2d(3, 2, 1) window by window: (pooled (B,C,Ho,Wo), flat arg-max index into H·W)."""
    Bn, C, H, Wd = t.shape
    Ho, Wo = (H - 1) // 2 + 1, (Wd - 1) // 2 + 1
    out = torch.empty(Bn, C, Ho, Wo, dtype=t.dtype)
    idx = torch.empty(Bn, C, Ho, Wo, dtype=torch.long)
    for i in range(Ho):
        for j in range(Wo):
            r0, r1 = max(2 * i - 1, 0), min(2 * i + 2, H)
            c0, c1 = max(2 * j - 1, 0), min(2 * j + 2, Wd)
            win = t[:, :, r0:r1, c0:c1].reshape(Bn, C, -1)
            m = win.argmax(-1)
            out[:, :, i, j] = win.gather(-1, m[..., None])[..., 0]
            width = c1 - c0
            idx[:, :, i, j] = (r0 + m // width) * Wd + c0 + m % width
    return out, idx


def ref_forward(net, params, x):
    """Independent forward: returns dict with a, t, h, idx, X (patches) per conv block and h3, h4."""
    r = {"h0": x}
    h = x
    for k in (1, 2):
        a, X = ref_conv(h, params[f"W{k}"], params[f"b{k}"])
        t = torch.tanh(a)
        _, idx = ref_pool(t.detach())
        h = t.flatten(2).gather(2, idx.flatten(2)).reshape(idx.shape)  # differentiable pooling by index
        r.update({f"a{k}": a, f"t{k}": t, f"h{k}": h, f"idx{k}": idx, f"X{k}": X})
    a3 = h.flatten(1) @ params["W3"].T + params["b3"]
    r["a3"], r["h3"] = a3, torch.tanh(a3)
    r["h4"] = r["h3"] @ params["W4"].T + params["b4"]
    return r


def ref_conv_grad(r, k, W, target):
    """∂/∂(W_k, b_k) of mean (h_k − ĥ_k)²: explicit max-pool routing, tanh′ and the unfolded conv."""
    h, t, idx, X = r[f"h{k}"], r[f"t{k}"], r[f"idx{k}"], r[f"X{k}"]
    dh = 2.0 * (h - target) / h.numel()
    dt = torch.zeros_like(t.flatten(2)).scatter_add_(2, idx.flatten(2), dh.flatten(2))
    da = dt * (1.0 - t.flatten(2) ** 2)  # (B, C, H·W)
    gW = torch.einsum("bop,bip->oi", da, X).reshape(W.shape)
    return gW, da.sum((0, 2))


def ref_fc_grad(h_prev, a_h, target, tanh):
    hi = a_h
    d = 2.0 * (hi - target) * ((1.0 - hi ** 2) if tanh else 1.0)
    return d.T @ h_prev / h_prev.shape[0], d.mean(0)


def ref_direct_update(net, params, fb, x, y, beta):
    """Targets ĥ_k = h_k + reshape(Q_k(ĥ_4 − h_4)) and all forward gradients, dense."""
    with torch.no_grad():
        r = ref_forward(net, params, x)
        h4 = r["h4"]
        e = torch.softmax(h4, 1) - F.one_hot(y, 4).to(DT)
        delta = -(beta / h4.shape[0]) * e  # ĥ_4 − h_4
        T = {4: h4 + delta}
        for k in (1, 2, 3):
            T[k] = r[f"h{k}"] + (delta @ fb[f"Q{k}"].T).reshape(r[f"h{k}"].shape)
        G = {}
        for k in (1, 2):
            G[f"W{k}"], G[f"b{k}"] = ref_conv_grad(r, k, params[f"W{k}"], T[k])
        G["W3"], G["b3"] = ref_fc_grad(r["h2"].flatten(1), r["h3"], T[3], True)
        G["W4"], G["b4"] = ref_fc_grad(r["h3"], r["h4"], T[4], False)
    return T, G


# ---------------------------------------------------------------------------------------- network
def test_default_architecture_and_init():
    net = ConvNet()
    assert net.layer_shapes == ((3, 32, 32), (32, 16, 16), (64, 8, 8), (512,), (10,))
    assert net.sizes == (3072, 8192, 4096, 512, 10) and net.L == 4 and net.bias == (True,) * 4
    p = net.init_params(torch.Generator().manual_seed(1))
    assert {k: tuple(v.shape) for k, v in p.items()} == net.param_shapes()
    assert p["W2"].shape == (64, 32, 5, 5) and p["W3"].shape == (512, 4096)
    assert abs(p["W2"].std().item() / math.sqrt(2 / (32 * 25 + 64 * 25)) - 1) < 0.02
    assert abs(p["W3"].std().item() / math.sqrt(2 / (4096 + 512)) - 1) < 0.02
    assert all(not p[f"b{i}"].any() for i in range(1, 5))
    fb = CNNDDTPLinear(target_stepsize=0.1, sigma=0.1).init_feedback(net, torch.Generator().manual_seed(2))
    assert fb["Q1"].shape == (8192, 10) and fb["Q2"].shape == (4096, 10) and fb["Q3"].shape == (512, 10)
    assert abs(fb["Q1"].std().item() / math.sqrt(2 / (8192 + 10)) - 1) < 0.02
    assert not fb["d3"].any() and set(fb) == {"Q1", "Q2", "Q3", "d3"}
    one = net.init_params([torch.Generator().manual_seed(1)])  # a replica dimension of 1: the same draws
    assert all(torch.equal(one[k][0], p[k]) for k in p)


def test_forward_matches_unfold_reference(setup):
    net, params, x, y = setup
    fwd = net.forward(params, x)
    r = ref_forward(net, params, x)
    assert isinstance(fwd, ConvForward) and fwd.h[1].shape == (B, 2, 4, 4) and fwd.h[2].shape == (B, 3, 2, 2)
    for k in (1, 2):
        assert rel(fwd.a[k], r[f"a{k}"]) < 1e-12
        assert rel(fwd.h[k], r[f"h{k}"]) < 1e-12
        assert torch.equal(fwd.pool_idx[k], r[f"idx{k}"])
    assert rel(fwd.h[4], r["h4"]) < 1e-12
    for k in (0, 1, 2, 3):
        assert rel(net.forward_from(params, k, fwd.h[k]), fwd.output) < 1e-14


def test_maxpool_gradient_routing():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(2, 3, 7, 8, generator=g, dtype=DT, requires_grad=True)
    w = torch.randn(2, 3, 4, 4, generator=g, dtype=DT)
    pooled = F.max_pool2d(t, 3, 2, 1)
    (grad,) = torch.autograd.grad((w * pooled).sum(), t)
    ref_out, idx = ref_pool(t.detach())
    assert torch.equal(pooled.detach(), ref_out)
    expected = torch.zeros(2, 3, 56, dtype=DT).scatter_add_(2, idx.flatten(2), w.flatten(2)).reshape(t.shape)
    assert torch.equal(grad != 0, expected != 0)  # lands on the arg-max positions only
    assert rel(grad, expected) < 1e-14


# ------------------------------------------------------------------------------------------ rules
@pytest.mark.parametrize("cls,hp", [(CNNDDTPLinear, {"target_stepsize": BETA, "sigma": SIGMA}),
                                    (CNNDDTPControl, {"target_stepsize": BETA, "sigma": SIGMA}),
                                    (CNNDFA, {})])
def test_targets_and_forward_updates_match_dense_reference(setup, cls, hp):
    net, params, x, y = setup
    rule = cls(**hp)
    fb = rule.init_feedback(net, torch.Generator().manual_seed(4))
    fb["d3"] = 0.1 * torch.ones_like(fb["d3"])  # the bias cancels in the difference correction
    res = rule.forward_update(net, params, fb, x, y)
    T, G = ref_direct_update(net, params, fb, x, y, rule.hp["target_stepsize"])
    assert sorted(res.targets) == [1, 2, 3, 4]
    for k in T:
        assert res.targets[k].shape == T[k].shape
        assert rel(res.targets[k] - net.forward(params, x).h[k], T[k] - ref_forward(net, params, x)[f"h{k}"]) < 1e-10
        assert rel(res.targets[k], T[k]) < 1e-12
    assert list(res.forward_grads) == list(net.param_shapes())
    for k in G:
        assert rel(res.forward_grads[k], G[k]) < 1e-10, k


def test_dfa_default_beta_and_frozen_feedback(setup):
    net, params, x, y = setup
    rule = CNNDFA()
    assert rule.hp["target_stepsize"] == 1.0 and not rule.trains_feedback and rule.has_feedback
    fb = rule.init_feedback(net, torch.Generator().manual_seed(5))
    assert rule.trainable_feedback(fb) == [] and rule.noise_layers(net) == {}
    res = rule.step(net, params, fb, x, y)
    assert res.feedback_grads == {} and res.reconstruction_loss is None
    # ĥ_k = h_k − (1/B) reshape(Q_k e)
    fwd = net.forward(params, x)
    e = torch.softmax(fwd.output, 1) - F.one_hot(y, 4).to(DT)
    for k in (1, 2, 3):
        assert rel(res.targets[k] - fwd.h[k], -(e @ fb[f"Q{k}"].T).reshape(fwd.h[k].shape) / B) < 1e-10


def test_bp_matches_autograd_on_unfold_reference(setup):
    net, params, x, y = setup
    res = CNNBP().step(net, params, {}, x, y)
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = F.cross_entropy(ref_forward(net, p, x)["h4"], y)
    grads = torch.autograd.grad(loss, list(p.values()))
    assert list(res.forward_grads) == list(p)
    for (k, _), gk in zip(p.items(), grads):
        assert rel(res.forward_grads[k], gk) < 1e-10, k
    assert abs(res.loss.item() - loss.item()) < 1e-12 and res.targets == {}


def _exact_feedback_losses(net, params, fb, x, noise, sigma, kind):
    """The docs/algorithms.md#cnn-feedback-losses losses as autograd-able functions of the feedback parameters."""
    fbg = {k: v.clone().requires_grad_(True) for k, v in fb.items()}
    with torch.no_grad():
        r = ref_forward(net, params, x)
    losses = {}
    for k in (1, 2, 3):
        h = r[f"h{k}"]
        hn = h + noise[k]
        with torch.no_grad():
            yn = net.forward_from(params, k, hn)

        def g(z, k=k):
            u = z @ fbg[f"Q{k}"].T + (fbg["d3"] if k == 3 else 0.0)
            return u.reshape(h.shape)

        if kind == "drl":
            rr = g(yn) + h - g(r["h4"])
            losses[k] = ((rr - hn) ** 2).mean() / sigma ** 2
        else:
            losses[k] = ((g(yn) - hn) ** 2).mean()
    return fbg, losses


@pytest.mark.parametrize("cls,kind", [(CNNDDTPLinear, "drl"), (CNNDDTPControl, "control")])
def test_feedback_gradients_match_autograd(setup, cls, kind):
    net, params, x, y = setup
    rule = cls(target_stepsize=BETA, sigma=SIGMA)
    fb = rule.init_feedback(net, torch.Generator().manual_seed(6))
    fb["d3"] = 0.2 * torch.randn(fb["d3"].shape, generator=torch.Generator().manual_seed(7), dtype=DT)
    fwd = net.forward(params, x)
    g = torch.Generator().manual_seed(8)
    noise = {k: SIGMA * torch.randn(fwd.h[k].shape, generator=g, dtype=DT) for k in (1, 2, 3)}
    grads, losses = rule.feedback_gradients(net, params, fb, x, noise=noise)
    assert sorted(grads) == sorted(rule.trainable_feedback(fb)) == ["Q1", "Q2", "Q3", "d3"]
    fbg, ref_losses = _exact_feedback_losses(net, params, fb, x, noise, SIGMA, kind)
    for k in (1, 2, 3):
        assert abs(losses[k].item() / ref_losses[k].item() - 1) < 1e-10
        names = [f"Q{k}"] + (["d3"] if k == 3 else [])
        auto = torch.autograd.grad(ref_losses[k], [fbg[n] for n in names])
        for n, a in zip(names, auto):
            assert grads[n].shape == fb[n].shape
            if kind == "drl" and n == "d3":
                assert grads[n].abs().max() < 1e-12 and a.abs().max() < 1e-12
            else:
                assert rel(grads[n], a) < 1e-10, n


@pytest.mark.parametrize("k", [3, 1])
def test_drl_drives_feedback_to_pseudo_inverse(k):
    """DRL with one input (repeated), small σ and plain GD: Q_k → J⁺ with J = ∂h_4/∂h_k."""
    net = ConvNet(in_shape=(3, 8, 8), channels=(2, 3), fc=5, n_out=4, dtype=DT)
    gen = torch.Generator().manual_seed(11)
    params = net.init_params(gen)
    x = torch.randn(1, 3, 8, 8, generator=gen, dtype=DT).expand(64, 3, 8, 8)
    y = torch.zeros(64, dtype=torch.long)
    sigma = 1e-4
    rule = CNNDDTPLinear(target_stepsize=0.1, sigma=sigma)
    fb = rule.init_feedback(net, gen)
    fwd = net.forward(params, x)
    J = torch.autograd.functional.jacobian(lambda h: net.forward_from(params, k, h[None])[0], fwd.h[k][0])
    J = J.reshape(net.n_out, -1)  # (n_L, n_k)
    target = torch.linalg.pinv(J)
    lam = torch.linalg.eigvalsh(J @ J.T)
    lr = 0.9 * net.sizes[k] / (2 * lam.max().item())  # Hessian of the expected DRL: (2/n_k)·JJᵀ
    steps = int(min(4000, 6 * lam.max().item() / lam.min().item()))
    err0 = rel(fb[f"Q{k}"], target)
    noise_gen = torch.Generator().manual_seed(12)
    for _ in range(steps):
        grads, _ = rule.feedback_gradients(net, params, fb, fwd, generator=noise_gen)
        fb[f"Q{k}"] = fb[f"Q{k}"] - lr * grads[f"Q{k}"]
    err = rel(fb[f"Q{k}"], target)
    assert err < 0.1 * err0 and err < 0.1, (err0, err, steps)


@pytest.mark.parametrize("cls,hp", [(CNNBP, {}), (CNNDFA, {}),
                                    (CNNDDTPLinear, {"target_stepsize": BETA, "sigma": SIGMA}),
                                    (CNNDDTPControl, {"target_stepsize": BETA, "sigma": SIGMA})])
def test_contract(setup, cls, hp):
    net, params, x, y = setup
    rule = cls(**hp)

    def run():
        fb = rule.init_feedback(net, torch.Generator().manual_seed(20)) if rule.has_feedback else {}
        return fb, rule.step(net, params, fb, x, y, generator=torch.Generator().manual_seed(21))

    fb, a = run()
    _, b = run()
    assert list(a.forward_grads) == list(params)
    for k, v in a.forward_grads.items():
        assert v.shape == params[k].shape and v.dtype == DT and torch.isfinite(v).all()
        assert torch.equal(v, b.forward_grads[k])
    assert sorted(a.feedback_grads) == sorted(rule.trainable_feedback(fb))
    for k, v in a.feedback_grads.items():
        assert v.shape == fb[k].shape and torch.isfinite(v).all() and torch.equal(v, b.feedback_grads[k])
    for k in a.feedback_losses:
        assert torch.equal(a.feedback_losses[k], b.feedback_losses[k])
    assert torch.isfinite(a.loss) and a.output.shape == (B, 4)
    if rule.trains_feedback:
        assert rule.noise_layers(net) == {1: 1, 2: 2, 3: 3}
        with pytest.raises(ValueError):
            rule.feedback_gradients(net, params, fb, x)  # no generator, no noise


def test_hyperparameters_required():
    for cls in (CNNDDTPLinear, CNNDDTPControl):
        with pytest.raises(HyperparameterError):
            cls(target_stepsize=0.1)
    with pytest.raises(HyperparameterError):
        CNNBP(sigma=0.1)
    names = {c.name for c in (CNNBP, CNNDFA, CNNDDTPLinear, CNNDDTPControl)}
    assert names == {"bp", "dfa", "ddtp-linear", "ddtp-control"}  # one name per method, on either network
    assert all("cnn" in c.networks and "mlp" in c.networks for c in (CNNBP, CNNDFA, CNNDDTPLinear, CNNDDTPControl))
