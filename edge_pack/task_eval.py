"""Task accuracy of a text-generation model: task rows become asks (edge_pack/generation.py), the answers of a
runtime (or of the fp32 source in torch) become samples — the output, whether it is right
(edge_pack/scoring.py) and how sure the model was — and samples become the accuracy, the rows a candidate
gets wrong that its reference got right, and the cascade's samples."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from . import cascade
from .generation import Answer, Ask, Prompter
from .scoring import is_correct, rank_choices
from .tasks import TaskRow


@dataclass(frozen=True)
class TaskSample:
    id: str
    output: str
    correct: bool
    confidence: float

    def to_json(self) -> dict:
        return asdict(self)


def asks(rows: list[TaskRow], prompter: Prompter) -> list[Ask]:
    return [prompter.ask(row) for row in rows]


def score(rows: list[TaskRow], answers: list[Answer | dict], prompter: Prompter) -> list[TaskSample]:
    """One sample per row, from the runtime's answer to its ask (answers may be the protocol's JSON)."""
    answers = [a if isinstance(a, Answer) else Answer.from_json(a) for a in answers]
    by_id = {a.id: a for a in answers}
    samples = []
    for row in rows:
        answer = by_id.get(row.id)
        if answer is None:
            raise ValueError(f"the runtime returned no answer for row {row.id}")
        if row.choices is not None:
            ranking = rank_choices(row.choices, answer.continuation_logliks or [])
            picked = row.choices[ranking.acc]
            samples.append(TaskSample(row.id, picked, picked == row.answer, ranking.margin))
        else:
            output = prompter.output(answer)
            samples.append(TaskSample(row.id, output.text, is_correct(row, output.text), output.confidence))
    return samples


def accuracy(samples: list[TaskSample]) -> float | None:
    return sum(s.correct for s in samples) / len(samples) if samples else None


def regressions(reference: list[TaskSample], found: list[TaskSample]) -> list[TaskSample]:
    """The samples `found` gets wrong that `reference` got right, in the reference's order."""
    right = {s.id for s in reference if s.correct}
    return [s for s in found if s.id in right and not s.correct]


def regression_note(name: str, reference_name: str, reference: list[TaskSample], found: list[TaskSample],
                    show: int = 3) -> str | None:
    """e.g. "q4_k_m got 3 of 40 wrong that f16 got right: 7 ('Lyon'), 12 ('9'), 31 ('no')"."""
    lost = regressions(reference, found)
    if not lost:
        return None
    listed = ", ".join(f"{s.id} ({_short(s.output)!r})" for s in lost[:show])
    more = f", and {len(lost) - show} more" if len(lost) > show else ""
    return f"{name} got {len(lost)} of {len(found)} wrong that {reference_name} got right: {listed}{more}"


def cascade_samples(samples: list[TaskSample]) -> list[cascade.Sample]:
    return [cascade.Sample(s.id, s.correct, s.confidence) for s in samples]


def answer_speed(answers: list[Answer | dict]) -> dict:
    """Generation speed over the task's answers: the mean time to the first token, and tokens/s after it
    (1000 / the mean of the answers' per-token decode times)."""
    answers = [a if isinstance(a, Answer) else Answer.from_json(a) for a in answers]
    first = [a.first_token_ms for a in answers if a.first_token_ms is not None]
    steps = [a.decode_ms_per_token for a in answers if a.decode_ms_per_token is not None]
    found = {}
    if first:
        found["first_token_ms"] = sum(first) / len(first)
    if steps and sum(steps) > 0:
        found["answer_tokens_per_s"] = 1000.0 / (sum(steps) / len(steps))
    return found


def _short(text: str, limit: int = 30) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
