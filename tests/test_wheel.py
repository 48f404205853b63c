"""The package outside a checkout: a wheel (and an editable install) carries the run configurations.

The wheel is built offline from a copy of the package sources (``pyproject.toml``, ``README.md``, ``tp/``;
no build isolation, no index: setuptools of the running environment), installed with ``pip --target``
into a fresh folder and imported in a subprocess whose only extra path entry is that folder, from a
working directory outside the checkout, so that neither the checkout's ``tp`` nor its ``config/`` can be
reached.  There it must resolve and list the configurations exactly as the checkout does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tp.catalog import METHODS
from tp.config import available_configs, resolve_config

REPO = Path(__file__).resolve().parents[1]
PIP_OFFLINE = ["--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check", "-q"]

#: run in the installed package: where it lives, one resolved configuration, the list, the toy config
PROBE = """
import json, tp, tp.config, tp.toy
cfg = tp.config.resolve_config("ddtp-linear", "mnist")
cnn = tp.config.resolve_config("bp", "cifar10-cnn", "train")
print(json.dumps({
    "tp": tp.__file__, "config_dir": str(tp.config.config_dir()),
    "ddtp-linear/mnist": cfg, "bp/cifar10-cnn/train": cnn,
    "configs": sorted([d, m, t] for (d, m), ts in tp.config.available_configs().items() for t in ts),
    "toy": sorted(tp.toy.load_toy_config()),
}))
"""


def package_sources(dest: Path) -> Path:
    """A copy of what the wheel is built from (no caches, no build leftovers in the checkout)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "tp", dest / "tp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args, *PIP_OFFLINE], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def probe(python: str, cwd: Path, pythonpath: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([python, "-s", "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def expected() -> dict:
    """What the checkout's ``tp`` (the one under test) resolves."""
    return {"ddtp-linear/mnist": resolve_config("ddtp-linear", "mnist"),
            "bp/cifar10-cnn/train": resolve_config("bp", "cifar10-cnn", "train"),
            "configs": sorted([d, m, t] for (d, m), ts in available_configs().items() for t in ts),
            "toy": ["fig2_nullspace", "figS3_output_space"]}


def assert_resolves_like_the_checkout(got: dict, home: Path) -> None:
    assert Path(got["tp"]).resolve().is_relative_to(home.resolve()), got["tp"]
    assert Path(got["config_dir"]).resolve() == (home / "tp" / "configs").resolve()
    want = expected()
    for key, value in want.items():
        assert got[key] == json.loads(json.dumps(value)), key
    paper = [c for c in got["configs"] if not METHODS[c[1]].beyond_paper]
    assert len(paper) == 79 + 33  # the paper's test + train (79) and alignment-figure (33) configurations
    # beyond the paper (docs/ggn.md): DDTP-GGN's test and alignment configurations, GGNT's test configuration
    assert sorted(c for c in got["configs"] if c not in paper) == [
        ["mnist", "ddtp-ggn", "alignment"], ["mnist", "ddtp-ggn", "test"], ["mnist", "ggnt", "test"]]
    assert got["ddtp-linear/mnist"]["rule"] == "ddtp-linear" and got["ddtp-linear/mnist"]["lr"] > 0


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_resolves_configurations(tmp_path):
    src = package_sources(tmp_path / "src")
    pip("wheel", "-w", str(tmp_path / "dist"), ".", cwd=src)
    wheels = list((tmp_path / "dist").glob("tp-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp_path / "site"
    pip("install", "--target", str(site), str(wheels[0]), cwd=tmp_path)
    assert (site / "tp" / "configs" / "defaults.yaml").is_file()
    assert sorted(p.name for p in (site / "tp" / "configs" / "hyperparameters").iterdir()) == sorted(
        p.name for p in (REPO / "tp" / "configs" / "hyperparameters").glob("*.yaml"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert_resolves_like_the_checkout(probe(sys.executable, elsewhere, str(site)), site)


@pytest.mark.slow
def test_editable_install_in_a_fresh_environment_resolves_configurations(tmp_path):
    """``pip install -e`` (setuptools' editable finder) reads the configurations from the source tree."""
    src = package_sources(tmp_path / "src")
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = next(p for p in (env_dir / "bin" / "python", env_dir / "Scripts" / "python.exe") if p.exists())
    # the fresh environment sees this one's packages (torch, setuptools) but not its ``tp``: a .pth line
    # adds the folder without running that folder's own .pth files (e.g. another editable ``tp``)
    site_dir = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    Path(site_dir, "deps.pth").write_text(deps + "\n")
    pip("--python", str(python), "install", "-e", str(src), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert_resolves_like_the_checkout(probe(str(python), elsewhere, None), src)
