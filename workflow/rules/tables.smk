# Aggregation of the run summaries into the paper's tables, and the results index.  Cheap: local rules.


localrules:
    table,
    results_readme,


rule table:
    input:
        table_inputs,
    output:
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    log:
        f"{RESULTS}/logs/tables/{{table}}.log",
    params:
        spec=lambda w: config["tables"][w.table],
        seeds=config["seeds"],
        configured=lambda w: [list(c) for c in table_cells(config["tables"][w.table])],
    script:
        "../scripts/tables.py"


rule results_readme:
    input:
        table_outputs(),
        alignment_outputs(),
        toy_outputs(),
    output:
        f"{RESULTS}/README.md",
    params:
        tables=config["tables"],
        config=config,
        results=RESULTS,
    script:
        "../scripts/results_readme.py"
