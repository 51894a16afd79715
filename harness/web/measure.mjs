// The measurement itself, the same code in Node and in the browser: load a model folder with a
// Transformers.js pipeline, run its model on each sample, time the latency input.
//
// Every runtime edge-pack measures gets the same model inputs (token ids, pixel values), so the numbers
// compare runtimes, not tokenizers. Outputs are what Transformers.js returns: the feature-extraction
// pipeline's mean pooling + normalisation (its own mean_pooling and Tensor.normalize), and the logits the
// classification pipelines turn into scores.

// A text-generation model goes to generate.mjs (logits at every position, and greedy generation).
import { generate } from './generate.mjs';
import { fromTensor, toTensor } from './tensors.mjs';

const TASKS = ['feature-extraction', 'text-classification', 'image-classification', 'text-generation'];

/**
 * @param tf the Transformers.js module
 * @param request {model_id, dtype, task, external_data, samples, latency, warmup, runs}
 * @param options {device, session_options}: what the host (Node or a page) runs the model with
 */
export async function measure(tf, request, { device, session_options = {} }) {
    const { task } = request;
    if (task === 'text-generation') return generate(tf, request, { device, session_options });
    if (!TASKS.includes(task)) {
        throw new Error(`Transformers.js has no pipeline for a ${task} model here (it runs ${TASKS.join(', ')}); ` +
            'measure it with --runtime ort');
    }
    const start = performance.now();
    const pipe = await tf.pipeline(task, request.model_id, {
        dtype: request.dtype, device, session_options,
        ...(request.external_data ? { use_external_data_format: true } : {}),
        // a file named other than by its dtype (a per-layer mix: onnx/model_mixed.onnx)
        ...(request.model_file_name ? { model_file_name: request.model_file_name } : {}),
    });
    const load_ms = performance.now() - start;

    const prepare = (sample) => Object.fromEntries(Object.entries(sample).map(([name, value]) => [name, toTensor(tf.Tensor, value)]));
    const forward = async (inputs) => {
        const output = await pipe.model(inputs);
        if (task !== 'feature-extraction') return { logits: output.logits };
        // What FeatureExtractionPipeline does with { pooling: 'mean', normalize: true }.
        const hidden = output.last_hidden_state ?? output.logits ?? output.token_embeddings;
        const mask = inputs.attention_mask ?? tf.ones(hidden.dims.slice(0, 2));
        return { sentence_embedding: tf.mean_pooling(hidden, mask).normalize(2, -1) };
    };

    const outputs = [];
    for (const sample of request.samples) {
        const found = await forward(prepare(sample));
        outputs.push(Object.fromEntries(Object.entries(found).map(([name, tensor]) => [name, fromTensor(tensor)])));
    }
    const latency_ms = [];
    if (request.latency && request.runs > 0) {
        const inputs = prepare(request.latency);
        for (let i = 0; i < request.warmup; i++) await forward(inputs);
        for (let i = 0; i < request.runs; i++) {
            const begin = performance.now();
            await forward(inputs);
            latency_ms.push(performance.now() - begin);
        }
    }
    await pipe.dispose?.();
    return { load_ms, latency_ms, outputs, postprocessed: task === 'feature-extraction', version: tf.env.version };
}
