"""Type and range checks of every configuration value, run once where a configuration is resolved.

:func:`check_values` is called by :func:`tp.config.resolve_config` (through its ``_check``), so the CLI
(``--set``), the Python API and the pipeline (``overrides``, checked while Snakemake builds its DAG, e.g. by
``snakemake -n``) reject the same values with the same message, before anything trains.  Each error names the
key, the value and what is allowed.

Ranges (SPEC §5.1, §2.4, §3): Adam's β₁, β₂ (forward and feedback) in [0, 1); learning rates, ε, the target
step size β and the noise σ finite and positive; weight decays and GN damping finite and ≥ 0; activations and
initialisations among the implemented ones.  The structural checks (integer sizes, per-layer list lengths, the
CNN's shape, booleans) stay in :mod:`tp.config`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .activations import ACTIVATIONS
from .network import INITIALIZATIONS

__all__ = ["check_values", "check_seed", "BETA_KEYS", "POSITIVE_KEYS", "NON_NEGATIVE_KEYS", "NAME_CHOICES"]

#: Adam's moment decay rates: 0 ≤ β < 1
BETA_KEYS = ("beta1", "beta2", "beta1_fb", "beta2_fb")
#: finite and > 0 (lr and epsilon may be one value per layer; lr_fb and sigma may be null for rules
#: without trained feedback)
POSITIVE_KEYS = ("lr", "epsilon", "lr_fb", "epsilon_fb", "target_stepsize", "sigma")
#: may be null (not used by the configuration's rule)
NULLABLE_KEYS = ("lr_fb", "sigma", "gn_damping_per_hidden_layer", "fb_activation")
#: finite and ≥ 0 (gn_damping and gn_damping_per_hidden_layer may be one value per layer)
NON_NEGATIVE_KEYS = ("forward_wd", "feedback_wd", "gn_damping", "gn_damping_per_hidden_layer")
#: names and their valid choices
NAME_CHOICES = {"hidden_activation": tuple(ACTIVATIONS), "fb_activation": tuple(ACTIVATIONS),
                "initialization": INITIALIZATIONS}


def _error(message: str) -> Exception:
    from .config import ConfigError  # (tp.config calls this module: imported at call time)

    return ConfigError(message)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(key: str, value: Any, allowed: str, ok) -> None:
    """One number or a list of numbers, each satisfying ``ok``."""
    listed = isinstance(value, (list, tuple)) and len(value) > 0
    for v in value if listed else [value]:
        if not (_is_number(v) and math.isfinite(v) and ok(v)):
            raise _error(f"{key} must be {allowed}, got {value!r}" + (f" (entry {v!r})" if listed else ""))


def check_values(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`tp.config.ConfigError` naming the first key whose value has the wrong type or range."""
    for key in BETA_KEYS:
        if key in cfg:
            _numbers(key, cfg[key], "a number with 0 <= value < 1", lambda v: 0 <= v < 1)
    for key in POSITIVE_KEYS:
        if key in cfg and not (cfg[key] is None and key in NULLABLE_KEYS):
            listed = " (or one per layer)" if key in ("lr", "epsilon") else ""
            _numbers(key, cfg[key], f"a finite number > 0{listed}", lambda v: v > 0)
    for key in NON_NEGATIVE_KEYS:
        if key in cfg and not (cfg[key] is None and key in NULLABLE_KEYS):
            listed = " (or one per layer)" if key.startswith("gn_damping") else ""
            _numbers(key, cfg[key], f"a finite number >= 0{listed}", lambda v: v >= 0)
    for key, choices in NAME_CHOICES.items():
        if key in cfg and not (cfg[key] is None and key in NULLABLE_KEYS) and cfg[key] not in choices:
            raise _error(f"unknown {key} {cfg[key]!r}; valid choices: {', '.join(choices)}")
    if cfg.get("model") == "cnn" and cfg.get("initialization") != "xavier_normal":
        raise _error(f"the CNN (SPEC §8) is initialised xavier_normal only; got initialization "
                     f"{cfg.get('initialization')!r}")


def check_seed(seed: Any) -> int:
    """A run's seed: a non-negative integer (numpy's SeedSequence takes no negative seed)."""
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise _error(f"seed must be an integer >= 0, got {seed!r}")
    return seed
