"""The progress bar of a run: one bar per epoch over its minibatches ("epoch 3/100", "pre-training 2/6"),
its postfix the running loss.  The loss is read from the device at most every ``READ_EVERY`` minibatches
(and at the end of the epoch), so the graphed GPU path does not synchronise every step.  Off (``None``
everywhere) when disabled: the loop then logs one line per epoch instead."""

from __future__ import annotations

import sys

from .steps import OnMinibatch

__all__ = ["READ_EVERY", "Progress", "use_progress_bar"]

READ_EVERY = 50


def use_progress_bar(progress: bool | None) -> bool:
    """``progress``, or by default: only on a terminal."""
    return sys.stderr.isatty() if progress is None else progress


def _fmt(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


class Progress:
    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label, self.bar = enabled, label, None

    def epoch(self, desc: str, total: int, key: str, name: str) -> OnMinibatch | None:
        """Open the bar of one epoch of ``total`` minibatches; the callback that advances it, showing the
        running mean of ``sums[key]`` as ``name`` (None when the bar is off)."""
        if not self.enabled:
            return None
        from tqdm.auto import tqdm
        self.bar = bar = tqdm(total=total, unit="batch", desc=f"{self.label}: {desc}", leave=True)

        def advance(k: int, sums: dict) -> None:
            if (k + 1) % READ_EVERY == 0 or k + 1 == total:  # a host read: not every step
                bar.set_postfix({name: _fmt((sums[key] / (k + 1)).reshape(-1).tolist())}, refresh=False)
            bar.update(1)

        return advance

    def end_epoch(self, **postfix) -> None:
        """Close the epoch's bar, its postfix the epoch's figures (lists of per-replica floats)."""
        if self.bar is not None:
            self.bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)
            self.bar.close()
            self.bar = None
