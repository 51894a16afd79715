"""Android decoders: a Llama-family Hugging Face folder rebuilt with litert-torch's generative layers (the
ones its SmolLM, Qwen, Llama and TinyLlama builders use) and converted to one .tflite with a `prefill_<n>`
and a `decode` signature over an external KV cache, quantized with litert-torch's own recipes; and the
`.litertlm` bundle (model + tokenizer + start/stop tokens) that LiteRT-LM loads on a phone.

Prefill returns logits too (litert-torch leaves them out by default): the runner needs the first token's
logits and, for choice rows, the log-likelihood of every continuation token."""
from __future__ import annotations

import importlib.metadata
import shutil
import sys
import types
from pathlib import Path

from .. import contracts
from ..cache import cached
from ..contracts import BuildOptions, Built
from ..decoder_shape import DecoderShape, build_key, read_shape, unfit_decoder
from ..errors import ConversionError, NotApplicable, UserError
from ..files import copy_into
from ..quiet import captured
from ..source import SourceModel

WHO = "litert-torch's generative builders"
# edge-pack's precision → litert-torch's quantization recipe (converter.QuantizationName).
RECIPES = {"fp32": "none", "fp16": "fp16", "dynamic-int8": "dynamic_int8", "weight-only-int8": "weight_only_int8",
           "int4": "dynamic_int4_block32"}
PREFILL_LEN = 32  # tokens one prefill call takes; longer prompts are prefilled in chunks
KV_LEN = 512  # positions the KV cache holds (prompt + generated tokens)
RECIPE = 1  # bump when the conversion changes, so cached files are redone


def _generative_api() -> None:
    """litert-torch's generative layers import TensorFlow's flatbuffer schema for LoRA only (unused here);
    without TensorFlow installed, ai-edge-litert's copy of the same generated schema stands in while they
    import, and the stand-in is gone afterwards, so nothing else mistakes it for TensorFlow."""
    try:
        import tensorflow.lite.python.schema_py_generated  # noqa: F401
    except ImportError:
        from ai_edge_litert import schema_py_generated
        # Everything else lora imports comes first, so no other import sees the stand-in.
        import litert_torch.generative.layers.model_config  # noqa: F401

        names = ["tensorflow", "tensorflow.lite", "tensorflow.lite.python"]
        stand_ins = {name: types.ModuleType(name) for name in names}
        stand_ins["tensorflow.lite.python"].schema_py_generated = schema_py_generated
        sys.modules.update(stand_ins)
        sys.modules["tensorflow.lite.python.schema_py_generated"] = schema_py_generated
        try:
            import litert_torch.generative.layers.lora  # noqa: F401
        finally:
            for name in names + ["tensorflow.lite.python.schema_py_generated"]:
                sys.modules.pop(name, None)


def model_config(shape: DecoderShape, kv_len: int):
    import litert_torch.generative.layers.model_config as cfg

    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=shape.rms_eps)
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(num_heads=shape.heads, head_dim=shape.head_dim,
                                        num_query_groups=shape.kv_heads, rotary_base=shape.rope_theta,
                                        rotary_percentage=1.0, qkv_use_bias=shape.qkv_bias),
        ff_config=cfg.FeedForwardConfig(type=cfg.FeedForwardType.GATED,
                                        activation=cfg.ActivationConfig(cfg.ActivationType.SILU),
                                        intermediate_size=shape.ffn),
        pre_attention_norm_config=norm, post_attention_norm_config=norm)
    return cfg.ModelConfig(vocab_size=shape.vocab_size, num_layers=shape.layers, max_seq_len=kv_len,
                           embedding_dim=shape.hidden, block_configs=block, final_norm_config=norm,
                           lm_head_share_weight_with_embedding=shape.tied_embeddings)


def build_module(model_dir: Path, kv_len: int = KV_LEN):
    """The decoder as litert-torch's DecoderOnlyModel with the folder's safetensors loaded (its loader
    checks every tensor is used)."""
    _generative_api()
    from litert_torch.generative.utilities import model_builder

    shape = read_shape(model_dir, WHO)
    names = model_builder.TENSOR_NAMES if shape.tied_embeddings else model_builder.TENSOR_NAMES_WITH_SEPARATE_LM_HEAD
    if not list(Path(model_dir).glob("*.safetensors")):
        raise UserError(f"{model_dir}: no *.safetensors weights; {WHO} load safetensors "
                        "(save the model with save_pretrained(safe_serialization=True))")
    with captured():
        return model_builder.build_decoder_only_model(str(model_dir), model_config(shape, kv_len), names,
                                                      mask_cache_size=kv_len)


def convert(model_dir: Path, precision: str, prefill_len: int = PREFILL_LEN, kv_len: int = KV_LEN) -> Path:
    """The .tflite for one precision (cached by the folder's content and the recipe)."""
    key = {**build_key(model_dir, WHO, "android", precision, RECIPES, prefill_len, kv_len), "recipe": RECIPE,
           "litert-torch": importlib.metadata.version("litert-torch")}

    def build(work: Path) -> None:
        _generative_api()
        from litert_torch.generative.utilities import converter, export_config

        module = build_module(model_dir, kv_len)
        try:
            with captured():
                written = converter.convert_to_tflite(
                    module, str(work), "model", prefill_seq_len=prefill_len, kv_cache_max_len=kv_len,
                    quantize=RECIPES[precision], config=module.config,
                    export_config=export_config.ExportConfig(output_logits_on_prefill=True))
        except Exception as exc:  # the converter's own words, shortened
            words = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConversionError(f"litert-torch could not convert {model_dir} at {precision}: {words}") from exc
        Path(written).rename(work / "model.tflite")

    return cached("litert-decoder", key, build) / "model.tflite"


def litertlm_bundle(tflite: Path, model_dir: Path, out: Path, kv_len: int = KV_LEN) -> Path:
    """The .litertlm file LiteRT-LM loads on a phone: the model, the folder's tokenizer.json, and its
    start/stop tokens."""
    _generative_api()
    from litert_torch.generative.utilities import litertlm_builder


    if not litertlm_builder.is_litertlm_builder_available():
        raise UserError("the .litertlm bundle needs litert-lm-builder: pip install litert-lm-builder")
    tokenizer = Path(model_dir) / "tokenizer.json"
    if not tokenizer.is_file():
        raise UserError(f"{model_dir}: no tokenizer.json to put in the .litertlm bundle")
    shape = read_shape(model_dir, WHO)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        with captured():
            litertlm_builder.build_litertlm(
                tflite_model_path=str(tflite), workdir=str(work), output_path=str(work), context_length=kv_len,
                hf_tokenizer_model_path=str(tokenizer), start_token_id=shape.bos_token_id,
                stop_token_ids=list(shape.eos_token_ids) or None)
        built = sorted(work.glob("*.litertlm"))
        if not built:
            raise ConversionError("litert-lm-builder wrote no .litertlm file")
        built[0].replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


class DecoderConverter(contracts.Converter):
    """The android converter's half for text-generation sources (android.Converter hands them here): each
    precision is litert-torch's own recipe of that name, copied from the cache to the target's file."""

    @classmethod
    def unsupported(cls, source: SourceModel) -> str | None:
        return unfit_decoder(source, WHO)

    def __init__(self, source: SourceModel, target, folder: Path, options: BuildOptions):
        super().__init__(source, target, folder, options)
        self.meta = {"conversion": {"converter": f"litert-torch generative ({WHO})", "signatures":
                                    [f"prefill_{PREFILL_LEN}", "decode"], "kv_len": KV_LEN}}
        self.built: dict[str, Path] = {}  # precision -> its .tflite, bundled for LiteRT-LM by finish()

    def support_files(self) -> list[Path]:
        return copy_into(self.source.support_files, self.dir)

    def convert(self, precision: str) -> Built:
        if precision not in RECIPES:
            made = ", ".join(p for p in RECIPES if p in self.target.precisions)
            raise NotApplicable(f"litert-torch has no decoder recipe for {precision}; a decoder is built at {made}")
        out = self.dir / self.target.precision(precision).file
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(convert(self.source.path, precision), out)
        self.built[precision] = out
        return Built([out], {"file": out.name, "method": "litert_torch.generative converter.convert_to_tflite",
                             "quantize": RECIPES[precision], "prefill_len": PREFILL_LEN, "kv_len": KV_LEN,
                             "litert-torch": importlib.metadata.version("litert-torch")})

    def finish(self) -> list[Path]:
        """Each precision's .litertlm beside its .tflite: the same model with the tokenizer and start/stop
        tokens inside, the one file LiteRT-LM loads on a phone. A support file, not the precision's size
        (it holds the .tflite again); the manifest's `litertlm` table says which model each one holds."""
        bundles, made = [], {}
        for precision, tflite in self.built.items():
            out = tflite.with_suffix(".litertlm")
            try:
                litertlm_bundle(tflite, self.source.path, out)
            except UserError as exc:  # no builder or no tokenizer.json: the .tflite still ships
                self.meta["litertlm"] = {"not written": str(exc)}
                return bundles
            bundles.append(out)
            made[out.name] = {"precision": precision, "holds": f"{tflite.name} + tokenizer.json + start/stop tokens",
                              "for": "LiteRT-LM (a copy of the .tflite with its tokenizer; not counted as the model's size)"}
        if made:
            self.meta["litertlm"] = made
        return bundles
