# The hyperparameter search (tp search, TPE on Optuna) as a pipeline target, outside the default target:
#
#   snakemake search --cores 2 --config 'search={"method": "ddtp-linear", "dataset": "mnist", "trials": 200, "block": 20}'
#   snakemake search --profile slurm --config 'search={"method": ..., "dataset": ..., "workers": 8}'
#
# `workers` jobs (each a SLURM job with --profile slurm) share one Optuna journal file on the results folder
# and take trials from it until the study holds `trials` ended ones; then `search_outputs` writes trials.csv,
# best.yaml and the plots into RESULTS/search/METHOD/DATASET/TUNING/.  An interrupted search resumes from
# the journal (a killed trial is asked again and resumes from its checkpoint).  No learning logic here.

SEARCH_DEFAULTS = {"tuning": "test", "trials": 20, "block": 1, "workers": 1, "epochs": None, "seed": 0,
                   "sampler_seed": 0}
SEARCH = {**SEARCH_DEFAULTS, **(config.get("search") or {})}


def search_dir():
    return f"{RESULTS}/search/{SEARCH['method']}/{SEARCH['dataset']}/{SEARCH['tuning']}"


def search_args():
    s = SEARCH
    args = (f"--method {s['method']} --dataset {s['dataset']} --tuning {s['tuning']} --trials {s['trials']} "
            f"--block {s['block']} --seed {s['seed']} --sampler-seed {s['sampler_seed']} "
            f"--storage journal:{search_dir()}/study.journal --out {search_dir()}")
    return args + ("" if s["epochs"] is None else f" --epochs {s['epochs']}")


def search_outputs():
    if "method" not in SEARCH or "dataset" not in SEARCH:
        raise ValueError("snakemake search needs --config 'search={\"method\": M, \"dataset\": D, ...}' "
                         f"(keys: method, dataset, {', '.join(SEARCH_DEFAULTS)})")
    return [f"{search_dir()}/trials.csv", f"{search_dir()}/best.yaml",
            *(f"{search_dir()}/{name}.{ext}" for name in ("history", "importances") for ext in ("png", "pdf"))]


if config.get("search"):
    try:  # the search's fixed values and the pipeline's overrides, checked before any job runs
        resolve_config(SEARCH["method"], SEARCH["dataset"], SEARCH["tuning"], config.get("overrides") or {})
    except ConfigError as exc:
        raise ValueError(f"config: search: {exc}") from None


localrules:
    search,
    search_outputs,


rule search:
    input:
        lambda wildcards: search_outputs(),


rule search_worker:
    input:
        lambda wildcards: _data_flag(SEARCH["dataset"]),
    output:
        f"{RESULTS}/search/{{method}}/{{dataset}}/{{tuning}}/workers/w{{worker}}/summary.json",
    log:
        f"{RESULTS}/logs/search/{{method}}/{{dataset}}/{{tuning}}/w{{worker}}.log",
    wildcard_constraints:
        worker=r"\d+",
    threads: 1
    params:
        args=lambda wildcards: search_args(),
        sets=SETS,
        slurm=SLURM,
        slurm_extra=SLURM_EXTRA,
    shell:
        """
        OMP_NUM_THREADS={threads} {PYTHON} {LAUNCH:q} --launcher {config[launcher]} {params.slurm} \
            --slurm-additional-parameters {params.slurm_extra} -- \
            search {params.args} --worker w{wildcards.worker} --device {config[device]} \
            --data-root {config[data][root]:q} --source {config[data][source]} --no-download {params.sets} \
            > {log} 2>&1
        """


rule search_outputs:
    input:
        lambda wildcards: [f"{search_dir()}/workers/w{k}/summary.json" for k in range(int(SEARCH["workers"]))],
    output:
        f"{RESULTS}/search/{{method}}/{{dataset}}/{{tuning}}/trials.csv",
        f"{RESULTS}/search/{{method}}/{{dataset}}/{{tuning}}/best.yaml",
        expand(f"{RESULTS}/search/{{{{method}}}}/{{{{dataset}}}}/{{{{tuning}}}}/{{name}}.{{ext}}",
               name=["history", "importances"], ext=["png", "pdf"]),
    log:
        f"{RESULTS}/logs/search/{{method}}/{{dataset}}/{{tuning}}/outputs.log",
    params:
        args=lambda wildcards: search_args(),
        sets=SETS,
    shell:
        "{PYTHON} -m tp search {params.args} {params.sets} --trials 0 > {log} 2>&1"
