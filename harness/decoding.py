"""Greedy decoding over a KV cache, the same for every phone runtime (LiteRT's prefill/decode signatures,
a Core ML stateful program): a runtime only supplies a Session, this file runs the generation protocol
(written down at the top of edge_pack/generation.py) on it. Stdlib + numpy only (and protocol.py beside it):
it is copied to devices.

A Session holds one sequence's cache:
    prefill_len            the most tokens one prefill call takes (longer inputs go in chunks)
    kv_len                 the positions the cache holds
    reset()                forget the sequence
    prefill(tokens, start) logits [len(tokens), vocab] for tokens at positions start.. (len ≤ prefill_len)
    decode(token, pos)     logits [vocab] for one token at position pos
"""
from __future__ import annotations

import time

import numpy as np

import protocol


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.exp(shifted).sum())


def feed(session, tokens: list[int], start: int = 0) -> np.ndarray:
    """Logits at each of `tokens`, fed after `start` cached positions, in prefill chunks."""
    if start + len(tokens) > session.kv_len:
        raise ValueError(f"{start + len(tokens)} positions do not fit the KV cache of {session.kv_len}")
    rows = []
    for at in range(0, len(tokens), session.prefill_len):
        chunk = tokens[at:at + session.prefill_len]
        rows.append(session.prefill(chunk, start + at))
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


def sequence_logits(session, tokens: list[int]) -> np.ndarray:
    """Logits at every position of one sequence through the cache path: the first chunk by prefill, then
    one decode step per token, as generation reads them (validation against torch covers both)."""
    session.reset()
    head = tokens[:session.prefill_len]
    rows = [feed(session, head)]
    for pos in range(len(head), len(tokens)):
        rows.append(session.decode(tokens[pos], pos)[None])
    return np.concatenate(rows).astype(np.float32)


def answer(session, ask: dict) -> dict:
    """One ask: greedy tokens with their log-probs (argmax, the lowest id on a tie: np.argmax), stopping at
    max_new_tokens or a stop id (not returned); then each continuation's summed log-likelihood."""
    prompt, stop, limit = [int(t) for t in ask["prompt"]], {int(t) for t in ask["stop"]}, int(ask["max_new_tokens"])
    tokens, logprobs, steps, first_ms = [], [], [], None
    if limit and prompt:
        if len(prompt) + limit > session.kv_len:
            limit = session.kv_len - len(prompt)  # the cache is full: generation ends there
        session.reset()
        start = time.perf_counter()
        logp = log_softmax(feed(session, prompt)[-1])
        pos = len(prompt)
        while True:
            token = int(np.argmax(logp))
            if first_ms is None:
                first_ms = (time.perf_counter() - start) * 1000.0
            if token in stop:
                break
            tokens.append(token)
            logprobs.append(float(logp[token]))
            if len(tokens) >= limit:
                break
            step = time.perf_counter()
            logp = log_softmax(session.decode(token, pos))
            steps.append((time.perf_counter() - step) * 1000.0)
            pos += 1
    found = {"id": ask["id"], "tokens": tokens, "logprobs": logprobs, "first_token_ms": first_ms,
             "decode_ms_per_token": float(np.mean(steps)) if steps else None}
    if ask.get("continuations") is not None:
        logliks = []
        for continuation in ask["continuations"]:
            continuation = [int(t) for t in continuation]
            session.reset()
            rows = feed(session, prompt + continuation)[len(prompt) - 1:len(prompt) + len(continuation) - 1]
            logliks.append(float(sum(log_softmax(row)[t] for row, t in zip(rows, continuation))))
        found["continuation_logliks"] = logliks
    return found


def answers(session, asks: list[dict]) -> list[dict]:
    return [answer(session, ask) for ask in asks]


def speed(session, prompt: list[int], count: int) -> dict:
    """Prefill tokens/s on the prompt and decode tokens/s over `count` steps after it (the tokens fed are
    the prompt's own, cycled: the speed does not depend on which tokens they are)."""
    count = max(1, min(count, session.kv_len - len(prompt)))
    session.reset()
    start = time.perf_counter()
    feed(session, prompt)
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(count):
        session.decode(prompt[i % len(prompt)], len(prompt) + i)
    decode_s = time.perf_counter() - start
    return {"prefill_tokens_per_s": len(prompt) / prefill_s, "decode_tokens_per_s": count / decode_s,
            "decode_ms_per_token": decode_s * 1000.0 / count}


def serve(session, request: dict, timed: bool = True) -> tuple[list[dict], dict, list[float]]:
    """A decoder harness's request on its session: logits at every position of each sample (request
    "inputs", "s<i>/input_ids") through the cache path, written to "outputs"; the answers to "asks"; and,
    when timed and the request has "speed": {"prompt": [ids], "tokens": n}, the prefill/decode speed and the
    latency: the request's timed runs of the prompt's prefill from an empty cache, i.e. the time to the first
    new token's logits (what llama.cpp's runner times too). Returns (answers, metrics, latency_ms)."""
    samples = protocol.load_inputs(request["inputs"])[0] if request.get("inputs") else []
    outputs = [{"logits": sequence_logits(session, [int(t) for t in s["input_ids"].reshape(-1)])[None]}
               for s in samples]
    if request.get("outputs"):
        protocol.save_outputs(request["outputs"], outputs)
    found = answers(session, request.get("asks") or [])
    metrics = {"prefill_len": session.prefill_len, "kv_len": session.kv_len}
    latency = []
    if timed and request.get("speed"):
        prompt = [int(t) for t in request["speed"]["prompt"]]
        metrics.update(speed(session, prompt, int(request["speed"].get("tokens", 32))))

        def first_token():
            session.reset()
            feed(session, prompt)

        latency = protocol.time_request(request, first_token)
    return found, metrics, latency
