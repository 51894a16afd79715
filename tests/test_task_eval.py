"""From a runtime's answers to task samples (edge_pack/task_eval.py): choice rows by their log-likelihoods,
generated rows by their text up to the stop string; where a candidate starts to fail against its
reference; the speed of the answers. The answers here are written as a runtime returns them (the
protocol's JSON), so the arithmetic is checked on known values; tests/test_generation.py runs the runtime."""
from __future__ import annotations

import math

import pytest

from edge_pack import task_eval
from edge_pack.generation import Prompter
from edge_pack.tasks import TaskRow


@pytest.fixture(scope="module")
def prompter(tiny_llama):
    from transformers import AutoTokenizer

    return Prompter(AutoTokenizer.from_pretrained(str(tiny_llama)), support_dir=tiny_llama)


ROWS = [TaskRow("capital", 1, "Capital of France?", "Paris", "exact"),
        TaskRow("sum", 2, "2+3 =", "5", "number"),
        TaskRow("mood", 3, "Mood?", "happy", "choice", choices=("happy", "sad"))]


def _answer(prompter, row_id, text, p=0.5, **extra):
    tokens = prompter.tokenizer(text, add_special_tokens=False)["input_ids"]
    return {"id": row_id, "tokens": tokens, "logprobs": [math.log(p)] * len(tokens), "first_token_ms": 20.0,
            "decode_ms_per_token": 5.0, **extra}


def test_answers_become_samples_with_their_confidence(prompter):
    answers = [_answer(prompter, "capital", " Paris.\n\nAnd more text", p=0.8),
               _answer(prompter, "sum", "2 + 3 = 5", p=0.6),
               {"id": "mood", "tokens": [], "logprobs": [], "continuation_logliks": [-1.0, -3.0],
                "first_token_ms": None, "decode_ms_per_token": None}]
    samples = task_eval.score(ROWS, answers, prompter)
    assert [s.id for s in samples] == ["capital", "sum", "mood"]
    assert [s.output for s in samples] == ["Paris.", "2 + 3 = 5", "happy"]
    assert all(s.correct for s in samples) and task_eval.accuracy(samples) == 1.0
    assert samples[0].confidence == pytest.approx(0.8) and samples[1].confidence == pytest.approx(0.6)
    assert samples[2].confidence == pytest.approx(math.tanh(1.0))  # p1 - p2 of a softmax over [-1, -3]
    assert samples[0].to_json() == {"id": "capital", "output": "Paris.", "correct": True,
                                    "confidence": samples[0].confidence}
    speed = task_eval.answer_speed(answers)
    assert speed == {"first_token_ms": 20.0, "answer_tokens_per_s": pytest.approx(200.0)}
    with pytest.raises(ValueError, match="no answer for row sum"):
        task_eval.score(ROWS, answers[:1] + answers[2:], prompter)


def test_where_a_candidate_starts_to_fail(prompter):
    reference = task_eval.score(ROWS, [_answer(prompter, "capital", "Paris"), _answer(prompter, "sum", "5"),
                                       {"id": "mood", "tokens": [], "logprobs": [], "continuation_logliks": [-1, -2]}],
                                prompter)
    found = task_eval.score(ROWS, [_answer(prompter, "capital", "Lyon"), _answer(prompter, "sum", "5"),
                                   {"id": "mood", "tokens": [], "logprobs": [], "continuation_logliks": [-2, -1]}],
                            prompter)
    assert [s.id for s in task_eval.regressions(reference, found)] == ["capital", "mood"]
    note = task_eval.regression_note("q4_k_m", "f16", reference, found)
    assert note == "q4_k_m got 2 of 3 wrong that f16 got right: capital ('Lyon'), mood ('sad')"
    assert task_eval.regression_note("f16", "f16", reference, reference) is None
    assert [s.correct for s in task_eval.cascade_samples(found)] == [False, True, False]
