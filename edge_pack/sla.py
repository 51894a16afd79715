"""The SLA, written down before the build: what a candidate must reach to ship, and the verdict on one
measured candidate against it — pass, fail, or unverified when a limit could not be checked here."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from .results import FAIL, PASS, UNVERIFIED, Quality, Row, Verdict
from .statistics import ratio_interval, resolution_points

# The limits: a number each, and the range a number must be in to mean something.
LIMITS = {
    "min_accuracy_ratio": (0.0, 1.5, "a share of the fp32 baseline's quality, e.g. 0.98"),
    "min_accuracy": (0.0, 1.0, "an absolute quality between 0 and 1"),
    "max_latency_ms": (0.0, None, "milliseconds of p50 latency, more than 0"),
    "max_size_mb": (0.0, None, "megabytes, more than 0"),
    "max_memory_mb": (0.0, None, "megabytes of peak memory (the runtime process's peak RSS), more than 0"),
    "max_cost_per_month": (0.0, None, "an amount per month in the [cost] currency, 0 or more"),
}
QUALITY_LIMITS = ("min_accuracy_ratio", "min_accuracy")
CONFIDENCES = (0.5, 0.999)  # `confidence` must lie between these
SLA_KEYS = (*LIMITS, "unverified_ok", "confidence")


@dataclass(frozen=True)
class Sla:
    min_accuracy_ratio: float | None = 0.98  # quality as a share of the fp32 baseline's
    min_accuracy: float | None = None  # absolute floor on the headline quality
    max_latency_ms: float | None = None  # p50
    max_size_mb: float | None = None
    max_memory_mb: float | None = None  # peak RSS of the runtime's process while it ran the candidate
    max_cost_per_month: float | None = None  # needs [cost]
    # Limits the job accepts unmeasured on this target (e.g. latency on an emulator): named, never silent.
    unverified_ok: tuple[str, ...] = ()
    # Strict mode: the quality ratio passes only when its lower bound at this confidence clears the floor.
    confidence: float | None = None

    def override(self, values: dict) -> "Sla":
        return replace(self, **values)

    def describe(self) -> dict:
        found = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in (None, ()):
                found[f.name] = list(value) if isinstance(value, tuple) else value
        return found

    @classmethod
    def of(cls, described: dict) -> "Sla":
        """The Sla a results file describes (describe() leaves out what is not set)."""
        values = {key: described.get(key) for key in LIMITS}
        values["unverified_ok"] = tuple(described.get("unverified_ok", ()))
        values["confidence"] = described.get("confidence")
        return cls(**values)

    def limits(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in LIMITS if getattr(self, key) is not None}


def limit_problem(key: str, value) -> str | None:
    """Why `value` cannot be the SLA limit `key` (None when it can): a number, finite, in its range."""
    low, high, meaning = LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"must be a finite number ({meaning}), not {value!r}"
    if value < low or (high is not None and value > high) or (value == low and key.startswith("max_")
                                                               and key != "max_cost_per_month"):
        return f"must be {meaning}, not {value!r}"
    return None


def quality_floor(sla: Sla, baseline: float) -> float | None:
    """The lowest headline quality that passes: the stricter of the absolute floor and the share of the
    baseline (for label-free agreement the baseline is 1.0, so both read the same way)."""
    floors = []
    if sla.min_accuracy_ratio is not None:
        floors.append(sla.min_accuracy_ratio * baseline)
    if sla.min_accuracy is not None:
        floors.append(sla.min_accuracy)
    return max(floors, default=None)


def _miss(limit: str, value: float, bound: float, text: str) -> dict:
    return {"limit": limit, "value": value, "bound": bound, "by": abs(value - bound), "text": text}


def quality_shortfalls(quality: Quality | None, sla: Sla) -> list[dict]:
    """The quality limits a candidate of this quality misses (what --precision auto's search stops on too)."""
    found = []

    def miss(*args) -> None:
        found.append(_miss(*args))

    if quality is not None and not math.isfinite(quality.value):
        miss(QUALITY_LIMITS[0] if sla.min_accuracy_ratio is not None else QUALITY_LIMITS[1], 0.0, 0.0,
             f"{quality.name} is not a finite number ({quality.value})")
    elif quality is not None:
        ratio = quality.ratio
        if sla.min_accuracy_ratio is not None and ratio is not None:
            bound_ratio, how = ratio, ""
            interval = ratio_interval(quality.certainty, sla.confidence) if sla.confidence is not None else None
            if interval:  # strict: the lower bound at the SLA's confidence, not the point
                bound_ratio, how = interval[0], f"the {sla.confidence:.0%} lower bound of "
            if bound_ratio < sla.min_accuracy_ratio:
                if quality.baseline == 1.0 and not how:  # label-free agreement: already a share of the baseline
                    text = f"{quality.name} {quality.value:.3f} < {sla.min_accuracy_ratio:.3f}"
                else:
                    text = f"{how}{quality.name} {bound_ratio:.1%} of baseline < {sla.min_accuracy_ratio:.1%}"
                miss("min_accuracy_ratio", bound_ratio, sla.min_accuracy_ratio, text)
        if sla.min_accuracy is not None and quality.value < sla.min_accuracy:
            miss("min_accuracy", quality.value, sla.min_accuracy,
                 f"{quality.name} {quality.value:.3f} < {sla.min_accuracy:.3f}")
    return found


def shortfalls(row: Row, sla: Sla) -> list[dict]:
    """Each limit the candidate misses: which, the candidate's value, the limit, by how much (in the
    limit's own unit) and a sentence with the numbers."""
    found = quality_shortfalls(row.quality, sla)

    def miss(*args) -> None:
        found.append(_miss(*args))

    p50 = row.latency_p50_ms
    if sla.max_latency_ms is not None and p50 is not None and p50 > sla.max_latency_ms and not _noisy(row, sla):
        miss("max_latency_ms", p50, sla.max_latency_ms, f"p50 {p50:.1f} ms > {sla.max_latency_ms:g} ms")
    if sla.max_size_mb is not None and row.size_mb > sla.max_size_mb:
        miss("max_size_mb", row.size_mb, sla.max_size_mb, f"size {row.size_mb:.1f} MB > {sla.max_size_mb:g} MB")
    memory = measured_memory(row)
    if sla.max_memory_mb is not None and memory is not None and memory > sla.max_memory_mb:
        miss("max_memory_mb", memory, sla.max_memory_mb, f"peak memory {memory:.0f} MB > {sla.max_memory_mb:g} MB")
    cost = row.cost_per_month
    if sla.max_cost_per_month is not None and cost is not None and cost > sla.max_cost_per_month:
        miss("max_cost_per_month", cost, sla.max_cost_per_month,
             f"cost {cost:,.2f}/month > {sla.max_cost_per_month:,.2f}")
    return found


def _noisy(row: Row, sla: Sla) -> bool:
    """The p50's interval holds the latency limit even after re-measuring: the timings cannot decide it."""
    spread = row.latency or {}
    interval = spread.get("p50_interval")
    return bool(spread.get("noisy") and interval and interval[0] <= sla.max_latency_ms <= interval[1])


def measured_memory(row: Row) -> float | None:
    """The candidate's peak memory on its runtime, or None when none was measured, or only an emulator's
    (whose footprint is the emulator's, not the device's)."""
    if row.peak_rss_mb is None or row.obtained.get("outputs") == "emulated" or row.obtained.get("memory"):
        return None
    return row.peak_rss_mb


def unchecked(row: Row, sla: Sla) -> dict[str, str]:
    """Limits the row cannot be judged on here, each with why."""
    found = {}
    if sla.max_latency_ms is not None:
        if row.latency_p50_ms is None:
            found["max_latency_ms"] = (f"max_latency_ms {sla.max_latency_ms:g} not checked: "
                                       f"{row.latency_note or 'no latency was measured'}")
        elif _noisy(row, sla):
            low, high = row.latency["p50_interval"]
            found["max_latency_ms"] = (f"max_latency_ms {sla.max_latency_ms:g} not decided: the timings are too noisy "
                                       f"(p50 {row.latency_p50_ms:.1f} ms, 95% interval {low:.1f}–{high:.1f} ms, "
                                       f"after {row.latency.get('rounds', 1)} rounds)")
    if sla.max_memory_mb is not None and measured_memory(row) is None:
        why = ("an emulator's memory is not the device's" if row.obtained.get("outputs") == "emulated"
               else row.obtained.get("memory") or "no peak memory was measured")
        found["max_memory_mb"] = f"max_memory_mb {sla.max_memory_mb:g} not checked: {why}"
    if sla.max_cost_per_month is not None and row.cost_per_month is None:
        found["max_cost_per_month"] = (f"max_cost_per_month {sla.max_cost_per_month:g} not checked: no cost per month "
                                       "(set [cost], and a latency for a price per device-hour)")
    return found


def judge(row: Row, sla: Sla) -> Verdict:
    """The verdict on one measured candidate: fail with the reasons, each with the numbers; else
    unverified when a limit could not be checked and the job does not accept that; else pass."""
    if row.error:
        return Verdict(FAIL, [row.error])
    reasons = [s["text"] for s in shortfalls(row, sla)]
    open_limits = unchecked(row, sla)
    accepted = [key for key in open_limits if key in sla.unverified_ok]
    unverified = [text for key, text in open_limits.items() if key not in sla.unverified_ok]
    status = FAIL if reasons else UNVERIFIED if unverified else PASS
    return Verdict(status, reasons, unverified, accepted, _resolution_notes(row, sla))


def _resolution_notes(row: Row, sla: Sla) -> list[str]:
    """A warning when the eval set is too small to tell the candidate from the SLA's floor."""
    quality = row.quality
    certainty = (quality.certainty if quality else None) or {}
    if not certainty or sla.min_accuracy_ratio is None or not quality.baseline:
        return []
    n = certainty["samples"]
    resolve = resolution_points(quality.baseline, n, certainty.get("confidence", 0.95))
    margin = (1 - sla.min_accuracy_ratio) * quality.baseline * 100
    if resolve <= margin:
        return []
    return [f"{n} samples resolve ±{resolve:.1f} points; the floor is {margin:.1f} points below baseline "
            f"(one sample is {100 / n:.1f} points)"]
