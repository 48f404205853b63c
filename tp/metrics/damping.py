"""The paired damping search beside the official one (Table S7, docs/algorithms.md#the-damping-search-table-s7; issue
23): its maths and its statistics. Metrics only: no rule imports this module.

The official search (docs/algorithms.md#the-damping-search-table-s7, :func:`tp.training.hooks.damping_search`) gives
every λ its own shuffled pass and averages the angle over the few minibatches with index ≡ 0 (mod ``log_interval``): 6
on MNIST, a different 6 for every λ, so its per-layer argmin is mostly the noise of which minibatches each λ saw.  The
paired search measures the same quantity — per minibatch and hidden layer i, the angle
(docs/algorithms.md#when-the-angles-are-measured) between the method's update ΔW_i and the local-loss gradient of the
damped GNT target (docs/algorithms.md#the-two-references) — on **one** fixed draw of M minibatches shared by every λ ∈
Λ, so the curve over λ differs only by λ:

* per minibatch, one forward pass, one method update, one gradient g = ∂ℒ/∂h_L and one set of output
  Jacobians J_i serve all λ: with the thin SVD J_i^b = U diag(σ) Vᵀ (one per sample; for a wide J_i
  through the QR of J_iᵀ, :func:`_thin_svd`),

      Δ_i^b(λ) = J_iᵀ (J_i J_iᵀ + λI)⁻¹ g^b = V diag(σ / (σ² + λ)) Uᵀ g^b      (λ > 0)
      Δ_i^b(0) = J_i⁺ g^b                   = V diag(1/σ, 0 where σ ≤ tol) Uᵀ g^b

  (tol as :func:`torch.linalg.pinv`'s: max(n_L, n_i)·eps·σ_max), which is what
  :func:`tp.nets.gauss_newton.damped_gn_displacement` computes for each λ separately;
* per (λ, layer): the mean angle over the M minibatches and its standard error (sample std / √M);
* per layer: λ* = the argmin (first in Λ's order, like the official selection) and, because the data are
  paired, the standard error of the **paired difference** d_m(λ) = angle_m(λ) − angle_m(λ*): the
  between-minibatch spread that every λ shares (an easy minibatch is easy for all λ) cancels in d, so
  SE(d) — not the SEs of the two means — says whether λ and λ* can be told apart.  λ is "within 2 SE" of
  the minimum when mean d(λ) ≤ 2·SE(d(λ)); λ* always is; with fewer than 2 minibatches nothing can be told
  apart (SE undefined: every λ is within).

**Grid edges.** A layer whose λ* is the largest λ of Λ may have its minimum beyond the grid.  With
``damping_paired_extend_to`` = λ_max the search also measures the decades above Λ's top, 10·top, 100·top, …
up to λ_max (:func:`damping_extension`), on the same minibatches, and keeps the smallest extension under
which no layer's λ* is the grid's top, or all of it when the bound is reached first
(:func:`grid_extension`); the official procedure and its grid are left as they are.  λ = 0, the bottom of Λ,
is the undamped pseudo-inverse: there is nothing below it to extend to.

A minibatch on which some λ's angle of layer i is undefined (a zero update: no direction) is left out of
layer i for every λ, so the curve stays paired.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..nets.interface import Forward, Network, Params
from .alignment import angle

__all__ = ["gn_displacements_all_dampings", "paired_gnt_angles", "paired_statistics", "paired_selection",
           "PAIRED_COLUMNS", "seed_agreement", "damping_extension", "grid_extension"]

#: columns of ``damping_paired.csv`` (one row per λ and hidden layer)
PAIRED_COLUMNS = ["damping", "layer", "mean_angle", "se", "diff_to_min", "se_diff", "batches", "within_2se"]


def gn_displacements_all_dampings(J: Tensor, g: Tensor, dampings: Sequence[float]) -> Tensor:
    """Δ(λ) = Jᵀ(JJᵀ + λI)⁻¹ g for every λ of ``dampings`` from one SVD per sample (λ = 0: J⁺ g).

    ``J`` (..., B, n_L, n), ``g`` (..., B, n_L) → (Λ, ..., B, n), Λ = len(dampings)."""
    lams = [float(v) for v in dampings]
    bad = [v for v in lams if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"the Gauss-Newton damping must be a finite number >= 0, got {bad[0]!r} in {lams}")
    if J.shape[:-2] != g.shape[:-1] or J.shape[-2] != g.shape[-1]:
        raise ValueError(f"J {tuple(J.shape)} and g {tuple(g.shape)}: expected (..., B, n_L, n) and (..., B, n_L)")
    U, S, Vh = _thin_svd(J)  # U (..., B, n_L, k), S (..., B, k), Vh (..., B, k, n), k = min(n_L, n)
    c = (U.mT @ g.unsqueeze(-1)).squeeze(-1)  # Uᵀg (..., B, k)
    tol = max(J.shape[-2], J.shape[-1]) * torch.finfo(J.dtype).eps * S[..., :1]  # pinv's default cut-off
    gains = []
    for lam in lams:
        if lam == 0:
            gains.append(torch.where(S > tol, 1.0 / torch.where(S > tol, S, torch.ones_like(S)), torch.zeros_like(S)))
        else:
            gains.append(S / (S * S + lam))
    gain = torch.stack(gains)  # (Λ, ..., B, k)
    return torch.einsum("l...k,...kn->l...n", gain * c, Vh)  # V diag(gain) Uᵀg, (Λ, ..., B, n)


def _thin_svd(J: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """J = U diag(S) Vh, thin.  A wide J (n > n_L, every MLP hidden layer of the paper) goes through the
    Householder QR of Jᵀ = Q R (Q (…, n, n_L), R (…, n_L, n_L)) and the SVD of the small Rᵀ = U diag(S) Wᵀ,
    so Vh = Wᵀ Qᵀ: the same factorisation, backward stable like a direct SVD, a few times faster for
    10 × 256 Jacobians."""
    if J.shape[-1] <= J.shape[-2]:
        return torch.linalg.svd(J, full_matrices=False)
    Q, R = torch.linalg.qr(J.mT)
    U, S, Wh = torch.linalg.svd(R.mT)
    return U, S, Wh @ Q.mT


def paired_gnt_angles(net: Network, params: Params, fwd: Forward, y: Tensor, update: Mapping[str, Tensor],
                      dampings: Sequence[float], layers: Sequence[int]) -> np.ndarray:
    """Angles (Λ, len(layers)) in degrees between the method's update ``update`` and the damped-GNT
    update of every hidden layer in ``layers``, for every λ of ``dampings``, on one minibatch (its forward
    pass ``fwd``, labels ``y``): the Jacobians and g once, the targets ĥ_i = h_i − Δ_i(λ) turned into
    updates by the network's local losses (docs/algorithms.md#the-two-references, as
    :func:`tp.metrics.alignment.gnt_reference`).  NaN where an update is zero (no direction)."""
    layers = list(layers)
    g = net.output_gradient(fwd.output, y)  # ∂ℒ/∂h_L of the minibatch mean, (B, n_L)
    J = net.output_jacobians(params, fwd, layers)  # {i: (B, n_L, n_i)}
    delta = {i: gn_displacements_all_dampings(J[i], g, dampings) for i in layers}  # {i: (Λ, B, n_i)}
    out = np.full((len(dampings), len(layers)), math.nan)
    for k in range(len(dampings)):
        targets = {i: fwd.h[i] - net.unflatten_layer(i, delta[i][k]) for i in layers}
        reference = net.local_loss_gradients(params, fwd, targets)
        for j, i in enumerate(layers):
            try:
                out[k, j] = float(angle(update[f"W{i}"], reference[f"W{i}"]))
            except ValueError:  # a zero update has no direction
                pass
    return out


def paired_statistics(angles: np.ndarray, dampings: Sequence[float], layers: Sequence[int]) -> list[dict]:
    """Rows (columns :data:`PAIRED_COLUMNS`) per λ and layer from the per-minibatch angles ``angles``
    (M, Λ, len(layers)): mean, standard error of the mean, the mean paired difference to the layer's
    argmin λ* and its standard error, the number of minibatches used, and whether λ is within 2 SE(d) of
    the minimum (module docstring)."""
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 3 or angles.shape[1:] != (len(dampings), len(layers)):
        raise ValueError(f"angles of shape {angles.shape}: expected (minibatches, {len(dampings)} dampings, "
                         f"{len(layers)} layers)")
    rows = []
    for j, layer in enumerate(layers):
        a = angles[:, :, j]
        a = a[np.isfinite(a).all(axis=1)]  # (M_i, Λ): the minibatches where every λ has an angle
        m = a.shape[0]
        mean = a.mean(axis=0) if m else np.full(len(dampings), math.nan)
        se = a.std(axis=0, ddof=1) / math.sqrt(m) if m >= 2 else np.full(len(dampings), math.nan)
        best = int(np.argmin(mean)) if m else None  # the first minimum in Λ's order
        d = a - a[:, [best]] if m else a  # paired differences to λ*, (M_i, Λ)
        diff = d.mean(axis=0) if m else np.full(len(dampings), math.nan)
        se_d = d.std(axis=0, ddof=1) / math.sqrt(m) if m >= 2 else np.full(len(dampings), math.nan)
        for k, lam in enumerate(dampings):
            within = None if not m else bool(k == best or not math.isfinite(se_d[k]) or diff[k] <= 2 * se_d[k])
            rows.append({"damping": float(lam), "layer": int(layer), "mean_angle": float(mean[k]),
                         "se": float(se[k]), "diff_to_min": float(diff[k]), "se_diff": float(se_d[k]),
                         "batches": m, "within_2se": within})
    return rows


def damping_extension(top: float, bound: float | None) -> list[float]:
    """The λ above a grid whose largest λ is ``top`` that the paired search may add (module docstring, "Grid
    edges"): 10·top, 100·top, … while ≤ ``bound``; [] for ``bound`` None (no extension)."""
    if bound is None:
        return []
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) \
            or not bound >= 10 * top:
        raise ValueError(f"damping_paired_extend_to must be null (no extension) or a finite λ of at least 10 × "
                         f"the grid's largest λ {top:g}, i.e. >= {10 * top:g}, got {bound!r}")
    out, lam = [], float(top)
    while True:
        lam = float(f"{lam * 10:.12g}")  # 100.0, not 100.00000000000001
        if lam > bound * (1 + 1e-12):
            return out
        out.append(lam)


def grid_extension(angles: np.ndarray, base: Sequence[float], extra: Sequence[float],
                   layers: Sequence[int]) -> int:
    """How many λ of ``extra`` (the ascending extension above ``base``) the paired search keeps: none while no
    layer's λ* under :func:`paired_statistics` is the grid's largest λ; else one more at a time until none is,
    or all of ``extra``.  ``angles`` (M, len(base) + len(extra), len(layers)), λ in that order."""
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 3 or angles.shape[1] != len(base) + len(extra):
        raise ValueError(f"angles of shape {angles.shape}: expected (minibatches, {len(base) + len(extra)} "
                         f"dampings, {len(layers)} layers)")
    kept = 0
    while kept < len(extra):
        grid = [*base, *extra[:kept]]
        best, _ = paired_selection(paired_statistics(angles[:, :len(grid)], grid, layers))
        if grid[-1] not in best:
            break
        kept += 1
    return kept


def paired_selection(rows: list[dict]) -> tuple[list[float | None], list[list[float]]]:
    """(λ* per hidden layer, the λ within 2 SE of the minimum per hidden layer, in Λ's order) from
    :func:`paired_statistics`' rows (or ``damping_paired.csv`` read back); None / [] for a layer without
    minibatches."""
    layers = sorted({int(r["layer"]) for r in rows})
    best, within = [], []
    for i in layers:
        mine = [r for r in rows if int(r["layer"]) == i and not math.isnan(float(r["mean_angle"]))]
        best.append(float(min(mine, key=lambda r: float(r["mean_angle"]))["damping"]) if mine else None)
        within.append([float(r["damping"]) for r in mine if _true(r["within_2se"])])
    return best, within


def _true(v) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() == "true")


def seed_agreement(selected: Sequence[Sequence[float | None]],
                   within: Sequence[Sequence[Sequence[float]]] | None = None) -> list[dict]:
    """How several seeds' damping searches agree, per hidden layer (Table S7's reproducibility, issue 23).

    ``selected[k][i]``: seed k's λ for hidden layer i (None: no selection); ``within[k][i]``: seed k's λ
    within 2 SE of its minimum for layer i (the paired search), or None (the official search has no such
    set).  One dict per layer: ``same`` (every seed selected the same λ), ``choices`` (the seeds' λ, in
    order) and, with ``within``, ``overlap`` (some λ lies in every seed's set: their choices are compatible)
    and ``common`` (those λ, sorted)."""
    if len(selected) < 2:
        raise ValueError(f"seed agreement needs at least 2 seeds' selections, got {len(selected)}")
    layers = {len(s) for s in selected}
    if len(layers) != 1:
        raise ValueError(f"the seeds' selections have different numbers of hidden layers: {sorted(layers)}")
    if within is not None and [len(w) for w in within] != [len(s) for s in selected]:
        raise ValueError("within: one list of λ per hidden layer and seed, as selected")
    rows = []
    for i in range(layers.pop()):
        choices = [s[i] for s in selected]
        row = {"layer": i + 1, "choices": choices,
               "same": None not in choices and len({float(c) for c in choices}) == 1}
        if within is not None:
            common = set.intersection(*({float(v) for v in w[i]} for w in within))
            row.update(overlap=bool(common), common=sorted(common))
        rows.append(row)
    return rows

