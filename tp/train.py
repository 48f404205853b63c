"""The training loop of SPEC §5: one run of one method on one dataset, resumable and observable.

The loop lives in :mod:`tp.training` (one module per part; docs/architecture.md); this module keeps the
public names it always had::

    from tp.train import train, train_seeds, evaluate, run_generators, CHECKPOINT

Per minibatch (SPEC §5.2): forward pass, targets and forward-parameter gradients (not yet applied), then —
for rules with trained feedback — the feedback gradients on the same forward pass with fresh noise and one
feedback Adam step, then the forward Adam step.  Feedback pre-training (``epochs_fb``) runs before training,
``extra_fb_epochs`` feedback-only epochs after every training epoch.  Metrics follow SPEC §5.4 (online
pre-update training averages; evaluation averages per-batch means, so the last, smaller batch weighs like a
full one).  The early stop of SPEC §12.13/§15 ends a run as soon as the training accuracy of an epoch from
the 6th on is below 0.4 (MNIST, Fashion-MNIST) or 0.25 (CIFAR-10): status ``pruned``.

Every random draw comes from generators derived from the run's seed (streams ``init``, ``split``,
``shuffle``, ``noise``), whose states the checkpoint stores: a run interrupted and resumed equals the
uninterrupted run.  NaN/inf in the training loss or the parameters ends the run with status ``diverged``.
The training steps of the TP family, DFA and BP do not synchronise with the host; the loss sums are read
once per epoch.  (Alignment logging, every ``log_interval`` minibatches, and GNT's pseudo-inverse do.)
"""

from .training import (ALIGNMENT, ALIGNMENT_COLUMNS, CHECKPOINT, CONFIG, DAMPING, EVAL_BATCH,
                       FAST_MODES, GENERATOR_STREAMS, METRIC_COLUMNS, METRICS, PRUNE_THRESHOLDS,
                       SUMMARY, Hook, RunDiverged, code_version, damping_search, device_name, evaluate,
                       run_generators, selected_damping, train, train_seeds)

__all__ = ["train", "train_seeds", "FAST_MODES", "run_generators", "code_version", "METRIC_COLUMNS", "PRUNE_THRESHOLDS",
           "RunDiverged", "GENERATOR_STREAMS", "Hook", "evaluate", "damping_search", "selected_damping", "device_name",
           "ALIGNMENT_COLUMNS", "CHECKPOINT", "SUMMARY", "METRICS", "CONFIG", "ALIGNMENT",
           "DAMPING", "EVAL_BATCH"]
