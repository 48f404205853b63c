"""Shared test helpers: the official reference data carried in ``tests/data/official`` and one
``assert_close``.

Imported by the test modules as ``import cases`` (pytest puts ``tests/`` on ``sys.path``, as for
``tests/reference.py``).  The data are copies of the official implementation's final configurations and
golden minibatches (``tests/data/official/README.md`` says what produced them); a test never skips for
want of them.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import numpy as np
import torch
import yaml

DATA = Path(__file__).resolve().parent / "data"
#: copies of the official implementation's reference data (see its README.md)
OFFICIAL_DIR = DATA / "official"
#: every final configuration of the official code base (dataset → method → {test, train}, figures, toys)
OFFICIAL_HYPERPARAMETERS = OFFICIAL_DIR / "hyperparameters.yaml"
#: one float64 minibatch per method computed by the official classes (layout in its README.md)
GOLDEN_DIR = OFFICIAL_DIR / "golden"

#: relative tolerance of the float64 conformance tests (golden minibatches, per-sample reference)
RTOL = 1e-10
#: below this max-norm a reference counts as exactly zero and the error is bounded absolutely
ZERO_ATOL = 1e-13


@functools.lru_cache(maxsize=1)
def official_hyperparameters() -> dict:
    """The parsed ``hyperparameters.yaml`` (parsed once; treat as read-only)."""
    with open(OFFICIAL_HYPERPARAMETERS) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_golden(method: str) -> dict[str, torch.Tensor]:
    """The golden minibatch of ``method`` (``GOLDEN_DIR/<method>.npz``) as float64/int64 tensors."""
    path = GOLDEN_DIR / f"{method}.npz"
    if not path.is_file():
        have = sorted(p.stem for p in GOLDEN_DIR.glob("*.npz"))
        raise FileNotFoundError(f"no golden minibatch {path}; valid choices: {', '.join(have)}")
    with np.load(path) as f:
        return {k: torch.from_numpy(np.array(f[k])) for k in f.files}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, rtol: float = RTOL,
                 zero_atol: float = ZERO_ATOL) -> None:
    """Max-norm relative error ``max|actual − expected| / max|expected| ≤ rtol``, same shapes; an
    exactly-zero reference (``max|expected| < zero_atol``, e.g. DDTP-linear's d-gradients) is checked with
    the absolute bound ``max|actual| < zero_atol`` instead.  ``expected`` is cast to ``actual``'s dtype."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    expected = expected.to(actual.dtype)
    scale = expected.abs().max()
    err = (actual - expected).abs().max()
    if scale < zero_atol:
        assert err < zero_atol, f"{what}: absolute error {err:.3e} on a zero reference"
    else:
        assert err / scale <= rtol, f"{what}: relative error {err / scale:.3e} > {rtol:g}"


# ------------------------------------------------------------------- workflow scripts outside Snakemake
def workflow_script(name: str):
    """``workflow/scripts/NAME.py`` imported as a module (its ``main`` then runs on a :class:`Job`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "workflow" / "scripts"
                                                  / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Params(dict):
    """Snakemake's ``params``/``output``: attributes and ``get``."""

    __getattr__ = dict.__getitem__


class Job:
    """What a Snakemake ``script:`` sees as ``snakemake``: input, output, params, wildcards."""

    def __init__(self, inputs, output, wildcards=None, **params):
        self.input, self.output, self.params = [str(p) for p in inputs], Params(output), Params(params)
        self.wildcards = Params(wildcards or {})


# ------------------------------------------------------------------- copies of the project (new dataset, new rule)
REPO = Path(__file__).resolve().parents[1]


def run_in_copy(project: Path, *args: str) -> subprocess.CompletedProcess:
    """A command in a copy of the project, importing the copy's ``tp`` (one thread)."""
    env = {**os.environ, "PYTHONPATH": str(project), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def changed_in_copy(project: Path) -> list[str]:
    """The files of the copy's ``tp/`` that differ from (or are not in) this project's, sorted."""
    return sorted(str(p.relative_to(project)) for p in (project / "tp").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts
                  and (not (REPO / p.relative_to(project)).exists()
                       or (REPO / p.relative_to(project)).read_bytes() != p.read_bytes()))

