"""Adam with PyTorch's exact semantics, as plain tensor algebra on a dict of parameters.

The update of ``torch.optim.Adam`` (bias-corrected moments, ``lr·m̂/(√v̂ + ε)``, *coupled* L2 weight
decay g ← g + λθ — not AdamW), written out so that it

* works on any tensors (parameters with a leading replica dimension step like R separate optimisers,
  since every operation is element-wise),
* takes a per-parameter learning rate and ε (the CNN configurations use one Adam per layer),
* does not pull in ``torch._dynamo`` at construction (about a second per process),

and is checked against ``torch.optim.Adam`` in the tests.
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
    """

    def __init__(self, params: Mapping[str, Tensor], lr: float | Mapping[str, float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float | Mapping[str, float] = 1e-8,
                 weight_decay: float = 0.0):
        self.params = dict(params)
        self.lr = {k: float(lr[k] if isinstance(lr, Mapping) else lr) for k in self.params}
        self.eps = {k: float(eps[k] if isinstance(eps, Mapping) else eps) for k in self.params}
        self.betas = (float(betas[0]), float(betas[1]))
        self.weight_decay = float(weight_decay)
        self.step_count = 0
        self.exp_avg = {k: torch.zeros_like(p) for k, p in self.params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in self.params.items()}

    @torch.no_grad()
    def step(self, grads: Mapping[str, Tensor]) -> None:
        """One Adam step of every parameter with its gradient in ``grads`` (others are untouched; the step
        counter is shared, as every parameter is stepped on every call in the training loop)."""
        beta1, beta2 = self.betas
        self.step_count += 1
        t = self.step_count
        bias_correction1 = 1 - beta1 ** t
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
        for k, g in grads.items():
            p = self.params[k]
            if self.weight_decay != 0:
                g = g + self.weight_decay * p
            m, v = self.exp_avg[k], self.exp_avg_sq[k]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps[k])
            p.addcdiv_(m, denom, value=-self.lr[k] / bias_correction1)

    def state_dict(self) -> dict:
        return {"step": self.step_count, "exp_avg": {k: v.detach().cpu() for k, v in self.exp_avg.items()},
                "exp_avg_sq": {k: v.detach().cpu() for k, v in self.exp_avg_sq.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        self.step_count = int(state["step"])
        for k in self.params:
            self.exp_avg[k].copy_(state["exp_avg"][k])
            self.exp_avg_sq[k].copy_(state["exp_avg_sq"][k])
