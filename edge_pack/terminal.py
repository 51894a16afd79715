"""The tables people read: the verdict after a bench, the artifacts after a build, the targets."""
from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .decide import number as _num
from .report_files import sla_text
from .results import FAIL, HEADLINES, PASS, UNVERIFIED, Results, Row, TargetResult
from .task_bench import failure_notes


def _quality(row: Row) -> str:
    quality = row.quality
    if not quality:
        return "—"
    text = f"{quality.value:.3f}"
    if quality.name.endswith("accuracy"):
        text += f" ({quality.delta * 100:+.1f} pt)"
    certainty = quality.certainty
    if certainty:  # the 95 % interval, and the paired test when it says the difference is real
        low, high = certainty["interval"]
        text += f"\n[dim]{low:.2f}–{high:.2f}" + (f" p={certainty['p_value']:.2f}" if certainty["p_value"] < 0.05
                                                   else "") + "[/]"
    return text


def _agreement(row: Row) -> str:
    """Label-free agreement with fp32, shown beside a labeled accuracy: top-1 for classifiers, cosine else."""
    found = row.metrics
    if "kl_divergence" in found:
        return f"KL {found['kl_divergence']:.4f}"
    if "top1_agreement" in found:
        return f"top-1 {found['top1_agreement']:.1%}"
    return f"cos {found['cosine_mean']:.4f}" if "cosine_mean" in found else "—"


def _metric(row: Row, key: str) -> str:
    return _num(row.metrics.get(key))


def _extra_columns(rows: list[Row]) -> list[tuple[str, object]]:
    """Columns for what only some runtimes measure (a decoder's perplexity and tokens/s, the bandwidth
    estimate of a board's generation speed), shown when a row of the target has them."""
    found = [r.metrics for r in rows]
    columns = []
    if any("perplexity" in m for m in found):
        columns.append(("ppl", lambda r: _metric(r, "perplexity")))
    if any("tg_tokens_per_s" in m for m in found):
        columns.append(("pp / tg tok/s", lambda r: f"{_metric(r, 'pp_tokens_per_s')} / {_metric(r, 'tg_tokens_per_s')}"))
    if any("decode_tokens_per_s" in m for m in found):  # a decoder run through its KV cache (LiteRT, ort)
        columns.append(("prefill / decode tok/s",
                        lambda r: f"{_metric(r, 'prefill_tokens_per_s')} / {_metric(r, 'decode_tokens_per_s')}"))
    profiles = next((r.estimates for r in rows if r.estimates), {})
    if profiles:
        def estimate(row):
            cells = []
            for key in profiles:
                found = row.estimates.get(key)
                ratio = found.get("measured_ratio") if found else None
                cells.append("—" if not found else f"≈{_num(found['tg_tokens_per_s'])}"
                             + (f" (measured {ratio:.0%})" if ratio is not None else ""))
            return " / ".join(cells)
        names = " / ".join(p.get("short", p["name"]) for p in profiles.values())
        columns.append((f"est. tg tok/s\n{names}", estimate))
    return columns


MARKS = {PASS: "green", UNVERIFIED: "yellow", FAIL: "red"}


def _result(row: Row, target: TargetResult) -> str:
    verdict = row.verdict
    word, _, rest = verdict.summary().partition(" ")
    mark = f"[{MARKS[verdict.status]}]{word}[/]" + (f" {escape(rest)}" if rest else "")
    if row.key == target.recommended:
        mark += " [bold]★ ship[/]"
    mark += "".join(f"\n[yellow]⚠ {escape(w)}[/]" for w in [*row.warnings, *verdict.notes])
    return mark


def _p50(row: Row) -> str:
    if row.latency_note:
        return f"[yellow]{row.latency_note}[/]"
    if row.cascade and row.latency_p50_ms is not None:  # the stages' p50s weighted by the share escalated
        return f"{_num(row.latency_p50_ms)}\n[dim]expected[/]"
    interval = (row.latency or {}).get("p50_interval")
    text = _num(row.latency_p50_ms)
    return f"{text}\n[dim]{_num(interval[0])}–{_num(interval[1])}[/]" if interval else text


def verdict_table(results: Results) -> Group:
    """target · precision · size · quality (Δ, interval) · latency (interval) · verdict, then the
    recommendation per target and the bench's headline."""
    parts = []
    for name, target in results.targets.items():
        target_rows = results.rows_of(name)
        extra = _extra_columns(target_rows)
        table = Table(title=f"{name} — measured on {target.measured_on} ({target.threads} thread"
                            f"{'s' if target.threads > 1 else ''})", title_justify="left")
        if target.cost:
            extra.append((f"{target.cost['currency']}/month", lambda r: f"{r.cost_per_month:,.2f}"
                          if r.cost_per_month is not None else "—"))
        models = any(r.model for r in target_rows)  # a job of several models: which one each row is
        for header, justify in (("target", "left"), *((("model", "left"),) if models else ()), ("precision", "left"), ("bits", "right"), ("size MB", "right"),
                                (target.quality_name, "right"), ("vs fp32", "right"), ("p50 ms", "right"),
                                ("p90 ms", "right"), ("load ms", "right"),
                                *((header, "right") for header, _ in extra), ("result", "left")):
            # a header's lines never wrap, however wide the result column gets: a cut "Pi 4 / Pi 5" misleads
            table.add_column(header, justify=justify, min_width=max(len(line) for line in header.split("\n")))
        for row in target_rows:
            table.add_row(name, *((row.model or "",) if models else ()), row.precision, _bits(row),
                          _num(row.size_mb), _quality(row), _agreement(row),
                          _p50(row), _num(row.latency_p90_ms), _num(row.load_ms),
                          *(cell(row) for _, cell in extra), _result(row, target))
        for rejected in target.rejected_at_build:
            status = "[yellow]skipped[/]" if rejected["status"] == "skipped" else "[red]not built[/]"
            table.add_row(name, *((rejected.get("model", ""),) if models else ()), rejected["precision"], "—", "—", "—", "—", "—", "—", "—", *("—" for _ in extra),
                          f"{status}: {rejected['reason']}")
        notes = [
            f"baseline: {target.baseline['origin']}, {target.quality_name} {target.baseline_value:.3f}"
            f" · inputs: {target.eval} · SLA: {sla_text(target.sla)}",
        ]
        base = target.baseline.get("metrics") or {}
        if "perplexity" in base:
            notes.append(f"baseline perplexity {base['perplexity']:.3f} on {base['scored_tokens']} tokens")
        notes += [f"[yellow]{escape(note)}[/]" for note in failure_notes(target_rows, target.baseline)]
        device = next((r.host for r in target_rows if (r.host or {}).get("address")), None)
        if device:
            notes.append(f"device: {device['address']} — {device.get('device_model') or device.get('cpu')}, "
                         f"{device.get('ram_mb')} MB RAM, {device.get('os')}")
        if extra and any(header.startswith("est.") for header, _ in extra):
            notes.append("est. = generation ceiling from memory bandwidth (bandwidth ÷ bytes of weights), "
                         "an estimate, not a measurement")
        if target.cost:
            notes.append(f"{target.cost['currency']}/month = {escape(target.cost['formula'])}")
        if target.cliff:
            notes.append(f"cliff: {escape(target.cliff['text'])}")
        notes += [f"cascade {escape(r.precision)}: {escape(r.cascade['text'])}" for r in target_rows if r.cascade]
        notes.append(f"[bold {MARKS[target.status]}]{escape(target.decision.text)}[/]")
        parts += [table, *(Text.from_markup(n) for n in notes), Text("")]
    parts.append(Text.from_markup(f"[bold {MARKS[results.status]}]verdict: {HEADLINES[results.status]}[/]"))
    return Group(*parts)


def _bits(row: Row) -> str:
    """Bits per weight the file holds; the precision's nominal bits are its name."""
    return f"{row.bits_shown:.3g}"


def build_table(manifest: dict, model: str | None = None) -> Group:
    named = f"{model} = {manifest['source']['name']}" if model else manifest["source"]["name"]
    table = Table(title=f"built {named} ({manifest['source']['task']})", title_justify="left")
    for header in ("target", "precision", "file", "size MB", "validation"):
        table.add_column(header, justify="right" if header == "size MB" else "left")
    for artifact in manifest["artifacts"]:
        check = artifact.get("validation", {})
        table.add_row(artifact["target"], artifact["precision"], artifact["files"][0]["path"],
                      _num(artifact['bytes'] / 1e6),
                      f"[green]ok[/] cosine {check['cosine_min']:.4f}{_tokenizer_note(check)}" if check else "")
    for rejected in manifest.get("rejected", []):
        status = "[yellow]skipped[/]" if rejected["status"] == "skipped" else "[red]failed[/]"
        table.add_row(rejected["target"], rejected["precision"], "—", "—", f"{status}: {rejected['reason']}")
    return Group(table)


def _tokenizer_note(check: dict) -> str:
    """What the artifact's own tokenizer did with real text (tokenizer_check.py), when it carries one."""
    found = check.get("tokenizer")
    if not found:
        return ""
    if found.get("same_ids"):
        return f", same tokens as the source on {found['texts']} texts"
    return f", [yellow]tokenizer not checked[/]: {escape(found.get('why', ''))}"


def targets_table(rows: list[dict]) -> Table:
    table = Table(title="targets", title_justify="left")
    for header in ("target", "format", "precisions (default in bold)", "runtime", "toolchain here"):
        table.add_column(header)
    for row in rows:
        precisions = " ".join(f"[bold]{p}[/]" if p in row["default_precisions"] else p for p in row["precisions"])
        precisions += "".join(f"\n{task}: [bold]{' '.join(names)}[/]"
                              for task, names in row.get("default_precisions_for", {}).items())
        status = "[green]installed[/]" if not row["missing"] else f"[red]missing {', '.join(row['missing'])}[/] — {row['install_hint']}"
        here = row.get("runtimes_here", {})
        runtimes = "\n".join(f"{name} [red]not ready[/] — {'; '.join(missing)} (see edge-pack doctor)" if missing else
                             f"{name} [yellow]{here[name]}[/]" if name in here else f"{name} [green]ready[/]"
                             for name, missing in row.get("runtimes_missing", {n: [] for n in row["runtimes"]}).items())
        table.add_row(row["name"], row["format"], precisions, runtimes, status)
    return table


def print_to_stdout(renderable) -> None:
    Console(width=160 if not Console().is_terminal else None).print(renderable)
