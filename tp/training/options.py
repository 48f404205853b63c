"""How runs train — everything but the configuration, the data, the seeds and the result folders — as one
typed, checked object, :class:`TrainOptions`, which every training entry takes (:mod:`tp.training.api`).

    from tp.training import TrainOptions, train
    summary = train(cfg, data, seed, "runs/x", TrainOptions(device="cuda", fast="eager"))
    summary = train(cfg, data, seed, "runs/x", device="cuda", fast="eager")  # the same
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from ..errors import ConfigError, unknown
from ..nets.interface import LOSSES
from .hooks import Hook

__all__ = ["FAST_MODES", "TrainOptions", "log_to_stderr"]

#: ``auto``: CUDA-graph steps on a CUDA device (:mod:`tp.core.fast`), compiled steps on the CPU for runs long enough
#: to pay for the compile (:mod:`tp.training.compiled`, :data:`COMPILE_MIN_STEPS`); ``graph``: CUDA graphs, an
#: error elsewhere; ``compiled``: compiled CPU steps (an error on CUDA; eager, with a notice, where compiling is
#: not possible); ``eager``: the reference path everywhere
FAST_MODES = ("auto", "graph", "compiled", "eager")


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TrainOptions:
    """How a run (or a block of seeds or trials) trains.  Checked when made: a bad value is a
    :class:`tp.errors.ConfigError` naming it and the valid choices."""

    device: torch.device | str = "cpu"
    loss: str = "cross_entropy"  # the output loss ℒ (tp.nets.interface.LOSSES)
    fast: str = "auto"  # FAST_MODES
    progress: bool | None = None  # progress bar; None: only on a terminal
    log: Callable[[str], None] = log_to_stderr  # the loop's messages
    on_epoch_end: Callable[[int], None] | None = None  # after each training epoch's checkpoints (a test hook)
    keep_checkpoint: bool = False  # keep the final checkpoint beside the summary
    prune: bool = True  # the official early stop (its thresholds are calibrated for the real datasets)
    hooks: Sequence[Hook] = ()  # besides those the configuration asks for (tp.training.hooks)
    graphs: bool = field(init=False, default=False)  # derived: the steps run as CUDA graphs
    compiled: bool = field(init=False, default=False)  # derived: the CPU steps may run compiled (auto: long runs)

    def __post_init__(self):
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"bad device {self.device!r}: {exc}") from None
        if self.fast not in FAST_MODES:
            raise unknown("fast mode", self.fast, FAST_MODES)
        if self.loss not in LOSSES:
            raise unknown("loss", self.loss, LOSSES)
        hooks = tuple(self.hooks)
        bad = [h for h in hooks if not isinstance(h, Hook)]
        if bad:
            raise ConfigError(f"hooks must be tp.training.Hook objects, got {bad[0]!r}")
        graphs = self.fast == "graph" or (self.fast == "auto" and device.type == "cuda")
        if graphs:
            from ..core.fast import graphs_available
            if not graphs_available(device):
                raise ConfigError(f"fast mode 'graph' needs a CUDA device, got {device}; use fast 'eager' or "
                                  "'auto'")
        if self.fast == "compiled" and device.type != "cpu":
            raise ConfigError(f"fast mode 'compiled' is the CPU path, got device {device}; use fast 'graph', "
                              "'auto' or 'eager'")
        compiled = self.fast == "compiled" or (self.fast == "auto" and device.type == "cpu")
        for name, value in (("device", device), ("hooks", hooks), ("graphs", graphs), ("compiled", compiled),
                            ("log", self.log or log_to_stderr)):
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, options: TrainOptions | None, values: Mapping[str, Any]) -> TrainOptions:
        """``options`` with ``values`` (keyword arguments of a training entry) set: the entries accept
        either, or both."""
        if options is not None and not isinstance(options, cls):
            raise ConfigError(f"options must be a TrainOptions, got {options!r} (give a device as "
                              "device=..., or TrainOptions(device=...))")
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        for key in values:
            if key not in names:
                raise unknown("training option", key, names)
        return dataclasses.replace(options or cls(), **values)
