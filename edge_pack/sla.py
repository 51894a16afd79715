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


def quality_floor(sla: Sla | dict, baseline: float) -> float | None:
    """The lowest headline quality that passes: the stricter of the absolute floor and the share of the
    baseline (for label-free agreement the baseline is 1.0, so both read the same way)."""
    limits = sla if isinstance(sla, dict) else sla.describe()
    floors = []
    if limits.get("min_accuracy_ratio") is not None:
        floors.append(limits["min_accuracy_ratio"] * baseline)
    if limits.get("min_accuracy") is not None:
        floors.append(limits["min_accuracy"])
    return max(floors, default=None)


def shortfalls(row: dict, sla: Sla) -> list[dict]:
    """Each limit the candidate misses: which, the candidate's value, the limit, by how much (in the
    limit's own unit) and a sentence with the numbers."""
    found = []
    quality = row["quality"]
    ratio = quality["ratio"]

    def miss(limit: str, value: float, bound: float, text: str) -> None:
        found.append({"limit": limit, "value": value, "bound": bound, "by": abs(value - bound), "text": text})

    if sla.min_accuracy_ratio is not None and ratio is not None and ratio < sla.min_accuracy_ratio:
        if quality["baseline"] == 1.0:  # label-free agreement: the value is already a share of the baseline
            text = f"{quality['name']} {quality['value']:.3f} < {sla.min_accuracy_ratio:.3f}"
        else:
            text = f"{quality['name']} {ratio:.1%} of baseline < {sla.min_accuracy_ratio:.1%}"
        miss("min_accuracy_ratio", ratio, sla.min_accuracy_ratio, text)
    if sla.min_accuracy is not None and quality["value"] < sla.min_accuracy:
        miss("min_accuracy", quality["value"], sla.min_accuracy,
             f"{quality['name']} {quality['value']:.3f} < {sla.min_accuracy:.3f}")
    p50 = row.get("latency_p50_ms")
    if sla.max_latency_ms is not None and p50 is not None and p50 > sla.max_latency_ms:
        miss("max_latency_ms", p50, sla.max_latency_ms, f"p50 {p50:.1f} ms > {sla.max_latency_ms:g} ms")
    if sla.max_size_mb is not None and row["size_mb"] > sla.max_size_mb:
        miss("max_size_mb", row["size_mb"], sla.max_size_mb, f"size {row['size_mb']:.1f} MB > {sla.max_size_mb:g} MB")
    return found


def judge(row: dict, sla: Sla) -> list[str]:
    """Reasons the candidate fails the SLA (empty when it passes), each with the numbers."""
    if row.get("error"):
        return [row["error"]]
    return [s["text"] for s in shortfalls(row, sla)]


def unchecked(row: dict, sla: Sla) -> list[str]:
    """SLA terms the row cannot be judged on, and why (a runtime that takes no device timings says so)."""
    if sla.max_latency_ms is not None and row.get("latency_p50_ms") is None and row.get("latency_note"):
        return [f"max_latency_ms {sla.max_latency_ms:g} not checked: {row['latency_note']}"]
    return []


def cheapest(rows: list[dict]) -> dict | None:
    """The passing candidate that costs least: smallest, then fastest. Files identical to an earlier
    row's are that row (their latencies differ by noise alone), so the recommendation does not flip
    between names for one file."""
    seen, passing = set(), []
    for row in rows:
        if row["verdict"]["passed"] and (row.get("content") is None or row["content"] not in seen):
            passing.append(row)
            seen.add(row.get("content"))
    return min(passing, key=lambda r: (r["bytes"], r.get("latency_p50_ms") or 0.0), default=None)
