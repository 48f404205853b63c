"""The Markdown of results/claims.md from the comparisons of workflow/scripts/claims.py: the count, how the
claims are tested (with the power at n = min_n), one row per claim, then one row per comparison."""

from __future__ import annotations

import math

import pandas as pd

import claims_stats as st

MARK = {"supported": "✅ supported", "not supported": "⚪ not supported", "contradicted": "❌ contradicted",
        "pending": "⏳ pending"}


def _num(v, fmt="{:.3g}") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _side(r, s: str) -> str:
    if str(r["test"]).startswith("count"):  # Table S7: selections, not a sample
        text = r["a_note"] if s == "a" else r["b"]
        return text if isinstance(text, str) and text else "—"
    if r[f"{s}_n"] != r[f"{s}_n"] or not r[f"{s}_n"]:
        return "—"
    fmt = "{:.3g}" if "loss" in str(r["quantity"]) or "null" in str(r["quantity"]) else "{:.2f}"
    value = _num(r[f"{s}_mean"], fmt) + (f" ± {_num(r[f'{s}_sd'], fmt)}" if r[f"{s}_sd"] == r[f"{s}_sd"] else "")
    note = f"; {r[f'{s}_note']}" if isinstance(r[f"{s}_note"], str) and r[f"{s}_note"] else ""
    return f"{value} (n={int(r[f'{s}_n'])}{note})"


def method_text(spec: dict, source: str) -> list[str]:
    s = spec["statistics"]
    alpha, n = s["alpha"], s["min_n"]
    powers = [(d, *st.power(d, n, alpha)) for d in s["power_d"]]
    return [
        "## How the claims are tested", "",
        f"* **Units and pending.** A side of a comparison is a method on a dataset: its seeds' runs (audited as the "
        f"tables audit them: a rejected run never counts; a diverged or pruned run counts as done but gives no value, "
        f"as in the tables), Fig. 2's logged samples, or an alignment run's epochs. A side with fewer than {n} "
        "units is **pending**, and the claim names the runs it waits for.",
        f"* **Test.** One-sided Welch t-test (unequal variances, Welch–Satterthwaite degrees of freedom) at "
        f"α = {alpha}: a comparison is **supported** when the claimed direction has p ≤ α. Training losses are "
        "tested on log10 (they span decades; the table shows the raw means). Effect size: Hedges' g on the tested "
        "scale (pooled sd, small-sample corrected; positive = the claimed direction). The exact permutation p over all splits of the "
        f"pooled values is shown beside it as a distribution-free check: at {n} vs {n} there are "
        f"{math.comb(2 * n, n)} splits, so its smallest one-sided p is 1/{math.comb(2 * n, n)} = "
        f"{1 / math.comb(2 * n, n):.3g}, reached only when every value of one side lies below every value of the other.",
        "* **A claim of several comparisons** (a method against DTP *and* the controls) is supported when every "
        "comparison is (an intersection–union test: level α with no correction), **contradicted** when one "
        "comparison is significant the other way at α / k (k comparisons, Bonferroni), **pending** while one waits "
        "for runs, and otherwise **not supported** (not significant).",
        "* **Level with** (Table S6) is an equivalence claim: two one-sided Welch tests (TOST) that the difference "
        "lies within the stated margin, each at α; contradicted when the difference lies beyond the margin (p ≤ α). "
        "A difference that is merely not significant does not make two methods level.",
        "* **Table S7** (not the highest damping) counts the selections (seeds × hidden layers) at the highest λ of "
        "their search's grid: supported when none is, contradicted when more than half are, else not supported. "
        "Paired procedure: a selection is at the top when λ* is and no lower λ lies within 2 SE of it; tied when the "
        "top and a lower λ are both within 2 SE (not supported).",
        "* **Fig. 2 and Fig. 4** come from one run per method (the paper's too): their units are the logged samples "
        "(Fig. 2) or the epochs of one run (Fig. 4), not seeds, and they are autocorrelated: a small p there says "
        "the two curves differ in that run, not that the difference replicates across seeds.",
        f"* **Power at n = {n} per side** (one-sided, α = {alpha}, normal values, means d sd apart; Monte Carlo, "
        "4,000 draws): " + "; ".join(f"d = {d:g}: Welch {pw:.2f}, permutation {pp:.2f}" for d, pw, pp in powers)
        + ". So a \"not supported\" at n = 3 is weak evidence against a claim: only large effects are detected.",
        "", f"Data: {'SYNTHETIC (a smoke run: not a result)' if source == 'synthetic' else 'the committed runs'}; "
        "every verdict can be recomputed from `claims.csv` (one row per comparison, with the per-unit values).", ""]


def markdown(claims: pd.DataFrame, spec: dict, source: str, count: str) -> str:
    title = "# The paper's claims, tested" + (" — SYNTHETIC DATA, NOT A RESULT" if source == "synthetic" else "")
    lines = [title, "", f"**{count}.** Written by the pipeline (workflow/scripts/claims.py) from the runs under "
             "`runs/`, the claims of `config/claims.yaml`.", ""]
    summary = []
    for cid, g in claims.groupby("claim_id", sort=False):
        r = g.iloc[0]
        tested = g[g.verdict != "pending"]
        worst = tested.p_value.max() if len(tested) and tested.p_value.notna().any() else math.nan
        evidence = (f"{(g.verdict == 'supported').sum()} of {len(g)} comparisons supported"
                    + (f"; largest p {_num(worst)}" if worst == worst else ""))
        summary.append({"claim": f"{r.claim} ({r['where']})", "the paper": f"\"{r.paper}\"",
                        "verdict": MARK[r.claim_verdict], "evidence": evidence,
                        "waits for": r.claim_waits_for if isinstance(r.claim_waits_for, str) else ""})
    lines += ["## Claims", "", pd.DataFrame(summary).to_markdown(index=False), ""]
    details = [{"claim": r["claim_id"], "comparison": r["comparison"], "quantity": r["quantity"], "a": _side(r, "a"),
                "b": _side(r, "b"), "p": _num(r["p_value"]), "p (other way)": _num(r["p_opposite"]),
                "Hedges' g": _num(r["hedges_g"]), "permutation p": _num(r["p_permutation"]),
                "verdict": r["verdict"] + (f": {r['waits_for']}" if isinstance(r["waits_for"], str) and r["waits_for"]
                                           else "")
}
               for r in claims.to_dict("records")]
    lines += ["## Comparisons", "", pd.DataFrame(details).to_markdown(index=False), ""]
    return "\n".join(lines + method_text(spec, source))
