"""Adam with PyTorch's exact semantics, as plain tensor algebra on a dict of parameters.

The update of ``torch.optim.Adam`` (bias-corrected moments, ``lr·m̂/(√v̂ + ε)``, *coupled* L2 weight
decay g ← g + λθ — not AdamW), written out so that it

* works on any tensors (parameters with a leading replica dimension step like R separate optimisers,
  since every operation is element-wise),
* takes a per-parameter learning rate and ε (the CNN configurations use one Adam per layer),
* does not pull in ``torch._dynamo`` at construction (about a second per process),
* has a *capturable* form (``capturable=True``) whose step count lives in a device tensor and whose update
  is PyTorch's fused Adam kernel (or multi-tensor kernels) without any host value that changes from
  step to step, so that a whole training step can be captured once as a CUDA graph and replayed
  (:mod:`tp.core.fast`); it equals the plain form up to floating-point rounding,

and both forms are checked against ``torch.optim.Adam`` in the tests.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

__all__ = ["Adam"]


class Adam:
    """Adam over ``params`` (a dict name → tensor, updated in place by :meth:`step`).

    ``lr`` and ``eps`` are one value or a dict name → value; ``betas`` and ``weight_decay`` are shared.
    ``capturable``: keep the step count on the parameters' device and never read it on the host in
    :meth:`step` (for CUDA-graph capture); the state dict is the same in both forms.
    """

    def __init__(self, params: Mapping[str, Tensor], lr: float | Mapping[str, float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float | Mapping[str, float] = 1e-8,
                 weight_decay: float = 0.0, capturable: bool = False):
        self.params = dict(params)
        lr = {k: lr[k] if isinstance(lr, Mapping) else lr for k in self.params}
        eps = {k: eps[k] if isinstance(eps, Mapping) else eps for k in self.params}
        self.per_replica = any(_is_seq(v) for v in [*lr.values(), *eps.values(), *betas, weight_decay])
        if self.per_replica:  # one value per replica r (the leading dimension of every parameter)
            self._hp = _ReplicaHyperparameters(self.params, lr, eps, betas, weight_decay)
        self.lr = {k: _value(v) for k, v in lr.items()}
        self.eps = {k: _value(v) for k, v in eps.items()}
        self.betas = (_value(betas[0]), _value(betas[1]))
        self.weight_decay = _value(weight_decay)
        self.step_count = 0
        self.exp_avg = {k: torch.zeros_like(p) for k, p in self.params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in self.params.items()}
        self.capturable = bool(capturable)
        self._t = None
        if self.capturable:
            if not self.params:
                raise ValueError("a capturable Adam needs at least one parameter")
            first = next(iter(self.params.values()))
            # step count t on the device (float32 like torch.optim's fused Adam: exact up to 2^24 steps)
            self._t = torch.zeros((), dtype=torch.float32, device=first.device)
            self._fused = hasattr(torch, "_fused_adam_")

    @torch.no_grad()
    def step(self, grads: Mapping[str, Tensor]) -> None:
        """One Adam step of every parameter with its gradient in ``grads`` (others are untouched; the step
        counter is shared, as every parameter is stepped on every call in the training loop)."""
        if self.per_replica:
            self._step_per_replica(grads)
            return
        if self.capturable:
            self._step_capturable(grads)
            return
        beta1, beta2 = self.betas
        self.step_count += 1
        t = self.step_count
        bias_correction1 = 1 - beta1 ** t
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
        for k, g in grads.items():
            p, m = self.params[k], self.exp_avg[k]
            denom = self.moments(k, g, bias_correction2_sqrt)
            step_size = -self.lr[k] / bias_correction1
            if abs(step_size) <= torch.finfo(p.dtype).max:
                p.addcdiv_(m, denom, value=step_size)
            else:  # a rate beyond the dtype's range (float32 lr = 1e38): the update overflows to ±inf/NaN,
                # as its arithmetic would, and the run is reported as diverged instead of raising here
                p.add_(m.div(denom).mul_(step_size))

    def moments(self, k: str, g: Tensor, bias_correction2_sqrt: float | Tensor) -> Tensor:
        """Adam's moment update of parameter ``k`` from its gradient ``g``, in place, and the update's
        denominator: with coupled weight decay g ← g + λθ,

            m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   returns √v / √(1 − β₂ᵗ) + ε

        (shapes of the parameter). ``bias_correction2_sqrt`` is √(1 − β₂ᵗ), a float here or a 0-d tensor in
        the compiled step (:mod:`tp.training.compiled`), which applies the update ``θ ← θ − lr/(1 − β₁ᵗ) · m /
        denom`` with its own step size; one formula for both, so the paths cannot drift apart."""
        beta1, beta2 = self.betas
        if self.weight_decay != 0:
            g = g + self.weight_decay * self.params[k]
        m, v = self.exp_avg[k], self.exp_avg_sq[k]
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        return (v.sqrt() / bias_correction2_sqrt).add_(self.eps[k])

    def _step_per_replica(self, grads: Mapping[str, Tensor]) -> None:
        """The update of :meth:`step` with lr, ε, β₁, β₂ and λ per replica: 0-d → (R, 1, …, 1) tensors that
        broadcast over each parameter's replica dimension (the step count on the device when capturable, so
        that no host value changes from step to step)."""
        if not grads:
            return
        if self.capturable:
            self._t.add_(1)
            t = self._t.to(torch.float64)
        self.step_count += 1
        if not self.capturable:
            t = float(self.step_count)
        hp = self._hp
        for k, g in grads.items():
            p, m, v = self.params[k], self.exp_avg[k], self.exp_avg_sq[k]
            lr, eps, beta1, beta2, wd = hp.of(k)
            if hp.decays:
                g = g + wd * p
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).add_((1 - beta2) * g * g)
            bias_correction1 = 1 - beta1 ** t
            bias_correction2_sqrt = (1 - beta2 ** t).sqrt()
            denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
            p.addcdiv_(m * (-lr / bias_correction1), denom)

    def _step_capturable(self, grads: Mapping[str, Tensor]) -> None:
        """The same update as :meth:`step` with t on the device: PyTorch's fused Adam kernel (one kernel per
        group of parameters sharing lr and ε: each moment and parameter read and written once), or, where
        that kernel is missing, multi-tensor kernels with 0-d device bias corrections."""
        keys = list(grads)
        if not keys:
            return
        self._t.add_(1)
        groups: dict[tuple[float, float], list[str]] = {}
        for k in keys:
            groups.setdefault((self.lr[k], self.eps[k]), []).append(k)
        for (lr, eps), names in groups.items():
            args = ([self.params[k] for k in names], [grads[k] for k in names],
                    [self.exp_avg[k] for k in names], [self.exp_avg_sq[k] for k in names])
            # the fused kernel reads raw memory (on the CPU without checking): dense tensors laid out like
            # their parameters only, else the multi-tensor path
            dense = all(g.is_contiguous() and p.is_contiguous() and g.shape == p.shape
                        for p, g in zip(args[0], args[1]))
            if self._fused and dense:
                try:
                    torch._fused_adam_(*args, [], [self._t] * len(names), lr=lr, beta1=self.betas[0],
                                       beta2=self.betas[1], weight_decay=self.weight_decay, eps=eps,
                                       amsgrad=False, maximize=False)
                    continue
                except (RuntimeError, NotImplementedError):  # no fused kernel for this device/dtype
                    self._fused = False
            self._foreach_update(*args, lr, eps)
        self.step_count += 1  # host mirror (a replayed graph advances only t; see sync_step_count)

    def _foreach_update(self, ps, gs, ms, vs, lr: float, eps: float) -> None:
        beta1, beta2 = self.betas
        t = self._t.to(torch.float64)
        bias_correction1 = 1 - torch.pow(beta1, t)
        bias_correction2_sqrt = (1 - torch.pow(beta2, t)).sqrt()
        if self.weight_decay != 0:
            gs = torch._foreach_add(gs, ps, alpha=self.weight_decay)
        torch._foreach_lerp_(ms, gs, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        update = torch._foreach_mul(ms, -lr / bias_correction1)  # −lr/(1 − β₁ᵗ) · m / denom
        torch._foreach_div_(update, denom)
        torch._foreach_add_(ps, update)

    @property
    def device_step(self):
        """The step count t as a 0-d device tensor (capturable form; None otherwise): state a captured CUDA
        graph advances, so :mod:`tp.core.fast` saves and restores it with the parameters."""
        return self._t

    def sync_step_count(self) -> None:
        """Read the device step count back into ``step_count`` (after graph replays)."""
        if self.capturable:
            self.step_count = int(self._t.item())

    def set_step_count(self, step: int) -> None:
        """Set the step count t (host mirror and, in the capturable form, the device tensor)."""
        self.step_count = int(step)
        if self.capturable:
            self._t.fill_(self.step_count)

    def state_dict(self) -> dict:
        self.sync_step_count()
        return {"step": self.step_count, "exp_avg": {k: v.detach().cpu() for k, v in self.exp_avg.items()},
                "exp_avg_sq": {k: v.detach().cpu() for k, v in self.exp_avg_sq.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        self.set_step_count(state["step"])
        for k in self.params:
            self.exp_avg[k].copy_(state["exp_avg"][k])
            self.exp_avg_sq[k].copy_(state["exp_avg_sq"][k])


def _is_seq(v) -> bool:
    return isinstance(v, (list, tuple, Tensor)) and not (isinstance(v, Tensor) and v.dim() == 0)


def _value(v):
    """A scalar hyperparameter as a float; a per-replica one as its list of floats (for reading only)."""
    if isinstance(v, Tensor):
        return v.tolist() if v.dim() else float(v)
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else float(v)


class _ReplicaHyperparameters:
    """Per-replica Adam hyperparameters as tensors shaped (R, 1, …, 1) per parameter (on its device and in
    its dtype); a scalar is the same for every replica."""

    def __init__(self, params, lr, eps, betas, weight_decay):
        first = next(iter(params.values()))
        self.replicas = first.shape[0]

        def tensor(v, key):
            t = torch.as_tensor(v, dtype=first.dtype, device=first.device).reshape(-1)
            if t.numel() not in (1, self.replicas):
                raise ValueError(f"Adam: {key} needs one value or one per replica ({self.replicas}), "
                                 f"got {t.numel()}")
            return t.expand(self.replicas).clone()

        self.lr = {k: tensor(v, f"lr of {k}") for k, v in lr.items()}
        self.eps = {k: tensor(v, f"eps of {k}") for k, v in eps.items()}
        self.beta1, self.beta2 = tensor(betas[0], "beta1"), tensor(betas[1], "beta2")
        self.wd = tensor(weight_decay, "weight_decay")
        self.decays = bool((self.wd != 0).any())
        self._shaped: dict[str, tuple] = {}
        for k, p in params.items():
            if p.shape[0] != self.replicas:
                raise ValueError(f"Adam: per-replica hyperparameters need a leading replica dimension "
                                 f"{self.replicas} on every parameter, {k} has shape {tuple(p.shape)}")
            shape = (self.replicas,) + (1,) * (p.dim() - 1)
            self._shaped[k] = tuple(x.reshape(shape) for x in
                                    (self.lr[k], self.eps[k], self.beta1, self.beta2, self.wd))

    def of(self, k: str) -> tuple:
        """(lr, ε, β₁, β₂, λ) of parameter k, each (R, 1, …, 1)."""
        return self._shaped[k]
