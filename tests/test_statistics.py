"""How sure a number is: the statistics checked against textbook values (edge_pack/statistics.py cites them)."""
from __future__ import annotations

import numpy as np
import pytest

from edge_pack import statistics


def test_wilson_interval_of_8_of_10():
    # Wilson (1927) without continuity correction, as R's prop.test(8, 10, correct = FALSE): 0.4902–0.9433
    low, high = statistics.wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert statistics.wilson(0, 10)[0] == 0.0 and statistics.wilson(10, 10)[1] == pytest.approx(1.0)


def test_exact_mcnemar():
    # b = 1, c = 6 discordant pairs: two-sided binomial p = 2 × (1 + 7) / 2^7 = 0.125
    assert statistics.mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert statistics.mcnemar_exact(6, 1) == pytest.approx(0.125)
    assert statistics.mcnemar_exact(0, 0) == 1.0
    assert statistics.mcnemar_exact(0, 10) == pytest.approx(2 / 1024)


def test_median_interval_from_order_statistics():
    # Conover: for n = 20 the 95 % interval of the median is (x(6), x(15)), coverage 0.9586.
    assert statistics.median_interval([float(i) for i in range(1, 21)]) == (6.0, 15.0)
    assert statistics.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 5 timings cannot reach 95 %
    assert statistics.median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (1.0, 6.0)  # n = 6: 0.969


def test_paired_bootstrap_of_the_ratio_is_seeded_and_brackets_the_point():
    rng = np.random.default_rng(0)
    baseline = rng.random(48) < 0.875
    candidate = baseline.copy()
    candidate[:3] = ~candidate[:3]
    first = statistics.bootstrap_ratio(candidate, baseline)
    assert first == statistics.bootstrap_ratio(candidate, baseline)  # same inputs, same interval
    point = candidate.mean() / baseline.mean()
    assert first[0] < point < first[1]
    assert statistics.bootstrap_ratio(np.zeros(10), np.zeros(10)) is None


def test_what_48_samples_resolve():
    # the demo: 48 labeled sentences, baseline accuracy 0.875 — the Wilson interval is ±9.4 points wide
    assert statistics.resolution_points(0.875, 48) == pytest.approx(9.42, abs=0.01)
