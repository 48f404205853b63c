"""The training loop of docs/algorithms.md#the-training-schedule, in parts (see docs/architecture.md):

* :mod:`.options` — :class:`TrainOptions`, how runs train (device, fast path, logging, hooks, …);
* :mod:`.api` — the one training entry :func:`train_runs` and its wrappers :func:`train` (one run),
  :func:`train_seeds` (seeds as replicas) and :func:`train_trials` (a block of trials, :mod:`.trials`);
* :mod:`.state` — the run (:class:`Run`: its checkpointed state, :class:`Record` per seed, the per-step
  :class:`StepContext`), its checkpoint format, :func:`build_run`;
* :mod:`.steps` — the training and feedback minibatches and epochs (public: the benchmarks use them);
* :mod:`.loop` — the epoch loop of a block of seeds: train → evaluate → metrics row → verdict (diverged,
  pruned, finished) → persist;
* :mod:`.hooks` — what the loop calls besides training: alignment logging, the damping search (official
  and paired);
* :mod:`.evaluation` — loss and accuracy over a split (docs/algorithms.md#what-a-run-reports);
* :mod:`.records` — summary, provenance, atomic writes, CSV files;
* :mod:`.resume` — finished seeds, checkpoints, the same-run check;
* :mod:`.progress` — the progress bar.
"""

from .api import KINDS, check_job, replica_subset, train, train_runs, train_seeds, train_trials
from .evaluation import EVAL_BATCH, evaluate
from .hooks import AlignmentLogger, DampingSearch, Hook, damping_search, paired_damping_search, selected_damping
from .loop import PRUNE_THRESHOLDS, Block, train_block
from .options import FAST_MODES, TrainOptions
from .records import (ALIGNMENT, ALIGNMENT_COLUMNS, CHECKPOINT, CONFIG, DAMPING, DAMPING_PAIRED, METRIC_COLUMNS,
                      METRICS, SUMMARY, code_version, device_name)
from .state import GENERATOR_STREAMS, Record, Run, RunDiverged, StepContext, build_run, run_generators
from .steps import (FEEDBACK_SUMS, TRAIN_SUMS, batches, captured_step, epoch_sums, feedback_epoch,
                    feedback_minibatch, gather, train_epoch, train_minibatch)
from .trials import PER_REPLICA_KEYS, check_trial_configs

__all__ = ["train", "train_seeds", "train_trials", "train_runs", "KINDS", "check_job", "TrainOptions",
           "PER_REPLICA_KEYS", "check_trial_configs", "StepContext", "FAST_MODES", "run_generators", "code_version",
           "device_name", "METRIC_COLUMNS",
           "ALIGNMENT_COLUMNS", "PRUNE_THRESHOLDS", "RunDiverged", "GENERATOR_STREAMS",
           "CHECKPOINT", "SUMMARY", "METRICS", "CONFIG", "ALIGNMENT", "DAMPING", "DAMPING_PAIRED",
           "EVAL_BATCH", "evaluate", "damping_search", "paired_damping_search", "selected_damping", "Hook",
           "AlignmentLogger",
           "DampingSearch", "Run", "Record", "build_run", "Block", "train_block", "replica_subset",
           "TRAIN_SUMS", "FEEDBACK_SUMS", "batches", "gather", "train_minibatch", "feedback_minibatch", "epoch_sums",
           "captured_step", "train_epoch", "feedback_epoch"]
