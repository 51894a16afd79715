"""Whether a model's answer to a task row is right, and how sure the model was: the definitions are
lm-evaluation-harness's (lm-eval 0.4.13, EleutherAI) wherever it has one, so a number here means what it
means there; tests/test_scoring.py imports lm-eval's own functions and compares.

- exact: lm-eval's `exact_match` (lm_eval/api/metrics.py, exact_match_hf_evaluate) with ignore_case=True and
  ignore_punctuation=True, after lm-eval's remove_whitespace filter on the output (and on the answer): strip
  surrounding whitespace, lower-case, delete ASCII punctuation (string.punctuation), then compare. Inner
  whitespace is kept and punctuation is deleted, not replaced: "Paris ." ≠ "Paris", "U.S.A." = "usa".
  (One difference: lm-eval lower-cases in a fixed-width numpy array, which cuts the last character of a
  string whose lower case is longer, e.g. "İstanbul"; str.lower here does not.)
- contains: the same normalisation of both, then the answer is a substring of the output (no lm-eval
  equivalent: the generous reading of a chatty answer).
- number: the number gsm8k's "flexible-extract" finds (lm_eval/tasks/gsm8k/gsm8k.yaml: the regex
  `(-?[$0-9.,]{2,})|(-?[0-9]+)` through lm-eval's RegexFilter with group_select -1, i.e. the last match),
  cleaned of "," and "$" and a final "." as gsm8k's exact_match does (regexes_to_ignore), equal to the
  answer within a tolerance. The last, not the first: instruct models restate the question ("2 + 3 = 5");
  on SmolLM2-135M-Instruct the first number scored 0 of 8 sums that the last scores 6 of 8.
- regex: Python's re.search of the answer in the stripped output.
- choice: lm-eval's multiple_choice (lm_eval/api/task.py, process_results): the summed log-likelihood of each
  choice given the prompt; `acc` takes the argmax, `acc_norm` the argmax of loglik / len(choice) (characters),
  `acc_bytes` of loglik / UTF-8 bytes. A row is right by `acc`; the others are recorded beside it.

Confidence, one number in [0, 1] per sample so that one threshold routes every kind of row (the cascade):
- generated text: exp(mean token log-probability of the generated answer), the per-token geometric-mean
  probability;
- choice rows: the margin between the two most likely choices' probabilities (softmax over the choices'
  log-likelihoods, as lm-eval's prob_norm);
- classifiers: the maximum softmax probability.
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass

import numpy as np

from .tasks import TaskRow

# gsm8k's flexible-extract pattern, verbatim.
NUMBER_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
NUMBER_CLEANUP = (re.compile(r","), re.compile(r"\$"), re.compile(r"\.$"))  # gsm8k's regexes_to_ignore
NUMBER_TOLERANCE = 1e-6  # absolute, unless a row sets "tolerance"
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """exact's normalisation: strip, lower-case, delete ASCII punctuation (lm-eval's order: case first)."""
    return text.strip().lower().translate(_PUNCTUATION)


def extract_number(text: str) -> str | None:
    """The last match of gsm8k's flexible-extract regex, stripped as lm-eval's RegexFilter does; None when
    there is none (lm-eval's fallback "[invalid]")."""
    matches = NUMBER_PATTERN.findall(text)
    if not matches:
        return None
    found = next((group for group in matches[-1] if group), None)
    return found.strip() if found else None


def parse_number(text: str) -> float | None:
    cleaned = text.strip()
    for pattern in NUMBER_CLEANUP:
        cleaned = pattern.sub("", cleaned)
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_correct(row: TaskRow, output: str) -> bool:
    """A generated answer scored by its row's scorer (choice rows are ranked, see rank_choices)."""
    if row.scorer == "exact":
        return normalize(output) == normalize(row.answer)
    if row.scorer == "contains":
        return normalize(row.answer) in normalize(output)
    if row.scorer == "number":
        found = extract_number(output)
        value = None if found is None else parse_number(found)
        expected = parse_number(row.answer)
        tolerance = NUMBER_TOLERANCE if row.tolerance is None else row.tolerance
        return value is not None and expected is not None and abs(value - expected) <= tolerance
    if row.scorer == "regex":
        return re.search(row.answer, output.strip()) is not None
    raise ValueError(f"{row.scorer} is not a generation scorer")


@dataclass(frozen=True)
class ChoiceRanking:
    acc: int  # index of the most likely choice
    acc_norm: int  # by log-likelihood per character
    acc_bytes: int  # by log-likelihood per UTF-8 byte
    margin: float  # confidence: top-1 minus top-2 probability over the choices


def rank_choices(choices: tuple[str, ...] | list[str], logliks: list[float]) -> ChoiceRanking:
    lls = np.asarray(logliks, dtype=np.float64)
    chars = np.array([float(len(c)) for c in choices])
    nbytes = np.array([float(len(c.encode("utf-8"))) for c in choices])
    return ChoiceRanking(acc=int(np.argmax(lls)), acc_norm=int(np.argmax(lls / chars)),
                         acc_bytes=int(np.argmax(lls / nbytes)), margin=choice_margin(lls))


def choice_margin(logliks) -> float:
    probs = _softmax(np.asarray(logliks, dtype=np.float64))
    top = np.sort(probs)[::-1]
    return float(top[0] - top[1]) if len(top) > 1 else 1.0


def generation_confidence(logprobs: list[float]) -> float:
    """exp(mean token log-probability) of the generated tokens; 0 for an empty answer (nothing to trust)."""
    if not logprobs:
        return 0.0
    return float(math.exp(float(np.mean(logprobs))))


def classifier_confidence(logits: np.ndarray) -> float:
    return float(np.max(_softmax(np.asarray(logits, dtype=np.float64).reshape(-1))))


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - np.max(values))
    return shifted / shifted.sum()
