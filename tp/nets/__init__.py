"""The networks layer: the maths of networks and targets, in plain tensor algebra.

* :mod:`tp.nets.interface` — the network interface ``Network`` that rules, metrics and Gauss–Newton use,
  ``Losses``, ``Forward``;
* :mod:`tp.nets.mlp` — the fully connected network (``MLP``); :mod:`tp.nets.cnn` — the CIFAR-10 CNN
  (``ConvNet``), with :mod:`tp.nets.conv` (convolution and max-pool with a replica axis);
* :mod:`tp.nets.activations` — element-wise activations with their derivatives;
* :mod:`tp.nets.targets` — output targets, the difference-corrected target chain, the local layer loss;
* :mod:`tp.nets.gauss_newton` — ideal damped Gauss–Newton targets and displacements.

Imports only the core and :mod:`tp.errors` (docs/architecture.md, "Layers").
"""
