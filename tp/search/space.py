"""Search spaces of the hyperparameter search (paper §B, Table S1): one YAML file per method.

``tp/configs/search/<method>.yaml`` holds ``method: <slug>`` and ``space:``, a mapping from configuration keys
(those of ``config/defaults.yaml``) to one of

* ``log_uniform: [low, high]`` — log-uniform on [low, high], 0 < low < high (rates, ε, β, σ, weight decay);
* ``uniform: [low, high]`` — uniform on [low, high], low < high;
* ``choices: [v1, v2, ...]`` — one of the listed values (Adam's betas: 0.9, 0.99, 0.999).

The paper's own intervals (its Tables S2–S5) were lost from the text; the files shipped here are ours (their
headers say how they were made).  A method without a file (a rule added since) searches :func:`default_space`:
the keys its rule declares, on the intervals of the shipped BP (forward Adam) and DDTP-linear (targets, σ,
feedback Adam) files.  A file is validated when it is read: unknown keys, empty or reversed
intervals and values outside a key's valid range are errors naming the file, the key and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import METHODS
from ..config.resolve import available_configs, config_dir, read_user_yaml, resolve_config
from ..errors import ConfigError
from ..rules import rule_class

__all__ = ["Param", "KINDS", "load_space", "space_path", "suggest", "default_space"]

KINDS = ("log_uniform", "uniform", "choices")


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter."""

    name: str
    kind: str  # one of KINDS
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None

    def contains(self, value: Any) -> bool:
        if self.kind == "choices":
            return value in self.choices
        return self.low <= value <= self.high


def space_path(method: str, root: Path | None = None) -> Path:
    return (root or config_dir()) / "search" / f"{method}.yaml"


def load_space(method: str, root: Path | None = None, path: Path | None = None) -> dict[str, Param]:
    """The validated search space of ``method`` (from ``path`` when given, else its file in tp/configs/search)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid choices: {', '.join(METHODS)}")
    if path is None and not space_path(method, root).exists():
        return default_space(method)
    path = Path(path) if path is not None else space_path(method, root)
    if not path.exists():
        raise ConfigError(f"no search space for method {method!r}: {path} does not exist")
    doc = _read(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("space"), dict) or not doc["space"]:
        raise ConfigError(f"{path}: needs a non-empty mapping 'space: {{key: {{log_uniform|uniform|choices: ...}}}}'")
    if doc.get("method", method) != method:
        raise ConfigError(f"{path}: says method {doc['method']!r}, expected {method!r}")
    valid_keys = set(_read((root or config_dir()) / "defaults.yaml")["run"])
    space = {}
    for key, spec in doc["space"].items():
        where = f"{path}: {key}"
        if key not in valid_keys:
            raise ConfigError(f"{where}: unknown configuration key; valid keys: {', '.join(sorted(valid_keys))}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"{where}: give exactly one of {', '.join(KINDS)}, got {spec!r}")
        kind, value = next(iter(spec.items()))
        space[key] = _param(where, key, kind, value)
    _check_values(method, path, space)
    return space


_BETAS = (0.9, 0.99, 0.999)
#: the default intervals: the shipped bp.yaml's forward Adam, ddtp-linear.yaml's targets, σ and feedback Adam
_FORWARD = {"lr": Param("lr", "log_uniform", 1e-7, 0.1), "beta1": Param("beta1", "choices", choices=_BETAS),
            "beta2": Param("beta2", "choices", choices=_BETAS),
            "epsilon": Param("epsilon", "log_uniform", 1e-8, 0.01)}
_TARGETS = {"target_stepsize": Param("target_stepsize", "log_uniform", 1e-3, 1.0)}
_FEEDBACK = {"sigma": Param("sigma", "log_uniform", 1e-4, 1.0), "lr_fb": Param("lr_fb", "log_uniform", 1e-6, 0.1),
             "beta1_fb": Param("beta1_fb", "choices", choices=_BETAS),
             "beta2_fb": Param("beta2_fb", "choices", choices=_BETAS),
             "epsilon_fb": Param("epsilon_fb", "log_uniform", 1e-8, 0.01)}


def default_space(method: str) -> dict[str, Param]:
    """The search space of a method without a file, from its rule's declaration: the forward Adam (lr, β₁, β₂,
    ε), the target step size if the rule has one, and σ with the feedback Adam if it trains feedback."""
    rule = rule_class(METHODS[method].rule)
    space = dict(_FORWARD)
    if "target_stepsize" in rule.hyperparameters:
        space.update(_TARGETS)
    if rule.trains_feedback:
        space.update(_FEEDBACK)
    _check_values(method, Path(f"the default search space of {method}"), space)
    return space


def _read(path: Path):
    return read_user_yaml(path, str(path))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _param(where: str, key: str, kind: str, value) -> Param:
    if kind == "choices":
        if not isinstance(value, list) or not value or not all(_number(v) or isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: choices must be a non-empty list of numbers or names, got {value!r}")
        return Param(key, kind, choices=tuple(value))
    if not (isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)):
        raise ConfigError(f"{where}: {kind} needs [low, high] (two finite numbers), got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not low < high:
        raise ConfigError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{where}: log_uniform needs 0 < low, got [{low}, {high}]")
    return Param(key, kind, low, high)


def _check_values(method: str, path: Path, space: dict[str, Param]) -> None:
    """Every end point and choice must be a valid value of its key: resolve configurations with them (all
    lows together, all highs together, the k-th choices together; one key at a time only to name a bad one)."""
    datasets = sorted({d for (d, m) in available_configs() if m == method})
    if not datasets:
        return
    tuning = next(t for t in ("test", "train") if t in available_configs()[(datasets[0], method)])
    points = [[(p.name, p.low if end == 0 else p.high) for p in space.values() if p.kind != "choices"]
              for end in (0, 1)]
    width = max([len(p.choices) for p in space.values() if p.kind == "choices"] or [0])
    points += [[(p.name, p.choices[min(k, len(p.choices) - 1)]) for p in space.values() if p.kind == "choices"]
               for k in range(width)]
    for point in points:
        try:
            resolve_config(method, datasets[0], tuning, dict(point))
        except ConfigError:
            for name, v in point:
                try:
                    resolve_config(method, datasets[0], tuning, {name: v})
                except ConfigError as exc:
                    raise ConfigError(f"{path}: {name}: value {v!r} is not valid: {exc}") from None
            raise


def suggest(trial, space: dict[str, Param]) -> dict[str, Any]:
    """The configuration values an Optuna trial proposes (TPE samples log-uniform keys on a log scale)."""
    out = {}
    for name, p in space.items():
        if p.kind == "choices":
            out[name] = trial.suggest_categorical(name, list(p.choices))
        else:
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.kind == "log_uniform")
    return out

