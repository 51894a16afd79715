"""The decision per target, from the measured rows and the SLA alone (so a report can be regenerated from
results.json): where quality falls off the cliff as bits per weight shrink, and the cheapest candidate
that meets the SLA — or a plain statement that none does, naming the limit and by how much it was missed."""
from __future__ import annotations

from .sla import SLA_KEYS, Sla, cheapest, quality_floor, shortfalls

QUALITY_LIMITS = ("min_accuracy_ratio", "min_accuracy")
LIMIT_NAMES = {"min_accuracy_ratio": "the quality floor (share of the fp32 baseline)",
               "min_accuracy": "the absolute quality floor", "max_latency_ms": "the latency limit",
               "max_size_mb": "the size limit"}


def sla_of(described: dict) -> Sla:
    """The Sla a results file describes (Sla.describe() leaves out the limits that are not set)."""
    return Sla(**{key: described.get(key) for key in SLA_KEYS})


def measured(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not r.get("error") and r.get("quality")]


def gap(limit: str, by: float, quality_name: str = "quality") -> str:
    """How far a value is from a limit, in the limit's unit."""
    if limit == "max_size_mb":
        return f"{number(by)} MB"
    if limit == "max_latency_ms":
        return f"{number(by)} ms"
    if limit == "min_accuracy_ratio":
        return f"{by * 100:.1f} points of the baseline's {quality_name}"
    return f"{by:.3f} {quality_name}"


def cliff(rows: list[dict], sla: Sla, baseline: float) -> dict:
    """Quality against bits per weight: the lowest bit width down to which every candidate keeps the
    quality the SLA asks for, and the highest at which one falls below it."""
    floor = quality_floor(sla, baseline)
    points = []
    for row in sorted(measured(rows), key=lambda r: (-r["bits"], r["bytes"])):
        misses = [s for s in shortfalls(row, sla) if s["limit"] in QUALITY_LIMITS]
        points.append({"precision": row["precision"], "bits": row["bits"], "value": row["quality"]["value"],
                       "ratio": row["quality"]["ratio"], "size_mb": row["size_mb"], "keeps_quality": not misses})
    if not points:
        return {"floor": floor, "holds_to_bits": None, "falls_at_bits": None, "points": [],
                "text": "nothing was measured"}
    name = rows[0]["quality"]["name"] if rows and rows[0].get("quality") else "quality"
    falls_at = max((p["bits"] for p in points if not p["keeps_quality"]), default=None)
    holding = [p["bits"] for p in points if falls_at is None or p["bits"] > falls_at]
    holds_to = min(holding, default=None)
    lowest = points[-1]
    if floor is None:
        text = (f"no quality limit in the SLA; {name} goes from {points[0]['value']:.3f} at {points[0]['bits']:g} "
                f"bits to {lowest['value']:.3f} at {lowest['bits']:g} bits")
    elif falls_at is None:
        text = (f"no cliff down to {lowest['bits']:g} bits: every candidate keeps {name} ≥ {floor:.3f} "
                f"(lowest: {lowest['precision']}, {lowest['value']:.3f})")
    else:
        first = next(p for p in points if p["bits"] == falls_at and not p["keeps_quality"])
        if holds_to is not None:
            text = (f"{name} holds down to {holds_to:g} bits; at {falls_at:g} bits {first['precision']} falls to "
                    f"{first['value']:.3f} < {floor:.3f}")
        else:
            text = (f"{name} is below the SLA already at {falls_at:g} bits, the most measured: {first['precision']} "
                    f"{first['value']:.3f} < {floor:.3f}")
    return {"floor": floor, "holds_to_bits": holds_to, "falls_at_bits": falls_at, "points": points, "text": text}


def recommendation(name: str, rows: list[dict], sla: Sla, currency: str | None = None) -> dict:
    """The cheapest passing candidate (smallest, then fastest) and a sentence saying so, or the limits
    that rule every candidate out and by how much the closest misses them."""
    best = cheapest(rows)
    if best is not None:
        cost = (f", {best['cost_per_month']:,.2f} {currency}/month" if currency and best.get("cost_per_month")
                is not None else "")
        quality = best["quality"]
        latency = best.get("latency_note") or f"p50 {number(best.get('latency_p50_ms'))} ms"
        return {"recommended": best["precision"], "blocking": [], "closest": None,
                "text": (f"{name}: ship {best['precision']} — the smallest candidate that meets the SLA "
                         f"({number(best['size_mb'])} MB, {latency}, "
                         f"{quality['name']} {quality['value']:.3f}{cost})")}
    ran = measured(rows)
    if not ran:
        errors = [r["error"] for r in rows if r.get("error")]
        reason = f": {errors[0]}" if errors else ""
        return {"recommended": None, "blocking": [], "closest": None,
                "text": f"{name}: no candidate meets the SLA — none ran{reason}"}
    misses = {r["precision"]: shortfalls(r, sla) for r in ran}
    quality_name = ran[0]["quality"]["name"]
    blocking = []
    for limit in SLA_KEYS:
        if all(any(s["limit"] == limit for s in found) for found in misses.values()):
            nearest = min(ran, key=lambda r: _miss(misses[r["precision"]], limit)["by"])
            miss = _miss(misses[nearest["precision"]], limit)
            blocking.append({"limit": limit, "precision": nearest["precision"], "by": miss["by"],
                             "text": miss["text"]})
    closest = min(ran, key=lambda r: (len(misses[r["precision"]]), sum(_relative(s) for s in misses[r["precision"]])))
    if blocking:
        parts = [f"every candidate misses {LIMIT_NAMES[b['limit']]}; the nearest, {b['precision']}, by "
                 f"{gap(b['limit'], b['by'], quality_name)} ({b['text']})" for b in blocking]
        text = f"{name}: no candidate meets the SLA — " + "; ".join(parts)
    else:
        found = misses[closest["precision"]]
        text = (f"{name}: no candidate meets the SLA — no single limit rules them all out; the closest, "
                f"{closest['precision']}, misses " + "; ".join(
                    f"{LIMIT_NAMES[s['limit']]} by {gap(s['limit'], s['by'], quality_name)} ({s['text']})"
                    for s in found))
    return {"recommended": None, "blocking": blocking, "closest": closest["precision"], "text": text}


def _miss(found: list[dict], limit: str) -> dict:
    return next(s for s in found if s["limit"] == limit)


def _relative(shortfall: dict) -> float:
    return shortfall["by"] / shortfall["bound"] if shortfall["bound"] else shortfall["by"]


def number(value) -> str:
    """Milliseconds or megabytes: enough digits to tell small models apart."""
    if value is None:
        return "—"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"
