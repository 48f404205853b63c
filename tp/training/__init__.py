"""The training loop of SPEC §5, in parts (see docs/architecture.md):

* :mod:`.state` — the run state (:class:`Run`, :class:`Record`), its checkpoint format, :func:`build_run`;
* :mod:`.steps` — the training and feedback minibatches and epochs (public: the benchmarks use them);
* :mod:`.loop` — the epoch loop of a block of seeds and its stopping rules (diverged, pruned);
* :mod:`.hooks` — what the loop calls besides training: alignment logging, the damping search;
* :mod:`.evaluation` — loss and accuracy over a split (SPEC §5.4);
* :mod:`.records` — summary, provenance, atomic writes, CSV files;
* :mod:`.resume` — finished seeds, checkpoints, the same-run check;
* :mod:`.progress` — the progress bar;
* :mod:`.api` — :func:`train` and :func:`train_seeds`.
"""

from .api import FAST_MODES, replica_subset, train, train_seeds
from .evaluation import EVAL_BATCH, evaluate
from .hooks import AlignmentLogger, DampingSearch, Hook, damping_search, selected_damping
from .loop import PRUNE_THRESHOLDS, Block, Options, train_block
from .records import (ALIGNMENT, ALIGNMENT_COLUMNS, CHECKPOINT, CONFIG, DAMPING, METRIC_COLUMNS, METRICS, SUMMARY,
                      code_version, device_name)
from .state import GENERATOR_STREAMS, Record, Run, RunDiverged, build_run, run_generators
from .steps import (FEEDBACK_SUMS, TRAIN_SUMS, batches, captured_step, epoch_sums, feedback_epoch,
                    feedback_minibatch, gather, train_epoch, train_minibatch)

__all__ = ["train", "train_seeds", "FAST_MODES", "run_generators", "code_version", "device_name", "METRIC_COLUMNS",
           "ALIGNMENT_COLUMNS", "PRUNE_THRESHOLDS", "RunDiverged", "GENERATOR_STREAMS",
           "CHECKPOINT", "SUMMARY", "METRICS", "CONFIG", "ALIGNMENT", "DAMPING",
           "EVAL_BATCH", "evaluate", "damping_search", "selected_damping", "Hook", "AlignmentLogger",
           "DampingSearch", "Run", "Record", "build_run", "Options", "Block", "train_block", "replica_subset",
           "TRAIN_SUMS", "FEEDBACK_SUMS", "batches", "gather", "train_minibatch", "feedback_minibatch", "epoch_sums",
           "captured_step", "train_epoch", "feedback_epoch"]
