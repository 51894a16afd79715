"""The shape of a Llama-family decoder read from its Hugging Face config.json: what the phone converters
(LiteRT's generative builders, the Core ML stateful program) need to rebuild it with a KV cache. Anything
these converters would silently get wrong (a rope scaling, sliding windows, another architecture) is
refused here with what to do."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .hashing import file_sha256

# Architecture → what differs from plain Llama. Qwen2 adds biases to q/k/v; SmolLM/SmolLM2 and TinyLlama
# are LlamaForCausalLM.
ARCHITECTURES = {"LlamaForCausalLM": {"qkv_bias": False}, "Qwen2ForCausalLM": {"qkv_bias": True}}


@dataclass(frozen=True)
class DecoderShape:
    architecture: str
    vocab_size: int
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    rope_theta: float
    rms_eps: float
    tied_embeddings: bool
    qkv_bias: bool
    max_positions: int
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]


def read_shape(model_dir: Path, who: str) -> DecoderShape:
    """The decoder in model_dir; `who` names the converter in errors (e.g. "litert-torch's generative
    builders")."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the model's config.json ({exc}); pass a Hugging Face model folder")
    architecture = (config.get("architectures") or ["(none in config.json)"])[0]
    if architecture not in ARCHITECTURES:
        raise UserError(f"{architecture} is not supported by {who}: {', '.join(ARCHITECTURES)}")
    if config.get("rope_scaling"):
        raise UserError(f"{path}: rope_scaling {config['rope_scaling']} is not supported by {who} here "
                        "(plain rotary embeddings only)")
    if config.get("use_sliding_window"):
        raise UserError(f"{path}: sliding-window attention is not supported by {who} here")
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    eos = config.get("eos_token_id")
    return DecoderShape(
        architecture=architecture, vocab_size=int(config["vocab_size"]), layers=int(config["num_hidden_layers"]),
        hidden=hidden, heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads), ffn=int(config["intermediate_size"]),
        rope_theta=float(config.get("rope_theta", 10000.0)), rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        tied_embeddings=bool(config.get("tie_word_embeddings", True)),
        qkv_bias=ARCHITECTURES[architecture]["qkv_bias"] or bool(config.get("attention_bias")),
        max_positions=int(config.get("max_position_embeddings", 2048)),
        bos_token_id=config.get("bos_token_id"),
        eos_token_ids=tuple(eos if isinstance(eos, list) else [] if eos is None else [eos]))


def build_key(model_dir: Path, who: str, target: str, precision: str, precisions, prefill_len: int,
              kv_len: int) -> dict:
    """What the phone converters (LiteRT, Core ML) check before converting, and the part of their cache key
    they share: a precision they make, cache lengths the model allows, and the folder's config and weights
    by content. `target` names the target in errors ("android", "ios")."""
    if precision not in precisions:
        raise UserError(f"precision {precision} is not one of the {target} decoder precisions: {', '.join(precisions)}")
    shape = read_shape(model_dir, who)
    if not 0 < prefill_len <= kv_len <= shape.max_positions:
        raise UserError(f"prefill length {prefill_len} and KV cache length {kv_len} must satisfy "
                        f"0 < prefill ≤ cache ≤ {shape.max_positions} (the model's max_position_embeddings)")
    folder = Path(model_dir)
    digest = ",".join(f"{p.name}:{file_sha256(p)}" for p in sorted(folder.iterdir())
                      if p.is_file() and p.suffix in (".json", ".safetensors"))
    return {"precision": precision, "prefill": prefill_len, "kv": kv_len, "model": digest}


def unfit_decoder(source, who: str) -> str | None:
    """Why a phone decoder converter (`who`) cannot take this text-generation source, or None."""
    if source.kind != "hf":
        return f"{who} take a Hugging Face decoder folder (config.json and safetensors), not a {source.kind} source"
    try:
        read_shape(source.path, who)
    except UserError as exc:
        return str(exc)
    return None
