"""Web decoders: a causal LM exported with its KV cache in the layout Transformers.js' text generation
loads (optimum's text-generation-with-past export: onnx/model*.onnx taking past_key_values.* and giving
present.*, beside config.json, generation_config.json and the tokenizer files), at every web precision.

Where the weights go, per precision:
- fp32: the export as it is. fp16: every float weight halved; inputs, outputs and the cache stay float32
  (keep_io_types), which is what Transformers.js feeds when the config names no other cache type.
- q8: MatMulNBitsQuantizer's 8-bit weights (targets/web.toml: blocks of 16 with a zero point each, scales
  stored as float16) on every MatMul, the lm_head included, stored as its bytes, scales and zero points and
  dequantized by plain ops onnxruntime folds once at load, so the matmuls run in float32 (decoder_matmul);
  a tied embedding looks up the columns of the lm_head's dequantized table, one float32 table for both
  (decoder_table = "dequantized"; an untied one stays float16). On SmolLM2-135M (web_llm.py --q8-recipes): the
  MatMulNBits node itself has no 8-bit kernel in onnxruntime-web's WASM or at its default accuracy on x64,
  so it dequantizes every weight at every call (0.15-0.21x the decode rate of quantize_dynamic's MatMulInteger
  file in Chromium and Node); dequantized at load it is 0.9-2.4x, with the same tokens, at the cost of float32
  weights in memory; accuracy_level=4 (int8 activations) is fast in Node but keeps one prompt fewer there and
  stays slow in WASM; with the 8-bit table, asymmetric blocks of 16 keep all 6 prompts' 16 greedy tokens
  (161.4 MB) where symmetric ones keep 4 and symmetric blocks of 32 3; quantize_dynamic quantizes the
  activations and kept 1.
- q4: the same with 4 bits, and the embedding table stored the same way (looked up with plain ops: the
  browser has no GatherBlockQuantized kernel). When the model
  ties its embedding to its lm_head (SmolLM2 does), both read ONE quantized table: the file holds it once,
  where a plain quantizer keeps the float table for the lookup and a quantized copy for the lm_head.
- q4f16: the fp16 graph, then q4 (scales and activations float16).
"""
from __future__ import annotations

import copy
import importlib.metadata
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import contracts
from ..cache import cached
from ..contracts import BuildOptions, Built
from ..errors import ConversionError, NotApplicable, UserError
from ..quiet import captured
from ..source import SourceModel
from ..targets import Target
from .web import QUANTIZE_CONFIG, _load, _save  # the web target's ONNX files, read and written one way
from .web_tokenizer import copy_support_files

RECIPE = 1  # bump when the export changes, so cached exports are redone
MODEL = "model.onnx"
EXPORT_TASK = "text-generation-with-past"
BLOCK = 32
BITS = {"q8": 8, "q4": 4, "q4f16": 4}


def decoder_onnx(source: SourceModel) -> Path:
    """Folder with the fp32 KV-cache export (model.onnx) and the config, generation config and tokenizer
    files the exporter wrote beside it; exported once per source content."""
    versions = {n: _version(n) for n in ("torch", "transformers", "optimum-onnx", "onnx")}
    key = {"source": source.sha256, "task": EXPORT_TASK, "recipe": RECIPE, **versions}
    return cached("onnx-decoder", key, lambda work: _export(source, work))


def _export(source: SourceModel, work: Path) -> None:
    from optimum.exporters.onnx import main_export

    try:
        with captured():
            main_export(str(source.path), output=work, task=EXPORT_TASK, library_name="transformers",
                        do_validation=False, trust_remote_code=source.trust_remote_code, local_files_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"exporting {source.spec} with its KV cache ({EXPORT_TASK}) failed: {first[:300]}") from None
    if not (work / MODEL).is_file():
        raise ConversionError(f"the exporter wrote no {MODEL}")


class DecoderConverter(contracts.Converter):
    """The web converter's half for text-generation sources (web.Converter hands them here)."""

    def __init__(self, source: SourceModel, target: Target, folder: Path, options: BuildOptions):
        super().__init__(source, target, folder, options)
        self.export_dir = decoder_onnx(source)
        self.fp32 = self.export_dir / MODEL
        self.recipes: dict[str, dict] = {}
        self._fp16 = None
        self.tied = False
        self.meta = {"decoder": describe_cache(onnx.load(str(self.fp32), load_external_data=False))}

    def support_files(self) -> list[Path]:
        return copy_support_files(self.export_dir, self.dir)

    def convert(self, precision: str) -> Built:
        if precision not in ("fp32", "fp16", *BITS):  # a sweep skips it, as android's and ios's decoders do
            raise NotApplicable(f"a decoder is built at fp32, fp16, {', '.join(BITS)} here, not {precision}")
        out = self.dir / self.target.precision(precision).file
        out.parent.mkdir(parents=True, exist_ok=True)
        with captured():
            if precision == "fp32":
                _save(self._fp32_graph(), out)
                recipe = {"method": "export", "exporter": f"optimum-onnx ({EXPORT_TASK})"}
            elif precision == "fp16":
                _save(self._fp16_graph(), out)
                recipe = {"method": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}
            else:
                graph = copy.deepcopy(self._fp16_graph()) if precision == "q4f16" else _load(self.fp32)
                settings = self.target.precision(precision).settings
                model, recipe = quantize_decoder(graph, BITS[precision], settings.get("decoder_table"),
                                                 settings.get("decoder_matmul", "nbits"),
                                                 symmetric=settings.get("decoder_symmetric", True),
                                                 block=settings.get("decoder_block", BLOCK),
                                                 scales=settings.get("decoder_scales", "float32"),
                                                 dequantized_max_mb=settings.get("decoder_dequantized_max_mb"))
                if "dequantized_max_mb" in recipe:
                    self.notes.append(
                        f"{precision}: the layers' weights would take {recipe['float32_layers_mb']:.0f} MB as float32 "
                        f"once loaded (over decoder_dequantized_max_mb = {recipe['dequantized_max_mb']:g}), so they "
                        "stay 8-bit MatMulNBits (the table float16): it fits the page's memory but decodes ~5x "
                        "slower in onnxruntime-web")
                _save(model, out)
        self.recipes[precision] = {"file": out.relative_to(self.dir).as_posix(), **recipe}
        data = out.with_name(out.name + "_data")
        return Built([out, data] if data.is_file() else [out], self.recipes[precision])

    def finish(self) -> list[Path]:
        import json

        path = self.dir / QUANTIZE_CONFIG
        tools = {name: _version(name) for name in ("onnxruntime", "onnx", "optimum-onnx")}
        path.write_text(json.dumps({"tools": tools, "precisions": self.recipes}, indent=2) + "\n")
        return [path]

    def _fp16_graph(self):
        from onnxruntime.transformers.float16 import convert_float_to_float16

        if self._fp16 is None:
            self._fp16 = convert_float_to_float16(self._fp32_graph(), keep_io_types=True)
        return self._fp16

    def _fp32_graph(self):
        """The export with a tied lm_head reading the embedding table (transposed) instead of its own copy:
        the exporter writes the table twice (113 MB more for SmolLM2-135M at fp32)."""
        model = _load(self.fp32)
        self.tied = share_tied_table(model)
        return model


# ------------------------------------------------------------------------------------------ the graph

def describe_cache(model) -> dict:
    """The cache layout of an exported decoder, for the manifest: layers, heads, head size, cache dtype."""
    past = [i for i in model.graph.input if i.name.startswith("past_key_values.")]
    if not past:
        return {}
    dims = [d.dim_value or d.dim_param for d in past[0].type.tensor_type.shape.dim]
    return {"layers": len(past) // 2, "kv_heads": dims[1], "head_size": dims[3],
            "cache_dtype": onnx.helper.tensor_dtype_to_np_dtype(past[0].type.tensor_type.elem_type).name}


def _initializers(model) -> dict:
    return {t.name: t for t in model.graph.initializer}


def _embedding(model):
    """The Gather that looks token ids up in the embedding table (an initializer), or None."""
    inits = _initializers(model)
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[0] in inits and len(inits[node.input[0]].dims) == 2 \
                and _fed_by(model, node.input[1], "input_ids"):
            return node
    return None


def _fed_by(model, name: str, source: str, depth: int = 4) -> bool:
    if name == source:
        return True
    if depth == 0:
        return False
    producers = [n for n in model.graph.node if name in n.output]
    return any(_fed_by(model, i, source, depth - 1) for p in producers for i in p.input)


def _lm_head(model):
    """The MatMul whose output becomes the logits."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name = "logits"
    for _ in range(4):
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type in ("MatMul", "MatMulNBits"):
            return node
        name = node.input[0]
    return None


def share_tied_table(model) -> bool:
    """When the lm_head's weight is a copy of the embedding table (transposed), make it read the table
    through a Transpose node and drop the copy. True when the two were tied."""
    gather, head = _embedding(model), _lm_head(model)
    if gather is None or head is None:
        return False
    inits = _initializers(model)
    weight = head.input[1]
    if weight not in inits:
        return False
    table = numpy_helper.to_array(inits[gather.input[0]])
    if numpy_helper.to_array(inits[weight]).shape != table.T.shape or \
            not np.array_equal(numpy_helper.to_array(inits[weight]), table.T):
        return False
    model.graph.initializer.remove(inits[weight])
    index = list(model.graph.node).index(head)
    model.graph.node.insert(index, helper.make_node("Transpose", [gather.input[0]], [weight], perm=[1, 0],
                                                    name=f"{head.name}_tied_weight"))
    return True


def _materialise_tied_head(model, table_name: str) -> bool:
    """A tied lm_head reads the embedding table through a Transpose node: give the MatMul the transposed
    table as a constant of its own, so the quantizer takes it (it quantizes constant weights only). True
    when the head is tied."""
    head = _lm_head(model)
    if head is None:
        return False
    inits = _initializers(model)
    weight = head.input[1]
    producer = next((n for n in model.graph.node if weight in n.output), None)
    if producer is not None and producer.op_type == "Transpose" and producer.input[0] == table_name:
        table = numpy_helper.to_array(inits[table_name])
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(table.T), weight))
        model.graph.node.remove(producer)
        return True
    if weight in inits:
        table, head_weight = numpy_helper.to_array(inits[table_name]), numpy_helper.to_array(inits[weight])
        return head_weight.shape == table.T.shape and np.array_equal(head_weight, table.T)
    return False


def quantize_decoder(model, bits: int, float_table: str | None = None, matmul: str = "nbits", *,
                     symmetric: bool = True, block: int = BLOCK, scales: str = "float32",
                     dequantized_max_mb: float | None = None):
    """MatMulNBits on every constant MatMul and an embedding table stored the same way; a tied embedding
    reads the lm_head's quantized table. With float_table (TABLES) the embedding table and the lm_head are
    computed in float32 instead (one table when tied), and `matmul` (MATMULS) says how the layers' quantized
    weights are computed (`symmetric`, `block` how they are rounded, `scales` the dtype their dequantized-at-load
    scales are stored at); "dequantized" only while those weights, once float32, stay within
    `dequantized_max_mb` (else MatMulNBits). Returns the model and its recipe."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    gather = _embedding(model)
    if gather is None:
        raise ConversionError("no embedding lookup (Gather on the input_ids) found in the exported decoder")
    if float_table:
        return _quantize_body(model, bits, float_table, matmul, symmetric, block, scales, dequantized_max_mb)
    table_name = gather.input[0]
    tied = _materialise_tied_head(model, table_name)
    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK, is_symmetric=True, bits=bits,
                                          op_types_to_quantize=("MatMul",))
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    if not nodes:
        raise ConversionError(f"no MatMul with constant weights to quantize to {bits} bits")
    head = _lm_head(model)
    gather = _embedding(model)
    if tied and head is not None and head.op_type == "MatMulNBits":
        packed, scales = head.input[1], head.input[2]
    else:
        packed, scales = _quantize_table(model, table_name, bits, config)
    _lookup_quantized(model, gather, packed, scales, bits)
    used = {i for n in model.graph.node for i in n.input}
    for init in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(init)
    recipe = {"method": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer",
              "bits": bits, "block_size": BLOCK, "symmetric": True, "op_types": ["MatMul", "Gather"],
              "quantized_nodes": len(nodes), "embedding": f"{bits}-bit blocks of {BLOCK} (MatMulNBits storage), looked up with Gather",
              "lm_head": f"MatMulNBits, {bits}-bit", "tied_embedding": tied,
              "shared_table": tied and head is not None and head.op_type == "MatMulNBits"}
    return model, recipe


# How the layers' quantized weights are computed (q8 decoders; targets/web.toml decoder_matmul):
MATMULS = {
    # MatMulNBits at its default accuracy level: float32 compute. Without a kernel for it (8 bits on x64,
    # any width in onnxruntime-web's WASM) onnxruntime dequantizes the whole weight at every call.
    "nbits": "MatMulNBits (float32 compute)",
    # accuracy_level=4: the activations rounded to int8 per block too; onnxruntime's x64 int8 kernel (Node).
    "nbits-int8": "MatMulNBits accuracy_level=4 (int8 compute where onnxruntime has the kernel)",
    # The same stored bytes dequantized by plain ops onnxruntime folds once at load (Cast, Sub, Mul, Reshape,
    # Transpose of constants), then float32 MatMul: float weights in memory, 8-bit ones in the file.
    "dequantized": "MatMul on the weights dequantized once at load (float32 compute)",
}


# How the embedding table and the lm_head are stored when q8 keeps them float matmuls (decoder_table):
TABLES = {
    "float16": "float16 table",  # cast to float32 where it is read
    "float32": "float32 table",
    # the table quantized like the layers (MatMulNBitsQuantizer, as the lm_head's weight: blocks along the
    # hidden axis of each token's row), dequantized at load with them; a tied embedding looks up its columns
    "dequantized": "8-bit table dequantized once at load",
}


def _quantize_body(model, bits: int, table: str, matmul: str = "nbits", symmetric: bool = True, block: int = BLOCK,
                   scales: str = "float32", dequantized_max_mb: float | None = None):
    """MatMulNBits on the constant MatMuls between the embedding and the lm_head; the table (shared by a
    tied lm_head) is read in float32: stored as a float dtype and cast, or 8-bit and dequantized at load."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    if matmul not in MATMULS:
        raise ConversionError(f"decoder_matmul is one of {', '.join(MATMULS)}, not {matmul!r}")
    if table not in TABLES:
        raise ConversionError(f"decoder_table is one of {', '.join(TABLES)}, not {table!r}")
    if scales not in ("float32", "float16"):
        raise ConversionError(f"decoder_scales is float32 or float16, not {scales!r}")
    head = _lm_head(model)
    inits = _initializers(model)
    float_mb = sum(int(np.prod(inits[n.input[1]].dims)) for n in model.graph.node  # the layers' weights as float32
                   if n.op_type == "MatMul" and n is not head and n.input[1] in inits) * 4 / 1e6
    fallback = matmul == "dequantized" and dequantized_max_mb is not None and float_mb > dequantized_max_mb
    if fallback:  # float32 weights in memory would not fit a page: the slower kernel on the 8-bit bytes
        matmul, table = "nbits", "float16" if table == "dequantized" else table
    if table == "dequantized" and (bits != 8 or matmul != "dequantized"):
        raise ConversionError('decoder_table = "dequantized" needs 8 bits and decoder_matmul = "dequantized"')
    quantize_head = table == "dequantized" and head is not None
    table_name = _embedding(model).input[0]
    # the quantizer takes constant weights only: a tied head gets the table as its own (its lookup reads it back)
    tied = _materialise_tied_head(model, table_name) if quantize_head else share_tied_table(model)
    config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric, bits=bits,
                                          accuracy_level=4 if matmul == "nbits-int8" else None,
                                          op_types_to_quantize=("MatMul",))
    exclude = [head.name] if head is not None and not quantize_head else []
    quantizer = MatMulNBitsQuantizer(model, algo_config=config, nodes_to_exclude=exclude)
    quantizer.process()
    model = quantizer.model.model
    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    if not nodes:
        raise ConversionError(f"no MatMul with constant weights to quantize to {bits} bits")
    if matmul == "dequantized":
        for node in nodes:
            _dequantize_at_load(model, node, scales)
    gather, head = _embedding(model), _lm_head(model)
    lookup = "float16" if table == "dequantized" and not tied else table  # an untied lookup table stays float16
    if quantize_head and tied:
        _look_up_dequantized_head(model, gather, head)
    elif table in ("float16", "dequantized"):  # the float table(s) left: the lookup's when untied, or both
        names = {gather.input[0]} | ({head.input[1]} if head is not None and not quantize_head else set())
        for name in names & set(_initializers(model)):
            _store_as_float16(model, name)
    recipe = {"method": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer",
              "bits": bits, "block_size": block, "symmetric": symmetric, "op_types": ["MatMul"],
              "matmul": MATMULS[matmul], "float32_layers_mb": round(float_mb, 1),
              **({"scales": scales} if matmul == "dequantized" else {}),
              **({"dequantized_max_mb": dequantized_max_mb} if fallback else {}),
              "quantized_nodes": len(nodes), "embedding": f"{TABLES[lookup]}, looked up with Gather",
              "lm_head": f"MatMul on the {TABLES[table]} (computed in float32)", "tied_embedding": tied,
              "shared_table": tied}
    return model, recipe


def _look_up_dequantized_head(model, gather, head) -> None:
    """A tied table quantized as the lm_head's weight: the embedding Gather reads that weight itself,
    dequantized at load as (hidden, vocab), picking columns (axis=1), and the few looked-up rows are
    transposed back at run time; the float table is dropped. So onnxruntime folds ONE float32 table for
    both (a folded Transpose to (vocab, hidden) was a second 113 MB copy for SmolLM2-135M). The head's
    dequantizing nodes read constants only, so they move to the front, before the lookup."""
    prefix = f"{head.name}_w_"
    chain = [n for n in model.graph.node if n.name.startswith(prefix)]
    for node in chain:
        model.graph.node.remove(node)
    for offset, node in enumerate(chain):
        model.graph.node.insert(offset, node)
    table, ids = gather.input[0], gather.input[1]
    rank = next((len(i.type.tensor_type.shape.dim) for i in model.graph.input if i.name == ids), 2)
    rows = gather.output[0]
    gather.input[0] = head.input[1]
    gather.output[0] = f"{rows}_columns"  # (hidden, *ids' shape)
    for attribute in [a for a in gather.attribute if a.name == "axis"]:
        gather.attribute.remove(attribute)
    gather.attribute.append(helper.make_attribute("axis", 1))
    back = helper.make_node("Transpose", [gather.output[0]], [rows], perm=[*range(1, rank + 1), 0],
                            name=f"{gather.name or 'embedding'}_rows")
    model.graph.node.insert(list(model.graph.node).index(gather) + 1, back)
    if not any(table in n.input for n in model.graph.node):
        model.graph.initializer.remove(_initializers(model)[table])


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dequantize_at_load(model, node, scales_dtype: str = "float32") -> None:
    """Replace an 8-bit MatMulNBits by a float32 MatMul whose weight is unpacked from the node's own bytes,
    scales (and zero points) by plain ops on constants, which onnxruntime's constant folding computes once
    when the session loads (DequantizeLinear would not do: onnxruntime fuses DequantizeLinear + MatMul back
    into MatMulNBits). Same weights as the MatMulNBits node, to the bit; 8 bits only (a byte a weight).
    The bytes are only laid out again, as (blocks, block, N) int8 (uint8 with zero points), so the fold is
    Cast, Mul by the (blocks, 1, N) scales, Reshape to (K, N): each folded step holds a float32 copy of the
    weight until the session is built, so fewer steps mean a lower peak at load. scales_dtype "float16" stores
    the scales at half their bytes (a Cast at load: blocks of 16 spend a fifth of the file on fp32 scales)."""
    attrs = _attrs(node)
    if attrs["bits"] != 8:
        raise ConversionError(f"{node.name}: only 8-bit MatMulNBits is dequantized at load")
    inits = _initializers(model)
    k, n, block = attrs["K"], attrs["N"], attrs["block_size"]
    stored = numpy_helper.to_array(inits[node.input[1]])  # (N, blocks, block), the last block padded past K
    scales = numpy_helper.to_array(inits[node.input[2]])
    blocks = stored.shape[1]
    zeros = numpy_helper.to_array(inits[node.input[3]]) if len(node.input) > 3 and node.input[3] else None
    values = stored.transpose(1, 2, 0)  # (blocks, block, N)
    if zeros is None:  # symmetric: zero point 128, so the int8 value is the byte minus 128 (exactly)
        values = (values.astype(np.int16) - 128).astype(np.int8)
    p = lambda suffix: f"{node.name}_w_{suffix}"  # noqa: E731
    consts = {p("values"): np.ascontiguousarray(values),
              p("scales"): np.ascontiguousarray(scales.reshape(n, blocks).T.reshape(blocks, 1, n)),
              p("shape"): np.array([blocks * block, n], dtype=np.int64)}
    elem = helper.np_dtype_to_tensor_dtype(scales.dtype)
    nodes = [helper.make_node("Cast", [p("values")], [p("float")], to=elem)]
    scale = p("scales")
    if scales_dtype == "float16" and scales.dtype != np.float16:
        consts[p("scales")] = consts[p("scales")].astype(np.float16)
        nodes.append(helper.make_node("Cast", [p("scales")], [p("scales_float")], to=elem))
        scale = p("scales_float")
    if zeros is not None:  # kept a byte each (a float32 one would add 3 bytes a block to the file)
        consts[p("zeros")] = np.ascontiguousarray(zeros.reshape(n, -1)[:, :blocks].T.reshape(blocks, 1, n))
        nodes += [helper.make_node("Cast", [p("zeros")], [p("zero_float")], to=elem),
                  helper.make_node("Sub", [p("float"), p("zero_float")], [p("centred")])]
    weights = p("centred") if zeros is not None else p("float")
    nodes += [helper.make_node("Mul", [weights, scale], [p("blocks")]),
              helper.make_node("Reshape", [p("blocks"), p("shape")], [p("kn")])]
    if blocks * block != k:  # drop MatMulNBits' padding rows
        consts |= {p("start"): np.array([0], dtype=np.int64), p("k"): np.array([k], dtype=np.int64),
                   p("axis"): np.array([0], dtype=np.int64)}
        nodes.append(helper.make_node("Slice", [p("kn"), p("start"), p("k"), p("axis")], [p("kn_unpadded")]))
    nodes.append(helper.make_node("MatMul", [node.input[0], nodes[-1].output[0]], list(node.output), name=node.name))
    for name in node.input[1:4]:
        if name and sum(name in other.input for other in model.graph.node) == 1:
            model.graph.initializer.remove(inits[name])
    model.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in consts.items())
    index = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    for offset, new in enumerate(nodes):
        new.name = new.name or f"{node.name}_w_{offset}"
        model.graph.node.insert(index + offset, new)


def _store_as_float16(model, name: str) -> None:
    """Store a float32 initializer as float16 and read it through a Cast back to float32: half the bytes in
    the file, float32 compute (onnxruntime folds a constant's Cast at load, the Gather's runs on few rows)."""
    inits = _initializers(model)
    tensor = inits[name]
    half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), f"{name}_fp16")
    model.graph.initializer.remove(tensor)
    model.graph.initializer.append(half)
    readers = [n for n in model.graph.node if name in n.input]
    if readers and readers[0].op_type == "Gather":
        # cast the gathered rows, not the whole table
        gather = readers[0]
        gather.input[0] = half.name
        rows = gather.output[0]
        gather.output[0] = f"{rows}_fp16"
        cast = helper.make_node("Cast", [gather.output[0]], [rows], to=onnx.TensorProto.FLOAT, name=f"{gather.name}_cast")
        model.graph.node.insert(list(model.graph.node).index(gather) + 1, cast)
        readers = readers[1:]
    if readers:
        cast = helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT, name=f"{name}_cast")
        model.graph.node.insert(min(list(model.graph.node).index(r) for r in readers), cast)


def embedding(model):
    """The Gather that looks the input_ids up in an embedding table (an initializer), or None."""
    return _embedding(model)


def quantize_lookup(model, gather, bits: int) -> None:
    """Store the table an embedding Gather reads as MatMulNBits blocks of `bits` bits (symmetric, blocks of
    BLOCK) and look it up with plain ops, as the decoders' q8/q4 do; the float table is dropped when unused."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig

    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK, is_symmetric=True, bits=bits,
                                          op_types_to_quantize=("MatMul",))
    table = gather.input[0]
    _lookup_quantized(model, gather, *_quantize_table(model, table, bits, config), bits)
    if not any(table in n.input for n in model.graph.node):
        model.graph.initializer.remove(_initializers(model)[table])


def _quantize_table(model, table_name: str, bits: int, config) -> tuple[str, str]:
    """An untied embedding table quantized exactly as MatMulNBits stores weights: quantize a one-MatMul
    graph holding the table (transposed, as a weight) and take its packed data and scales."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    table = numpy_helper.to_array(_initializers(model)[table_name])
    elem = helper.np_dtype_to_tensor_dtype(table.dtype)
    weight = numpy_helper.from_array(np.ascontiguousarray(table.T), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "table",
                              [helper.make_tensor_value_info("x", elem, [1, table.shape[1]])],
                              [helper.make_tensor_value_info("y", elem, [1, table.shape[0]])], [weight])
    small = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    quantizer = MatMulNBitsQuantizer(small, algo_config=copy.copy(config))
    quantizer.process()
    node = next(n for n in quantizer.model.model.graph.node if n.op_type == "MatMulNBits")
    found = _initializers(quantizer.model.model)
    names = (f"{table_name}_q{bits}", f"{table_name}_scales")
    for old, new in zip(node.input[1:3], names):
        tensor = copy.deepcopy(found[old])
        tensor.name = new
        model.graph.initializer.append(tensor)
    return names


def _lookup_quantized(model, gather, packed: str, scales: str, bits: int) -> None:
    """Replace the embedding Gather by a lookup of MatMulNBits' own storage: gather the token rows of the
    packed data (rows, blocks, bytes per block) and of the scales (rows × blocks), then unpack and scale
    them with plain ONNX ops. onnxruntime's GatherBlockQuantized does this in one node, but
    onnxruntime-web's WASM build has no kernel for it (measured: "Failed to find kernel for
    com.microsoft.GatherBlockQuantized"), and one file must load on every web runtime."""
    inits = _initializers(model)
    rows, blocks, _ = inits[packed].dims
    elem = inits[scales].data_type  # float or float16: the lookup gives what the table gave
    ids = gather.input[1]
    name = gather.name or "embedding"
    p = lambda suffix: f"{name}_q_{suffix}"  # noqa: E731
    consts = {
        p("scale_rows"): np.array([rows, blocks, 1], dtype=np.int64),
        p("hidden"): np.array([0, 0, -1], dtype=np.int64),  # (batch, sequence) kept, blocks × block merged
        p("zero"): np.array(2 ** (bits - 1), dtype=helper.tensor_dtype_to_np_dtype(elem)),
        p("sixteen"): np.array(16, dtype=helper.tensor_dtype_to_np_dtype(elem)),
        p("last"): np.array([-1], dtype=np.int64),
        p("block"): np.array([0, 0, blocks, BLOCK], dtype=np.int64),
    }
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    nodes = [
        helper.make_node("Gather", [packed, ids], [p("bytes")], axis=0),  # (batch, seq, blocks, bytes)
        helper.make_node("Cast", [p("bytes")], [p("values")], to=elem),
    ]
    if bits == 4:  # two weights per byte, the first in the low nibble (MatMulNBits' order)
        nodes += [
            helper.make_node("Div", [p("values"), p("sixteen")], [p("high_frac")]),
            helper.make_node("Floor", [p("high_frac")], [p("high")]),
            helper.make_node("Mul", [p("high"), p("sixteen")], [p("high16")]),
            helper.make_node("Sub", [p("values"), p("high16")], [p("low")]),
            helper.make_node("Unsqueeze", [p("low"), p("last")], [p("low1")]),
            helper.make_node("Unsqueeze", [p("high"), p("last")], [p("high1")]),
            helper.make_node("Concat", [p("low1"), p("high1")], [p("pairs")], axis=-1),
            helper.make_node("Reshape", [p("pairs"), p("block")], [p("unpacked")]),
        ]
    else:
        nodes.append(helper.make_node("Identity", [p("values")], [p("unpacked")]))
    nodes += [
        helper.make_node("Sub", [p("unpacked"), p("zero")], [p("centred")]),  # symmetric: zero point 2^(bits-1)
        helper.make_node("Reshape", [scales, p("scale_rows")], [p("scale_table")]),
        helper.make_node("Gather", [p("scale_table"), ids], [p("scale")], axis=0),  # (batch, seq, blocks, 1)
        helper.make_node("Mul", [p("centred"), p("scale")], [p("weights")]),
        helper.make_node("Reshape", [p("weights"), p("hidden")], list(gather.output)),
    ]
    index = list(model.graph.node).index(gather)
    model.graph.node.remove(gather)
    for offset, node in enumerate(nodes):
        node.name = node.name or f"{name}_q_{offset}"
        model.graph.node.insert(index + offset, node)


# ----------------------------------------------------------------------------------------- versions

def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
