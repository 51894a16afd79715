"""The task scorers agree with lm-evaluation-harness's own code on tricky strings: exact_match with
ignore_case and ignore_punctuation after the remove_whitespace filter, gsm8k's flexible-extract regex, the
multiple-choice acc/acc_norm/acc_bytes rule and the context/continuation tokenization. lm-eval is imported
from the folder `make lm-eval` installs it in (.venv/lm-eval, apart from edge-pack's environment)."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_pack.generation import encode_pair
from edge_pack.scoring import (classifier_confidence, choice_margin, extract_number, generation_confidence,
                               is_correct, normalize, rank_choices)
from edge_pack.tasks import TaskRow

LM_EVAL = Path(sys.prefix) / "lm-eval"  # the environment's own folder (Makefile: LM_EVAL)


@pytest.fixture(scope="module")
def lm_eval():
    if not (LM_EVAL / "lm_eval").is_dir():
        pytest.fail(f"lm-eval is not installed in {LM_EVAL}: run `make lm-eval` (make test does it first)",
                    pytrace=False)
    if str(LM_EVAL) not in sys.path:
        sys.path.append(str(LM_EVAL))  # appended: nothing of edge-pack's environment is shadowed
    from lm_eval.api import metrics, model
    from lm_eval.filters import extraction

    return SimpleNamespace(metrics=metrics, extraction=extraction, model=model)


def _row(answer: str, scorer: str, **extra) -> TaskRow:
    return TaskRow(id="1", line=1, prompt="p", answer=answer, scorer=scorer, **extra)


EXACT = [  # (model output, reference)
    ("Paris", "Paris"), ("  Paris  ", "Paris"), ("PARIS.", "paris"), ("Paris .", "Paris"), ("U.S.A.", "usa"),
    ("Paris\n\nThe capital", "Paris"), ("don't", "dont"), ("São Paulo!", "são paulo"), ("¿Qué?", "qué"),
    ("STRASSE", "straße"), ("a  b", "a b"), ("a\tb", "a b"), ("", ""), ("\u00a0x\u00a0", "x"),
    ("42", "42.0"), ("$5", "5"), ("(B)", "b"), ("hello world", "Hello, World!"), ("paris !", "paris"),
]


def test_exact_is_lm_evals_exact_match_with_ignore_case_and_punctuation_after_stripping(lm_eval):
    stripped = lm_eval.extraction.WhitespaceFilter().apply([[output for output, _ in EXACT]], None)[0]
    for (output, reference), cleaned in zip(EXACT, stripped):
        theirs = lm_eval.metrics.exact_match_hf_evaluate([cleaned], [reference], ignore_case=True,
                                                         ignore_punctuation=True)["exact_match"]
        assert is_correct(_row(reference, "exact"), output) == bool(theirs), (output, reference)
    assert is_correct(_row(" Paris ", "exact"), "paris")  # our answers are stripped too
    # The one known difference: lm-eval lower-cases in a numpy array of fixed-width strings, so a character
    # that lower-cases into two ("İ" → "i̇") truncates its string's last character there; Python's str.lower
    # does not truncate.
    theirs = lm_eval.metrics.exact_match_hf_evaluate(["İstanbul"], ["i̇stanbul"], ignore_case=True)["exact_match"]
    assert theirs == 0.0 and is_correct(_row("i̇stanbul", "exact"), "İstanbul")
    assert normalize("  U.S.A. ") == "usa"


NUMBERS = ["The answer is 8.", "8", "-3 apples", "$1,234.50 total", "2+2*3 = 8", "It costs 5 dollars, not 50",
           "no digits here", "1.", ". 7", "x-1y", "v2.0.1", "3,", "10 - 2 = 8", "$", "1,000,000 people", "-.5"]


def test_number_is_gsm8ks_flexible_extract(lm_eval):
    pattern = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"  # gsm8k.yaml's flexible-extract, written out as the task has it
    flexible = lm_eval.extraction.RegexFilter(regex_pattern=pattern, group_select=-1, fallback="[invalid]")
    found = flexible.apply([NUMBERS], None)[0]
    for text, theirs in zip(NUMBERS, found):
        assert (extract_number(text) or "[invalid]") == theirs, text


def test_number_cleans_as_gsm8k_and_compares_within_the_tolerance(lm_eval):
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]  # gsm8k's regexes_to_ignore
    for text, answer in [("$1,234.50 total", "1234.50"), ("So 2+6 is 8.", "8"), ("1,000,000 people", "1000000")]:
        theirs = lm_eval.metrics.exact_match_hf_evaluate([extract_number(text)], [answer], regexes_to_ignore=ignore)
        assert theirs["exact_match"] == 1.0 and is_correct(_row(answer, "number"), text), text
    assert is_correct(_row("8", "number"), "8.0000001")
    assert not is_correct(_row("8", "number"), "8.1")
    assert is_correct(_row("8", "number", tolerance=0.5), "8.4")
    assert not is_correct(_row("8", "number"), "no number")
    assert not is_correct(_row("8", "number"), "18")
    assert is_correct(_row("5", "number"), "2 + 3 = 5")  # the last number: a restated question comes first


def test_contains_and_regex():
    assert is_correct(_row("Paris", "contains"), "I think it is PARIS, France.")
    assert not is_correct(_row("Paris", "contains"), "Lyon")
    assert is_correct(_row(r"^def \w+\(", "regex"), "  def add(a, b):")  # on the stripped output
    assert not is_correct(_row(r"^def \w+\(", "regex"), "class A:")


def test_choice_ranks_as_lm_evals_multiple_choice():
    """lm_eval/api/task.py process_results (multiple_choice): pred = argmax(lls), pred_norm = argmax(lls /
    len(choice)), pred_byte = argmax(lls / len(choice.encode())). Its task module needs the datasets
    package, so the rule is checked on values worked out by hand instead of by importing it."""
    choices = ("no", "absolutely", "été")
    logliks = [-3.0, -9.0, -4.2]  # per char: -1.5, -0.9, -1.4; per byte: -1.5, -0.9, -0.84
    ranking = rank_choices(choices, logliks)
    assert (ranking.acc, ranking.acc_norm, ranking.acc_bytes) == (0, 1, 2)
    probs = np.exp(logliks) / np.exp(logliks).sum()
    assert ranking.margin == pytest.approx(sorted(probs)[-1] - sorted(probs)[-2])
    assert choice_margin([-1.0, -1.0]) == pytest.approx(0.0)


def test_choices_split_at_the_prompt_boundary_as_lm_eval_tokenizes_them(lm_eval, tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))

    def encode(text):
        return tokenizer(text)["input_ids"]

    harness = SimpleNamespace(backend="causal", tok_encode=encode)
    for context, continuation in [("Answer:", " yes"), ("Answer: ", "yes"), ("def f(x):\n  ", "return x"),
                                  ("x = [1, 2", ", 3]"), ("naïve ", "café")]:
        assert encode_pair(encode, context, continuation) == lm_eval.model.TemplateLM._encode_pair(
            harness, context, continuation), (context, continuation)


def test_confidences_are_probabilities():
    assert generation_confidence([math.log(0.5), math.log(0.5)]) == pytest.approx(0.5)
    assert generation_confidence([]) == 0.0
    assert classifier_confidence(np.array([[2.0, 0.0, 0.0]])) == pytest.approx(np.exp(2) / (np.exp(2) + 2))
