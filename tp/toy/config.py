"""The toy experiments' configuration (``tp/configs/toy.yaml``, docs/algorithms.md#the-toy-experiments-fig-2-s3): its
hyperparameters per figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from ..config.resolve import config_dir
from ..errors import unknown

__all__ = ["TOY_CONFIG_PATH", "NULLSPACE_METHODS", "DTYPES", "load_toy_config", "nullspace_hyperparameters",
           "output_space_hyperparameters"]

#: the toy experiments' configuration, package data beside the run configurations (tp/configs/toy.yaml)
TOY_CONFIG_PATH = config_dir() / "toy.yaml"

#: method slug of Fig. 2 -> label in the figure
NULLSPACE_METHODS = {"dtp-pretrained": "DTP (pre-trained)", "ddtp-linear": "DDTP-linear"}

DTYPES = {False: torch.float32, True: torch.float64}


# ------------------------------------------------------------------------------------------- config
def load_toy_config(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed ``tp/configs/toy.yaml``, or ``path`` (keys ``fig2_nullspace`` and ``figS3_output_space``)."""
    with open(path) if path is not None else TOY_CONFIG_PATH.open() as f:
        return yaml.safe_load(f)


def nullspace_hyperparameters(method: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat hyperparameters of one Fig. 2 method: the fixed block, then the method's own values, plus
    ``sizes = (n_0, n_1, …, n_L)`` derived from ``size_input/size_hidden/num_hidden/size_output``."""
    cfg = (config or load_toy_config())["fig2_nullspace"]
    methods = cfg["methods"]
    if method not in methods:
        raise unknown("Fig. 2 method", method, methods)
    hp = {k: v for k, v in cfg.items() if k != "methods"}
    hp.update(methods[method])
    hp["sizes"] = (hp["size_input"],) + (hp["size_hidden"],) * hp["num_hidden"] + (hp["size_output"],)
    return hp


def output_space_hyperparameters(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat hyperparameters of Fig. S3 (official keys plus the ``spec_defaults`` of
    docs/algorithms.md#fig-s3-direction-of-the-output-change) and
    ``sizes``."""
    cfg = dict((config or load_toy_config())["figS3_output_space"])
    hp = {k: v for k, v in cfg.items() if k != "spec_defaults"}
    hp.update(cfg.get("spec_defaults") or {})
    hp["sizes"] = (hp["size_input"],) + (hp["size_hidden"],) * hp["num_hidden"] + (hp["size_output"],)
    return hp
