"""Fig. S3: the direction of the output change under GNT and BP
(docs/algorithms.md#fig-s3-direction-of-the-output-change)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from ..data.datasets import student_teacher
from ..nets.mlp import MLP
from ..rules import backprop_gradients, make_rule
from .config import DTYPES, output_space_hyperparameters

__all__ = ["OutputSpaceResult", "output_space_experiment"]


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
    """Fig. S3 (docs/algorithms.md#fig-s3-direction-of-the-output-change): one SGD step of GNT and of BP on the single
    validation sample.

    Network 4→4→4→2, tanh hidden, linear output, no biases, Xavier-uniform init, MSE loss, float32; data
    :func:`tp.data.student_teacher` (1000 train, 1000 test, 1 validation sample) with ``seed`` (default
    the config's ``random_seed`` = 93), which also seeds the initialisation.
    GNT: targets ĥ_i = h_i − J_i⁺ ∂ℒ/∂h_L (λ = 0) for layers 1, 2, 3 (output included) and the local-loss
    gradients (docs/algorithms.md#gnt); BP: the gradient of the MSE.  Each is applied once as W_i ← W_i − lr·ΔW_i to
    all layers simultaneously; Δy = y_after − y_before.
    """
    hp = dict(output_space_hyperparameters() if hp is None else hp)
    seed = int(hp["random_seed"] if seed is None else seed)
    lr = float(hp["lr"] if lr is None else lr)
    G = int(hp["grid_points"] if grid_points is None else grid_points)
    dtype = dtype or DTYPES[bool(hp.get("double_precision", False))]
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
