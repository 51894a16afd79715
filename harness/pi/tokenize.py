"""Tokenize texts with a GGUF's own vocabulary, as an app that runs it with llama.cpp does (the measurement
harness, run.py, takes token ids from the host instead). Usage: python tokenize.py request.json, where the
request is {"model": path, "texts": [...], "result": path}; the result is {"ids": [[...]], "pieces": [[...]]},
no special tokens added. Only the vocabulary is loaded. llama.cpp aborts on some mislabelled vocabularies
(std::out_of_range from the first tokenize): that kills this process alone, and the host says so."""
from __future__ import annotations

import json
import sys

try:
    import llama_cpp
except ImportError:
    sys.exit("llama-cpp-python is not installed for this Python; install it with: "
             f"{sys.executable} -m pip install llama-cpp-python")


def main() -> None:
    with open(sys.argv[1]) as handle:
        request = json.load(handle)
    callback = llama_cpp.llama_log_callback(lambda level, text, data: None)  # keep the failure's words last
    llama_cpp.llama_log_set(callback, None)
    llm = llama_cpp.Llama(model_path=request["model"], vocab_only=True, verbose=False)
    ids, pieces = [], []
    for text in request["texts"]:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        ids.append(tokens)
        pieces.append([llm._model.token_get_text(t) for t in tokens])
    with open(request["result"], "w") as handle:
        json.dump({"ids": ids, "pieces": pieces}, handle)


if __name__ == "__main__":
    main()
