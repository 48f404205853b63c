# results/claims.{md,csv}: the paper's claims (config key `claims`, config/claims.yaml), each tested on the runs the
# tables audited (workflow/scripts/claims.py; docs/pipeline.md, "The paper's claims, tested").  Cheap: a local rule.
# Its inputs are what it reads: the tables' tidy CSVs (a run added or changed rebuilds its table, then this),
# Table S7's, Fig. 2's summary and the alignment runs; and the claims file itself.


localrules:
    claims,


CLAIMS_FILE = Path(workflow.basedir) / config["claims"] if config.get("claims") else None


def claims_list():
    return (yaml.safe_load(CLAIMS_FILE.read_text()) or {}).get("claims") or []


def claims_inputs(wildcards):
    sources = {c.get("from") for c in claims_list()}
    out = [f"{RESULTS}/tables/{name}.csv" for name in list(config["tables"]) + list(BEYOND_TABLES) if name in sources]
    if "tableS7" in sources:
        out += [p for p in alignment_outputs() if p.endswith("tableS7.csv")]
    if "fig2" in sources:
        out.append(rules.toy_figures.output.fig2_summary)
    aligned = {(m, d) for c in claims_list() if c.get("from") == "alignment" for d in c.get("datasets") or []
               for m in (c.get("a") or []) + (c.get("b") or [])}  # the alignment runs the claims compare
    out += wanted(f"{run_dir('alignment', m, d, ALIGN['seed'])}/summary.json" for m, d in ALIGN_CELLS if (m, d) in aligned)
    return out


def claims_outputs():
    return [f"{RESULTS}/claims.md", f"{RESULTS}/claims.csv"] if CLAIMS_FILE else []


rule claims:
    input:
        claims=str(CLAIMS_FILE),
        numbers=claims_inputs,
    output:
        md=f"{RESULTS}/claims.md",
        csv=f"{RESULTS}/claims.csv",
    log:
        f"{RESULTS}/logs/claims.log",
    params:
        schema=str(Path(workflow.basedir) / "workflow" / "schemas" / "claims.schema.yaml"),
        results=RESULTS,
        tables={**config["tables"], **BEYOND_TABLES},
        seeds=config["seeds"],
        align_seed=ALIGN["seed"],
        missing=[[d, not_run_reason(d)] for d in DATASETS if not usable(d)],
        source=config["data"]["source"],
        # what the audit expects every run to record (tp.runs.audit.expected_config), as for the tables
        overrides=config.get("overrides") or {},
        epochs=config.get("epochs"),
    script:
        "../scripts/claims.py"
