# Alignment figures (Fig. 4, S4-S7) from the alignment runs, and Table S7 and its damping curves (one figure
# per dataset: angle against λ, official and paired procedures) from the damping-search runs.
# The training jobs are the `train` rule's (tunings "alignment" and "damping").


localrules:
    alignment_figure,
    table_s7,
    damping_figure,


rule alignment_figure:
    input:
        lambda w: alignment_summaries("alignment", w.dataset),
    output:
        png=report(f"{RESULTS}/figures/{{figure}}_alignment_{{dataset}}.png", caption="../report/alignment.rst",
                   category="Figures", labels=report_labels(lambda w: figure_label(w.figure))),
        pdf=f"{RESULTS}/figures/{{figure}}_alignment_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{figure}}_alignment_{{dataset}}.log",
    wildcard_constraints:
        figure="|".join(f for names in ALIGN_FIGURES.values() for f in names),
    params:
        methods=lambda w: [m for m, d in ALIGN_CELLS if d == w.dataset],
        smooth=ALIGN["smooth"],
        condensed=lambda w: w.figure == "fig4",
        source=config["data"]["source"],
    script:
        "../scripts/alignment_figures.py"


rule table_s7:
    input:
        damping_summaries(),
    output:
        csv=f"{RESULTS}/tables/tableS7.csv",
        md=f"{RESULTS}/tables/tableS7.md",
        tex=f"{RESULTS}/tables/tableS7.tex",
        html=report(f"{RESULTS}/tables/tableS7.html", caption="../report/table_s7.rst", category="Tables",
                    labels=report_labels("Table S7")),
    log:
        f"{RESULTS}/logs/tables/tableS7.log",
    params:
        cells=list(dict.fromkeys(ALIGN_CELLS + [(m, d) for m, d, _ in STABILITY_RUNS])),
        datasets=damping_datasets(),
        not_run=[[d, not_run_reason(d)] for d in ALIGN["datasets"] if not usable(d)],
        source=config["data"]["source"],
    script:
        "../scripts/table_s7.py"


rule damping_figure:
    input:
        lambda w: damping_summaries(w.dataset),
    output:
        png=report(f"{RESULTS}/figures/damping_search_{{dataset}}.png", caption="../report/damping.rst",
                   category="Figures", labels=report_labels("Table S7: angle against λ")),
        pdf=f"{RESULTS}/figures/damping_search_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/damping_search_{{dataset}}.log",
    params:
        methods=lambda w: list(dict.fromkeys([m for m, d in ALIGN_CELLS if d == w.dataset]
                                             + [m for m, d, _ in STABILITY_RUNS if d == w.dataset])),
        source=config["data"]["source"],
    script:
        "../scripts/damping_figures.py"
