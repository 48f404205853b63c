# Learning curves (issue 19): per dataset, the test error and training loss over the epochs of every method's
# test-tuned runs (the cells of Table 1, S6 and, for the CNN, Table 3), from their metrics.csv.  Cheap: a
# local rule; no training jobs of its own.


localrules:
    learning_curves,


#: the tables of the test-tuned runs (Table 1, S6, S8; the CNN's Table 3, S9: the same runs)
CURVE_TABLES = [spec for spec in config["tables"].values() if spec["tuning"] == "test"]


def curve_cells(dataset=None):
    """(tuning, method, dataset) of the test-tuned table cells that run (those of ``dataset``)."""
    return sorted({(spec["tuning"], m, d) for spec in CURVE_TABLES for m, d in table_cells(spec)
                   if dataset in (None, d)})


def curve_outputs():
    """The learning curves of every dataset with a test-tuned cell that runs."""
    return expand(f"{RESULTS}/figures/curves_{{dataset}}.{{ext}}", dataset=sorted({d for _, _, d in curve_cells()}),
                  ext=["png", "pdf", "csv"])


rule learning_curves:
    input:
        lambda w: wanted(run_summaries(curve_cells(w.dataset))),
    output:
        png=report(f"{RESULTS}/figures/curves_{{dataset}}.png", caption="../report/curves.rst", category="Figures",
                   labels=report_labels(lambda w: f"learning curves ({DATASETS[w.dataset].paper_name})")),
        pdf=f"{RESULTS}/figures/curves_{{dataset}}.pdf",
        csv=f"{RESULTS}/figures/curves_{{dataset}}.csv",
    log:
        f"{RESULTS}/logs/figures/curves_{{dataset}}.log",
    params:
        rows=lambda w: [spec["rows"] for spec in CURVE_TABLES if w.dataset in spec["columns"]],
        source=config["data"]["source"],
        overrides=config.get("overrides") or {},  # what the audit expects every run to record (tp.audit)
        epochs=config.get("epochs"),
    script:
        "../scripts/learning_curves.py"
