"""Bad input is a clear error that names the bad value and lists the valid choices."""

from __future__ import annotations

import pytest
import torch

import tp
from tp.errors import HyperparameterError


def test_unknown_rule_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        tp.make_rule("ddtp-lin", target_stepsize=0.1, sigma=0.1)
    msg = str(err.value)
    assert "'ddtp-lin'" in msg
    for name in tp.available_rules():
        assert name in msg


def test_unknown_hyperparameter_is_named_with_the_valid_ones():
    with pytest.raises(HyperparameterError) as err:
        tp.make_rule("ddtp-linear", target_stepsize=0.1, sigma=0.1, lr_fb=1e-3)
    msg = str(err.value)
    assert "'lr_fb'" in msg and "target_stepsize" in msg and "sigma" in msg


def test_missing_required_hyperparameter_is_named():
    with pytest.raises(HyperparameterError) as err:
        tp.make_rule("dtp", target_stepsize=0.1)
    assert "'sigma'" in str(err.value)


@pytest.mark.parametrize("key,value", [("sigma", 0.0), ("sigma", -1.0), ("target_stepsize", "big")])
def test_invalid_hyperparameter_value(key, value):
    hp = {"target_stepsize": 0.1, "sigma": 0.1, key: value}
    with pytest.raises(HyperparameterError, match=key):
        tp.make_rule("dtpdrl", **hp)


def test_unknown_activation_and_loss_list_the_choices():
    with pytest.raises(ValueError, match="leaky_tanh"):
        tp.MLP.build([3, 2], hidden_activation="sigmoid", output_activation="sigmoid")
    with pytest.raises(ValueError, match="cross_entropy"):
        tp.MLP.build([3, 2], loss="hinge")
    with pytest.raises(ValueError, match="tanh"):
        tp.make_rule("dtp", target_stepsize=0.1, sigma=0.1, fb_activation="softplus")


def test_negative_gn_damping_is_rejected():
    with pytest.raises(HyperparameterError, match="gn_damping"):
        tp.make_rule("gnt", gn_damping=[0.0, -1.0])


def test_noisy_rule_without_generator_or_noise_says_what_is_needed():
    rule = tp.make_rule("ddtp-linear", target_stepsize=0.1, sigma=0.1)
    net = rule.build_network([4, 3, 3, 2])
    g = torch.Generator().manual_seed(0)
    params, fb = net.init_params(g), rule.init_feedback(net, g)
    x, y = torch.randn(5, 4, dtype=torch.float64, generator=g), torch.tensor([0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="generator"):
        rule.step(net, params, fb, x, y)
    with pytest.raises(ValueError, match=r"block\(s\) \[2\]"):
        rule.step(net, params, fb, x, y, noise={1: torch.zeros(5, 3, dtype=torch.float64)})
