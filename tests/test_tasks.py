"""Task files for language models (edge_pack/tasks.py): good rows become typed rows with their scorer and
id; each bad row is a one-line error naming the file and its line, with the exit code of bad input."""
from __future__ import annotations

import json

import pytest

from edge_pack.errors import EXIT_USAGE, UserError
from edge_pack.tasks import is_task_file, read_tasks

GOOD = [
    {"prompt": "Capital of France?", "answer": "Paris"},
    {"prompt": "2+2*3 =", "answer": "8", "score": "number", "tolerance": 0.5},
    {"prompt": "Sentiment: 'great phone'", "choices": ["positive", "negative"], "answer": "positive", "id": "s-1"},
    {"prompt": "Write a function", "answer": "^def \\w+\\(", "score": "regex", "id": 7},
]


def _write(tmp_path, rows, name="tasks.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_good_rows_are_typed_with_their_scorer_and_id(tmp_path):
    path = _write(tmp_path, [GOOD[0], "", *GOOD[1:]])  # a blank line is skipped, numbering follows the file
    rows = read_tasks(path)
    assert [r.scorer for r in rows] == ["exact", "number", "choice", "regex"]
    assert [r.id for r in rows] == ["1", "3", "s-1", "7"]
    assert [r.line for r in rows] == [1, 3, 4, 5]
    assert rows[1].tolerance == 0.5 and rows[2].choices == ("positive", "negative")
    assert [r.scorer for r in read_tasks(path, default_scorer="contains")][0] == "contains"
    assert is_task_file(path)
    assert not is_task_file(_write(tmp_path, [{"text": "a", "label": "b"}], "eval.jsonl"))


BAD = [
    ({"answer": "Paris"}, 'needs a "prompt" field'),
    ({"prompt": "  ", "answer": "Paris"}, 'needs a "prompt" field'),
    ({"prompt": "2+2 =", "answer": 4}, '"answer" must be a string, not 4'),
    ({"prompt": "Capital?"}, 'needs an "answer" field'),
    ({"prompt": "Mood?", "choices": ["happy", "sad"], "answer": "angry"}, "is not one of the choices"),
    ({"prompt": "Mood?", "choices": ["happy"], "answer": "happy"}, "at least two"),
    ({"prompt": "Mood?", "choices": ["a", "a"], "answer": "a"}, "the same choice twice"),
    ({"prompt": "Capital?", "answer": "Paris", "score": "fuzzy"}, 'unknown scorer "fuzzy"'),
    ({"prompt": "Capital?", "answer": "Paris", "score": "choice"}, "ranks \"choices\""),
    ({"prompt": "Mood?", "choices": ["a", "b"], "answer": "a", "score": "exact"}, "ranked by likelihood"),
    ({"prompt": "2+2 =", "answer": "four", "score": "number"}, "needs a number as answer"),
    ({"prompt": "code", "answer": "def (", "score": "regex"}, "not a valid regular expression"),
    ({"prompt": "2+2 =", "answer": "4", "score": "number", "tolerance": -1}, '"tolerance" must be a finite number'),
    ('{"prompt": "2+2 =", "answer": "4", "score": "number", "tolerance": NaN}', '"tolerance" must be a finite number'),
    ({"prompt": "Capital?", "answer": "Paris", "tolerance": 1}, '"tolerance" is for the number scorer'),
    ({"prompt": "Capital?", "answer": "Paris", "scorer": "exact"}, "unknown field 'scorer'"),
    ({"prompt": "Capital?", "answer": "Paris", "id": "1"}, "already used on line 1"),
    ({"prompt": "Capital?", "answer": "Paris", "id": [1]}, '"id" must be'),
    ('{"prompt": "Capital?", "answer": "Par', "not valid JSON"),
    ('["prompt", "answer"]', "expected a JSON object"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize("row,words", BAD, ids=[w for _, w in BAD])
def test_a_bad_row_is_a_one_line_error_with_its_line(tmp_path, row, words):
    path = _write(tmp_path, [GOOD[0], row])  # the bad row is on line 2
    with pytest.raises(UserError) as caught:
        read_tasks(path)
    message = caught.value.message
    assert message.startswith(f"{path}:2: "), message
    assert words in message and "\n" not in message, message
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.bad_input
def test_an_empty_or_missing_file_and_an_unknown_default_scorer(tmp_path):
    with pytest.raises(UserError, match="holds no rows"):
        read_tasks(_write(tmp_path, ["", " "]))
    with pytest.raises(UserError, match="cannot read task file"):
        read_tasks(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="unknown default scorer 'fuzzy'"):
        read_tasks(_write(tmp_path, [GOOD[0]]), default_scorer="fuzzy")
