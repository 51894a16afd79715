"""A language model's task file: one JSON object a line, each a prompt and the answer that counts as right.

    {"prompt": "Capital of France?", "answer": "Paris"}                        # scored by the job's default scorer
    {"prompt": "2+2*3 =", "answer": "8", "score": "number"}                  # a per-row scorer
    {"prompt": "Sentiment: 'great phone'", "choices": ["positive", "negative"], "answer": "positive"}
    {"prompt": "...", "answer": "^def \\\\w+\\\\(", "score": "regex", "id": "code-1"}

Rows with "choices" are ranked by likelihood (the `choice` scorer); the others are answered by greedy
generation and scored by `exact`, `contains`, `number` or `regex` (edge_pack/scoring.py says how). A row's
id is its "id" field, else its line number; ids name samples in results.json and split the eval set for the
cascade. Every problem is an error naming the file and line, before anything runs.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

GENERATION_SCORERS = ("exact", "contains", "number", "regex")
SCORERS = (*GENERATION_SCORERS, "choice")
DEFAULT_SCORER = "exact"
FIELDS = ("prompt", "answer", "score", "choices", "id", "tolerance")
EXAMPLE = '{"prompt": "Capital of France?", "answer": "Paris"}'


@dataclass(frozen=True)
class TaskRow:
    id: str
    line: int
    prompt: str
    answer: str
    scorer: str
    choices: tuple[str, ...] | None = None
    tolerance: float | None = None  # the `number` scorer's, when the row sets its own


def is_task_file(path: Path) -> bool:
    """A JSONL file whose first row has a "prompt": a task file rather than a {"text", "label"} eval file."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with open(path, errors="replace") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and "prompt" in row
    return False


def read_tasks(path: Path, default_scorer: str = DEFAULT_SCORER) -> list[TaskRow]:
    path = Path(path)
    if default_scorer not in GENERATION_SCORERS:
        raise UserError(f"unknown default scorer {default_scorer!r}; use one of {', '.join(GENERATION_SCORERS)} "
                        "(rows with choices are always ranked by likelihood)")
    try:
        handle = open(path, errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read task file {path} ({exc.strerror}); give a .jsonl file of rows like "
                        f"{EXAMPLE}") from None
    rows, seen = [], {}
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = _parse(path, number, line, default_scorer)
            if row.id in seen:
                raise UserError(f"{path}:{number}: id {row.id!r} is already used on line {seen[row.id]}; give every "
                                "row its own id")
            seen[row.id] = number
            rows.append(row)
    if not rows:
        raise UserError(f"{path} holds no rows; add lines like {EXAMPLE}")
    return rows


def _parse(path: Path, number: int, line: str, default_scorer: str) -> TaskRow:
    where = f"{path}:{number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object like "
                        f"{EXAMPLE}") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object like {EXAMPLE}")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}; a row may have {', '.join(FIELDS)}")
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError(f'{where}: needs a "prompt" field holding a non-empty string, like {EXAMPLE}')
    if "answer" not in row:
        raise UserError(f'{where}: needs an "answer" field: the text that counts as right')
    answer = row["answer"]
    if not isinstance(answer, str):
        raise UserError(f'{where}: "answer" must be a string, not {json.dumps(answer)}; write it in quotes '
                        f'("answer": "{answer}")')
    choices = _choices(where, row.get("choices"), answer)
    scorer = row.get("score", "choice" if choices else default_scorer)
    if scorer not in SCORERS:
        raise UserError(f"{where}: unknown scorer {json.dumps(scorer)}; use one of {', '.join(SCORERS)}")
    if scorer == "choice" and not choices:
        raise UserError(f'{where}: the choice scorer ranks "choices"; add them, e.g. "choices": ["yes", "no"]')
    if choices and scorer != "choice":
        raise UserError(f'{where}: rows with "choices" are ranked by likelihood (score "choice"), not {scorer!r}; '
                        'drop "score" or "choices"')
    if scorer == "number":
        from .scoring import parse_number

        if parse_number(answer) is None:
            raise UserError(f"{where}: the number scorer needs a number as answer, not {answer!r}")
    if scorer == "regex":
        try:
            re.compile(answer)
        except re.error as exc:
            raise UserError(f"{where}: the answer is not a valid regular expression ({exc}); escape it or "
                            "use another scorer") from None
    return TaskRow(id=_id(where, row.get("id"), number), line=number, prompt=prompt, answer=answer, scorer=scorer,
                   choices=choices, tolerance=_tolerance(where, row.get("tolerance"), scorer))


def _choices(where: str, choices, answer: str) -> tuple[str, ...] | None:
    if choices is None:
        return None
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise UserError(f'{where}: "choices" must be a list of at least two non-empty strings')
    if len(set(choices)) != len(choices):
        raise UserError(f'{where}: "choices" lists the same choice twice; each must differ')
    if answer not in choices:
        raise UserError(f"{where}: the answer {answer!r} is not one of the choices ({', '.join(map(repr, choices))}); "
                        "the answer must be one of them, spelled the same")
    return tuple(choices)


def _id(where: str, value, number: int) -> str:
    if value is None:
        return str(number)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise UserError(f'{where}: "id" must be a non-empty string or an integer')
    return str(value)


def _tolerance(where: str, value, scorer: str) -> float | None:
    if value is None:
        return None
    if scorer != "number":
        raise UserError(f'{where}: "tolerance" is for the number scorer; this row is scored by {scorer!r}')
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f'{where}: "tolerance" must be a finite number ≥ 0, not {json.dumps(value)}')
    return float(value)
