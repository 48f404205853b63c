"""The settings of a search and its objectives (the quantities of Tables 1 and 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import catalog
from ..errors import ConfigError

__all__ = ["OBJECTIVES", "EPOCH_COLUMN", "SearchSettings", "objective_of"]

#: tuning -> (summary key, label) of the objective (minimised): the tunings' objectives in tp.catalog
OBJECTIVES = {t.slug: (t.objective.summary_key, t.objective.label) for t in catalog.TUNINGS.values() if t.objective}
#: metrics.csv column of the objective per epoch (the intermediate values of a trial)
EPOCH_COLUMN = {t.slug: t.objective.epoch_column for t in catalog.TUNINGS.values() if t.objective}


@dataclass
class SearchSettings:
    method: str
    dataset: str
    tuning: str = "test"
    trials: int = 20  # ended trials the study must hold
    block: int = 1  # trials asked (and trained) at once
    out: Path = Path("search")
    storage: str | None = None  # Optuna URL, "journal:PATH", or None: sqlite in out
    overrides: dict = field(default_factory=dict)  # fixed values (--set, --epochs) under the searched ones
    seed: int = 0  # the seed of every trial
    sampler_seed: int = 0
    startup_trials: int = 10  # random trials before TPE models the objective (Optuna's default)
    stale_after: float = 3600.0  # seconds without a heartbeat after which another host's trial is orphaned
    space_file: Path | None = None
    # Optuna's median pruner on the per-epoch objective (besides docs/algorithms.md#the-early-stop's stop)
    median_pruner: bool = False
    poll_seconds: float = 30.0  # how often a worker whose share is done looks at the others' trials
    #: where the trials' data comes from (a fixed value of the study): ``data_source`` (real / synthetic) and
    #: ``data_sha256`` (the files' digests) of :meth:`tp.data.DataSplits.summary_fields`; None: not known
    #: (``tp search --trials 0``, which trains nothing, reads the study's)
    data: dict | None = None

    def __post_init__(self):
        if self.tuning not in OBJECTIVES:
            raise ConfigError(f"tuning {self.tuning!r} has no search objective; valid choices: "
                              f"{', '.join(OBJECTIVES)}")
        for name, ok, what in (("trials", self.trials >= 0, ">= 0"), ("block", self.block >= 1, ">= 1"),
                               ("seed", self.seed >= 0, ">= 0"), ("sampler_seed", self.sampler_seed >= 0, ">= 0"),
                               ("startup_trials", self.startup_trials >= 0, ">= 0"),
                               ("stale_after", self.stale_after > 0, "> 0 seconds"),
                               ("poll_seconds", self.poll_seconds > 0, "> 0 seconds")):
            if not ok:
                raise ConfigError(f"search setting {name} (--{name.replace('_', '-')}) must be {what}, "
                                  f"got {getattr(self, name)!r}")
        self.out = Path(self.out).resolve()

    def trial_folder(self, recorded: str | None, number: int) -> Path:
        """A trial's run folder: the one recorded in its user attributes (relative to :attr:`out`, so a moved
        search folder keeps working; an absolute path from an older study as it is), else its own."""
        return self.out / (recorded or Path("trials") / f"{number:04d}")

    @property
    def study_name(self) -> str:
        return f"{self.method}-{self.dataset}-{self.tuning}"


def objective_of(summary: dict, tuning: str) -> float | None:
    """The objective of a finished trial's summary, or None (diverged, pruned, missing, non-finite)."""
    if summary.get("status") != "finished":
        return None
    v = summary.get(OBJECTIVES[tuning][0])
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
