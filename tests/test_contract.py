"""The contract every registered rule follows (tp/rules/base.py), checked for each entry of the registry:
keys and shapes of what a step returns, determinism from explicit generators, noise actually used,
independence from the global RNG, and replicas (a list of R generators) == R separate runs.

MLP rules run on a small MLP, the CNN rules (``model = "cnn"``) on a small :class:`tp.nets.cnn.ConvNet` with image
inputs; both networks take a leading replica dimension."""

from __future__ import annotations

import pytest
import torch

import tp
import tp.nets.cnn
from tp.rules import REGISTRY

MLP_RULES = [n for n in REGISTRY if "mlp" in REGISTRY[n].networks]
CNN_RULES = [n for n in REGISTRY if "cnn" in REGISTRY[n].networks]
#: (rule, network) cases: "name" on the MLP, "name@cnn" on the CNN — the same rule object on either
RULES = MLP_RULES + [f"{n}@cnn" for n in CNN_RULES]
NOISY_RULES = [c for c in RULES if REGISTRY[c.partition("@")[0]].trains_feedback]
SIZES = (6, 5, 4, 4, 3)
CNN = {"in_shape": (2, 6, 6), "channels": (2, 3), "fc": 5, "n_out": 3}
B = 4
R = 3


def make(case):
    """The rule of ``case`` with small-network hyperparameters (only those the rule takes) and its small
    network (the CNN for "name@cnn")."""
    name, _, model = case.partition("@")
    values = {"target_stepsize": 0.5, "sigma": 0.1, "size_hidden_fb": 7, "gn_damping": 0.1}
    rule = tp.make_rule(name, **{k: v for k, v in values.items() if k in REGISTRY[name].hyperparameters})
    return rule, (tp.nets.cnn.ConvNet(**CNN) if model == "cnn" else rule.build_network(SIZES))


def data(seed=123, net=None):
    """A minibatch for ``net``'s input: flat (B, n_0) for the MLP, images (B, C, H, W) for the CNN."""
    g = torch.Generator().manual_seed(seed)
    shape = net.layer_shapes[0] if net is not None and hasattr(net, "layer_shapes") else (SIZES[0],)
    n_out = net.sizes[-1] if net is not None else SIZES[-1]
    return (torch.randn(B, *shape, generator=g, dtype=torch.float64),
            torch.randint(0, n_out, (B,), generator=g))


def layer_shape(net, i):
    return net.layer_shapes[i] if hasattr(net, "layer_shapes") else (net.sizes[i],)


def test_every_rule_names_its_network():
    assert set(MLP_RULES) | set(CNN_RULES) == set(REGISTRY)
    assert CNN_RULES == ["bp", "dfa", "ddtp-linear", "ddtp-control", "ddtp-ggn", "gnt", "ggnt"]
    for case in RULES:
        rule, net = make(case)
        assert isinstance(net, tp.nets.cnn.ConvNet if case.endswith("@cnn") else tp.MLP), case


def run(name, init_seed=0, noise_seed=1):
    rule, net = make(name)
    g = torch.Generator().manual_seed(init_seed)
    params = net.init_params(g)
    fb = rule.init_feedback(net, g)
    x, y = data(net=net)
    out = rule.step(net, params, fb, x, y, generator=torch.Generator().manual_seed(noise_seed))
    return rule, net, params, fb, x, y, out


def flat(out):
    """Every tensor of a StepResult under a unique name."""
    d = {"loss": out.loss, "output": out.output}
    d |= {f"fwd_{k}": v for k, v in out.forward_grads.items()}
    d |= {f"fb_{k}": v for k, v in out.feedback_grads.items()}
    d |= {f"target{i}": v for i, v in out.targets.items()}
    d |= {f"fbloss{i}": v for i, v in out.feedback_losses.items()}
    return d


@pytest.mark.parametrize("name", RULES)
def test_keys_shapes_finite(name):
    rule, net, params, fb, x, y, out = run(name)
    assert list(out.forward_grads) == list(params)
    for k, g in out.forward_grads.items():
        assert g.shape == params[k].shape and g.dtype == torch.float64, k
        assert torch.isfinite(g).all(), k
    assert list(out.feedback_grads) == rule.trainable_feedback(fb)
    assert bool(out.feedback_grads) == rule.trains_feedback
    for k, g in out.feedback_grads.items():
        assert g.shape == fb[k].shape, k
        assert torch.isfinite(g).all(), k
    assert set(out.feedback_losses) == set(rule.noise_layers(net))
    assert all(torch.isfinite(v) and v.shape == () for v in out.feedback_losses.values())
    for i, t in out.targets.items():
        assert 1 <= i <= net.L and t.shape == (B, *layer_shape(net, i)), i
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.output.shape == (B, net.sizes[-1])
    # the forward update does not depend on the feedback noise
    alone = rule.forward_update(net, params, fb, x, y)
    for k, g in alone.forward_grads.items():
        assert torch.equal(g, out.forward_grads[k]), k


@pytest.mark.parametrize("name", RULES)
def test_same_seeds_bit_identical(name):
    a, b = flat(run(name)[-1]), flat(run(name)[-1])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", NOISY_RULES)
def test_noise_seed_changes_feedback_grads_only(name):
    out1, out2 = run(name, noise_seed=1)[-1], run(name, noise_seed=2)[-1]
    for k in out1.forward_grads:
        assert torch.equal(out1.forward_grads[k], out2.forward_grads[k]), k
    for k in out1.feedback_grads:
        if k[0] == "Q":
            assert not torch.allclose(out1.feedback_grads[k], out2.feedback_grads[k]), k


@pytest.mark.parametrize("name", NOISY_RULES)
def test_generator_noise_is_sigma_times_standard_normal(name):
    """Drawn noise = σ·N(0, I) from the generator, one draw per block (blocks in ``noise_layers``
    order), so an explicit injection of the same draws gives the same gradients."""
    rule, net, params, fb, x, y, out = run(name, noise_seed=5)
    g = torch.Generator().manual_seed(5)
    h = net.forward(params, x).h  # (the CNN's conv blocks: noise on the max-pool outputs, (B, C, H, W))
    noise = {k: rule.hp["sigma"] * torch.randn(h[j].shape, generator=g, dtype=torch.float64)
             for k, j in rule.noise_layers(net).items()}
    injected = rule.step(net, params, fb, x, y, noise=noise)
    for k, v in injected.feedback_grads.items():
        assert torch.equal(v, out.feedback_grads[k]), k


@pytest.mark.parametrize("name", [n for n in RULES if n not in NOISY_RULES])
def test_rules_without_feedback_training_need_no_generator(name):
    rule, net, params, fb, x, y, out = run(name)
    plain = rule.step(net, params, fb, x, y)
    assert plain.feedback_grads == {} and plain.feedback_losses == {}
    for k in out.forward_grads:
        assert torch.equal(plain.forward_grads[k], out.forward_grads[k]), k


@pytest.mark.parametrize("name", RULES)
def test_global_rng_untouched(name):
    state = torch.random.get_rng_state()
    run(name)
    rule, net = make(name)
    gens = [torch.Generator().manual_seed(r) for r in range(2)]  # replicas too
    x, y = data(net=net)
    rule.step(net, net.init_params(gens), rule.init_feedback(net, gens), x, y,
              generator=[torch.Generator().manual_seed(r) for r in range(2)])
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("name", RULES)
def test_replicas_equal_separate_runs(name):
    rule, net = make(name)
    gens = [torch.Generator().manual_seed(r) for r in range(R)]
    params = net.init_params(gens)
    fb = rule.init_feedback(net, gens)
    x, y = data(net=net)
    out = flat(rule.step(net, params, fb, x, y,
                         generator=[torch.Generator().manual_seed(100 + r) for r in range(R)]))
    for r in range(R):
        _, _, p1, fb1, _, _, single = run(name, init_seed=r, noise_seed=100 + r)
        for k in p1:
            assert torch.equal(params[k][r], p1[k]), f"replica {r} param {k}"
        for k in fb1:
            assert torch.equal(fb[k][r], fb1[k]), f"replica {r} feedback {k}"
        single = flat(single)
        assert out.keys() == single.keys()
        for k, v in single.items():
            assert out[k].shape == (R, *v.shape), k
            err = (out[k][r] - v).abs().max()
            scale = v.abs().max()
            assert err <= 1e-12 * scale or err < 1e-15, f"replica {r} {k}: error {err:.2e} (scale {scale:.2e})"


@pytest.mark.parametrize("name", NOISY_RULES)
def test_feedback_gradients_with_and_without_the_step_cache_agree(name):
    """A training step reuses the forward update's clean feedback values (``StepResult.cache``); a
    feedback-only step recomputes them: both give the same gradients."""
    rule, net, params, fb, x, y, out = run(name, noise_seed=7)
    fwd = net.forward(params, x)
    cached = rule.forward_update(net, params, fb, fwd, y).cache
    with_cache, _ = rule.feedback_gradients(net, params, fb, fwd, generator=torch.Generator().manual_seed(7),
                                            cache=cached)
    without, _ = rule.feedback_gradients(net, params, fb, x, generator=torch.Generator().manual_seed(7))
    assert set(with_cache) == set(without) == set(out.feedback_grads)
    for k in without:
        assert torch.equal(with_cache[k], out.feedback_grads[k]), k
        torch.testing.assert_close(without[k], with_cache[k], rtol=1e-13, atol=0)
