"""Which network a run trains, and its forward-optimiser settings, from a resolved configuration.

* ``model: mlp`` — the fully connected network of docs/algorithms.md#the-fully-connected-networks: n_0 → ``size_hidden``
  × ``num_hidden`` → n_out, with the rule's bias layout (:meth:`tp.rules.Rule.forward_bias`,
  docs/algorithms.md#no-bias-in-the-last-hidden-layer).
* ``model: cnn`` — the CNN of docs/algorithms.md#cnn-architecture (:class:`tp.nets.cnn.ConvNet`) on image inputs (N, C, H,
  W):
  ``conv_channels`` for the two conv blocks, ``size_hidden`` for FC layer 3; ``num_hidden`` is 3; every layer
  has a bias whatever the rule.

Both implement the network interface of :mod:`tp.nets.interface`; a rule trains every network in its ``networks``.

Forward Adam (docs/algorithms.md#optimisers, docs/algorithms.md#cnn-optimisers-and-schedule): lr_k / β
(``normalize_lr``, docs/algorithms.md#normalised-learning-rates) and ε_k per layer k when ``lr`` /
``epsilon`` are lists (the CNN configurations: one Adam per layer, W_k and b_k together), one value for every
parameter otherwise.  One :class:`tp.core.optim.Adam` with per-parameter rates is exactly "one Adam per layer":
the moments are element-wise, betas and weight decay are shared, and every layer steps on every minibatch,
so the step counts agree.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .. import catalog
from ..data.datasets import DataSplits
from ..errors import ConfigError
from ..nets.cnn import ConvNet
from .resolve import per_layer

__all__ = ["build_model", "trained_parameters", "forward_optimizer_settings"]

#: the layers the forward optimiser trains with ``only_train_first_layer`` (Frozen-MNIST,
#: docs/algorithms.md#frozen-mnist): the first
FIRST_LAYERS = 1


def build_model(cfg: Mapping[str, Any], rule, data: DataSplits, loss: str, dtype: torch.dtype):
    """The network of ``cfg["model"]`` (default ``mlp``) for ``data``'s input shape and number of classes."""
    model = cfg.get("model", "mlp")
    catalog.model(model)  # an unknown network is a ConfigError listing the valid ones
    if model not in rule.networks:
        raise ConfigError(f"rule {rule.name!r} trains the {'/'.join(rule.networks)!r} network, the configuration "
                          f"asks for model {model!r}")
    n_out = int(data.train_y.max()) + 1 if loss == "cross_entropy" else data.train_y.shape[-1]
    shape = tuple(data.train_x.shape[1:])  # one sample: (n_0,) or (C, H, W)
    if model == "mlp":
        if len(shape) != 1:
            raise ConfigError(f"the MLP needs flat inputs (N, n_0), got samples of shape {shape}")
        sizes = [shape[0]] + [cfg["size_hidden"]] * cfg["num_hidden"] + [n_out]
        return rule.build_network(sizes, hidden_activation=cfg["hidden_activation"], loss=loss, dtype=dtype)
    if len(shape) != 3:
        raise ConfigError(f"the CNN needs image inputs (N, C, H, W), got samples of shape {shape} "
                          "(use the dataset cifar10-cnn)")
    if cfg["hidden_activation"] != "tanh" or cfg["initialization"] != "xavier_normal":
        raise ConfigError("the CNN (docs/algorithms.md#cnn-architecture) uses hidden_activation=tanh and initialization=xavier_normal, got "
                          f"{cfg['hidden_activation']!r} and {cfg['initialization']!r}")
    return ConvNet(in_shape=shape, channels=tuple(cfg["conv_channels"]), fc=cfg["size_hidden"], n_out=n_out,
                   loss=loss, dtype=dtype)


def trained_parameters(cfg: Mapping[str, Any], names) -> list[str]:
    """The forward parameters (of ``names``: W1, b1, …) the forward optimiser holds: every one, or with
    ``only_train_first_layer`` (Frozen-MNIST, docs/algorithms.md#frozen-mnist) those of the first layer only, W1 and b1;
    the feedback parameters all train either way."""
    if not cfg["only_train_first_layer"]:
        return list(names)
    return [k for k in names if int(k[1:]) <= FIRST_LAYERS]


def forward_optimizer_settings(cfg: Mapping[str, Any], names) -> tuple[Any, Any]:
    """``(lr, eps)`` of the forward Adam over the parameters ``names`` (W1, b1, …): numbers when the
    configuration has one value, else dicts name → value with layer k's entry for W_k and b_k."""
    beta = cfg["target_stepsize"] if cfg["normalize_lr"] else 1.0
    lr, eps = cfg["lr"], cfg["epsilon"]
    if not isinstance(lr, (list, tuple)) and not isinstance(eps, (list, tuple)):
        return lr / beta, eps
    layers = cfg["num_hidden"] + 1
    lrs, epss = per_layer(lr, layers, "lr"), per_layer(eps, layers, "epsilon")
    layer = {k: int(k[1:]) for k in names}  # "W3" -> 3
    return {k: lrs[i - 1] / beta for k, i in layer.items()}, {k: epss[i - 1] for k, i in layer.items()}
