"""The statistics of results/claims.md (workflow/scripts/claims.py), in plain Python: no SciPy.

* Welch's t-test (unequal variances, Welch–Satterthwaite degrees of freedom), one-sided; the Student t
  distribution through the regularized incomplete beta function,
  P(T > t) = ½ I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0 (Abramowitz & Stegun 26.7.1, 26.5.27),
  I evaluated by its continued fraction (A&S 26.5.8, modified Lentz).
* Hedges' g: Cohen's d with the pooled standard deviation times J = 1 − 3 / (4(n_a + n_b) − 9).
* The exact permutation test of the difference in means: every split of the pooled values into groups of
  n_a and n_b (C(n_a + n_b, n_a) of them; 20 at 3 vs 3, so its smallest one-sided p is 1/20 = 0.05).
* Two one-sided tests (TOST) for equivalence within a margin δ, on Welch's statistic.
* The power of both tests at n vs n for a normal shift of d standard deviations (Monte Carlo, fixed seed).

The tests (tests/test_claims.py) compare them with slow references: the t tail by numerical integration of
the density, the permutation p by brute force over labelled permutations.
"""

from __future__ import annotations

import itertools
import math
from statistics import fmean, stdev


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), 0 ≤ x ≤ 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast below this point
        return 1.0 - betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (df > 0, not necessarily an integer)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def welch_stats(mean_a, sd_a, n_a, mean_b, sd_b, n_b) -> tuple[float, float, float]:
    """Welch's t of mean_a − mean_b, its degrees of freedom and its one-sided p for "a < b" (P(T ≤ t))."""
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = math.sqrt(va + vb)
    diff = mean_a - mean_b
    if se == 0.0:  # no spread on either side: the sign decides
        return (math.copysign(math.inf, diff) if diff else 0.0), math.nan, (0.0 if diff < 0 else 1.0 if diff > 0 else 0.5)
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    t = diff / se
    return t, df, t_sf(-t, df)  # P(T ≤ t) = P(T ≥ −t), without the cancellation of 1 − P(T > t)


def welch(a, b) -> tuple[float, float, float]:
    """:func:`welch_stats` of two samples (each at least 2 values)."""
    return welch_stats(fmean(a), stdev(a), len(a), fmean(b), stdev(b), len(b))


def hedges_g_stats(mean_a, sd_a, n_a, mean_b, sd_b, n_b) -> float:
    """Hedges' g of mean_b − mean_a (positive when a is lower)."""
    pooled = math.sqrt(((n_a - 1) * sd_a ** 2 + (n_b - 1) * sd_b ** 2) / (n_a + n_b - 2))
    if pooled == 0.0:
        return math.nan
    return (mean_b - mean_a) / pooled * (1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0))


def hedges_g(a, b) -> float:
    return hedges_g_stats(fmean(a), stdev(a), len(a), fmean(b), stdev(b), len(b))


def permutation_p(a, b, most: int = 200_000) -> float:
    """Exact one-sided p of "a < b": the share of the C(n_a + n_b, n_a) splits of the pooled values whose
    mean difference (first group − second) is at most the observed one; NaN when there are more than ``most``."""
    pooled = list(a) + list(b)
    n, k = len(pooled), len(a)
    if math.comb(n, k) > most:
        return math.nan
    total = sum(pooled)
    observed = sum(a) / k - (total - sum(a)) / (n - k)
    hits = count = 0
    for idx in itertools.combinations(range(n), k):
        s = sum(pooled[i] for i in idx)
        count += 1
        hits += s / k - (total - s) / (n - k) <= observed + 1e-12 * (1.0 + abs(observed))
    return hits / count


def tost_stats(mean_a, sd_a, n_a, mean_b, sd_b, n_b, margin: float) -> tuple[float, float]:
    """Two one-sided Welch tests of |mean_a − mean_b| < margin: (p of equivalence = the larger of the two
    one-sided p, p of "the difference is beyond the margin" = the smaller p of Δ > δ and Δ < −δ)."""
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = math.sqrt(va + vb)
    diff = mean_a - mean_b
    if se == 0.0:
        inside = abs(diff) < margin
        return (0.0 if inside else 1.0), (1.0 if inside else 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    above_lower = t_sf((diff + margin) / se, df)  # p of H0 Δ ≤ −δ
    below_upper = t_sf(-(diff - margin) / se, df)  # p of H0 Δ ≥ δ
    equivalent = max(above_lower, below_upper)
    beyond = min(t_sf((diff - margin) / se, df), t_sf((-diff - margin) / se, df))
    return equivalent, beyond


def power(d: float, n: int, alpha: float, sims: int = 4000, seed: int = 0) -> tuple[float, float]:
    """The power of the one-sided Welch test and of the exact permutation test at n vs n, level ``alpha``,
    when the two groups are normal with equal spread and means d standard deviations apart (Monte Carlo:
    ``sims`` draws from numpy's default generator with ``seed``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((sims, n))
    b = rng.standard_normal((sims, n)) + d
    splits = np.array([[i in idx for i in range(2 * n)] for idx in itertools.combinations(range(2 * n), n)])
    pooled = np.concatenate([a, b], axis=1)
    sums = pooled @ splits.T  # (sims, splits): the first group's sum of every split
    diffs = sums / n - (pooled.sum(1, keepdims=True) - sums) / n
    observed = a.mean(1) - b.mean(1)
    perm = (diffs <= observed[:, None] + 1e-12).mean(1)
    welch_p = [welch_stats(x.mean(), x.std(ddof=1), n, y.mean(), y.std(ddof=1), n)[2] for x, y in zip(a, b)]
    return float(np.mean(np.array(welch_p) <= alpha)), float(np.mean(perm <= alpha + 1e-12))
