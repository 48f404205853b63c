# Aggregation of the run summaries into the paper's tables, and the results index.  Cheap: local rules.


localrules:
    table,
    results_readme,
    datasets_missing,


rule table:
    input:
        table_inputs,
    output:
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
        html=report(f"{RESULTS}/tables/{{table}}.html", caption="../report/table.rst", category="Tables",
                    labels=report_labels(lambda w: config["tables"][w.table]["title"].split(":")[0])),
    log:
        f"{RESULTS}/logs/tables/{{table}}.log",
    params:
        spec=lambda w: config["tables"][w.table],
        seeds=config["seeds"],
        configured=lambda w: [list(c) for c in table_cells(config["tables"][w.table])],
        not_run=lambda w: not_run_cells(config["tables"][w.table]),
        source=config["data"]["source"],
        # what the audit expects every run to record (tp.runs.audit.expected_config)
        overrides=config.get("overrides") or {},
        epochs=config.get("epochs"),
    script:
        "../scripts/tables.py"


rule results_readme:
    input:
        table_outputs(),
        alignment_outputs(),
        toy_outputs(),
        curve_outputs(),
        lambda w: beyond_outputs(),  # (beyond.smk, included later)
        lambda w: claims_outputs(),  # (claims.smk, included later)
        # the campaigns' record (written by campaign.py, not by a rule): a new or annotated row rebuilds the index
        lambda w: [p for p in [f"{RESULTS}/campaigns.csv"] if Path(p).exists()],
    output:
        f"{RESULTS}/README.md",
    params:
        tables=config["tables"],
        beyond_tables={name: spec["title"] for name, spec in BEYOND_TABLES.items()},
        stability_seeds=STABILITY["seeds"] if STABILITY_RUNS else [],
        config=config,
        results=RESULTS,
        not_run=[f"{d}: " + ("dataset missing" if d in MISSING_DATA else "not selected") + " — " +
                 datacheck.impact(d, config["tables"], ALIGN["datasets"], DATA_OF, has_config).split(": ", 1)[1]
                 for d in catalog.FILES if d not in USABLE_DATA],
    script:
        "../scripts/results_readme.py"


# with selected data missing (see data.smk): fails after everything else is built
rule datasets_missing:
    input:
        table_outputs(),
        alignment_outputs(),
        toy_outputs(),
        lambda w: beyond_outputs(),
        f"{RESULTS}/README.md",
    output:
        f"{RESULTS}/data/complete.flag",  # never written: this job fails while data is missing
    message:
        f"{len(MISSING_DATA)} selected dataset(s) missing ({', '.join(MISSING_DATA)}): everything else is built; "
        "failing so that the exit status says so (summary below)"
    shell:
        "exit 1"
