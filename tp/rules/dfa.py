"""DFA: direct feedback alignment as a target method with fixed random feedback (docs/algorithms.md#dfa,
docs/algorithms.md#dfa-is-ddtp-with-frozen-linear-feedback)."""

from __future__ import annotations

from .direct import DirectFeedbackRule

__all__ = ["DFA"]


class DFA(DirectFeedbackRule):
    """ĥ_i = h_i + Q_i(ĥ_L − h_L) = h_i − (β/B) Q_i e with random Q_i ∈ ℝ^{n_i×n_L} that are never
    trained (no pre-training, no feedback loss).  As in the official ``DMLPDTP2`` network the last hidden
    layer has no bias (docs/algorithms.md#no-bias-in-the-last-hidden-layer).  β = 1 in every DFA configuration."""

    name = "dfa"
    paper_name = "DFA"
    hyperparameters = {"target_stepsize": 1.0}
    trains_feedback = False
    feedback_loss = None
    last_hidden_bias = False
