"""Adding a learning rule is its module, its registry line, its catalog line and its configuration values
(docs/architecture.md, "Adding a learning rule").

The test proves it on a copy of ``tp/``, as tests/test_new_dataset.py does for a dataset: it writes a rule
module of its own (DDTP-linear's feedback with ψ = tanh by default, a known form) and adds one line to
``tp/rules/__init__.py``'s ``REGISTRY``, one to ``tp/catalog.py``'s ``METHODS`` and the rule's values to
``tp/configs/hyperparameters/mnist.yaml`` — nothing else changes — then trains it with ``tp train`` and reads
its search space (the default one: no search file).  Its maths against the float64 reference, with no change
of the reference, is tests/test_reference.py's ``test_a_new_rule_of_a_known_form_needs_no_change_of_the_reference``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from cases import changed_in_copy, run_in_copy

REPO = Path(__file__).resolve().parents[1]
SLUG = "ddtp-tanh"
MODULE = '''"""DDTP-linear's direct feedback with a tanh feedback nonlinearity by default (a test's rule)."""

from .ddtp import DDTPLinear


class DDTPTanh(DDTPLinear):
    name = "ddtp-tanh"
    paper_name = "DDTP-tanh"
    hyperparameters = {**DDTPLinear.hyperparameters, "fb_activation": "tanh"}
'''
#: the lines a user adds (after the given entries): the import and the registry entry, the catalog's Method
ENTRIES = {
    "tp/rules/__init__.py": {"from .ddtp import DDTPControl, DDTPLinear": "from .ddtp_tanh import DDTPTanh",
                             '    "ddtp-linear": DDTPLinear,': f'    "{SLUG}": DDTPTanh,'},
    "tp/catalog.py": {'    Method("ddtp-linear", "ddtp-linear", "DDTP-linear"),':
                      f'    Method("{SLUG}", "{SLUG}", "DDTP-tanh"),'},
}
VALUES = f"""  {SLUG}:
    test:
      target_stepsize: 0.05
      sigma: 0.1
      lr: 1.0e-03
      lr_fb: 1.0e-03
      epochs_fb: 1
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "tp", copy / "tp", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "tp" / "rules" / "ddtp_tanh.py").write_text(MODULE)
    for rel, entries in ENTRIES.items():
        lines = (copy / rel).read_text().splitlines()
        for after, entry in entries.items():
            (k,) = [k for k, line in enumerate(lines) if line == after]
            lines.insert(k + 1, entry)
        (copy / rel).write_text("\n".join(lines) + "\n")
    config = copy / "tp" / "configs" / "hyperparameters" / "mnist.yaml"
    config.write_text(config.read_text().rstrip("\n") + "\n" + VALUES)
    return copy


@pytest.mark.slow
def test_a_new_rule_is_four_files_and_trains(project):
    assert changed_in_copy(project) == ["tp/catalog.py", "tp/configs/hyperparameters/mnist.yaml", "tp/rules/__init__.py",
                       "tp/rules/ddtp_tanh.py"]
    out = project / "runs" / "new"
    res = run_in_copy(project, sys.executable, "-m", "tp", "train", "--method", SLUG, "--dataset", "mnist", "--seed", "1",
              "--epochs", "1", "--source", "synthetic", "--set", "num_hidden=2", "--set", "size_hidden=16",
              "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["config"]["method"] == SLUG and summary["epochs_run"] == 1
    res = run_in_copy(project, sys.executable, "-c", "from tp.search import load_space; "
              f"print(sorted(load_space('{SLUG}')))")
    assert res.returncode == 0, res.stderr
    assert "'lr_fb'" in res.stdout and "'target_stepsize'" in res.stdout  # the default space: no search file
