"""The convolution and max-pool of the CNN (docs/algorithms.md#cnn-architecture), with an optional leading replica
dimension.

Shapes: inputs ``x`` (..., B, C, H, W), kernels ``weight`` (..., C_out, C, k_h, k_w), biases (..., C_out), where
``...`` is either nothing (one network) or R (R networks, e.g. R seeds, evaluated together).  An input without
the replica axis is shared by all replicas.

R networks are convolved in one call as a *grouped* convolution: the replicas' channels are stacked into R
groups, ``(B, R·C, H, W) ⊛ (R·C_out, C, k_h, k_w)`` with ``groups = R``, so that group r sees only replica r's
channels and kernels — exactly R separate convolutions (up to the kernels' summation order).  On a GPU this is
one cuDNN call for the whole block; the (R, B, …) ↔ (B, R·…) transposes around it are the cost of keeping the
replica axis in front like every other tensor of ``tp``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["conv2d", "conv2d_gemm", "max_pool", "CONV_IMPLS"]

#: how a conv block computes its convolution: ``direct`` (``F.conv2d``: cuDNN / the CPU kernels; the default)
#: or ``gemm`` (:func:`conv2d_gemm`).  Measured on an H200 in float64 (README, Speed): the GEMM form is 16 %
#: faster for BP's step but 2× slower for the DDTP/DFA steps and 3× for evaluation, so it is opt-in.
CONV_IMPLS = ("direct", "gemm")


def conv2d_gemm(x: Tensor, weight: Tensor, bias: Tensor, padding: int) -> Tensor:
    """Stride-1 2-D convolution (cross-correlation, like ``F.conv2d``) as a matrix product (im2col).

    float64 convolutions are slow in cuDNN on many GPUs, while float64 matrix products run on the tensor
    cores of recent ones; autograd differentiates this form through ``unfold`` (its adjoint is ``fold``) and
    the products.  ``F.conv2d`` is its reference twin in the tests.  (On an H200 the unfolded copies cost
    more than cuDNN's float64 kernels for all but BP's step: ``ConvNet(conv="gemm")`` is opt-in.)

        x (..., B, C, H, W), weight (..., C_out, C, k_h, k_w), bias (..., C_out) -> (..., B, C_out, H_out, W_out)
    """
    lead = x.shape[:-4]
    B, C, H, W = x.shape[-4:]
    c_out, _, kh, kw = weight.shape[-4:]
    h_out, w_out = H + 2 * padding - kh + 1, W + 2 * padding - kw + 1
    cols = F.unfold(x.reshape(-1, C, H, W), (kh, kw), padding=padding)  # (…·B, C·k_h·k_w, H_out·W_out)
    cols = cols.reshape(*lead, B, *cols.shape[-2:])
    out = weight.reshape(*weight.shape[:-4], 1, c_out, -1) @ cols  # (..., B, C_out, H_out·W_out)
    out = out + bias.reshape(*bias.shape[:-1], 1, c_out, 1)
    return out.reshape(*out.shape[:-1], h_out, w_out)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor, padding: int, impl: str = "direct") -> Tensor:
    """Stride-1 convolution of every replica with its own kernels: (..., B, C_out, H_out, W_out)."""
    if weight.dim() == 5 and x.dim() == 4:  # an input shared by the replicas
        x = x.expand(weight.shape[0], *x.shape)
    if impl == "gemm":
        return conv2d_gemm(x, weight, bias, padding)
    if weight.dim() == 4:
        return F.conv2d(x, weight, bias, stride=1, padding=padding)
    R, B, C, H, W = x.shape
    c_out = weight.shape[1]
    grouped = x.transpose(0, 1).reshape(B, R * C, H, W)  # replica r's channels are group r
    out = F.conv2d(grouped, weight.reshape(R * c_out, *weight.shape[2:]), bias.reshape(R * c_out), stride=1,
                   padding=padding, groups=R)  # (B, R·C_out, H_out, W_out)
    return out.reshape(B, R, c_out, *out.shape[-2:]).transpose(0, 1)


def max_pool(t: Tensor, kernel: int, stride: int, padding: int) -> tuple[Tensor, Tensor]:
    """``F.max_pool2d(..., return_indices=True)`` of every map of ``t`` (..., B, C, H, W): (pooled, arg-max
    indices flat over H·W of each map), both (..., B, C, H_out, W_out)."""
    lead = t.shape[:-3]
    h, idx = F.max_pool2d(t.reshape(-1, *t.shape[-3:]), kernel, stride, padding, return_indices=True)
    return h.reshape(*lead, *h.shape[-3:]), idx.reshape(*lead, *idx.shape[-3:])
