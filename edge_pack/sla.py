"""The SLA, written down before the build: what a candidate must reach to ship."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Sla:
    min_accuracy_ratio: float | None = 0.98  # quality as a share of the fp32 baseline's
    min_accuracy: float | None = None  # absolute floor on the headline quality
    max_latency_ms: float | None = None  # p50
    max_size_mb: float | None = None

    def override(self, values: dict) -> "Sla":
        return replace(self, **values)

    def describe(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


SLA_KEYS = tuple(f.name for f in fields(Sla))


def judge(row: dict, sla: Sla) -> list[str]:
    """Reasons the candidate fails the SLA (empty when it passes), each with the numbers."""
    if row.get("error"):
        return [row["error"]]
    reasons = []
    quality = row["quality"]
    ratio = quality["ratio"]
    if sla.min_accuracy_ratio is not None and ratio is not None and ratio < sla.min_accuracy_ratio:
        if quality["baseline"] == 1.0:  # label-free agreement: the value is already a share of the baseline
            reasons.append(f"{quality['name']} {quality['value']:.3f} < {sla.min_accuracy_ratio:.3f}")
        else:
            reasons.append(f"{quality['name']} {ratio:.1%} of baseline < {sla.min_accuracy_ratio:.1%}")
    if sla.min_accuracy is not None and quality["value"] < sla.min_accuracy:
        reasons.append(f"{quality['name']} {quality['value']:.3f} < {sla.min_accuracy:.3f}")
    p50 = row.get("latency_p50_ms")
    if sla.max_latency_ms is not None and p50 is not None and p50 > sla.max_latency_ms:
        reasons.append(f"p50 {p50:.1f} ms > {sla.max_latency_ms:g} ms")
    if sla.max_size_mb is not None and row["size_mb"] > sla.max_size_mb:
        reasons.append(f"size {row['size_mb']:.1f} MB > {sla.max_size_mb:g} MB")
    return reasons


def unchecked(row: dict, sla: Sla) -> list[str]:
    """SLA terms the row cannot be judged on, and why (a runtime that takes no device timings says so)."""
    if sla.max_latency_ms is not None and row.get("latency_p50_ms") is None and row.get("latency_note"):
        return [f"max_latency_ms {sla.max_latency_ms:g} not checked: {row['latency_note']}"]
    return []


def cheapest(rows: list[dict]) -> dict | None:
    """The passing candidate that costs least: smallest, then fastest."""
    passing = [r for r in rows if r["verdict"]["passed"]]
    return min(passing, key=lambda r: (r["bytes"], r.get("latency_p50_ms") or 0.0), default=None)
