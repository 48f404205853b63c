# One training job per (tuning, method, dataset, seed).  The launcher runs `tp train` in a subprocess
# (launcher: local) or submits it to SLURM through submitit and waits for it (launcher: slurm).
# tuning "damping" is the damping search of Table S7: the alignment configuration with
# gn_damping_hpsearch, which stops after its 3rd epoch (SPEC §7.2).


def tp_tuning(wildcards):
    return "alignment" if wildcards.tuning == "damping" else wildcards.tuning


def epochs_arg(wildcards):
    if wildcards.tuning == "damping":
        return "--epochs 3 --set gn_damping_hpsearch=true"
    return "" if config.get("epochs") is None else f"--epochs {config['epochs']}"


def data_flag(wildcards):
    return f"{RESULTS}/data/{DATA_OF[wildcards.dataset]}.ready"


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
        tuning=tp_tuning,
        sets=" ".join(f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in (config.get("overrides") or {}).items()),
        slurm=lambda w: " ".join(
            f"--slurm-{k.replace('_', '-')}={v}" for k, v in (config.get("slurm") or {}).items()
            if v is not None and k != "additional_parameters"),
        slurm_extra=shlex.quote(json.dumps((config.get("slurm") or {}).get("additional_parameters") or {})),
    shell:
        """
        OMP_NUM_THREADS={threads} {PYTHON} {LAUNCH:q} --launcher {config[launcher]} {params.slurm} \
            --slurm-additional-parameters {params.slurm_extra} -- \
            train --method {wildcards.method} --dataset {wildcards.dataset} --tuning {params.tuning} \
            --seed {wildcards.seed} --device {config[device]} --data-root {config[data][root]:q} \
            --source {config[data][source]} --no-download --no-progress --out {params.out} {params.epochs} {params.sets} \
            > {log} 2>&1
        """
