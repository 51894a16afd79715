"""report.html and report.md: the decision written down for people. report.html is one self-contained file
(inline CSS and SVG charts, nothing fetched) with the recommendation, the verdict tables, the charts with
the SLA's limits, the source and tool versions, and how each number was obtained; report.md is the short
summary a CI job posts as a comment. Both are made from results.json alone, so `edge-pack report DIR`
can regenerate them."""
from __future__ import annotations

from pathlib import Path

from .decide import cliff, number, recommendation, sla_of
from .errors import UserError
from .manifest import RESULTS, read_document
from .staging import write_atomic

REPORT_HTML, REPORT_MD = "report.html", "report.md"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def read_results(folder: Path) -> dict:
    path = Path(folder) / RESULTS
    results = read_document(folder, RESULTS, f"measure the bundle first: edge-pack bench {folder}",
                            f"rerun edge-pack bench {folder}")
    if not isinstance(results, dict) or not isinstance(results.get("targets"), dict) or not isinstance(
            results.get("rows"), list):
        raise UserError(f"{path} is not an edge-pack results file (no targets and rows); rerun edge-pack bench")
    return results


def write_reports(folder: Path, results: dict) -> dict[str, Path]:
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

def _view(results: dict) -> dict:
    from .charts import target_charts

    targets = []
    for name, target in results["targets"].items():
        rows = [r for r in results["rows"] if r["target"] == name]
        sla = sla_of(target["sla"])
        baseline = target["baseline"]["quality"]
        currency = (target.get("cost") or {}).get("currency")
        # Older results files lack the decision and the cliff; both follow from the rows and the SLA.
        decision = target.get("decision") or recommendation(name, rows, sla, currency)
        found_cliff = target.get("cliff") or cliff(rows, sla, baseline["value"])
        recommended = next((r for r in rows if r["precision"] == target.get("recommended")), None)
        targets.append({
            "name": name, "info": target, "decision": decision["text"], "cliff": found_cliff["text"],
            "passed": target["passed"], "recommended": recommended and _row(recommended, target),
            "rows": [_row(r, target) for r in sorted(rows, key=lambda r: (-r["bits"], r["bytes"]))],
            "rejected": target.get("rejected_at_build", []), "sla": _sla_text(target["sla"]),
            "cost": target.get("cost"), "how": _how(target, rows, results.get("options", {})),
            "charts": target_charts(name, target, rows), "device": (target.get("device") or {}).get("name"),
            "release": (results.get("releases") or {}).get(name), "tool": target.get("tool"),
        })
    source = results.get("source", {})
    return {"results": results, "source": source, "targets": targets, "passed": results.get("passed", False),
            "tool": results.get("tool", {}), "edge_pack": results.get("edge_pack", ""),
            "options": results.get("options", {}), "sla_file": results.get("sla_file"),
            "unmeasured": results.get("unmeasured", []), "created": results.get("created"),
            "any_cost": any(t["cost"] for t in targets)}


def _row(row: dict, target: dict) -> dict:
    quality = row.get("quality") or {}
    verdict = row.get("verdict") or {"passed": False, "reasons": [row.get("error") or "not measured"]}
    found = row.get("metrics") or {}
    agreement = (f"top-1 {found['top1_agreement']:.1%}" if "top1_agreement" in found
                 else f"cos {found['cosine_mean']:.4f}" if "cosine_mean" in found else "—")
    delta = quality.get("delta")
    obtained = row.get("obtained") or {}
    not_measured = [f"{what} {how}" for what, how in obtained.items() if how != "measured"]
    cost, currency = row.get("cost_per_month"), (target.get("cost") or {}).get("currency")
    return {
        "precision": row["precision"], "bits": f"{row['bits']:g}", "size": number(row["size_mb"]),
        "quality": f"{quality['value']:.3f}" if quality else "—",
        "delta": (f"{delta * 100:+.1f} pt" if quality.get("name", "").endswith("accuracy") else f"{delta:+.4f}")
        if delta is not None else "",
        "agreement": agreement, "p50": number(row.get("latency_p50_ms")), "p90": number(row.get("latency_p90_ms")),
        "load": number(row.get("load_ms")), "rss": number(row.get("peak_rss_mb")),
        "cost": f"{cost:,.2f}" if cost is not None else "—",
        # where a table has no currency column: the amount with its currency, or — when there is none
        "price": f"{cost:,.2f} {currency}" if cost is not None and currency else "—",
        "passed": verdict["passed"], "ship": row["precision"] == target.get("recommended"),
        "reasons": "; ".join(verdict["reasons"]), "obtained": ", ".join(not_measured) or "measured",
        "runtime": row.get("runtime") or "—",
    }


def _sla_text(sla: dict) -> str:
    names = {"min_accuracy_ratio": "quality ≥ {:.1%} of fp32", "min_accuracy": "quality ≥ {:.3f}",
             "max_latency_ms": "p50 ≤ {:g} ms", "max_size_mb": "size ≤ {:g} MB"}
    return ", ".join(names[k].format(v) for k, v in sla.items() if k in names) or "none"


def _how(target: dict, rows: list[dict], options: dict) -> list[dict]:
    """How each number was obtained: measured on which runtime and host, emulated, or estimated."""
    ran = [r for r in rows if not r.get("error")]
    runtimes = sorted({r["runtime"] for r in ran if r.get("runtime")})
    hosts = sorted({_host(r.get("host") or {}) for r in ran} - {""})
    where = f"{', '.join(runtimes) or target.get('measured_on', '?')}" + (f" on {', '.join(hosts)}" if hosts else "")
    device = (target.get("device") or {}).get("name")
    baseline = target["baseline"]
    items = [{"what": "size", "how": "measured",
              "text": "bytes of the artifact files on disk (each listed with its sha256 in manifest.json)"}]
    for what, key in (("quality", "quality"), ("latency", "latency")):
        kinds = {}
        for row in ran:
            kinds.setdefault((row.get("obtained") or {}).get(key, "measured"), []).append(row["precision"])
        label = " / ".join(f"{k} ({', '.join(v)})" if len(kinds) > 1 else k for k, v in kinds.items()) or "not measured"
        if what == "quality":
            text = (f"{baseline['quality']['name']} of each candidate's outputs on {target['eval']}, against the "
                    f"{baseline['origin']} ({baseline['quality']['value']:.3f}); run with {where}")
        else:
            text = (f"p50 and p90 of {options.get('runs', '?')} timed runs after {options.get('warmup', '?')} "
                    f"warm-up runs, {target.get('threads', 1)} thread(s), input of {options.get('seq_len', '?')} tokens "
                    f"for text models; run with {where}")
        items.append({"what": what, "how": label, "text": text})
    if device:
        items.append({"what": "device", "how": "stated",
                      "text": f"the target device is {device} (from the target's description); numbers marked "
                              "measured were taken with the runtime above, on the host named there"})
    if target.get("cost"):
        items.append({"what": "cost per month", "how": "computed",
                      "text": f"{target['cost']['formula']} ({target['cost']['currency']})"})
    return items


def _host(host: dict) -> str:
    parts = [host.get("system", ""), host.get("machine", "")]
    text = " ".join(p for p in parts if p)
    return f"{text} ({host['processor']})" if host.get("processor") and host["processor"] != host.get("machine") else text
