// Tokenize texts with a web bundle's tokenizer.json as Transformers.js reads it (what a web app runs before
// the model). Usage: node tokenize.mjs request.json, where the request is {packages, model_root, model_id,
// texts, result}; the result is {ids: [[...]], pieces: [[...]]}, no special tokens added.
import { readFileSync, writeFileSync } from 'node:fs';

import { localTransformers } from './local_transformers.mjs';

async function main() {
    const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
    const tf = localTransformers(request);
    const tokenizer = await tf.AutoTokenizer.from_pretrained(request.model_id);
    const ids = request.texts.map((text) => Array.from(tokenizer.encode(text, { add_special_tokens: false }), Number));
    const pieces = ids.map((row) => (tokenizer.model?.convert_ids_to_tokens
        ? tokenizer.model.convert_ids_to_tokens(row)
        : row.map((id) => tokenizer.decode([id]))));
    writeFileSync(request.result, JSON.stringify({ ids, pieces }));
}

main().catch((error) => {
    console.error(String(error?.message ?? error).replace(/\s+/g, ' ').trim());
    process.exit(1);
});
