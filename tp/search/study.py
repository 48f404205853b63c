"""A search's Optuna study: its storage, the fixed values it was made with, and the bookkeeping of trials
left running by workers that are gone."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError
from .settings import OBJECTIVES, SearchSettings
from .space import load_space

__all__ = ["ALREADY_ENDED", "open_study", "recover_orphans", "ended_trials"]

#: an Optuna call on a trial that another worker already ended (it took the trial for stale)
ALREADY_ENDED = (RuntimeError, ValueError)


def _storage(settings: SearchSettings):
    url = settings.storage or f"sqlite:///{settings.out / 'study.db'}"
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return url


def open_study(settings: SearchSettings) -> optuna.Study:
    """The study of these settings in their storage (created on first use, loaded afterwards; a study made
    with other fixed values is an error)."""
    settings.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed, constant_liar=True,
                                         n_startup_trials=settings.startup_trials)
    pruner = optuna.pruners.MedianPruner() if settings.median_pruner else optuna.pruners.NopPruner()
    try:
        study = optuna.create_study(study_name=settings.study_name, storage=_storage(settings), sampler=sampler,
                                    pruner=pruner, direction="minimize", load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 — any storage error: the URL is the user's input
        raise ConfigError(f"storage {settings.storage or settings.out / 'study.db'!r}: cannot open it as an Optuna "
                          f"storage ({type(exc).__name__}: {exc}); give sqlite:///FILE, journal:FILE or a "
                          "database URL") from None
    fixed = {"objective": OBJECTIVES[settings.tuning][0], "overrides": dict(settings.overrides),
             "seed": settings.seed, "space": {n: [p.kind, p.low, p.high, list(p.choices or [])] for n, p in
                                              load_space(settings.method, path=settings.space_file).items()}}
    known = study.user_attrs.get("fixed")
    if known is None:
        study.set_user_attr("fixed", fixed)
    elif known != fixed:
        differ = sorted(k for k in fixed if known.get(k) != fixed[k])
        raise ConfigError(f"the {settings.study_name} study in {settings.storage or settings.out / 'study.db'} was "
                          f"made with other fixed values ({', '.join(differ)} differ: {known} vs {fixed}); use "
                          "another --out / --storage, or the same settings")
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
    """Mark trials left RUNNING by dead workers FAILED and ask them again (same values, same folder):
    on this host those whose process is gone, on another host those without a heartbeat for
    ``stale_after`` seconds."""
    host, now, n = socket.gethostname(), time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if attrs.get("host") == host:
            orphan = attrs.get("pid") not in (None, os.getpid()) and not _alive(int(attrs["pid"]))
        else:
            orphan = now - float(attrs.get("heartbeat", now)) > stale_after
        if not orphan:
            continue
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
