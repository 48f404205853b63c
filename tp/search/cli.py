"""``tp search``: the command line of :mod:`tp.search`.

    tp search --method ddtp-linear --dataset mnist --trials 200 --block 20 --device cuda --out search/ddtp
    tp search --method bp --dataset mnist --tuning train --trials 50 --storage journal:/shared/bp.journal
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..catalog import DATASETS, METHODS
from ..config.resolve import parse_override, resolve_config
from ..core.runtime import dtype_of, resolve_device
from ..errors import ConfigError
from ..training.options import FAST_MODES
from .loop import run_search
from .outputs import write_outputs
from .settings import OBJECTIVES, SearchSettings
from .study import open_study, orphans

__all__ = ["add_parser", "cmd_search", "trial_trainer", "TrialTrainer"]


class TrialTrainer:
    """A :data:`tp.search.TrainBlock`: a block of R > 1 trials trains as one block of replicas
    (:func:`tp.training.train_trials`, each on the validation split of ``seed``), a single trial as
    one run.  ``load(split_generator)`` loads the data (a generator: one split; a list: replica splits)."""

    def __init__(self, load, seed: int, device, *, fast: str = "auto", prune: bool = True, log=print):
        from ..training import TrainOptions
        self.load, self.seed, self.cache = load, seed, {}
        self.options = dict(device=device, progress=False, log=log, prune=prune, fast=fast)
        TrainOptions(**self.options)  # bad options fail here, before any trial is asked

    def data_for(self, r: int):
        """The data of a block of ``r`` trials: the pool and its splits, loaded once per block size."""
        from ..training import run_generators
        if r not in self.cache:
            gens = run_generators(self.seed)["split"]
            self.cache[r] = self.load(gens if r == 1 else [run_generators(self.seed)["split"] for _ in range(r)])
        return self.cache[r]

    def data_fields(self) -> dict:
        """Where the trials' data comes from (``data_source``, ``data_sha256``: the study's fixed data, the files'
        content; each trial's summary also names a package the files came from): loads it (a missing dataset is
        found here, before any trial is asked)."""
        fields = self.data_for(1).summary_fields()
        return {k: fields[k] for k in ("data_source", "data_sha256")}

    def __call__(self, cfgs, outs, hooks) -> list[dict]:
        from ..training import TrainOptions, train_runs
        options = TrainOptions(**self.options, hooks=hooks)
        return train_runs("run" if len(cfgs) == 1 else "trials", cfgs, self.data_for(len(cfgs)),
                          [self.seed] * len(cfgs), outs, options)


def trial_trainer(load, seed: int, device, *, fast: str = "auto", prune: bool = True, log=print) -> TrialTrainer:
    """The :class:`TrialTrainer` of ``tp search`` (see there)."""
    return TrialTrainer(load, seed, device, fast=fast, prune=prune, log=log)


def cmd_search(args) -> int:
    from ..data.datasets import load_dataset

    if args.worker is not None and (Path(args.worker).name != args.worker or args.worker in ("", ".", "..")):
        raise ConfigError(f"--worker {args.worker!r}: a worker's name is a plain folder name (it writes "
                          "OUT/workers/NAME/summary.json), without '/' or '..'")
    overrides = dict(parse_override(s) for s in args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    out = Path(args.out) if args.out else Path("search") / f"{args.method}-{args.dataset}-{args.tuning}"
    settings = SearchSettings(args.method, args.dataset, args.tuning, args.trials, args.block, out,
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
        settings.data = trainer.data_fields()  # the data first: a missing dataset leaves no trial behind
        study = run_search(settings, trainer, log, worker=args.worker)
    else:
        study = open_study(settings, log)
        gone = {t.number for t in orphans(study, settings.stale_after)}
        running = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        if gone:
            log(f"warning: trials {sorted(gone)} were left running by workers that are gone; they are not "
                "counted (a search with --trials N asks them again)")
        if set(running) - gone:
            log(f"warning: trials {sorted(set(running) - gone)} are still running; the outputs cover the trials "
                "that ended")
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description and epilog as written, and every option's default in its help (none where the help
    says what happens without the option)."""

    def _get_help_string(self, action):
        quiet = action.default is None or action.default is False or action.default == []
        return action.help if quiet else super()._get_help_string(action)


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("search", help="tune a method's hyperparameters (TPE, Optuna), trials trained in blocks",
                       description="Tree-of-Parzen-Estimators search of a method's hyperparameters (paper SM §B) "
                                   "over its search space (tp/configs/search/METHOD.yaml).  Objective: "
                                   + "; ".join(f"--tuning {k}: {v[1]}" for k, v in OBJECTIVES.items()) + ".",
                       formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    s.add_argument("--method", required=True, choices=list(METHODS), metavar="METHOD",
                   help="one of: " + ", ".join(METHODS))
    s.add_argument("--dataset", required=True, choices=list(DATASETS), metavar="DATASET",
                   help="one of: " + ", ".join(DATASETS))
    s.add_argument("--tuning", default="test", choices=list(OBJECTIVES),
                   help="test: minimise the best validation error; train: the last training loss")
    s.add_argument("--trials", type=int, default=20,
                   help="ended trials the study must hold (0: only write the outputs of the storage)")
    s.add_argument("--block", type=int, default=1, help="trials asked at once and trained as one block")
    s.add_argument("--seed", type=int, default=0, help="the seed of every trial")
    s.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler")
    s.add_argument("--startup-trials", type=int, default=10, help="random trials before TPE")
    s.add_argument("--storage", default=None,
                   help="Optuna storage URL (sqlite:///F, postgresql://...) or journal:PATH "
                        "(without it: sqlite in --out)")
    s.add_argument("--stale-after", type=float, default=3600.0,
                   help="seconds without a heartbeat after which another host's running trial is asked again")
    s.add_argument("--worker", default=None, metavar="NAME",
                   help="run as one of several workers sharing --storage: write OUT/workers/NAME/summary.json "
                        "when the study is full, instead of the outputs")
    s.add_argument("--median-pruner", action="store_true",
                   help="stop trials whose objective is worse than the median of earlier trials at the same "
                        "epoch (Optuna's MedianPruner; the official early stop applies in any case)")
    s.add_argument("--space", default=None, help="search-space YAML (default tp/configs/search/METHOD.yaml)")
    s.add_argument("--out", default=None, help="output folder (trials, trials.csv, best.yaml, plots); default "
                                               "search/METHOD-DATASET-TUNING, one per study")
    s.add_argument("--epochs", type=int, default=None, help="override the configured number of epochs")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a configuration value under the searched ones (repeatable)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto")
    s.add_argument("--fast", choices=FAST_MODES, default="auto",
                   help="auto (CUDA graphs on a GPU, compiled CPU steps for long runs), graph, compiled, eager")
    s.add_argument("--data-root", default="data", help="the folder holding the datasets (e.g. data/MNIST)")
    s.add_argument("--download", action=argparse.BooleanOptionalAction, default=False,
                   help="download a missing dataset first")
    s.add_argument("--source", choices=["real", "synthetic"], default="real",
                   help="real: the dataset's files; synthetic: random data of its shape (tests, no files)")
    s.set_defaults(func=cmd_search)
    return s
