# The toy experiments (SPEC §9): Fig. 2 (null-space component of the updates, DTP (pre-trained) vs
# DDTP-linear) and Fig. S3 (direction of the output change of one GNT and one BP step).  Seconds on a CPU.


localrules:
    toy_figures,


rule toy_figures:
    output:
        fig2_png=report(f"{RESULTS}/figures/fig2_nullspace.png", caption="../report/fig2.rst", category="Figures",
                        labels={"paper": "Fig. 2", "data": "student–teacher toy"}),
        fig2_pdf=f"{RESULTS}/figures/fig2_nullspace.pdf",
        fig2_csv=f"{RESULTS}/figures/fig2_nullspace.csv",
        fig2_summary=f"{RESULTS}/figures/fig2_nullspace_summary.csv",
        s3_png=report(f"{RESULTS}/figures/figS3_output_space.png", caption="../report/figS3.rst", category="Figures",
                      labels={"paper": "Fig. S3", "data": "student–teacher toy"}),
        s3_pdf=f"{RESULTS}/figures/figS3_output_space.pdf",
        s3_json=f"{RESULTS}/figures/figS3_output_space.json",
    log:
        f"{RESULTS}/logs/figures/toy.log",
    params:
        tiny=(config.get("toy") or {}).get("tiny", False),
    script:
        "../scripts/toy_figures.py"


def toy_outputs():
    return rules.toy_figures.output
