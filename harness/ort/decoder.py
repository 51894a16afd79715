"""A decoder exported with its KV cache, run with onnxruntime the way Transformers.js runs it: the prompt in
one pass (prefill), then one token at a time feeding each step's present.* back as past_key_values.*.
It is a Session of harness/decoding.py, which runs the generation protocol on it. Standard library + numpy
+ onnxruntime only (harness/ runs on devices too).

The layout is optimum's text-generation-with-past export, the one Transformers.js loads: inputs input_ids,
attention_mask, position_ids (optional) and past_key_values.<i>.key/value of shape (batch, heads,
past length, head size); outputs logits and present.<i>.key/value. A cache input without its matching
output (or the reverse) is a broken export, said in one line, because a runtime would feed the cache to
the wrong input or not at all."""
from __future__ import annotations

import numpy as np

import decoding

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
        # Transformers.js feeds a whole prompt in one pass; the cache grows as long as the model allows.
        self.prefill_len = self.kv_len = 1 << 30
        self._empty = {}
        for name in past:
            shape = inputs[name].shape  # (batch, heads, past length, head size); heads and size are fixed
            self._empty[name] = np.zeros((1, shape[1], 0, shape[3]), dtype=_DTYPES.get(inputs[name].type, np.float32))
        self.reset()

    def reset(self) -> None:
        self.cache, self.length = dict(self._empty), 0

    def prefill(self, tokens: list[int], start: int) -> np.ndarray:
        """Logits (len(tokens), vocabulary) of `tokens` at positions start.. on the cache held."""
        if start != self.length:
            raise ValueError(f"the cache holds {self.length} positions, not {start}")
        feeds = {"input_ids": np.asarray([tokens], dtype=np.int64), **self.cache}
        if self.with_mask:
            feeds["attention_mask"] = np.ones((1, start + len(tokens)), dtype=np.int64)
        if self.with_positions:
            feeds["position_ids"] = np.arange(start, start + len(tokens), dtype=np.int64)[None]
        found = dict(zip(self.names, self.session.run(None, feeds)))
        self.cache = {name: found[PRESENT + name[len(PAST):]] for name in self.past}
        self.length = start + len(tokens)
        return found["logits"][0].astype(np.float32)

    def decode(self, token: int, pos: int) -> np.ndarray:
        return self.prefill([token], pos)[0]


def logits_through_cache(session: Decoder, tokens: list[int]) -> np.ndarray:
    """Logits at every position as generation computes them: the first half in one prefill, then one
    token at a time on the cache (a prefill alone would not exercise the cache inputs)."""
    whole = session.prefill_len
    session.prefill_len = max(1, len(tokens) // 2)
    try:
        return decoding.sequence_logits(session, tokens)
    finally:
        session.prefill_len = whole
