"""What a candidate's outputs say about its quality, always against the fp32 source on the same inputs."""
from __future__ import annotations

import numpy as np

EMBEDDING, LOGITS, TENSOR = "embedding", "logits", "tensor"
NEXT_TOKEN = "next-token"  # a decoder's logits at every position: (positions, vocabulary)


def output_kind(task: str, outputs: dict[str, np.ndarray]) -> str:
    if task == "feature-extraction":
        return EMBEDDING
    if task == "text-generation":
        return NEXT_TOKEN
    if task in ("text-classification", "image-classification"):
        return LOGITS
    first = next(iter(outputs.values()))
    return LOGITS if first.ndim == 2 and first.shape[0] == 1 and first.shape[1] > 1 else TENSOR


def primary(task: str, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The vector a user consumes: the mean-pooled, normalised sentence embedding for an embedder (what
    Transformers.js' feature-extraction pipeline returns with pooling 'mean', normalize true), the
    logits for a classifier, a decoder's logits at every position (positions × vocabulary), the first
    output flattened otherwise."""
    first = outputs.get("last_hidden_state", outputs.get("logits", next(iter(outputs.values()))))
    first = np.asarray(first, dtype=np.float64)
    if task == "text-generation":
        return first.reshape(-1, first.shape[-1])
    if task == "feature-extraction":
        if first.ndim == 3:
            mask = inputs.get("attention_mask", np.ones(first.shape[:2]))[..., None].astype(np.float64)
            first = (first * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        first = first / np.maximum(np.linalg.norm(first, axis=-1, keepdims=True), 1e-12)
    return first.reshape(-1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.dot(a, b) / denom)


def _nearest(vectors: np.ndarray) -> np.ndarray:
    """Index of each vector's nearest other vector by cosine."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def fidelity(kind: str, candidate: list[np.ndarray], baseline: list[np.ndarray]) -> dict:
    """Label-free agreement with the baseline."""
    cosines = [_cosine(c.reshape(-1), b.reshape(-1)) for c, b in zip(candidate, baseline)]
    result = {
        "cosine_mean": float(np.mean(cosines)),
        "cosine_min": float(np.min(cosines)),
        "max_abs": float(max(np.max(np.abs(c - b)) for c, b in zip(candidate, baseline))),
        "samples": len(cosines),
    }
    if kind == LOGITS:
        result["top1_agreement"] = float(np.mean([c.argmax() == b.argmax() for c, b in zip(candidate, baseline)]))
    if kind == NEXT_TOKEN:
        result.update(_next_token_agreement(candidate, baseline))
    if kind == EMBEDDING and len(candidate) > 2:
        # Retrieval agreement: does each text keep the same nearest neighbour as with fp32?
        result["retrieval_agreement"] = float(np.mean(_nearest(np.stack(candidate)) == _nearest(np.stack(baseline))))
    return result


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _next_token_agreement(candidate: list[np.ndarray], baseline: list[np.ndarray]) -> dict:
    """What llama-perplexity --kl-divergence reports: KL(baseline ‖ candidate) of the next-token
    distributions at every position (mean and 99th percentile) and how often both rank the same token first."""
    kls, same = [], []
    for c, b in zip(candidate, baseline):
        log_c, log_b = _log_softmax(c), _log_softmax(b)
        kls.append((np.exp(log_b) * (log_b - log_c)).sum(axis=-1))
        same.append(c.argmax(axis=-1) == b.argmax(axis=-1))
    kl, agree = np.concatenate(kls), np.concatenate(same)
    return {"kl_divergence": float(kl.mean()), "kl_divergence_p99": float(np.percentile(kl, 99)),
            "same_top1": float(agree.mean()), "positions": int(kl.size)}


def intrinsic(kind: str, vectors: list[np.ndarray], samples: list[dict]) -> dict:
    """Quality that needs no baseline: a decoder's perplexity on the eval text (each position predicts the
    next token of its own input)."""
    if kind != NEXT_TOKEN:
        return {}
    nll, count = 0.0, 0
    for logits, sample in zip(vectors, samples):
        ids = np.asarray(sample["input_ids"]).reshape(-1)
        log_p = _log_softmax(logits[:-1])
        nll -= float(log_p[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    return {"perplexity": float(np.exp(nll / max(count, 1))), "scored_tokens": count}


def correct(kind: str, vectors: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Which samples are answered right: argmax for classifiers. For embedders, leave-one-out
    nearest-centroid: each text is assigned the label whose other texts' mean embedding is closest
    (steadier than 1-NN on small sets). Per sample, so two models can be compared pair by pair."""
    stacked = np.stack(vectors)
    if kind != EMBEDDING:
        return stacked.argmax(axis=1) == labels
    unit = stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
    classes = np.unique(labels)
    sums = np.stack([unit[labels == c].sum(axis=0) for c in classes])
    counts = np.array([(labels == c).sum() for c in classes], dtype=np.float64)
    right = []
    for vector, label in zip(unit, labels):
        own = classes == label
        centroids = (sums - own[:, None] * vector) / np.maximum(counts - own, 1)[:, None]
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        scores = np.where(counts - own > 0, centroids @ vector, -np.inf)
        right.append(classes[scores.argmax()] == label)
    return np.array(right, dtype=bool)


def headline_name(kind: str, labeled: bool) -> str:
    """The name of the one quality number the verdict table shows."""
    if labeled:  # a decoder is labeled by a task file: its answers to the rows, scored
        return {EMBEDDING: "centroid accuracy", NEXT_TOKEN: "task accuracy"}.get(kind, "accuracy")
    return {LOGITS: "top-1 agreement", NEXT_TOKEN: "same top-1"}.get(kind, "cosine")


def headline(kind: str, metrics: dict, labeled: bool) -> tuple[str, float]:
    """The one quality number the verdict table shows, and its name."""
    key = "accuracy" if labeled else {LOGITS: "top1_agreement", NEXT_TOKEN: "same_top1"}.get(kind, "cosine_mean")
    return headline_name(kind, labeled), metrics[key]


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
