"""Answers of a text-generation model to task rows: the prompt (the model's chat template applied when it has
one), greedy decoding, choice log-likelihoods; the fp32 baseline in torch, every candidate on its runtime.

The harness protocol for generation, the same for every runtime (harness/pi/run.py for llama.cpp; the web
and phone runtimes implement the same). Token ids come from the host, which ran the model's own tokenizer,
so every runtime sees the same tokens; the runtime only runs the model.

    request (beside the usual keys of harness/protocol.py):
      "asks": [{"id": "3", "prompt": [token ids], "max_new_tokens": 32, "stop": [token ids],
                "continuations": [[token ids], ...]}]           # optional: the choices of a choice row
    result (beside the usual keys), one answer per ask, in order:
      "answers": [{"id": "3", "tokens": [generated ids], "logprobs": [...],
                   "continuation_logliks": [...],               # only when the ask has continuations
                   "first_token_ms": 12.5, "decode_ms_per_token": 3.1}]

- The prompt ids are fed exactly as given: the runtime adds no BOS (the host's tokenizer put it in when
  the model wants one).
- Greedy: each next token is the argmax of the logits (the lowest id on a tie), whatever the runtime's own
  sampling defaults; generation stops after `max_new_tokens` tokens or when the argmax is in `stop` (that
  token is not returned). Stop strings are cut by the host on the decoded text, so runtimes see only ids.
- `logprobs[i]` is the natural-log probability of `tokens[i]` under the softmax of the full vocabulary
  at that step (before any sampling transform).
- `continuation_logliks[j]` is the sum of the log-probabilities of continuation j's tokens, each given the
  prompt and the continuation's earlier tokens (lm-eval's loglikelihood request).
- `first_token_ms`: from feeding the prompt to the first generated token's logits (null when
  max_new_tokens is 0); `decode_ms_per_token`: the mean time of each later step (null with under two tokens).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .scoring import generation_confidence
from .tasks import TaskRow

MAX_NEW_TOKENS = 32
# lm-eval's generate_until stops at its few-shot delimiter by default ("\n\n"); EOS and end-of-turn stop too.
STOP_STRINGS = ("\n\n",)


@dataclass(frozen=True)
class Ask:
    id: str
    prompt: list[int]
    max_new_tokens: int
    stop: list[int]
    continuations: list[list[int]] | None = None

    def to_json(self) -> dict:
        found = asdict(self)
        if self.continuations is None:
            del found["continuations"]
        return found

    @property
    def context_length(self) -> int:
        """Tokens the runtime's context must hold for this ask."""
        longest = max((len(c) for c in self.continuations or []), default=0)
        return len(self.prompt) + max(self.max_new_tokens, longest)


@dataclass(frozen=True)
class Answer:
    id: str
    tokens: list[int]
    logprobs: list[float]
    continuation_logliks: list[float] | None = None
    first_token_ms: float | None = None
    decode_ms_per_token: float | None = None

    @staticmethod
    def from_json(found: dict) -> "Answer":
        return Answer(id=str(found["id"]), tokens=[int(t) for t in found["tokens"]],
                      logprobs=[float(v) for v in found["logprobs"]],
                      continuation_logliks=None if found.get("continuation_logliks") is None
                      else [float(v) for v in found["continuation_logliks"]],
                      first_token_ms=found.get("first_token_ms"), decode_ms_per_token=found.get("decode_ms_per_token"))


@dataclass(frozen=True)
class Output:
    """A generated answer as the host reads it: the text up to the first stop string, and the log-probs of
    the tokens that make that text (the confidence)."""
    text: str
    logprobs: list[float]

    @property
    def confidence(self) -> float:
        return generation_confidence(self.logprobs)


def encode_pair(encode, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's context/continuation tokenization (lm_eval/api/model.py, TemplateLM._encode_pair, causal):
    trailing spaces of the context move to the continuation, the whole text is tokenized, and the
    continuation is what follows the context's own tokens, so a choice is scored as the model would read
    it after the prompt."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole, context_ids = encode(context + continuation), encode(context)
    return context_ids, whole[len(context_ids):]


class Prompter:
    """Task rows as asks for one model, with its tokenizer: the chat template (when the model has one and
    it is not turned off), the stop ids, and back from generated ids to the answer's text."""

    def __init__(self, tokenizer, *, chat_template: bool | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                 stop_strings: tuple[str, ...] = STOP_STRINGS, support_dir: Path | None = None):
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template and not has_template:
            raise UserError("--chat-template: the model's tokenizer has no chat template "
                            "(tokenizer_config.json chat_template); drop the flag or add the template")
        self.tokenizer = tokenizer
        self.chat = has_template if chat_template is None else chat_template
        self.max_new_tokens = max_new_tokens
        self.stop_strings = tuple(stop_strings)
        self.stop_ids = stop_ids(tokenizer, support_dir)

    def context(self, prompt: str) -> str:
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        # A chat template writes the special tokens (BOS, turn markers) into the text itself.
        return list(self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"])

    def ask(self, row: TaskRow) -> Ask:
        context = self.context(row.prompt)
        if row.choices is None:
            return Ask(row.id, self.encode(context), self.max_new_tokens, self.stop_ids)
        # lm-eval puts its target delimiter (" ") between prompt and choice; after a chat template's
        # generation prompt the assistant's turn starts fresh, so the choice follows directly.
        delimiter = "" if self.chat else " "
        pairs = [encode_pair(self.encode, context, delimiter + choice) for choice in row.choices]
        return Ask(row.id, pairs[0][0], 0, self.stop_ids, [continuation for _, continuation in pairs])

    def output(self, answer: Answer) -> Output:
        text = self.tokenizer.decode(answer.tokens, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in self.stop_strings) if i >= 0), default=None)
        if cut is None:
            return Output(text, list(answer.logprobs))
        # the tokens that make the text up to the stop string (the one holding its start included)
        for count in range(1, len(answer.tokens) + 1):
            if len(self.tokenizer.decode(answer.tokens[:count], skip_special_tokens=True)) > cut:
                return Output(text[:cut], list(answer.logprobs[:count]))
        return Output(text[:cut], list(answer.logprobs))


def stop_ids(tokenizer, support_dir: Path | None = None) -> list[int]:
    """EOS and every end-of-sequence id the model's config or generation config names (chat models end a
    turn with one of them, e.g. <|im_end|>)."""
    found = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for name in ("config.json", "generation_config.json"):
        path = support_dir / name if support_dir else None
        if path and path.is_file():
            value = json.loads(path.read_text()).get("eos_token_id")
            found.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    return sorted(found)


# ---------------------------------------------------------------------------------------------- fp32 baseline

def torch_answers(model, asks: list[Ask]) -> list[Answer]:
    """The fp32 source's answers in torch, with the same greedy decoding as every runtime, through its KV
    cache (past_key_values): one forward of the prompt, then one token at a time."""
    import torch

    answers = []
    with torch.no_grad():
        for ask in asks:
            tokens, logprobs, steps, first_ms = [], [], [], None
            if ask.max_new_tokens:
                start = time.perf_counter()
                out = model(input_ids=torch.tensor([ask.prompt]), use_cache=True)
                for _ in range(ask.max_new_tokens):
                    logp = torch.log_softmax(out.logits[0, -1].double(), -1)
                    token = int(torch.argmax(logp))
                    if first_ms is None:
                        first_ms = (time.perf_counter() - start) * 1000.0
                    if token in ask.stop:
                        break
                    tokens.append(token)
                    logprobs.append(float(logp[token]))
                    if len(tokens) == ask.max_new_tokens:
                        break
                    step = time.perf_counter()
                    out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
                    steps.append((time.perf_counter() - step) * 1000.0)
            logliks = None
            if ask.continuations is not None:
                logliks = [_torch_loglik(model, ask.prompt, c) for c in ask.continuations]
            answers.append(Answer(ask.id, tokens, logprobs, logliks, first_ms,
                                  float(np.mean(steps)) if steps else None))
    return answers


def _torch_loglik(model, prompt: list[int], continuation: list[int]) -> float:
    import torch

    logits = model(input_ids=torch.tensor([prompt + continuation])).logits[0].double()
    logp = torch.log_softmax(logits[len(prompt) - 1:len(prompt) + len(continuation) - 1], -1)
    return float(logp[torch.arange(len(continuation)), torch.tensor(continuation)].sum())
