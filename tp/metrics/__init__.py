"""The metrics layer: what is measured about a rule's updates, never how a rule learns.

* :mod:`tp.metrics.alignment` — angles between a rule's update and the BP / damped-GNT updates;
* :mod:`tp.metrics.damping` — the paired damping search beside the official one (Table S7).

Imports the networks and the core, never a learning rule (docs/architecture.md, "Layers").
"""
