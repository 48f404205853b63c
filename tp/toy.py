"""The toy experiments of the paper (SPEC §9): Fig. 2 and Fig. S3.

* **Fig. 2 — null-space component of the forward updates** (paper §3.3 / Theorem 5, SPEC §9.2, §15).
  For one sample x, the Jacobian of the output w.r.t. the (row-major) flattened weights of layer i,

      J = ∂h_L/∂vec(W_i) ∈ ℝ^{n_L × n_i n_{i−1}},   J = (J_i D_i) ⊗ h_{i−1}ᵀ,

  with J_i = ∂h_L/∂h_i (:func:`tp.gauss_newton.output_jacobians`) and D_i = diag φ_i′(a_i), has rank n_L
  (generically).  Its null space N(J) holds the weight changes that leave the output unchanged to first
  order.  The quantity plotted is ρ_i = ‖P_{N(J)} vec(ΔW_i)‖ / ‖vec(ΔW_i)‖ for the method's update ΔW_i:
  GN-like updates (DDTP-linear trained with the DRL) have little null-space component, DTP's layer-wise
  inverses do not (paper Fig. 2).
  :func:`nullspace_experiment` reproduces the official run: student 6→6→6→2 on student–teacher data,
  batch size 1, feedback trained by SGD, forward weights frozen.

* **Fig. S3 — direction of the output change** (SPEC §9.3).  One SGD step (lr 10⁻⁵) of the GNT update
  (λ = 0, all layers) and of the BP gradient on the single validation sample of a 4→4→4→2 network without
  biases; Δy = y_after − y_before.  GN targets push the output along −e, e = ∂ℒ/∂h_L (paper Theorem 2):
  exactly for the output layer and for the *targets* of every layer (J_i Δ_i = e); the local-loss update of
  a tanh hidden layer adds the factor D_i², so the total step is very close to, not exactly, anti-parallel
  to e.  BP's step is J_θ J_θᵀ e, in general visibly off that direction.

Everything runs in float32 like the official toy configs (SPEC §9, §12.11); all randomness comes from
``torch.Generator`` objects seeded from the ``seed`` argument (never the global RNG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import yaml
from torch import Tensor

from .config import config_dir
from .data import student_teacher
from .gauss_newton import output_jacobians
from .network import MLP, Params
from .rules import backprop_gradients, make_rule, rule_class

__all__ = [
    "TOY_CONFIG_PATH", "NULLSPACE_METHODS", "load_toy_config", "nullspace_hyperparameters",
    "output_space_hyperparameters", "weight_jacobian", "weight_jacobians", "nullspace_basis", "nullspace_ratio",
    "nullspace_ratios", "sgd_step", "nullspace_experiment", "summarize_ratios", "OutputSpaceResult",
    "output_space_experiment",
]

#: the toy experiments' configuration, package data beside the run configurations (tp/configs/toy.yaml)
TOY_CONFIG_PATH = config_dir() / "toy.yaml"

#: method slug of Fig. 2 -> label in the figure
NULLSPACE_METHODS = {"dtp-pretrained": "DTP (pre-trained)", "ddtp-linear": "DDTP-linear"}

_DTYPES = {False: torch.float32, True: torch.float64}


# ------------------------------------------------------------------------------------------- config
def load_toy_config(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed ``tp/configs/toy.yaml``, or ``path`` (keys ``fig2_nullspace`` and ``figS3_output_space``)."""
    with open(path) if path is not None else TOY_CONFIG_PATH.open() as f:
        return yaml.safe_load(f)


def nullspace_hyperparameters(method: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat hyperparameters of one Fig. 2 method: the fixed block, then the method's own values, plus
    ``sizes = (n_0, n_1, …, n_L)`` derived from ``size_input/size_hidden/num_hidden/size_output``."""
    cfg = (config or load_toy_config())["fig2_nullspace"]
    methods = cfg["methods"]
    if method not in methods:
        raise ValueError(f"unknown Fig. 2 method {method!r}; valid choices: {', '.join(methods)}")
    hp = {k: v for k, v in cfg.items() if k != "methods"}
    hp.update(methods[method])
    hp["sizes"] = (hp["size_input"],) + (hp["size_hidden"],) * hp["num_hidden"] + (hp["size_output"],)
    return hp


def output_space_hyperparameters(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat hyperparameters of Fig. S3 (official keys plus the ``spec_defaults`` of SPEC §9.3) and
    ``sizes``."""
    cfg = dict((config or load_toy_config())["figS3_output_space"])
    hp = {k: v for k, v in cfg.items() if k != "spec_defaults"}
    hp.update(cfg.get("spec_defaults") or {})
    hp["sizes"] = (hp["size_input"],) + (hp["size_hidden"],) * hp["num_hidden"] + (hp["size_output"],)
    return hp


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

    ``rank`` defaults to min(n_L, columns) (SPEC §15: the per-sample Jacobian has rank n_L generically; the
    official 10⁻¹² singular-value threshold is meaningless in float32).  With ``tol`` the rank is the
    number of singular values ≥ tol instead (the official rule).  Returns (columns, columns − rank).
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
    for the updates ``{i: ΔW_i}`` (n_i, n_{i−1}) (SPEC §9.2).  A zero update gives NaN."""
    J = weight_jacobians(net, params, x, list(updates))
    out = {}
    for i, dW in updates.items():
        v = dW.reshape(-1).to(J[i].dtype)  # vec(ΔW_i), row-major like J's columns
        V_null = nullspace_basis(J[i], rank)  # (c, c − rank)
        out[i] = float((V_null.mT @ v).norm() / v.norm())
    return out


def nullspace_ratio(net: MLP, params: Params, x: Tensor, update_W: Tensor, layer: int,
                    rank: int | None = None) -> float:
    """ρ = ‖P_{N(J)} vec(ΔW)‖ / ‖vec(ΔW)‖ for ONE sample x (1, n_0), J = ∂h_L/∂vec(W_layer) (SPEC §9.2, §15)."""
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
    """The Fig. 2 run of one method (SPEC §9.2); returns tidy records
    ``{method, epoch, sample, layer, ratio}`` (epoch 1-based, sample = position within the epoch).

    ``method``: ``dtp-pretrained`` (rule ``dtp``, layer-wise tanh feedback, DTP loss) or ``ddtp-linear``
    (DRL).  ``hp``: the flat hyperparameters (default :func:`nullspace_hyperparameters` of
    tp/configs/toy.yaml).  The keyword arguments override ``hp`` (tiny runs for tests).

    Schedule (SPEC §5.2 with ``freeze_forward_weights``): ``epochs_fb`` feedback-only epochs; then
    ``epochs`` epochs in which every sample (batch size 1, shuffled) gives the forward update ΔW_i (the
    local-loss gradient, computed and never applied) and one feedback SGD step, followed by
    ``extra_fb_epochs`` feedback-only epochs.  At every ``log_interval``-th sample of a training epoch ρ_i
    is recorded for every layer i = 1…L.  Feedback: SGD, ``lr_fb``, coupled ``feedback_wd``.
    """
    if method not in NULLSPACE_METHODS:
        raise ValueError(f"unknown Fig. 2 method {method!r}; valid choices: {', '.join(NULLSPACE_METHODS)}")
    hp = dict(nullspace_hyperparameters(method) if hp is None else hp)
    for key, value in dict(epochs=epochs, epochs_fb=epochs_fb, extra_fb_epochs=extra_fb_epochs,
                           num_train=num_train, num_test=num_test, log_interval=log_interval).items():
        if value is not None:
            hp[key] = value
    if "sizes" not in hp:
        hp["sizes"] = (hp["size_input"],) + (hp["size_hidden"],) * hp["num_hidden"] + (hp["size_output"],)
    if hp.get("batch_size", 1) != 1 or hp.get("momentum", 0.0) != 0.0:
        raise ValueError("the Fig. 2 experiment is defined for batch size 1 and SGD without momentum")
    dtype = dtype or _DTYPES[bool(hp.get("double_precision", False))]
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


# --------------------------------------------------------------------------------- Fig. S3 experiment
@dataclass
class OutputSpaceResult:
    """Everything Fig. S3 needs; 2-D output space, all tensors float64 copies on the CPU.

    ``y``: the target (label) of the validation sample; ``y_before``: the network output before the step;
    ``delta_y[m]`` = y_after − y_before for m ∈ {"bp", "gnt"}; ``arrow[m]``: the arrow drawn from
    ``y_before``, direction Δy/‖Δy‖ and length ``arrow_length`` = ‖y_before − y‖/2;
    ``cos_to_neg_error[m]``: cosine between Δy and −e = y − y_before; ``grid_x, grid_y`` (G,) and
    ``loss_grid`` (G, G) with ``loss_grid[j, k] = MSE((grid_x[k], grid_y[j]), y)`` (``contourf(grid_x,
    grid_y, loss_grid)`` layout); ``levels``: number of contour levels.
    """

    x: Tensor
    y: Tensor
    y_before: Tensor
    delta_y: dict[str, Tensor]
    arrow: dict[str, Tensor]
    arrow_length: float
    cos_to_neg_error: dict[str, float]
    grid_x: Tensor
    grid_y: Tensor
    loss_grid: Tensor
    levels: int
    lr: float
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)


def output_space_experiment(seed: int | None = None, hp: Mapping[str, Any] | None = None, *,
                            lr: float | None = None, dtype: torch.dtype | None = None,
                            grid_points: int | None = None) -> OutputSpaceResult:
    """Fig. S3 (SPEC §9.3): one SGD step of GNT and of BP on the single validation sample.

    Network 4→4→4→2, tanh hidden, linear output, no biases, Xavier-uniform init, MSE loss, float32; data
    :func:`tp.data.student_teacher` (1000 train, 1000 test, 1 validation sample) with ``seed`` (default
    the config's ``random_seed`` = 93), which also seeds the initialisation.
    GNT: targets ĥ_i = h_i − J_i⁺ ∂ℒ/∂h_L (λ = 0) for layers 1, 2, 3 (output included) and the local-loss
    gradients (SPEC §4.9); BP: the gradient of the MSE.  Each is applied once as W_i ← W_i − lr·ΔW_i to
    all layers simultaneously; Δy = y_after − y_before.
    """
    hp = dict(output_space_hyperparameters() if hp is None else hp)
    seed = int(hp["random_seed"] if seed is None else seed)
    lr = float(hp["lr"] if lr is None else lr)
    G = int(hp["grid_points"] if grid_points is None else grid_points)
    dtype = dtype or _DTYPES[bool(hp.get("double_precision", False))]
    sizes = tuple(hp["sizes"])
    L = len(sizes) - 1
    if sizes[-1] != 2:
        raise ValueError(f"the output-space figure needs a 2-D output, got sizes {sizes}")
    net = MLP.build(sizes, hidden_activation=hp["hidden_activation"], output_activation=hp["output_activation"],
                    bias=not hp["no_bias"], loss="mse", dtype=dtype)
    data = student_teacher(sizes[0], sizes[-1], hp["num_train"], hp["num_test"], hp["num_val"], seed, dtype)
    x, y = data.val_x[:1], data.val_y[:1]  # (1, n_0), (1, n_L)
    g = torch.Generator().manual_seed(seed)
    params = net.init_params(g, init=hp["initialization"])

    with torch.no_grad():
        fwd = net.forward(params, x)
        y_before = fwd.output  # (1, n_L)
        gnt = make_rule("gnt", gn_damping=float(hp["gn_damping"]))
        updates = {
            "gnt": gnt.forward_update(net, params, {}, fwd, y).forward_grads,
            "bp": backprop_gradients(net, params, fwd, net.output_gradient(y_before, y)),
        }
        delta_y = {}
        for name, upd in updates.items():
            stepped = {k: p - lr * upd[k] for k, p in params.items()}  # SGD on all layers at once
            delta_y[name] = (net.forward(stepped, x).output - y_before)[0]  # (n_L,)

    as64 = lambda t: t.detach().to("cpu", torch.float64)  # noqa: E731
    y64, yb64 = as64(y[0]), as64(y_before[0])
    err = yb64 - y64  # e ∝ ∂ℒ/∂h_L
    radius = float(err.norm())
    arrow_length = float(hp.get("arrow_length_factor", 0.5)) * radius
    arrows, cosines = {}, {}
    for name, d in delta_y.items():
        d64 = as64(d)
        arrows[name] = d64 / d64.norm() * arrow_length
        cosines[name] = float(-(d64 @ err) / (d64.norm() * err.norm()))
    span = float(hp["grid_span"]) * radius
    grid_x = torch.linspace(float(y64[0]) - span, float(y64[0]) + span, G, dtype=torch.float64)
    grid_y = torch.linspace(float(y64[1]) - span, float(y64[1]) + span, G, dtype=torch.float64)
    GX, GY = torch.meshgrid(grid_x, grid_y, indexing="xy")  # (G, G): GX[j, k] = grid_x[k]
    loss_grid = ((GX - y64[0]) ** 2 + (GY - y64[1]) ** 2) / 2  # MSE: mean over the n_L = 2 outputs
    return OutputSpaceResult(
        x=as64(x[0]), y=y64, y_before=yb64, delta_y={k: as64(v) for k, v in delta_y.items()}, arrow=arrows,
        arrow_length=arrow_length, cos_to_neg_error=cosines, grid_x=grid_x, grid_y=grid_y, loss_grid=loss_grid,
        levels=int(hp["contour_levels"]), lr=lr, seed=seed,
        meta={"sizes": sizes, "layers": L, "dtype": str(dtype), "gn_damping": float(hp["gn_damping"])})
