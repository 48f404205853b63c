"""DDTP-RHL and DDTP-RHL (rec): direct nonlinear feedback through a fixed random hidden layer
(docs/algorithms.md#ddtp-rhl, docs/algorithms.md#ddtp-rhl-rec-and-the-extra-fb-variants; paper eq. 63–66)."""

from __future__ import annotations

from .base import REQUIRED
from .direct import DirectFeedbackRule

__all__ = ["DDTPRHL", "DDTPRHLRec"]


class DDTPRHL(DirectFeedbackRule):
    """g_i(z) = ψ(Q_i s(z) + d_i) with the fixed random layer s(z) = tanh(R z + r) (width
    ``size_hidden_fb`` = m; R, r never trained) and ψ = ``fb_activation`` (tanh in every config).  The last
    hidden layer bypasses the random layer: g_{L−1}(z) = ψ(Q_{L−1} z + d_{L−1})
    (docs/algorithms.md#the-last-hidden-layer-of-ddtp-rhl-skips-the-random-layer).  Trained with
    the DRL."""

    name = "ddtp-rhl"
    paper_name = "DDTP-RHL"
    hyperparameters = {"target_stepsize": REQUIRED, "sigma": REQUIRED, "size_hidden_fb": 1024,
                       "fb_activation": "tanh"}
    trains_feedback = True
    feedback_loss = "drl"
    random_layer = True
    networks = ("mlp",)  # the paper trains the RHL variants on the fully connected network only


class DDTPRHLRec(DDTPRHL):
    """As DDTP-RHL, but g_i of the hidden layers i ≤ L−2 also reads the layer's own *clean* activation:
    g_i(z; h_i) = ψ(Q_i [s(z); h_i] + d_i), Q_i ∈ ℝ^{n_i×(m+n_i)} (paper eq. 63–66,
    docs/algorithms.md#ddtp-rhl-rec-and-the-extra-fb-variants)."""

    name = "ddtp-rhl-rec"
    paper_name = "DDTP-RHL (rec)"
    recurrent_input = True
