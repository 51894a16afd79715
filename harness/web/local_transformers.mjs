// Transformers.js from the npm packages `edge-pack setup web` (or `make`) installed (request.packages),
// reading models only from the folder the request names: no request leaves the machine.
import { createRequire } from 'node:module';
import path from 'node:path';

export function localTransformers(request) {
    const tf = createRequire(path.join(request.packages, 'package.json'))('@huggingface/transformers');
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = request.model_root;
    return tf;
}
