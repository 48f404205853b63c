"""Evaluation of docs/algorithms.md#what-a-run-reports: loss and accuracy as means over loader batches of the per-batch
means."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["EVAL_BATCH", "evaluate"]

EVAL_BATCH = 128


@torch.no_grad()
def evaluate(net, params: dict, x: Tensor, y: Tensor, batch_size: int = EVAL_BATCH, chunk: int | None = None,
             index: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(loss, accuracy): means over loader batches of the per-batch means (docs/algorithms.md#what-a-run-reports, so the
    last, smaller batch weighs like a full one), per replica when ``params`` has a replica dimension.
    ``index`` (R, N): replica r is evaluated on rows ``index[r]`` of ``x`` (its own validation split).
    ``chunk``: samples per forward pass (default 8192 flat inputs, 1024 images: the CNN's float64
    activations of 8192 images take about 5 GB)."""
    chunk = chunk or (8192 if x.dim() == 2 else 1024)
    if index is not None:  # R replicas gather R·chunk samples at once: keep the peak near one replica's
        chunk = max(EVAL_BATCH, chunk // index.shape[0])
    n = index.shape[-1] if index is not None else x.shape[0]
    losses, correct = [], []
    for k in range(0, n, chunk):
        if index is not None:
            rows = index[:, k:k + chunk]
            xb, yb = x[rows], y[rows]
        else:
            xb, yb = x[k:k + chunk], y[k:k + chunk]
        out = net.forward(params, xb).output
        losses.append(net.per_sample_loss(out, yb))
        if net.loss == "cross_entropy":
            correct.append((out.argmax(-1) == yb).to(out.dtype))
    loss = torch.cat(losses, -1)  # (..., N)
    nb = -(-n // batch_size)
    counts = torch.full((nb,), float(batch_size), dtype=loss.dtype, device=loss.device)
    counts[-1] = n - (nb - 1) * batch_size

    def mean_of_batch_means(v):  # (..., N) -> mean over loader batches of the per-batch means
        padded = v.new_zeros(v.shape[:-1] + (nb * batch_size,))
        padded[..., :n] = v
        return (padded.view(*v.shape[:-1], nb, batch_size).sum(-1) / counts).mean(-1)

    acc = mean_of_batch_means(torch.cat(correct, -1)) if correct else torch.full_like(loss[..., 0], math.nan)
    return mean_of_batch_means(loss), acc
