"""Conformance with the official implementation: one minibatch per method (``../shared/spec/golden``).

The fixtures hold parameters, inputs, injected noise, targets and gradients computed by the official
classes in float64 (see the folder's README).  Every rule must reproduce them to ≤ 1e-10 relative.
Skipped (not failed) where the fixtures are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import tp

GOLDEN = Path(os.environ.get("TP_GOLDEN_DIR", Path(__file__).resolve().parents[2] / "shared" / "spec" / "golden"))
RTOL = 1e-10

pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden fixtures not found at {GOLDEN}")


def load(method: str) -> dict:
    with np.load(GOLDEN / f"{method}.npz") as f:
        return {k: torch.from_numpy(np.array(f[k])) for k in f.files}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Relative error in the max norm of the whole tensor (≤ RTOL)."""
    expected = expected.to(actual.dtype)
    scale = expected.abs().max().clamp_min(1e-300)
    err = (actual - expected).abs().max() / scale
    if expected.abs().max() < 1e-13:  # an exactly-zero quantity (e.g. DDTP-linear's d-gradients)
        err = (actual - expected).abs().max()
        assert err < 1e-13, f"{what}: absolute error {err:.3e} on a zero reference"
        return
    assert err <= RTOL, f"{what}: relative error {err:.3e} > {RTOL}"


def setup(method: str, d: dict, **extra):
    sizes = [int(n) for n in d["sizes"]]
    L = len(sizes) - 1
    kwargs = {"target_stepsize": float(d["beta"]), "sigma": float(d["sigma"])}
    if method in ("ddtp-rhl", "ddtp-rhl-rec"):
        kwargs["size_hidden_fb"] = int(d["m"])
    kwargs.update(extra)
    rule = tp.make_rule(method, **kwargs)
    net = rule.build_network(sizes)
    params = {k: d[k] for k in net.param_shapes()}
    # the fixture's bias layout must be the rule's official one (SPEC §12.4)
    assert net.bias == tuple(f"b{i}" in d for i in range(1, L + 1))
    fb = {k: d[k] for k in d if k[0] in "QdRr" and k[1:].isdigit() or k in ("R", "r")}
    noise = {int(k[3:]): d[k] for k in d if k.startswith("eps")}
    return rule, net, params, fb, noise


TP_METHODS = ["dtp", "dtpdrl", "ddtp-linear", "ddtp-control", "ddtp-rhl", "ddtp-rhl-rec"]


@pytest.mark.parametrize("method", TP_METHODS)
def test_tp_rule_matches_official(method):
    d = load(method)
    rule, net, params, fb, noise = setup(method, d)
    assert set(fb) == set(rule.init_feedback(net, torch.Generator().manual_seed(0)))
    out = rule.step(net, params, fb, d["x"], d["y"], noise=noise)

    for i in range(1, net.L + 1):
        if f"target{i}" in d:
            assert_close(out.targets[i], d[f"target{i}"], f"{method} target{i}")
    assert set(out.forward_grads) == set(params)
    for k, g in out.forward_grads.items():
        assert_close(g, d[f"grad_{k}"], f"{method} grad_{k}")
    assert set(out.feedback_grads) == set(rule.trainable_feedback(fb))
    for k, g in out.feedback_grads.items():
        assert_close(g, d[f"grad_{k}"], f"{method} grad_{k}")


@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_gnt_matches_official(lam):
    d = load("gnt")
    sizes = [int(n) for n in d["sizes"]]
    rule = tp.make_rule("gnt", gn_damping=lam)
    net = rule.build_network(sizes)
    params = {k: d[k] for k in net.param_shapes()}
    out = rule.forward_update(net, params, {}, d["x"], d["y"])
    fwd = net.forward(params, d["x"])
    for i in range(1, net.L):
        assert_close(fwd.h[i] - out.targets[i], d[f"delta{i}_lam{lam}"], f"gnt delta{i} λ={lam}")
        assert_close(out.forward_grads[f"W{i}"], d[f"gnt_grad_W{i}_lam{lam}"], f"gnt grad_W{i} λ={lam}")
