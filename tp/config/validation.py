"""The one validation layer of run configurations: a table of every key's type, range, nullability and
per-layer form, and the checks between keys.

:func:`check_config` runs where a configuration is resolved (:func:`tp.config.resolve_config`), so the CLI
(``--set``, ``--config``), the Python API and the pipeline (``overrides``, checked while Snakemake builds its
DAG, e.g. by ``snakemake -n``) reject the same values with the same :class:`tp.errors.ConfigError`, before
anything trains.  Each error names the key, the value and what is allowed.

:data:`KEYS` has one entry per key of ``defaults.yaml``'s ``run`` block (a test holds them equal), so a new
configuration key is one line here.  Ranges (docs/algorithms.md#optimisers,
docs/algorithms.md#normalised-learning-rates, docs/algorithms.md#training-the-feedback): Adam's β₁, β₂ (forward and
feedback) in [0, 1); learning rates, ε, the target step size β and the noise σ finite and positive; weight decays and GN
damping finite and ≥ 0; sizes and epochs integers; activations and initialisations among the implemented ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .. import catalog
from ..errors import ConfigError
from ..nets.activations import ACTIVATIONS
from ..nets.mlp import INITIALIZATIONS

__all__ = ["Key", "KEYS", "check_config", "check_seed"]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Key:
    """What one configuration key may hold.

    kind: ``int``, ``number``, ``bool``, ``name`` (one of ``choices``) or ``channels`` (the CNN's two conv
    blocks' output channels); ``low``/``high``: the range (``low_open``: ``low`` itself excluded; ``high`` is
    always excluded); ``nullable``: ``None`` allowed; ``per_layer``: a list is also allowed, with one value per
    layer 1…L (``"layers"``) or per hidden layer 1…L−1 (``"hidden"``); ``per_replica``: may differ between the
    trials of one block."""

    kind: str
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    nullable: bool = False
    per_layer: str | None = None
    choices: tuple[str, ...] = ()
    #: a continuous hyperparameter that may differ between the replicas of one block of trials
    #: (:data:`tp.training.trials.PER_REPLICA_KEYS`: per-replica optimiser values, (R,) tensors of the rule)
    per_replica: bool = False
    #: why the range has the bound it has, when it is this toolkit's and not the maths' (said in the error)
    why: str = ""

    def accepts(self, v: Any) -> bool:
        if self.kind == "bool":
            return isinstance(v, bool)
        if self.kind == "name":
            return v in self.choices
        if self.kind == "channels":
            return isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(c) and c > 0 for c in v)
        if not (_is_int(v) if self.kind == "int" else _is_number(v)):
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return self.high is None or v < self.high

    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "name":
            return "one of " + ", ".join(self.choices)
        if self.kind == "channels":
            return "a list of the two conv blocks' output channels (positive integers)"
        what = "an integer" if self.kind == "int" else "a finite number"
        if self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            what += f" and < {self.high:g}" if self.low is not None else f" < {self.high:g}"
        return what + (f" ({self.why})" if self.why else "")


_COUNT, _SIZE = Key("int", low=0), Key("int", low=0, low_open=True)
#: bounds that catch a typo before it hangs or exhausts memory (the paper's networks: 5 hidden layers of 256
#: units or fewer; 100 to 300 epochs)
_DEPTH = Key("int", low=0, low_open=True, high=1025,
             why="at most 1024 hidden layers: a deeper network is almost surely a typo and would take minutes "
                 "to build before anything fails")
_WIDTH = Key("int", low=0, low_open=True, high=16385,
             why="at most 16384 units: one 16384 × 16384 float64 weight matrix is already 2 GiB")
_EPOCHS = Key("int", low=0, high=100001, why="at most 100000 epochs; the paper's runs have 100 to 300")
_BOOL = Key("bool")
# continuous hyperparameters, one value per replica in a block of trials
_POSITIVE = Key("number", low=0, low_open=True, per_replica=True)
_NON_NEGATIVE = Key("number", low=0, per_replica=True)
_BETA = Key("number", low=0, high=1, per_replica=True)

#: every configuration key (``defaults.yaml``, ``run`` block) → what it may hold
KEYS: dict[str, Key] = {
    # network (docs/algorithms.md#the-fully-connected-networks, docs/algorithms.md#cnn-architecture)
    "num_hidden": _DEPTH, "size_hidden": _WIDTH, "size_hidden_fb": _WIDTH,
    "hidden_activation": Key("name", choices=tuple(ACTIVATIONS)),
    "conv_channels": Key("channels", nullable=True),
    "initialization": Key("name", choices=tuple(INITIALIZATIONS)),
    "double_precision": _BOOL,
    # learning rule (docs/algorithms.md#targets-and-the-forward-update, docs/algorithms.md#the-learning-rules)
    "target_stepsize": _POSITIVE,
    "sigma": Key("number", low=0, low_open=True, nullable=True, per_replica=True),
    "gn_damping": Key("number", low=0, per_layer="layers"),
    "hessian_damping": _NON_NEGATIVE,
    "fb_activation": Key("name", choices=tuple(ACTIVATIONS), nullable=True),
    # forward optimiser (docs/algorithms.md#optimisers): lr and ε may be one per layer (the CNN configurations,
    # docs/algorithms.md#cnn-optimisers-and-schedule)
    "lr": Key("number", low=0, low_open=True, per_layer="layers", per_replica=True),
    "normalize_lr": _BOOL, "beta1": _BETA, "beta2": _BETA,
    "epsilon": Key("number", low=0, low_open=True, per_layer="layers", per_replica=True),
    "forward_wd": _NON_NEGATIVE,
    # feedback optimiser (docs/algorithms.md#training-the-feedback)
    "lr_fb": Key("number", low=0, low_open=True, nullable=True, per_replica=True),
    "beta1_fb": _BETA, "beta2_fb": _BETA, "epsilon_fb": _POSITIVE, "feedback_wd": _NON_NEGATIVE,
    # schedule (docs/algorithms.md#one-minibatch-one-epoch)
    "epochs": _EPOCHS, "batch_size": _SIZE, "epochs_fb": _EPOCHS, "extra_fb_epochs": _EPOCHS,
    "extra_fb_minibatches": _COUNT,
    # data (docs/algorithms.md#validation-split-and-minibatches, docs/algorithms.md#frozen-mnist)
    "no_val_set": _BOOL, "only_train_first_layer": _BOOL,
    # alignment (docs/algorithms.md#alignment-with-bp-and-gnt-updates)
    "log_interval": _SIZE, "log_alignment": _BOOL,
    "gn_damping_per_hidden_layer": Key("number", low=0, nullable=True, per_layer="hidden"),
    "log_alignment_ggn": _BOOL,
    "alignment_hessian_damping": Key("number", low=0, nullable=True),
    "gn_damping_hpsearch": _BOOL,
    "damping_paired_batches": Key("int", low=0, low_open=True, nullable=True),  # null: one epoch (tp.metrics.damping)
    # null: no extension; else ≥ 10 × the grid's top λ (checked with the grid, tp.training.hooks.paired_grid)
    "damping_paired_extend_to": Key("number", low=0, low_open=True, nullable=True),
}


def _check_key(name: str, spec: Key, value: Any, layers: int) -> None:
    if value is None and spec.nullable:
        return
    if spec.per_layer and isinstance(value, (list, tuple)):
        n = layers if spec.per_layer == "layers" else layers - 1
        where = "layer" if spec.per_layer == "layers" else "hidden layer"
        if len(value) != n:
            raise ConfigError(f"{name} needs one value per {where} ({n}), got {list(value)}")
        bad = [v for v in value if not spec.accepts(v)]
        if bad:
            raise ConfigError(f"{name} must be {spec.allowed()} (or one per {where}), got {list(value)!r} "
                              f"(entry {bad[0]!r})")
        return
    if not spec.accepts(value):
        if spec.kind == "name":
            raise ConfigError(f"unknown {name} {value!r}; valid choices: {', '.join(spec.choices)}")
        per = f" (or one per {'layer' if spec.per_layer == 'layers' else 'hidden layer'})" if spec.per_layer else ""
        raise ConfigError(f"{name} must be {spec.allowed()}{per}, got {value!r}")


def check_config(cfg: Mapping[str, Any], trains_feedback: Callable[[str], bool] | None = None) -> None:
    """Raise :class:`~tp.errors.ConfigError` naming the first key whose value is wrong: each key against
    :data:`KEYS` (structure first: the layer count the per-layer lists are checked against), then the rules
    between keys — the CNN's shape and initialisation, ``lr_fb`` and ``σ`` where the rule trains feedback
    (``trains_feedback(rule)``), the damping reference that alignment logging needs."""
    _check_key("num_hidden", KEYS["num_hidden"], cfg.get("num_hidden"), 0)
    cnn = cfg.get("model") == "cnn"
    # the CNN's: conv 1, conv 2, FC 3 (docs/algorithms.md#cnn-architecture)
    fixed = catalog.model(cfg.get("model", "mlp")).hidden_layers
    if fixed is not None and cfg["num_hidden"] != fixed:
        raise ConfigError(f"the {cfg['model']} network has {fixed} hidden layers "
                          f"({catalog.model(cfg['model']).description}): num_hidden must be {fixed}, "
                          f"got {cfg['num_hidden']!r}")
    layers = cfg["num_hidden"] + 1  # L (the CNN: conv 1, conv 2, FC 3, FC 4)
    for name, spec in KEYS.items():
        if name in cfg:
            _check_key(name, spec, cfg[name], layers)
    if cnn and cfg.get("conv_channels") is None:
        raise ConfigError(f"conv_channels must be {KEYS['conv_channels'].allowed()} for the CNN, got None")
    if cnn and cfg.get("initialization") != "xavier_normal":
        raise ConfigError(f"the CNN (docs/algorithms.md#the-cnn-table-3) is initialised xavier_normal only; got initialization "
                          f"{cfg.get('initialization')!r}")
    if trains_feedback is not None and "rule" in cfg and trains_feedback(cfg["rule"]):
        for name in ("lr_fb", "sigma"):
            if cfg.get(name) is None:
                raise ConfigError(f"{name} must be a positive number for method {cfg.get('method')!r} (its rule "
                                  f"{cfg['rule']!r} trains feedback weights), got None")
    if cfg.get("log_alignment") and cfg.get("gn_damping_per_hidden_layer") is None:
        raise ConfigError("log_alignment needs gn_damping_per_hidden_layer (the damped-GNT reference's λ_i)")
    if cfg.get("log_alignment_ggn") and not cfg.get("log_alignment"):
        raise ConfigError("log_alignment_ggn adds the GGN angles to the alignment logging: it needs "
                          "log_alignment: true")
    if cfg.get("alignment_hessian_damping") is not None and not cfg.get("log_alignment_ggn"):
        raise ConfigError("alignment_hessian_damping adds the angles with the GGN update of H + δP to the GGN "
                          "angles: it needs log_alignment_ggn: true (or alignment_hessian_damping: null)")


def check_seed(seed: Any) -> int:
    """A run's seed: a non-negative integer (numpy's SeedSequence takes no negative seed)."""
    if not (_is_int(seed) and seed >= 0):
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return seed
