"""The fast path of the training loop on CUDA: a whole minibatch step captured once as a CUDA graph.

On a GPU the eager step of a TP rule is bound by Python and kernel-launch overhead, not by arithmetic
(hundreds of small kernels per minibatch of 128).  :class:`CapturedStep` records the *same* step function
the eager loop runs (gather of the minibatch from the device-resident data, forward pass, the rule's
targets and updates, the feedback step, both Adam steps, the running loss sums) into one CUDA graph over
static buffers and replays it for every full minibatch: one host call per step, no host
synchronisation inside an epoch.

What makes the step capturable:

* the data stay on the device and a step reads its minibatch through a static index buffer
  (``idx.copy_`` then ``replay``);
* Adam's step count and bias corrections are device tensors (:class:`tp.core.optim.Adam` ``capturable=True``);
* the feedback noise comes from the run's own CUDA generators, registered with the graph
  (``register_generator_state``): every replay advances each generator exactly as the eager step would,
  so a graphed run draws the same noise as an eager one and eager steps (the last, smaller minibatch;
  alignment logging) can be interleaved with replays;
* the per-step host bookkeeping (step counters) is recorded at capture and re-applied per replay.

On a CPU (where CUDA graphs do not exist) :class:`CapturedStep` *emulates* a graph — the same snapshot,
warm-up and restore protocol, and a replay that re-runs the step — so the tests check the protocol and the
loop's use of it on any machine; the training loop itself only takes this path on CUDA devices.

Capture needs two warm-up executions of the step; :class:`CapturedStep` snapshots every tensor the step
mutates, the generator states and the host counters first and restores them afterwards, so capturing
changes nothing about the run.  The eager path stays the reference: ``benchmarks/step_speed.py`` compares
graphed against eager training on the GPU.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["CapturedStep", "graphs_available"]


def graphs_available(device: torch.device) -> bool:
    """CUDA graphs need a CUDA device."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


class CapturedStep:
    """``step(idx)`` captured as a CUDA graph for one index shape.

    Args:
        fn: the step; reads its minibatch through the index tensor it is given and mutates state in place.
        idx_example: an index tensor of the shape (and device) the graph is for.
        state: every tensor ``fn`` mutates in place (parameters, optimiser moments and step counts, sums).
        generators: the CUDA generators ``fn`` draws from.
        counters: ``(object, attribute)`` pairs of host integers ``fn`` advances (step counters); one replay
            advances them by what one execution did.
        warmup: executions before capture (cuBLAS handles and workspaces are created outside the graph).
    """

    def __init__(self, fn: Callable[[Tensor], None], idx_example: Tensor, state: Sequence[Tensor],
                 generators: Sequence[torch.Generator], counters: Sequence[tuple[object, str]], warmup: int = 2):
        self.idx = idx_example.clone()
        self.counters = [(obj, name) for obj, name in counters if obj is not None]
        state = list(state)
        saved = [t.clone() for t in state]
        gen_states = [g.get_state() for g in generators]
        before = [getattr(o, n) for o, n in self.counters]

        def restore():
            for (o, n), v in zip(self.counters, before):
                setattr(o, n, v)
            with torch.no_grad():
                for t, s in zip(state, saved):
                    t.copy_(s)
            for g, s in zip(generators, gen_states):
                # only where it moved: a generator registered with a graph keeps its state object
                if not torch.equal(g.get_state(), s):
                    g.set_state(s)

        self.fn = fn
        self.emulated = self.idx.device.type != "cuda"
        self.graph = None
        try:  # whatever happens (a failed warm-up or capture too), the run is left as it was
            if self.emulated:
                # the CPU stand-in (tests): the same snapshot, warm-up and restore protocol; replay re-runs fn
                for _ in range(warmup + 1):
                    fn(self.idx)
            else:
                self._capture(fn, warmup, generators, restore)
                self.delta = [getattr(o, n) - v for (o, n), v in zip(self.counters, before)]
        finally:
            if not self.emulated and torch.cuda.is_available():
                torch.cuda.synchronize(self.idx.device)
            restore()

    def _capture(self, fn, warmup: int, generators, restore) -> None:
        side = torch.cuda.Stream(device=self.idx.device)
        side.wait_stream(torch.cuda.current_stream(self.idx.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(self.idx)
        torch.cuda.current_stream(self.idx.device).wait_stream(side)
        torch.cuda.synchronize(self.idx.device)
        restore()
        self.graph = torch.cuda.CUDAGraph()
        for g in generators:
            self.graph.register_generator_state(g)
        with torch.cuda.graph(self.graph):
            fn(self.idx)

    def __call__(self, idx: Tensor) -> None:
        """One step on the minibatch ``idx`` (same shape as at capture)."""
        self.idx.copy_(idx, non_blocking=True)
        if self.emulated:
            self.fn(self.idx)
            return
        self.graph.replay()
        for (o, n), d in zip(self.counters, self.delta):
            setattr(o, n, getattr(o, n) + d)
