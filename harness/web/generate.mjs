// Text generation with Transformers.js, the same code in Node and in the browser: the model loaded as a
// web page loads it (AutoModelForCausalLM with its dtype), then
//  - for each sample, the logits at every position (one pass, Transformers.js filling the empty cache),
//    from which the host computes KL divergence and same-top-1 against the fp32 source;
//  - for each ask of the generation protocol ({id, prompt, max_new_tokens, stop, continuations}), greedy
//    generate() with a streamer that timestamps every token: the tokens (without the stop token), their
//    log-probabilities (one teacher-forced pass over prompt + tokens), time to the first token and decode
//    ms per later token.
// Token ids come from the host (the model's own tokenizer ran there), so every runtime sees the same tokens.
import { fromTensor, toTensor } from './tensors.mjs';

function ids(tf, tokens) {
    return new tf.Tensor('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [1, tokens.length]);
}

function logSoftmaxAt(logits, position, vocab, token) {
    const row = logits.subarray(position * vocab, (position + 1) * vocab);
    let max = -Infinity;
    for (const v of row) if (v > max) max = v;
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    return row[token] - max - Math.log(sum);
}

// Log-probabilities of `tokens` after `prompt`, teacher-forced in one pass.
async function scored(tf, model, prompt, tokens) {
    if (!tokens.length) return [];
    const all = [...prompt, ...tokens];
    const input_ids = ids(tf, all);
    const out = await model({ input_ids, attention_mask: tf.ones_like(input_ids) });
    const [, , vocab] = out.logits.dims;
    const data = out.logits.data instanceof Float32Array ? out.logits.data : Float32Array.from(out.logits.data);
    return tokens.map((token, i) => logSoftmaxAt(data, prompt.length - 1 + i, vocab, token));
}

async function answer(tf, model, ask, score = true) {
    const prompt = ask.prompt.map(Number);
    const found = { id: ask.id, tokens: [], logprobs: [], first_token_ms: null, decode_ms_per_token: null };
    if (ask.max_new_tokens > 0) {
        const times = [];
        const streamer = new (class extends tf.BaseStreamer {
            put() { times.push(performance.now()); }
            end() {}
        })();
        const input_ids = ids(tf, prompt);
        const start = performance.now();
        const sequences = await model.generate({
            input_ids, attention_mask: tf.ones_like(input_ids), max_new_tokens: ask.max_new_tokens, min_new_tokens: 0,
            do_sample: false, num_beams: 1, repetition_penalty: 1.0, no_repeat_ngram_size: 0, streamer,
            // Stop where the host says (its eos ids); an impossible id keeps the model's own eos from stopping it.
            eos_token_id: ask.stop?.length ? ask.stop : [-1],
        });
        let tokens = Array.from(sequences.data.slice(prompt.length), Number);
        const stamps = times.slice(-tokens.length);  // the streamer may see the prompt first
        // The protocol (edge_pack/generation.py) does not return the stop token; generate() keeps it.
        if (tokens.length && ask.stop?.includes(tokens.at(-1))) tokens = tokens.slice(0, -1);
        found.tokens = tokens;
        found.first_token_ms = stamps.length ? stamps[0] - start : null;
        found.decode_ms_per_token = stamps.length > 1 ? (stamps.at(-1) - stamps[0]) / (stamps.length - 1) : null;
        if (score) found.logprobs = await scored(tf, model, prompt, tokens);
    }
    if (ask.continuations?.length) {
        found.continuation_logliks = [];
        for (const continuation of ask.continuations) {
            const logprobs = await scored(tf, model, prompt, continuation.map(Number));
            found.continuation_logliks.push(logprobs.reduce((a, b) => a + b, 0));
        }
    }
    return found;
}

/**
 * @param tf the Transformers.js module
 * @param request {model_id, dtype, external_data, samples, asks, warmup, runs}
 * @param options {device, session_options}: what the host (Node or a page) runs the model with
 */
export async function generate(tf, request, { device, session_options = {} }) {
    const start = performance.now();
    const model = await tf.AutoModelForCausalLM.from_pretrained(request.model_id, {
        dtype: request.dtype, device, session_options,
        ...(request.external_data ? { use_external_data_format: true } : {}),
    });
    const load_ms = performance.now() - start;

    const outputs = [];
    for (const sample of request.samples) {
        const inputs = Object.fromEntries(Object.entries(sample).map(([name, value]) => [name, toTensor(tf.Tensor, value)]));
        inputs.attention_mask ??= tf.ones_like(inputs.input_ids);
        const out = await model({ input_ids: inputs.input_ids, attention_mask: inputs.attention_mask });
        outputs.push({ logits: fromTensor(out.logits) });
    }
    const answers = [];
    for (const ask of request.asks ?? []) answers.push(await answer(tf, model, ask));
    // Latency: the p50 figure of a decoder is its time to first token on the latency prompt (a prefill).
    const latency_ms = [];
    if (request.latency && request.runs > 0) {
        const prompt = Array.from(toTensor(tf.Tensor, request.latency.input_ids).data, Number);
        const timed = { id: 'latency', prompt, max_new_tokens: 1, stop: [] };
        for (let i = 0; i < request.warmup; i++) await answer(tf, model, timed, false);
        for (let i = 0; i < request.runs; i++) latency_ms.push((await answer(tf, model, timed, false)).first_token_ms);
    }
    await model.dispose?.();
    return { load_ms, latency_ms, outputs, answers, postprocessed: false, version: tf.env.version };
}
