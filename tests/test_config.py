"""The library's run configurations (``tp.config.config_dir()``) reproduce the official final
configurations value for value (``tests/data/official/hyperparameters.yaml``, a copy carried by the repository)."""

from __future__ import annotations

import pytest

from tp.catalog import DATASETS, METHODS
from tp.config import available_configs, parse_override, resolve_config, rule_hyperparameters
from tp.errors import ConfigError
from tp.rules import make_rule
from cases import official_hyperparameters as official

YAML_DATASET = {"mnist": "mnist", "frozen-mnist": "frozen_mnist", "fashion-mnist": "fashion_mnist",
                "cifar10": "cifar10", "cifar10-cnn": "cifar10_cnn"}
YAML_METHOD = {"bp": "BP", "dfa": "DFA", "dtp": "DTP", "dtp-pretrained": "DTP_pretrained", "dtpdrl": "DTPDRL",
               "ddtp-linear": "DDTP-linear", "ddtp-control": "DDTP-control", "ddtp-rhl": "DDTP-RHL",
               "ddtp-rhl-extrafb": "DDTP-RHL_extraFB", "ddtp-rhl-rec": "DDTP-RHL_rec",
               "ddtp-rhl-rec-extrafb": "DDTP-RHL_rec_extraFB"}
#: official network_type_effective -> our rule (docs/methods.md#the-methods)
NETWORK_TYPE = {"BP": {"bp"}, "DMLPDTP2": {"ddtp-linear", "dfa"}, "DKDTP2": {"ddtp-rhl", "ddtp-rhl-rec"},
                "DTPDR": {"dtpdrl"}, "DDTPControl": {"ddtp-control"}, "DTP": {"dtp"},
                # the CNN (docs/algorithms.md#the-cnn-table-3,
                # docs/algorithms.md#dfa-is-ddtp-with-frozen-linear-feedback: DFAConvCIFAR runs DDTPConvCIFAR with
                # frozen feedback)
                "BPConvCIFAR": {"bp"}, "DDTPConvCIFAR": {"ddtp-linear", "dfa"},
                "DDTPConvControlCIFAR": {"ddtp-control"}}
#: keys of the official files that are not run settings here (with the reason)
NOT_RUN_KEYS = {
    "random_seed",  # seeds are listed by the pipeline / given to `tp train`
    # the damping search's switch, never stops a table run
    # (docs/algorithms.md#the-damping-search-switch-in-table-configurations)
    "gn_damping_hpsearch",
}

#: alignment-figure method names of the official figure scripts
ALIGNMENT_NAMES = {"dtpdrl": ["DTPDRL"], "ddtp-linear": ["DDTP-linear"], "ddtp-rhl": ["DDTP-RHL"],
                   "ddtp-rhl-extrafb": ["DDTP-RHL(extra fb)"], "ddtp-rhl-rec-extrafb": ["DDTP-RHL(rec+extra fb)"],
                   "dtp": ["DTP"], "dtp-pretrained": ["DTP-pretrained", "DTP (pretrained)"],
                   "ddtp-control": ["DDTP-Control", "DDTP-control"], "dfa": ["DFA"], "bp": ["BP"]}


#: the paper's methods (the official code's configurations); the catalog's others are beyond the paper
PAPER_METHODS = [m for m, spec in METHODS.items() if not spec.beyond_paper]


def cases():
    for ds in DATASETS:
        for method in PAPER_METHODS:
            for tuning in ("test", "train", "alignment"):
                yield ds, method, tuning


def official_config(dataset, method, tuning):
    src = official()
    if tuning != "alignment":
        return src[YAML_DATASET[dataset]].get(YAML_METHOD[method], {}).get(tuning)
    figures = src["alignment_figure_configs"].get(YAML_DATASET[dataset], {}).get("methods", {})
    return next((figures[n] for n in ALIGNMENT_NAMES.get(method, []) if n in figures), None)


def test_every_official_configuration_has_a_project_configuration():
    src = official()
    ours = {(d, m, t) for (d, m), ts in available_configs().items() for t in ts if t != "alignment"
            if m in PAPER_METHODS}
    theirs = {(d, m, t) for d in DATASETS for m in PAPER_METHODS
              for t in src[YAML_DATASET[d]].get(YAML_METHOD[m], {})}
    assert ours == theirs
    # beyond the paper (Appendix D, docs/ggn.md): MNIST test configurations, and DDTP-GGN's alignment block (read
    # by the tuning ggn only: its GGN alignment runs, never a paper figure)
    assert {(d, m, tuple(ts)) for (d, m), ts in available_configs().items() if m not in PAPER_METHODS} == {
        ("mnist", "ddtp-ggn", ("test", "alignment")), ("mnist", "ggnt", ("test",))}
    figures = {(d, m) for (d, m), ts in available_configs().items() if "alignment" in ts and m in PAPER_METHODS}
    assert figures == {(d, m) for d, m, t in cases() if t == "alignment" and official_config(d, m, t) is not None}
    # 10 methods on MNIST, Fashion-MNIST and CIFAR10; DDTP-linear, DDTP-control, DFA on the CNN (Fig. S7)
    assert len(figures) == 33 and {m for d, m in figures if d == "cifar10-cnn"} == {"ddtp-linear", "ddtp-control",
                                                                                     "dfa"}
    # MLP: 41 test-tuned (the 39 cells of Tables 1/S6 and DDTP-RHL (rec) on MNIST and Fashion-MNIST) + 31
    # train-tuned; CNN: 4 test-tuned (Table 3) + 3 train-tuned (Table S10: no DDTP-control)
    assert len(ours) == 79 and sum(t == "test" for _, _, t in ours) == 45
    assert {(m, t) for d, m, t in ours if d == "cifar10-cnn"} == {
        (m, "test") for m in ("bp", "ddtp-linear", "ddtp-control", "dfa")} | {
        (m, "train") for m in ("bp", "ddtp-linear", "dfa")}


@pytest.mark.parametrize("dataset,method,tuning", list(cases()))
def test_config_reproduces_official_values(dataset, method, tuning):
    src = official_config(dataset, method, tuning)
    if src is None:
        with pytest.raises(ConfigError, match="available on"):
            resolve_config(method, dataset, tuning)
        return
    cfg = resolve_config(method, dataset, tuning)
    rule = make_rule(cfg["rule"], **rule_hyperparameters(cfg))
    compared = 0
    for key, value in src.items():
        if key not in cfg or key in NOT_RUN_KEYS or key in ("dataset", "fb_activation"):
            continue
        # there the per-hidden-layer list (docs/algorithms.md#figure-configurations)
        if key == "gn_damping" and tuning == "alignment":
            assert value == src["gn_damping_per_hidden_layer"] or value == 0.0
            continue
        if value is None and key == "log_interval" and dataset == "cifar10-cnn":
            # the official CNN files without alignment logging set it to null; the default stays (unused)
            assert not cfg["log_alignment"] and cfg[key] == 80
            continue
        if value is None:  # not applicable (e.g. extra_fb_epochs of BP/DFA): rule trains no feedback
            assert not rule.trains_feedback, key
            continue
        assert cfg[key] == value and type(cfg[key]) in (type(value), float), f"{key}: {cfg[key]!r} != {value!r}"
        compared += 1
    assert compared >= 12
    # derived and structural facts
    if isinstance(cfg["lr"], list):  # the CNN: one Adam per layer (docs/algorithms.md#cnn-optimisers-and-schedule)
        assert dataset == "cifar10-cnn" and len(cfg["lr"]) == len(cfg["epsilon"]) == 4
        assert [lr / cfg["target_stepsize"] for lr in cfg["lr"]] == src["lr_forward_effective"]
    else:
        assert cfg["lr"] / cfg["target_stepsize"] == src["lr_forward_effective"]
    assert cfg["rule"] in NETWORK_TYPE[src["network_type_effective"]] or (dataset, method) == ("cifar10", "ddtp-control")
    assert cfg["model"] in rule.networks and cfg["model"] == ("cnn" if dataset == "cifar10-cnn" else "mlp")
    if cfg["model"] == "cnn":  # docs/algorithms.md#cnn-architecture: the architecture string of the official files
        assert "conv5x5x32" in src["architecture"] and "conv5x5x64" in src["architecture"]
        assert cfg["conv_channels"] == [32, 64] and cfg["size_hidden"] == 512 and "fc512" in src["architecture"]
        assert cfg["double_precision"] and src["double_precision"]
    assert rule.trains_feedback == (not src["feedback_frozen"] and src.get("feedback_training", True))
    effective_fb = getattr(rule, "fb_activation_name", None) or rule.hp.get("fb_activation")
    if "fb_activation" in src and rule.has_feedback:
        assert effective_fb == src["fb_activation"]
    if rule.name.startswith("ddtp-rhl"):
        assert src["recurrent_input"] == (rule.name == "ddtp-rhl-rec")
        assert cfg["size_hidden_fb"] == src["size_hidden_fb"] and src["hidden_fb_activation"] == "tanh"


def test_cifar10_ddtp_control_runs_the_real_control_rule():
    """docs/algorithms.md#cifar-10-ddtp-control-builds-ddtp-linear / Q1: the official file builds DDTP-linear; we run
    DDTP-control with its values."""
    src = official()["cifar10"]["DDTP-control"]["test"]
    assert src["network_type_effective"] == "DMLPDTP2"
    assert resolve_config("ddtp-control", "cifar10", "test")["rule"] == "ddtp-control"


def test_unknown_key_and_names_are_errors_listing_the_valid_ones():
    with pytest.raises(ConfigError, match="valid keys: .*beta1"):
        resolve_config("bp", "mnist", "test", {"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="valid choices: .*ddtp-linear"):
        resolve_config("ddtp", "mnist")
    with pytest.raises(ConfigError, match="valid choices: .*fashion-mnist"):
        resolve_config("bp", "fmnist")
    with pytest.raises(ConfigError, match="valid choices: test, train"):
        resolve_config("bp", "mnist", "best")
    with pytest.raises(ConfigError, match="available on frozen-mnist"):
        resolve_config("dfa", "frozen-mnist")  # DFA has no Frozen-MNIST entry
    with pytest.raises(ConfigError, match="sigma"):
        resolve_config("dtp", "mnist", "test", {"sigma": None})


def test_overrides_parse_literals():
    assert parse_override("lr=1e-4") == ("lr", 1e-4)
    assert parse_override("double_precision=false") == ("double_precision", False)
    assert parse_override("epochs=3") == ("epochs", 3)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("lr")
