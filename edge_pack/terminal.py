"""The tables people read: the verdict after a bench, the artifacts after a build, the targets."""
from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .decide import number as _num


def _quality(row: dict) -> str:
    quality = row.get("quality")
    if not quality:
        return "—"
    text = f"{quality['value']:.3f}"
    if quality.get("delta") is not None and quality["name"].endswith("accuracy"):
        text += f" ({quality['delta'] * 100:+.1f} pt)"
    return text


def _agreement(row: dict) -> str:
    """Label-free agreement with fp32, shown beside a labeled accuracy: top-1 for classifiers, cosine else."""
    found = row.get("metrics") or {}
    if "kl_divergence" in found:
        return f"KL {found['kl_divergence']:.4f}"
    if "top1_agreement" in found:
        return f"top-1 {found['top1_agreement']:.1%}"
    return f"cos {found['cosine_mean']:.4f}" if "cosine_mean" in found else "—"


def _metric(row: dict, key: str) -> str:
    return _num((row.get("metrics") or {}).get(key))


def _extra_columns(rows: list[dict]) -> list[tuple[str, object]]:
    """Columns for what only some runtimes measure (a decoder's perplexity and tokens/s, the bandwidth
    estimate of a board's generation speed), shown when a row of the target has them."""
    found = [r.get("metrics") or {} for r in rows]
    columns = []
    if any("perplexity" in m for m in found):
        columns.append(("ppl", lambda r: _metric(r, "perplexity")))
    if any("tg_tokens_per_s" in m for m in found):
        columns.append(("pp / tg tok/s", lambda r: f"{_metric(r, 'pp_tokens_per_s')} / {_metric(r, 'tg_tokens_per_s')}"))
    profiles = next((r["estimates"] for r in rows if r.get("estimates")), {})
    if profiles:
        def estimate(row):
            cells = []
            for key in profiles:
                found = (row.get("estimates") or {}).get(key)
                ratio = found.get("measured_ratio") if found else None
                cells.append("—" if not found else f"≈{_num(found['tg_tokens_per_s'])}"
                             + (f" (measured {ratio:.0%})" if ratio is not None else ""))
            return " / ".join(cells)
        names = " / ".join(p.get("short", p["name"]) for p in profiles.values())
        columns.append((f"est. tg tok/s {names}", estimate))
    return columns


def verdict_table(results: dict) -> Group:
    """target · precision · size · quality (Δ) · latency · pass/fail, then the recommendation per target."""
    parts = []
    for name, target in results["targets"].items():
        target_rows = [r for r in results["rows"] if r["target"] == name]
        extra = _extra_columns(target_rows)
        quality = target["baseline"]["quality"]
        table = Table(title=f"{name} — measured on {target.get('measured_on', target['runtime'])} ({target['threads']} thread"
                            f"{'s' if target['threads'] > 1 else ''})", title_justify="left")
        cost = target.get("cost")
        if cost:
            extra.append((f"{cost['currency']}/month", lambda r: f"{r['cost_per_month']:,.2f}"
                          if r.get("cost_per_month") is not None else "—"))
        for header, justify in (("target", "left"), ("precision", "left"), ("size MB", "right"),
                                (quality["name"], "right"), ("vs fp32", "right"), ("p50 ms", "right"),
                                ("p90 ms", "right"), ("load ms", "right"),
                                *((header, "right") for header, _ in extra), ("result", "left")):
            table.add_column(header, justify=justify)
        for row in (r for r in results["rows"] if r["target"] == name):
            verdict = row["verdict"]
            mark = ("[green]pass[/]" + (" [bold]★ ship[/]" if row["precision"] == target["recommended"] else "")
                    if verdict["passed"] else "[red]fail[/]: " + "; ".join(verdict["reasons"]))
            if verdict.get("unchecked"):
                mark += " [yellow](latency not checked)[/]"
            mark += "".join(f"\n[yellow]⚠ {w}[/]" for w in row.get("warnings", []))
            p50 = f"[yellow]{row['latency_note']}[/]" if row.get("latency_note") else _num(row.get("latency_p50_ms"))
            table.add_row(name, row["precision"], _num(row['size_mb']), _quality(row), _agreement(row),
                          p50, _num(row.get("latency_p90_ms")), _num(row.get("load_ms")),
                          *(cell(row) for _, cell in extra), mark)
        for rejected in target.get("rejected_at_build", []):
            status = "[yellow]skipped[/]" if rejected["status"] == "skipped" else "[red]not built[/]"
            table.add_row(name, rejected["precision"], "—", "—", "—", "—", "—", "—", *("—" for _ in extra),
                          f"{status}: {rejected['reason']}")
        sla = ", ".join(f"{k} {v:g}" for k, v in target["sla"].items()) or "none"
        notes = [
            f"baseline: {target['baseline']['origin']}, {quality['name']} {quality['value']:.3f}"
            f" · inputs: {target['eval']} · SLA: {sla}",
        ]
        base = target["baseline"].get("metrics") or {}
        if "perplexity" in base:
            notes.append(f"baseline perplexity {base['perplexity']:.3f} on {base['scored_tokens']} tokens")
        device = next((r["host"] for r in target_rows if (r.get("host") or {}).get("address")), None)
        if device:
            notes.append(f"device: {device['address']} — {device.get('device_model') or device.get('cpu')}, "
                         f"{device.get('ram_mb')} MB RAM, {device.get('os')}")
        if extra and any(header.startswith("est.") for header, _ in extra):
            notes.append("est. = generation ceiling from memory bandwidth (bandwidth ÷ bytes of weights), "
                         "an estimate, not a measurement")
        if target.get("cliff"):
            notes.append(f"cliff: {escape(target['cliff']['text'])}")
        decision = target.get("decision", {}).get("text") or (
            f"{name}: ship {target['recommended']}" if target["recommended"] else f"{name}: no candidate meets the SLA")
        notes.append(f"[bold {'green' if target['recommended'] else 'red'}]{escape(decision)}[/]")
        parts += [table, *(Text.from_markup(n) for n in notes), Text("")]
    return Group(*parts)


def build_table(manifest: dict) -> Group:
    table = Table(title=f"built {manifest['source']['name']} ({manifest['source']['task']})", title_justify="left")
    for header in ("target", "precision", "file", "size MB", "validation"):
        table.add_column(header, justify="right" if header == "size MB" else "left")
    for artifact in manifest["artifacts"]:
        check = artifact.get("validation", {})
        table.add_row(artifact["target"], artifact["precision"], artifact["files"][0]["path"],
                      _num(artifact['bytes'] / 1e6),
                      f"[green]ok[/] cosine {check['cosine_min']:.4f}" if check else "")
    for rejected in manifest.get("rejected", []):
        status = "[yellow]skipped[/]" if rejected["status"] == "skipped" else "[red]failed[/]"
        table.add_row(rejected["target"], rejected["precision"], "—", "—", f"{status}: {rejected['reason']}")
    return Group(table)


def targets_table(rows: list[dict]) -> Table:
    table = Table(title="targets", title_justify="left")
    for header in ("target", "format", "precisions (default in bold)", "runtime", "toolchain here"):
        table.add_column(header)
    for row in rows:
        precisions = " ".join(f"[bold]{p}[/]" if p in row["default_precisions"] else p for p in row["precisions"])
        status = "[green]installed[/]" if not row["missing"] else f"[red]missing {', '.join(row['missing'])}[/] — {row['install_hint']}"
        runtimes = "\n".join(f"{name} [green]ready[/]" if not missing else
                             f"{name} [red]not ready[/] — {'; '.join(missing)} (see edge-pack doctor)"
                             for name, missing in row.get("runtimes_missing", {n: [] for n in row["runtimes"]}).items())
        table.add_row(row["name"], row["format"], precisions, runtimes, status)
    return table


def print_to_stdout(renderable) -> None:
    Console(width=160 if not Console().is_terminal else None).print(renderable)
