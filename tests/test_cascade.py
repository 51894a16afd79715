"""The cascade's arithmetic (edge_pack/cascade.py) on hand-made samples whose right answers are known: the
split, the sweep's ends, routing by confidence, the expected latency and cost, and a threshold picked on one
half and reported on the other. (The same code runs on real models' samples in the bench tests.)"""
from __future__ import annotations

import math

import pytest

from edge_pack.cascade import Sample, Stage, half, route, simulate, split, sweep


def _stages(count: int = 200):
    """A first model right exactly when it is confident (confidence > 0.5), and a fallback always right."""
    first, fallback = [], []
    for i in range(count):
        confidence = (i % 10) / 10 + 0.05  # 0.05 .. 0.95
        first.append(Sample(f"q{i}", confidence > 0.5, confidence))
        fallback.append(Sample(f"q{i}", True, 0.9))
    return Stage.of("small:q4_k_m", first, latency_ms=10.0, cost_per_request=0.0001), \
        Stage.of("large:f16", fallback, latency_ms=100.0, cost_per_request=0.001)


def test_the_split_is_a_stable_hash_of_the_id_into_two_halves():
    ids = [f"row-{i}" for i in range(400)]
    pick, report = split(ids)
    assert sorted(pick + report) == sorted(ids) and not set(pick) & set(report)
    assert 150 < len(pick) < 250  # about half
    assert split(list(reversed(ids))) == (pick[::-1], report[::-1])  # order of the input, halves fixed
    assert half("row-0") == half("row-0") and {half(i) for i in ids} == {0, 1}
    # two ids that hash into one half still make two halves
    assert sorted(map(len, split(["a", "b"]))) == [1, 1]


def test_the_sweep_runs_from_the_first_model_alone_to_the_fallback_alone():
    first, fallback = _stages()
    ids = sorted(first.samples)
    points = sweep(first, fallback, ids, requests_per_month=1000)
    alone, everything = points[0], points[-1]
    assert alone.escalated == 0 and alone.accuracy == pytest.approx(0.5)
    assert alone.latency_ms == pytest.approx(10.0) and alone.cost_per_month == pytest.approx(0.1)
    assert everything.escalated == 1 and everything.accuracy == 1.0
    assert everything.latency_ms == pytest.approx(110.0)  # the first stage always runs
    assert everything.cost_per_month == pytest.approx(1000 * (0.0001 + 0.001))
    escalated = [p.escalated for p in points]
    assert escalated == sorted(escalated)


def test_routing_below_the_threshold_sends_that_share_to_the_fallback():
    first, fallback = _stages()
    point = route(first, fallback, sorted(first.samples), 0.5, requests_per_month=1000)
    assert point.escalated == pytest.approx(0.5) and point.accuracy == 1.0
    assert point.latency_ms == pytest.approx(10 + 0.5 * 100)
    assert point.cost_per_month == pytest.approx(1000 * (0.0001 + 0.5 * 0.001))
    # unpriced or unmeasured stages give no figure rather than a wrong one
    unpriced = Stage.of("x", list(first.samples.values()), latency_ms=None)
    assert route(unpriced, fallback, sorted(first.samples), 0.5, 1000).cost_per_month is None
    assert route(unpriced, fallback, sorted(first.samples), 0.5).latency_ms is None


def test_the_threshold_is_picked_on_one_half_and_reported_on_the_other():
    first, fallback = _stages()
    result = simulate(first, fallback, target_accuracy=0.99, requests_per_month=1000)
    pick, report = split(sorted(first.samples))
    assert (result.picked_on, result.reported_on) == (len(pick), len(report))
    # the cheapest threshold that keeps every answer right escalates exactly the unconfident half
    assert 0.45 < result.threshold <= 0.55
    assert result.point == route(first, fallback, report, result.threshold, 1000)
    assert result.point.accuracy == 1.0 and 0.3 < result.point.escalated < 0.7
    assert result.first_alone.escalated == 0 and result.fallback_alone.escalated == 1
    assert result.point.accuracy > result.first_alone.accuracy
    assert result.point.cost_per_month < result.fallback_alone.cost_per_month
    assert [p.escalated for p in result.curve] == sorted(p.escalated for p in result.curve)
    assert "picked on" in result.how and f"other {len(report)}" in result.how
    # without a target: the most accurate threshold, with the least escalation among equals
    assert simulate(first, fallback).point.accuracy == 1.0


def test_a_threshold_fitted_on_one_half_is_not_reported_as_its_own_fit():
    """Confidence means something on the pick half only: the report half shows what it really buys."""
    samples, fallback = [], []
    for i in range(400):
        sample_id = f"r{i}"
        confidence = (i % 20) / 20
        right = confidence >= 0.5 if half(sample_id) == 0 else i % 2 == 0
        samples.append(Sample(sample_id, right, confidence))
        fallback.append(Sample(sample_id, True, 1.0))
    first, big = Stage.of("small", samples, 1.0), Stage.of("big", fallback, 50.0)
    result = simulate(first, big, target_accuracy=1.0)
    pick, _ = split(sorted(first.samples))
    assert route(first, big, pick, result.threshold).accuracy == 1.0  # perfect where it was fitted
    assert result.point.accuracy < 0.9  # not where it is reported


def test_an_external_service_answers_like_the_model_it_is_measured_by():
    first, large = _stages()
    service = Stage.service("api", large, latency_ms=800.0, cost_per_request=0.002)
    assert service.samples is large.samples
    point = route(first, service, sorted(first.samples), math.inf, requests_per_month=100)
    assert point.latency_ms == pytest.approx(810.0) and point.cost_per_month == pytest.approx(100 * 0.0021)


def test_stages_that_answered_different_samples_are_refused():
    first, fallback = _stages(10)
    other = Stage.of("other", [Sample("elsewhere", True, 1.0)], 1.0)
    with pytest.raises(ValueError, match="different samples"):
        simulate(first, other)
