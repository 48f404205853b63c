"""Shared test set-up: the tests never read a dataset that an operating-system package installed on this machine.

The packages' folders (``/usr/share/datasets/fashion-mnist`` for Debian/Ubuntu's ``dataset-fashion-mnist``,
:mod:`tp.data.packages`) are looked for under an empty temporary prefix (``TP_SYSTEM_ROOT``, inherited by the
processes the tests start: ``tp``, Snakemake and its jobs); a test that wants a package writes its own folder
under its own prefix (``monkeypatch.setenv``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tp.data.packages import SYSTEM_ROOT_VARIABLE

#: the configuration of the genuine tiny runs below (beside the test cell's official values)
TINY = {"num_hidden": 1, "size_hidden": 8, "batch_size": 32, "epochs": 3}


@pytest.fixture(autouse=True, scope="session")
def no_installed_dataset_packages(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv(SYSTEM_ROOT_VARIABLE, str(tmp_path_factory.mktemp("no-system-packages")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def genuine_runs(tmp_path_factory) -> dict[str, Path]:
    """Genuine tiny runs of the bp and dfa test cells on MNIST's shape (synthetic data, trained by tp.training,
    their checkpoints removed) in ``…/runs/test/METHOD/mnist/seed1``: what the audit, provenance and claims tests
    copy and edit.  Read-only: a test that changes a run changes a copy."""
    from tp.data import DataSplits, synthetic_classification
    from tp.runs.audit import expected_config
    from tp.training import train

    root = tmp_path_factory.mktemp("genuine")
    x, y, tx, ty = synthetic_classification(96 + 32, 32, 6, 10, 0)
    data = DataSplits(x[:96], y[:96], tx, ty, x[96:], y[96:])
    out = {}
    for method in ("bp", "dfa"):
        out[method] = root / "runs" / "test" / method / "mnist" / "seed1"
        train(expected_config("test", method, "mnist", TINY), data, 1, out[method], progress=False,
              log=lambda m: None)
        (out[method] / "checkpoint.pt").unlink(missing_ok=True)
    return out
