"""What a search leaves in its folder (:func:`write_outputs`): ``trials.csv`` (one row per trial),
``best.yaml`` (the configuration the best trial trained, a file ``tp train --config`` takes as it is) and the
optimisation history and parameter importances (Optuna's matplotlib plots, PNG and PDF).  A file that cannot
say what it should (no completed trial, too few for importances) says why instead, so the pipeline's
outputs always exist and never pass for a result."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Callable

import optuna
import yaml
from optuna.trial import TrialState

from .settings import OBJECTIVES
from .space import load_space

__all__ = ["write_outputs"]


def write_outputs(study: optuna.Study, settings, log: Callable[[str], None] = print) -> dict:
    """``trials.csv``, ``best.yaml`` and the history / importance plots in ``settings.out`` (a
    :class:`tp.search.SearchSettings`); the paths written."""
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    names = list(load_space(settings.method, path=settings.space_file))
    key, label = OBJECTIVES[settings.tuning]
    _write_trials(out / "trials.csv", trials, key, names)
    data = (study.user_attrs.get("fixed") or {}).get("data") or {}
    source = (f"# Data: {data.get('data_source', 'not recorded')}"
              + (f" (SHA-256 {_digests(data['data_sha256'])})" if data.get("data_sha256") else "") + ".\n")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    written = {"trials": out / "trials.csv", "best": out / "best.yaml"}
    counts = ", ".join(f"{sum(t.state == s for t in trials)} {s.name.lower()}" for s in
                       (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING))
    if complete:
        best = min(complete, key=lambda t: (t.value, t.number))
        trained = settings.trial_folder(best.user_attrs.get("out"), best.number) / "config.yaml"  # what it trained
        cfg = yaml.safe_load(trained.read_text())
        cfg.pop("seed", None)
        header = (f"# Best trial {best.number} of the {study.study_name} search ({counts} of {len(trials)}): "
                  f"{label} {best.value:.6g} (seed {best.user_attrs.get('seed')}; run folder {trained.parent}).\n"
                  + source + "# Train it again with:  tp train --config best.yaml\n")
        (out / "best.yaml").write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    else:
        log(f"no trial of {study.study_name} completed ({counts}): best.yaml says so")
        (out / "best.yaml").write_text(f"# No trial of the {study.study_name} search completed ({counts}): "
                                       "there is no best configuration.\n" + source)
    written.update(_plots(study, out, label, len(complete), log))
    return written


def _write_trials(path: Path, trials, key: str, names: list[str]) -> None:
    columns = ["trial", "state", "objective", "value", "status", "data_source", "seed", "out", "duration_s",
               "retry_of", *names]
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for t in trials:
            a = t.user_attrs
            w.writerow({"trial": t.number, "state": t.state.name, "objective": key,
                        "value": "" if t.value is None else t.value, "status": a.get("status", ""),
                        "data_source": a.get("data_source") or "",
                        "seed": a.get("seed", ""), "out": a.get("out", ""),
                        "duration_s": "" if t.duration is None else round(t.duration.total_seconds(), 3),
                        "retry_of": a.get("retry_of", ""), **{n: t.params.get(n, "") for n in names}})
    os.replace(tmp, path)


def _digests(sha) -> str:
    """The data files' SHA-256, shortened: ``train-images…: 0123abcd…, …``."""
    if isinstance(sha, dict):
        return ", ".join(f"{name} {str(d)[:12]}…" for name, d in sha.items())
    return str(sha)[:12] + "…"


def _plots(study, out: Path, label: str, complete: int, log) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = {}
    plots = [("history", lambda: ovm.plot_optimization_history(study, target_name=label)),
             ("importances", lambda: ovm.plot_param_importances(
                 study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target_name=label))]
    needs = {"history": 1, "importances": 2}  # completed trials each plot needs
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                if complete < needs[name]:
                    raise ValueError(f"{complete} completed trial(s); it needs at least {needs[name]}")
                ax = plot()
            except (RuntimeError, ValueError, ZeroDivisionError) as exc:  # e.g. all values equal
                log(f"no {name}: {exc}")
                fig, ax = plt.subplots()  # the file says why, so the pipeline's output exists
                ax.text(0.5, 0.5, f"no {name}:\n{exc}", ha="center", va="center", wrap=True)
                ax.set_axis_off()
        fig = ax.figure
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out / f"{name}.{ext}", dpi=150,  # a PDF without its date: same figure, same bytes
                        **({"metadata": {"CreationDate": None}} if ext == "pdf" else {}))
        plt.close(fig)
        written[name] = out / f"{name}.png"
    return written
