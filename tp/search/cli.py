"""``tp search``: the command line of :mod:`tp.search`.

    tp search --method ddtp-linear --dataset mnist --trials 200 --block 20 --device cuda --out search/ddtp
    tp search --method bp --dataset mnist --tuning train --trials 50 --storage journal:/shared/bp.journal
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import DATASETS, METHODS, parse_override, resolve_config
from ..runtime import dtype_of, resolve_device
from .loop import run_search
from .outputs import write_outputs
from .settings import OBJECTIVES, SearchSettings
from .study import open_study

__all__ = ["add_parser", "cmd_search", "trial_trainer"]


def trial_trainer(load, seed: int, device, *, fast: str = "auto", prune: bool = True, log=print):
    """A :data:`tp.search.TrainBlock`: a block of R > 1 trials trains as one block of replicas
    (:func:`tp.training.trials.train_trials`, each on the validation split of ``seed``), a single trial as
    one run.  ``load(split_generator)`` loads the data (a generator: one split; a list: replica splits)."""
    from ..training import run_generators, train
    from ..training.trials import train_trials

    cache = {}

    def data_for(r: int):
        if r not in cache:  # the pool and its splits, once per block size
            gens = run_generators(seed)["split"] if r == 1 else [run_generators(seed)["split"] for _ in range(r)]
            cache[r] = load(gens)
        return cache[r]

    def train_block(cfgs, outs, hooks):
        if len(cfgs) == 1:
            return [train(cfgs[0], data_for(1), seed, outs[0], device, progress=False, log=log, prune=prune,
                          fast=fast, hooks=hooks)]
        return train_trials(cfgs, data_for(len(cfgs)), [seed] * len(cfgs), outs, device, progress=False, log=log,
                            prune=prune, fast=fast, hooks=hooks)

    return train_block


def cmd_search(args) -> int:
    from ..data import load_dataset

    overrides = dict(parse_override(s) for s in args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    settings = SearchSettings(args.method, args.dataset, args.tuning, args.trials, args.block, Path(args.out),
                              args.storage, overrides, args.seed, args.sampler_seed, args.startup_trials,
                              args.stale_after, Path(args.space) if args.space else None, args.median_pruner)
    base = resolve_config(args.method, args.dataset, args.tuning, overrides)  # bad --set values fail here
    t0 = time.time()
    log = (lambda msg: print(msg, flush=True))
    if args.trials:
        device = resolve_device(args.device)
        dtype = dtype_of(base)

        def load(split_generator):
            return load_dataset(args.dataset, args.data_root, download=args.download, source=args.source,
                                no_val_set=base["no_val_set"], split_generator=split_generator, dtype=dtype,
                                device=device)

        trainer = trial_trainer(load, args.seed, device, fast=args.fast, prune=args.source == "real", log=log)
        study = run_search(settings, trainer, log, worker=args.worker)
    else:
        study = open_study(settings)
        running = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        if running:
            log(f"warning: trials {running} are still running; the outputs cover the trials that ended")
    if args.worker:
        _write_worker_record(settings, args.worker, study, device if args.trials else None, t0)
    else:
        for name, path in write_outputs(study, settings, log).items():
            print(f"{name}: {path}")
    return 0


def _write_worker_record(settings: SearchSettings, worker: str, study, device, t0: float) -> None:
    """OUT/workers/WORKER/summary.json: what one worker of a shared search did (the pipeline's done flag)."""
    import json
    import os
    import time

    from ..training import code_version, device_name

    mine = [t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker]
    folder = settings.out / "workers" / worker
    folder.mkdir(parents=True, exist_ok=True)
    record = {"status": "finished", "study": study.study_name, "worker": worker, "trials_run": mine,
              "trials_in_study": len(study.get_trials(deepcopy=False)), "wall_time_s": round(time.time() - t0, 3),
              "device": str(device) if device is not None else None,
              "device_name": device_name(device) if device is not None else None, "code_version": code_version()}
    tmp = folder / f".summary.json.{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, folder / "summary.json")


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("search", help="tune a method's hyperparameters (TPE, Optuna), trials trained in blocks",
                       description="Tree-of-Parzen-Estimators search of a method's hyperparameters (paper SM §B) "
                                   "over its search space (tp/configs/search/METHOD.yaml).  Objective: "
                                   + "; ".join(f"--tuning {k}: {v[1]}" for k, v in OBJECTIVES.items()) + ".",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    s.add_argument("--method", required=True, choices=list(METHODS), metavar="METHOD",
                   help="one of: " + ", ".join(METHODS))
    s.add_argument("--dataset", required=True, choices=list(DATASETS), metavar="DATASET",
                   help="one of: " + ", ".join(DATASETS))
    s.add_argument("--tuning", default="test", choices=list(OBJECTIVES),
                   help="test: minimise the best validation error; train: the last training loss")
    s.add_argument("--trials", type=int, default=20,
                   help="ended trials the study must hold (0: only write the outputs of the storage)")
    s.add_argument("--block", type=int, default=1, help="trials asked at once and trained as one block")
    s.add_argument("--seed", type=int, default=0, help="the seed of every trial (default 0)")
    s.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler")
    s.add_argument("--startup-trials", type=int, default=10, help="random trials before TPE (Optuna's default)")
    s.add_argument("--storage", default=None,
                   help="Optuna storage URL (sqlite:///F, postgresql://...) or journal:PATH "
                        "(default: sqlite in --out)")
    s.add_argument("--stale-after", type=float, default=3600.0,
                   help="seconds without a heartbeat after which another host's running trial is asked again")
    s.add_argument("--worker", default=None, metavar="NAME",
                   help="run as one of several workers sharing --storage: write OUT/workers/NAME/summary.json "
                        "when the study is full, instead of the outputs")
    s.add_argument("--median-pruner", action="store_true",
                   help="stop trials whose objective is worse than the median of earlier trials at the same "
                        "epoch (Optuna's MedianPruner; the official early stop applies in any case)")
    s.add_argument("--space", default=None, help="search-space YAML (default tp/configs/search/METHOD.yaml)")
    s.add_argument("--out", default="search", help="output folder (trials, trials.csv, best.yaml, plots)")
    s.add_argument("--epochs", type=int, default=None, help="override the configured number of epochs")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a configuration value under the searched ones (repeatable)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto")
    s.add_argument("--fast", choices=("auto", "graph", "eager"), default="auto")
    s.add_argument("--data-root", default="data")
    s.add_argument("--download", action=argparse.BooleanOptionalAction, default=False)
    s.add_argument("--source", choices=["real", "synthetic"], default="real")
    s.set_defaults(func=cmd_search)
    return s
