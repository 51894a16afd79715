"""A web bundle's tokenizer.json splits text in Transformers.js as the source's tokenizers library does, for
encoders too: a Digits pre-tokenizer (the Rust one splits every Unicode number, Transformers.js' ASCII digits
only) is written as a Split on \\p{N} by the converters' one helper (converters/web_tokenizer.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_pack import tokenizer_check
from edge_pack.errors import ConversionError
from edge_pack.runners import transformers_js

# Where the two Digits part: a number glued to a letter ("x½": Rust "x" "½", ASCII-only "x½")
TEXTS = ("Add x½ cups and 3¾ spoons, then 12 more.", "Room b²: the 1st of ½ of them.")


@pytest.fixture(scope="module")
def digits_embedder(tiny_embedder, tmp_path_factory) -> Path:
    """The tiny BERT embedder whose tokenizer also splits numbers one by one (Digits, as SmolLM2's does)."""
    from tokenizers import Tokenizer, pre_tokenizers

    if transformers_js.missing(browser=False):
        pytest.skip(f"web runtimes not installed here ({'; '.join(transformers_js.missing(browser=False))})")
    folder = tmp_path_factory.mktemp("digits-embedder") / "model"
    shutil.copytree(tiny_embedder, folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.BertPreTokenizer(),
                                                       pre_tokenizers.Digits(individual_digits=True)])
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def _expected(model: Path) -> tokenizer_check.Reference:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    ids = tuple(tuple(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in TEXTS)
    return tokenizer_check.Reference(TEXTS, ids, tuple(tuple(tokenizer.convert_ids_to_tokens(list(i))) for i in ids))


def _check(target_dir: Path, expected) -> dict:
    return tokenizer_check.check("onnx", [target_dir / "onnx" / "model.onnx"], expected)


def test_the_encoder_bundle_tokenizes_numbers_as_the_source(digits_embedder, bundle_of, tmp_path):
    expected = _expected(digits_embedder)
    # the source's file as it is splits otherwise in Transformers.js: the check can fail
    raw = tmp_path / "raw"
    (raw / "onnx").mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "special_tokens_map.json", "vocab.txt"):
        if (digits_embedder / name).is_file():
            shutil.copy2(digits_embedder / name, raw / name)
    with pytest.raises(ConversionError, match="splits text differently"):
        _check(raw, expected)
    # the encoder converter's bundle (web.py) carries the portable split, and Transformers.js agrees
    bundle = bundle_of(digits_embedder, ["web"], ["fp32"])
    web = bundle / "web"
    written = json.loads((web / "tokenizer.json").read_text())["pre_tokenizer"]
    assert [p["type"] for p in written["pretokenizers"]] == ["BertPreTokenizer", "Split"], written
    assert _check(web, expected)["same_ids"]
