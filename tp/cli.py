"""Command line: ``tp train …`` (also ``python -m tp train …``), ``tp configs``.

    tp train --method ddtp-linear --dataset mnist --seed 0 --epochs 3 --data-root data --download
    tp train --method bp --dataset cifar10 --tuning train --set lr=1e-4 --device cuda

    tp train --method ddtp-linear --dataset mnist --seeds 1-10 --device cuda   # 10 seeds in one process

    tp download --dataset mnist cifar10 --data-root data

Exit status:

* 0: every run finished (or was pruned by the early stop); ``tp download`` / ``tp configs`` succeeded.
* 2: bad input, before anything trains: an unknown name or key, a configuration value of the wrong type or out
  of range (the message names the key, the value and what is allowed), a bad seed or seed list; or an
  unusable run folder: busy (another ``tp train`` holds it; the message gives its PID), not creatable or not
  writable (read-only, under a file, disk full), or holding a corrupt ``checkpoint.pt`` / ``summary.json``
  or the files of another run (the message names the file and what to do).
* 3: a run diverged (NaN/inf in the loss, the parameters or the optimiser, in any precision); its
  ``summary.json`` is written (status ``diverged``, null numbers).
* 4: a dataset is missing (downloads off), its download failed, or a file of it is damaged or wrong
  (truncated, corrupt ``.gz``, wrong header, image/label counts that disagree with each other or with the
  dataset's known size); the message names the file and what to do.
* 130: interrupted (Ctrl-C); the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import __version__
from .catalog import DATASETS, METHODS, TUNINGS
from .config.resolve import available_configs, parse_override, read_user_yaml, resolve_config
from .config.validation import check_seed
from .core.runtime import dtype_of, resolve_device
from .data.datasets import DatasetNotFoundError, load_dataset
from .errors import ConfigError
from .runs.folder import RunFolderError
from .training import FAST_MODES, TrainOptions, run_generators, train_runs

EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_NO_DATA = 2, 3, 4


def default_out(method: str, dataset: str, tuning: str, seed: int) -> Path:
    return Path("runs") / tuning / method / dataset / f"seed{seed}"


def parse_seeds(text: str) -> list[int]:
    """``"3"``, ``"1,2,5"``, ``"1-10"`` or a mix (``"1-3,7"``) -> distinct seeds in the order given."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise ConfigError(f"bad seed list {text!r}; valid forms: 3, 1,2,5, 1-10, 1-3,7") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"bad seed list {text!r}: give distinct non-negative seeds, e.g. 1-10")
    return seeds


def config_file(path: str) -> dict:
    """A configuration file for ``tp train --config``: a run folder's config.yaml or a search's best.yaml (a
    resolved configuration), or any mapping of configuration keys with ``method`` / ``dataset`` /
    ``tuning`` (and optionally ``seed``)."""
    doc = read_user_yaml(path, f"--config {path}")
    if doc is None:
        raise ConfigError(f"--config {path}: holds no configuration (it is empty or only comments; a search "
                          "without a completed trial writes such a best.yaml)")
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: needs a mapping of configuration keys, got {type(doc).__name__}")
    return doc


def cmd_train(args) -> int:
    overrides = {}
    if args.config:
        doc = config_file(args.config)
        for key in ("method", "dataset", "tuning"):
            if getattr(args, key) is None:
                setattr(args, key, doc.get(key))
        if args.seed is None and args.seeds is None and doc.get("seed") is not None:
            args.seed = doc["seed"]
        overrides = {k: v for k, v in doc.items() if k not in ("method", "dataset", "tuning", "rule", "model", "seed")}
    args.tuning = args.tuning or "test"
    for key, valid in (("method", METHODS), ("dataset", DATASETS)):
        if getattr(args, key) is None:
            raise ConfigError(f"--{key} is required (or a --config file that names it); valid choices: "
                              f"{', '.join(valid)}")
    overrides.update(parse_override(s) for s in args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    cfg = resolve_config(args.method, args.dataset, args.tuning, overrides)
    if args.seeds is not None and args.seed is not None:
        raise ConfigError(f"--seed {args.seed} and --seeds {args.seeds} together: give one of them")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [check_seed(0 if args.seed is None else args.seed)]
    block = len(seeds) > 1
    if args.out and block and "{seed}" not in args.out:
        raise ConfigError(f"--out {args.out!r} must contain '{{seed}}' with several seeds "
                          "(one result folder per seed), e.g. runs/seed{seed}")
    device = resolve_device(args.device)
    outs = [Path(args.out.replace("{seed}", str(s))) if args.out else default_out(args.method, args.dataset,
                                                                                   args.tuning, s) for s in seeds]
    dtype = dtype_of(cfg)
    splits = [run_generators(s)["split"] for s in seeds]
    data = load_dataset(args.dataset, args.data_root, download=args.download, source=args.source,
                        no_val_set=cfg["no_val_set"], split_generator=splits if block else splits[0],
                        dtype=dtype, device=device)
    options = TrainOptions(device=device, progress=args.progress, keep_checkpoint=args.keep_checkpoint,
                           fast=args.fast, prune=args.source == "real")  # early-stop thresholds: the real datasets'
    summaries = train_runs("seeds" if block else "run", [cfg] * len(seeds), data, seeds, outs, options)
    for out, summary in zip(outs, summaries):
        print(f"{out}: {final_line(summary)}")
    return EXIT_DIVERGED if any(s["status"] == "diverged" for s in summaries) else 0


def final_line(summary: dict) -> str:
    """The run's result in one line, rounded: "finished 1 epoch; test error 5.40 % at best validation; last
    training loss 0.3212; 12.3 s"."""
    n = summary["epochs_run"]
    best, loss = summary.get("test_error_at_best_val"), summary.get("train_loss_last")
    epochs = f"{n} epoch{'' if n == 1 else 's'}"
    parts = [f"finished {epochs}" if summary["status"] == "finished" else f"{summary['status']} after {epochs}",
             "no test error (no validation epoch)" if best is None else f"test error {best:.2f} % at best validation",
             "no training loss" if loss is None else f"last training loss {loss:.4g}",
             f"{summary['wall_time_s']:.1f} s"]
    return "; ".join(parts)


def cmd_download(args) -> int:
    for name in args.dataset:
        d = load_dataset(name, args.data_root, download=args.download, no_val_set=True, dtype=torch.float32)
        print(f"{name}: {d.train_x.shape[0]} training and {d.test_x.shape[0]} test samples in {args.data_root}")
        for file, source in (d.summary_fields()["data_origin"] or {}).items():  # from an installed package
            print(f"  {file}: unpacked from {source}")
    return 0


def cmd_configs(args) -> int:
    print(f"{'DATASET':<14} {'METHOD':<22} TUNINGS")
    for (dataset, method), tunings in sorted(available_configs().items()):
        print(f"{dataset:<14} {method:<22} {' '.join(tunings)}")
    return 0


MAIN_EXAMPLES = """examples:
  tp configs                                             # every (dataset, method, tuning) there is
  tp download --dataset mnist --data-root data           # fetch MNIST into data/MNIST/raw/
  tp train --method ddtp-linear --dataset mnist --epochs 3 --data-root data --download
  tp train --method dfa --dataset mnist --source synthetic --epochs 1   # offline check, no files
  tp search --method ddtp-linear --dataset mnist --trials 200 --block 20 --device cuda   # TPE search

  tp COMMAND --help shows the options of a command.  Exit status: 0 finished (or pruned),
  2 bad input, 3 diverged, 4 dataset missing.
"""

TRAIN_EXAMPLES = """examples:
  tp train --method ddtp-linear --dataset mnist --seed 0 --data-root data --download
  tp train --method bp --dataset cifar10 --tuning train --device cuda
  tp train --method dtpdrl --dataset mnist --seeds 1-10 --device cuda      # 10 seeds, one process
  tp train --method ddtp-linear --dataset cifar10-cnn --tuning alignment   # a Fig. S7 run
  tp train --method bp --dataset mnist --set lr=1e-4 --epochs 3 --out runs/try1
  tp train --config runs/try1/config.yaml --seed 2                        # a run's or a search's config

  Results go to --out (default runs/TUNING/METHOD/DATASET/seedSEED): metrics.csv, summary.json,
  config.yaml.  Running the same command again resumes an interrupted run from its checkpoint.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tp", description="Target propagation toolkit (Meulemans et al., 2020).",
                                epilog=MAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"tp {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one method on one dataset",
                       description="Train one method on one dataset with the paper's final configuration.",
                       epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--method", choices=list(METHODS), metavar="METHOD",
                   help="one of: " + ", ".join(METHODS) + " (required unless --config names it)")
    t.add_argument("--dataset", choices=list(DATASETS), metavar="DATASET",
                   help="one of: " + ", ".join(DATASETS) + " (required unless --config names it)")
    t.add_argument("--config", default=None, metavar="FILE",
                   help="a configuration file (a run's config.yaml, a search's best.yaml); --set goes on top")
    t.add_argument("--tuning", default=None, choices=TUNINGS,
                   help="test: tuned for validation error (Table 1); train: for training loss (Table 2)")
    t.add_argument("--seed", type=int, default=None, help="the run's seed (default 0)")
    t.add_argument("--seeds", default=None, metavar="LIST",
                   help="train several seeds together in one process (replicas), e.g. 1-10 or 1,2,5; "
                        "one result folder per seed (--out must then contain {seed})")
    t.add_argument("--fast", choices=FAST_MODES, default="auto",
                   help="auto: CUDA-graph training steps on a GPU, compiled steps (torch.compile) on a CPU for "
                        "runs of >= 5000 steps, eager elsewhere; graph: require CUDA graphs; compiled: compile the "
                        "CPU steps (eager, with a notice, without a C++ compiler); eager: the reference path")
    t.add_argument("--epochs", type=int, default=None, help="override the configured number of epochs")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto (cuda when available)")
    t.add_argument("--data-root", default="data", help="torchvision root folder of the datasets")
    t.add_argument("--download", action=argparse.BooleanOptionalAction, default=False,
                   help="let torchvision download missing datasets")
    t.add_argument("--source", choices=["real", "synthetic"], default="real",
                   help="synthetic: data of the right shapes generated from a seed (offline checks)")
    t.add_argument("--out", default=None, help="output folder (default runs/TUNING/METHOD/DATASET/seedSEED); "
                                                "{seed} in it is replaced by the seed")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a configuration value (repeatable), e.g. --set lr=1e-4")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: only on a terminal)")
    t.add_argument("--keep-checkpoint", action="store_true", help="keep checkpoint.pt after the run ends")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("download", help="download (or check) datasets into the data root")
    d.add_argument("--dataset", nargs="+", required=True, choices=list(DATASETS), metavar="DATASET",
                   help="one or more of: " + ", ".join(DATASETS))
    d.add_argument("--data-root", default="data")
    d.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="--no-download only checks that the files are there")
    d.set_defaults(func=cmd_download)

    from .search.cli import add_parser as add_search_parser
    add_search_parser(sub)

    c = sub.add_parser("configs", help="list the available (dataset, method, tuning) configurations")
    c.set_defaults(func=cmd_configs)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"tp: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunFolderError as exc:  # busy, unusable or holding a corrupt file (tp.runs.folder)
        print(f"tp: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DatasetNotFoundError as exc:  # missing or damaged (tp.data.integrity)
        print(f"tp: error: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    except KeyboardInterrupt:
        print("tp: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
