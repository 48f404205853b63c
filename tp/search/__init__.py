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
  (docs/algorithms.md#the-early-stop) is told as PRUNED with its per-epoch objective values as intermediate values.
* Resume: a trial left RUNNING by a process that died (same host: its PID is gone; another host: no heartbeat
  — sent every minute while it trains — for ``stale_after`` seconds) is marked FAILED and asked again with the
  same values in the same folder, so its training resumes from the checkpoint there.  A worker whose share is
  done waits for the trials other workers still train (and takes over those whose worker died).
* A study remembers the fixed values it was made with (overrides, seed, search space): a later call with
  others is an error, so incomparable trials never mix.
* Outputs (:func:`tp.search_outputs.write_outputs`): ``trials.csv``, ``best.yaml``, ``history.{png,pdf}``,
  ``importances.{png,pdf}``.
"""

from .loop import TrainBlock, TrialReporter, check_search, run_search
from .outputs import write_outputs
from .settings import EPOCH_COLUMN, OBJECTIVES, SearchSettings, objective_of
from .space import KINDS, Param, load_space, space_path, suggest
from .study import open_study, recover_orphans

__all__ = ["SearchSettings", "OBJECTIVES", "EPOCH_COLUMN", "open_study", "recover_orphans", "run_search",
           "check_search", "write_outputs", "objective_of", "TrainBlock", "TrialReporter", "Param", "KINDS",
           "load_space", "space_path", "suggest"]
