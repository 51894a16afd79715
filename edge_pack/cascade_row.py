"""The job's [cascade] as a candidate row of each target's verdict: its stages are rows the bench measured
(or the fp32 source, or a service stated in the job), their per-sample answers and confidences are routed
by edge_pack/cascade.py (threshold picked on one half of the eval set, figures from the other), and the row
is judged by the target's SLA like any candidate: accuracy, expected latency, size of what ships on the
device, cost per month. A cascade is shown and judged, not shipped: the release zip holds one candidate."""
from __future__ import annotations

from dataclasses import asdict

from . import cascade, statistics
from .config import Config
from .errors import UserError
from .models import CascadeSpec, Service, StageRef
from .results import Quality, Results, Row, TargetResult
from .sla import judge, quality_floor

NAME = "cascade"  # the model column of the cascade's row


def add_cascades(results: Results, config: Config) -> None:
    """A cascade row per target that built both stages; an error, before anything is written, when none did."""
    spec = config.cascade
    if spec is None:
        return
    made = []
    for name, target in results.targets.items():
        row = _row(name, target, [r for r in results.rows_of(name) if r.cascade is None], spec, config,
                   results.baseline)
        if row is not None:
            results.rows.append(row)
            made.append(name)
            point = row.cascade["point"]
            target.decision.text += (f"; the cascade {row.precision}: {row.verdict.summary()}, {row.quality.name} "
                                     f"{point['accuracy']:.3f} with {point['escalated']:.0%} escalated")
    if not made:
        built = sorted({r.key for r in results.rows if r.cascade is None})
        raise UserError(f"{_where(config)}[cascade] routes {spec.first} → {spec.fallback}, but no target measured "
                        f"both stages (candidates measured: {', '.join(built) or 'none'}); name candidates that were "
                        "built, or build them")


def check_built(config: Config, built: dict[str | None, set[str]], baseline_model: str | None = None) -> None:
    """Before anything is measured: every stage of the [cascade] names a precision its model built (`built`:
    model -> precisions in the bundle; None is the job's one source). The fp32 source is always there."""
    spec = config.cascade
    if spec is None:
        return
    stages = [("cascade.first", spec.first)]
    if isinstance(spec.fallback, Service):
        stages.append(("cascade.fallback.accuracy_from", spec.fallback.accuracy_from))
    else:
        stages.append(("cascade.fallback", spec.fallback))
    for key, ref in stages:
        model = ref.model if ref.model is not None else baseline_model
        have = built.get(model, set())
        if ref.precision in ("source", "fp32") or ref.precision in have:
            continue
        whose = f"model {model}" if model else "the bundle"
        raise UserError(f"{_where(config, key)}{key} names {ref}, but {whose} has no {ref.precision} artifact "
                        f"(built: {', '.join(sorted(have)) or 'none'}); name a built precision, or build it")


def _where(config: Config, key: str = "cascade") -> str:
    from .config import locate

    if config.path is None:
        return ""
    line = locate(config.path.read_text(errors="replace"), key)
    return f"{config.path}{f':{line}' if line else ''}: "


class _Missing(Exception):
    """A stage this target did not build or measure: no cascade row on it."""


def _row(name: str, target: TargetResult, rows: list[Row], spec: CascadeSpec, config: Config,
         baseline_model: str | None) -> Row | None:
    cost = config.cost_for(name)
    requests = cost.requests_per_month if cost is not None and cost.requests_per_month > 0 else None
    try:
        first_row, first = _stage(spec.first, target, rows, baseline_model, requests, config)
        if isinstance(spec.fallback, Service):
            _, like = _stage(spec.fallback.accuracy_from, target, rows, baseline_model, requests, config)
            fallback_row = None
            fallback = cascade.Stage.service(spec.fallback.name, like, spec.fallback.latency_ms,
                                             spec.fallback.cost_per_request)
        else:
            fallback_row, fallback = _stage(spec.fallback, target, rows, baseline_model, requests, config)
    except _Missing:
        return None
    if any(s.confidence is None for s in first.samples.values()):
        raise UserError(f"{_where(config)}[cascade] first = {spec.first!r}: its samples carry no confidence (an "
                        "embedder's centroid accuracy has none); cascade a classifier or a text-generation model")
    sla = config.sla_for(name)
    base = _baseline_samples(target, baseline_model)
    # The floor each half is held to is the SLA's share of the baseline's accuracy on that same half.
    pick, report = cascade.split(sorted(first.samples))
    floor = quality_floor(sla, sum(base[i] for i in pick) / len(pick))
    found = cascade.simulate(first, fallback, target_accuracy=floor, requests_per_month=requests)
    right = cascade.routed(first, fallback, report, found.threshold)
    base_right = [base[i] for i in report]
    base_value = sum(base_right) / len(base_right)
    point = found.point
    device_bytes = first_row.bytes + (fallback_row.bytes if fallback_row is not None and fallback_row is not first_row
                                      else 0)
    text = (f"{found.how}: accuracy {point.accuracy:.3f} with {point.escalated:.0%} escalated, vs "
            f"{found.first} alone {found.first_alone.accuracy:.3f} and {found.fallback} alone "
            f"{found.fallback_alone.accuracy:.3f}")
    row = Row(target=name, precision=f"{spec.first} → {spec.fallback}", format=first_row.format, bits=first_row.bits,
              bytes=device_bytes, size_mb=device_bytes / 1e6, model=NAME, runtime=first_row.runtime,
              threads=first_row.threads, host=first_row.host,
              obtained={"size": "measured (the device's stages)", "quality": "simulated on the eval set",
                        "latency": "expected from the stages' p50"},
              latency_p50_ms=point.latency_ms, cost_per_month=point.cost_per_month,
              latency_note=None if point.latency_ms is not None else
              f"no expected latency: {found.first if first.latency_ms is None else found.fallback} has no p50 here",
              metrics={"accuracy": point.accuracy, "escalated": point.escalated, "samples": len(report)},
              quality=Quality(target.quality_name, point.accuracy, base_value,
                              point.accuracy / base_value if base_value else None, point.accuracy - base_value,
                              statistics.accuracy_certainty(right, base_right, strict=sla.confidence)),
              cascade={"first": str(spec.first), "fallback": str(spec.fallback), "threshold": found.threshold,
                       "picked_on": found.picked_on, "reported_on": found.reported_on,
                       "target_accuracy": found.target_accuracy, "text": text, "point": asdict(point),
                       "first_alone": asdict(found.first_alone), "fallback_alone": asdict(found.fallback_alone),
                       "curve": [asdict(p) for p in found.curve]})
    row.verdict = judge(row, sla)
    return row


def _stage(ref: StageRef, target: TargetResult, rows: list[Row], baseline_model: str | None, requests,
           config: Config) -> tuple[Row | None, cascade.Stage]:
    """The measured row of a stage and its routing view; the fp32 source takes the answers of the source in
    torch and the latency and cost of the target's fp32 artifact, when one was built."""
    model = ref.model if ref.model is not None else baseline_model
    own = [r for r in rows if r.model == model]  # in a job of one source, model and r.model are None
    row = next((r for r in own if r.precision == ref.precision), None)
    if row is None and ref.precision in ("source", "fp32"):
        samples = _baseline_samples(target, model, as_samples=True)
        row = next((r for r in own if r.bits >= 32 and r.ran), None)  # its latency and cost, when built
        return row, cascade.Stage.of(str(ref), samples, row.latency_p50_ms if row else None, _per_request(row, requests))
    if row is None:
        raise _Missing
    if not row.ran or not row.samples:
        raise _Missing  # it failed on this target, or the eval data had no labels: nothing to route
    samples = [cascade.Sample(s["id"], bool(s["correct"]), s.get("confidence")) for s in row.samples]
    return row, cascade.Stage.of(str(ref), samples, row.latency_p50_ms, _per_request(row, requests))


def _per_request(row: Row | None, requests) -> float | None:
    if row is None or requests is None or row.cost_per_month is None:
        return None
    return row.cost_per_month / requests


def _baseline_samples(target: TargetResult, model: str | None, as_samples: bool = False):
    """The fp32 source's samples: {id: correct}, or as cascade samples (its confidence, when it has one)."""
    by_model = target.baseline.get("by_model") or {}
    samples = (by_model.get(model) or {}).get("samples") if model in by_model else target.baseline.get("samples")
    if not samples:
        raise _Missing
    if as_samples:
        return [cascade.Sample(s["id"], bool(s["correct"]), s.get("confidence") or 0.0) for s in samples]
    return {s["id"]: bool(s["correct"]) for s in samples}
