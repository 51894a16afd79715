"""The decision rules on rows written by hand (the types results.json holds): the cliff, the cheapest
passing candidate, and what is said when none passes. The end-to-end run is in test_decision.py."""
from __future__ import annotations

import copy

import numpy as np

import pytest

from edge_pack.decide import cliff, recommendation
from edge_pack.results import Quality, Row
from edge_pack.sla import Sla, judge


def row(precision, bits, size_mb, value, p50, baseline=0.9):
    return Row(target="t", precision=precision, format="f", bits=bits, bytes=int(size_mb * 1e6), size_mb=size_mb,
               latency_p50_ms=p50, quality=Quality("accuracy", value, baseline, value / baseline, value - baseline))


def judged(rows, sla):
    for candidate in rows:
        candidate.verdict = judge(candidate, sla)
    return rows


SWEEP = [row("fp32", 32, 90, 0.90, 12), row("fp16", 16, 45, 0.90, 13), row("q8", 8, 23, 0.89, 6),
         row("q4", 4, 15, 0.80, 11), row("q2", 2, 8, 0.50, 10)]


def fresh():
    return copy.deepcopy(SWEEP)


def test_the_cliff_is_the_highest_bit_width_below_the_floor():
    found = cliff(judged(fresh(), Sla()), Sla(), 0.9)
    assert found["floor"] == pytest.approx(0.882)
    assert (found["holds_to_bits"], found["falls_at_bits"]) == (8, 4)
    assert found["text"] == "accuracy holds down to 8 bits; at 4 bits q4 falls to 0.800 < 0.882"
    assert [p["keeps_quality"] for p in found["points"]] == [True, True, True, False, False]


def test_a_dip_above_a_good_point_still_marks_the_cliff_there():
    rows = judged([row("a", 16, 40, 0.70, 5), row("b", 8, 20, 0.90, 5)], Sla())
    found = cliff(rows, Sla(), 0.9)
    assert (found["holds_to_bits"], found["falls_at_bits"]) == (None, 16)
    assert found["text"] == "accuracy is below the SLA already at 16 bits, the most measured: a 0.700 < 0.882"


def test_no_cliff_and_no_floor():
    rows = judged([row("a", 16, 40, 0.9, 5), row("b", 8, 20, 0.89, 5)], Sla())
    assert cliff(rows, Sla(), 0.9)["text"].startswith("no cliff down to 8 bits")
    no_floor = Sla(min_accuracy_ratio=None)
    assert cliff(rows, no_floor, 0.9)["text"].startswith("no quality limit in the SLA")


def test_cheapest_passing_is_smallest_then_fastest():
    sla = Sla(max_latency_ms=12)
    rows = judged(fresh() + [row("q8-fast", 8, 23, 0.89, 5)], sla)
    decision = recommendation("web", rows, sla)
    assert decision.recommended == "q8-fast"
    assert decision.text.startswith("web: ship q8-fast — the smallest candidate that meets the SLA (23.0 MB, p50 5.00 ms")


def test_one_file_under_two_names_is_one_candidate_named_as_listed_first():
    """web writes q8 and int8 alike for a model without Conv: a faster run of the copy must not flip the pick."""
    rows = [row("q8", 8, 23, 0.89, 6), row("int8", 8, 23, 0.89, 5), row("q8-other", 8, 23, 0.89, 5.5)]
    rows[0].content = rows[1].content = "same bytes"
    rows[2].content = "other bytes"
    assert recommendation("web", judged(rows, Sla()), Sla()).recommended == "q8-other"
    rows[2].latency_p50_ms = 7
    assert recommendation("web", judged(rows, Sla()), Sla()).recommended == "q8"


def test_when_one_limit_rules_out_every_candidate_it_says_which_and_by_how_much():
    sla = Sla(max_size_mb=5)
    decision = recommendation("pi", judged(fresh(), sla), sla)
    assert decision.recommended is None
    assert decision.blocking == [{"limit": "max_size_mb", "precision": "q2", "by": pytest.approx(3.0),
                                     "text": "size 8.0 MB > 5 MB"}]
    assert decision.text == ("pi: no candidate meets the SLA — every candidate misses the size limit; "
                                "the nearest, q2, by 3.00 MB (size 8.0 MB > 5 MB)")


def test_when_no_single_limit_does_it_names_the_closest_candidate():
    sla = Sla(max_size_mb=20, max_latency_ms=8)  # small ones lose accuracy, accurate ones are big or slow
    decision = recommendation("web", judged(fresh(), sla), sla)
    assert decision.recommended is None and decision.blocking == []
    assert decision.closest == "q8"  # one miss: 3 MB over 20 MB
    assert "the closest, q8, misses the size limit by 3.00 MB (size 23.0 MB > 20 MB)" in decision.text


def test_when_nothing_ran_it_says_so_with_the_runtime_error():
    failed = row("fp32", 32, 90, 0.9, 1)
    failed.quality, failed.error = None, "failed on ort: cannot load"
    decision = recommendation("web", judged([failed], Sla()), Sla())
    assert decision.text == "web: no candidate meets the SLA — none ran: failed on ort: cannot load"


# ------------------------------------------------------------------------------------------ issue 14

def test_with_cost_the_cheapest_is_by_cost_per_month_and_the_sentence_names_the_rule():
    """item 6: the demo shipped android int4 at 0.89 USD/month over dynamic-int8 at 0.70."""
    rows = [row("int4", 4, 13.2, 0.90, 12.8), row("dynamic-int8", 8, 23.5, 0.90, 10.1)]
    rows[0].cost_per_month, rows[1].cost_per_month = 0.89, 0.70
    priced = recommendation("android", judged(rows, Sla()), Sla(), "USD")
    assert priced.recommended == "dynamic-int8"
    assert priced.text.startswith("android: ship dynamic-int8 — the cheapest candidate by cost per month (then the "
                                  "smallest) that meets the SLA (23.5 MB, p50 10.1 ms, accuracy 0.900, 0.70 USD/month)")
    unpriced = recommendation("android", judged(copy.deepcopy(rows), Sla()), Sla())
    assert unpriced.recommended == "int4" and "the smallest candidate that meets the SLA" in unpriced.text
    capped = Sla(max_cost_per_month=0.5)
    assert recommendation("android", judged(rows, capped), capped, "USD").blocking[0]["limit"] == "max_cost_per_month"


def test_a_limit_that_cannot_be_checked_is_unverified_unless_accepted():
    """item 3: no latency from an emulator counted as a pass."""
    sla = Sla(max_latency_ms=100)
    emulated = row("int8", 8, 22.8, 0.9, None)
    emulated.latency_note = "emulated — no device latency"
    verdict = judge(emulated, sla)
    assert verdict.status == "unverified" and not verdict.passed
    assert verdict.unverified == ["max_latency_ms 100 not checked: emulated — no device latency"]
    decision = recommendation("ios", judged([emulated], sla), sla)
    assert decision.recommended is None and decision.status == "unverified" and decision.closest == "int8"
    assert 'accept it with [sla.ios] unverified_ok = ["max_latency_ms"]' in decision.text
    accepting = Sla(max_latency_ms=100, unverified_ok=("max_latency_ms",))
    verdict = judge(emulated, accepting)
    assert verdict.status == "pass" and verdict.accepted_unmeasured == ["max_latency_ms"]
    assert verdict.summary() == "pass (passes what was measured; latency accepted unmeasured)"
    decision = recommendation("ios", judged([emulated], accepting), accepting)
    assert decision.recommended == "int8" and decision.text.endswith("passes what was measured; latency accepted unmeasured")


def test_a_memory_limit_without_a_measured_peak_is_unverified_never_passed():
    """'no memory figure' (issue 14, three verdicts): no peak RSS, or only an emulator's, checks nothing."""
    sla = Sla(max_memory_mb=200)
    small, big, unmeasured, emulated = (row(p, 8, 23, 0.9, 6) for p in ("a", "b", "c", "d"))
    small.peak_rss_mb, big.peak_rss_mb, emulated.peak_rss_mb = 150.0, 250.4, 90.0
    emulated.obtained = {"outputs": "emulated", "latency": "not measured"}
    assert judge(small, sla).status == "pass"
    assert judge(big, sla).reasons == ["peak memory 250 MB > 200 MB"]
    assert judge(unmeasured, sla).unverified == ["max_memory_mb 200 not checked: no peak memory was measured"]
    assert judge(emulated, sla).unverified == ["max_memory_mb 200 not checked: an emulator's memory is not the "
                                               "device's"]
    accepting = Sla(max_memory_mb=200, unverified_ok=("max_memory_mb",))
    assert judge(emulated, accepting).summary() == "pass (passes what was measured; memory accepted unmeasured)"
    decision = recommendation("t", judged([big], sla), sla)
    assert decision.blocking[0]["limit"] == "max_memory_mb" and "by 50.4 MB" in decision.text


def test_a_non_finite_quality_fails():
    """item 2: `ratio < floor` is False for NaN."""
    broken = row("q8", 8, 23, float("nan"), 6)
    verdict = judge(broken, Sla())
    assert verdict.status == "fail" and "accuracy is not a finite number (nan)" in verdict.reasons[0]


def certain(candidate, precision="q8"):
    """A labeled row of 48 samples with the statistics bench computes."""
    from edge_pack.statistics import accuracy_certainty

    baseline = np.array([True] * 42 + [False] * 6)
    found = row(precision, 8, 23, candidate.mean(), 6, baseline=baseline.mean())
    found.quality.certainty = accuracy_certainty(candidate, baseline)
    return found


def test_the_verdict_warns_when_the_eval_set_cannot_resolve_the_margin():
    """item 5: on 48 samples one answer is 2.1 points; the floor 98 % of 0.875 is 1.8 points below it."""
    same = certain(np.array([True] * 42 + [False] * 6))
    verdict = judge(same, Sla())
    assert verdict.status == "pass"
    assert verdict.notes == ["48 samples resolve ±9.4 points; the floor is 1.8 points below baseline "
                             "(one sample is 2.1 points)"]
    assert not judge(same, Sla(min_accuracy_ratio=0.8)).notes  # a 17.5-point margin is resolved


def test_strict_judges_the_ratios_interval_at_the_slas_own_confidence():
    """At `confidence = 0.99` the lower bound is the 99 % interval's, wider than the 95 % one the table shows:
    a candidate whose 95 % bound clears the floor but whose 99 % bound does not fails."""
    from edge_pack.statistics import accuracy_certainty

    baseline = np.array([True] * 42 + [False] * 6)
    candidate = baseline.copy()
    candidate[:2] = False  # two answers fp32 got right, wrong
    at_95 = accuracy_certainty(candidate, baseline)["ratio_interval"][0]
    at_99 = accuracy_certainty(candidate, baseline, strict=0.99)["strict"]["ratio_interval"][0]
    floor = round((at_95 + at_99) / 2, 3)
    assert at_99 < floor < at_95
    found = row("q8", 8, 23, candidate.mean(), 6, baseline=baseline.mean())
    found.quality.certainty = accuracy_certainty(candidate, baseline, strict=0.99)
    assert judge(found, Sla(min_accuracy_ratio=floor, confidence=0.95)).status == "pass"
    verdict = judge(found, Sla(min_accuracy_ratio=floor, confidence=0.99))
    assert verdict.status == "fail"
    assert verdict.reasons == [f"the 99% lower bound of accuracy {at_99:.1%} of baseline < {floor:.1%}"]


def test_strict_confidence_passes_only_when_the_ratios_bound_clears_the_floor():
    one_worse = certain(np.array([True] * 41 + [False] * 7))  # 97.6 % of baseline: fails at the point too
    assert judge(one_worse, Sla(min_accuracy_ratio=0.95)).status == "pass"
    strict = Sla(min_accuracy_ratio=0.95, confidence=0.95)
    verdict = judge(one_worse, strict)
    low = one_worse.quality.certainty["ratio_interval"][0]
    assert low < 0.95 and verdict.status == "fail"
    assert verdict.reasons == [f"the 95% lower bound of accuracy {low:.1%} of baseline < 95.0%"]
