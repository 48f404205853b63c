# tp: reproduce the tables of "A Theoretical Framework for Target Propagation" (Meulemans et al., 2020).
#
#   snakemake --cores 8                                      # this machine
#   snakemake --profile slurm                                # training jobs on a SLURM cluster (submitit)
#   snakemake --cores 2 --configfile config/smoke.yaml       # smoke run: synthetic data, minutes
#   snakemake --cores 8 --config datasets=[mnist]            # only the MNIST (and Frozen-MNIST) cells
#   snakemake --cores 8 --config 'data={download: false}'    # no downloads: cells without data are left out
#   snakemake search --cores 2 --config 'search={"method": "bp", "dataset": "mnist"}'   # a TPE search
#
# The experiment matrix is config/config.yaml; the hyperparameters of each run come from
# tp/configs/hyperparameters/ through the `tp` library.  Outputs: RESULTS/tables/, RESULTS/runs/, RESULTS/README.md.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))
from check_config import yaml_problem  # noqa: E402

# Snakemake's own message for a YAML error names neither file nor line (--configfile files: check_config.py)
if _problem := yaml_problem(Path(workflow.basedir) / "config" / "config.yaml"):
    raise WorkflowError(_problem)


configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


report: "workflow/report/workflow.rst"  # snakemake --report results/report.html: tables and figures with captions


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/alignment.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/curves.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/beyond.smk"
include: "workflow/rules/claims.smk"


rule all:
    input:
        table_outputs(),
        alignment_outputs(),
        toy_outputs(),
        curve_outputs(),
        beyond_outputs(),
        claims_outputs(),
        f"{RESULTS}/README.md",
        rules.datasets_missing.output if MISSING_DATA and not PARTIAL else [],  # (partial: a build, not a run)
    default_target: True


onerror:
    # one screen at the end: which data was missing or failed to download, what is not built, how to fix it
    if data_report(final=True).count("\n"):
        print("\n" + data_report(final=True), file=sys.stderr)
