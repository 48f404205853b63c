"""The core layer: tensor infrastructure that knows no network, rule or configuration.

* :mod:`tp.core.random` — draws from explicit generators, one per replica;
* :mod:`tp.core.replicas` — rule hyperparameters with one value per replica (``per_replica``);
* :mod:`tp.core.optim` — Adam with PyTorch's semantics on a dict of tensors;
* :mod:`tp.core.runtime` — the device and precision a run computes in (TF32 off on CUDA);
* :mod:`tp.core.fast` — a minibatch step captured as a CUDA graph (emulated on the CPU for tests).

Imports nothing of ``tp`` but :mod:`tp.errors` (docs/architecture.md, "Layers").
"""
