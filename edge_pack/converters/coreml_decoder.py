"""iOS decoders: a Llama-family Hugging Face folder as one Core ML ML program (iOS 18) whose KV cache is
Core ML state (`ct.StateType`, coremltools' stateful-model path for LLMs): the app makes the state once
per conversation and calls predict with a few new tokens and the causal mask; the program writes their
keys and values into the state and attends over everything cached so far. The same function prefills
(up to PREFILL_LEN tokens a call) and decodes (one token).

Inputs: input_ids int32 [1, q]; causal_mask fp16 [1, 1, q, end], where end is the cached length after this
call (the program reads the past length as end - q) and each row is 0 where the token may attend and
MASKED elsewhere. Output: logits [1, q, vocab].

Weights are fp16, or compressed by the ios target's recipes (int8 per channel, int4 per block of 32,
palettized). Compute is fp16 except the RMSNorm statistics (mean of squares and its rsqrt): a residual
stream of a few hundred squares past fp16's range, so those few ops stay fp32."""
from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import contracts
from ..cache import cached
from ..contracts import BuildOptions, Built
from ..decoder_shape import DecoderShape, build_key, read_shape, unfit_decoder
from ..errors import ConversionError, NotApplicable, UserError
from ..files import copy_into, safe_stem
from ..quiet import captured
from ..source import SourceModel
from .ios import fits_fp16, select_weights

WHO = "edge-pack's Core ML decoder"
PRECISIONS = ("fp16", "int8", "int8-block32", "int4", "palettize6", "palettize4")  # recipes: targets/ios.toml
PREFILL_LEN = 32
KV_LEN = 512
MASKED = -1e4  # fp16-safe: scores never come near it, exp() of it is 0
RECIPE = 1


class StatefulDecoder(nn.Module):
    """The Hugging Face Llama/Qwen2 decoder rewritten for a traced Core ML program: the KV cache in two
    buffers (k_cache, v_cache: layers × 1 × kv heads × kv_len × head dim) updated in place, rotary tables
    as constants sliced at the past length."""

    def __init__(self, hf_model, shape: DecoderShape, kv_len: int):
        super().__init__()
        self.shape = shape
        base = hf_model.model
        self.embed = base.embed_tokens
        self.layers = base.layers
        self.norm = base.norm
        self.lm_head = hf_model.lm_head
        cache = (shape.layers, 1, shape.kv_heads, kv_len, shape.head_dim)
        self.register_buffer("k_cache", torch.zeros(cache, dtype=torch.float16))
        self.register_buffer("v_cache", torch.zeros(cache, dtype=torch.float16))
        inv = 1.0 / (shape.rope_theta ** (torch.arange(0, shape.head_dim, 2, dtype=torch.float64) / shape.head_dim))
        angles = torch.outer(torch.arange(kv_len, dtype=torch.float64), inv)
        angles = torch.cat([angles, angles], -1)
        self.register_buffer("cos", angles.cos().float())
        self.register_buffer("sin", angles.sin().float())

    @staticmethod
    def _rms(x, norm):
        variance = (x * x).mean(-1, keepdim=True)
        return x * torch.rsqrt(variance + norm.variance_epsilon) * norm.weight

    @staticmethod
    def _rotate(x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def forward(self, input_ids, causal_mask):
        s = self.shape
        q_len, end = input_ids.shape[1], causal_mask.shape[-1]
        past = end - q_len
        x = self.embed(input_ids)
        cos, sin = self.cos[past:end], self.sin[past:end]
        groups = s.heads // s.kv_heads
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = self._rms(x, layer.input_layernorm)
            q = attn.q_proj(h).view(1, q_len, s.heads, s.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(1, q_len, s.kv_heads, s.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(1, q_len, s.kv_heads, s.head_dim).transpose(1, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            self.k_cache[i, :, :, past:end] = k.to(self.k_cache.dtype)
            self.v_cache[i, :, :, past:end] = v.to(self.v_cache.dtype)
            keys = self.k_cache[i, :, :, :end].to(q.dtype).repeat_interleave(groups, dim=1)
            values = self.v_cache[i, :, :, :end].to(q.dtype).repeat_interleave(groups, dim=1)
            out = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=causal_mask)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(1, q_len, s.heads * s.head_dim))
            h = self._rms(x, layer.post_attention_layernorm)
            x = x + layer.mlp.down_proj(torch.nn.functional.silu(layer.mlp.gate_proj(h)) * layer.mlp.up_proj(h))
        return self.lm_head(self._rms(x, self.norm))


def causal_mask(q_len: int, past: int, dtype=np.float16) -> np.ndarray:
    """The mask for q_len new tokens after `past` cached ones: token j of the call sees positions ≤ past + j."""
    end = past + q_len
    allowed = np.arange(end)[None, :] <= (past + np.arange(q_len))[:, None]
    return np.where(allowed, 0.0, MASKED).astype(dtype)[None, None]


def keeps_fp32(op) -> bool:
    """The RMSNorm statistics: a square that feeds a mean, the mean, and the add/rsqrt after it."""
    if op.op_type == "reduce_mean":
        return True
    if op.op_type in ("mul", "pow", "square") and any(c.op_type == "reduce_mean" for c in op.outputs[0].child_ops):
        return True
    return op.op_type in ("add", "rsqrt", "sqrt") and any(_statistic(v) for v in op.get_flattened_inputs())


def _statistic(var) -> bool:
    producer = var.op
    if producer is None:
        return False
    return producer.op_type == "reduce_mean" or (
        producer.op_type in ("add", "rsqrt", "sqrt") and any(_statistic(v) for v in producer.get_flattened_inputs()))


def _fp16_op(op) -> bool:
    return fits_fp16(op) and not keeps_fp32(op)


def convert(model_dir: Path, precision: str, prefill_len: int = PREFILL_LEN, kv_len: int = KV_LEN) -> Path:
    """The .mlpackage for one precision (cached by the folder's content and the recipe)."""
    key = {**build_key(model_dir, WHO, "ios", precision, PRECISIONS, prefill_len, kv_len), "recipe": RECIPE,
           "coremltools": importlib.metadata.version("coremltools")}

    def build(work: Path) -> None:
        model = _compress(fp16_program(model_dir, prefill_len, kv_len), precision)
        model.save(str(work / "model.mlpackage"))

    return cached("coreml-decoder", key, build) / "model.mlpackage"


def fp16_program(model_dir: Path, prefill_len: int, kv_len: int):
    """The uncompressed fp16 ML program (an MLModel object, not loaded: Linux cannot compile it)."""
    import coremltools as ct
    from ..decoder_check import load_torch

    shape = read_shape(model_dir, WHO)
    module = StatefulDecoder(load_torch(model_dir), shape, kv_len).eval()
    ids = torch.zeros((1, 2), dtype=torch.int32)
    mask = torch.from_numpy(causal_mask(2, 3, np.float32))
    try:
        with captured(), torch.no_grad():
            traced = torch.jit.trace(module, (ids, mask))
            cache = ct.TensorType(shape=module.k_cache.shape, dtype=np.float16)
            query = ct.RangeDim(lower_bound=1, upper_bound=prefill_len, default=1)
            seen = ct.RangeDim(lower_bound=1, upper_bound=kv_len, default=1)
            return ct.convert(
                traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18,
                inputs=[ct.TensorType(name="input_ids", shape=(1, query), dtype=np.int32),
                        ct.TensorType(name="causal_mask", shape=(1, 1, query, seen), dtype=np.float16)],
                outputs=[ct.TensorType(name="logits", dtype=np.float16)],
                states=[ct.StateType(wrapped_type=cache, name="k_cache"),
                        ct.StateType(wrapped_type=ct.TensorType(shape=module.v_cache.shape, dtype=np.float16),
                                     name="v_cache")],
                compute_precision=ct.transform.FP16ComputePrecision(op_selector=_fp16_op),
                skip_model_load=True)
    except Exception as exc:
        words = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConversionError(f"coremltools could not convert {model_dir}: {words}") from exc


def _compress(model, precision: str):
    """The ios target's recipe for `precision` (targets/ios.toml) applied to the linear weights and, where
    the recipe says so, the embedding table."""
    if precision == "fp16":
        return model
    import coremltools.optimize.coreml as cto

    from ..targets import get_target
    from .ios import WEIGHT_THRESHOLD

    settings = get_target("ios").precision(precision).settings
    recipe = dict(settings["compress"])
    method = recipe.pop("method")
    chosen = select_weights(model, bool(settings.get("quantize_embeddings")))
    if method == "linear":
        config, compress = cto.OpLinearQuantizerConfig(**recipe, weight_threshold=WEIGHT_THRESHOLD), \
            cto.linear_quantize_weights
    else:
        config, compress = cto.OpPalettizerConfig(**recipe, weight_threshold=WEIGHT_THRESHOLD), cto.palettize_weights
    with captured():
        return compress(model, config=cto.OptimizationConfig(op_name_configs={name: config for name in chosen}))


def package_size(package: Path) -> int:
    return sum(p.stat().st_size for p in Path(package).rglob("*") if p.is_file())




STATE_IOS = 18  # Core ML state (ct.StateType), which holds the KV cache, is an iOS 18 feature


def check_min_ios(min_ios: int | None) -> None:
    """A decoder runs on iOS 18 and newer: unless told otherwise, that is its deployment target (the ios
    target's default, 16, is the encoders'); an older one asked for is refused."""
    if min_ios is not None and min_ios < STATE_IOS:
        raise UserError(f"a decoder's KV cache is Core ML state, which needs iOS {STATE_IOS} or newer, but the "
                        f"deployment target is iOS {min_ios}; pass --min-ios {STATE_IOS}")


class DecoderConverter(contracts.Converter):
    """The ios converter's half for text-generation sources (ios.Converter hands them here): the stateful
    fp16 program, compressed by the ios target's recipe of each precision, copied from the cache."""

    @classmethod
    def unsupported(cls, source: SourceModel) -> str | None:
        return unfit_decoder(source, WHO)

    def __init__(self, source: SourceModel, target, folder: Path, options: BuildOptions):
        super().__init__(source, target, folder, options)
        check_min_ios(options.target_options.get("min_ios"))
        self.meta = {"conversion": {"converter": WHO, "state": ["k_cache", "v_cache"], "min_ios": STATE_IOS,
                                    "prefill_len": PREFILL_LEN, "kv_len": KV_LEN}}

    def support_files(self) -> list[Path]:
        return copy_into(self.source.support_files, self.dir)

    def convert(self, precision: str) -> Built:
        if precision not in PRECISIONS:
            made = ", ".join(p for p in PRECISIONS if p in self.target.precisions)
            raise NotApplicable(f"the Core ML decoder is an fp16 program (fp16 is its reference), not {precision}; "
                                f"a decoder is built at {made}")
        out = self.dir / self.target.precision(precision).file.format(name=safe_stem(self.source.name, "_"))
        shutil.copytree(convert(self.source.path, precision), out)
        recipe = {"tool": f"coremltools {importlib.metadata.version('coremltools')}", "min_ios": STATE_IOS,
                  "compute": "fp16 (RMSNorm statistics fp32)", "state": "KV cache (ct.StateType)",
                  "prefill_len": PREFILL_LEN, "kv_len": KV_LEN,
                  **({"compress": dict(self.target.precision(precision).settings["compress"])}
                     if precision != "fp16" else {})}
        return Built(sorted(p for p in out.rglob("*") if p.is_file()), recipe)
