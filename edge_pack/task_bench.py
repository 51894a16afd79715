"""A decoder's task file in a bench: the rows read and turned into asks once per target (the model's own
tokenizer and chat template), the fp32 source's answers in torch as the baseline, each candidate's answers
from its runtime scored into samples, and where a candidate starts to fail. The arithmetic is task_eval's;
this module only says which answers are compared with which."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import task_eval
from .errors import UserError
from .generation import MAX_NEW_TOKENS, Ask, Prompter, torch_answers
from .tasks import DEFAULT_SCORER, TaskRow, read_tasks
from .task_eval import TaskSample


@dataclass(frozen=True)
class TaskSettings:
    """How the rows are asked: from --chat-template/--no-chat-template, --max-new-tokens, --scorer or the
    job's [bench] keys (None: the model's chat template when it has one; 32 new tokens; exact)."""
    chat_template: bool | None = None
    max_new_tokens: int | None = None
    scorer: str | None = None

    @property
    def given(self) -> list[str]:
        return [name for name, value in (("chat_template", self.chat_template), ("max_new_tokens", self.max_new_tokens),
                                         ("scorer", self.scorer)) if value is not None]


@dataclass(frozen=True)
class TaskEval:
    path: Path
    rows: list[TaskRow]
    prompter: Prompter
    asks: list[Ask]

    def describe(self) -> str:
        chat = "chat template" if self.prompter.chat else "no chat template"
        return (f"{self.path} ({len(self.rows)} task rows; {chat}, greedy, up to {self.prompter.max_new_tokens} "
                "new tokens)")

    def samples(self, answers: list) -> list[TaskSample]:
        """A runtime's answers (the protocol's JSON, or Answers) scored; a missing answer is a RunnerError's
        matter for the caller (ValueError)."""
        return task_eval.score(self.rows, answers, self.prompter)


def task_eval_for(path: Path, tokenizer, support_dir: Path | None, settings: TaskSettings) -> TaskEval:
    rows = read_tasks(path, settings.scorer or DEFAULT_SCORER)
    prompter = Prompter(tokenizer, chat_template=settings.chat_template,
                        max_new_tokens=settings.max_new_tokens or MAX_NEW_TOKENS, support_dir=support_dir)
    return TaskEval(Path(path), rows, prompter, task_eval.asks(rows, prompter))


def torch_baseline(tasks: TaskEval, source) -> list[TaskSample]:
    """The fp32 source's samples: its answers in torch with the same prompts and greedy decoding."""
    from .quiet import captured
    from .source import load_hf_model

    if source.kind != "hf":
        raise UserError(f"task accuracy takes its baseline from a Hugging Face decoder folder in torch; "
                        f"{source.spec} is a {source.kind} source (build from the model's folder)")
    with captured():  # loading a model can log
        model = load_hf_model(source)
    return tasks.samples(torch_answers(model, tasks.asks))


def correctness(samples: list[TaskSample]) -> np.ndarray:
    return np.array([s.correct for s in samples], dtype=bool)


def samples_of(found: list[dict]) -> list[TaskSample]:
    return [TaskSample(**{k: s[k] for k in ("id", "output", "correct", "confidence")}) for s in found]


def failure_notes(rows, baseline: dict, show: int = 3) -> list[str]:
    """Where each candidate of a target starts to fail on a task file, per model: against that model's
    highest-precision candidate that ran (the one the others are quantized further from), and that one
    against its fp32 source, e.g. "q4_k_m got 3 of 30 wrong that f16 got right: …". `baseline` is the
    TargetResult's (its samples, or each model's in by_model)."""
    notes = []
    for model in dict.fromkeys(r.model for r in rows):
        measured = sorted((r for r in rows if r.model == model and not r.cascade and not r.error and r.samples
                           and "output" in r.samples[0]), key=lambda r: (-r.bits, -r.bytes))
        if not measured:
            continue
        own = (baseline.get("by_model") or {}).get(model) or baseline
        top = measured[0]
        if own.get("samples") and "output" in own["samples"][0]:
            note = task_eval.regression_note(top.label, f"{model + ' ' if model else 'the '}fp32 source",
                                             samples_of(own["samples"]), samples_of(top.samples), show)
            notes += [note] if note else []
        for row in measured[1:]:
            note = task_eval.regression_note(row.label, top.label, samples_of(top.samples), samples_of(row.samples),
                                             show)
            notes += [note] if note else []
    return notes
