"""Does the artifact tokenize as its source does? Validation feeds every runtime the same token ids, so an
artifact that carries its own tokenizer — a GGUF's vocabulary read by llama.cpp, a web bundle's
tokenizer.json read by Transformers.js — could pass on ids and still split the user's text differently,
or not at all (llama.cpp aborts on a vocabulary its converter mislabelled). Here real text goes through the
artifact's own tokenizer, in a child process (an abort is a failed artifact, not a dead build), and the ids
are compared with the source tokenizer's; the first differing token is named."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConversionError
from .hashing import file_sha256
from .resources import data_file, harness_dir

# Beyond the built-in English sentences: accents, other scripts, emoji, digits — where tokenizers part ways.
EXTRA_TEXTS = ("Crème brûlée in São Paulo, naïve café in Zürich: 1234567 ÅÆØ ß.",
               "日本語のテキストと中文的句子。Привет, мир!",
               "Emoji too 🙂🚀👍🏽 and symbols ½ € © ™.")
WEB_TOKENIZER = "tokenizer.json"  # what Transformers.js reads; its tokenizer_config.json sits beside it


@dataclass(frozen=True)
class Reference:
    """Texts and the source tokenizer's ids and pieces for each (no special tokens: the text's own split)."""
    texts: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]
    pieces: tuple[tuple[str, ...], ...]


def reference(tokenizer) -> Reference | None:
    """The source tokenizer's answers on the check texts; None for a model without a tokenizer."""
    if tokenizer is None:
        return None
    texts = tuple(line for line in data_file("sentences.txt").read_text().splitlines() if line.strip()) + EXTRA_TEXTS
    ids = tuple(tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
    return Reference(texts, ids, tuple(tuple(tokenizer.convert_ids_to_tokens(list(i))) for i in ids))


def check(target_format: str, files: list[Path], expected: Reference | None, timeout_s: float | None = None) -> dict | None:
    """Tokenize the texts with the artifact's own tokenizer and compare; raises ConversionError naming the
    first differing token, or the tokenizer's crash. None when the artifact carries no tokenizer."""
    if expected is None:
        return None
    if target_format == "gguf":
        return _compare(expected, _gguf(files[0], expected.texts, timeout_s), "the GGUF's own tokenizer (llama.cpp)")
    tokenizer = files[0].parent.parent / WEB_TOKENIZER  # <target>/onnx/model_<dtype>.onnx
    if target_format == "onnx" and tokenizer.is_file():
        return _web(tokenizer, expected, timeout_s)
    return None


def first_difference(expected: Reference, found_ids: list[list[int]], found_pieces: list[list[str]]) -> str | None:
    """'"text…" at token 3: source 1234 'Ġfox', artifact 57 'fox'', or None when every text agrees."""
    for text, ids, pieces, got, got_pieces in zip(expected.texts, expected.ids, expected.pieces, found_ids,
                                                  found_pieces):
        got = list(got)
        if list(ids) == got:
            continue
        at = next((i for i, (a, b) in enumerate(zip(ids, got)) if a != b), min(len(ids), len(got)))

        def token(which: list, names: list, index: int) -> str:
            return f"{which[index]} {names[index]!r}" if index < len(which) else "(end of text)"

        shown = text if len(text) <= 60 else text[:59] + "…"
        return (f"{shown!r} at token {at}: source {token(list(ids), list(pieces), at)}, "
                f"artifact {token(got, list(got_pieces), at)}")
    return None


def _compare(expected: Reference, found: dict, what: str) -> dict:
    difference = first_difference(expected, found["ids"], found["pieces"])
    if difference:
        raise ConversionError(f"validation failed: {what} splits text differently from the source's tokenizer: "
                              f"{difference}")
    return {"texts": len(expected.texts), "tokens": sum(map(len, expected.ids)), "tokenizer": what, "same_ids": True}


def _gguf(model: Path, texts: tuple[str, ...], timeout_s: float | None) -> dict:
    return _child([sys.executable, str(harness_dir() / "pi" / "tokenize.py")], {"model": str(model), "texts": texts},
                  timeout_s, "the GGUF's own tokenizer (llama.cpp)")


_WEB_CHECKED: dict[str, dict] = {}  # one tokenizer.json serves every precision of a bundle: checked once


def _web(tokenizer: Path, expected: Reference, timeout_s: float | None) -> dict:
    from .runners import transformers_js

    what = "the bundle's tokenizer.json (Transformers.js)"
    missing = transformers_js.missing(browser=False)
    if missing:  # the build's own runtime (onnxruntime) does not need Node: say what was not checked
        return {"tokenizer": what, "checked": False, "why": f"needs {'; '.join(missing)}"}
    key = json.dumps([*(file_sha256(p) for p in sorted(tokenizer.parent.glob("*.json"))), expected.ids])
    if key not in _WEB_CHECKED:
        request = {"packages": str(transformers_js.packages_dir()), "model_root": str(tokenizer.parent.parent) + "/",
                   "model_id": tokenizer.parent.name, "texts": expected.texts}
        found = _child([transformers_js.node(), str(transformers_js.web_dir() / "tokenize.mjs")], request, timeout_s,
                       what)
        _WEB_CHECKED[key] = found
    return _compare(expected, _WEB_CHECKED[key], what)


def _child(argv: list[str], request: dict, timeout_s: float | None, what: str) -> dict:
    """Run a tokenizer harness in a child process: {"ids": [[...]], "pieces": [[...]]} per text."""
    from .runners.local import _failure

    with tempfile.TemporaryDirectory(prefix="edge-pack-tokenize-") as tmp:
        result = Path(tmp) / "result.json"
        (Path(tmp) / "request.json").write_text(json.dumps({**request, "result": str(result)}))
        try:
            proc = subprocess.run([*argv, str(Path(tmp) / "request.json")], capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"validation failed: {what} timed out after {timeout_s:g} s on text") from None
        if proc.returncode != 0 or not result.is_file():
            # a C++ abort's last line is only its what(): the exception's type is the line before
            thrown = re.search(r"throwing an instance of '([^']+)'", proc.stderr or "")
            raise ConversionError(f"validation failed: {what} failed on text: {_failure(proc)}"
                                  + (f" ({thrown[1]})" if thrown else ""))
        try:
            return json.loads(result.read_text())
        except ValueError as exc:
            raise ConversionError(f"validation failed: {what} wrote an unreadable result: {exc}") from None
