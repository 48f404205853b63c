# One download job per dataset, on the submit host, before any of its training jobs; `fetch_data` is the
# download jobs alone (`make data`).  A dataset that is missing while downloads are off (data.download: false)
# has no download job: its cells are left out of the DAG (the tables mark them "not run: dataset missing") and
# the run ends with `datasets_missing`, which fails after everything else is built, so that the exit status
# says the reproduction is incomplete; the summary (onerror in the Snakefile) says what to do.


localrules:
    download,
    fetch_data,


DATACHECK = str(Path(workflow.basedir) / "workflow" / "scripts" / "datacheck.py")
# in the shell template, not in params: `make reproduce` calls Snakemake with downloads on, then off, and a
# changed param would rerun the download jobs (the training jobs read the ready flag as ancient: never rerun
# because of it)
DOWNLOAD_FLAG = "--download" if config["data"]["download"] else "--no-download"


rule download:
    output:
        f"{RESULTS}/data/{{data}}.ready",
    log:
        f"{RESULTS}/logs/download/{{data}}.log",
    params:
        synthetic=config["data"]["source"] == "synthetic",
    shell:
        """
        if [ "{params.synthetic}" = "True" ]; then
            echo "synthetic data: nothing to download" > {log}
        elif ! {PYTHON} -m tp download --dataset {wildcards.data} --data-root {config[data][root]:q} {DOWNLOAD_FLAG} \
                > {log} 2>&1; then
            {PYTHON} {DATACHECK:q} hint {wildcards.data} {config[data][root]:q} {log:q}  # the reason, on the console
            exit 1
        fi
        echo "{wildcards.data} ({config[data][source]}) in {config[data][root]}" > {output}
        """


rule fetch_data:
    input:
        [f"{RESULTS}/data/{d}.ready" for d in USABLE_DATA],
