# Learning curves (issues 19, 34): per dataset, the test error and training loss over the epochs of every
# method's runs of one tuning, from their metrics.csv: the test-tuned runs (the cells of Table 1, S6 and, for the
# CNN, Table 3) in figures/curves_DATASET, the runs tuned for training loss (Table 2; the CNN's Table S10) in
# figures/curves_train_DATASET.  Cheap: local rules; no training jobs of their own.


localrules:
    learning_curves,
    learning_curves_train,


#: the file name prefix of each tuning's curves, after "curves_"
CURVE_TUNINGS = {"test": "", "train": "train_"}


def curve_tables(tuning):
    """The tables of one tuning's runs (test: Table 1, S6, S8; the CNN's Table 3, S9: the same runs)."""
    return [spec for spec in config["tables"].values() if spec["tuning"] == tuning]


def curve_cells(tuning, dataset=None):
    """(tuning, method, dataset) of the table cells of ``tuning`` that run (those of ``dataset``)."""
    return sorted({(spec["tuning"], m, d) for spec in curve_tables(tuning) for m, d in table_cells(spec)
                   if dataset in (None, d)})


def curve_outputs():
    """The learning curves of every tuning and dataset with a table cell that runs."""
    return [f"{RESULTS}/figures/curves_{prefix}{d}.{ext}" for tuning, prefix in CURVE_TUNINGS.items()
            for d in sorted({d for _, _, d in curve_cells(tuning)}) for ext in ("png", "pdf", "csv")]


rule learning_curves:
    input:
        lambda w: wanted(run_summaries(curve_cells("test", w.dataset))),
    output:
        png=report(f"{RESULTS}/figures/curves_{{dataset}}.png", caption="../report/curves.rst", category="Figures",
                   labels=report_labels(lambda w: f"learning curves ({DATASETS[w.dataset].paper_name})")),
        pdf=f"{RESULTS}/figures/curves_{{dataset}}.pdf",
        csv=f"{RESULTS}/figures/curves_{{dataset}}.csv",
    log:
        f"{RESULTS}/logs/figures/curves_{{dataset}}.log",
    params:
        tuning="test",
        rows=lambda w: [spec["rows"] for spec in curve_tables("test") if w.dataset in spec["columns"]],
        source=config["data"]["source"],
        overrides=config.get("overrides") or {},  # what the audit expects every run to record (tp.runs.audit)
        epochs=config.get("epochs"),
    script:
        "../scripts/learning_curves.py"


use rule learning_curves as learning_curves_train with:
    input:
        lambda w: wanted(run_summaries(curve_cells("train", w.dataset))),
    output:
        png=report(f"{RESULTS}/figures/curves_train_{{dataset}}.png", caption="../report/curves.rst",
                   category="Figures",
                   labels=report_labels(lambda w: f"learning curves, tuned for training loss "
                                                  f"({DATASETS[w.dataset].paper_name})")),
        pdf=f"{RESULTS}/figures/curves_train_{{dataset}}.pdf",
        csv=f"{RESULTS}/figures/curves_train_{{dataset}}.csv",
    log:
        f"{RESULTS}/logs/figures/curves_train_{{dataset}}.log",
    params:
        tuning="train",
        rows=lambda w: [spec["rows"] for spec in curve_tables("train") if w.dataset in spec["columns"]],
        source=config["data"]["source"],
        overrides=config.get("overrides") or {},
        epochs=config.get("epochs"),
