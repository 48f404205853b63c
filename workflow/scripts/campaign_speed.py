"""How fast this machine trains, for the campaign's start decisions (workflow/scripts/campaign.py).

Earlier runs' ``wall_time_s`` are the estimates, but they may come from another machine: the same 100-epoch
MNIST DDTP-linear run took 0.32 h on a 2-core Intel Xeon and 1.2 h on a 2-core AMD EPYC (the runs' own
``device_name`` and ``wall_time_s`` under results/runs).  So

* :func:`finished_times` keeps each finished run's runner: its ``device_name`` and ``step_path`` (the compiled
  step is faster than the eager one on the same CPU, docs/speed.md), and
  :func:`machine_times` uses the runs of *this* runner (:func:`runner`: this machine's CPU model and the path
  its runs will take) when a cell has any (else all of them);
* :class:`SpeedGauge` watches the runs the campaign has started: once one has written two epochs of
  ``metrics.csv``, the ratio of its observed seconds per epoch to its estimate's is known, and every later
  start decision multiplies the estimates by the largest such ratio (never below 1: a fast machine does not
  shorten the safety margin).
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

__all__ = ["machine_name", "runner", "Runner", "finished_times", "machine_times", "SpeedGauge"]

#: who made a run: (``device_name``, ``step_path``) as its summary records them
Runner = tuple[str | None, str]


def machine_name() -> str:
    """The ``device_name`` a 1-thread CPU run of this machine records (tp.training.records.device_name)."""
    import torch

    from tp.training.records import device_name

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return device_name(torch.device("cpu"))
    finally:
        torch.set_num_threads(n)


def runner() -> Runner:
    """The runner this machine's 1-thread CPU runs will record: its device name and the step path ``fast: auto``
    takes here for a campaign's full-length MLP run (``compiled`` where a C++ compiler is found, else ``eager``;
    tp.training.compiled)."""
    from tp.training.compiled import compiler_missing

    return machine_name(), "eager" if compiler_missing() else "compiled"


def finished_times(results: Path) -> dict[tuple[str, str, str], list[tuple[float, Runner]]]:
    """(wall time in hours, runner) of the finished single-seed runs under ``results/runs``, by (tuning, method,
    dataset); a summary without ``step_path`` (written before the compiled path existed) ran eager."""
    out: dict[tuple[str, str, str], list[tuple[float, Runner]]] = {}
    for path in results.glob("runs/*/*/*/seed*/summary.json"):
        try:
            s = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if s.get("status") == "finished" and s.get("wall_time_s") and not s.get("block_seeds"):
            who = (s.get("device_name"), str(s.get("step_path") or "eager"))
            out.setdefault(tuple(path.parts[-5:-2]), []).append((float(s["wall_time_s"]) / 3600, who))
    return out


def machine_times(runs: list[tuple[float, Runner]], here: Runner | None) -> tuple[list[float], str]:
    """The hours to estimate from: those of runs made by the runner ``here`` when there are any, else all; and a
    word saying which."""
    same = [h for h, who in runs if here is not None and who == here]
    return (same, "this machine's") if same else ([h for h, _ in runs], "")


class SpeedGauge:
    """Observed / expected seconds per epoch of the running campaign's runs (module docstring)."""

    def __init__(self):
        self.ratios: dict[str, float] = {}

    def observe(self, folder: Path, expected_hours: float, epochs: int) -> float | None:
        """Read ``folder/metrics.csv`` of a run expected to take ``expected_hours`` for ``epochs`` epochs; record
        and return the ratio once it has two epochs (None before)."""
        try:
            with open(folder / "metrics.csv", newline="") as f:
                seconds = [float(r["seconds"]) for r in csv.DictReader(f) if r.get("seconds")]
        except (OSError, ValueError, KeyError):
            return None
        if len(seconds) < 2 or expected_hours <= 0 or epochs <= 0:
            return None
        ratio = statistics.median(seconds) / (expected_hours * 3600 / epochs)
        self.ratios[str(folder)] = ratio
        return ratio

    @property
    def factor(self) -> float:
        """What later estimates are multiplied by: the largest observed ratio, at least 1."""
        return max([1.0, *self.ratios.values()])
