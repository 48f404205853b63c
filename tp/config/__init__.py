"""The configuration layer: what a run is, resolved and checked before anything trains.

* :mod:`tp.config.resolve` — (method, dataset, tuning) + overrides → one resolved, validated dict, read from
  the YAML files of ``tp/configs/`` (package data);
* :mod:`tp.config.validation` — ``KEYS``, the table of every configuration key, and ``check_config``;
* :mod:`tp.config.models` — which network a configuration trains (MLP or CNN) and its forward optimiser.

Imports the learning rules, the networks, the data, the catalog and the core, never training or runs
(docs/architecture.md, "Layers").  The public names of :mod:`tp.config.resolve` are this package's API:
``from tp.config import resolve_config``.
"""

from .resolve import (available_configs, config_dir, model_of, parse_override, per_layer, resolve_config,
                      rule_hyperparameters, rule_of)

__all__ = ["config_dir", "resolve_config", "available_configs", "parse_override", "rule_hyperparameters",
           "model_of", "rule_of", "per_layer"]
