// Transformers.js in Node (onnxruntime-node, CPU). Usage: node node.mjs request.json
// The request (written by edge_pack/runners/node.py) names the model, the inputs and where the npm
// packages are; the result JSON goes where the request says.
import { readFileSync, writeFileSync } from 'node:fs';

import { localTransformers } from './local_transformers.mjs';
import { measure } from './measure.mjs';

async function main() {
    const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
    const tf = localTransformers(request);
    const threads = request.threads;
    // x64quantprecision: exact int8 matmuls on x86 CPUs without VNNI, whose default kernel saturates
    // (harness/ort/run.py says more); without it a q8 model answers wrong on such a host only.
    const session = { x64quantprecision: '1' };
    if (threads > 1) {
        // Spinning worker threads starve each other on a small, busy machine (DESIGN.md).
        session.intra_op = { allow_spinning: '0' };
    }
    const session_options = { intraOpNumThreads: threads, interOpNumThreads: 1, extra: { session } };
    const result = await measure(tf, request, { device: 'cpu', session_options });
    const ort = tf.env.backends.onnx.versions ?? {};
    writeFileSync(request.result, JSON.stringify({
        ...result,
        threads,
        peak_rss_mb: process.resourceUsage().maxRSS / 1024,
        runtime: `Transformers.js ${result.version} (Node ${process.versions.node}, onnxruntime-node ${ort.node ?? '?'}, CPU)`,
        host: { system: process.platform, machine: process.arch, node: process.versions.node, threads },
    }));
}

main().catch((error) => {
    // One line: the host shows the runtime's last line of stderr as the candidate's failure.
    console.error(String(error?.message ?? error).replace(/\s+/g, ' ').trim());
    process.exit(1);
});
