"""The package's structure: no import circle, one error type for a bad configuration, one validation table.

These hold the architecture's promises (docs/architecture.md) so that a change that breaks them fails here:
the ``tp`` modules form an acyclic import graph (imports at call time included, so a circle cannot hide
behind a local import); every unknown name — method, dataset, tuning, rule, network, activation, loss,
initialisation, device, data source — is a :class:`tp.errors.ConfigError` naming the value and the valid
choices; and :data:`tp.config.validation.KEYS` describes exactly the configuration keys of ``defaults.yaml``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

import tp
from tp import catalog
from tp.nets.activations import get_activation
from tp.config import config_dir, resolve_config
from tp.data import load_dataset
from tp.errors import ConfigError
from tp.rules import rules_for_model
from tp.core.runtime import resolve_device
from tp.config.validation import KEYS

PACKAGE = Path(tp.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["tp", *f.relative_to(PACKAGE).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module → the ``tp`` modules it imports anywhere in its text (``from . import x`` names module x; a
    module's imports of its own enclosing packages are not edges: the package is initialised first anyway)."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or "" if node.level == 0 else ".".join(
                    package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != mod and not mod.startswith(t + "."):
                    edges[mod].add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    edges = import_graph()
    assert "tp.errors" in edges and edges["tp.errors"] == set(), "tp.errors imports nothing of tp"
    assert edges["tp.config.validation"] >= {"tp.errors"} and "tp.config.resolve" not in edges["tp.config.validation"]
    assert cycles(edges) == []


#: The layers of ``tp/``, bottom to top, and the layers each may import directly (docs/architecture.md,
#: "Layers"); a layer may also import its own modules and, through the ones it names, everything below them.
LAYERS: dict[str, tuple[str, ...]] = {
    "ground": (),                     # tp.errors, tp.catalog: the error type and the facts
    "core": ("ground",),              # tp.core: generators, per-replica values, Adam, device, CUDA graphs
    "nets": ("core",),                # tp.nets: networks, activations, targets, Gauss-Newton
    "rules": ("nets",),               # tp.rules: the learning rules
    "metrics": ("nets",),             # tp.metrics: alignment angles, the paired damping search
    "data": ("nets",),                # tp.data: datasets and their files (the synthetic teacher is an MLP)
    "config": ("rules", "data"),      # tp.config: resolved, validated configurations; which network
    "runs": ("config",),              # tp.runs: run folders, versions, the tables' audit, provenance
    "training": ("runs", "metrics"),  # tp.training: the loop, the steps, the records
    "toy": ("config",),               # tp.toy: the toy experiments of Fig. 2 and S3
    "search": ("training",),          # tp.search: tp search
    "top": ("search", "toy"),         # tp, tp.cli, tp.__main__: the public API and the command line
}


def layer_of(module: str) -> str:
    """The layer a ``tp`` module belongs to, by its folder; a module outside every layer fails here."""
    parts = module.split(".")
    if module in ("tp", "tp.cli", "tp.__main__"):
        return "top"
    if module in ("tp.errors", "tp.catalog"):
        return "ground"
    if len(parts) > 2 and parts[1] in LAYERS or module in (f"tp.{k}" for k in LAYERS):
        return parts[1]
    raise AssertionError(f"{module} belongs to no layer: put it in a layer's folder and name it in "
                         f"docs/architecture.md, 'Layers'")


def allowed(layers: dict[str, tuple[str, ...]]) -> dict[str, set[str]]:
    """layer → every layer it may import: itself and, transitively, the layers it names."""
    out: dict[str, set[str]] = {}

    def below(layer: str) -> set[str]:
        if layer not in out:
            out[layer] = {layer}.union(*(below(b) for b in layers[layer]))
        return out[layer]

    for layer in layers:
        below(layer)
    return out


def layer_violations(edges: dict[str, set[str]], layers=LAYERS, of=layer_of) -> list[str]:
    may = allowed(layers)
    return sorted(f"{m} ({of(m)}) imports {t} ({of(t)})" for m, ts in edges.items() for t in ts
                  if of(t) not in may[of(m)])


def test_layer_checker_finds_an_upward_import():
    edges = {"tp.nets.mlp": {"tp.core.optim", "tp.training.loop"}, "tp.training.loop": {"tp.nets.mlp"},
             "tp.core.optim": set()}
    assert layer_violations(edges) == ["tp.nets.mlp (nets) imports tp.training.loop (training)"]
    assert allowed(LAYERS)["training"] >= {"runs", "config", "rules", "data", "nets", "core", "ground"}
    assert "rules" not in allowed(LAYERS)["metrics"] and "config" not in allowed(LAYERS)["data"]
    with pytest.raises(AssertionError, match="tp.helpers belongs to no layer"):
        layer_of("tp.helpers")


def test_every_module_imports_only_its_layer_and_those_below():
    """The folders are the layers: no module of ``tp/`` outside them, no import upwards (the maths import no
    configuration, the data no rule, training not the tables' audit)."""
    edges = import_graph()
    for m in edges:
        layer_of(m)
    assert layer_violations(edges) == []
    assert "tp.runs.audit" not in set().union(*(ts for m, ts in edges.items() if m.startswith("tp.training")))


@pytest.mark.parametrize("call, value", [
    (lambda: catalog.method("dpt"), "dpt"),
    (lambda: catalog.dataset("svhn"), "svhn"),
    (lambda: catalog.tuning("best"), "best"),
    (lambda: resolve_config("dpt", "mnist"), "dpt"),
    (lambda: resolve_config("dtp", "svhn"), "svhn"),
    (lambda: resolve_config("dtp", "mnist", "best"), "best"),
    (lambda: resolve_config("dtp", "mnist", "test", {"lrr": 1.0}), "lrr"),
    (lambda: tp.make_rule("ddtp-lin"), "ddtp-lin"),
    (lambda: rules_for_model("rnn"), "rnn"),
    (lambda: get_activation("swish"), "swish"),
    (lambda: tp.MLP((2, 3, 2), ("tanh", "linear"), (True, True), "hinge"), "hinge"),
    (lambda: load_dataset("svhn", source="synthetic"), "svhn"),
    (lambda: load_dataset("mnist", source="imagined"), "imagined"),
    (lambda: resolve_device("tpu:0"), "tpu:0"),
])
def test_every_unknown_name_is_one_error_naming_it_and_the_choices(call, value):
    with pytest.raises(ConfigError) as err:
        call()
    assert repr(value) in str(err.value) and "valid" in str(err.value)


def test_validation_table_has_exactly_the_configuration_keys():
    with (config_dir() / "defaults.yaml").open() as f:
        run = yaml.safe_load(f)["run"]
    assert set(KEYS) == set(run) | {"fb_activation"}  # fb_activation: set by resolve_config (rule default)


@pytest.mark.parametrize("key, value, needle", [
    ("beta1", [0.9, 0.9], "beta1 must be"),                 # a list only where a key is per layer
    ("epsilon_fb", [1e-8] * 6, "epsilon_fb must be"),
    ("lr", [1e-3] * 5, "one value per layer (6)"),          # per layer: exactly L values
    ("gn_damping", [0.0] * 5, "one value per layer (6)"),
    ("gn_damping_per_hidden_layer", [0.1] * 6, "one value per hidden layer (5)"),
    ("lr", [1e-3, -1e-3, 1e-3, 1e-3, 1e-3, 1e-3], "entry -0.001"),
    ("target_stepsize", float("nan"), "finite"),
    ("epochs", 2.0, "integer"),
    ("log_alignment", "yes", "true or false"),
])
def test_validation_table_rejects_naming_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=key) as err:
        resolve_config("ddtp-linear", "mnist", "test", {key: value})
    assert needle in str(err.value)


def test_per_layer_values_of_the_right_length_are_accepted():
    cfg = resolve_config("ddtp-linear", "mnist", "alignment", {"lr": [1e-3] * 6, "gn_damping": [0.0] * 6,
                                                        "gn_damping_per_hidden_layer": [1.0] * 5})
    assert cfg["lr"] == [1e-3] * 6


def test_the_catalog_facts_have_their_readers():
    """Each file format of the catalog has its reader (tp.data.formats), each network its entry, and the facts the
    loop and the search read come from the catalog (no second copy to drift)."""
    from tp.data.formats import FORMATS
    from tp.search.settings import EPOCH_COLUMN, OBJECTIVES

    assert {f.format for f in catalog.FILES.values()} <= set(FORMATS)
    assert {d.model for d in catalog.DATASETS.values()} <= set(catalog.MODELS)
    searched = {t.slug: t.objective for t in catalog.TUNINGS.values() if t.objective}
    assert OBJECTIVES == {k: (o.summary_key, o.label) for k, o in searched.items()}
    assert EPOCH_COLUMN == {k: o.epoch_column for k, o in searched.items()}
    assert catalog.tuning("damping").damping_search_after == 3  # docs/algorithms.md#the-damping-search-table-s7
