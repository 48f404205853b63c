"""The learning rules, selectable by name from one explicit registry.

Adding a rule: one module with a :class:`~tp.rules.base.Rule` subclass and one line in ``REGISTRY``.
"""

from __future__ import annotations

from typing import Any

from ..errors import unknown
from .base import REQUIRED, Rule, StepResult
from .bp import BP, backprop_gradients
from .ddtp import DDTPControl, DDTPLinear
from .ddtp_ggn import DDTPGGN
from .ddtp_rhl import DDTPRHL, DDTPRHLRec
from .dfa import DFA
from .dtp import DTP, DTPDRL
from .ggnt import GGNT
from .gnt import GNT

__all__ = ["REGISTRY", "make_rule", "rule_class", "available_rules", "rules_for_model", "Rule", "StepResult",
           "REQUIRED", "backprop_gradients"]

#: rule name -> class.  Names are the project's slugs; ``paper_name`` is the paper's; ``networks`` says which
#: networks the rule trains ("mlp": tp.MLP, "cnn": tp.nets.cnn.ConvNet) — the same rule object on either.
REGISTRY: dict[str, type[Rule]] = {
    "bp": BP,
    "dfa": DFA,
    "dtp": DTP,
    "dtpdrl": DTPDRL,
    "ddtp-linear": DDTPLinear,
    "ddtp-rhl": DDTPRHL,
    "ddtp-rhl-rec": DDTPRHLRec,
    "ddtp-control": DDTPControl,
    "ddtp-ggn": DDTPGGN,
    "gnt": GNT,
    "ggnt": GGNT,
}


def available_rules() -> list[str]:
    return list(REGISTRY)


def rules_for_model(model: str) -> list[str]:
    """Names of the registered rules that train the network ``model`` ("mlp" or "cnn")."""
    models = sorted({m for cls in REGISTRY.values() for m in cls.networks})
    if model not in models:
        raise unknown("network", model, models)
    return [name for name, cls in REGISTRY.items() if model in cls.networks]


def rule_class(name: str) -> type[Rule]:
    """The class registered under ``name``; an unknown name is an error listing the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown("rule", name, REGISTRY) from None


def make_rule(name: str, **hyperparameters: Any) -> Rule:
    """Build the rule ``name`` with its hyperparameters (see each class's ``hyperparameters``)."""
    return rule_class(name)(**hyperparameters)
