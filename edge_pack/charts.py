"""The report's charts, drawn by matplotlib's SVG backend into strings that report.html inlines: text stays
text (no font files), no metadata, no outside references, and ids made unique per chart so several
charts can share one page."""
from __future__ import annotations

import io
import re

from .decide import measured
from .results import PASS, UNVERIFIED, Row, TargetResult
from .sla import Sla, quality_floor

GREEN, RED, AMBER, SHIP, LIMIT, BASELINE = "#1a7f37", "#cf222e", "#bf8700", "#0969da", "#9a6700", "#6e7781"
STYLE = {"svg.fonttype": "none", "font.size": 8, "axes.spines.top": False, "axes.spines.right": False,
         "font.family": "sans-serif"}


def target_charts(name: str, target: TargetResult, rows: list[Row]) -> list[dict]:
    """Per target: quality vs bits per weight (the cliff), quality vs size and latency vs size, each with
    the SLA's limits drawn. Returns [{"id", "title", "svg"}]; none when nothing was measured."""
    import matplotlib

    everything = sorted(measured(rows), key=lambda r: (-r.bits_shown, r.bytes))
    ran = [r for r in everything if r.cascade is None]  # a cascade has no bits of its own: the size chart has it
    if not ran:
        return []
    sla = Sla.of(target.sla)
    quality_name = target.quality_name
    lines = {"floor": quality_floor(sla, target.baseline_value), "baseline": target.baseline_value,
             "size": sla.max_size_mb, "latency": sla.max_latency_ms}
    charts = []
    with matplotlib.rc_context(STYLE):
        for kind, title, draw in (
            ("cliff", f"{quality_name} vs bits per weight", _cliff),
            ("quality-size", f"{quality_name} vs size", _quality_size),
            ("latency-size", "latency (p50) vs size", _latency_size),
        ):
            if kind == "latency-size" and all(r.latency_p50_ms is None for r in ran):
                continue  # an emulator takes no timings (the table says so): no chart rather than an empty one
            fig, ax = _figure()
            draw(ax, everything if kind == "quality-size" else ran, target.recommended, lines, quality_name)
            chart_id = f"{_slug(name)}-{kind}"
            charts.append({"id": chart_id, "title": title, "svg": _svg(fig, chart_id)})
        if target.sensitivity:  # measured by --precision auto (sensitivity.py)
            from .sensitivity_chart import sensitivity_chart

            fig, ax = _figure()
            sensitivity_chart(ax, target.sensitivity)
            chart_id = f"{_slug(name)}-sensitivity"
            charts.append({"id": chart_id, "title": "the 5 layers that cost the most fidelity per byte saved",
                           "svg": _svg(fig, chart_id)})
        for row in (r for r in everything if r.cascade):
            fig, ax = _figure()
            # its figures are on the reported half of the eval set: so are the baseline and the floor drawn
            half = {**lines, "baseline": row.quality.baseline, "floor": quality_floor(sla, row.quality.baseline)}
            _cascade(ax, row, half, quality_name)
            chart_id = f"{_slug(name)}-cascade"
            charts.append({"id": chart_id, "title": f"cascade {row.precision}: {quality_name} vs share escalated",
                           "svg": _svg(fig, chart_id)})
    return charts


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.4, 3.1), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _color(row: Row) -> str:
    return {PASS: GREEN, UNVERIFIED: AMBER}.get(row.verdict.status, RED)


def _points(ax, rows, xs, ys, recommended, log_x: bool = False) -> None:
    """One marker per candidate (green meets the SLA, red fails, a blue star is the one to ship), each
    labeled with its precision; labels of points that nearly coincide are stacked, not overprinted."""
    import math

    placed = [(r, x, y) for r, x, y in zip(rows, xs, ys) if y is not None]
    scale_x = [math.log2(x) if log_x else x for _, x, _ in placed]
    span_x = (max(scale_x) - min(scale_x)) or 1.0
    span_y = (max(y for _, _, y in placed) - min(y for _, _, y in placed)) or 1.0
    seen: dict[tuple, int] = {}
    for (row, x, y), sx in zip(placed, scale_x):
        ship = row.key == recommended
        ax.scatter([x], [y], s=90 if ship else 28, marker="*" if ship else "o", color=SHIP if ship else _color(row),
                   zorder=3, edgecolors="white", linewidths=0.5)
        key = (round((sx - min(scale_x)) / span_x * 25), round((y - min(p[2] for p in placed)) / span_y * 25))
        stacked = seen.get(key, 0)
        seen[key] = stacked + 1
        ax.annotate("cascade" if row.cascade else row.key, (x, y), xytext=(5, 3 + 9 * stacked), textcoords="offset points", fontsize=7,
                    color="#24292f")


def _limit(ax, value, horizontal: bool, label: str, color=LIMIT, style="--") -> None:
    if value is None:
        return
    (ax.axhline if horizontal else ax.axvline)(value, color=color, linestyle=style, linewidth=1, label=label, zorder=2)


def _cliff(ax, rows, recommended, lines, quality_name) -> None:
    bits = [round(r.bits_shown, 2) for r in rows]  # what the files hold, when known
    _points(ax, rows, bits, [r.quality.value for r in rows], recommended, log_x=True)
    ax.set_xscale("log", base=2)
    ticks = sorted(set(bits))
    ax.set_xticks(ticks, [f"{b:g}" for b in ticks])
    ax.minorticks_off()
    ax.set_xlim(max(ticks) * 1.4, min(ticks) / 1.4)  # fewer bits to the right: the cliff reads left to right
    _limit(ax, lines["baseline"], True, "fp32 source", BASELINE, ":")
    if lines["floor"] is not None:
        _limit(ax, lines["floor"], True, f"SLA floor {lines['floor']:.3f}")
        low = min([r.quality.value for r in rows] + [lines["floor"]])
        ax.axhspan(low - 1, lines["floor"], color=RED, alpha=0.06, zorder=1)
    _frame(ax, "bits per weight", quality_name, [r.quality.value for r in rows], lines)


def pareto(rows: list[Row]) -> list[Row]:
    """The candidates no other beats on both size and quality (smaller or equal, and better or equal, one
    strictly), from the smallest up: what a model of another size or precision can be traded against."""
    front = []
    for row in sorted(rows, key=lambda r: (r.size_mb, -r.quality.value)):
        if not front or row.quality.value > front[-1].quality.value:
            front.append(row)
    return front


def _quality_size(ax, rows, recommended, lines, quality_name) -> None:
    front = pareto(rows)
    if len(front) > 1:
        ax.step([r.size_mb for r in front], [r.quality.value for r in front], where="post", color=SHIP,
                linewidth=0.9, alpha=0.5, label="Pareto front", zorder=2)
    _points(ax, rows, [r.size_mb for r in rows], [r.quality.value for r in rows], recommended)
    _limit(ax, lines["baseline"], True, "fp32 source", BASELINE, ":")
    if lines["floor"] is not None:
        _limit(ax, lines["floor"], True, f"SLA floor {lines['floor']:.3f}")
    _limit(ax, lines["size"], False, f"max size {lines['size']:g} MB" if lines["size"] is not None else "")
    _frame(ax, "size (MB)", quality_name, [r.quality.value for r in rows], lines, x_from_zero=True)


def _latency_size(ax, rows, recommended, lines, quality_name) -> None:
    p50 = [r.latency_p50_ms for r in rows]
    _points(ax, rows, [r.size_mb for r in rows], p50, recommended)
    for row in rows:  # a thin bar up to p90 shows the spread
        if row.latency_p90_ms is not None and row.latency_p50_ms is not None:
            ax.plot([row.size_mb] * 2, [row.latency_p50_ms, row.latency_p90_ms], color=_color(row),
                    linewidth=0.8, alpha=0.6, zorder=2)
    _limit(ax, lines["size"], False, f"max size {lines['size']:g} MB" if lines["size"] is not None else "")
    top = max((r.latency_p90_ms or r.latency_p50_ms or 0) for r in rows) * 1.3 or 1.0
    limit = lines["latency"]
    if limit is not None and limit <= 3 * top:
        _limit(ax, limit, True, f"max p50 {limit:g} ms")
        top = max(top, limit * 1.1)
    elif limit is not None:  # drawing a far-away limit would squash every point onto the axis
        ax.plot([], [], " ", label=f"max p50 {limit:g} ms (far above)")
    ax.set_ylim(0, top)
    _frame(ax, "size (MB)", "p50 latency (ms), bar to p90", None, lines, x_from_zero=True)


def _cascade(ax, row: Row, lines, quality_name) -> None:
    """Accuracy of the routed answers vs the share sent to the fallback, every threshold on the reported
    half; the picked threshold is the star, the two stages alone are the ends."""
    curve = sorted(row.cascade["curve"], key=lambda p: (p["escalated"], p["accuracy"]))
    ax.plot([p["escalated"] for p in curve], [p["accuracy"] for p in curve], color=SHIP, linewidth=1, marker="o",
            markersize=2.5, zorder=3, label="thresholds (reported half)")
    point = row.cascade["point"]
    ax.scatter([point["escalated"]], [point["accuracy"]], s=90, marker="*", color=_color(row), zorder=4,
               edgecolors="white", linewidths=0.5, label=f"picked: threshold {row.cascade['threshold']:.3f}")
    for end, label in (("first_alone", row.cascade["first"]), ("fallback_alone", row.cascade["fallback"])):
        found = row.cascade[end]
        ax.annotate(f"{label} alone", (found["escalated"], found["accuracy"]), xytext=(4, -10),
                    textcoords="offset points", fontsize=7, color="#24292f")
    _limit(ax, lines["baseline"], True, "baseline fp32, same half", BASELINE, ":")
    if lines["floor"] is not None:
        _limit(ax, lines["floor"], True, f"SLA floor {lines['floor']:.3f}")
    ax.set_xlim(-0.03, 1.03)
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    _frame(ax, "share escalated to the fallback", quality_name, [p["accuracy"] for p in curve], lines)


def _frame(ax, xlabel: str, ylabel: str, values, lines, x_from_zero: bool = False) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#d0d7de", linewidth=0.5, zorder=0)
    if values is not None:
        marks = [v for v in values + [lines["baseline"], lines["floor"]] if v is not None]
        spread = max(max(marks) - min(marks), 0.01)
        ax.set_ylim(min(marks) - 0.15 * spread, max(marks) + 0.25 * spread)
    if x_from_zero:
        ax.set_xlim(left=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False, loc="best")


def _svg(fig, chart_id: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": chart_id}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # no XML declaration or DOCTYPE inside HTML
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)  # HTML knows inline SVG; no namespace URLs
    text = re.sub(r'\bid="([^"]+)"', rf'id="{chart_id}-\1"', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{chart_id}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{chart_id}-\1)", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{chart_id}" ', 1)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)
