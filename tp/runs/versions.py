"""What a run records about the code that made it, read by training (to write and to resume a run) and by the
audit of the tables (:mod:`tp.runs.audit`) alike: the numerics version, the step paths proven equal to the
eager reference, the configuration keys added after runs were committed, the mark of a dirty checkout.

Training imports these facts from here, not from the audit: resuming a run needs what a recorded configuration
means (:func:`with_later_keys`), not the tables' checks.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["NUMERICS_VERSION", "STEP_PATHS", "KEYS_ADDED_LATER", "DIRTY", "with_later_keys"]

#: Version of the mathematics of a training run: its formulas, schedules and data splits.  Bump it with every
#: change that would change a result beyond rounding and say so in the commit; runs of different versions are
#: never averaged together.  Execution paths that the tests prove to compute the same mathematics as the eager
#: reference (:data:`STEP_PATHS`: fused or compiled kernels, another reduction order, thread count or device;
#: values and Adam moments within 1e-10 relative per step, docs/pipeline.md) change rounding only and share the
#: version; their runs average together and the tables name the
#: paths and devices a cell mixes (docs/pipeline.md, "Numerics versions").
#: Version 1: every commit up to the one that introduced this field (229eae3 and earlier; their summaries
#: have no ``numerics_version``), and every later one so far.
NUMERICS_VERSION = 1
#: the step paths tested equal to the eager reference within rounding (a summary's
#: ``step_path``, "+"-joined when a resumed run used several; summaries without it: eager):
#: ``eager`` (the reference), ``compiled`` (tp.training.compiled, tests/test_compiled.py), ``cuda-graph``
#: (tp.core.fast; benchmarks/step_speed.py on the GPU) and ``graph-emulated`` (its CPU emulation, tests/test_fast.py)
STEP_PATHS = ("eager", "compiled", "cuda-graph", "graph-emulated")
#: Configuration keys added after runs were committed → the value a recorded configuration without the key
#: means (what those runs did, in today's terms).  A run folder's ``config.yaml``, its summary's ``config``
#: and its checkpoint's configuration are read through :func:`with_later_keys`, so the audit and resuming
#: accept the runs made before the key existed.  Add a key here only when its absence has exactly that
#: meaning: the value must not change any number those runs recorded.
KEYS_ADDED_LATER: dict[str, Any] = {
    # issue 23: minibatches of the paired damping search (tp.metrics.damping); null = every full minibatch of one
    # epoch.  Runs recorded without it either never search (every tuning but ``damping``) or are damping
    # searches made before the paired search existed, whose official numbers (damping_search.csv) are what
    # today's code writes; their folders simply have no damping_paired.csv.
    "damping_paired_batches": None,
    # issue 38: the λ up to which the paired damping search may extend its grid when a layer's minimum is the
    # grid's top (tp.metrics.damping, "Grid edges"); null = no extension, what every search before the key did.
    "damping_paired_extend_to": None,
    # issue 22: DDTP-GGN's Hessian damping δ (only the rule ddtp-ggn reads it: no recorded run used it) and the
    # GGN angles of the alignment logging (off: those runs logged BP and GNT angles only).
    "hessian_damping": 0.0,
    "log_alignment_ggn": False,
    # the angles with the damped GGN update of H + δP (null: not logged; the first GGN alignment runs lacked it)
    "alignment_hessian_damping": None,
}
#: suffix of a code version made from a checkout with uncommitted changes (tp.training.records.code_version)
DIRTY = "+dirty"


def with_later_keys(cfg: Mapping) -> dict:
    """``cfg`` with every key of :data:`KEYS_ADDED_LATER` it lacks set to the value its absence means."""
    return {**dict(cfg), **{k: v for k, v in KEYS_ADDED_LATER.items() if k not in cfg}}
