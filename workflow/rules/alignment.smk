# Alignment figures (Fig. 4, S4-S7) from the alignment runs, and Table S7 from the damping-search runs.
# The training jobs are the `train` rule's (tunings "alignment" and "damping").


localrules:
    alignment_figure,
    table_s7,


rule alignment_figure:
    input:
        lambda w: alignment_summaries("alignment", w.dataset),
    output:
        png=f"{RESULTS}/figures/{{figure}}_alignment_{{dataset}}.png",
        pdf=f"{RESULTS}/figures/{{figure}}_alignment_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{figure}}_alignment_{{dataset}}.log",
    wildcard_constraints:
        figure="fig4|figS4|figS5|figS6|figS7",
    params:
        methods=lambda w: [m for m, d in ALIGN_CELLS if d == w.dataset],
        smooth=ALIGN["smooth"],
        condensed=lambda w: w.figure == "fig4",
        source=config["data"]["source"],
    script:
        "../scripts/alignment_figures.py"


rule table_s7:
    input:
        alignment_summaries("damping"),
    output:
        csv=f"{RESULTS}/tables/tableS7.csv",
        md=f"{RESULTS}/tables/tableS7.md",
        tex=f"{RESULTS}/tables/tableS7.tex",
    log:
        f"{RESULTS}/logs/tables/tableS7.log",
    params:
        cells=ALIGN_CELLS,
        datasets=ALIGN["datasets"],
    script:
        "../scripts/table_s7.py"
