"""A cascade simulated on the labeled eval set: a first (small, cheap) model answers every request; when its
confidence is under a threshold the request is escalated to a fallback (a bigger model, the fp32 source, or
an external service), whose answer is used instead.

For each threshold the sweep gives the accuracy of the routed answers, the share escalated, the expected
latency (the first stage always runs; the fallback adds its latency for the escalated share) and the cost
per month. The threshold is picked on one half of the eval set and reported on the other half, so the
figure is not fitted to its own data; the halves come from a stable hash of each sample's id, so they do
not change between runs or machines. Any labeled task works: a sample is an id, whether the answer was
right and the model's confidence (edge_pack/scoring.py says how each kind of model's is measured).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    id: str
    correct: bool
    confidence: float  # in [0, 1]


@dataclass(frozen=True)
class Stage:
    name: str  # "small:q4_k_m", "large:f16", "source", or a service's name
    samples: dict[str, Sample]  # by id
    latency_ms: float | None  # per request; None when not measured (e.g. an emulator)
    cost_per_request: float | None = None  # in the job's currency; None when not priced

    @staticmethod
    def of(name: str, samples: list[Sample], latency_ms: float | None, cost_per_request: float | None = None):
        return Stage(name, {s.id: s for s in samples}, latency_ms, cost_per_request)

    @staticmethod
    def service(name: str, answers_like: "Stage", latency_ms: float, cost_per_request: float) -> "Stage":
        """An external service stated in the job: its answers are taken to be those of `answers_like` (its
        accuracy_from), its latency and price are the stated ones."""
        return Stage(name, answers_like.samples, latency_ms, cost_per_request)


@dataclass(frozen=True)
class Point:
    threshold: float  # escalate when the first stage's confidence is below this
    accuracy: float
    escalated: float  # share of requests sent to the fallback
    latency_ms: float | None  # expected per request
    cost_per_month: float | None


@dataclass(frozen=True)
class Result:
    first: str
    fallback: str
    threshold: float
    picked_on: int  # samples in the half the threshold was picked on
    reported_on: int  # samples in the other half, where every figure below comes from
    point: Point  # the picked threshold, on the reported half
    first_alone: Point
    fallback_alone: Point
    curve: list[Point]  # every threshold, on the reported half: accuracy vs share escalated
    target_accuracy: float | None  # what the pick aimed for (None: the most accurate)

    @property
    def how(self) -> str:
        aim = (f"the least escalation with accuracy ≥ {self.target_accuracy:.3f}" if self.target_accuracy is not None
               else "the highest accuracy")
        return (f"threshold {self.threshold:.3f} picked on {self.picked_on} samples ({aim}), reported on the other "
                f"{self.reported_on}")


def half(sample_id: str) -> int:
    """0 (pick the threshold) or 1 (report): the low bit of the id's SHA-256, stable across runs and machines."""
    return hashlib.sha256(str(sample_id).encode()).digest()[0] & 1


def split(ids: list[str]) -> tuple[list[str], list[str]]:
    pick = [i for i in ids if half(i) == 0]
    report = [i for i in ids if half(i) == 1]
    if not pick or not report:  # tiny sets: alternate instead, so each half has something
        ordered = sorted(ids, key=lambda i: hashlib.sha256(str(i).encode()).hexdigest())
        pick, report = ordered[0::2], ordered[1::2]
    return pick, report


def routed(first: Stage, fallback: Stage, ids: list[str], threshold: float) -> list[bool]:
    """Per sample, whether the answer used at this threshold is right (the fallback's when escalated)."""
    return [(first if first.samples[i].confidence >= threshold else fallback).samples[i].correct for i in ids]


def route(first: Stage, fallback: Stage, ids: list[str], threshold: float,
          requests_per_month: float | None = None) -> Point:
    escalated = [i for i in ids if first.samples[i].confidence < threshold]
    correct = sum(first.samples[i].correct for i in ids if first.samples[i].confidence >= threshold)
    correct += sum(fallback.samples[i].correct for i in escalated)
    share = len(escalated) / len(ids)
    latency = None
    if first.latency_ms is not None and (fallback.latency_ms is not None or not escalated):
        latency = first.latency_ms + share * (fallback.latency_ms or 0.0)
    cost = None
    if requests_per_month is not None and first.cost_per_request is not None and (
            fallback.cost_per_request is not None or not escalated):
        cost = requests_per_month * (first.cost_per_request + share * (fallback.cost_per_request or 0.0))
    return Point(threshold=threshold, accuracy=correct / len(ids), escalated=share, latency_ms=latency,
                 cost_per_month=cost)


def thresholds(first: Stage, ids: list[str]) -> list[float]:
    """Every threshold that routes the samples differently: never escalate (0), escalate below each observed
    confidence, always escalate (just above the highest)."""
    seen = sorted({first.samples[i].confidence for i in ids})
    return [0.0, *(c for c in seen if c > 0.0), math.nextafter(seen[-1], math.inf) if seen else 1.0]


def sweep(first: Stage, fallback: Stage, ids: list[str], requests_per_month: float | None = None) -> list[Point]:
    return [route(first, fallback, ids, t, requests_per_month) for t in thresholds(first, ids)]


def pick(points: list[Point], target_accuracy: float | None) -> Point:
    """The cheapest threshold that reaches the target (least escalated, then most accurate); without a target,
    or when none reaches it, the most accurate (then least escalated)."""
    if target_accuracy is not None:
        reaching = [p for p in points if p.accuracy >= target_accuracy]
        if reaching:
            return min(reaching, key=lambda p: (p.escalated, -p.accuracy))
    return max(points, key=lambda p: (p.accuracy, -p.escalated))


def simulate(first: Stage, fallback: Stage, *, target_accuracy: float | None = None,
             requests_per_month: float | None = None) -> Result:
    """Pick the threshold on one half of the samples both stages answered, report it on the other half."""
    missing = sorted(set(first.samples) ^ set(fallback.samples))
    if missing:
        raise ValueError(f"the cascade's stages answered different samples (e.g. {missing[0]!r})")
    ids = sorted(first.samples)
    if len(ids) < 2:
        raise ValueError("a cascade needs at least two labeled samples to pick and report on")
    pick_ids, report_ids = split(ids)
    chosen = pick(sweep(first, fallback, pick_ids, requests_per_month), target_accuracy)
    curve = sweep(first, fallback, report_ids, requests_per_month)
    return Result(first=first.name, fallback=fallback.name, threshold=chosen.threshold, picked_on=len(pick_ids),
                  reported_on=len(report_ids),
                  point=route(first, fallback, report_ids, chosen.threshold, requests_per_month),
                  first_alone=route(first, fallback, report_ids, 0.0, requests_per_month),
                  fallback_alone=route(first, fallback, report_ids, math.inf, requests_per_month),
                  curve=curve, target_accuracy=target_accuracy)
