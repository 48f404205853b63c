"""The small CIFAR-10 convolutional network of docs/algorithms.md#cnn-architecture as a stateless description plus a
parameter dict.

Layers are numbered 1…L = 4 like :class:`tp.nets.mlp.MLP`:

    block k = 1, 2:  a_k = conv2d(h_{k−1}; W_k, b_k)  (5×5, stride 1, padding 2)
                     t_k = tanh(a_k)
                     h_k = maxpool(t_k)                 (kernel 3, stride 2, padding 1)
    layer 3:         a_3 = W_3 flatten(h_2) + b_3,  h_3 = tanh(a_3)      (flatten channel-major C, H, W)
    layer 4:         a_4 = W_4 h_3 + b_4,           h_4 = a_4             (logits, softmax cross-entropy)

``h_1, h_2`` are the post-pool activations (..., B, C, H, W); ``h_3, h_4`` are (..., B, n).  The forward pass
(:class:`ConvForward`) also keeps the pre-pool activations ``t_k`` and the pool's arg-max indices.

Parameters live in a plain dict keyed ``W1, b1, …, W4, b4`` (conv kernels ``W_k`` of shape
(C_k, C_{k−1}, 5, 5)).  Like :class:`tp.nets.mlp.MLP`, ``...`` is an optional leading *replica* dimension R:
parameters of shape (R, *shape) hold R independent networks (e.g. R seeds) evaluated together, each
replica's convolutions in one grouped call (:mod:`tp.nets.conv`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.random import Generators, num_replicas, randn
from ..errors import unknown
from .activations import Activation, get_activation
from .conv import CONV_IMPLS, conv2d, conv2d_gemm, max_pool
from .interface import Forward, Losses, Params
from .mlp import xavier_normal
from .targets import dense_local_loss_gradients

__all__ = ["ConvNet", "ConvForward", "conv2d_gemm", "CONV_IMPLS", "KERNEL", "PADDING", "POOL_KERNEL", "POOL_STRIDE",
           "POOL_PADDING"]

KERNEL, PADDING = 5, 2  # Conv2d(5×5, stride 1, padding 2)
POOL_KERNEL, POOL_STRIDE, POOL_PADDING = 3, 2, 1  # MaxPool2d(3, stride 2, padding 1)


def _pooled(n: int) -> int:
    """Spatial size after the max-pool (floor mode, as PyTorch's default)."""
    return (n + 2 * POOL_PADDING - POOL_KERNEL) // POOL_STRIDE + 1


@dataclass
class ConvForward(Forward):
    """A forward pass of :class:`ConvNet`: ``a[i]``, ``h[i]`` for i = 0…4 (``a[0]`` None, ``h[0] = x``)
    plus, for the conv blocks k = 1, 2, ``pre_pool[k] = tanh(a_k)`` and ``pool_idx[k]``, the arg-max
    indices of ``max_pool2d(..., return_indices=True)`` (flat over H·W of the pre-pool map)."""

    pre_pool: list = field(default_factory=list)
    pool_idx: list = field(default_factory=list)


@dataclass(frozen=True)
class ConvNet(Losses):
    """The docs/algorithms.md#cnn-architecture CNN (defaults: the paper's CIFAR-10 network 3×32×32 → 32 → 64 conv → 512
    → 10).

    Args:
        in_shape: (C_0, H_0, W_0) of the (non-flattened) input.
        channels: output channels of the two conv blocks.
        fc: width of the fully connected tanh layer 3.
        n_out: number of classes (width of the linear output layer 4).
        loss: only ``"cross_entropy"``.
        dtype: parameter dtype (float64 in every CNN config).
        conv: how the convolutions are computed (:data:`CONV_IMPLS`; the same maths up to rounding).
    """

    in_shape: tuple[int, int, int] = (3, 32, 32)
    channels: tuple[int, int] = (32, 64)
    fc: int = 512
    n_out: int = 10
    loss: str = "cross_entropy"
    dtype: torch.dtype = torch.float64
    conv: str = "direct"
    _acts: tuple[Activation, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        in_shape = tuple(int(n) for n in self.in_shape)
        channels = tuple(int(c) for c in self.channels)
        if len(in_shape) != 3 or any(n <= 0 for n in in_shape):
            raise ValueError(f"in_shape must be (C, H, W) with positive entries, got {self.in_shape}")
        if len(channels) != 2 or any(c <= 0 for c in channels):
            raise ValueError(f"channels must list the two conv blocks' channel counts, got {self.channels}")
        if int(self.fc) <= 0 or int(self.n_out) <= 0:
            raise ValueError(f"fc and n_out must be positive, got fc={self.fc}, n_out={self.n_out}")
        if self.conv not in CONV_IMPLS:
            raise unknown("conv implementation", self.conv, CONV_IMPLS)
        if self.loss != "cross_entropy":
            raise ValueError(f"the CNN supports only loss='cross_entropy', got {self.loss!r}")
        object.__setattr__(self, "in_shape", in_shape)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "fc", int(self.fc))
        object.__setattr__(self, "n_out", int(self.n_out))
        object.__setattr__(self, "_acts", tuple(get_activation(a) for a in ("tanh", "tanh", "tanh", "linear")))

    # ------------------------------------------------------------------------------------- structure
    L = 4  # conv1, conv2, fc3, output

    @property
    def bias(self) -> tuple[bool, ...]:
        """Every layer has a bias (docs/algorithms.md#cnn-architecture)."""
        return (True,) * self.L

    @property
    def layer_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape of one sample's h_0 … h_4: (C0,H0,W0), (C1,H1,W1), (C2,H2,W2), (fc,), (n_out,)."""
        C0, H, W = self.in_shape
        C1, C2 = self.channels
        H1, W1 = _pooled(H), _pooled(W)
        H2, W2 = _pooled(H1), _pooled(W1)
        return ((C0, H, W), (C1, H1, W1), (C2, H2, W2), (self.fc,), (self.n_out,))

    @property
    def sizes(self) -> tuple[int, ...]:
        """Flattened widths n_0 … n_4 (n_k = C·H·W for the image layers)."""
        return tuple(math.prod(s) for s in self.layer_shapes)

    def activation(self, i: int) -> Activation:
        """φ_i of layer i: tanh for 1…3 (for the conv blocks it acts *before* the max-pool), linear for 4."""
        return self._acts[i - 1]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        C0 = self.in_shape[0]
        C1, C2 = self.channels
        return {
            "W1": (C1, C0, KERNEL, KERNEL), "b1": (C1,),
            "W2": (C2, C1, KERNEL, KERNEL), "b2": (C2,),
            "W3": (self.fc, self.sizes[2]), "b3": (self.fc,),
            "W4": (self.n_out, self.fc), "b4": (self.n_out,),
        }

    def init_params(self, generator: Generators, init: str = "xavier_normal", device=None) -> Params:
        """Xavier normal weights (conv: fan_in = C_in·25, fan_out = C_out·25), zero biases
        (docs/algorithms.md#cnn-architecture).

        A sequence of R generators gives parameters with a leading replica dimension R (replica r drawn from
        generator r only, in the order W1, W2, W3, W4: what a single run with that generator draws)."""
        if init != "xavier_normal":
            raise ValueError(f"the CNN supports only init='xavier_normal', got {init!r}")
        R = num_replicas(generator)
        lead = () if R is None else (R,)
        params: Params = {}
        for name, shape in self.param_shapes().items():
            if name[0] == "b":
                params[name] = torch.zeros(lead + shape, dtype=self.dtype, device=device)
            elif len(shape) == 4:
                c_out, c_in, kh, kw = shape
                std = math.sqrt(2.0 / (c_in * kh * kw + c_out * kh * kw))
                params[name] = std * randn(shape, generator, self.dtype, device)
            else:
                params[name] = xavier_normal(shape, generator, self.dtype, device)
        return params

    def check_params(self, params: Params) -> int | None:
        """Every parameter has this network's shape, all with or all without one leading replica axis R;
        returns R (None without replicas)."""
        lead = set()
        for name, shape in self.param_shapes().items():
            if name not in params:
                raise ValueError(f"ConvNet parameter {name} missing; it has {', '.join(self.param_shapes())}")
            got = tuple(params[name].shape)
            if got[len(got) - len(shape):] != shape or len(got) - len(shape) not in (0, 1):
                raise ValueError(f"ConvNet parameter {name} has shape {got}; the network's is {shape} "
                                 f"(or (R, *{shape}) for R replicas)")
            lead.add(got[:len(got) - len(shape)])
        if len(lead) != 1:
            raise ValueError(f"ConvNet parameters disagree on the replica axis: leading shapes {sorted(lead)}")
        (lead,) = lead
        return lead[0] if lead else None

    # --------------------------------------------------------------------------------------- forward
    def conv_block(self, params: Params, k: int, h_prev: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Block k ∈ {1, 2}: ``(a_k, t_k = tanh(a_k), h_k = maxpool(t_k), pool indices)``, all
        (..., B, C, H, W) (the replicas' convolutions in one grouped call: :func:`tp.nets.conv.conv2d`)."""
        a = conv2d(h_prev, params[f"W{k}"], params[f"b{k}"], PADDING, self.conv)
        t = torch.tanh(a)
        h, idx = max_pool(t, POOL_KERNEL, POOL_STRIDE, POOL_PADDING)
        return a, t, h, idx

    def fc_layer(self, params: Params, i: int, h_prev: Tensor) -> tuple[Tensor, Tensor]:
        """Layer i ∈ {3, 4}: ``(a_i, h_i)`` from h_{i−1} (h_2 flattened channel-major, (..., B, C·H·W))."""
        if i == 3:
            h_prev = h_prev.flatten(-3)
        a = h_prev @ params[f"W{i}"].mT + params[f"b{i}"].unsqueeze(-2)  # (..., B, n_i)
        return a, self.activation(i)(a)

    def forward(self, params: Params, x: Tensor) -> ConvForward:
        """Forward pass of a batch ``x`` (B, C_0, H_0, W_0) — or (R, B, C_0, H_0, W_0), one batch per replica —
        storing a_i, h_i, the pre-pool maps and the pool indices."""
        R = self.check_params(params)
        valid = (4,) if R is None else (4, 5)
        if x.dim() not in valid or (x.dim() == 5 and x.shape[0] != R):
            raise ValueError("ConvNet input must be (B, C, H, W)" + (f" or ({R}, B, C, H, W)" if R else "")
                             + f", got shape {tuple(x.shape)}")
        fwd = ConvForward([None], [x], [None], [None])
        h = x
        for k in (1, 2):
            a, t, h, idx = self.conv_block(params, k, h)
            fwd.a.append(a), fwd.h.append(h), fwd.pre_pool.append(t), fwd.pool_idx.append(idx)
        for i in (3, 4):
            a, h = self.fc_layer(params, i, h)
            fwd.a.append(a), fwd.h.append(h)
        return fwd

    def layer(self, params: Params, i: int, h_prev: Tensor) -> Tensor:
        """f_i: h_i from h_{i−1} (a conv block for i ≤ 2, a dense layer for i = 3, 4)."""
        return self.conv_block(params, i, h_prev)[2] if i <= 2 else self.fc_layer(params, i, h_prev)[1]

    def forward_from(self, params: Params, i: int, h_i: Tensor) -> Tensor:
        """F_{i→4}: the output obtained by feeding ``h_i`` through layers i+1…4."""
        h = h_i
        for k in range(i + 1, self.L + 1):
            h = self.layer(params, k, h)
        return h

    def flatten_layer(self, i: int, h: Tensor) -> Tensor:
        """(..., B, *layer_shapes[i]) → (..., B, n_i), channel-major for the conv blocks."""
        return h.flatten(-len(self.layer_shapes[i])) if len(self.layer_shapes[i]) > 1 else h

    def unflatten_layer(self, i: int, v: Tensor) -> Tensor:
        """(..., B, n_i) → (..., B, *layer_shapes[i])."""
        return v.reshape(*v.shape[:-1], *self.layer_shapes[i]) if len(self.layer_shapes[i]) > 1 else v

    # ------------------------------------------------------------------------- gradients and Jacobians
    def local_loss_gradients(self, params: Params, fwd: ConvForward, targets) -> Params:
        """Gradients of the local losses of the layers in ``targets`` (docs/algorithms.md#cnn-forward-updates), keyed
        like ``params``:

        * conv blocks k ∈ {1, 2}: ∂/∂(W_k, b_k) of mean_{B·C·H·W}(h_k − ĥ_k)² through max-pool (routed to the
          arg-max positions) and tanh, ĥ_k and h_{k−1} constant (autograd on a recomputation of the block);
        * dense layers 3, 4: the docs/algorithms.md#the-local-layer-loss formula (2/B) Σ_b [φ′(a_i^b) ⊙ (h_i^b − ĥ_i^b)]
          h_{i−1}^bᵀ, with h_2 flattened channel-major as the input of layer 3
          (:func:`tp.nets.targets.dense_local_loss_gradients`).

        ``targets[k]`` is shaped like ``fwd.h[k]``; per replica with a replica axis."""
        grads: Params = {}
        for k, target in targets.items():
            if k <= 2:
                with torch.enable_grad():
                    W = params[f"W{k}"].detach().requires_grad_(True)
                    b = params[f"b{k}"].detach().requires_grad_(True)
                    h = self.conv_block({f"W{k}": W, f"b{k}": b}, k, fwd.h[k - 1].detach())[2]
                    loss = ((h - target.detach()) ** 2).flatten(-4).mean(-1)  # ℓ_k per replica
                    grads[f"W{k}"], grads[f"b{k}"] = torch.autograd.grad(loss.sum(), (W, b))
            else:
                h_prev = self.flatten_layer(k - 1, fwd.h[k - 1])
                grads[f"W{k}"], grads[f"b{k}"] = dense_local_loss_gradients(
                    self.activation(k), fwd.a[k], fwd.h[k], h_prev, target, True)
        return {k: grads[k] for k in self.param_shapes() if k in grads}

    def backprop_gradients(self, params: Params, fwd: ConvForward, dL_dhL: Tensor) -> Params:
        """∂ℒ/∂θ of every parameter given ∂ℒ/∂h_4 (..., B, n_L): autograd through the recomputed network
        (conv, tanh and max-pool), the vector-Jacobian product with ``dL_dhL``."""
        names = list(self.param_shapes())
        with torch.enable_grad():
            p = {k: params[k].detach().requires_grad_(True) for k in names}
            out = self.forward(p, fwd.h[0].detach()).output
            grads = torch.autograd.grad(out, [p[k] for k in names], grad_outputs=dL_dhL)
        return dict(zip(names, grads))

    def output_jacobians(self, params: Params, fwd: ConvForward, layers=None) -> dict[int, Tensor]:
        """``{k: J_k}``, J_k^b = ∂h_4^b/∂h_k^b flattened to (..., B, n_L, n_k), for ``layers`` (default 1…4).

        Layers lowest+1…4 are recomputed from h_lowest with autograd; row c of every J_k^b is the gradient of
        Σ_b h_4^b[c] w.r.t. h_k (the samples and replicas do not interact, so the sum separates them): n_L
        reverse sweeps."""
        layers = list(range(1, self.L + 1)) if layers is None else sorted(layers)
        if not layers or layers[0] < 1 or layers[-1] > self.L:
            raise ValueError(f"CNN layers are 1…{self.L}, got {layers}")
        with torch.enable_grad():
            h = {layers[0]: fwd.h[layers[0]].detach().requires_grad_(True)}
            for i in range(layers[0] + 1, self.L + 1):  # h_i = f_i(h_{i−1}), keeping the graph
                h[i] = self.layer(params, i, h[i - 1])
            out = h[self.L]  # (..., B, n_L)
            rows = {k: [] for k in layers}
            for c in range(out.shape[-1]):
                grads = torch.autograd.grad(out[..., c].sum(), [h[k] for k in layers], retain_graph=True)
                for k, g in zip(layers, grads):
                    rows[k].append(self.flatten_layer(k, g))  # (..., B, n_k)
        return {k: torch.stack(rows[k], dim=-2) for k in layers}  # (..., B, n_L, n_k)
