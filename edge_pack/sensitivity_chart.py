"""The report's sensitivity chart: the layers that cost the most fidelity per byte their quantization saves
(from the ranking `--precision auto` measured at build time, sensitivity.py), as horizontal bars."""
from __future__ import annotations

COUNT = 5


def sensitivity_chart(ax, found: dict) -> None:
    """`found` is the manifest's (and results.json's) sensitivity of one target."""
    by_name = {s["layer"]: s for s in found["layers"]}
    worst = [by_name[name] for name in found["costliest_per_byte"][:COUNT]][::-1]  # the costliest on top
    values = [s["drift_per_mb"] for s in worst]
    ax.barh(range(len(worst)), values, color="#cf222e", alpha=0.8)
    ax.set_yticks(range(len(worst)), [_short(s["layer"]) for s in worst])
    for index, s in enumerate(worst):
        ax.annotate(f" {s['score']:.2g} for {s['bytes_saved'] / 1e6:.2g} MB", (values[index], index),
                    va="center", fontsize=7)
    ax.set_xlim(0, max(values, default=1) * 1.8 or 1)
    ax.set_xlabel(f"{found['measure'].split(',')[0]} per MB saved")


def _short(name: str) -> str:
    """An ONNX node path without its framework noise: /encoder/layer.0/attention/output/dense/MatMul →
    layer.0 attention output dense."""
    parts = [p for p in name.strip("/").split("/") if p not in ("encoder", "MatMul", "Gather", "embeddings")]
    return " ".join(parts)[-38:] or name
