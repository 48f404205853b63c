"""The search loop: ask a block of trials, train it, tell Optuna how each trial ended; the hook that reports
each epoch to its trial, and the heartbeat of trials in training."""

from __future__ import annotations

import csv
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from ..config.resolve import resolve_config
from ..errors import ConfigError
from ..training import PER_REPLICA_KEYS, Hook
from .settings import EPOCH_COLUMN, OBJECTIVES, SearchSettings, objective_of
from .space import Param, load_space, suggest
from .study import ALREADY_ENDED, ended_trials, open_study, recover_orphans

__all__ = ["TrainBlock", "TrialReporter", "check_search", "run_search"]

#: trains one block of trial configurations: (configs, run folders, hooks) -> their summaries, with the
#: :class:`tp.training.Hook` objects passed to the training
TrainBlock = Callable[[list[dict], list[Path], list], list[dict]]


class TrialReporter(Hook):
    """After every training epoch of a trial (found by its run folder): its heartbeat, its objective so far
    as the trial's intermediate value, and Optuna's pruner (``prune``: the median pruner decides; the run
    stops as ``pruned``)."""

    def __init__(self, trials: list, tuning: str, prune: bool, root: Path | None = None):
        self.column, self.prune = EPOCH_COLUMN[tuning], prune
        # the trials' recorded folders are relative to the search folder ``root`` (older studies: absolute)
        self.by_out = {(Path(root or "") / t.user_attrs["out"]).resolve(): t for t in trials}
        self.reported: dict[int, set] = {t.number: set() for t in trials}

    def epoch_end(self, block, r: int, epoch: int) -> None:
        trial = self.by_out.get(Path(block.run.records[r].out).resolve())
        value = block.run.records[r].metrics[-1].get(self.column)
        if trial is None or value is None or not math.isfinite(value):
            return
        try:
            trial.set_user_attr("heartbeat", time.time())
            trial.report(value, epoch)
            self.reported[trial.number].add(epoch)
            if self.prune and trial.should_prune():
                block.stop(r, "pruned", f"Optuna's median pruner after epoch {epoch} ({self.column} {value:.6g})")
        except ALREADY_ENDED as exc:
            block.log(f"trial {trial.number}: not reported ({exc})")


class _Heartbeat:
    """While a block trains: each trial's ``heartbeat`` user attribute, every ``interval`` seconds, from a
    background thread (feedback pre-training and long epochs included)."""

    def __init__(self, trials: list, interval: float):
        self.trials, self.interval, self.done = trials, interval, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.done.wait(self.interval):
            for t in self.trials:
                try:
                    t.set_user_attr("heartbeat", time.time())
                except Exception:  # noqa: BLE001 — a beat that fails (trial ended, storage busy) is skipped
                    pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def _epoch_values(out: Path, tuning: str) -> list[float]:
    path = out / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [float(r[EPOCH_COLUMN[tuning]]) for r in csv.DictReader(f) if r.get(EPOCH_COLUMN[tuning])]


def check_search(settings: SearchSettings, space: dict[str, Param]) -> None:
    """Refuse, before any trial is asked, a search whose trials could not train or report: a block of
    trials with a searched key that cannot differ between replicas, or an objective the runs cannot have."""
    if settings.block > 1:
        fixed = sorted(set(space) - set(PER_REPLICA_KEYS))
        if fixed:
            raise ConfigError(f"--block {settings.block}: the trials of a block may differ only in "
                              f"{', '.join(PER_REPLICA_KEYS)}; the search space also varies {', '.join(fixed)} "
                              "(use --block 1)")
    searched = sorted(set(space) & set(settings.overrides))
    if searched:
        raise ConfigError(f"--set {', '.join(searched)}: searched key(s) (the search space gives their range, the "
                          "fixed value would be ignored); drop the --set, or give a --space without them")
    base = resolve_config(settings.method, settings.dataset, settings.tuning, settings.overrides)
    if base["epochs"] < 1:
        raise ConfigError(f"a search needs trials of at least one epoch, got epochs={base['epochs']}")
    if settings.tuning == "test" and base["no_val_set"]:
        raise ConfigError("--tuning test minimises the best validation error, but no_val_set=true leaves no "
                          "validation set; drop that override or use --tuning train")


def run_search(settings: SearchSettings, train_block: TrainBlock,
               log: Callable[[str], None] = print, worker: str | None = None) -> optuna.Study:
    """Ask, train and tell blocks of trials until the study holds ``settings.trials`` ended trials (and
    none is still training elsewhere)."""
    space = load_space(settings.method, path=settings.space_file)
    check_search(settings, space)
    study = open_study(settings, log)
    waiting = False
    while True:
        recover_orphans(study, settings.stale_after, log)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        n = min(settings.block, settings.trials - ended_trials(study) - running)
        if n > 0:
            waiting = False
            _run_block(study, settings, space, [study.ask() for _ in range(n)], train_block, log, worker)
        elif running:  # the other workers' trials: wait for them (or take them over if their worker dies)
            if not waiting:
                log(f"waiting for {running} trial(s) that other workers are training")
            waiting = True
            time.sleep(settings.poll_seconds)
        else:
            return study


def _run_block(study, settings: SearchSettings, space: dict[str, Param], trials, train_block, log,
               worker: str | None) -> None:
    cfgs, outs = [], []
    for t in trials:
        out = settings.trial_folder(t.user_attrs.get("out"), t.number).resolve()
        recorded = os.path.relpath(out, settings.out)  # relative: a moved search folder keeps working
        for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("out", recorded),
                           ("heartbeat", time.time()), ("seed", settings.seed), ("worker", worker or "")):
            t.set_user_attr(key, value)
        values = suggest(t, space)
        cfgs.append(resolve_config(settings.method, settings.dataset, settings.tuning,
                                   {**settings.overrides, **values}))
        outs.append(out)

    reporter = TrialReporter(trials, settings.tuning, settings.median_pruner, root=settings.out)
    log(f"training trials {', '.join(str(t.number) for t in trials)}")
    with _Heartbeat(trials, min(60.0, settings.stale_after / 4)):
        summaries = train_block(cfgs, outs, [reporter])
    for t, out, summary in zip(trials, outs, summaries):
        try:
            state = _tell(study, t, out, summary, settings.tuning, reporter)
        except ALREADY_ENDED as exc:
            log(f"trial {t.number}: another worker ended it meanwhile ({exc}); its result stays in {out}")
            continue
        value = f", {OBJECTIVES[settings.tuning][1]} {t.user_attrs.get('value', '')}" if state == "COMPLETE" else ""
        log(f"trial {t.number}: {state} (run {summary.get('status')}){value}")


def _tell(study, t, out: Path, summary: dict, tuning: str, reporter: TrialReporter) -> str:
    """Tell Optuna how trial t ended; the state told."""
    value = objective_of(summary, tuning)
    t.set_user_attr("status", summary.get("status"))
    t.set_user_attr("data_source", summary.get("data_source"))
    if summary.get("message"):
        t.set_user_attr("message", summary["message"])
    if summary.get("status") == "pruned":  # the epochs a resumed trial did before (not reported yet)
        for epoch, v in enumerate(_epoch_values(out, tuning), start=1):
            if epoch not in reporter.reported[t.number]:
                t.report(v, epoch)
        study.tell(t, state=TrialState.PRUNED)
        return "PRUNED"
    if value is None:
        t.set_user_attr("message", summary.get("message") or "no finite objective value")
        study.tell(t, state=TrialState.FAIL)
        return "FAIL"
    t.set_user_attr("value", f"{value:.6g}")
    study.tell(t, value)
    return "COMPLETE"
