# Training jobs.  The launcher runs `tp train` in a subprocess (launcher: local) or submits it to SLURM through
# submitit and waits for it (launcher: slurm).
#
# * rule `train`: one job per (tuning, method, dataset, seed);
# * seed blocks (`seed_block` > 1): the seeds of a table cell (MLP or CNN) are trained together, up to
#   `seed_block` at a time, in one process (`tp train --seeds`, replicas along a leading dimension; on an
#   H200 10 MNIST-network seeds cost about twice one seed).  Each block is its own rule whose outputs are the
#   block's per-seed summaries: the DAG still has one result folder per (tuning, method, dataset, seed), and
#   a seed's result equals its single-seed run up to rounding.  The alignment and damping runs (one seed)
#   stay single-seed jobs.
# Tuning "damping" is the damping search of Table S7, a tuning of tp.catalog like the others (the alignment
# configuration with the search switched on, which stops after its 3rd epoch, docs/algorithms.md#the-damping-search-table-s7).


def epochs_arg(wildcards):
    return _epochs_arg(wildcards.tuning)


def _epochs_arg(tuning):
    """`epochs` of the pipeline configuration shortens the runs of the tunings it may shorten (not the damping
    search's protocol epochs)."""
    if config.get("epochs") is None or not TUNING_OF[tuning].shortened:
        return ""
    return f"--epochs {config['epochs']}"


def data_flag(wildcards):
    # a finished run whose dataset flag is not there (a fresh clone of committed runs) needs nothing: no
    # download job, whose new ready flag would make every committed run "updated by another job".  Where the
    # flag is there the input stays the flag, so that the input set Snakemake recorded for the job is unchanged
    # (a changed set would rerun it).
    flag = Path(f"{RESULTS}/data/{DATA_OF[wildcards.dataset]}.ready")
    if not flag.exists() and Path(run_dir(wildcards.tuning, wildcards.method, wildcards.dataset, wildcards.seed),
                                  "summary.json").exists():
        return []
    return _data_flag(wildcards.dataset)


def _data_flag(dataset):
    # ancient: a download job that runs again (another data root, downloads switched off) does not make
    # finished training jobs stale
    return ancient(f"{RESULTS}/data/{DATA_OF[dataset]}.ready")


SETS = " ".join(f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in (config.get("overrides") or {}).items())
SLURM = " ".join(f"--slurm-{k.replace('_', '-')}={v}" for k, v in (config.get("slurm") or {}).items()
                 if v is not None and k != "additional_parameters")
SLURM_EXTRA = shlex.quote(json.dumps((config.get("slurm") or {}).get("additional_parameters") or {}))


rule train:
    input:
        data_flag,
    output:
        f"{RESULTS}/runs/{{tuning}}/{{method}}/{{dataset}}/seed{{seed}}/summary.json",
    log:
        f"{RESULTS}/logs/train/{{tuning}}/{{method}}/{{dataset}}/seed{{seed}}.log",
    threads: 1
    params:
        out=lambda w: run_dir(w.tuning, w.method, w.dataset, w.seed),
        epochs=epochs_arg,
        tuning=lambda w: w.tuning,
        sets=SETS,
        slurm=SLURM,
        slurm_extra=SLURM_EXTRA,
    shell:
        """
        OMP_NUM_THREADS={threads} {PYTHON} {LAUNCH:q} --launcher {config[launcher]} {params.slurm} \
            --slurm-additional-parameters {params.slurm_extra} -- \
            train --method {wildcards.method} --dataset {wildcards.dataset} --tuning {params.tuning} \
            --seed {wildcards.seed} --device {config[device]} --data-root {config[data][root]:q} \
            --source {config[data][source]} --no-download --no-progress --out {params.out} {params.epochs} {params.sets} \
            > {log} 2>&1
        """


for _block in SEED_BLOCKS:
    _tuning, _method, _dataset, _seeds = _block
    _spec = ",".join(map(str, _seeds))

    # like rule train: the settings that do not change a run's result (python, launcher, device, data root)
    # stay in the shell template, not in params, so that changing them does not rerun finished blocks
    rule:
        name:
            block_rule_name(_block)
        input:
            _data_flag(_dataset),
        output:
            [f"{run_dir(_tuning, _method, _dataset, s)}/summary.json" for s in _seeds],
        log:
            f"{RESULTS}/logs/train/{_tuning}/{_method}/{_dataset}/seeds{_spec.replace(',', '_')}.log",
        threads: 1
        params:
            method=_method,
            dataset=_dataset,
            seeds=_spec,
            # functions: the {seed} of --out is for tp, not for Snakemake's formatting
            out=lambda wildcards, out=run_dir(_tuning, _method, _dataset, "{seed}"): out,
            epochs=lambda wildcards, e=_epochs_arg(_tuning): e,
            tuning=_tuning,
            sets=SETS,
            slurm=SLURM,
            slurm_extra=SLURM_EXTRA,
        shell:
            """
            OMP_NUM_THREADS={threads} {PYTHON} {LAUNCH:q} --launcher {config[launcher]} {params.slurm} \
                --slurm-additional-parameters {params.slurm_extra} -- \
                train --method {params.method} --dataset {params.dataset} --tuning {params.tuning} \
                --seeds {params.seeds} --device {config[device]} --data-root {config[data][root]:q} \
                --source {config[data][source]} --no-download --no-progress --out {params.out:q} {params.epochs} \
                {params.sets} > {log} 2>&1
            """

    workflow.ruleorder(block_rule_name(_block), "train")  # its seeds' summaries come from the block
