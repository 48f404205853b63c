"""The CNN with a replica dimension (issue 12): R seeds of one CNN configuration trained together equal R
single runs.

Reference twin: the same rule on one network at a time, each from its own generators.  The block computes
every replica's convolutions in one grouped call (tp.nets.conv), so the two agree up to rounding; checked in
float64 to 1e-9 relative, at the rule level (targets, forward and feedback gradients, feedback losses) and
through ``tp.training.train_seeds`` (metrics, final parameters and optimiser state, generator states).
"""

from __future__ import annotations

import math

import pytest
import torch

from test_replicas import assert_same_run
from tp.nets.cnn import ConvNet
from tp.config import resolve_config, rule_of
from tp.data import DataSplits, synthetic_classification, validation_split
from tp.rules import make_rule
from tp.training import run_generators, train, train_seeds

DT = torch.float64
METHODS = ["bp", "dfa", "ddtp-linear", "ddtp-control"]
HP = {"bp": {}, "dfa": {}, "ddtp-linear": {"target_stepsize": 0.3, "sigma": 0.05},
      "ddtp-control": {"target_stepsize": 0.3, "sigma": 0.05}}
R, B = 3, 4
SHAPE = (3, 8, 8)


def cnn_rule(method):
    return make_rule(rule_of(method, "cifar10-cnn"), **HP[method])


def small_net():
    return ConvNet(in_shape=SHAPE, channels=(2, 3), fc=5, n_out=4, dtype=DT)


def assert_rel(a, b, what, rtol=1e-9):
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err, scale = (a - b).abs().max().item(), b.abs().max().item()
    assert err <= rtol * scale or err < 1e-15, f"{what}: error {err:.2e} (scale {scale:.2e})"


def flat(res):
    d = {"loss": res.loss, "output": res.output}
    d |= {f"fwd_{k}": v for k, v in res.forward_grads.items()}
    d |= {f"fb_{k}": v for k, v in res.feedback_grads.items()}
    d |= {f"target{i}": v for i, v in res.targets.items()}
    d |= {f"fbloss{i}": v for i, v in res.feedback_losses.items()}
    return d


@pytest.mark.parametrize("shared_input", [False, True], ids=["own-batches", "shared-batch"])
@pytest.mark.parametrize("method", METHODS)
def test_rule_step_of_replicas_equals_single_networks(method, shared_input):
    """Parameters and feedback from R generators, noise from R generators, one minibatch per replica (or one
    shared batch): every output of the step, per replica, equals the single network's."""
    rule, net = cnn_rule(method), small_net()
    inits = [torch.Generator().manual_seed(10 + r) for r in range(R)]
    params = net.init_params(inits)
    for k in ("b1", "b2", "b3", "b4"):  # non-zero biases, one draw per replica
        params[k] = 0.1 * torch.randn(params[k].shape, generator=torch.Generator().manual_seed(5), dtype=DT)
    fb = rule.init_feedback(net, inits) if rule.has_feedback else {}
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, *SHAPE, generator=g, dtype=DT) if shared_input else torch.randn(R, B, *SHAPE, generator=g,
                                                                                           dtype=DT)
    y = torch.randint(0, 4, (B,) if shared_input else (R, B), generator=g)
    assert all(v.shape[0] == R for v in [*params.values(), *fb.values()])
    block = flat(rule.step(net, params, fb, x, y, generator=[torch.Generator().manual_seed(100 + r)
                                                              for r in range(R)]))
    for r in range(R):
        g1 = torch.Generator().manual_seed(10 + r)
        p1 = net.init_params(g1)
        fb1 = rule.init_feedback(net, g1) if rule.has_feedback else {}
        for k in p1:  # each replica drew exactly what its single network draws
            assert torch.equal(params[k][r], p1[k]) or k[0] == "b", k
            p1[k] = params[k][r]
        for k in fb1:
            assert torch.equal(fb[k][r], fb1[k]), k
        xr, yr = (x, y) if shared_input else (x[r], y[r])
        single = flat(rule.step(net, p1, fb1, xr, yr, generator=torch.Generator().manual_seed(100 + r)))
        assert block.keys() == single.keys()
        if rule.trains_feedback:
            assert any(k.startswith("fb_Q") for k in single)
        for k, v in single.items():
            assert_rel(block[k][r], v, f"replica {r} {k}")


def test_replica_forward_matches_single_networks_with_either_convolution():
    net = small_net()
    params = net.init_params([torch.Generator().manual_seed(r) for r in range(R)])
    x = torch.randn(R, B, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=DT)
    for conv in ("direct", "gemm"):
        n = ConvNet(in_shape=SHAPE, channels=(2, 3), fc=5, n_out=4, dtype=DT, conv=conv)
        fwd = n.forward(params, x)
        for r in range(R):
            one = n.forward({k: v[r] for k, v in params.items()}, x[r])
            for i in range(1, 5):
                assert_rel(fwd.h[i][r], one.h[i], f"{conv} h{i}", rtol=1e-12)
            for k in (1, 2):
                assert torch.equal(fwd.pool_idx[k][r], one.pool_idx[k])
            for i in range(4):
                assert_rel(n.forward_from(params, i, fwd.h[i])[r], one.output, f"{conv} F_{i}", rtol=1e-12)


def test_replica_parameters_are_checked():
    net = small_net()
    params = net.init_params([torch.Generator().manual_seed(r) for r in range(R)])
    with pytest.raises(ValueError, match="disagree on the replica axis"):
        net.forward({**params, "b4": params["b4"][0]}, torch.zeros(B, *SHAPE, dtype=DT))
    with pytest.raises(ValueError, match=r"\(3, B, C, H, W\)"):
        net.forward(params, torch.zeros(2, B, *SHAPE, dtype=DT))
    with pytest.raises(ValueError, match="W3 has shape"):
        net.forward({**params, "W3": params["W3"][..., :-1]}, torch.zeros(B, *SHAPE, dtype=DT))


# ------------------------------------------------------------------------------------ through train_seeds
TINY = {"conv_channels": [2, 3], "size_hidden": 8, "batch_size": 32, "epochs": 2, "epochs_fb": 1,
        "extra_fb_epochs": 1, "normalize_lr": False, "lr": 3e-3, "lr_fb": 1e-3}
SEEDS = [3, 1, 7]
VAL = 24


def image_pool(n_train=88, n_test=24) -> DataSplits:
    x, y, tx, ty = synthetic_classification(n_train, n_test, math.prod(SHAPE), 10, seed=0)
    return DataSplits(x.reshape(-1, *SHAPE), y, tx.reshape(-1, *SHAPE), ty)


def quiet(msg):
    pass


@pytest.mark.parametrize("method", METHODS)
def test_cnn_block_of_seeds_equals_separate_single_runs(method, tmp_path):
    cfg = resolve_config(method, "cifar10-cnn", "test", TINY)
    data = image_pool()
    block = data.replica_splits(VAL, [run_generators(s)["split"] for s in SEEDS])
    outs = [tmp_path / "block" / f"seed{s}" for s in SEEDS]
    summaries = train_seeds(cfg, block, SEEDS, outs, log=quiet, progress=False, keep_checkpoint=True, fast="eager")
    assert [s["seed"] for s in summaries] == SEEDS and all(s["block_seeds"] == SEEDS for s in summaries)
    assert all(s["status"] == "finished" and s["epochs_run"] == 2 for s in summaries)
    for seed, out in zip(SEEDS, outs):
        tr, va = validation_split(data.train_x.shape[0], VAL, run_generators(seed)["split"])
        single = DataSplits(data.train_x[tr], data.train_y[tr], data.test_x, data.test_y, data.train_x[va],
                            data.train_y[va])
        ref = tmp_path / "single" / f"seed{seed}"
        s = train(cfg, single, seed, ref, log=quiet, progress=False, keep_checkpoint=True)
        assert s["block_seeds"] is None
        assert_same_run(out, ref)
