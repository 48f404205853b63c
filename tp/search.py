"""Hyperparameter search as the paper did it (SM §B): Tree-of-Parzen-Estimators (TPE), here on Optuna.

The paper tuned every method with TPE (Hyperopt + Ray Tune) on "the best validation error over 100 epochs,
with a validation set of 5000 samples" (Table 1's configurations), and Table 2's for the training loss.  The
objectives are exactly those columns' quantities, read from each trial's ``summary.json``:

* ``tuning="test"``  → ``val_error_best``, the best validation error (%) over the run's epochs;
* ``tuning="train"`` → ``train_loss_last``, the training loss of the last epoch (no validation set).

A search lives in its Optuna storage (default: ``OUT/study.db``, SQLite; any Optuna storage URL, or
``journal:PATH`` for a journal file on a shared file system, e.g. for SLURM workers).  Each worker asks
``block`` trials at a time (TPE with the constant liar, so trials in flight count as pessimistic
observations), trains them — each with the searched values over the method's final configuration, one seed
for all trials so that they differ only in their hyperparameters — and tells the storage their values, until
the study holds ``trials`` ended trials.  Trial k trains in ``OUT/trials/kkkk`` (a normal run folder).

* A diverged trial (NaN/inf) is told as FAILED, never as a value.  A run stopped by the official early stop
  (SPEC §15) is told as PRUNED with its per-epoch objective values as intermediate values.
* Resume: a trial left RUNNING by a process that died (same host: its PID is gone; any host: no heartbeat for
  ``stale_after`` seconds) is marked FAILED and asked again with the same values in the same folder, so its
  training resumes from the checkpoint there.
* Outputs (:func:`write_outputs`): ``trials.csv``, ``best.yaml`` (the best trial's resolved configuration, a
  file ``tp train --config`` takes as it is), ``history.{png,pdf}`` and ``importances.{png,pdf}``.
"""

from __future__ import annotations

import csv
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import yaml
from optuna.trial import TrialState

from .config import resolve_config
from .training import Hook
from .search_space import Param, load_space, suggest

__all__ = ["SearchSettings", "OBJECTIVES", "open_study", "recover_orphans", "run_search", "write_outputs",
           "objective_of", "TrainBlock"]

#: tuning -> (summary key, label) of the objective (minimised)
OBJECTIVES = {"test": ("val_error_best", "best validation error (%)"),
              "train": ("train_loss_last", "last training loss")}
#: metrics.csv column of the objective per epoch (the intermediate values of a trial)
EPOCH_COLUMN = {"test": "val_error", "train": "train_loss"}

#: trains one block of trial configurations: (configs, run folders, hooks) -> their summaries, with the
#: :class:`tp.training.Hook` objects passed to the training (replica r of the block is trial r)
TrainBlock = Callable[[list[dict], list[Path], list], list[dict]]


class TrialReporter(Hook):
    """After every training epoch of trial r: its heartbeat, its objective so far as the trial's
    intermediate value, and Optuna's pruner (``prune``: the median pruner decides; the run stops as
    ``pruned``)."""

    def __init__(self, trials: list, tuning: str, prune: bool):
        self.trials, self.column, self.prune = trials, EPOCH_COLUMN[tuning], prune
        self.reported: dict[int, set] = {t.number: set() for t in trials}

    def epoch_end(self, block, r: int, epoch: int) -> None:
        trial = self.trials[r]
        trial.set_user_attr("heartbeat", time.time())
        value = block.run.records[r].metrics[-1].get(self.column)
        if value is None or not math.isfinite(value):
            return
        trial.report(value, epoch)
        self.reported[trial.number].add(epoch)
        if self.prune and trial.should_prune():
            block.stop(r, "pruned", f"Optuna's median pruner after epoch {epoch} ({self.column} {value:.6g})")


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
    stale_after: float = 3600.0  # seconds without a heartbeat after which a RUNNING trial is orphaned
    space_file: Path | None = None
    median_pruner: bool = False  # Optuna's median pruner on the per-epoch objective (besides SPEC §15's stop)

    def __post_init__(self):
        if self.tuning not in OBJECTIVES:
            from .config import ConfigError
            raise ConfigError(f"tuning {self.tuning!r} has no search objective; valid choices: "
                              f"{', '.join(OBJECTIVES)}")
        self.out = Path(self.out)

    @property
    def study_name(self) -> str:
        return f"{self.method}-{self.dataset}-{self.tuning}"


def _storage(settings: SearchSettings):
    url = settings.storage or f"sqlite:///{(settings.out / 'study.db').resolve()}"
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return url


def open_study(settings: SearchSettings) -> optuna.Study:
    """The study of these settings in their storage (created on first use, loaded afterwards)."""
    settings.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed, constant_liar=True,
                                         n_startup_trials=settings.startup_trials)
    pruner = optuna.pruners.MedianPruner() if settings.median_pruner else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=settings.study_name, storage=_storage(settings), sampler=sampler,
                                pruner=pruner, direction="minimize", load_if_exists=True)
    study.set_user_attr("objective", OBJECTIVES[settings.tuning][0])
    return study


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_orphans(study: optuna.Study, stale_after: float, log: Callable[[str], None] = print) -> int:
    """Mark trials left RUNNING by dead workers FAILED and ask them again (same values, same folder)."""
    host, now, n = socket.gethostname(), time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        dead = (attrs.get("host") == host and attrs.get("pid") not in (None, os.getpid())
                and not _alive(int(attrs["pid"])))
        stale = now - float(attrs.get("heartbeat", now)) > stale_after
        if not (dead or stale):
            continue
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"out": attrs.get("out"), "retry_of": t.number})
        log(f"trial {t.number} was left running by a {'dead' if dead else 'silent'} worker: marked failed, "
            "asked again")
        n += 1
    return n


def _ended(study: optuna.Study) -> int:
    """Trials that ended, less those asked again after their worker died (counted once, by their retry)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
               and t.number not in retried)


def objective_of(summary: dict, tuning: str) -> float | None:
    """The objective of a finished trial's summary, or None (diverged, pruned, missing, non-finite)."""
    if summary.get("status") != "finished":
        return None
    v = summary.get(OBJECTIVES[tuning][0])
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _epoch_values(out: Path, tuning: str) -> list[float]:
    path = out / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [float(r[EPOCH_COLUMN[tuning]]) for r in csv.DictReader(f) if r.get(EPOCH_COLUMN[tuning])]


def run_search(settings: SearchSettings, train_block: TrainBlock,
               log: Callable[[str], None] = print, worker: str | None = None) -> optuna.Study:
    """Ask, train and tell blocks of trials until the study holds ``settings.trials`` ended trials."""
    space = load_space(settings.method, path=settings.space_file)
    study = open_study(settings)
    recover_orphans(study, settings.stale_after, log)
    while True:
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        n = min(settings.block, settings.trials - _ended(study) - running)
        if n <= 0:
            break
        _run_block(study, settings, space, [study.ask() for _ in range(n)], train_block, log, worker)
    return study


def _run_block(study, settings: SearchSettings, space: dict[str, Param], trials, train_block, log,
               worker: str | None) -> None:
    cfgs, outs = [], []
    for t in trials:
        out = Path(t.user_attrs.get("out") or settings.out / "trials" / f"{t.number:04d}")
        for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("out", str(out)),
                           ("heartbeat", time.time()), ("seed", settings.seed), ("worker", worker or "")):
            t.set_user_attr(key, value)
        values = suggest(t, space)
        cfgs.append(resolve_config(settings.method, settings.dataset, settings.tuning,
                                   {**settings.overrides, **values}))
        outs.append(out)

    reporter = TrialReporter(trials, settings.tuning, settings.median_pruner)
    log(f"training trials {', '.join(str(t.number) for t in trials)}")
    summaries = train_block(cfgs, outs, [reporter])
    for t, out, summary in zip(trials, outs, summaries):
        value = objective_of(summary, settings.tuning)
        t.set_user_attr("status", summary.get("status"))
        if summary.get("message"):
            t.set_user_attr("message", summary["message"])
        if summary.get("status") == "pruned":  # the epochs a resumed trial did before (not reported yet)
            for epoch, v in enumerate(_epoch_values(out, settings.tuning), start=1):
                if epoch not in reporter.reported[t.number]:
                    t.report(v, epoch)
            study.tell(t, state=TrialState.PRUNED)
        elif value is None:
            t.set_user_attr("message", summary.get("message") or "no finite objective value")
            study.tell(t, state=TrialState.FAIL)
        else:
            study.tell(t, value)
        log(f"trial {t.number}: {summary.get('status')}" + (f", {OBJECTIVES[settings.tuning][1]} {value:.6g}"
                                                          if value is not None else ""))


# ------------------------------------------------------------------------------------------- outputs
def write_outputs(study: optuna.Study, settings: SearchSettings, log: Callable[[str], None] = print) -> dict:
    """``trials.csv``, ``best.yaml`` and the history / importance plots (PNG and PDF) in ``settings.out``."""
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    names = list(load_space(settings.method, path=settings.space_file))
    key, label = OBJECTIVES[settings.tuning]
    columns = ["trial", "state", "objective", "value", "status", "seed", "out", "duration_s", "retry_of", *names]
    tmp = out / f".trials.csv.{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for t in trials:
            a = t.user_attrs
            w.writerow({"trial": t.number, "state": t.state.name, "objective": key,
                        "value": "" if t.value is None else t.value, "status": a.get("status", ""),
                        "seed": a.get("seed", ""), "out": a.get("out", ""),
                        "duration_s": "" if t.duration is None else round(t.duration.total_seconds(), 3),
                        "retry_of": a.get("retry_of", ""), **{n: t.params.get(n, "") for n in names}})
    os.replace(tmp, out / "trials.csv")
    written = {"trials": out / "trials.csv"}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        log("no trial completed: no best.yaml and no plots")
        return written
    best = min(complete, key=lambda t: (t.value, t.number))
    cfg = resolve_config(settings.method, settings.dataset, settings.tuning, {**settings.overrides, **best.params})
    header = (f"# Best trial {best.number} of the {study.study_name} search ({len(complete)} completed of "
              f"{len(trials)}): {label} {best.value:.6g} (seed {best.user_attrs.get('seed')}).\n"
              f"# Train it again with:  tp train --config best.yaml\n")
    (out / "best.yaml").write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    written["best"] = out / "best.yaml"
    written.update(_plots(study, out, label, len(complete), log))
    return written


def _plots(study, out: Path, label: str, complete: int, log) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = {}
    plots = [("history", lambda: ovm.plot_optimization_history(study, target_name=label)),
             ("importances", lambda: ovm.plot_param_importances(
                 study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target_name=label))]
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                if name == "importances" and complete < 2:
                    raise ValueError(f"{complete} completed trial; the importances need at least 2")
                ax = plot()
            except (RuntimeError, ValueError, ZeroDivisionError) as exc:  # e.g. all values equal
                log(f"no {name}: {exc}")
                fig, ax = plt.subplots()  # the file says why, so the pipeline's output exists
                ax.text(0.5, 0.5, f"no parameter importances:\n{exc}", ha="center", va="center", wrap=True)
                ax.set_axis_off()
        fig = ax.figure
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out / f"{name}.{ext}", dpi=150)
        plt.close(fig)
        written[name] = out / f"{name}.png"
    return written
