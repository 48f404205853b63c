"""Shared test set-up: the tests never read a dataset that an operating-system package installed on this machine.

The packages' folders (``/usr/share/datasets/fashion-mnist`` for Debian/Ubuntu's ``dataset-fashion-mnist``,
:mod:`tp.data.packages`) are looked for under an empty temporary prefix (``TP_SYSTEM_ROOT``, inherited by the
processes the tests start: ``tp``, Snakemake and its jobs); a test that wants a package writes its own folder
under its own prefix (``monkeypatch.setenv``).
"""

from __future__ import annotations

import pytest

from tp.data.packages import SYSTEM_ROOT_VARIABLE


@pytest.fixture(autouse=True, scope="session")
def no_installed_dataset_packages(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv(SYSTEM_ROOT_VARIABLE, str(tmp_path_factory.mktemp("no-system-packages")))
    yield
    patch.undo()
