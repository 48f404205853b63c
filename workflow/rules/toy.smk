# The toy experiments (docs/algorithms.md#the-toy-experiments-fig-2-s3): Fig. 2 (null-space component of the updates, DTP (pre-trained) vs
# DDTP-linear) and Fig. S3 (direction of the output change of one GNT and one BP step).  Seconds on a CPU.
#
# A shell rule, like rule train, so that committed toy outputs count as done: a `script:` rule reruns whenever
# its script's file time is newer than its outputs, which is the case after any fresh `git clone`, and the rerun
# on another CPU changes the float32 numbers in their 7th digit.  Its command line and params (tiny) are
# recorded in .snakemake/metadata: on the machine that ran it, editing them reruns it, as for a training run.


localrules:
    toy_figures,


TOY_SCRIPT = str(Path(workflow.basedir) / "workflow" / "scripts" / "toy_figures.py")


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
        provenance=f"{RESULTS}/figures/toy_provenance.json",
    log:
        f"{RESULTS}/logs/figures/toy.log",
    params:
        tiny="--tiny" if (config.get("toy") or {}).get("tiny", False) else "",
        out_dir=lambda wildcards, output: str(Path(output.fig2_png).parent),
    shell:
        "{PYTHON} {TOY_SCRIPT:q} --out-dir {params.out_dir:q} {params.tiny} > {log:q} 2>&1"


def toy_outputs():
    return rules.toy_figures.output
