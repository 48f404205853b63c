"""Fig. 2: the null-space component of the forward updates (paper §3.3, Theorem 5;
docs/algorithms.md#fig-2-null-space-component-of-the-updates)."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..data.datasets import student_teacher
from ..errors import unknown
from ..nets.gauss_newton import output_jacobians
from ..nets.mlp import MLP, Params
from ..rules import make_rule, rule_class
from .config import DTYPES, NULLSPACE_METHODS, nullspace_hyperparameters

__all__ = ["weight_jacobian", "weight_jacobians", "nullspace_basis", "nullspace_ratio", "nullspace_ratios", "sgd_step",
           "nullspace_experiment", "summarize_ratios"]


# --------------------------------------------------------------------------- null-space ratio (Fig. 2)
def _single_sample(x: Tensor) -> Tensor:
    x = x.unsqueeze(0) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] != 1:
        raise ValueError(f"the null-space ratio is defined per sample: x must be (1, n_0), got {tuple(x.shape)}")
    return x


def weight_jacobians(net: MLP, params: Params, x: Tensor, layers: Sequence[int] | None = None) -> dict[int, Tensor]:
    """``{i: J}`` with J = ∂h_L/∂vec(W_i) (n_L × n_i·n_{i−1}, weights only, row-major vec) for one sample.

    Structure (a_i = W_i h_{i−1} + b_i, so ∂h_L/∂W_i[j,k] = (J_i D_i)[:, j] · h_{i−1}[k]):

        J = (J_i D_i) ⊗ h_{i−1}ᵀ,   J_i = ∂h_L/∂h_i,   D_i = diag φ_i′(a_i).
    """
    x = _single_sample(x)
    layers = list(range(1, net.L + 1)) if layers is None else list(layers)
    with torch.no_grad():
        fwd = net.forward(params, x)
        Jh = output_jacobians(net, params, fwd)  # {i: (1, n_L, n_i)}
        out = {}
        for i in layers:
            dphi = net.activation(i).derivative(fwd.a[i], fwd.h[i])[0]  # (n_i,)
            JD = Jh[i][0] * dphi  # (n_L, n_i)
            h_prev = fwd.h[i - 1][0]  # (n_{i−1},)
            out[i] = (JD.unsqueeze(-1) * h_prev).reshape(JD.shape[0], -1)  # (n_L, n_i·n_{i−1})
    return out


def weight_jacobian(net: MLP, params: Params, x: Tensor, layer: int) -> Tensor:
    """J = ∂h_L/∂vec(W_layer) for one sample x (1, n_0): (n_L, n_i·n_{i−1}); see :func:`weight_jacobians`."""
    return weight_jacobians(net, params, x, [layer])[layer]


def nullspace_basis(J: Tensor, rank: int | None = None, tol: float | None = None) -> Tensor:
    """Orthonormal basis (columns) of N(J) from the full SVD J = U S Vᵀ: the right singular vectors
    beyond the first ``rank``.

    ``rank`` defaults to min(n_L, columns) (docs/algorithms.md#fig-2-null-space-component-of-the-updates: the per-sample
    Jacobian has rank n_L generically; the official 10⁻¹² singular-value threshold is meaningless in float32).  With
    ``tol`` the rank is the number of singular values ≥ tol instead (the official rule).  Returns (columns, columns −
    rank).
    """
    _, S, Vh = torch.linalg.svd(J, full_matrices=True)  # Vh: (c, c)
    if tol is not None:
        rank = int((S >= tol).sum())
    elif rank is None:
        rank = min(J.shape)
    return Vh[rank:].mT


def nullspace_ratios(net: MLP, params: Params, x: Tensor, updates: Mapping[int, Tensor],
                     rank: int | None = None) -> dict[int, float]:
    """``{i: ρ_i}``, ρ_i = ‖P_{N(J)} vec(ΔW_i)‖ / ‖vec(ΔW_i)‖ with J = ∂h_L/∂vec(W_i) at sample x (1, n_0),
    for the updates ``{i: ΔW_i}`` (n_i, n_{i−1}) (docs/algorithms.md#fig-2-null-space-component-of-the-updates).  A zero
    update gives NaN."""
    J = weight_jacobians(net, params, x, list(updates))
    out = {}
    for i, dW in updates.items():
        v = dW.reshape(-1).to(J[i].dtype)  # vec(ΔW_i), row-major like J's columns
        V_null = nullspace_basis(J[i], rank)  # (c, c − rank)
        out[i] = float((V_null.mT @ v).norm() / v.norm())
    return out


def nullspace_ratio(net: MLP, params: Params, x: Tensor, update_W: Tensor, layer: int,
                    rank: int | None = None) -> float:
    """ρ = ‖P_{N(J)} vec(ΔW)‖ / ‖vec(ΔW)‖ for ONE sample x (1, n_0), J = ∂h_L/∂vec(W_layer)
    (docs/algorithms.md#fig-2-null-space-component-of-the-updates)."""
    return nullspace_ratios(net, params, x, {layer: update_W}, rank)[layer]


# ---------------------------------------------------------------------------------- Fig. 2 experiment
@torch.no_grad()
def sgd_step(params: Params, grads: Mapping[str, Tensor], lr: float, weight_decay: float = 0.0) -> None:
    """``torch.optim.SGD`` without momentum, in place: θ ← θ − lr·(g + weight_decay·θ) (coupled decay).
    Parameters without a gradient are left alone (PyTorch skips ``grad is None``)."""
    for k, g in grads.items():
        p = params[k]
        if weight_decay:
            g = g + weight_decay * p
        p.sub_(lr * g)


def nullspace_experiment(method: str, hp: Mapping[str, Any] | None = None, seed: int = 42, *,
                         epochs: int | None = None, epochs_fb: int | None = None,
                         extra_fb_epochs: int | None = None, num_train: int | None = None,
                         num_test: int | None = None, log_interval: int | None = None,
                         dtype: torch.dtype | None = None,
                         progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The Fig. 2 run of one method (docs/algorithms.md#fig-2-null-space-component-of-the-updates); returns tidy records
    ``{method, epoch, sample, layer, ratio}`` (epoch 1-based, sample = position within the epoch).

    ``method``: ``dtp-pretrained`` (rule ``dtp``, layer-wise tanh feedback, DTP loss) or ``ddtp-linear``
    (DRL).  ``hp``: the flat hyperparameters (default :func:`nullspace_hyperparameters` of
    tp/configs/toy.yaml).  The keyword arguments override ``hp`` (tiny runs for tests).

    Schedule (docs/algorithms.md#one-minibatch-one-epoch with ``freeze_forward_weights``): ``epochs_fb`` feedback-only
    epochs; then
    ``epochs`` epochs in which every sample (batch size 1, shuffled) gives the forward update ΔW_i (the
    local-loss gradient, computed and never applied) and one feedback SGD step, followed by
    ``extra_fb_epochs`` feedback-only epochs.  At every ``log_interval``-th sample of a training epoch ρ_i
    is recorded for every layer i = 1…L.  Feedback: SGD, ``lr_fb``, coupled ``feedback_wd``.
    """
    if method not in NULLSPACE_METHODS:
        raise unknown("Fig. 2 method", method, NULLSPACE_METHODS)
    hp = dict(nullspace_hyperparameters(method) if hp is None else hp)
    for key, value in dict(epochs=epochs, epochs_fb=epochs_fb, extra_fb_epochs=extra_fb_epochs,
                           num_train=num_train, num_test=num_test, log_interval=log_interval).items():
        if value is not None:
            hp[key] = value
    if "sizes" not in hp:
        hp["sizes"] = (hp["size_input"],) + (hp["size_hidden"],) * hp["num_hidden"] + (hp["size_output"],)
    if hp.get("batch_size", 1) != 1 or hp.get("momentum", 0.0) != 0.0:
        raise ValueError("the Fig. 2 experiment is defined for batch size 1 and SGD without momentum")
    dtype = dtype or DTYPES[bool(hp.get("double_precision", False))]
    sizes = tuple(hp["sizes"])

    rule_hp = {"target_stepsize": hp["target_stepsize"], "sigma": hp["sigma"]}
    if "fb_activation" in rule_class(hp["rule"]).hyperparameters:
        rule_hp["fb_activation"] = hp["fb_activation"]
    rule = make_rule(hp["rule"], **rule_hp)
    net = rule.build_network(sizes, hidden_activation=hp["hidden_activation"],
                             output_activation=hp["output_activation"], loss="mse", dtype=dtype)
    data = student_teacher(sizes[0], sizes[-1], hp["num_train"], hp["num_test"], 0, seed, dtype)
    X, Y = data.train_x, data.train_y  # (N, n_0), (N, n_L)
    n = X.shape[0]

    g = torch.Generator().manual_seed(seed)  # init, shuffling and feedback noise, in this order of use
    params = net.init_params(g, init=hp["initialization"])
    fb = rule.init_feedback(net, g)
    trainable = set(rule.trainable_feedback(fb))
    lr_fb, wd = float(hp["lr_fb"]), float(hp["feedback_wd"])

    def feedback_sgd(grads: Params) -> None:
        sgd_step(fb, {k: v for k, v in grads.items() if k in trainable}, lr_fb, wd)

    def feedback_epoch() -> None:  # FEEDBACK_ONLY_STEP on every sample
        for idx in torch.randperm(n, generator=g).tolist():
            grads, _ = rule.feedback_gradients(net, params, fb, X[idx:idx + 1], generator=g)
            feedback_sgd(grads)

    for e in range(hp["epochs_fb"]):  # feedback pre-training
        feedback_epoch()
        if progress:
            progress(f"{method}: feedback pre-training epoch {e + 1}/{hp['epochs_fb']}")

    records: list[dict[str, Any]] = []
    for epoch in range(1, hp["epochs"] + 1):
        for s, idx in enumerate(torch.randperm(n, generator=g).tolist()):
            x, y = X[idx:idx + 1], Y[idx:idx + 1]  # (1, n_0), (1, n_L)
            out = rule.step(net, params, fb, x, y, generator=g)  # forward update + feedback grads
            if s % hp["log_interval"] == 0:
                updates = {i: out.forward_grads[f"W{i}"] for i in range(1, net.L + 1)}
                for i, r in nullspace_ratios(net, params, x, updates).items():
                    records.append({"method": method, "epoch": epoch, "sample": s, "layer": i, "ratio": r})
            feedback_sgd(out.feedback_grads)
            # freeze_forward_weights: out.forward_grads is never applied
        for _ in range(hp["extra_fb_epochs"]):
            feedback_epoch()
        if progress:
            progress(f"{method}: epoch {epoch}/{hp['epochs']}")
    return records


def summarize_ratios(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, layer): mean, std (population std, ddof = 0 like ``numpy.std``) and count of the
    ratios (Fig. 2: bar = mean, error bar = std)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in records:
        groups.setdefault((r["method"], int(r["layer"])), []).append(float(r["ratio"]))
    out = []
    for (method, layer), vals in groups.items():
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))
        out.append({"method": method, "layer": layer, "mean": m, "std": sd, "n": len(vals)})
    return out
