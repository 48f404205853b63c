"""The data layer: datasets as device tensors and the files they come from.

* :mod:`tp.data.datasets` — MNIST, Fashion-MNIST, CIFAR-10 and synthetic data as tensors, preprocessing,
  validation and replica splits (``DataSplits``), the student–teacher data of the toy experiments;
* :mod:`tp.data.formats` — one class per file format (where the files are, which they are, their checks,
  the torchvision reader);
* :mod:`tp.data.integrity` — atomic checked unpacking, IDX header and size checks, SHA-256 provenance;
* :mod:`tp.data.packages` — files an operating-system package installs (Debian/Ubuntu's
  ``dataset-fashion-mnist``).

Imports the catalog, the core and the networks (the synthetic teacher is an MLP), never configuration,
rules or training (docs/architecture.md, "Layers").  The public names of :mod:`tp.data.datasets` are this
package's API: ``from tp.data import load_dataset``.
"""

from .datasets import (DatasetCorruptError, DatasetNotFoundError, DataSplits, dataset_files, load_dataset,
                       student_teacher, synthetic_classification, validation_split)

__all__ = ["DataSplits", "load_dataset", "student_teacher", "DatasetNotFoundError", "DatasetCorruptError",
           "synthetic_classification", "validation_split", "dataset_files"]
