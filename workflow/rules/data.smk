# One download job per dataset, on the submit host, before any of its training jobs.


localrules:
    download,


rule download:
    output:
        f"{RESULTS}/data/{{data}}.ready",
    log:
        f"{RESULTS}/logs/download/{{data}}.log",
    params:
        root=config["data"]["root"],
        flag="--download" if config["data"]["download"] else "--no-download",
        synthetic=config["data"]["source"] == "synthetic",
    shell:
        """
        if [ "{params.synthetic}" = "True" ]; then
            echo "synthetic data: nothing to download" > {log}
        else
            {PYTHON} -m tp download --dataset {wildcards.data} --data-root {params.root:q} {params.flag} > {log} 2>&1
        fi
        echo "{wildcards.data} ({config[data][source]}) in {params.root}" > {output}
        """
