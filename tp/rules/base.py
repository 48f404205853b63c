"""The one contract every learning rule follows.

A rule is stateless apart from its hyperparameters.  For one minibatch ``(x, y)`` at forward parameters
``params`` and feedback parameters ``feedback`` it returns

* ``forward_grads`` — the update it wants applied to the forward parameters, as the *gradient-like*
  quantity an optimiser descends (what the official code writes into ``.grad``), keyed like ``params``;
* ``feedback_grads`` — for rules with trainable feedback, the gradients of its reconstruction loss (DTP
  loss, DRL, control loss) w.r.t. the trainable feedback parameters (before weight decay);
* ``targets`` — ĥ_i received by each layer (empty for BP).

Nothing is applied: the caller (the training loop, a notebook) owns the optimisers.  All maths is
explicit tensor algebra that broadcasts over an optional leading replica dimension; randomness (feedback
noise) comes from the generator(s) passed in, or from explicitly injected noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor

from ..core.random import Generators, randn
from ..core.replicas import is_per_replica, per_replica
from ..errors import HyperparameterError
from ..nets.interface import Forward, Network, Params
from ..nets.mlp import MLP

__all__ = ["Rule", "StepResult", "REQUIRED"]


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()


@dataclass
class StepResult:
    """What a rule computes on one minibatch (nothing is applied)."""

    forward_grads: Params
    targets: dict[int, Tensor]
    loss: Tensor  # ℒ per replica (scalar without replicas)
    output: Tensor  # h_L, (..., B, n_L)
    feedback_grads: Params = field(default_factory=dict)
    # reconstruction loss of each feedback block, per replica
    feedback_losses: dict[int, Tensor] = field(default_factory=dict)
    # values of the forward update that the feedback loss of the SAME step (same parameters, feedback
    # and minibatch) reuses, e.g. the clean feedback outputs g_i(h_L); pass to feedback_gradients(cache=)
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def reconstruction_loss(self) -> Tensor | None:
        """Sum of the feedback blocks' losses (per replica), or None without feedback training."""
        if not self.feedback_losses:
            return None
        return sum(self.feedback_losses.values())


class Rule:
    """Base class of the learning rules.  Subclasses set the class attributes and implement
    :meth:`_forward_update` (and, when ``trains_feedback``, :meth:`_feedback_gradients` and
    :meth:`noise_layers`)."""

    name: ClassVar[str] = ""
    paper_name: ClassVar[str] = ""
    #: hyperparameter name -> default value (``REQUIRED`` for none)
    hyperparameters: ClassVar[dict[str, Any]] = {}
    #: the rule has feedback parameters (trained or fixed)
    has_feedback: ClassVar[bool] = False
    #: the rule's feedback parameters are trained (has a reconstruction loss)
    trains_feedback: ClassVar[bool] = False
    #: the form of its feedback maps: "direct" (g_i from the output space to hidden layer i, DFA and the DDTP
    #: family) or "layerwise" (g_k from layer k to layer k−1, DTP and DTPDRL); None: no feedback (BP, GNT)
    feedback_family: ClassVar[str | None] = None
    #: its feedback loss: "reconstruction" (DTP's, docs/algorithms.md#dtp-and-dtp-pre-trained), "drl" (the
    #: difference reconstruction loss, docs/algorithms.md#dtpdrl, #ddtp-linear), "control"
    #: (docs/algorithms.md#ddtp-control); None: feedback not trained
    feedback_loss: ClassVar[str | None] = None
    #: the networks the rule trains (the models of :mod:`tp.config.models`): "mlp" (tp.MLP,
    #: docs/algorithms.md#the-fully-connected-networks) and/or "cnn"
    #: (tp.nets.cnn.ConvNet, docs/algorithms.md#the-cnn-table-3); the rule itself sees only the network interface of
    #: :mod:`tp.nets.interface`
    networks: ClassVar[tuple[str, ...]] = ("mlp",)

    def __init__(self, **hyperparameters: Any):
        valid = self.hyperparameters
        unknown = sorted(set(hyperparameters) - set(valid))
        if unknown:
            raise HyperparameterError(
                f"rule {self.name!r} does not take hyperparameter(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(valid) or '(none)'}"
            )
        values = {**valid, **hyperparameters}
        missing = [k for k, v in values.items() if v is REQUIRED]
        if missing:
            raise HyperparameterError(
                f"rule {self.name!r} needs hyperparameter(s) {', '.join(map(repr, missing))}; "
                f"it takes: {', '.join(f'{k}={v!r}' for k, v in valid.items())}"
            )
        self.hp: dict[str, Any] = values
        self._validate()

    def _validate(self) -> None:
        """Check hyperparameter values (subclasses extend)."""
        for key in ("target_stepsize", "sigma"):
            value = self.hp.get(key)
            if is_per_replica(value):  # one value per replica (tp.training.trials)
                if not bool(((value > 0) & torch.isfinite(value)).all()):
                    raise HyperparameterError(f"rule {self.name!r}: {key} must be positive and finite in every "
                                              f"replica, got {value.tolist()}")
                continue
            if key in self.hp and not (isinstance(self.hp[key], (int, float)) and self.hp[key] > 0):
                raise HyperparameterError(
                    f"rule {self.name!r}: {key} must be a positive number, got {self.hp[key]!r}"
                )

    def __getattr__(self, key: str) -> Any:
        hp = self.__dict__.get("hp", {})
        if key in hp:
            return hp[key]
        raise AttributeError(key)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v.tolist() if is_per_replica(v) else v!r}" for k, v in self.hp.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------------------ network and init
    def forward_bias(self, num_layers: int) -> tuple[bool, ...]:
        """Which layers of the fully connected network have a bias in the official network of this rule
        (docs/algorithms.md#the-fully-connected-networks, docs/algorithms.md#no-bias-in-the-last-hidden-layer).  (The
        CNN's layout is fixed by docs/algorithms.md#cnn-architecture: every layer has one.)"""
        return (True,) * num_layers

    def build_network(self, sizes, hidden_activation: str = "tanh", output_activation: str = "linear",
                      loss: str = "cross_entropy", dtype: torch.dtype = torch.float64) -> MLP:
        """The docs/algorithms.md#the-fully-connected-networks fully connected network with this rule's bias layout
        (:meth:`forward_bias`); the same construction as :func:`tp.config.models.build_model` for ``model: mlp``."""
        return MLP.build(sizes, hidden_activation, output_activation, self.forward_bias(len(sizes) - 1),
                         loss, dtype)

    def init_feedback(self, net: Network, generator: Generators, device=None) -> Params:
        """Fresh feedback parameters (empty for rules without feedback)."""
        return {}

    def trainable_feedback(self, feedback: Mapping[str, Tensor]) -> list[str]:
        """Names of the feedback parameters the reconstruction loss trains (in no optimiser otherwise)."""
        return list(feedback) if self.trains_feedback else []

    # ---------------------------------------------------------------------------------- computation
    @torch.no_grad()
    def forward_update(self, net: Network, params: Params, feedback: Params, x: Tensor | Forward,
                       y: Tensor) -> StepResult:
        """Targets and the forward-parameter update of one minibatch (no feedback grads).

        ``x`` is the input batch or an existing forward pass of it."""
        fwd = x if isinstance(x, Forward) else net.forward(params, x)
        return self._forward_update(net, params, feedback, fwd, y)

    @torch.no_grad()
    def feedback_gradients(self, net: Network, params: Params, feedback: Params, x: Tensor | Forward,
                           generator: Generators | None = None,
                           noise: Mapping[int, Tensor] | None = None,
                           cache: Mapping | None = None) -> tuple[Params, dict[int, Tensor]]:
        """Reconstruction-loss gradients of the trainable feedback parameters on one minibatch.

        ``x`` is the input batch or an existing forward pass.  The noise of block k is ``noise[k]`` when
        given (already scaled by σ), else σ·N(0, I) drawn from ``generator``.  ``cache``: the
        ``StepResult.cache`` of the forward update of the same step (it saves recomputing g_i at the clean
        activations); leave it out for a feedback-only step.
        Returns ``(grads, losses_per_block)``.
        """
        if not self.trains_feedback:
            return {}, {}
        fwd = x if isinstance(x, Forward) else net.forward(params, x)
        noise = self._noise(net, fwd, generator, noise)
        return self._feedback_gradients(net, params, feedback, fwd, noise, cache or {})

    @torch.no_grad()
    def step(self, net: Network, params: Params, feedback: Params, x: Tensor, y: Tensor,
             generator: Generators | None = None, noise: Mapping[int, Tensor] | None = None) -> StepResult:
        """One minibatch: forward update and (if trained) feedback gradients, both at the same
        (pre-update) parameters and on the same forward pass, as in the official loop
        (docs/algorithms.md#one-minibatch-one-epoch)."""
        fwd = net.forward(params, x)
        result = self._forward_update(net, params, feedback, fwd, y)
        if self.trains_feedback:
            noise = self._noise(net, fwd, generator, noise)
            result.feedback_grads, result.feedback_losses = self._feedback_gradients(
                net, params, feedback, fwd, noise, result.cache)
        return result

    # -------------------------------------------------------------------------------------- noise
    def noise_layers(self, net: Network) -> dict[int, int]:
        """Feedback block k -> the layer j whose activation h_j gets the noise of block k."""
        return {}

    def _noise(self, net: Network, fwd: Forward, generator, noise) -> dict[int, Tensor]:
        layers = self.noise_layers(net)
        if noise is not None:
            missing = sorted(set(layers) - set(noise))
            if missing:
                raise ValueError(f"noise for feedback block(s) {missing} missing; rule {self.name!r} "
                                 f"needs blocks {sorted(layers)}")
            return {k: noise[k] for k in layers}
        if generator is None:
            raise ValueError(f"rule {self.name!r} trains its feedback with noise: pass a generator "
                             "(or explicit noise)")
        sigma = self.hp["sigma"]
        out = {}
        for k, j in layers.items():  # one independent sample per example and block
            h = fwd.h[j]
            shape = h.shape if isinstance(generator, torch.Generator) else h.shape[1:]  # per replica
            eps = randn(shape, generator, h.dtype, h.device)
            out[k] = per_replica(sigma, eps) * eps
        return out

    # ---------------------------------------------------------------------------- to be implemented
    def _forward_update(self, net, params, feedback, fwd: Forward, y) -> StepResult:
        raise NotImplementedError

    def _feedback_gradients(self, net, params, feedback, fwd: Forward, noise, cache) -> tuple[Params, dict]:
        raise NotImplementedError
