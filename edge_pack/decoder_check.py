"""A phone decoder against its fp32 torch source: logits through the cache path (prefill + decode steps)
and greedy answers. The torch side runs the Hugging Face model on the whole sequence at once, so a bug in
any runtime's cache handling shows as a difference."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LogitAgreement:
    max_abs: float  # the largest logit difference, in the units of the logits
    same_top1: float  # the share of positions where both pick the same next token
    cosine: float  # the mean cosine of the two logit vectors over positions


def load_torch(model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="float32").eval()


def torch_logits(model, tokens: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens])).logits[0].float().numpy()


def torch_greedy(model, prompt: list[int], count: int, stop: tuple[int, ...] = ()) -> list[int]:
    """Greedy continuation without a cache: the whole sequence is run again for each token."""
    tokens = list(prompt)
    for _ in range(count):
        token = int(np.argmax(torch_logits(model, tokens)[-1]))
        if token in stop:
            break
        tokens.append(token)
    return tokens[len(prompt):]


def agreement(reference: np.ndarray, found: np.ndarray) -> LogitAgreement:
    reference, found = np.asarray(reference, np.float64), np.asarray(found, np.float64)
    if reference.shape != found.shape:
        raise ValueError(f"logits of shape {found.shape} against the reference's {reference.shape}")
    cosines = (reference * found).sum(-1) / (np.linalg.norm(reference, axis=-1) * np.linalg.norm(found, axis=-1))
    return LogitAgreement(max_abs=float(np.abs(reference - found).max()),
                          same_top1=float((reference.argmax(-1) == found.argmax(-1)).mean()),
                          cosine=float(cosines.mean()))


def same_sequence_rate(reference: list[list[int]], found: list[list[int]], first: int) -> float:
    """The share of answers whose first `first` tokens are exactly the reference's."""
    if len(reference) != len(found) or not reference:
        raise ValueError(f"{len(found)} answers against {len(reference)} reference answers")
    return sum(list(r[:first]) == list(f[:first]) for r, f in zip(reference, found)) / len(reference)
