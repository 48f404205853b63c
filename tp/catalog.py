"""The catalog: the facts about the paper's datasets, methods and tunings, written once.

Everything that lists or describes them reads this module: :mod:`tp.config` (``METHODS``, ``DATASETS``,
``TUNINGS``, a dataset's network), :mod:`tp.data` (files, image shape, normalisation, sizes), the
training loop (the pruning threshold) and the pipeline (``workflow/rules/common.smk``; the method and
dataset enumerations of ``workflow/schemas/config.schema.yaml`` equal these, ``tests/test_catalog.py``).
Adding a dataset or a method is one entry here plus its configurations in ``tp/configs/``.

* :data:`FILES`: the image datasets on disk (torchvision class, image shape, normalisation, sizes;
  docs/algorithms.md#preprocessing), and the operating-system package that installs a dataset's files, if one does
  (:class:`SystemPackage`).
* :data:`DATASETS`: the tables' columns.  A dataset names the files it reads (Frozen-MNIST reads MNIST,
  docs/algorithms.md#frozen-mnist; ``cifar10-cnn`` reads CIFAR-10 as images for the CNN of
  docs/algorithms.md#the-cnn-table-3) and the network it trains.
* :data:`METHODS`: the tables' rows: a learning rule (``tp.rules.REGISTRY``) and its training schedule; and the
  methods the paper derives but never ran (``beyond_paper``: DDTP-GGN and GGNT of its Appendix D).
* :data:`TUNINGS`: which configuration of a (method, dataset) a run uses; ``damping`` (Table S7) is the
  ``alignment`` configuration with the damping search switched on (``tp/configs/defaults.yaml``) after
  ``damping_search_after`` epochs; ``ggn`` (beyond the paper) is the ``alignment`` configuration over its
  first epochs with the damped-GGN angles logged too.
* :data:`MODELS`: the networks (the CNN's fixed number of hidden layers); :data:`PRUNE_FROM_EPOCH`: the epoch
  from which the official early stop applies (each dataset has its threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import unknown

__all__ = ["SystemPackage", "ImageFiles", "Dataset", "Method", "Objective", "Tuning", "Model", "CellNote", "CELL_NOTES", "FILES", "DATASETS", "METHODS", "TUNINGS",
           "MODELS", "PRUNE_FROM_EPOCH", "dataset", "method", "tuning", "model", "figure_label"]

#: the official early stop (docs/algorithms.md#the-early-stop) looks at the training accuracy from this epoch on
#: (1-based)
PRUNE_FROM_EPOCH = 6


@dataclass(frozen=True)
class SystemPackage:
    """An operating-system package that installs a dataset's files into fixed, read-only folders; tp reads them
    from there when the data root lacks them (:mod:`tp.data.packages`)."""

    name: str  # the package
    folders: tuple[str, ...]  # absolute folders where it puts the files, the first found used
    distributions: str = "Debian/Ubuntu"
    installer: str = "apt-get install"

    @property
    def install(self) -> str:
        """The command that installs it: ``apt-get install dataset-fashion-mnist``."""
        return f"{self.installer} {self.name}"


@dataclass(frozen=True)
class ImageFiles:
    """An image dataset on disk, read through ``torchvision.datasets`` (docs/algorithms.md#preprocessing)."""

    name: str  # slug of the files (the data/ download name)
    torchvision_class: str
    shape: tuple[int, int, int]  # one image (C, H, W)
    mean: float | None  # Normalize after ToTensor (None: ToTensor only)
    std: float | None
    num_train: int  # samples of the official training / test split
    num_test: int
    num_classes: int = 10
    #: the file format (a key of tp.data.formats.FORMATS): how the files are found, checked and read
    format: str = "idx"
    #: validation samples drawn from the training split when a run keeps a validation set
    #: (docs/algorithms.md#validation-split-and-minibatches)
    val_size: int = 5000
    #: the operating-system package that installs the files, read when the data root lacks them (None: none)
    system_package: SystemPackage | None = None
    #: SHA-256 of each file of the official release as tp reads it (unpacked), by file name: a run on real data
    #: must have read these bytes (tp.runs.provenance); empty: not known here (the run audit then checks names only)
    sha256: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A column of the paper's tables."""

    slug: str  # wildcard / CLI name
    paper_name: str  # as printed in the paper's tables
    files: str  # key of FILES: the data it reads
    # the network it trains: "mlp" (docs/algorithms.md#the-fully-connected-networks) or "cnn"
    # (docs/algorithms.md#the-cnn-table-3)
    model: str
    #: the official early stop (docs/algorithms.md#the-early-stop): training accuracy below this from epoch 6 on →
    #: "pruned"
    prune_threshold: float
    #: the paper's alignment figures of this dataset (docs/algorithms.md#reading-the-alignment-figures), full grid
    #: first; "fig4" is the condensed view
    alignment_figures: tuple[str, ...] = ()

    @property
    def image(self) -> ImageFiles:
        return FILES[self.files]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input as the network sees it: the image (C, H, W) for the CNN, else the flat (C·H·W,)."""
        c, h, w = self.image.shape
        return (c, h, w) if self.model == "cnn" else (c * h * w,)

    @property
    def num_classes(self) -> int:
        return self.image.num_classes

    @property
    def num_train(self) -> int:
        return self.image.num_train

    @property
    def num_test(self) -> int:
        return self.image.num_test


@dataclass(frozen=True)
class Method:
    """A row of the paper's tables: a learning rule plus, for some, another schedule."""

    slug: str  # wildcard / CLI name
    rule: str  # name in tp.rules.REGISTRY
    paper_name: str  # as printed in the paper's tables
    #: how its training schedule differs from its rule's plain one (the keys of its configurations)
    schedule: str = "the rule's schedule (docs/algorithms.md#one-minibatch-one-epoch)"
    #: for a method the paper derives but never ran: where it comes from ("" for the paper's table rows)
    beyond_paper: str = ""


@dataclass(frozen=True)
class Objective:
    """What a tuning minimises (``tp search``): a run summary's key, its label, its metrics.csv column per epoch."""

    summary_key: str
    label: str
    epoch_column: str


@dataclass(frozen=True)
class Tuning:
    """Which configuration of a (method, dataset) a run uses (``tunings`` of ``tp/configs/defaults.yaml``)."""

    slug: str
    purpose: str
    #: the per-method blocks it reads in ``tp/configs/hyperparameters/<dataset>.yaml``: its own (empty), or
    #: another tuning's, on top of which its ``defaults.yaml`` settings then apply (the damping search)
    reads: str = ""
    #: whether a pipeline's ``epochs`` setting (the smoke run's short runs) shortens it
    shortened: bool = True
    #: the damping search (docs/algorithms.md#the-damping-search-table-s7) runs after this many training epochs, then
    #: the run stops (None: never)
    damping_search_after: int | None = None
    #: what a search for this tuning's hyperparameters minimises (None: not searched)
    objective: Objective | None = None

    @property
    def configuration(self) -> str:
        """The tuning whose per-method blocks this one reads."""
        return self.reads or self.slug


@dataclass(frozen=True)
class Model:
    """A network a dataset trains."""

    slug: str
    description: str
    #: fixed number of hidden layers (the configuration's ``num_hidden`` must equal it), or None (any)
    hidden_layers: int | None = None


#: the networks a dataset can train
MODELS: dict[str, Model] = {m.slug: m for m in [
    Model("mlp", "the fully connected network of docs/algorithms.md#the-fully-connected-networks: num_hidden layers of size_hidden units"),
    Model("cnn", "the CNN of docs/algorithms.md#cnn-architecture: conv block 1, conv block 2, FC layer 3, output layer", hidden_layers=3),
]}

FILES: dict[str, ImageFiles] = {f.name: f for f in [
    ImageFiles("mnist", "MNIST", (1, 28, 28), 0.1307, 0.3081, 60000, 10000, sha256=(
        ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"))),
    # Debian/Ubuntu's package installs the four IDX .gz files (tp checks the unpacked files, never a .gz MD5 sum)
    ImageFiles("fashion-mnist", "FashionMNIST", (1, 28, 28), None, None, 60000, 10000,
               system_package=SystemPackage("dataset-fashion-mnist", ("/usr/share/datasets/fashion-mnist",)), sha256=(
        ("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        ("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        ("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        ("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"))),
    ImageFiles("cifar10", "CIFAR10", (3, 32, 32), 0.5, 0.5, 50000, 10000, format="cifar-batches"),
]}

DATASETS: dict[str, Dataset] = {d.slug: d for d in [
    Dataset("mnist", "MNIST", "mnist", "mlp", 0.4, ("figS5",)),
    Dataset("frozen-mnist", "Frozen-MNIST", "mnist", "mlp", 0.4),
    Dataset("fashion-mnist", "Fashion-MNIST", "fashion-mnist", "mlp", 0.4, ("figS4", "fig4")),
    Dataset("cifar10", "CIFAR10", "cifar10", "mlp", 0.25, ("figS6",)),
    Dataset("cifar10-cnn", "CIFAR10 (CNN)", "cifar10", "cnn", 0.25, ("figS7",)),
]}

_PRETRAINED = "DTP with feedback pre-training (epochs_fb) and extra feedback epochs (extra_fb_epochs), docs/algorithms.md#dtp-and-dtp-pre-trained"
_EXTRA_FB = "more feedback training: only epochs_fb and extra_fb_epochs differ (docs/algorithms.md#ddtp-rhl-rec-and-the-extra-fb-variants)"

METHODS: dict[str, Method] = {m.slug: m for m in [
    Method("bp", "bp", "BP", "no feedback: forward training only, its own loop (docs/algorithms.md#bp, docs/algorithms.md#the-bp-loop)"),
    Method("ddtp-linear", "ddtp-linear", "DDTP-linear"),
    Method("ddtp-rhl", "ddtp-rhl", "DDTP-RHL"),
    Method("dtpdrl", "dtpdrl", "DTPDRL"),
    Method("ddtp-control", "ddtp-control", "DDTP-control"),
    Method("dtp", "dtp", "DTP"),
    Method("dtp-pretrained", "dtp", "DTP (pre-trained)", _PRETRAINED),
    Method("dfa", "dfa", "DFA", "fixed random feedback, never trained: no feedback epochs (docs/algorithms.md#dfa)"),
    Method("ddtp-rhl-extrafb", "ddtp-rhl", "DDTP-RHL (extra FB)", _EXTRA_FB),
    Method("ddtp-rhl-rec", "ddtp-rhl-rec", "DDTP-RHL (rec)"),
    Method("ddtp-rhl-rec-extrafb", "ddtp-rhl-rec", "DDTP-RHL (rec. and extra FB)", _EXTRA_FB),
    # beyond the paper: its Appendix D derives these; its experiments never ran them (docs/ggn.md)
    Method("ddtp-ggn", "ddtp-ggn", "DDTP-GGN", beyond_paper="Appendix D: DDTP-linear with the H^{1/2}-transformed output"),
    Method("ggnt", "ggnt", "GGNT", beyond_paper="Appendix D: ideal damped generalized Gauss-Newton targets"),
]}

TUNINGS: dict[str, Tuning] = {t.slug: t for t in [
    Tuning("test", "tuned for validation error (Tables 1, S6, S8; Table 3, S9 for the CNN)",
           objective=Objective("val_error_best", "best validation error (%)", "val_error")),
    Tuning("train", "tuned for training loss, trained on the whole training set (Table 2; Table S10)",
           objective=Objective("train_loss_last", "last training loss", "train_loss")),
    Tuning("alignment", "the alignment-figure configurations (Fig. 4, S4-S7), alignment angles logged"),
    # docs/algorithms.md#the-damping-search-table-s7: the search runs after the 3rd training epoch, then the run stops;
    # its epochs are the protocol's
    Tuning("damping", "the GNT damping search of Table S7: the alignment configuration, searched after 3 "
                      "epochs, then stopped", reads="alignment", shortened=False, damping_search_after=3),
    # beyond the paper (issue 22, docs/ggn.md): the alignment configuration over its first epochs, with the
    # angles to the damped GGN update logged too; its own folders, never the paper's alignment runs'
    Tuning("ggn", "beyond the paper: the alignment configuration over its first epochs, angles with the BP "
                  "gradient, the damped GNT and the damped GGN update logged", reads="alignment"),
]}


@dataclass(frozen=True)
class CellNote:
    """A footnote a table carries when it shows this cell: what the reader must know about its number."""

    method: str
    dataset: str
    tuning: str
    text: str
    #: only in tables of this quantity (a run summary's key), or in every table of the cell (None)
    quantity: str | None = None


CELL_NOTES: list[CellNote] = [
    CellNote("ddtp-control", "cifar10", "test",
             "CIFAR10 DDTP-control: the official configuration file builds DDTP-linear (docs/algorithms.md#cifar-10-ddtp-control-builds-ddtp-linear); this cell "
             "runs the real DDTP-control with those hyperparameters, so the published entry was most likely "
             "produced by DDTP-linear."),
    CellNote("bp", "cifar10", "test",
             "CIFAR10 BP: the official test configuration trains 150 epochs; its training loss is the one after "
             "epoch 150.", quantity="train_loss_last"),
]


def figure_label(name: str) -> str:
    """The paper's name of a figure file name: ``figS5`` → ``Fig. S5``, ``fig4`` → ``Fig. 4``."""
    return "Fig. " + name.removeprefix("fig")


def _lookup(kind: str, table: dict, slug: str):
    if slug not in table:
        raise unknown(kind, slug, table)
    return table[slug]


def dataset(slug: str) -> Dataset:
    """The catalog entry of a dataset; an unknown slug is an error listing the valid ones."""
    return _lookup("dataset", DATASETS, slug)


def method(slug: str) -> Method:
    """The catalog entry of a method; an unknown slug is an error listing the valid ones."""
    return _lookup("method", METHODS, slug)


def tuning(slug: str) -> Tuning:
    """The catalog entry of a tuning; an unknown slug is an error listing the valid ones."""
    return _lookup("tuning", TUNINGS, slug)


def model(slug: str) -> Model:
    """The catalog entry of a network; an unknown slug is an error listing the valid ones."""
    return _lookup("network", MODELS, slug)
