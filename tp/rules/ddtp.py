"""DDTP-linear and DDTP-control: direct linear feedback from the output (docs/algorithms.md#ddtp-linear,
docs/algorithms.md#ddtp-control)."""

from __future__ import annotations

from .base import REQUIRED
from .direct import DirectFeedbackRule

__all__ = ["DDTPLinear", "DDTPControl"]


class DDTPLinear(DirectFeedbackRule):
    """DDTP-linear (paper §3.3): g_i(z) = Q_i z + d_i trained with the difference reconstruction loss
    (DRL, paper eq. 10).  For linear g_i the DRL residual is h_i + Q_i(ỹ − h_L) − h̃_i, so d_i gets a zero
    gradient.  No bias on the last hidden layer (forward and feedback), as in the official code
    (docs/algorithms.md#no-bias-in-the-last-hidden-layer)."""

    name = "ddtp-linear"
    paper_name = "DDTP-linear"
    hyperparameters = {"target_stepsize": REQUIRED, "sigma": REQUIRED}
    trains_feedback = True
    feedback_loss = "drl"
    last_hidden_bias = False


class DDTPControl(DirectFeedbackRule):
    """DDTP-control (paper §4): the same targets as DDTP-linear, but the feedback is trained with the
    control loss mean(g_i(ỹ) − h̃_i)² — no difference correction inside the loss and no 1/σ².  Every layer
    has a bias (the official ``DDTPControl`` network)."""

    name = "ddtp-control"
    paper_name = "DDTP-control"
    hyperparameters = {"target_stepsize": REQUIRED, "sigma": REQUIRED}
    trains_feedback = True
    feedback_loss = "control"
    last_hidden_bias = True
