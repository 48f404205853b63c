"""tp.core.optim.Adam equals torch.optim.Adam (its reference twin), replicas and per-parameter rates included."""

from __future__ import annotations

import pytest
import torch

from tp.core.optim import Adam


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
@pytest.mark.parametrize("foreach", [False, True])
def test_adam_matches_torch_bit_for_bit(weight_decay, foreach):
    g = torch.Generator().manual_seed(0)
    params = {"W": torch.randn(5, 4, dtype=torch.float64, generator=g),
              "b": torch.randn(7, dtype=torch.float64, generator=g)}
    ref = {k: v.clone() for k, v in params.items()}
    ours = Adam(params, lr={"W": 1e-2, "b": 3e-3}, betas=(0.9, 0.99), eps={"W": 1e-8, "b": 1e-6},
                weight_decay=weight_decay)
    theirs = torch.optim.Adam([{"params": [ref["W"]], "lr": 1e-2, "eps": 1e-8},
                               {"params": [ref["b"]], "lr": 3e-3, "eps": 1e-6}],
                              betas=(0.9, 0.99), weight_decay=weight_decay, foreach=foreach)
    for _ in range(30):
        grads = {k: torch.randn(v.shape, dtype=v.dtype, generator=g) for k, v in params.items()}
        ours.step(grads)
        for k in ref:
            ref[k].grad = grads[k].clone()
        theirs.step()
    for k in params:
        assert torch.equal(params[k], ref[k]), k


def test_replicas_step_like_separate_optimisers_and_state_round_trips():
    g = torch.Generator().manual_seed(1)
    stacked = {"W": torch.randn(3, 4, 2, dtype=torch.float64, generator=g)}
    single = [{"W": stacked["W"][r].clone()} for r in range(3)]
    opt = Adam(stacked, lr=1e-2, weight_decay=1e-2)
    opts = [Adam(p, lr=1e-2, weight_decay=1e-2) for p in single]
    for step in range(10):
        grads = torch.randn(3, 4, 2, dtype=torch.float64, generator=g)
        opt.step({"W": grads})
        for r in range(3):
            opts[r].step({"W": grads[r]})
        if step == 4:  # checkpoint and restore mid-way
            state = opt.state_dict()
            opt = Adam({"W": stacked["W"]}, lr=1e-2, weight_decay=1e-2)
            opt.load_state_dict(state)
    for r in range(3):
        assert torch.equal(stacked["W"][r], single[r]["W"])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_capturable_adam_equals_the_plain_form(weight_decay, fused):
    """The capturable form (device step count, multi-tensor kernels; what tp.core.fast captures in CUDA graphs)
    computes the same update as the plain one, per-parameter lr/ε and a state round trip included."""
    g = torch.Generator().manual_seed(2)
    shapes = {"W1": (3, 6, 5), "b1": (3, 6), "W2": (3, 2, 6)}
    plain_p = {k: torch.randn(s, dtype=torch.float64, generator=g) for k, s in shapes.items()}
    capt_p = {k: v.clone() for k, v in plain_p.items()}
    lr, eps = {"W1": 1e-2, "b1": 1e-2, "W2": 3e-3}, {"W1": 1e-8, "b1": 1e-6, "W2": 1e-4}
    plain = Adam(plain_p, lr=lr, betas=(0.9, 0.99), eps=eps, weight_decay=weight_decay)
    capt = Adam(capt_p, lr=lr, betas=(0.9, 0.99), eps=eps, weight_decay=weight_decay, capturable=True)
    capt._fused = fused  # PyTorch's fused kernel, or the multi-tensor fallback
    for step in range(25):
        grads = {k: torch.randn(s, dtype=torch.float64, generator=g) for k, s in shapes.items()}
        plain.step(grads)
        capt.step(grads)
        if step == 10:
            state = capt.state_dict()
            capt = Adam(capt_p, lr=lr, betas=(0.9, 0.99), eps=eps, weight_decay=weight_decay, capturable=True)
            capt._fused = fused
            capt.load_state_dict(state)
    assert capt.state_dict()["step"] == plain.state_dict()["step"] == 25
    # the fused kernel ran (PyTorch has it on the CPU since 2.4; before, the fallback takes over)
    assert capt._fused == fused or tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 4)
    for k in shapes:
        torch.testing.assert_close(capt_p[k], plain_p[k], rtol=1e-13, atol=1e-15)  # equal up to rounding


def test_capturable_adam_with_strided_gradients_equals_the_plain_form():
    """Transposed, expanded or sliced gradients (views) take the multi-tensor path: same update."""
    g = torch.Generator().manual_seed(5)
    base = {"A": torch.randn(4, 3, dtype=torch.float64, generator=g), "B": torch.randn(3, 4, dtype=torch.float64,
                                                                                      generator=g)}
    plain_p, capt_p = {k: v.clone() for k, v in base.items()}, {k: v.clone() for k, v in base.items()}
    plain, capt = Adam(plain_p, lr=0.1), Adam(capt_p, lr=0.1, capturable=True)
    for _ in range(3):
        raw = torch.randn(8, 4, dtype=torch.float64, generator=g)
        grads = {"A": raw[::2, :3], "B": raw[4:, :3].mT}  # a strided slice, a transposed view
        plain.step(grads)
        capt.step(grads)
    for k in base:
        torch.testing.assert_close(capt_p[k], plain_p[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("capturable", [False, True])
def test_per_replica_hyperparameters_step_like_separate_optimisers(capturable):
    """Replica r of an Adam with per-replica lr, ε, betas and weight decay equals a plain Adam with replica
    r's values (float64; the block path of tp search and per-replica trial blocks)."""
    g = torch.Generator().manual_seed(3)
    R = 3
    lrs, epss, b1s, b2s, wds = [1e-2, 3e-3, 1e-4], [1e-8, 1e-6, 1e-4], [0.9, 0.99, 0.999], [0.9, 0.99, 0.999], \
        [0.0, 1e-3, 1e-2]
    stacked = {"W": torch.randn(R, 4, 2, dtype=torch.float64, generator=g),
               "b": torch.randn(R, 4, dtype=torch.float64, generator=g)}
    single = [{k: v[r].clone() for k, v in stacked.items()} for r in range(R)]
    opt = Adam(stacked, lr={"W": lrs, "b": [2 * x for x in lrs]}, betas=(b1s, b2s), eps=epss, weight_decay=wds,
               capturable=capturable)
    assert opt.per_replica
    opts = [Adam(single[r], lr={"W": lrs[r], "b": 2 * lrs[r]}, betas=(b1s[r], b2s[r]), eps=epss[r],
                 weight_decay=wds[r]) for r in range(R)]
    for step in range(25):
        grads = {k: torch.randn(v.shape, dtype=v.dtype, generator=g) for k, v in stacked.items()}
        opt.step(grads)
        for r in range(R):
            opts[r].step({k: v[r] for k, v in grads.items()})
        if step == 10:  # the state round-trips (the checkpoint format is unchanged)
            state = opt.state_dict()
            opt = Adam(stacked, lr={"W": lrs, "b": [2 * x for x in lrs]}, betas=(b1s, b2s), eps=epss,
                       weight_decay=wds, capturable=capturable)
            opt.load_state_dict(state)
    for r in range(R):
        for k in stacked:
            torch.testing.assert_close(stacked[k][r], single[r][k], rtol=1e-12, atol=0)


def test_per_replica_hyperparameters_need_one_value_per_replica():
    with pytest.raises(ValueError, match="one per replica"):
        Adam({"W": torch.zeros(3, 2, dtype=torch.float64)}, lr=[1e-3, 1e-2])
