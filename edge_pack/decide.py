"""The decision per target, from the measured rows and the SLA alone (so a report can be regenerated from
results.json): where quality falls off the cliff as bits per weight shrink, and the cheapest candidate
that meets the SLA — or a plain statement that none does, naming the limit and by how much it was missed,
or that the best one passes only what could be measured."""
from __future__ import annotations

from .results import PASS, UNVERIFIED, Decision, Row
from .sla import LIMITS, QUALITY_LIMITS, Sla, quality_floor, shortfalls, unchecked

LIMIT_NAMES = {"min_accuracy_ratio": "the quality floor (share of the fp32 baseline)",
               "min_accuracy": "the absolute quality floor", "max_latency_ms": "the latency limit",
               "max_size_mb": "the size limit",
               "max_memory_mb": "the memory limit", "max_cost_per_month": "the cost limit"}


def measured(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.ran]


def gap(limit: str, by: float, quality_name: str = "quality") -> str:
    """How far a value is from a limit, in the limit's unit."""
    if limit in ("max_size_mb", "max_memory_mb"):
        return f"{number(by)} MB"
    if limit == "max_latency_ms":
        return f"{number(by)} ms"
    if limit == "max_cost_per_month":
        return f"{by:,.2f} per month"
    if limit == "min_accuracy_ratio":
        return f"{by * 100:.1f} points of the baseline's {quality_name}"
    return f"{by:.3f} {quality_name}"


def cliff(rows: list[Row], sla: Sla, baseline: float) -> dict:
    """Quality against bits per weight (what the files hold, when known): the lowest bit width down to
    which every candidate keeps the quality the SLA asks for, and the highest at which one falls below it."""
    floor = quality_floor(sla, baseline)
    points = []
    for row in sorted(measured(rows), key=lambda r: (-r.bits_shown, r.bytes)):
        misses = [s for s in shortfalls(row, sla) if s["limit"] in QUALITY_LIMITS]
        points.append({"precision": row.key, "bits": round(row.bits_shown, 2), "nominal_bits": row.bits,
                       "value": row.quality.value, "ratio": row.quality.ratio, "size_mb": row.size_mb,
                       "keeps_quality": not misses})
    if not points:
        return {"floor": floor, "holds_to_bits": None, "falls_at_bits": None, "points": [],
                "text": "nothing was measured"}
    name = next(r.quality.name for r in measured(rows))
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


def cheapest(rows: list[Row], by_cost: bool, status: str = PASS) -> Row | None:
    """The candidate with this verdict status that costs least: by cost per month, then size, when the job
    prices candidates ([cost]); else the smallest, then fastest. Files identical to an earlier row's are
    that row (their latencies differ by noise alone), so the pick does not flip between names for one file."""
    seen, eligible = set(), []
    for row in rows:
        if row.cascade is None and row.verdict.status == status and (row.content is None or row.content not in seen):
            eligible.append(row)
            seen.add(row.content)

    def price(row: Row):
        cost = row.cost_per_month if by_cost else None
        return (cost is None if by_cost else False, cost or 0.0, row.bytes, row.latency_p50_ms or 0.0)

    return min(eligible, key=price, default=None)


def rule(by_cost: bool) -> str:
    return ("the cheapest candidate by cost per month (then the smallest)" if by_cost
            else "the smallest candidate")


def recommendation(name: str, rows: list[Row], sla: Sla, currency: str | None = None) -> Decision:
    """The cheapest passing candidate and a sentence naming it and the rule that chose it; else the
    candidate that passes what could be measured (unverified); else the limits that rule every candidate
    out and by how much the closest misses them. With a currency (the job's [cost]) cheapest means cost
    per month, else size."""
    by_cost = currency is not None
    chose = rule(by_cost)
    best = cheapest(rows, by_cost)
    if best is not None:
        accepted = best.verdict.accepted_text()
        return Decision(best.key, f"{name}: ship {best.label} — {chose} that meets the SLA "
                        f"({_facts(best, currency)}){_versus(best, rows, by_cost)}{'; ' + accepted if accepted else ''}",
                        chose, status=PASS)
    unverified = cheapest(rows, by_cost, UNVERIFIED)
    if unverified is not None:
        open_limits = "; ".join(dict.fromkeys(unverified.verdict.unverified))
        keys = sorted({key for r in rows for key in unchecked(r, sla)} - set(sla.unverified_ok))
        accept = ", ".join(f'"{k}"' for k in keys)
        return Decision(None, f"{name}: unverified — {unverified.label} ({_facts(unverified, currency)}) passes "
                        f"what was measured, but {open_limits}; measure it where the limit can be checked, or accept "
                        f"it with [sla.{name}] unverified_ok = [{accept}]", chose, closest=unverified.key,
                        status=UNVERIFIED)
    ran = measured(rows)
    if not ran:
        errors = [r.error for r in rows if r.error]
        reason = f": {errors[0]}" if errors else ""
        return Decision(None, f"{name}: no candidate meets the SLA — none ran{reason}", chose)
    misses = {r.key: shortfalls(r, sla) for r in ran}
    quality_name = ran[0].quality.name
    blocking = []
    for limit in LIMITS:
        if all(any(s["limit"] == limit for s in found) for found in misses.values()):
            nearest = min(ran, key=lambda r: _miss(misses[r.key], limit)["by"])
            miss = _miss(misses[nearest.key], limit)
            blocking.append({"limit": limit, "precision": nearest.label, "by": miss["by"], "text": miss["text"]})
    closest = min(ran, key=lambda r: (len(misses[r.key]), sum(_relative(s) for s in misses[r.key])))
    if blocking:
        parts = [f"every candidate misses {LIMIT_NAMES[b['limit']]}; the nearest, {b['precision']}, by "
                 f"{gap(b['limit'], b['by'], quality_name)} ({b['text']})" for b in blocking]
        text = f"{name}: no candidate meets the SLA — " + "; ".join(parts)
    else:
        found = misses[closest.key]
        text = (f"{name}: no candidate meets the SLA — no single limit rules them all out; the closest, "
                f"{closest.label}, misses " + "; ".join(
                    f"{LIMIT_NAMES[s['limit']]} by {gap(s['limit'], s['by'], quality_name)} ({s['text']})"
                    for s in found))
    return Decision(None, text, chose, blocking, closest.key)


def _versus(best: Row, rows: list[Row], by_cost: bool) -> str:
    """In a job of several models, the best candidate of each other model beside the one shipped: its
    cheapest passing candidate, else its most accurate one — ' vs small f16 (270 MB, accuracy 0.780, fails
    ...)'. Empty for one source."""
    others = dict.fromkeys(r.model for r in rows if r.model and r.model != best.model and r.cascade is None)
    parts = []
    for model in others:
        own = [r for r in rows if r.model == model and r.cascade is None]
        pick = cheapest(own, by_cost) or max(measured(own), key=lambda r: (r.quality.value, -r.bytes), default=None)
        if pick is None:
            continue
        how = "passes too" if pick.verdict.status == PASS else pick.verdict.summary()
        parts.append(f" vs {pick.label} ({number(pick.size_mb)} MB, {pick.quality.name} {pick.quality.value:.3f}, "
                     f"{how})")
    return "".join(parts)


def _facts(row: Row, currency: str | None) -> str:
    cost = (f", {row.cost_per_month:,.2f} {currency}/month" if currency and row.cost_per_month is not None else "")
    latency = row.latency_note or f"p50 {number(row.latency_p50_ms)} ms"
    return f"{number(row.size_mb)} MB, {latency}, {row.quality.name} {row.quality.value:.3f}{cost}"


def _miss(found: list[dict], limit: str) -> dict:
    return next(s for s in found if s["limit"] == limit)


def _relative(shortfall: dict) -> float:
    return shortfall["by"] / shortfall["bound"] if shortfall["bound"] else shortfall["by"]


def number(value) -> str:
    """Milliseconds or megabytes: enough digits to tell small models apart."""
    if value is None:
        return "—"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"
