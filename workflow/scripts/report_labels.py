"""The labels of a report entry (``snakemake --report``), from the run summaries behind it.

Snakemake's report lists a category's entries in a sidebar as wide as their labels; at 1400 pixels, four code
versions and three device names left the opened table about 80 pixels.  A label therefore holds one value, or
the count of the distinct ones when several (the table's notes and ``results/README.md`` list them all), and a
device is named by its model only (:func:`device_model`; with full device names the Tables sidebar took 980 of
1400 pixels and Table 1's cells wrapped onto three lines: docs/pipeline.md, "The report").
"""

from __future__ import annotations


def one_or_count(values, noun: str) -> str:
    """The value when all are one (``None`` left out), else "N NOUNs (see notes)"; "" when there is none."""
    distinct = sorted({str(v) for v in values if v is not None})
    if len(distinct) <= 1:
        return distinct[0] if distinct else ""
    return f"{len(distinct)} {noun}s (see notes)"


def device_model(name: str | None) -> str | None:
    """The short name of a recorded device, for the label (the full name, threads included, is in the notes):
    "AMD EPYC, x86_64 CPU (1 threads)" → "AMD EPYC", "Intel(R) Xeon(R) Processor, …" → "Intel Xeon", a CPU
    without a model name ("x86_64 CPU (1 threads)") → "CPU", "NVIDIA H200" as it is."""
    import re

    if not name:
        return None
    first = str(name).split(",")[0]
    if re.fullmatch(r"\S+ CPU \(.*\)", first.strip()):
        return "CPU"
    first = re.sub(r"\((R|TM)\)| Processor\b| CPU\b", "", first)
    return " ".join(first.split()) or "CPU"


def paper_order(paper: str) -> str:
    """A key that sorts the report's entries in the paper's order as text (the report sorts its first label
    column with JavaScript's ``localeCompare``, which puts "Table S10" before "Table S6"): the main text's
    tables and figures by number, then the supplement's, then anything else (learning curves, beyond the
    paper) by their first word.  ``Table 1`` → ``T0-01``, ``Table S10`` → ``T1-10``, ``Fig. S4`` → ``F1-04``,
    ``beyond the paper`` → ``Z-beyond``."""
    import re

    m = re.match(r"(Table|Fig\.) (S?)(\d+)", paper)
    if not m:
        return f"Z-{paper.split()[0][:8]}"  # after the paper's items; short: the sidebar is as wide as its labels
    return f"{'T' if m.group(1) == 'Table' else 'F'}{1 if m.group(2) else 0}-{int(m.group(3)):02d}"


def labels(paper: str, runs: list[dict], configured_source: str) -> dict:
    """The paper's order (:func:`paper_order`, first: the report sorts by it), which paper table or figure, the
    data source (the runs' own record first), the number of runs, epochs, code version and device."""
    if not runs:
        return {"order": paper_order(paper), "paper": paper, "data": configured_source}
    return {"order": paper_order(paper), "paper": paper,
            "data": one_or_count([r.get("data_source") for r in runs], "source") or configured_source,
            "runs": len(runs),
            "epochs": one_or_count([r["config"]["epochs"] for r in runs], "value"),
            "code version": one_or_count([str(r["code_version"])[:12] if r.get("code_version") else None
                                          for r in runs], "version"),
            "device": one_or_count([device_model(r.get("device_name")) for r in runs], "device")}
