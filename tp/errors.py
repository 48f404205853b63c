"""The errors of ``tp``, on the ground floor: every module may import this one; it imports nothing of ``tp``.

One mistake, one error type.  :class:`ConfigError` is every bad configuration — an unknown name (method,
dataset, tuning, rule, network, key, device, activation, …) or a value of the wrong type or range — raised
before anything trains, with a message that names the bad value and the valid choices.  It is a
``ValueError``, so ``except ValueError`` keeps working.  :class:`HyperparameterError` is the same mistake
found by a learning rule's own checks (``tp.make_rule("gnt", gn_damping=-1)``).

The errors of running (a missing or damaged dataset, a busy run folder, a diverged run) are not
configuration errors; they live with what raises them (:mod:`tp.data.integrity`, :mod:`tp.runs.folder`,
:mod:`tp.training.state`).
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["ConfigError", "HyperparameterError", "unknown"]


class ConfigError(ValueError):
    """A bad configuration: an unknown name or an invalid value (the message names it and what is valid)."""


class HyperparameterError(ConfigError):
    """An invalid hyperparameter of a learning rule (raised when the rule is built)."""


def unknown(kind: str, value, valid: Iterable) -> ConfigError:
    """The error for an unknown name: ``unknown method 'dpt'; valid choices: bp, dfa, …``."""
    return ConfigError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, valid))}")
