"""Wall time per training epoch of real ``tp`` training runs (everything an epoch does: shuffling, every
minibatch step, extra feedback epochs, evaluation of the validation and test sets, the checkpoint).

Each cell ``METHOD:DATASET[:TUNING]`` is trained for ``--epochs`` epochs through ``tp.training.train_runs``
(one seed, or ``--seeds`` trained together) on the real data (``--source real``) or on synthetic data of
the real sizes (``--source synthetic``: 50,000/60,000 training and 10,000 test samples of the dataset's
shape, for machines without the dataset).  The first epoch includes one-off costs (CUDA-graph capture,
cuBLAS/cuDNN start-up); ``s_epoch`` is the median of the later epochs when there are any.

    python benchmarks/epoch_times.py --cells bp:mnist,ddtp-linear:mnist --epochs 2 --device cuda --csv t.csv
    python benchmarks/epoch_times.py --cells ddtp-linear:cifar10-cnn --source synthetic --epochs 1
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tp.cli import parse_seeds  # noqa: E402
from tp.config import parse_override, resolve_config  # noqa: E402
from tp.data import load_dataset  # noqa: E402
from tp.core.runtime import dtype_of, resolve_device  # noqa: E402
from tp.training import TrainOptions, run_generators, train_runs  # noqa: E402

SIZES = {"mnist": (60000, 10000), "frozen-mnist": (60000, 10000), "fashion-mnist": (60000, 10000),
         "cifar10": (50000, 10000), "cifar10-cnn": (50000, 10000)}
COLUMNS = ["method", "dataset", "tuning", "seeds", "fast", "source", "device", "epochs", "s_first_epoch",
           "s_epoch", "s_wall", "status", "step_path", "test_error_last", "train_loss_last"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", required=True, help="comma-separated METHOD:DATASET[:TUNING]")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seeds", default="1")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--fast", default="auto")
    p.add_argument("--source", default="real", choices=["real", "synthetic"])
    p.add_argument("--data-root", default="data")
    p.add_argument("--sizes", default=None, metavar="N_TRAIN,N_TEST",
                   help="synthetic training/test samples (default: the real dataset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    device = resolve_device(args.device)  # TF32 off on CUDA
    seeds = parse_seeds(args.seeds)
    sizes = tuple(int(v) for v in args.sizes.split(",")) if args.sizes else None
    rows = []
    for cell in args.cells.split(","):
        method, dataset, *rest = cell.split(":")
        tuning = rest[0] if rest else "test"
        cfg = resolve_config(method, dataset, tuning, {**dict(parse_override(s) for s in args.set),
                                                       "epochs": args.epochs})
        dtype = dtype_of(cfg)
        splits = [run_generators(s)["split"] for s in seeds]
        data = load_dataset(dataset, args.data_root, source=args.source, no_val_set=cfg["no_val_set"],
                            split_generator=splits if len(seeds) > 1 else splits[0], dtype=dtype, device=device,
                            synthetic_sizes=sizes or SIZES[dataset],
                            val_size=min(5000, (sizes or SIZES[dataset])[0] // 6))
        with tempfile.TemporaryDirectory() as tmp:
            outs = [Path(tmp) / f"seed{s}" for s in seeds]
            t0 = time.perf_counter()
            options = TrainOptions(device=device, progress=False, fast=args.fast, prune=False,
                                   log=lambda m: print(m, flush=True))
            summaries = train_runs("seeds" if len(seeds) > 1 else "run", [cfg] * len(seeds), data, seeds, outs,
                                   options)
            wall = time.perf_counter() - t0
            with open(outs[0] / "metrics.csv") as f:
                seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
        s = summaries[0]
        row = {"method": method, "dataset": dataset, "tuning": tuning, "seeds": args.seeds, "fast": args.fast,
               "source": args.source, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
               else "cpu", "epochs": len(seconds), "s_first_epoch": seconds[0] if seconds else None,
               "s_epoch": statistics.median(seconds[1:]) if len(seconds) > 1 else (seconds[0] if seconds else None),
               "s_wall": round(wall, 3), "status": s["status"], "step_path": s["step_path"],
               "test_error_last": s["test_error_last"], "train_loss_last": s["train_loss_last"]}
        rows.append(row)
        print("RESULT " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
