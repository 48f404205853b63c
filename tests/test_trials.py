"""Blocks of trials (tp.training.train_trials): replicas that differ in their continuous hyperparameters as well as
in their seeds.  Reference twin: each trial's configuration trained alone (``train``); the block must agree
up to floating-point rounding, checked in float64 for every MLP rule of the paper's methods."""

from __future__ import annotations

import pytest

from test_replicas import SMALL, assert_same_run, block_data, pool, quiet, single_data
from tp.catalog import METHODS
from tp.config import resolve_config
from tp.errors import ConfigError
from tp.training import PER_REPLICA_KEYS, check_trial_configs, train, train_trials

SEEDS = [3, 1, 3]  # a seed may repeat: the trials then differ only in their hyperparameters
#: per trial, values of every per-replica key the configuration uses (rates, ε, betas, decays, β, σ, δ)
VARIANTS = [
    {"lr": 1e-2, "epsilon": 1e-8, "beta1": 0.9, "beta2": 0.999, "forward_wd": 0.0, "target_stepsize": 0.1,
     "sigma": 0.05, "lr_fb": 1e-3, "epsilon_fb": 1e-8, "beta1_fb": 0.9, "beta2_fb": 0.999, "feedback_wd": 0.0},
    {"lr": 3e-3, "epsilon": 1e-6, "beta1": 0.99, "beta2": 0.9, "forward_wd": 1e-3, "target_stepsize": 0.03,
     "sigma": 0.1, "lr_fb": 3e-4, "epsilon_fb": 1e-5, "beta1_fb": 0.99, "beta2_fb": 0.99, "feedback_wd": 1e-4,
     "hessian_damping": 1e-3},
    {"lr": 1e-3, "epsilon": 1e-4, "beta1": 0.999, "beta2": 0.99, "forward_wd": 1e-4, "target_stepsize": 0.3,
     "sigma": 0.02, "lr_fb": 1e-2, "epsilon_fb": 1e-7, "beta1_fb": 0.999, "beta2_fb": 0.9, "feedback_wd": 1e-3,
     "hessian_damping": 0.1},
]
RULES = sorted({m.rule for m in METHODS.values()})


def trial_configs(method):
    base = {**SMALL, "epochs": 2, "epochs_fb": 1, "extra_fb_epochs": 1}
    cfg0 = resolve_config(method, "mnist", "test", base)
    out = []
    for v in VARIANTS:
        values = {k: x for k, x in v.items() if cfg0.get(k) is not None}  # BP, DFA: no σ, no feedback Adam
        if cfg0["rule"] in ("bp", "dfa"):
            values.pop("target_stepsize")
        out.append(resolve_config(method, "mnist", "test", {**base, **values}))
    return out


@pytest.mark.parametrize("rule", RULES)
def test_a_block_of_trials_equals_each_trial_trained_alone(rule, tmp_path):
    method = next(slug for slug, m in METHODS.items() if m.rule == rule)
    cfgs = trial_configs(method)
    assert len({tuple(c[k] for k in PER_REPLICA_KEYS) for c in cfgs}) == 3
    data = pool()
    outs = [tmp_path / "block" / f"trial{r}" for r in range(3)]
    summaries = train_trials(cfgs, block_data(data, SEEDS), SEEDS, outs, device="cpu", log=quiet, keep_checkpoint=True,
                             prune=False)
    for r, (cfg, seed) in enumerate(zip(cfgs, SEEDS)):
        alone = tmp_path / "alone" / f"trial{r}"
        ref = train(cfg, single_data(data, seed), seed, alone, device="cpu", log=quiet, keep_checkpoint=True,
                    prune=False)
        assert summaries[r]["config"] == cfg and summaries[r]["status"] == ref["status"] == "finished"
        assert_same_run(outs[r], alone)


def test_trial_configs_may_differ_only_in_continuous_hyperparameters():
    cfgs = trial_configs("ddtp-linear")
    check_trial_configs(cfgs)
    wider = {**cfgs[1], "size_hidden": 32}
    with pytest.raises(ConfigError, match="size_hidden"):
        check_trial_configs([cfgs[0], wider])


def test_a_trial_block_resumes_from_its_trials_checkpoints(tmp_path):
    """Interrupted after an epoch, the same block again continues each trial from its own checkpoint and
    ends where the uninterrupted block ends."""
    cfgs = trial_configs("dtpdrl")
    data = block_data(pool(), SEEDS)
    whole = [tmp_path / "whole" / f"t{r}" for r in range(3)]
    train_trials(cfgs, data, SEEDS, whole, device="cpu", log=quiet, keep_checkpoint=True, prune=False)

    class Stop(Exception):
        pass

    def stop_after_first(epoch):
        if epoch == 1:
            raise Stop

    parts = [tmp_path / "parts" / f"t{r}" for r in range(3)]
    with pytest.raises(Stop):
        train_trials(cfgs, data, SEEDS, parts, device="cpu", log=quiet, on_epoch_end=stop_after_first, prune=False)
    train_trials(cfgs, data, SEEDS, parts, device="cpu", log=quiet, keep_checkpoint=True, prune=False)
    for a, b in zip(whole, parts):
        assert_same_run(a, b, rtol=1e-12)
