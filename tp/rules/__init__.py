"""The learning rules, selectable by name from one explicit registry.

Adding a rule: one module with a :class:`~tp.rules.base.Rule` subclass and one line in ``REGISTRY``.
"""

from __future__ import annotations

from typing import Any

from .base import REQUIRED, HyperparameterError, Rule, StepResult
from .bp import BP, backprop_gradients
from .cnn import CNNBP, CNNDDTPControl, CNNDDTPLinear, CNNDFA
from .ddtp import DDTPControl, DDTPLinear
from .ddtp_rhl import DDTPRHL, DDTPRHLRec
from .dfa import DFA
from .dtp import DTP, DTPDRL
from .gnt import GNT

__all__ = ["REGISTRY", "make_rule", "rule_class", "available_rules", "rules_for_model", "Rule", "StepResult",
           "HyperparameterError", "REQUIRED", "backprop_gradients"]

#: rule name -> class.  Names are the project's slugs; ``paper_name`` is the paper's; ``model`` says which
#: network the rule trains ("mlp": tp.MLP, "cnn": tp.cnn.ConvNet).
REGISTRY: dict[str, type[Rule]] = {
    "bp": BP,
    "dfa": DFA,
    "dtp": DTP,
    "dtpdrl": DTPDRL,
    "ddtp-linear": DDTPLinear,
    "ddtp-rhl": DDTPRHL,
    "ddtp-rhl-rec": DDTPRHLRec,
    "ddtp-control": DDTPControl,
    "gnt": GNT,
    # the CIFAR-10 CNN of SPEC §8 (network tp.cnn.ConvNet, ``model = "cnn"``; no replica dimension)
    "bp-cnn": CNNBP,
    "dfa-cnn": CNNDFA,
    "ddtp-linear-cnn": CNNDDTPLinear,
    "ddtp-control-cnn": CNNDDTPControl,
}


class UnknownRuleError(KeyError, ValueError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def available_rules() -> list[str]:
    return list(REGISTRY)


def rules_for_model(model: str) -> list[str]:
    """Names of the registered rules that train the network ``model`` ("mlp" or "cnn")."""
    models = sorted({cls.model for cls in REGISTRY.values()})
    if model not in models:
        raise UnknownRuleError(f"unknown model {model!r}; valid choices: {', '.join(models)}")
    return [name for name, cls in REGISTRY.items() if cls.model == model]


def rule_class(name: str) -> type[Rule]:
    """The class registered under ``name``; an unknown name is an error listing the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownRuleError(f"unknown rule {name!r}; valid choices: {', '.join(REGISTRY)}") from None


def make_rule(name: str, **hyperparameters: Any) -> Rule:
    """Build the rule ``name`` with its hyperparameters (see each class's ``hyperparameters``)."""
    return rule_class(name)(**hyperparameters)
