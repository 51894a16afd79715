"""Web: ONNX files in the folder layout Transformers.js loads (onnx/model_<dtype>.onnx beside config.json
and the tokenizer), made with onnxruntime's own quantization tools."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import onnx

from .. import contracts
from ..contracts import BuildOptions, Built, makes
from ..errors import NotApplicable
from ..quiet import captured
from ..source import SourceModel
from ..targets import Target, installed_versions
from .onnx_export import MODEL, fp32_onnx
from .web_tokenizer import copy_support_files

QUANTIZE_CONFIG = "quantize_config.json"
Q4_BLOCK = 32
_LIMIT = 1_800_000_000  # protobuf's 2 GB ceiling, with room: larger graphs keep their weights outside


def _load(path: Path):
    return onnx.load(str(path))  # external data, if any, is read from beside the file


def _save(model, out: Path) -> None:
    if model.ByteSize() > _LIMIT:
        onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=out.name + "_data")
    else:
        onnx.save(model, str(out))


class Converter(contracts.Converter):
    DECODER = "edge_pack.converters.web_decoder:DecoderConverter"  # with its KV cache
    # read by the decoder half only: how q8 stores the table, how its 8-bit matmuls compute, their blocks
    # (zero points, size) and scales' dtype
    SETTINGS = ("decoder_table", "decoder_matmul", "decoder_symmetric", "decoder_block", "decoder_scales",
                "decoder_dequantized_max_mb")
    PER_LAYER = True  # web_layers.py: MatMuls and the embedding table one by one

    def __init__(self, source: SourceModel, target: Target, folder: Path, options: BuildOptions):
        super().__init__(source, target, folder, options)
        self.fp32_dir = fp32_onnx(source)
        self.fp32 = self.fp32_dir / MODEL
        self.recipes: dict[str, dict] = {}
        self._fp16_model = None
        graph = onnx.load(str(self.fp32), load_external_data=False)
        self._external = any(t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL
                             for t in graph.graph.initializer)
        self._large = self.fp32.stat().st_size + sum(p.stat().st_size for p in self.fp32_dir.glob("*_data")) > _LIMIT

    def support_files(self) -> list[Path]:
        """Copy config, tokenizer and preprocessor files to the target folder's root; return them."""
        # A Hugging Face export re-saves them normalised beside model.onnx; an ONNX source brings its own.
        origin = self.fp32_dir if self.source.kind == "hf" else self.source.support_dir
        return copy_support_files(origin, self.dir)

    def convert(self, precision: str) -> Built:
        out = self.dir / self.target.precision(precision).file
        out.parent.mkdir(parents=True, exist_ok=True)
        with captured():
            recipe = self.maker(precision)(out)
        self.recipes[precision] = {"file": out.relative_to(self.dir).as_posix(), **recipe}
        data = out.with_name(out.name + "_data")  # Transformers.js' name for external weights
        return Built([out, data] if data.is_file() else [out], self.recipes[precision])

    @classmethod
    def unmixable(cls, source: SourceModel) -> str | None:
        if source.task == "text-generation":
            return "the web target's decoders are quantized whole here (no per-layer control for them yet)"
        return None

    def layers(self) -> list[contracts.Layer]:
        from .web_layers import layers

        return layers(self.fp32)

    def convert_layers(self, levels: dict[str, str], out: Path | None = None) -> Built:
        from .web_layers import quantize_layers

        shipped = out is None
        out = self.dir / self.target.mixed_precision().file if shipped else out
        out.parent.mkdir(parents=True, exist_ok=True)
        with captured():
            recipe = quantize_layers(self.fp32, levels, out, _save)
        if shipped:  # quantize_config.json lists it
            self.recipes[self.target.mixed_precision().name] = {"file": out.relative_to(self.dir).as_posix(), **recipe}
        data = out.with_name(out.name + "_data")
        return Built([out, data] if data.is_file() else [out], recipe)

    def finish(self) -> list[Path]:
        """Write quantize_config.json: how each file was made, so a reader can rebuild or trust it."""
        path = self.dir / QUANTIZE_CONFIG
        tools = installed_versions(("onnxruntime", "onnx"))  # both run this converter: never missing
        path.write_text(json.dumps({"tools": tools, "precisions": self.recipes}, indent=2) + "\n")
        return [path]

    # -------------------------------------------------------------------------------------- precisions

    @makes("fp32")
    def _fp32(self, out: Path) -> dict:
        if self._external:
            _save(_load(self.fp32), out)  # weights re-homed under this file's own name
        else:
            shutil.copy2(self.fp32, out)
        exporter = {"hf": "optimum-onnx", "torch": "torch.onnx (dynamo)", "onnx": "source file"}[self.source.kind]
        return {"method": "export", "exporter": exporter}

    @makes("fp16")
    def _fp16(self, out: Path) -> dict:
        _save(self._fp16_graph(), out)
        return {"method": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}

    def _has_conv(self) -> bool:
        return any(n.op_type == "Conv" for n in onnx.load(str(self.fp32), load_external_data=False).graph.node)

    def _dynamic(self, out: Path, weight_type: str) -> dict:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel weights keep MiniLM's cosine at 0.99 where per-tensor gives 0.957 (DESIGN.md);
        # reduce_range (7-bit, for old CPUs) costs far more accuracy than it saves.
        quantize_dynamic(str(self.fp32), str(out), weight_type=getattr(QuantType, weight_type), per_channel=True,
                         reduce_range=False, use_external_data_format=self._large)
        return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": weight_type,
                "per_channel": True, "reduce_range": False, "activations": "dynamic uint8"}

    @makes("q8")
    def _q8(self, out: Path) -> dict:
        # onnxruntime-web has no int8 Conv kernel (ConvInteger with int8 weights): graphs with Conv get uint8.
        return self._dynamic(out, "QUInt8" if self._has_conv() else "QInt8")

    @makes("int8")
    def _int8(self, out: Path) -> dict:
        return self._dynamic(out, "QInt8")

    @makes("uint8")
    def _uint8(self, out: Path) -> dict:
        return self._dynamic(out, "QUInt8")

    @makes("q4")
    def _q4(self, out: Path) -> dict:
        return self._four_bit(_load(self.fp32), out)

    @makes("q4f16")
    def _q4f16(self, out: Path) -> dict:
        # The quantizer edits the graph it is given: hand it a copy of the shared fp16 graph.
        return self._four_bit(copy.deepcopy(self._fp16_graph()), out) | {"activations": "float16"}

    def _four_bit(self, model, out: Path) -> dict:
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                     MatMulNBitsQuantizer)

        # MatMul only: the browser has no GatherBlockQuantized, so embedding tables stay as they are.
        config = DefaultWeightOnlyQuantConfig(block_size=Q4_BLOCK, is_symmetric=True, op_types_to_quantize=("MatMul",))
        quantizer = MatMulNBitsQuantizer(model, algo_config=config)
        quantizer.process()
        _save(quantizer.model.model, out)
        quantized = sum(n.op_type == "MatMulNBits" for n in quantizer.model.model.graph.node)
        if not quantized:
            raise NotApplicable("no MatMul with constant weights to quantize to 4 bits")
        return {"method": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer", "bits": 4,
                "block_size": Q4_BLOCK, "symmetric": True, "op_types": ["MatMul"], "quantized_nodes": quantized}

    def _fp16_graph(self):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        if self._fp16_model is None:
            # keep_io_types: inputs and outputs stay float32, as Transformers.js feeds them.
            self._fp16_model = convert_float_to_float16(_load(self.fp32), keep_io_types=True)
        return self._fp16_model
