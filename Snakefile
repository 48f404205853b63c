# tp: reproduce the tables of "A Theoretical Framework for Target Propagation" (Meulemans et al., 2020).
#
#   snakemake --cores 8                                      # this machine
#   snakemake --profile slurm                                # training jobs on a SLURM cluster (submitit)
#   snakemake --cores 2 --configfile config/smoke.yaml       # smoke run: synthetic data, minutes
#
# The experiment matrix is config/config.yaml; the hyperparameters of each run come from
# tp/configs/hyperparameters/ through the `tp` library.  Outputs: RESULTS/tables/, RESULTS/runs/, RESULTS/README.md.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/alignment.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/tables.smk"


rule all:
    input:
        table_outputs(),
        alignment_outputs(),
        toy_outputs(),
        f"{RESULTS}/README.md",
    default_target: True
