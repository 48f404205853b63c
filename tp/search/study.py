"""A search's Optuna study: its storage, the fixed values it was made with, and the bookkeeping of trials
left running by workers that are gone."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from ..errors import ConfigError
from ..runs.folder import usable_folder
from .settings import OBJECTIVES, SearchSettings
from .space import load_space

__all__ = ["ALREADY_ENDED", "TrialSeededSampler", "open_study", "repair_journal", "orphans", "recover_orphans",
           "ended_trials"]

#: an Optuna call on a trial that another worker already ended (it took the trial for stale)
ALREADY_ENDED = (RuntimeError, ValueError)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Optuna's TPE sampler (with the constant liar: a worker's running trials count as bad for the others'
    asks), seeded per trial: trial n draws from a TPE sampler seeded from (``seed``, n).  Trial numbers are
    unique in a study, whichever worker asks, so a resumed search, searches into one folder at once and the
    pipeline's workers (one ``--sampler-seed``) never replay each other's random start-up points; and the
    points of a study follow from its seed and its trials alone."""

    def __init__(self, seed: int, startup_trials: int):
        self.seed, self.startup_trials = int(seed), int(startup_trials)
        self._samplers: dict[int, optuna.samplers.TPESampler] = {}  # trial number -> its sampler, until told

    def _of(self, trial) -> optuna.samplers.TPESampler:
        if trial.number not in self._samplers:
            seed = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
            self._samplers[trial.number] = optuna.samplers.TPESampler(
                seed=seed, constant_liar=True, n_startup_trials=self.startup_trials)
        return self._samplers[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._of(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to do: each trial's seed is derived, never drawn."""


def _storage(settings: SearchSettings, log: Callable[[str], None]):
    url = settings.storage or f"sqlite:///{settings.out / 'study.db'}"
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_journal(path, log)
        return JournalStorage(JournalFileBackend(str(path)))
    return url


def repair_journal(path: Path, log: Callable[[str], None] = print) -> None:
    """A journal file cut short (a worker killed while writing, a full disk) ends in a partial record, which
    Optuna would glue the next record to: that partial last line is dropped (the whole file kept beside it as
    ``F.damaged``), so the trials it records up to there stay readable; the lost record was the last change of
    one trial, which then reads as running and is asked again (:func:`recover_orphans`).  Damage anywhere
    else cannot be repaired safely and is a named error."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data[:data.rfind(b"\n") + 1]
        backup = path.with_name(path.name + ".damaged")
        backup.write_bytes(data)
        with open(path, "r+b") as f:
            f.truncate(len(keep))
        log(f"{path}: its last record was cut short ({len(data) - len(keep)} bytes without an end of line); "
            f"dropped it and kept the damaged file as {backup}")
        data = keep
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            json.loads(line)
        except ValueError:
            raise ConfigError(f"{path}: record {number} is not valid JSON (the journal is damaged inside, not "
                              "just cut short); restore it from a copy or start a new --storage") from None


def open_study(settings: SearchSettings, log: Callable[[str], None] = print) -> optuna.Study:
    """The study of these settings in their storage (created on first use, loaded afterwards; a study made
    with other fixed values is an error)."""
    usable_folder(settings.out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _refuse_another_study(settings)
    sampler = TrialSeededSampler(settings.sampler_seed, settings.startup_trials)
    pruner = optuna.pruners.MedianPruner() if settings.median_pruner else optuna.pruners.NopPruner()
    storage = _storage(settings, log)  # a damaged journal is repaired or a named error here
    try:
        study = optuna.create_study(study_name=settings.study_name, storage=storage, sampler=sampler,
                                    pruner=pruner, direction="minimize", load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 — any storage error: the URL is the user's input
        raise ConfigError(f"storage {settings.storage or settings.out / 'study.db'!r}: cannot open it as an Optuna "
                          f"storage ({type(exc).__name__}: {exc}); give sqlite:///FILE, journal:FILE or a "
                          "database URL") from None
    fixed = {"objective": OBJECTIVES[settings.tuning][0], "overrides": dict(settings.overrides),
             "seed": settings.seed, "space": {n: [p.kind, p.low, p.high, list(p.choices or [])] for n, p in
                                              load_space(settings.method, path=settings.space_file).items()},
             "data": settings.data}
    known = study.user_attrs.get("fixed")
    if known is not None and settings.data is None:  # a call that trains nothing takes the study's data
        fixed["data"] = known.get("data")
    if known is None:
        study.set_user_attr("fixed", fixed)
    elif known != fixed:
        differ = sorted(k for k in fixed if known.get(k) != fixed[k])
        raise ConfigError(f"the {settings.study_name} study in {settings.storage or settings.out / 'study.db'} was "
                          f"made with other fixed values ({', '.join(differ)} differ: {known} vs {fixed}); use "
                          "another --out / --storage, or the same settings")
    return study


def _refuse_another_study(settings: SearchSettings) -> None:
    """A search folder holds one study: its trial folders are numbered per study, so a second one (another
    method, dataset or tuning) would take the first one's folders and outputs."""
    if settings.storage is not None:
        return
    db = settings.out / "study.db"
    names = []
    if db.exists() and db.stat().st_size > 0:
        try:
            names = optuna.get_all_study_names(f"sqlite:///{db}")
        except Exception:  # noqa: BLE001 — not a study storage: create_study says so
            return
    trials = settings.out / "trials"
    folders = sorted(p.name for p in trials.iterdir() if p.is_dir()) if trials.is_dir() else []
    if not names and folders:
        raise ConfigError(f"{settings.out} holds {len(folders)} trial folder(s) but no study ({db} is "
                          f"{'empty' if db.exists() else 'missing'}): the study that made them is lost; move "
                          f"{trials} away to start a new search there, or use another --out")
    others = [n for n in names if n != settings.study_name]
    if others:
        raise ConfigError(f"{settings.out} holds the search {', '.join(others)}, not {settings.study_name}; "
                          f"give this search its own --out (the default is search/{settings.study_name})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphans(study: optuna.Study, stale_after: float) -> list:
    """Trials left RUNNING by workers that are gone: on this host those whose process is gone or is this one
    (which trains no trial while it looks: its own trials are told before it asks again, so one of them
    still running is left over from before, e.g. a process whose PID was reused), on another host those
    without a heartbeat for ``stale_after`` seconds."""
    host, now, found = socket.gethostname(), time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if attrs.get("host") == host:
            pid = attrs.get("pid")
            orphan = pid is not None and (int(pid) == os.getpid() or not _alive(int(pid)))
        else:
            orphan = now - float(attrs.get("heartbeat", now)) > stale_after
        if orphan:
            found.append(t)
    return found


def recover_orphans(study: optuna.Study, stale_after: float, log: Callable[[str], None] = print) -> int:
    """Mark the :func:`orphans` FAILED and ask them again (same values, same folder, so their training
    resumes from its checkpoint there)."""
    n = 0
    for t in orphans(study, stale_after):
        attrs = t.user_attrs
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except ALREADY_ENDED:  # another worker recovered it first
            continue
        study.enqueue_trial(t.params, user_attrs={"out": attrs.get("out"), "retry_of": t.number})
        log(f"trial {t.number} was left running by a worker that is gone: marked failed, asked again")
        n += 1
    return n


def ended_trials(study: optuna.Study) -> int:
    """Trials that ended, less those asked again after their worker died (counted once, by their retry)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
               and t.number not in retried)
