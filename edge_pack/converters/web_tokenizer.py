"""The support files of a web bundle (config, tokenizer, preprocessor), copied so that Transformers.js
reads the tokenizer as the source's tokenizers library does. Shared by the encoder and decoder converters."""
from __future__ import annotations

import json
from pathlib import Path

from ..files import copy_into
from ..source import support_files_in

TOKENIZER = "tokenizer.json"


def copy_support_files(origin: Path, folder: Path) -> list[Path]:
    """Copy the support files found in `origin` to `folder`; the tokenizer is made portable. Returns them."""
    copies = copy_into(support_files_in(origin), folder)
    for path in copies:
        if path.name == TOKENIZER:
            portable_digits(path)
    return copies


def portable_digits(tokenizer_json: Path) -> bool:
    """Make a Digits pre-tokenizer split the same in Transformers.js as in the tokenizers library: the Rust
    one splits on every Unicode number (char::is_numeric: Nd, Nl, No, so "½" too), Transformers.js' on
    ASCII \\d only (its Digits class), so SmolLM2's " ½" became other ids in the page. The same split as a
    Split pre-tokenizer on the regex \\p{N}, which both read alike. True when the file was rewritten."""
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))

    def rewrite(node):
        if isinstance(node, dict) and node.get("type") == "Digits":
            return {"type": "Split", "pattern": {"Regex": r"\p{N}" if node.get("individual_digits") else r"\p{N}+"},
                    "behavior": "Isolated", "invert": False}, True
        if isinstance(node, dict) and node.get("type") == "Sequence":
            parts = [rewrite(n) for n in node["pretokenizers"]]
            return {**node, "pretokenizers": [n for n, _ in parts]}, any(c for _, c in parts)
        return node, False

    data["pre_tokenizer"], changed = rewrite(data.get("pre_tokenizer"))
    if changed:
        tokenizer_json.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return changed
