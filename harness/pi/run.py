"""Run one GGUF file with llama.cpp (llama-cpp-python), the same code on this machine and on a device.
Usage: python run.py request.json (see harness/protocol.py); the request may add "gen_tokens".

The token ids come from the request (the model's own tokenizer ran on the host), so every runtime sees the
same tokens. A decoder returns its logits at every position of each sample (the host computes perplexity,
KL divergence and same-top-1 from them) and measures speed as llama-bench does: prompt processing (pp, the
latency input as one prompt) and generation (tg, one token at a time from an empty context), in tokens/s.
An embedder (a GGUF that pools, e.g. BERT) returns each sample's normalised sentence embedding.

A request with "asks" also gets "answers": greedy generation and choice log-likelihoods, in the protocol
written down at the top of edge_pack/generation.py, by harness/decoding.py (the same code for every
runtime) on llama.cpp's context."""
from __future__ import annotations

import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import decoding  # noqa: E402
import protocol  # noqa: E402

try:
    import llama_cpp  # noqa: E402
except ImportError:
    sys.exit("llama-cpp-python is not installed for this Python; install it with: "
             f"{sys.executable} -m pip install llama-cpp-python numpy")


def _silence() -> None:
    # llama.cpp logs every load to stderr; a no-op callback keeps a failure's own words the last line.
    global _LOG_CALLBACK
    _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(_LOG_CALLBACK, None)


def _load(path: str, threads: int, n_ctx: int, embedding: bool, logits_all: bool):
    return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
                           n_threads_batch=threads, embedding=embedding, logits_all=logits_all, verbose=False)


def _tokens(sample: dict) -> list[int]:
    ids = np.asarray(sample["input_ids"]).reshape(-1)
    mask = sample.get("attention_mask")
    if mask is not None:
        ids = ids[np.asarray(mask).reshape(-1) > 0]
    return [int(t) for t in ids]


def _pools(llm) -> bool:
    return llm.pooling_type() not in (llama_cpp.LLAMA_POOLING_TYPE_NONE, llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED)


def _embed(llm, tokens: list[int]) -> np.ndarray:
    """The pooled embedding of one token sequence, as llama.cpp's embedding example computes it."""
    batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
    try:
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, True
            batch.seq_id[i][0] = 0
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        encoder_only = llama_cpp.llama_model_has_encoder(llm.model) and not llama_cpp.llama_model_has_decoder(llm.model)
        code = (llama_cpp.llama_encode if encoder_only else llama_cpp.llama_decode)(llm.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama.cpp could not evaluate {len(tokens)} tokens (code {code})")
        pointer = llama_cpp.llama_get_embeddings_seq(llm.ctx, 0)
        vector = np.ctypeslib.as_array(pointer, shape=(llm.n_embd(),)).astype(np.float64)
    finally:
        llama_cpp.llama_batch_free(batch)
    return vector / max(np.linalg.norm(vector), 1e-12)


def _logits(llm, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)], dtype=np.float32)


class LlamaCppSession:
    """A llama.cpp context as a decoding.Session (harness/decoding.py): its KV cache holds the sequence and
    eval() appends at n_tokens. decoding feeds positions in order after reset(), so `start` and `pos` are
    always llm.n_tokens. The context keeps logits at every position (logits_all)."""

    def __init__(self, llm, n_ctx: int):
        self.llm = llm
        self.prefill_len = self.kv_len = n_ctx  # n_batch is n_ctx: one eval takes the whole context

    def reset(self) -> None:
        self.llm.reset()

    def prefill(self, tokens: list[int], start: int) -> np.ndarray:
        self.llm.eval(tokens)
        return np.array(self.llm.scores[start:start + len(tokens)], dtype=np.float32)

    def decode(self, token: int, pos: int) -> np.ndarray:
        return self.prefill([token], pos)[0]


def _generation_speed(llm, tokens: list[int], count: int, repeats: int) -> float:
    """Tokens/s generating `count` tokens one at a time from an empty context (llama-bench's tg); the
    tokens fed are the prompt's, as the speed does not depend on which tokens they are."""
    feed = (tokens * (count // max(len(tokens), 1) + 1))[:count]
    best = []
    for _ in range(repeats):
        llm.reset()
        start = time.perf_counter()
        for token in feed:
            llm.eval([token])
        best.append(count / (time.perf_counter() - start))
    return float(np.median(best))


def main() -> None:
    request = protocol.read_request(sys.argv)
    samples, latency_input = protocol.load_inputs(request["inputs"])
    threads = int(request.get("threads", 1))
    runs, warmup = int(request.get("runs", 0)), int(request.get("warmup", 0))
    asks = request.get("asks") or []
    _silence()
    token_lists = [_tokens(s) for s in samples]
    prompt = _tokens(latency_input) if latency_input is not None else (token_lists or [[]])[0]
    runs = runs if prompt else 0  # an asks-only request times nothing beyond its answers
    gen_tokens = int(request.get("gen_tokens", 64)) if runs else 0
    ask_lengths = [len(a["prompt"]) + max([int(a["max_new_tokens"])] + [len(c) for c in a.get("continuations") or []])
                   for a in asks]
    n_ctx = max([len(t) for t in token_lists] + ask_lengths + [len(prompt), gen_tokens, 8])
    n_ctx = (n_ctx + 31) // 32 * 32

    # Speed is measured as llama-bench does, without logits kept for every position.
    llm, load_ms, rss_before = protocol.timed_load(
        lambda: _load(request["model"], threads, n_ctx, embedding=False, logits_all=False))
    embedder = _pools(llm)
    metrics = {"threads": threads, "n_ctx": n_ctx}
    latency, answers = [], None
    if embedder:
        del llm
        gc.collect()
        llm = _load(request["model"], threads, n_ctx, embedding=True, logits_all=False)
        outputs = [{"sentence_embedding": _embed(llm, t)[None].astype(np.float32)} for t in token_lists]
        if runs:
            latency = protocol.time_runs(lambda: _embed(llm, prompt), warmup, runs)
    else:
        if runs:
            def prompt_once():
                llm.reset()
                llm.eval(prompt)

            latency = protocol.time_runs(prompt_once, warmup, runs)
            metrics.update(pp_tokens=len(prompt), pp_tokens_per_s=len(prompt) / (float(np.median(latency)) / 1000.0),
                           tg_tokens=gen_tokens, tg_tokens_per_s=_generation_speed(llm, prompt, gen_tokens,
                                                                                   repeats=min(runs, 3)))
        del llm
        gc.collect()
        # Quality needs the logits of every position: a context that keeps them.
        llm = _load(request["model"], threads, n_ctx, embedding=False, logits_all=True)
        outputs = [{"logits": _logits(llm, t)[None]} for t in token_lists]
        answers = decoding.answers(LlamaCppSession(llm, n_ctx), asks)
    protocol.save_outputs(request["outputs"], outputs)
    protocol.write_result(request, {
        **({"answers": answers} if answers is not None else {}),
        "load_ms": load_ms, "latency_ms": latency, "peak_rss_mb": protocol.peak_rss_mb(),
        "rss_before_load_mb": rss_before, "threads": threads, "postprocessed": embedder, "metrics": metrics,
        "runtime": f"llama.cpp via llama-cpp-python {llama_cpp.__version__} ({'embedder' if embedder else 'decoder'})",
    })


if __name__ == "__main__":
    main()
