# Table S7's reproducibility (issue 23) and the runs beyond the paper (issue 22, docs/ggn.md); the cells are
# STABILITY_RUNS, BEYOND_TABLES / BEYOND_RUNS and GGN_CELLS of common.smk (config keys damping_stability and
# beyond_paper).  The training jobs are the `train` rule's (tunings damping, test and ggn); no learning logic here.
#
# * tables/tableS7_stability: how often the damping searches of several seeds select the same λ
#   (workflow/scripts/table_s7_stability.py; the seeds' searches also enter Table S7 and its damping figures);
# * tables/NAME for each beyond_paper.tables entry (workflow/scripts/tables.py, as the paper's tables): a cell
#   that is also a cell of a table of `tables` reads those runs (the same folders, never a second copy);
# * figures/ggn_alignment_DATASET: the angles with the BP gradient, the damped GNT and the damped GGN updates
#   over the first epochs (tuning ggn), per hidden layer (workflow/scripts/alignment_figures.py's grid).


localrules:
    table_s7_stability,
    ggn_alignment_figure,


def stability_summaries():
    return wanted(f"{run_dir('damping', m, d, s)}/summary.json" for m, d, s in STABILITY_RUNS)


def beyond_summaries(name):
    spec = BEYOND_TABLES[name]
    return wanted(f"{run_dir(spec['tuning'], m, d, s)}/summary.json" for m, d in table_cells(spec) for s in spec["seeds"])


def beyond_spec(name):
    """The table's configuration, with a note naming the cells whose runs are those of a paper table."""
    spec = dict(BEYOND_TABLES[name])
    notes = []
    for m, d in table_cells(spec):
        shared = [t["title"].split(":")[0] for t in config["tables"].values()
                  if t["tuning"] == spec["tuning"] and m in t["rows"] and d in t["columns"]]
        if shared:
            notes.append(f"{METHODS[m].paper_name} on {DATASETS[d].paper_name}: the runs of {', '.join(shared)} "
                         f"(runs/{spec['tuning']}/{m}/{d}/seedS, seeds {', '.join(map(str, spec['seeds']))}), "
                         "not a second copy.")
    return {**spec, "notes": notes}


def ggn_summaries(dataset):
    return wanted(f"{run_dir('ggn', m, d, GGN['seed'])}/summary.json" for m, d in GGN_CELLS if d == dataset)


def beyond_outputs():
    """The outputs of this file: the stability table (its cells say what is pending), the beyond tables, and the
    GGN alignment figures (partial: those whose runs have all finished)."""
    out = expand(f"{RESULTS}/tables/tableS7_stability.{{ext}}", ext=["csv", "md", "html"]) if STABILITY_RUNS else []
    out += expand(f"{RESULTS}/tables/{{name}}.{{ext}}", name=list(BEYOND_TABLES), ext=["csv", "md", "tex", "html"])
    for d in dict.fromkeys(d for _, d in GGN_CELLS):
        if not PARTIAL or all(Path(f"{run_dir('ggn', m, dd, GGN['seed'])}/summary.json").exists()
                              for m, dd in GGN_CELLS if dd == d):
            out += [f"{RESULTS}/figures/ggn_alignment_{d}.{ext}" for ext in ("png", "pdf")]
    return out


rule table_s7_stability:
    input:
        stability_summaries(),
    output:
        csv=f"{RESULTS}/tables/tableS7_stability.csv",
        md=f"{RESULTS}/tables/tableS7_stability.md",
        html=report(f"{RESULTS}/tables/tableS7_stability.html", caption="../report/table_s7_stability.rst",
                    category="Tables", labels=report_labels("Table S7 seeds")),
    log:
        f"{RESULTS}/logs/tables/tableS7_stability.log",
    params:
        cells=list(dict.fromkeys((m, d) for m, d, _ in STABILITY_RUNS)),
        seeds=STABILITY["seeds"],
        not_run=[[d, not_run_reason(d)] for d in STABILITY["datasets"] if not usable(d)],
        source=config["data"]["source"],
    script:
        "../scripts/table_s7_stability.py"


rule ggn_alignment_figure:
    input:
        lambda w: ggn_summaries(w.dataset),
    output:
        png=report(f"{RESULTS}/figures/ggn_alignment_{{dataset}}.png", caption="../report/ggn_alignment.rst",
                   category="Figures", labels=report_labels("beyond the paper: GGN alignment")),
        pdf=f"{RESULTS}/figures/ggn_alignment_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/ggn_alignment_{{dataset}}.log",
    params:
        methods=lambda w: [m for m, d in GGN_CELLS if d == w.dataset],
        smooth=GGN["smooth"],
        condensed=False,
        title="Beyond the paper (Appendix D), first epochs",
        source=config["data"]["source"],
    script:
        "../scripts/alignment_figures.py"


if BEYOND_TABLES:

    localrules:
        beyond_table,

    rule beyond_table:
        input:
            lambda w: beyond_summaries(w.beyond),
        output:
            csv=f"{RESULTS}/tables/{{beyond}}.csv",
            md=f"{RESULTS}/tables/{{beyond}}.md",
            tex=f"{RESULTS}/tables/{{beyond}}.tex",
            html=report(f"{RESULTS}/tables/{{beyond}}.html", caption="../report/beyond_table.rst", category="Tables",
                        labels=report_labels("beyond the paper")),
        log:
            f"{RESULTS}/logs/tables/{{beyond}}.log",
        wildcard_constraints:
            beyond="|".join(BEYOND_TABLES),
        params:
            table=lambda w: w.beyond,
            spec=lambda w: beyond_spec(w.beyond),
            seeds=lambda w: BEYOND_TABLES[w.beyond]["seeds"],
            configured=lambda w: [list(c) for c in table_cells(BEYOND_TABLES[w.beyond])],
            not_run=lambda w: not_run_cells(BEYOND_TABLES[w.beyond]),
            source=config["data"]["source"],
            # what the audit expects every run to record (tp.runs.audit.expected_config)
            overrides=config.get("overrides") or {},
            epochs=config.get("epochs"),
        script:
            "../scripts/tables.py"
