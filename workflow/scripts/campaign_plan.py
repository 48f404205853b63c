"""What a results campaign runs, in which order, and how long each run is expected to take (campaign.py).

The plan is a list of :class:`Item` (a Snakemake target and its expected hours), in this priority order, each
step limited to the stages (``--stages``) and dataset files (``--datasets``) selected:

1. ``toy``: the toy figures (Fig. 2, S3), minutes.
2. ``damping``: Table S7's damping searches, the ``alignment.seed`` search of every alignment cell (in the
   configuration's order), then the more seeds of ``damping_stability`` (its reproducibility table), seed by
   seed.
3. ``table1``, ``table2``: the first seed of every cell of Table 1, then of Table 2 (cheap cells first).
4. ``alignment``: the alignment runs (``alignment.seed``) of the datasets whose figures include one of the
   paper's main text (Fig. 4, Fashion-MNIST): main-text results before any second seed.
5. ``table1``, ``table2``: their other seeds, seed by seed (every cell's seed 2 before any seed 3).
6. ``alignment``: the alignment runs of the other datasets (Fig. S5 MNIST, …).
7. ``ggn`` (beyond the paper, issue 22): the GGN alignment runs, then the ``beyond_paper`` tables' runs.

A run planned twice (DDTP-linear's Table 1 runs are also a beyond table's) keeps its first place; a run whose
summary is already under ``RESULTS/runs/`` is done.  Estimates (:func:`estimate`): the median wall time of
the cell's finished runs made by this runner (CPU model and step path), else comparable runs scaled by work.
"""

from __future__ import annotations

import functools
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign_speed import Runner, finished_times, machine_times, runner  # noqa: E402

STAGES = ("toy", "damping", "table1", "table2", "alignment", "ggn")
#: the tables of the ``table1``/``table2`` stages (config ``tables``), in this order
TABLE_STAGES = ("table1", "table2")
#: tunings whose runs train like a table's (an estimate for a never-run cell may borrow their epochs' time)
TRAINING_TUNINGS = ("test", "train")


@dataclass
class Item:
    target: str          # Snakemake target, relative to the results folder
    hours: float         # expected wall time
    why: str             # where the estimate comes from

    @property
    def run(self) -> str | None:  # TUNING/METHOD/DATASET/seedS of a training run
        return str(Path(self.target).parent) if self.target.startswith("runs/") else None

    @property
    def gauges_speed(self) -> bool:
        """Whether this run's seconds per epoch measure the machine's speed: a training run whose estimate is
        its own cell's finished runs (a damping run's estimate holds its search, a guessed one holds nothing)."""
        return bool(self.run) and Path(self.target).parts[1] != "damping" and self.why.startswith("median of")

    @property
    def cell(self) -> tuple[str, str, str]:  # (tuning, method, dataset) of a training run
        return tuple(Path(self.target).parts[1:4])


@functools.lru_cache(maxsize=None)
def epochs_of(tuning, method, dataset) -> int:
    from tp.config import resolve_config

    cfg = resolve_config(method, dataset, tuning)
    return cfg["epochs"] + cfg.get("epochs_fb", 0)


#: a feedback epoch's cost in training epochs, an upper guess for the rules with trained feedback (a feedback
#: minibatch is the forward pass, the feedback gradients and one Adam step: no forward update, no targets)
FEEDBACK_EPOCH_COST = 0.5


@functools.lru_cache(maxsize=None)
def work_of(tuning, method, dataset) -> float:
    """A run's work in training-sample passes: its training epochs, its feedback epochs (pre-training and the
    ``extra_fb_epochs`` after each training epoch, at :data:`FEEDBACK_EPOCH_COST`), times the training samples
    (without the validation split unless ``no_val_set``).  Estimates scale other cells' times by it: a ``train``
    run trains on all 60,000 samples, and on Frozen-MNIST it adds a feedback epoch to every epoch."""
    from tp import catalog
    from tp.config import resolve_config

    cfg = resolve_config(method, dataset, tuning)
    files = catalog.FILES[catalog.dataset(dataset).files]
    samples = files.num_train - (0 if cfg.get("no_val_set") else files.val_size)
    feedback = cfg.get("epochs_fb", 0) + cfg["epochs"] * cfg.get("extra_fb_epochs", 0)
    return (cfg["epochs"] + FEEDBACK_EPOCH_COST * feedback) * samples


def estimate(cell, times, default, here: Runner | None = None) -> tuple[float, str]:
    """Expected hours of a run of ``cell`` and where the estimate comes from (``times``: finished_times; ``here``:
    this machine's runner, campaign_speed.runner), the first of:

    1. the median of the cell's runs made by ``here``;
    2. ``here``'s runs of comparable cells (below) scaled by work (:func:`work_of`);
    3. the median of the cell's runs made anywhere;
    4. anyone's runs of comparable cells scaled by work;
    5. ``default``.

    Comparable cells: the method's runs of the same tuning on other datasets, else (a table or alignment tuning
    never run) its runs of a training tuning (``test``, ``train``), on the same dataset when there are any; the
    slowest of them, because Frozen-MNIST trains only its last layer and would promise a Fashion-MNIST run in a
    fraction of its time.  This runner's scaled runs (2) come before other runners' runs of the cell itself (3):
    another CPU or step path can be 2-4x off (a DDTP-RHL Table 1 run took 75 to 162 min eager on 2-core CPUs),
    and an estimate longer than every time box never starts.  One too short is corrected for later starts by
    the speed gauge, and a run still going at the hard deadline keeps its checkpoint for the next campaign.
    """
    tuning, method, dataset = cell

    def comparable(candidates) -> list:
        same_tuning = [o for o in candidates if o[:2] == (tuning, method) and o != cell]
        if same_tuning:
            return same_tuning
        training = [o for o in candidates if o[1] == method and o[0] in TRAINING_TUNINGS and o[0] != tuning]
        return [o for o in training if o[2] == dataset] or training

    def scaled(others, who) -> tuple[float, str] | None:
        found = [(statistics.median(machine_times(times[o], who)[0]) * work_of(*cell) / work_of(*o), o)
                 for o in sorted(others)]
        if not found:
            return None
        hours, o = max(found)
        return hours, f"{'' if o[0] == tuning else o[0] + ' '}{o[2]}'s runs scaled by work"

    hours, whose = machine_times(times.get(cell, []), here)
    if whose:
        return statistics.median(hours), f"median of {len(hours)} {whose} finished run(s)"
    by_here = here and scaled(comparable([o for o, runs in times.items() if any(who == here for _, who in runs)]), here)
    if by_here:
        return by_here[0], f"this machine's {by_here[1]}"
    if cell in times:
        return statistics.median(h for h, _ in times[cell]), f"median of {len(times[cell])} finished run(s)"
    anyone = scaled(comparable(list(times)), None)
    if anyone:
        return anyone
    return default, "--default-hours"


def seed_by_seed(cells, seeds, est) -> list[Item]:
    """Every cell's first seed before any cell's second, cheap cells (``est``: hours, why) first."""
    return [Item(f"runs/{c[0]}/{c[1]}/{c[2]}/seed{seed}/summary.json", *est[c])
            for seed in seeds for c in sorted(cells, key=lambda c: est[c][0])]


def plan(cfg: dict, args, results: Path) -> list[Item]:
    """The pending items of the selected stages and datasets (``args``: stages, datasets, seeds,
    default_hours), in the priority order of the module docstring."""
    from tp.catalog import DATASETS  # the files each dataset reads (Frozen-MNIST: MNIST's)
    from tp.config import available_configs

    have = available_configs()
    times, here = finished_times(results), runner()
    selected = lambda d: DATASETS[d].files in args.datasets  # noqa: E731
    runnable = lambda tuning, m, d: selected(d) and tuning in have.get((d, m), [])  # noqa: E731

    def runs(cells, seeds, default, cheap_first=True):
        est = {c: estimate(c, times, default, here) for c in cells}
        if cheap_first:
            return seed_by_seed(cells, seeds, est)
        return [Item(f"runs/{c[0]}/{c[1]}/{c[2]}/seed{s}/summary.json", *est[c]) for s in seeds for c in cells]

    items: list[Item] = []
    if "toy" in args.stages:
        # (the provenance: written last, and missing from toy outputs made before it existed)
        items.append(Item("figures/toy_provenance.json", 0.05, "minutes (Fig. 2, S3)"))
    align = cfg.get("alignment") or {"seed": 42, "datasets": [], "methods": []}
    if "damping" in args.stages:
        items += runs([("damping", m, d) for d in align["datasets"] for m in align["methods"]
                       if runnable("alignment", m, d)], [align["seed"]], 0.1, cheap_first=False)
        stab = cfg.get("damping_stability") or {"methods": [], "datasets": [], "seeds": []}  # then its seeds
        items += runs([("damping", m, d) for d in stab["datasets"] for m in stab["methods"]
                       if runnable("alignment", m, d)], stab["seeds"], 0.1)
    tables = [(name, cfg["tables"][name]) for name in TABLE_STAGES if name in args.stages and name in cfg["tables"]]
    table_cells = {name: [(spec["tuning"], m, d) for m in spec["rows"] for d in spec["columns"]
                          if runnable(spec["tuning"], m, d)] for name, spec in tables}
    for name, _ in tables:
        items += runs(table_cells[name], args.seeds[:1], args.default_hours)
    main_text = lambda d: any(not f.startswith("figS") for f in DATASETS[d].alignment_figures)  # noqa: E731
    align_cells = lambda first: [("alignment", m, d) for d in align["datasets"] if main_text(d) == first  # noqa: E731
                                 for m in align["methods"] if runnable("alignment", m, d)]
    if "alignment" in args.stages:
        items += runs(align_cells(True), [align["seed"]], args.default_hours)
    for seed in args.seeds[1:]:
        for name, _ in tables:
            items += runs(table_cells[name], [seed], args.default_hours)
    if "alignment" in args.stages:
        items += runs(align_cells(False), [align["seed"]], args.default_hours)
    if "ggn" in args.stages:  # beyond the paper (issue 22): the GGN alignment runs, then the beyond tables' runs
        beyond = cfg.get("beyond_paper") or {}
        ggn = beyond.get("ggn_alignment") or {"methods": [], "datasets": [], "seed": 42}
        items += runs([("ggn", m, d) for d in ggn["datasets"] for m in ggn["methods"] if runnable("alignment", m, d)],
                      [ggn["seed"]], 0.25)
        for spec in (beyond.get("tables") or {}).values():
            items += runs([(spec["tuning"], m, d) for m in spec["rows"] for d in spec["columns"]
                           if runnable(spec["tuning"], m, d)], spec["seeds"], args.default_hours)
    first: dict[str, Item] = {}
    for i in items:  # a run planned twice (DDTP-linear's Table 1 runs in a beyond table) keeps its first place
        first.setdefault(i.target, i)
    return [i for i in first.values() if not (results / i.target).exists()]
