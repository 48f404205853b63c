"""The im2col/GEMM convolution (an opt-in alternative for GPUs) against its reference twin ``F.conv2d``."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from tp.nets.cnn import ConvNet, conv2d_gemm
from tp.config import resolve_config
from tp.data import DataSplits, synthetic_classification
from tp.rules import make_rule
from tp.training import train


@pytest.mark.parametrize("shape,kernel,padding", [((4, 3, 8, 8), 5, 2), ((2, 5, 7, 9), 3, 1), ((3, 2, 6, 6), 5, 0)])
def test_gemm_convolution_and_its_gradients_equal_conv2d(shape, kernel, padding):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, shape[1], kernel, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, w, b, padding=padding)
    out = conv2d_gemm(x, w, b, padding)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    probe = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads_ref = torch.autograd.grad((ref * probe).sum(), (x, w, b))
    grads = torch.autograd.grad((out * probe).sum(), (x, w, b))
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_conv_impl_is_validated():
    with pytest.raises(ValueError, match="unknown conv implementation 'fft'; valid choices: direct, gemm"):
        ConvNet(conv="fft")


@pytest.mark.parametrize("method", ["bp", "ddtp-linear"])
def test_cnn_rules_give_the_same_updates_with_either_convolution(method):
    rule = make_rule(method, **({"target_stepsize": 0.1, "sigma": 0.1} if method != "bp" else {}))
    net = ConvNet(in_shape=(3, 8, 8), channels=(2, 3), fc=8, n_out=10)
    g = torch.Generator().manual_seed(1)
    params = net.init_params(g)
    feedback = rule.init_feedback(net, g)
    x = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (5,), generator=g)
    results = [rule.forward_update(dataclasses.replace(net, conv=c), params, feedback, x, y).forward_grads
               for c in ("direct", "gemm")]
    for k in results[0]:
        torch.testing.assert_close(results[1][k], results[0][k], rtol=1e-10, atol=1e-13)


def test_training_with_the_gemm_convolution_equals_the_direct_one(tmp_path, monkeypatch):
    """Two short runs, one per convolution: the same metrics (every row and column, as many rows on both
    sides) and the same final checkpoint (parameters, feedback, both Adam moments of both optimisers)."""
    import tp.config.models
    import tp.training.state
    from test_replicas import assert_same_run

    x, y, tx, ty = synthetic_classification(100, 32, 3 * 8 * 8, 10, seed=0)
    images = DataSplits(x[:70].reshape(-1, 3, 8, 8), y[:70], tx.reshape(-1, 3, 8, 8), ty,
                        x[70:].reshape(-1, 3, 8, 8), y[70:])
    cfg = resolve_config("ddtp-linear", "cifar10-cnn", "test", {"conv_channels": [2, 3], "size_hidden": 8,
                                                                "batch_size": 32, "epochs": 2, "epochs_fb": 1})
    build = tp.config.models.build_model
    convs = []
    for conv in ("direct", "gemm"):
        monkeypatch.setattr(tp.training.state, "build_model",
                            lambda *a, c=conv: convs.append(c) or dataclasses.replace(build(*a), conv=c))
        s = train(cfg, images, 1, tmp_path / conv, log=lambda m: None, progress=False, keep_checkpoint=True)
        assert s["status"] == "finished" and s["epochs_run"] == 2
    assert list(dict.fromkeys(convs)) == ["direct", "gemm"]  # each run built its network with its convolution
    assert_same_run(tmp_path / "direct", tmp_path / "gemm", rtol=1e-10)
