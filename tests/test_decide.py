"""The decision rules on rows written by hand (the shape results.json rows have): the cliff, the cheapest
passing candidate, and what is said when none passes. The end-to-end run is in test_decision.py."""
from __future__ import annotations

import pytest

from edge_pack.decide import cliff, recommendation
from edge_pack.sla import Sla, judge


def row(precision, bits, size_mb, value, p50, baseline=0.9):
    candidate = {"target": "t", "precision": precision, "bits": bits, "bytes": int(size_mb * 1e6), "size_mb": size_mb,
                 "latency_p50_ms": p50, "error": None,
                 "quality": {"name": "accuracy", "value": value, "baseline": baseline, "ratio": value / baseline,
                             "delta": value - baseline}}
    return candidate


def judged(rows, sla):
    for candidate in rows:
        reasons = judge(candidate, sla)
        candidate["verdict"] = {"passed": not reasons, "reasons": reasons}
    return rows


SWEEP = [row("fp32", 32, 90, 0.90, 12), row("fp16", 16, 45, 0.90, 13), row("q8", 8, 23, 0.89, 6),
         row("q4", 4, 15, 0.80, 11), row("q2", 2, 8, 0.50, 10)]


def test_the_cliff_is_the_highest_bit_width_below_the_floor():
    found = cliff(judged([dict(r) for r in SWEEP], Sla()), Sla(), 0.9)
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
    rows = judged([dict(r) for r in SWEEP] + [row("q8-fast", 8, 23, 0.89, 5)], sla)
    decision = recommendation("web", rows, sla)
    assert decision["recommended"] == "q8-fast"
    assert decision["text"].startswith("web: ship q8-fast — the smallest candidate that meets the SLA (23.0 MB, p50 5.00 ms")


def test_one_file_under_two_names_is_one_candidate_named_as_listed_first():
    """web writes q8 and int8 alike for a model without Conv: a faster run of the copy must not flip the pick."""
    rows = [row("q8", 8, 23, 0.89, 6), row("int8", 8, 23, 0.89, 5), row("q8-other", 8, 23, 0.89, 5.5)]
    rows[0]["content"] = rows[1]["content"] = "same bytes"
    rows[2]["content"] = "other bytes"
    assert recommendation("web", judged(rows, Sla()), Sla())["recommended"] == "q8-other"
    rows[2]["latency_p50_ms"] = 7
    assert recommendation("web", judged(rows, Sla()), Sla())["recommended"] == "q8"


def test_when_one_limit_rules_out_every_candidate_it_says_which_and_by_how_much():
    sla = Sla(max_size_mb=5)
    decision = recommendation("pi", judged([dict(r) for r in SWEEP], sla), sla)
    assert decision["recommended"] is None
    assert decision["blocking"] == [{"limit": "max_size_mb", "precision": "q2", "by": pytest.approx(3.0),
                                     "text": "size 8.0 MB > 5 MB"}]
    assert decision["text"] == ("pi: no candidate meets the SLA — every candidate misses the size limit; "
                                "the nearest, q2, by 3.00 MB (size 8.0 MB > 5 MB)")


def test_when_no_single_limit_does_it_names_the_closest_candidate():
    sla = Sla(max_size_mb=20, max_latency_ms=8)  # small ones lose accuracy, accurate ones are big or slow
    decision = recommendation("web", judged([dict(r) for r in SWEEP], sla), sla)
    assert decision["recommended"] is None and decision["blocking"] == []
    assert decision["closest"] == "q8"  # one miss: 3 MB over 20 MB
    assert "the closest, q8, misses the size limit by 3.00 MB (size 23.0 MB > 20 MB)" in decision["text"]


def test_when_nothing_ran_it_says_so_with_the_runtime_error():
    failed = [{**row("fp32", 32, 90, 0.9, 1), "quality": None, "error": "failed on ort: cannot load"}]
    failed[0]["verdict"] = {"passed": False, "reasons": [failed[0]["error"]]}
    decision = recommendation("web", failed, Sla())
    assert decision["text"] == "web: no candidate meets the SLA — none ran: failed on ort: cannot load"
