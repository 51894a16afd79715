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
    if "top1_agreement" in found:
        return f"top-1 {found['top1_agreement']:.1%}"
    return f"cos {found['cosine_mean']:.4f}" if "cosine_mean" in found else "—"


def verdict_table(results: dict) -> Group:
    """target · precision · size · quality (Δ) · latency · pass/fail, then the recommendation per target."""
    parts = []
    for name, target in results["targets"].items():
        quality = target["baseline"]["quality"]
        table = Table(title=f"{name} — measured on {target.get('measured_on', target['runtime'])} ({target['threads']} thread"
                            f"{'s' if target['threads'] > 1 else ''})", title_justify="left")
        cost = target.get("cost")
        for header, justify in (("target", "left"), ("precision", "left"), ("size MB", "right"),
                                (quality["name"], "right"), ("vs fp32", "right"), ("p50 ms", "right"),
                                ("p90 ms", "right"), ("load ms", "right"),
                                *([(f"{cost['currency']}/month", "right")] if cost else []), ("result", "left")):
            table.add_column(header, justify=justify)
        for row in (r for r in results["rows"] if r["target"] == name):
            verdict = row["verdict"]
            mark = ("[green]pass[/]" + (" [bold]★ ship[/]" if row["precision"] == target["recommended"] else "")
                    if verdict["passed"] else "[red]fail[/]: " + "; ".join(verdict["reasons"]))
            if verdict.get("unchecked"):
                mark += " [yellow](latency not checked)[/]"
            mark += "".join(f"\n[yellow]⚠ {w}[/]" for w in row.get("warnings", []))
            p50 = f"[yellow]{row['latency_note']}[/]" if row.get("latency_note") else _num(row.get("latency_p50_ms"))
            monthly = [f"{row['cost_per_month']:,.2f}" if row.get("cost_per_month") is not None else "—"] if cost else []
            table.add_row(name, row["precision"], _num(row['size_mb']), _quality(row), _agreement(row),
                          p50, _num(row.get("latency_p90_ms")), _num(row.get("load_ms")), *monthly, mark)
        for rejected in target.get("rejected_at_build", []):
            status = "[yellow]skipped[/]" if rejected["status"] == "skipped" else "[red]not built[/]"
            table.add_row(name, rejected["precision"], "—", "—", "—", "—", "—", "—", *(["—"] if cost else []),
                          f"{status}: {rejected['reason']}")
        sla = ", ".join(f"{k} {v:g}" for k, v in target["sla"].items()) or "none"
        notes = [
            f"baseline: {target['baseline']['origin']}, {quality['name']} {quality['value']:.3f}"
            f" · inputs: {target['eval']} · SLA: {sla}",
        ]
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
