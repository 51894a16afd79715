"""How sure a measured number is: intervals and paired tests on the eval set, and the spread of latency.

The methods are the textbook ones, computed by scipy:
- a labeled accuracy k/n gets the Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001 recommend
  it over the normal-approximation interval for small n), scipy's BinomTestResult.proportion_ci(method="wilson");
- a candidate against the baseline on the same samples gets the exact McNemar test (McNemar 1947): only
  the discordant pairs count, and under "no difference" each is a fair coin, so the p-value is a two-sided
  binomial test of b against b + c (scipy.stats.binomtest);
- the ratio of the candidate's accuracy to the baseline's gets a paired percentile bootstrap (Efron &
  Tibshirani 1993, ch. 13): samples are resampled with both models' answers together, seeded, so the
  interval is the same on every run;
- a latency p50 gets the distribution-free interval for a median from order statistics (Conover,
  Practical Nonparametric Statistics, 3rd ed., §3.2): with B ~ Binomial(n, 1/2), (x(l), x(n-l+1)) covers
  the median with probability P(l <= B <= n-l).
"""
from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 20260  # fixed: the same eval set gives the same interval on every run


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes/n."""
    from scipy.stats import binomtest

    if n <= 0:
        raise ValueError("an interval needs at least one sample")
    found = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(found.low), float(found.high)


def mcnemar_exact(worse: int, better: int) -> float:
    """Two-sided exact McNemar p-value: `worse` samples the baseline got right and the candidate wrong,
    `better` the other way round. 1.0 when no sample differs."""
    from scipy.stats import binomtest

    discordant = worse + better
    if discordant == 0:
        return 1.0
    return float(binomtest(min(worse, better), discordant, 0.5).pvalue)


def bootstrap_ratio(candidate: np.ndarray, baseline: np.ndarray, confidence: float = CONFIDENCE,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """Percentile interval of mean(candidate) / mean(baseline) over paired resamples of the samples
    (candidate[i] and baseline[i] are the two models' scores on sample i). None when the baseline
    scores nothing on most resamples (the ratio is undefined there)."""
    candidate, baseline = np.asarray(candidate, float), np.asarray(baseline, float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(candidate), size=(resamples, len(candidate)))
    base = baseline[picks].mean(axis=1)
    defined = base > 0
    if defined.mean() < 0.5:
        return None
    ratios = candidate[picks].mean(axis=1)[defined] / base[defined]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Distribution-free interval for the median of the distribution the timings come from; None when
    there are too few timings for that confidence (fewer than 6 at 95 %)."""
    from scipy.stats import binom

    ordered = np.sort(np.asarray(values, float))
    n = len(ordered)
    if n == 0:
        return None
    rank = int(binom.ppf((1 - confidence) / 2, n, 0.5))  # l: P(B < l) <= alpha / 2
    if rank < 1:
        return None
    if binom.cdf(n - rank, n, 0.5) - binom.cdf(rank - 1, n, 0.5) < confidence:
        rank -= 1
        if rank < 1:
            return None
    return float(ordered[rank - 1]), float(ordered[n - rank])


def accuracy_certainty(candidate_correct: np.ndarray, baseline_correct: np.ndarray,
                       confidence: float = CONFIDENCE, strict: float | None = None) -> dict:
    """What the eval set says about a labeled accuracy: its interval, the paired test against the
    baseline on the same samples and the interval of the ratio to the baseline; with `strict` (the SLA's
    `confidence`), the ratio's interval at that confidence too, the one a strict verdict judges."""
    candidate_correct = np.asarray(candidate_correct, bool)
    baseline_correct = np.asarray(baseline_correct, bool)
    n = len(candidate_correct)
    worse = int((baseline_correct & ~candidate_correct).sum())
    better = int((~baseline_correct & candidate_correct).sum())
    found = {"samples": n, "confidence": confidence,
             "interval": list(wilson(int(candidate_correct.sum()), n, confidence)),
             "worse": worse, "better": better, "p_value": mcnemar_exact(worse, better),
             "ratio_interval": _listed(bootstrap_ratio(candidate_correct, baseline_correct, confidence))}
    if strict is not None and strict != confidence:
        found["strict"] = {"confidence": strict,
                           "ratio_interval": _listed(bootstrap_ratio(candidate_correct, baseline_correct, strict))}
    return found


def ratio_interval(certainty: dict | None, confidence: float) -> list | None:
    """The interval of the ratio to the baseline at this confidence, if accuracy_certainty computed one."""
    for found in (certainty or {}, (certainty or {}).get("strict") or {}):
        if found.get("confidence") == confidence:
            return found.get("ratio_interval")
    return None


def resolution_points(accuracy: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half the width of the Wilson interval at this accuracy on n samples, in points (1 point = 0.01):
    differences smaller than this are within what the eval set can resolve."""
    low, high = wilson(round(accuracy * n), n, confidence)
    return (high - low) / 2 * 100


def _listed(pair):
    return list(pair) if pair is not None else None
