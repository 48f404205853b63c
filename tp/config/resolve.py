"""Run configurations: (method, dataset, tuning) + overrides → one resolved, validated dictionary.

Methods are the paper's table rows: a learning rule plus, for some, another schedule (DTP (pre-trained),
the "extra FB" variants).  Their final hyperparameters are package data, ``tp/configs/`` (``defaults.yaml``
and ``hyperparameters/<dataset>.yaml``; :func:`config_dir`), so that a wheel or ``pip install .`` carries
them; see ``defaults.yaml`` for the resolution order.  (The checkout's top-level ``config/`` holds the
pipeline's experiment matrices, ``config.yaml`` and ``smoke.yaml``, not run hyperparameters.)

Methods, datasets and tunings are the entries of :mod:`tp.catalog`.  Datasets are the tables' columns.
``cifar10-cnn`` is CIFAR-10 trained with the CNN of docs/algorithms.md#the-cnn-table-3 (Table 3, S9, S10, Fig. S7): the
dataset fixes the network (``model``: ``mlp`` or ``cnn``); a method runs the same rule on either network (those whose
rule lists the network in ``networks``).
"""

from __future__ import annotations

import ast
import copy
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Mapping

import yaml

from .. import catalog
from ..errors import ConfigError, unknown
from ..rules import REGISTRY, rule_class
from .validation import check_config

__all__ = ["config_dir", "resolve_config", "available_configs", "parse_override", "rule_hyperparameters",
           "model_of", "rule_of", "per_layer"]



#: keys a run configuration may hold besides the ones of configs/defaults.yaml
IDENTITY_KEYS = ("method", "dataset", "tuning", "rule", "model")


def config_dir() -> Traversable:
    """The run configurations shipped inside the package: ``tp/configs/`` (``defaults.yaml``,
    ``hyperparameters/<dataset>.yaml``, ``toy.yaml``), found with :mod:`importlib.resources`, so the same
    in a checkout, an editable install, ``pip install .`` and a wheel.  A ``pathlib.Path`` in all of them."""
    return files("tp") / "configs"


#: a number in exponent form without a point (``1e-4``): a float, as in YAML 1.2 and Python (YAML 1.1, which
#: PyYAML follows, wants ``1.0e-4`` and reads ``1e-4`` as a string)
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _PackageLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The package's configuration files: libyaml's parser where PyYAML has it (only the scanner and parser
    are C; constructors and resolvers are SafeLoader's, so the values are the same), ``1e-4`` a float."""


class UserLoader(yaml.SafeLoader):
    """Files a user gives (``--config``, ``--space``): ``1e-4`` a float, and no aliases (``*name``): a few
    hundred bytes of nested aliases expand to gigabytes, and a configuration needs none."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"an alias (*{event.anchor}): configuration files take "
                                              "none; write the value out", event.start_mark)
        return super().compose_node(parent, index)


for _loader in (_PackageLoader, UserLoader):
    _loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))
_CACHE: dict[tuple, Any] = {}


def read_user_yaml(path: str | Path, what: str) -> Any:
    """The YAML document of a file the user gave (``what``: e.g. ``--config F``); a missing, unreadable,
    non-UTF-8 or invalid file is a :class:`ConfigError` naming it (and the line, for YAML errors)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        return yaml.load(text, Loader=UserLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML ({exc})") from None


def _load(path: Traversable) -> dict:
    """A configuration file's mapping, parsed once per process and file version (a resolution reads
    ``defaults.yaml`` and a dataset's file; a search space checks dozens of resolutions); a deep copy,
    so callers may change it."""
    try:
        stat = Path(str(path)).stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:  # not a file on disk (a zipped package): no cache
        key = None
    if key is None or key not in _CACHE:
        with path.open() as f:
            doc = yaml.load(f, Loader=_PackageLoader) or {}
        if key is None:
            return doc
        _CACHE[key] = doc
    return copy.deepcopy(_CACHE[key])


def _choice(kind: str, value: str, valid) -> None:
    if value not in valid:
        raise unknown(kind, value, valid)


def available_configs(root: Path | Traversable | None = None) -> dict[tuple[str, str], list[str]]:
    """``{(dataset, method): [tunings]}`` of the configurations in ``hyperparameters/`` of ``root``
    (default :func:`config_dir`)."""
    root = root or config_dir()
    out = {}
    for ds in catalog.DATASETS:
        path = root / "hyperparameters" / f"{ds}.yaml"
        if path.is_file():
            for method, tunings in (_load(path).get("methods") or {}).items():
                out[(ds, method)] = list(tunings)
    return out


def model_of(dataset: str) -> str:
    """The network the dataset trains (:attr:`tp.catalog.Dataset.model`): ``"cnn"`` or ``"mlp"``."""
    _choice("dataset", dataset, list(catalog.DATASETS))
    return catalog.DATASETS[dataset].model


def rule_of(method: str, dataset: str) -> str:
    """The registry rule that ``method`` runs on ``dataset`` (the same on every network its rule trains)."""
    _choice("method", method, list(catalog.METHODS))
    rule, model = catalog.METHODS[method].rule, model_of(dataset)
    if model not in rule_class(rule).networks:
        valid = [m for m, spec in catalog.METHODS.items() if model in rule_class(spec.rule).networks]
        raise ConfigError(f"method {method!r} does not train the {model!r} network of {dataset!r}; the methods "
                          f"there are: {', '.join(valid)}")
    return rule


def per_layer(value, num_layers: int, key: str = "value") -> list:
    """A forward-optimiser setting as one value per layer 1…L: a number is repeated, a list (the CNN
    configurations' per-layer ``lr`` and ``epsilon``, docs/algorithms.md#optimisers,
    docs/algorithms.md#cnn-optimisers-and-schedule) must have exactly L entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ConfigError(f"{key} needs one value per layer ({num_layers}), got {list(value)}")
        return list(value)
    return [value] * num_layers


def rule_hyperparameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of a resolved configuration that the rule ``cfg['rule']`` takes."""
    takes = REGISTRY[cfg["rule"]].hyperparameters  # the rule's own hyperparameters are configuration keys
    out = {k: cfg[k] for k in takes if cfg.get(k) is not None}
    if "fb_activation" in takes and cfg.get("fb_activation") is None:
        out.pop("fb_activation", None)
    return out


def resolve_config(method: str, dataset: str, tuning: str = "test",
                   overrides: Mapping[str, Any] | None = None, root: Path | Traversable | None = None) -> dict[str, Any]:
    """The full configuration of one run; unknown names or keys are errors listing the valid ones."""
    _choice("method", method, list(catalog.METHODS))
    _choice("dataset", dataset, list(catalog.DATASETS))
    _choice("tuning", tuning, list(catalog.TUNINGS))
    root = root or config_dir()
    defaults = _load(root / "defaults.yaml")
    cfg: dict[str, Any] = dict(defaults["run"])
    cfg["fb_activation"] = None
    valid_keys = sorted(cfg)
    tunings = defaults.get("tunings") or {}
    source = catalog.tuning(tuning).configuration  # the tuning whose per-method blocks are read
    cfg.update(tunings.get(source) or {})
    ds_path = root / "hyperparameters" / f"{dataset}.yaml"
    if not ds_path.is_file():  # a dataset in the catalog without its configuration file (docs/architecture.md)
        raise ConfigError(f"dataset {dataset!r} has no configuration file: {ds_path} is missing "
                          f"(a new dataset needs its catalog entry and this file: docs/architecture.md, "
                          f"'Adding a dataset')")
    ds_file = _load(ds_path)
    cfg.update(ds_file.get("dataset") or {})
    per_method = (ds_file.get("methods") or {}).get(method)
    if per_method is None or source not in per_method:
        have = sorted(f"{m}/{t}" for (d, m), ts in available_configs(root).items() if d == dataset for t in ts)
        reads = "" if source == tuning else f" (it reads the {source!r} configuration)"
        raise ConfigError(f"no {tuning!r} configuration of method {method!r} on dataset {dataset!r}{reads}; "
                          f"available on {dataset}: {', '.join(have)}")
    cfg.update(per_method[source] or {})
    if source != tuning:  # e.g. the damping search: the alignment configuration, then its own settings
        cfg.update(tunings.get(tuning) or {})
    for key, value in (overrides or {}).items():
        if key not in valid_keys:
            raise ConfigError(f"unknown configuration key {key!r}; valid keys: {', '.join(valid_keys)}")
        cfg[key] = value
    cfg.update(method=method, dataset=dataset, tuning=tuning, rule=rule_of(method, dataset), model=model_of(dataset))
    try:
        check_config(cfg, lambda rule: REGISTRY[rule].trains_feedback)  # tp.config.validation: every key, then between keys
    except ConfigError as exc:  # name the configuration, and the overrides that made a configured value wrong
        given = sorted(overrides or {})
        where = f"the {tuning!r} configuration of {method!r} on {dataset!r}"
        if given and not any(repr(k) in str(exc) or str(exc).startswith(k) for k in given):
            where += f" with the overrides {', '.join(given)} (the value it names is the configuration's own)"
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with a Python/YAML literal value (``lr=1e-4``, ``double_precision=false``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            pass
    return key.strip(), value
