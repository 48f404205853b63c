"""What a run folder says about its data, its code and its numbers, checked against what can be verified
(issue 37): the tables average a run only when these agree (:func:`tp.runs.audit.collect`).

* :func:`data_problem`: a run on the real data names, in ``data_sha256``, the files of its dataset
  (:func:`tp.data.formats` lists them) and, where the catalog knows the official release's SHA-256
  (:attr:`tp.catalog.ImageFiles.sha256`), exactly those bytes; a "real" run without the record (null) is not one.
* :func:`commit_problem`: ``code_version`` names a commit of the repository that holds the run folder (checked
  when the folder lies in a git checkout with its full history; a ``+dirty`` suffix is allowed).
* :func:`numbers_digest` / :func:`copies`: two runs with equal losses and errors in every epoch are one run in
  two places, whichever cells their folders claim; timing columns do not count.  Within a cell the lowest seed
  is the original; across the cells of a tuning neither can be told to be, so both are named, unless both
  recorded the same seed and configuration but for the keys naming the cell (the same computation, run twice;
  tunings that differ only in what they log, such as alignment and ggn, are not compared).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Mapping

__all__ = ["data_problem", "commit_problem", "numbers_digest", "copies", "TIMING_COLUMNS"]

#: metrics.csv columns that measure time, not learning (a copy that differs only there is a copy)
TIMING_COLUMNS = ("seconds",)
_COMMIT = re.compile(r"[0-9a-f]{40}")


def _expected_files(dataset: str) -> tuple[dict[str, str | None], str]:
    """{file relative to the data root: the release's SHA-256 or None (not known)} of ``dataset``; its files' name."""
    from ..catalog import dataset as dataset_entry
    from ..data.formats import FORMATS

    spec = dataset_entry(dataset).image
    digests = dict(spec.sha256)
    files = FORMATS[spec.format].files(spec, Path("."))
    return {f.as_posix(): digests.get(f.name) for f in files}, spec.name


def data_problem(summary: Mapping, dataset: str) -> str | None:
    """Why the data a "real" run says it read is not the dataset's release; None when it is (or the run is
    not on real data: the audit's data-source check decides whether such a run may enter a table)."""
    if summary.get("data_source") != "real":
        return None
    recorded = summary.get("data_sha256")
    if not isinstance(recorded, dict) or not recorded:
        return "data source 'real' without the SHA-256 of the files it read (data_sha256 is null): not a real run"
    expected, name = _expected_files(dataset)
    if set(recorded) != set(expected):
        return (f"it read {', '.join(sorted(recorded))}; the files of {name} are {', '.join(sorted(expected))}")
    wrong = [f for f, digest in expected.items() if digest is not None and recorded[f] != digest]
    if wrong:
        return (f"{wrong[0]} has SHA-256 {str(recorded[wrong[0]])[:12]}…, the official release's is "
                f"{expected[wrong[0]][:12]}… ({len(wrong)} of {len(expected)} files differ)")
    return None


@functools.lru_cache(maxsize=None)
def _repository(folder: str) -> str | None:
    """The top of the git checkout holding ``folder`` with its full history, or None (none, or shallow)."""
    def git(*args):
        return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=30)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            return None
    except (OSError, subprocess.SubprocessError):
        return None
    return top.stdout.strip()


@functools.lru_cache(maxsize=None)
def _is_commit(repository: str, sha: str) -> bool:
    res = subprocess.run(["git", "-C", repository, "cat-file", "-e", f"{sha}^{{commit}}"], capture_output=True,
                         timeout=30)
    return res.returncode == 0


def commit_problem(folder: Path, version) -> str | None:
    """Why ``code_version`` (of the run in ``folder``) names no commit of the repository the folder lies in;
    None when it does, or when there is no such repository to ask."""
    existing = next((p for p in [Path(folder), *Path(folder).parents] if p.exists()), None)
    repository = _repository(str(existing)) if existing is not None else None
    if repository is None:
        return None
    sha = str(version or "").removesuffix("+dirty")
    if not _COMMIT.fullmatch(sha):
        return f"code version {version!r} is not a commit (the runs here record the commit they were made at)"
    if not _is_commit(repository, sha):
        return f"code version {sha[:12]}… names no commit of this repository"
    return None


def numbers_digest(folder: Path) -> str | None:
    """A digest of the run's losses and errors in every epoch (metrics.csv without its timing columns); None
    without a readable metrics.csv or without an epoch."""
    try:
        with open(Path(folder) / "metrics.csv", newline="") as f:
            rows = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    if not rows:
        return None
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _seed(folder: Path) -> int:
    name = folder.name
    return int(name[4:]) if name.startswith("seed") and name[4:].isdigit() else 1 << 30


@functools.lru_cache(maxsize=8)
def _digests_under(runs_root: str) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for metrics in sorted(Path(runs_root).glob("*/*/*/seed*/metrics.csv")):
        digest = numbers_digest(metrics.parent)
        if digest is not None:
            out.setdefault(digest, []).append(metrics.parent)
    return out


#: configuration keys that name a run's cell, not its computation
_CELL_KEYS = ("method", "dataset", "tuning")


def _same_computation(a: Path, b: Path) -> bool:
    """Whether two runs of different cells recorded the same computation: the same seed and configuration but
    for the keys naming the cell (e.g. DDTP-RHL and DDTP-RHL (extra FB) when a pipeline's overrides set the two
    keys they differ in alike): equal numbers are then expected, not a copy."""
    try:
        sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    except (OSError, ValueError):
        return False
    strip = lambda s: {k: v for k, v in (s.get("config") or {}).items() if k not in _CELL_KEYS}  # noqa: E731
    return sa.get("seed") == sb.get("seed") and bool(strip(sa)) and strip(sa) == strip(sb)


def copies(folders: list[Path]) -> dict[Path, str]:
    """``{folder: reason}`` for the folders (runs/TUNING/METHOD/DATASET/seedS) whose losses and errors in every
    epoch equal another run's: another folder of the list, or any run folder beside them under the same
    ``runs/``.  Within a cell the lowest seed is kept as the original; across cells every one is named."""
    groups: dict[str, set[Path]] = {}
    for folder in map(Path, folders):
        digest = numbers_digest(folder)
        if digest is None:
            continue
        runs_root = folder.parents[3] if len(folder.parents) > 3 else folder.parent
        groups.setdefault(digest, set()).update([folder, *_digests_under(str(runs_root)).get(digest, [])])
    out = {}
    for folder in map(Path, folders):
        digest = numbers_digest(folder)
        same = sorted((p for p in groups.get(digest, ()) if p.resolve() != folder.resolve()),
                      key=lambda p: (p.parts[-4:-1], _seed(p)))
        if not same:
            continue
        other_cells = [p for p in same if p.parts[-4:-1] != folder.parts[-4:-1] and p.parts[-4] == folder.parts[-4]
                       and not _same_computation(p, folder)]  # (another tuning logs, not trains, differently)
        lower = [p for p in same if p.parts[-4:-1] == folder.parts[-4:-1] and _seed(p) < _seed(folder)]
        if other_cells:
            out[folder] = (f"its losses and errors in every epoch equal those of runs/{'/'.join(other_cells[0].parts[-4:])}"
                           " (one run in two places: remove the copy)")
        elif lower:
            out[folder] = (f"its losses and errors in every epoch equal those of {lower[0].name} (a copy, not "
                           "another seed)")
    return out
