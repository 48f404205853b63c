"""results/claims.{md,csv}: the paper's claims (config/claims.yaml), each tested on the committed runs.

A claim is one or more comparisons (``a`` against each of ``b``, on one dataset), each with its own test; the
CSV has one row per comparison (the claim's columns repeated), with the per-unit values on both sides, so that
every verdict can be recomputed from it.  Verdicts (docs/pipeline.md, "The paper's claims, tested"):

* a comparison: *pending* while a side has fewer than ``min_n`` units (what it waits for is named);
  *supported* when the one-sided Welch test of the claimed direction has p ≤ α; *contradicted* when the test of
  the opposite direction has p ≤ α / k (k: the claim's comparisons, Bonferroni); else *not supported*.
  ``equivalent``: supported when both one-sided tests of TOST reject (p ≤ α), contradicted when the difference
  lies beyond the margin (p ≤ α / k).  ``not_top``: counts of the damping searches' selections at the top of
  their grid (supported: none; contradicted: more than half; else not supported);
* a claim: contradicted if one of its comparisons is; else pending if one is; else supported if all are
  (an intersection–union test: the claim holds at level α with no correction); else not supported.
"""


import math
import sys
from pathlib import Path

import pandas as pd
import yaml

# its sibling modules first (Snakemake runs a copy of this file, and appends the scripts' folder to sys.path last)
sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir) if "snakemake" in globals()
                       else Path(__file__).resolve().parent))
import claims_data as data  # noqa: E402
import claims_stats as st  # noqa: E402
from tables import QUANTITY  # noqa: E402
from tp.metrics.alignment import DAMPING_CANDIDATES  # noqa: E402
from tp.catalog import DATASETS  # noqa: E402

VERDICTS = ("supported", "not supported", "contradicted", "pending")
COLUMNS = ["claim_id", "where", "paper", "claim", "claim_verdict", "claim_waits_for", "comparison", "dataset", "quantity",
           "scale", "test", "a", "a_n", "a_mean", "a_sd", "a_values", "a_note", "b", "b_n", "b_mean", "b_sd", "b_values",
           "b_note", "statistic", "df", "p_value", "p_opposite", "alpha", "alpha_opposite", "hedges_g", "p_permutation",
           "margin", "verdict", "waits_for"]


def expand(spec: dict) -> list[dict]:
    """One claim per dataset of a claim definition (id ``ID:DATASET``); a toy claim has none."""
    return [dict(spec, dataset=d, id=f"{spec['id']}:{d}") for d in spec["datasets"]] if spec.get("datasets") \
        else [dict(spec, dataset=None)]


def quantity(claim: dict, ctx: data.Context) -> str:
    if claim["from"] in ctx.tables:
        return QUANTITY[ctx.tables[claim["from"]]["quantity"]][0]
    return {"fig2": f"null-space ratio, layer {claim.get('layer')}", "tableS7": f"selected λ ({claim.get('procedure')})",
            "alignment": f"angle (°) with the {'damped GNT update' if claim.get('reference') == 'gnt' else 'BP gradient'}"
            }[claim["from"]]


def side(claim: dict, method: str, ctx: data.Context) -> data.Side:
    src, d = claim["from"], claim["dataset"]
    if src in ctx.tables:
        return data.table_side(ctx, src, method, d)
    if src == "fig2":
        return data.fig2_side(ctx, method, claim["layer"])
    return data.alignment_side(ctx, method, d, claim["reference"])


def _join(values) -> str:
    return ";".join(repr(float(v)) for v in values)


def compare(claim: dict, a: data.Side, b: data.Side, alpha: float, k: int) -> dict:
    """One comparison: the test, its p-values, effect size and verdict."""
    test, scale = claim["test"], claim.get("scale", "linear")
    row = {"test": {"lower": "one-sided Welch t-test (a < b)", "higher": "one-sided Welch t-test (a > b)",
                    "equivalent": f"TOST, two one-sided Welch t-tests, margin ±{claim.get('margin')}"}[test],
           "alpha": alpha, "alpha_opposite": alpha / k, "margin": claim.get("margin", math.nan)}
    waits = [s.waits for s in (a, b) if s.waits]
    if waits:
        return row | {"verdict": "pending", "waits_for": "; ".join(waits)}
    f = (lambda v: [math.log10(x) for x in v]) if scale == "log10" else list
    va, vb = f(a.values), f(b.values)
    stats = (st.fmean(va), st.stdev(va), len(va)) if va else (a.mean, a.sd, a.n)
    stats_b = (st.fmean(vb), st.stdev(vb), len(vb)) if vb else (b.mean, b.sd, b.n)
    if test == "equivalent":
        p, p_opp = st.tost_stats(*stats, *stats_b, claim["margin"])
        t, df, _ = st.welch_stats(*stats, *stats_b)
        g, perm = st.hedges_g_stats(*stats, *stats_b), math.nan
    else:
        t, df, p_less = st.welch_stats(*stats, *stats_b)
        g = st.hedges_g_stats(*stats, *stats_b)
        perm = st.permutation_p(va, vb) if va and vb else math.nan
        p, p_opp = p_less, (1.0 - p_less if math.isnan(df) else st.t_sf(t, df))
        if test == "higher":
            p, p_opp, g = p_opp, p, -g
            perm = st.permutation_p(vb, va) if va and vb else math.nan
    verdict = "supported" if p <= alpha else "contradicted" if p_opp <= alpha / k else "not supported"
    return row | {"statistic": t, "df": df, "p_value": p, "p_opposite": p_opp, "hedges_g": g, "p_permutation": perm,
                  "verdict": verdict, "waits_for": ""}


def not_top(claim: dict, method: str, ctx: data.Context) -> dict:
    """Table S7: how many of a method's selections (seeds × hidden layers) are the highest λ of their grid.
    Paired: a selection is at the top when λ* is and no lower λ is within 2 SE of it, tied when the top and a
    lower λ are both within 2 SE, below when the top is not within 2 SE."""
    s, rows = data.s7_selections(ctx, method, claim["dataset"], claim["procedure"])
    row = {"a": s.label, "a_n": s.n, "a_values": _join(s.values), "quantity": quantity(claim, ctx),
           "test": "count of selections at the top of the grid (no test: a selection is not a sample)"}
    if s.waits:
        return row | {"verdict": "pending", "waits_for": s.waits}
    tops = rows["grid_max"] if "grid_max" in rows else pd.Series(max(DAMPING_CANDIDATES), index=rows.index)
    if claim["procedure"] == "paired":
        within = [{float(x) for x in str(w).split(";") if x not in ("", "nan")} for w in rows.paired_within_2se]
        at = [lam == top and w <= {top} for lam, top, w in zip(rows.paired_selected, tops, within)]
        tied = [top in w and len(w) > 1 for top, w in zip(tops, within)]
        row["b_values"] = ";".join("|".join(f"{x:g}" for x in sorted(w)) for w in within)
    else:
        at, tied = list(rows.selected == tops), [False] * len(rows)
    n_top, n_tied, m = sum(at), sum(tied), len(rows)
    verdict = "supported" if n_top == 0 and n_tied == 0 else "contradicted" if n_top > m / 2 else "not supported"
    return row | {"b": f"the highest λ of the grid ({', '.join(f'{v:g}' for v in sorted(set(tops)))})",
                  "statistic": n_top / m, "verdict": verdict, "waits_for": "",
                  "a_note": f"{n_top} of {m} selections at the top" + (f", {n_tied} tied with it (within 2 SE)"
                                                                        if n_tied else "")}


def evaluate(spec: dict, ctx: data.Context) -> pd.DataFrame:
    alpha = spec["statistics"]["alpha"]
    out = []
    for definition in spec["claims"]:
        for claim in expand(definition):
            head = {"claim_id": claim["id"], "where": claim["where"], "paper": claim["paper"],
                    "claim": (f"{DATASETS[claim['dataset']].paper_name}: " if claim["dataset"] else "") + claim["claim"],
                    "dataset": DATASETS[claim["dataset"]].paper_name if claim["dataset"] else "toy",
                    "scale": claim.get("scale", "linear")}
            if claim["test"] == "not_top":
                rows = [head | {"comparison": f"{data.name(m)}: not the top λ"} | not_top(claim, m, ctx)
                        for m in claim["a"]]
            else:
                pairs = [(m, n) for m in claim["a"] for n in claim["b"]]
                rows = []
                for m, n in pairs:
                    a, b = side(claim, m, ctx), side(claim, n, ctx)
                    sign = {"lower": "<", "higher": ">", "equivalent": "≈"}[claim["test"]]
                    rows.append(head | {"comparison": f"{a.label} {sign} {b.label}", "quantity": quantity(claim, ctx),
                                        "a": a.label, "a_n": a.n, "a_mean": a.mean, "a_sd": a.sd,
                                        "a_values": _join(a.values), "a_note": a.note, "b": b.label, "b_n": b.n,
                                        "b_mean": b.mean, "b_sd": b.sd, "b_values": _join(b.values), "b_note": b.note}
                                | compare(claim, a, b, alpha, len(pairs)))
            out += [r | claim_verdict(rows) for r in rows]
    return pd.DataFrame(out, columns=COLUMNS)


def claim_verdict(rows: list[dict]) -> dict:
    verdicts = [r["verdict"] for r in rows]
    waits = "; ".join(dict.fromkeys(w for r in rows if r["waits_for"] for w in r["waits_for"].split("; ")))
    for v in ("contradicted", "pending"):
        if v in verdicts:
            return {"claim_verdict": v, "claim_waits_for": waits}
    return {"claim_verdict": "supported" if set(verdicts) == {"supported"} else "not supported", "claim_waits_for": ""}


def counts(claims: pd.DataFrame) -> str:
    """"9 of 14 claims tested: 7 supported, 1 not supported, 1 contradicted; 5 pending" (one row per claim)."""
    per = claims.drop_duplicates("claim_id").claim_verdict.value_counts()
    tested = len(claims.drop_duplicates("claim_id")) - int(per.get("pending", 0))
    return (f"{tested} of {len(claims.drop_duplicates('claim_id'))} claims tested: "
            + ", ".join(f"{int(per.get(v, 0))} {v}" for v in VERDICTS[:3]) + f"; {int(per.get('pending', 0))} pending")


def main(sm) -> None:
    import claims_report
    from catalog_schema import catalog_schema, config_errors

    spec = yaml.safe_load(Path(sm.input.claims).read_text())
    errors = config_errors(spec, catalog_schema(Path(sm.params.schema)))
    if errors:
        raise ValueError(f"{sm.input.claims}:\n  " + "\n  ".join(errors))
    p = sm.params
    sources = list(p.tables) + ["fig2", "alignment", "tableS7"]
    for c in spec["claims"]:
        if c["from"] not in sources:
            raise ValueError(f"{sm.input.claims}: claim {c['id']!r}: from {c['from']!r} is not one of {', '.join(sources)}")
    ctx = data.Context(Path(p.results), p.tables, p.seeds, p.align_seed, dict(p.missing),
                       spec["statistics"]["min_n"], p.overrides, p.epochs, p.source)
    claims = evaluate(spec, ctx)
    claims.to_csv(sm.output.csv, index=False)
    Path(sm.output.md).write_text(claims_report.markdown(claims, spec, p.source, counts(claims)))


if __name__ == "__main__":
    import contextlib

    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # noqa: F821
        main(snakemake)  # noqa: F821
