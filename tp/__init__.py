"""tp — target propagation research toolkit (Meulemans et al., NeurIPS 2020).

The small public API::

    net = rule.build_network(sizes)          # tp.MLP, float64, the rule's official bias layout
    params = net.init_params(generator)      # dict of forward parameters W1, b1, …
    fb = rule.init_feedback(net, generator)  # dict of feedback parameters Q1, d1, …
    out = rule.step(net, params, fb, x, y, generator=generator)
    out.forward_grads, out.feedback_grads, out.targets

See the README for an example and ``tp.rules.REGISTRY`` for the rules.
"""

from .errors import ConfigError, HyperparameterError
from .nets.activations import ACTIVATIONS, Activation, get_activation
from .nets.gauss_newton import damped_gn_displacement, gn_displacements, output_jacobians
from .nets.mlp import MLP, Forward
from .nets.targets import difference_target_chain, local_loss_gradients, output_target
from .rules import REGISTRY, Rule, StepResult, available_rules, make_rule

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "Activation", "get_activation", "MLP", "Forward", "REGISTRY", "Rule", "StepResult",
    "ConfigError", "HyperparameterError", "available_rules", "make_rule", "output_target", "difference_target_chain",
    "local_loss_gradients", "output_jacobians", "damped_gn_displacement", "gn_displacements",
]
