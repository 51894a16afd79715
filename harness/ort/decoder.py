"""A decoder exported with its KV cache, run with onnxruntime the way Transformers.js runs it: the prompt in
one pass (prefill), then one token at a time feeding each step's present.* back as past_key_values.*.
Standard library + numpy + onnxruntime only (harness/ runs on devices too).

The layout is optimum's text-generation-with-past export, the one Transformers.js loads: inputs input_ids,
attention_mask, position_ids (optional) and past_key_values.<i>.key/value of shape (batch, heads,
past length, head size); outputs logits and present.<i>.key/value. A cache input without its matching
output (or the reverse) is a broken export, said in one line, because a runtime would feed the cache to
the wrong input or not at all."""
from __future__ import annotations

import time

import numpy as np

PAST, PRESENT = "past_key_values.", "present."
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class CacheLayoutError(RuntimeError):
    """The graph's cache inputs and outputs do not pair up as a KV-cache decoder's must."""


def is_decoder(session) -> bool:
    return any(i.name.startswith(PAST) for i in session.get_inputs())


class Decoder:
    def __init__(self, session):
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        past = [n for n in inputs if n.startswith(PAST)]
        present = [n for n in outputs if n.startswith(PRESENT)]
        unpaired = [f"input {n} has no output {PRESENT}{n[len(PAST):]}" for n in past
                    if PRESENT + n[len(PAST):] not in outputs]
        unpaired += [f"output {n} has no input {PAST}{n[len(PRESENT):]}" for n in present
                     if PAST + n[len(PRESENT):] not in inputs]
        if unpaired or not past:
            raise CacheLayoutError("the decoder's KV cache is broken: " + ("; ".join(unpaired) if unpaired else
                                   "no past_key_values.* inputs") + f" (each {PRESENT}N.key/value output must feed "
                                   f"the input {PAST}N.key/value on the next step, as Transformers.js does)")
        others = set(inputs) - set(past) - {"input_ids", "attention_mask", "position_ids"}
        if "input_ids" not in inputs or "logits" not in outputs or others:
            raise CacheLayoutError(f"not a text-generation-with-past decoder: inputs {sorted(inputs)}, outputs "
                                   f"{outputs} (expected input_ids, attention_mask, position_ids, past_key_values.* "
                                   "in and logits, present.* out)")
        self.names = outputs
        self.past = past
        self.with_positions = "position_ids" in inputs
        self.with_mask = "attention_mask" in inputs
        self._empty = {}
        for name in past:
            shape = inputs[name].shape  # (batch, heads, past length, head size); heads and size are fixed
            self._empty[name] = np.zeros((1, shape[1], 0, shape[3]), dtype=_DTYPES.get(inputs[name].type, np.float32))

    def forward(self, ids: list[int], cache: dict | None, past_len: int) -> tuple[np.ndarray, dict]:
        """Logits (len(ids), vocabulary) of `ids` after `past_len` cached tokens, and the new cache."""
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64), **(cache or self._empty)}
        if self.with_mask:
            feeds["attention_mask"] = np.ones((1, past_len + len(ids)), dtype=np.int64)
        if self.with_positions:
            feeds["position_ids"] = np.arange(past_len, past_len + len(ids), dtype=np.int64)[None]
        found = dict(zip(self.names, self.session.run(None, feeds)))
        new_cache = {name: found[PRESENT + name[len(PAST):]] for name in self.past}
        return found["logits"][0].astype(np.float32), new_cache

    def logits_through_cache(self, ids: list[int], prefill: int | None = None) -> np.ndarray:
        """Logits at every position (len(ids), vocabulary) as generation computes them: the first `prefill`
        tokens (half, by default) in one pass, then each further token alone on the cache."""
        prefill = max(1, min(len(ids), len(ids) // 2 if prefill is None else prefill))
        first, cache = self.forward(ids[:prefill], None, 0)
        rows = [first]
        for position in range(prefill, len(ids)):
            step, cache = self.forward([ids[position]], cache, position)
            rows.append(step)
        return np.concatenate(rows, axis=0)

    def greedy(self, prompt: list[int], max_new_tokens: int, stop: list[int] = ()) -> dict:
        """Greedy generation: tokens, their log-probabilities, time to the first token (the prefill) and
        the mean time of each later token."""
        if max_new_tokens < 1:
            return {"tokens": [], "logprobs": [], "first_token_ms": None, "decode_ms_per_token": None}
        start = time.perf_counter()
        logits, cache = self.forward(prompt, None, 0)
        tokens, logprobs, steps = [], [], []
        first_ms = None
        row = logits[-1]
        while len(tokens) < max_new_tokens:
            token = int(np.argmax(row))
            tokens.append(token)
            logprobs.append(float(_log_softmax(row)[token]))
            now = time.perf_counter()
            if first_ms is None:
                first_ms = (now - start) * 1000.0
            if token in stop or len(tokens) == max_new_tokens:
                break
            step_start = time.perf_counter()
            logits, cache = self.forward([token], cache, len(prompt) + len(tokens) - 1)
            row = logits[-1]
            steps.append((time.perf_counter() - step_start) * 1000.0)
        return {"tokens": tokens, "logprobs": logprobs, "first_token_ms": first_ms,
                "decode_ms_per_token": float(np.mean(steps)) if steps else None}

    def continuation_logliks(self, prompt: list[int], continuations: list[list[int]]) -> list[float]:
        """Sum of log-probabilities of each continuation after the prompt (the prompt's cache is reused)."""
        logits, cache = self.forward(prompt, None, 0)
        found = []
        for continuation in continuations:
            if not continuation:
                found.append(0.0)
                continue
            rows = [logits[-1]]
            if len(continuation) > 1:
                rest, _ = self.forward(continuation[:-1], cache, len(prompt))
                rows += list(rest)
            found.append(float(sum(_log_softmax(r)[t] for r, t in zip(rows, continuation))))
        return found

    def answer(self, ask: dict) -> dict:
        """One ask of the generation protocol: {"id", "prompt", "max_new_tokens", "stop", "continuations"}."""
        prompt = [int(t) for t in ask["prompt"]]
        found = {"id": ask["id"], **self.greedy(prompt, int(ask.get("max_new_tokens", 0)),
                                                [int(t) for t in ask.get("stop", [])])}
        if ask.get("continuations"):
            found["continuation_logliks"] = self.continuation_logliks(prompt, ask["continuations"])
        return found


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())
