"""results/claims.{md,csv} (workflow/scripts/claims.py, issue 38): every verdict kind on runs the test writes
(genuine tiny runs, their numbers set per seed, read through the tables' audit), the statistics against slow
references (the t tail by numerical integration of the density, the permutation p by brute force over every
labelled permutation), and the Table S7 claims on a tidy table the test writes."""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cases import Job, workflow_script as script
from conftest import TINY

SMALL = {k: v for k, v in TINY.items() if k != "epochs"}  # the genuine runs' configuration (conftest)
EPOCHS = TINY["epochs"]


@pytest.fixture(scope="module")
def claims():
    return script("claims")


@pytest.fixture(scope="module")
def st(claims):
    import claims_stats  # (on sys.path once claims.py is loaded)

    return claims_stats


@pytest.fixture
def genuine(genuine_runs):
    """Genuine tiny runs of the bp and dfa test cells on MNIST (conftest.genuine_runs)."""
    return genuine_runs


def cell(genuine, results: Path, method: str, values: list[float]) -> None:
    """Seeds 1, 2, … of a cell whose test error (every epoch, so at the best validation epoch too) is each value."""
    for seed, value in enumerate(values, start=1):
        folder = results / "runs" / "test" / method / "mnist" / f"seed{seed}"
        shutil.copytree(genuine[method], folder)
        metrics = pd.read_csv(folder / "metrics.csv").assign(test_error=value)
        metrics.to_csv(folder / "metrics.csv", index=False)
        summary = json.loads((folder / "summary.json").read_text())
        summary.update(seed=seed, test_error_at_best_val=value, test_error_last=value)
        (folder / "summary.json").write_text(json.dumps(summary))
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        (folder / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": seed}, sort_keys=False))


def context(claims, results: Path):
    import claims_data

    table = {"tuning": "test", "quantity": "test_error_at_best_val", "rows": ["bp", "dfa"], "columns": ["mnist"]}
    return claims_data.Context(results, {"t": table}, [1, 2, 3], 42, {}, 3, SMALL, EPOCHS, "synthetic")


def spec(test="lower", a="bp", b="dfa", **extra) -> dict:
    return {"statistics": {"alpha": 0.05, "min_n": 3, "power_d": [2]},
            "claims": [{"id": "c", "where": "§4", "paper": "…", "claim": "a below b", "from": "t", "test": test,
                        "a": [a], "b": [b], "datasets": ["mnist"], **extra}]}


@pytest.mark.parametrize("bp, dfa, test, verdict", [
    ([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], "lower", "supported"),
    ([2.0, 2.1, 2.2], [1.0, 1.1, 1.2], "lower", "contradicted"),  # significant the other way
    ([1.0, 2.0, 1.5], [1.2, 1.9, 1.6], "lower", "not supported"),  # not significant
    ([1.0, 1.05, 1.1], [1.02, 1.07, 1.12], "equivalent", "supported"),  # within ±0.5
    ([1.0, 1.05, 1.1], [3.02, 3.07, 3.12], "equivalent", "contradicted"),  # 2 apart: beyond the margin
    ([1.0, 1.1, 1.2], [2.0, 2.1], "lower", "pending"),  # DFA: 2 of 3 seeds
])
def test_each_verdict_on_runs_the_test_writes(claims, genuine, tmp_path, bp, dfa, test, verdict):
    cell(genuine, tmp_path, "bp", bp)
    cell(genuine, tmp_path, "dfa", dfa)
    rows = claims.evaluate(spec(test, margin=0.5) if test == "equivalent" else spec(test), context(claims, tmp_path))
    r = rows.iloc[0]
    assert (r.verdict, r.claim_verdict) == (verdict, verdict)
    if verdict == "pending":
        assert r.claim_waits_for == "MNIST DFA (test-tuned): 2 of 3 seeds"
        return
    assert r.a_values == ";".join(map(repr, bp)) and (r.a_n, r.b_n) == (3, 3)
    assert r.a_mean == pytest.approx(sum(bp) / 3) and r.b_sd == pytest.approx(pd.Series(dfa).std())


def test_a_rejected_run_never_counts(claims, genuine, tmp_path):
    cell(genuine, tmp_path, "bp", [1.0, 1.1, 1.2])
    cell(genuine, tmp_path, "dfa", [2.0, 2.1, 2.2])
    folder = tmp_path / "runs" / "test" / "dfa" / "mnist" / "seed3"
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "test_error_at_best_val": 0.1}))  # an edited number
    r = claims.evaluate(spec(), context(claims, tmp_path)).iloc[0]
    assert r.verdict == "pending" and r.waits_for == "MNIST DFA (test-tuned): 2 of 3 seeds" and r.b_n == 2


def test_the_verdicts_can_be_recomputed_from_the_csv(claims, st, genuine, tmp_path):
    cell(genuine, tmp_path, "bp", [1.0, 1.3, 1.2])
    cell(genuine, tmp_path, "dfa", [1.5, 2.1, 1.7])
    rows = claims.evaluate(spec(), context(claims, tmp_path))
    out = {"md": tmp_path / "claims.md", "csv": tmp_path / "claims.csv"}
    rows.to_csv(out["csv"], index=False)
    r = next(csv.DictReader(open(out["csv"])))
    a, b = ([float(v) for v in r[k].split(";")] for k in ("a_values", "b_values"))
    _, _, p = st.welch(a, b)
    assert float(r["p_value"]) == pytest.approx(p, rel=1e-12)
    expected = "supported" if p <= float(r["alpha"]) else "contradicted" if float(r["p_opposite"]) <= float(
        r["alpha_opposite"]) else "not supported"
    assert r["verdict"] == expected == "supported"
    md = script("claims_report").markdown(rows, spec(), "synthetic", claims.counts(rows))
    assert "**1 of 1 claims tested: 1 supported, 0 not supported, 0 contradicted; 0 pending.**" in md
    assert "SYNTHETIC DATA, NOT A RESULT" in md and "1/20 = 0.05" in md


def t_tail_by_integration(t: float, df: float, steps: int = 20000) -> float:
    """P(T > t) by Simpson's rule on x = tan(θ), θ from atan(t) to π/2 (the density times sec²θ is finite)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def f(theta):
        if theta >= math.pi / 2:
            return c * df ** ((df + 1) / 2) if df == 1 else 0.0
        x = math.tan(theta)
        return c * (1 + x * x / df) ** (-(df + 1) / 2) / math.cos(theta) ** 2

    lo, hi = math.atan(t), math.pi / 2
    h = (hi - lo) / steps
    return h / 3 * (f(lo) + f(hi) + sum((4 if k % 2 else 2) * f(lo + k * h) for k in range(1, steps)))


@pytest.mark.parametrize("t, df", [(0.0, 2.0), (1.5, 2.0), (3.674, 4.0), (-2.0, 2.7), (5.0, 3.3), (0.3, 1.0),
                                   (2.5, 30.0)])
def test_the_t_tail_against_numerical_integration(st, t, df):
    assert st.t_sf(t, df) == pytest.approx(t_tail_by_integration(t, df), rel=1e-7, abs=1e-12)


def test_welch_and_hedges_against_their_formulas(st):
    t, df, p = st.welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])  # variances 1 and 1: t = −3/√(2/3), df = 4
    assert (t, df) == (pytest.approx(-3 / math.sqrt(2 / 3)), pytest.approx(4.0))
    assert p == pytest.approx(t_tail_by_integration(-t, 4.0), rel=1e-7)
    assert st.hedges_g([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(3.0 * (1 - 3 / 15))


@pytest.mark.parametrize("a, b", [([1.0, 1.1, 1.2], [2.0, 2.1, 2.2]), ([1.0, 2.5, 1.5], [1.2, 1.9, 1.6]),
                                  ([3.0, 1.0], [2.0, 2.0, 5.0]), ([1.0, 1.0, 2.0], [1.0, 2.0, 2.0])])
def test_the_permutation_p_against_every_labelled_permutation(st, a, b):
    pooled, k = a + b, len(a)
    observed = sum(a) / k - sum(b) / len(b)
    perms = list(itertools.permutations(pooled))  # 720 at 3 vs 3, each split counted k!(n−k)! times
    hits = sum(sum(p[:k]) / k - sum(p[k:]) / len(b) <= observed + 1e-12 for p in perms)
    assert st.permutation_p(a, b) == pytest.approx(hits / len(perms), rel=1e-12)
    if sorted(a)[-1] < sorted(b)[0] and len(a) == len(b) == 3:
        assert st.permutation_p(a, b) == pytest.approx(1 / 20)  # the smallest p at 3 vs 3


def test_tost_says_level_exactly_when_the_90_percent_interval_lies_inside_the_margin(st):
    a, b = [1.0, 1.2, 1.1], [1.05, 1.3, 1.2]
    t, df, _ = st.welch(a, b)
    diff = sum(a) / 3 - sum(b) / 3
    lo, hi = 0.0, 50.0  # the 95 % quantile of t(df), by bisection on the tail
    for _ in range(200):
        lo, hi = ((lo + hi) / 2, hi) if st.t_sf((lo + hi) / 2, df) > 0.05 else (lo, (lo + hi) / 2)
    edge = abs(diff) + lo * abs(diff / t)  # the far end of the 90 % interval of the difference
    stats = (sum(a) / 3, pd.Series(a).std(), 3, sum(b) / 3, pd.Series(b).std(), 3)
    for margin in (0.05, 0.2, edge - 1e-6, edge + 1e-6, 0.5):
        p, beyond = st.tost_stats(*stats, margin)
        assert (p <= 0.05) == (edge < margin), margin
        assert beyond > 0.05  # the difference (0.08) is never significantly beyond a margin ≥ 0.05


def test_table_s7_claims_count_selections_at_the_top(claims, tmp_path):
    rows = [{"method_slug": "ddtp-linear", "dataset_slug": "mnist", "status": "finished", "selected": 1.0,
             "paired_selected": 1.0, "paired_within_2se": "1", "grid_max": 10.0} for _ in range(5)]
    rows += [{"method_slug": "ddtp-rhl", "dataset_slug": "mnist", "status": "finished", "selected": 10.0,
              "paired_selected": 10.0, "paired_within_2se": "10", "grid_max": 10.0} for _ in range(4)]
    rows += [{"method_slug": "ddtp-rhl", "dataset_slug": "mnist", "status": "finished", "selected": 1.0,
              "paired_selected": 1.0, "paired_within_2se": "1;10", "grid_max": 10.0}]  # tied with the top
    rows += [{"method_slug": "dtpdrl", "dataset_slug": "mnist", "status": "finished", "selected": s,
              "paired_selected": s, "paired_within_2se": f"{s:g}", "grid_max": 10.0} for s in (10.0, 1.0, 1.0)]
    (tmp_path / "tables").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "tables" / "tableS7.csv", index=False)
    ctx = context(claims, tmp_path)
    s = {"statistics": {"alpha": 0.05, "min_n": 3, "power_d": [2]},
         "claims": [{"id": "s7", "where": "B.2", "paper": "…", "claim": "not top", "from": "tableS7", "test": "not_top",
                     "procedure": "paired", "a": ["ddtp-linear", "ddtp-rhl", "dtpdrl", "dfa"],
                     "datasets": ["mnist", "fashion-mnist"]}]}
    out = claims.evaluate(s, ctx)
    mnist = out[out.claim_id == "s7:mnist"].set_index("a")
    assert list(mnist.verdict) == ["supported", "contradicted", "not supported", "pending"]
    assert mnist.a_note["DDTP-RHL"] == "4 of 5 selections at the top, 1 tied with it (within 2 SE)"
    assert (mnist.claim_verdict == "contradicted").all()  # one method contradicts the claim about all of them
    fashion = out[out.claim_id == "s7:fashion-mnist"]
    assert (fashion.claim_verdict == "pending").all()
    assert "Fashion-MNIST DDTP-linear damping search (paired procedure)" in fashion.claim_waits_for.iloc[0]


def test_the_claims_file_is_valid_and_a_bad_claim_is_named(claims):
    from catalog_schema import catalog_schema, config_errors

    root = Path(__file__).resolve().parents[1]
    schema = catalog_schema(root / "workflow" / "schemas" / "claims.schema.yaml")
    good = yaml.safe_load((root / "config" / "claims.yaml").read_text())
    assert config_errors(good, schema) == []
    bad = spec()
    bad["claims"][0]["b"] = ["dtp-lin"]
    assert config_errors(bad, schema)[0].startswith("config key 'claims[0].b[0]': 'dtp-lin' is not one of")
    del bad["claims"][0]["b"]
    assert "'b' is a required property" in config_errors(bad, schema)[0]


def test_the_readme_gives_the_count_of_the_committed_claims(claims):
    root = Path(__file__).resolve().parents[1]
    count = claims.counts(pd.read_csv(root / "results" / "claims.csv"))
    assert count in (root / "README.md").read_text().replace("\n", " "), count
