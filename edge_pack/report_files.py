"""report.html and report.md: the decision written down for people. report.html is one self-contained file
(inline CSS and SVG charts, nothing fetched) with the recommendation, the verdict tables, the charts with
the SLA's limits, the source and tool versions, and how each number was obtained; report.md is the short
summary a CI job posts as a comment. Both are made from results.json alone, so `edge-pack report DIR`
can regenerate them."""
from __future__ import annotations

from pathlib import Path

from .decide import number
from .results import HEADLINES, Results, Row, TargetResult
from .staging import write_atomic
from .task_bench import failure_notes

REPORT_HTML, REPORT_MD = "report.html", "report.md"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def write_reports(folder: Path, results: Results) -> dict[str, Path]:
    """Write report.html and report.md into `folder`; returns their paths."""
    view = _view(results)
    paths = {"html": Path(folder) / REPORT_HTML, "md": Path(folder) / REPORT_MD}
    write_atomic(paths["html"], _render("report.html.j2", view, html=True))
    write_atomic(paths["md"], _render("report.md.j2", view, html=False))
    return paths


def _render(template: str, view: dict, html: bool) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=html, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["num"] = number
    env.filters["cell"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    return env.get_template(template).render(**view)


# ---------------------------------------------------------------------------------- what the page shows

def _view(results: Results) -> dict:
    from .charts import target_charts

    targets = []
    for name, target in results.targets.items():
        rows = results.rows_of(name)
        currency = (target.cost or {}).get("currency")
        recommended = next((r for r in rows if r.key == target.recommended), None)
        targets.append({
            "name": name, "info": target, "decision": target.decision.text, "cliff": target.cliff.get("text", ""),
            "status": target.status, "passed": target.passed, "recommended": recommended and _row(recommended, target),
            "rows": [_row(r, target) for r in sorted(rows, key=_order(results))],
            "models": any(r.model for r in rows),
            "cascades": [{"name": r.precision, "text": r.cascade["text"]} for r in rows if r.cascade],
            "rejected": target.rejected_at_build, "sla": _sla_text(target.sla),
            "cost": target.cost, "how": _how(target, rows, results.options),
            "charts": target_charts(name, target, rows), "device": (target.device or {}).get("name"),
            "release": (results.releases or {}).get(name), "tool": target.tool, "currency": currency,
            "failures": failure_notes(rows, target.baseline),
        })
    return {"results": results, "source": results.source, "targets": targets, "status": results.status,
            "headline": HEADLINES[results.status], "passed": results.passed, "tool": results.tool,
            "edge_pack": results.edge_pack, "options": results.options, "sla_file": results.sla_file,
            "unmeasured": results.unmeasured, "created": results.created,
            "any_cost": any(t["cost"] for t in targets), "models": results.models, "baseline": results.baseline}


def _order(results: Results):
    """Rows by model (as the job lists them), then bits and size; the cascade last."""
    models = list(results.models)
    return lambda r: (r.cascade is not None, models.index(r.model) if r.model in models else 0, -r.bits, r.bytes)


def _row(row: Row, target: TargetResult) -> dict:
    quality = row.quality
    found = row.metrics or {}
    agreement = (f"KL {found['kl_divergence']:.4f}, same top-1 {found['same_top1']:.1%}" if "kl_divergence" in found
                 else f"top-1 {found['top1_agreement']:.1%}" if "top1_agreement" in found
                 else f"cos {found['cosine_mean']:.4f}" if "cosine_mean" in found else "—")
    not_measured = [f"{what} {how}" for what, how in row.obtained.items() if how != "measured"]
    cost, currency = row.cost_per_month, (target.cost or {}).get("currency")
    return {
        "precision": row.precision, "model": row.model or "", "label": row.label, "bits": _bits(row), "size": number(row.size_mb),
        "quality": f"{quality.value:.3f}" if quality else "—", "certainty": certainty_text(row),
        "delta": (f"{quality.delta * 100:+.1f} pt" if quality.name.endswith("accuracy") else f"{quality.delta:+.4f}")
        if quality else "",
        "agreement": agreement, "p50": latency_text(row), "p90": number(row.latency_p90_ms),
        "load": number(row.load_ms), "rss": number(row.peak_rss_mb),
        "cost": f"{cost:,.2f}" if cost is not None else "—",
        # where a table has no currency column: the amount with its currency, or — when there is none
        "price": f"{cost:,.2f} {currency}" if cost is not None and currency else "—",
        "cost_terms": "; ".join(f"{t['term']} {t['amount']:,.2f} ({t['inputs']})" for t in row.cost_terms),
        "status": row.verdict.status, "passed": row.verdict.passed, "ship": row.key == target.recommended,
        "result": row.verdict.summary(), "notes": "; ".join(row.verdict.notes),
        "reasons": "; ".join(row.verdict.reasons), "obtained": ", ".join(not_measured) or "measured",
        "runtime": row.runtime or "—",
    }


def _bits(row: Row) -> str:
    """Bits per weight the file holds, with the precision's nominal bits when they differ."""
    if row.bits_per_weight is None or abs(row.bits_per_weight - row.bits) < 0.05:
        return f"{row.bits:g}"
    return f"{row.bits_per_weight:.2f} ({row.bits:g} nominal)"


def certainty_text(row: Row) -> str:
    """The 95 % interval of a labeled accuracy and the paired test against the baseline, compactly:
    '[0.79, 0.96] McNemar p=1.00'."""
    certainty = (row.quality.certainty if row.quality else None) or {}
    if not certainty:
        return ""
    low, high = certainty["interval"]
    return f"[{low:.2f}, {high:.2f}] McNemar p={certainty['p_value']:.2f}"


def latency_text(row: Row) -> str:
    """p50, with its 95 % interval when there are enough timings: '62.8 (60.1–66.0)'."""
    if row.latency_note:
        return row.latency_note
    interval = (row.latency or {}).get("p50_interval")
    text = number(row.latency_p50_ms)
    return f"{text} ({number(interval[0])}–{number(interval[1])})" if interval else text


def _sla_text(sla: dict) -> str:
    return sla_text(sla, {"min_accuracy_ratio": "quality ≥ {:.1%} of fp32", "min_accuracy": "quality ≥ {:.3f}",
                          "max_latency_ms": "p50 ≤ {:g} ms", "max_size_mb": "size ≤ {:g} MB",
                          "max_memory_mb": "peak memory ≤ {:g} MB", "max_cost_per_month": "cost ≤ {:,.2f}/month"})


def sla_text(sla: dict, formats: dict | None = None) -> str:
    """The SLA in one line: each limit (formatted, or as `key value`), the strict confidence and what the
    job accepts unmeasured."""
    parts = []
    for key, value in sla.items():
        if key == "unverified_ok":
            parts.append(f"accepted unmeasured: {', '.join(value)}")
        elif key == "confidence":
            parts.append(f"strict at {value:.0%} confidence")
        else:
            parts.append(formats[key].format(value) if formats and key in formats else f"{key} {value:g}")
    return ", ".join(parts) or "none"


def _how(target: TargetResult, rows: list[Row], options: dict) -> list[dict]:
    """How each number was obtained: measured on which runtime and host, emulated, or estimated."""
    ran = [r for r in rows if not r.error]
    runtimes = sorted({r.runtime for r in ran if r.runtime})
    hosts = sorted({_host(r.host or {}) for r in ran} - {""})
    where = f"{', '.join(runtimes) or target.measured_on}" + (f" on {', '.join(hosts)}" if hosts else "")
    device = (target.device or {}).get("name")
    baseline = target.baseline
    items = [{"what": "size", "how": "measured",
              "text": "bytes of the artifact files on disk (each listed with its sha256 in manifest.json)"}]
    for what, key in (("quality", "quality"), ("latency", "latency")):
        kinds = {}
        for row in ran:
            kinds.setdefault(row.obtained.get(key, "measured"), []).append(row.precision)
        label = " / ".join(f"{k} ({', '.join(v)})" if len(kinds) > 1 else k for k, v in kinds.items()) or "not measured"
        if what == "quality":
            text = (f"{baseline['quality']['name']} of each candidate's outputs on {target.eval}, against the "
                    f"{baseline['origin']} ({baseline['quality']['value']:.3f}); run with {where}. Labeled accuracy "
                    "has its 95 % Wilson interval and an exact McNemar test against the baseline on the same samples")
        else:
            load = target.load or {}
            text = (f"p50 and p90 of {options.get('runs', '?')} timed runs after {options.get('warmup', '?')} "
                    f"warm-up runs, {target.threads} thread(s), input of {options.get('seq_len', '?')} tokens "
                    f"for text models, in {options.get('rounds', 1)} rounds interleaved across the candidates "
                    f"(identical files measured once); p50 interval (95 %) from order statistics; load average "
                    f"{load.get('before')} before, up to {load.get('during')} while measuring; run with {where}")
        items.append({"what": what, "how": label, "text": text})
    if device:
        items.append({"what": "device", "how": "stated",
                      "text": f"the target device is {device} (from the target's description); numbers marked "
                              "measured were taken with the runtime above, on the host named there"})
    if target.cost:
        items.append({"what": "cost per month", "how": "estimated",
                      "text": f"{target.cost['formula']} ({target.cost['currency']})"})
    return items


def _host(host: dict) -> str:
    parts = [host.get("system", ""), host.get("machine", "")]
    text = " ".join(p for p in parts if p)
    return f"{text} ({host['processor']})" if host.get("processor") and host["processor"] != host.get("machine") else text
