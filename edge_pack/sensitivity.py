"""How much each layer alone costs in fidelity: quantize that one layer to the low precision (every other
layer float), run the model on the target's runtime and compare its outputs with the fp32 source's. The
ranking says which layers a mix should keep at the higher precision, and which ones cost the most fidelity
per byte they save."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from .contracts import Layer

MB = 1_000_000


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    kind: str
    weights: int
    precision: str  # the low precision the layer alone was quantized to
    drift: float  # 1 − mean cosine to the fp32 source's outputs, with this layer alone at `precision`
    bytes_saved: int  # stored bytes as float minus at `precision` (estimated from the weight count)
    kl_divergence: float | None = None  # a decoder's next-token KL against fp32, when it has one

    @property
    def score(self) -> float:
        """What ranks it: a decoder's next-token KL when there is one (cosine of logits hides what sampling
        sees), else the drift."""
        return self.kl_divergence if self.kl_divergence is not None else self.drift

    @property
    def drift_per_mb(self) -> float:
        """Fidelity lost (the score) per MB saved: which layers a size budget should spend its bytes on first."""
        return self.score / max(self.bytes_saved / MB, 1e-9)

    def to_json(self) -> dict:
        return {**asdict(self), "score": self.score, "drift_per_mb": self.drift_per_mb}


def rank(layers: list[Layer], low: str, fidelity: Callable[[dict[str, str]], dict]) -> list[LayerSensitivity]:
    """Each layer alone at `low`, measured by `fidelity(levels)` (metrics.fidelity of that build), most
    sensitive first."""
    found = []
    for layer in layers:
        measured = fidelity({layer.name: low})
        found.append(LayerSensitivity(layer=layer.name, kind=layer.kind, weights=layer.weights, precision=low,
                                      drift=max(0.0, 1.0 - measured["cosine_mean"]),
                                      bytes_saved=layer.bytes["float"] - layer.bytes[low],
                                      kl_divergence=measured.get("kl_divergence")))
    return sorted(found, key=lambda s: (-s.score, s.layer))


def measure_text(ranking: list[LayerSensitivity], low: str) -> str:
    what = "next-token KL divergence from fp32" if ranking and ranking[0].kl_divergence is not None \
        else "1 − mean cosine to fp32"
    return f"{what}, that layer alone at {low}"


def costliest(ranking: list[LayerSensitivity], count: int = 5) -> list[LayerSensitivity]:
    """The layers that cost the most fidelity per byte saved (the report's chart)."""
    return sorted(ranking, key=lambda s: -s.drift_per_mb)[:count]
