"""Android: LiteRT flatbuffers (.tflite) converted from the PyTorch model with litert-torch and quantized
with ai-edge-quantizer recipes, beside model_io.json, which tells an app how to feed each file (names,
types, shapes, layout, quantization scale and zero point).

Shapes are fixed, the way Android apps run models: text models take `seq_len` tokens (padded, with the
attention mask saying which are real), image models take one image, channels-last (NHWC) by default.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from .. import contracts
from ..cache import cached
from ..contracts import BuildOptions, Built, makes
from ..errors import ConversionError, NotApplicable, UserError
from ..files import copy_into
from ..evalset import TEXT_TASKS, Preprocessor, make_evalset
from ..quiet import captured
from ..resources import harness_dir
from ..source import SourceModel, input_specs, load_hf_model, load_source, primary_output, torch_output_names
from ..targets import Target, installed_versions

RECIPE = 1  # bump when the conversion recipe changes, so cached fp32 files are redone
FP32 = "model.tflite"
SIGNATURE = "signature.json"
IO_FILE = "model_io.json"
SEQ_LEN = 128  # tokens a text model takes (capped at what the model itself takes)
MIN_CALIBRATION = 100
INT4_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")  # ops with 4-bit weight kernels in LiteRT
CALIBRATION_HINT = ("pass --calibration FILE (JSONL/CSV rows, a folder of images, or an .npz of model inputs; "
                    f"{MIN_CALIBRATION}+ samples)")


class Converter(contracts.Converter):
    DECODER = "edge_pack.converters.litert_decoder:DecoderConverter"  # litert-torch generative, KV cache
    PER_LAYER = True  # android_layers.py: each torch module's ops at their own precision (ai-edge-quantizer scopes)

    def __init__(self, source: SourceModel, target: Target, folder: Path, options: BuildOptions):
        super().__init__(source, target, folder, options)
        self.layout = target.option("layout", options.target_options)
        self.given, self.source = source, _torch_source(source)
        self.seq_len = SEQ_LEN
        self.io: dict[str, dict] = {}
        calibration = options.calibration
        samples = self._read_calibration(calibration) if calibration else None  # bad data: stop before work
        folder = fp32_tflite(self.source, self.layout, self.seq_len)
        self.fp32 = folder / FP32
        self.signature = json.loads((folder / SIGNATURE).read_text())
        self.calibration = self._fit_calibration(calibration, samples) if calibration else None
        self.meta = {"conversion": {"converter": "litert-torch", "fixed_shapes": True, **self._conventions()}}

    def support_files(self) -> list[Path]:
        """Config, tokenizer and image-processor files; the tokenizer is told the model's fixed length, so
        that text is cut where the model cuts it."""
        hugging_face = self.source.kind == "hf"
        written = copy_into(self.source.support_files if hugging_face else [], self.dir)
        if self.source.task in TEXT_TASKS and hugging_face:
            path = self.dir / "tokenizer_config.json"
            config = json.loads(path.read_text()) if path.is_file() else {}
            config["model_max_length"] = self.signature["seq_len"]
            path.write_text(json.dumps(config, indent=2) + "\n")
            written += [] if path in written else [path]
        return written

    def convert(self, precision: str) -> Built:
        out = self.dir / self.target.precision(precision).file
        out.parent.mkdir(parents=True, exist_ok=True)
        with captured():
            recipe = self.maker(precision)(out)
            io = describe_io(out, self.signature)
            runtime = runtime_versions(out)
        self.io[out.name] = io
        self._write_io()
        return Built([out], {"file": out.relative_to(self.dir).as_posix(), **recipe, "io": io, "runtime": runtime})

    def finish(self) -> list[Path]:
        """model_io.json for the files that passed validation (a rejected file was removed)."""
        self.io = {name: io for name, io in self.io.items() if (self.dir / name).is_file()}
        return [self._write_io()]

    # -------------------------------------------------------------------------------------- precisions

    @makes("fp32")
    def _fp32(self, out: Path) -> dict:
        shutil.copy2(self.fp32, out)
        return {"method": "litert_torch.convert", "weights": "float32", "activations": "float32"}

    @makes("fp16")
    def _fp16(self, out: Path) -> dict:
        from ai_edge_quantizer import qtyping
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        quantizer = self._quantizer()
        quantizer.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                         num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        self._quantize(quantizer, out, "FLOAT16")
        return {"method": "ai_edge_quantizer weight-only float casting", "weights": "float16",
                "activations": "float32 (weights are cast up at load)"}

    @makes("dynamic-int8")
    def _dynamic_int8(self, out: Path) -> dict:
        from ai_edge_quantizer import recipe

        self._quantize(self._quantizer(recipe.dynamic_wi8_afp32()), out, "INT8")
        return {"method": "ai_edge_quantizer recipe dynamic_wi8_afp32", "weights": "int8 per channel",
                "activations": "float32 in the file, quantized to int8 on the fly by the runtime (dynamic range)"}

    @makes("weight-only-int8")
    def _weight_only_int8(self, out: Path) -> dict:
        from ai_edge_quantizer import qtyping

        quantizer = self._quantizer()
        quantizer.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=8)
        self._quantize(quantizer, out, "INT8")
        return {"method": "ai_edge_quantizer weight-only config", "weights": "int8 per channel",
                "activations": "float32 (weights are dequantized at load: a small file, float memory and compute)"}

    @makes("int4")
    def _int4(self, out: Path) -> dict:
        from ai_edge_quantizer import qtyping

        ops, blocks = qtyping.TFLOperationName, qtyping.QuantGranularity.BLOCKWISE_32
        quantizer = self._quantizer()
        # int8 wherever LiteRT has no 4-bit kernel (convolutions), 4 bits in blocks of 32 where it has one.
        # Blocks keep MiniLM's cosine at 0.96 where per-channel int4 gives 0.92, and weight-only int4 (float
        # compute) 0.90 at ten times the latency (measured with ai-edge-quantizer 0.10).
        quantizer.add_dynamic_config(regex=".*", operation_name=ops.ALL_SUPPORTED, num_bits=8)
        for op in INT4_OPS:
            quantizer.add_dynamic_config(regex=".*", operation_name=getattr(ops, op), num_bits=4, granularity=blocks)
        self._quantize(quantizer, out, "INT4")
        return {"method": "ai_edge_quantizer dynamic config", "weights": f"int4 in blocks of 32 for "
                f"{', '.join(INT4_OPS)}; int8 per channel elsewhere",
                "activations": "float32 in the file, quantized on the fly by the runtime (dynamic range)"}

    @makes("int8")
    def _int8(self, out: Path) -> dict:
        recipe = self._static("int8", out)
        return {"method": "ai_edge_quantizer static_wi8_ai8 config on all ops (+ int8 embedding tables)",
                "weights": "int8 per channel", "activations": "int8, ranges calibrated (min/max)", **recipe}

    @makes("int8-a16")
    def _int8_a16(self, out: Path) -> dict:
        recipe = self._static("int8-a16", out)
        return {"method": "ai_edge_quantizer static_wi8_ai16 config on all ops (a16w8; + int8 embedding tables)",
                "weights": "int8 per channel",
                "activations": "int16, ranges calibrated (min/max); LiteRT's 16x8 integer kernels", **recipe}

    def _static(self, level: str, out: Path) -> dict:
        """Every op at a calibrated static level (android_layers: min/max ranges; ops on an uncalibratable
        tensor, an attention mask's finfo.min, stay float), checked to be integer where it computes."""
        from ai_edge_quantizer import quantizer
        from .android_layers import calibrate, configure, keep_unranged_float

        if self.calibration is None:
            raise NotApplicable(f"{level} (calibrated activations) needs calibration data; {CALIBRATION_HINT}")
        if "ranges" not in self.calibration:
            key = next(iter(_interpreter(self.fp32).get_signature_list()))
            self.calibration["ranges"] = calibrate(self.fp32, key, self.calibration["feeds"])
        q = quantizer.Quantizer(str(self.fp32))
        configure(q, level, ".*", [])  # a static level sets every op type alike
        kept = keep_unranged_float(q, self.fp32, self.calibration["ranges"])
        self._quantize(q, out, "INT8", self.calibration["ranges"])
        floats = _float_compute(out)
        if floats:
            raise ConversionError(f"{level} is not full-integer: {', '.join(floats)} still compute in float")
        return {"float_ops": _float_ops(out),
                **({"float_unranged_ops": len(kept)} if kept else {}),
                "calibration": {k: v for k, v in self.calibration.items() if k not in ("feeds", "ranges")}}

    # -------------------------------------------------------------------------------------- per layer

    @classmethod
    def unmixable(cls, source: SourceModel) -> str | None:
        if source.task == "text-generation":
            return "the android target's decoders are quantized whole (litert-torch recipes), not layer by layer"
        return None

    def layers(self) -> list[contracts.Layer]:
        from .android_layers import layers

        mixed = self.target.mixed
        return layers(self.fp32, {p: self.target.precisions[p].bits for p in (mixed.low, mixed.high)})

    def convert_layers(self, levels: dict[str, str], out: Path | None = None) -> Built:
        from .android_layers import STATIC, calibrate, quantize_layers

        shipped = out is None
        out = self.dir / self.target.mixed_precision().file if shipped else out
        out.parent.mkdir(parents=True, exist_ok=True)
        static = bool(set(STATIC) & set(levels.values()))
        if static and self.calibration is None:
            raise NotApplicable(f"a mix with full-integer int8 layers needs calibration data; {CALIBRATION_HINT}")
        with captured():
            if static and "ranges" not in self.calibration:
                key = next(iter(_interpreter(self.fp32).get_signature_list()))
                self.calibration["ranges"] = calibrate(self.fp32, key, self.calibration["feeds"])
            recipe = quantize_layers(self.fp32, levels, out, (self.calibration or {}).get("ranges"))
            io = describe_io(out, self.signature)
            if not shipped:  # a search trial: its own model_io.json tells the runner the inputs' layout
                (out.parent / IO_FILE).write_text(json.dumps({out.name: io}))
                return Built([out], recipe)
            runtime = runtime_versions(out)
        self.io[out.name] = io
        self._write_io()
        calibration = {k: v for k, v in (self.calibration or {}).items() if k not in ("feeds", "ranges")}
        return Built([out], {"file": out.relative_to(self.dir).as_posix(), **recipe, "io": io, "runtime": runtime,
                             **({"calibration": calibration} if static else {})})

    # ---------------------------------------------------------------------------------------- helpers

    def _quantizer(self, recipe=None):
        from ai_edge_quantizer import quantizer

        return quantizer.Quantizer(str(self.fp32), recipe)

    def _quantize(self, quantizer, out: Path, expected: str, calibration=None) -> None:
        result = quantizer.quantize(calibration, enable_progress_report=False)
        out.write_bytes(bytes(result.quantized_model))
        if not _tensor_types(out) & {expected}:
            out.unlink()
            raise NotApplicable(f"ai-edge-quantizer found no weights of this model it can store as {expected.lower()}")

    def _read_calibration(self, path: Path) -> list[dict]:
        """The calibration samples as the source takes them, checked (shape, dtype) against its inputs."""
        specs = input_specs(self.given) if self.given.kind == "torch" else None
        pre = Preprocessor(self.source.task, self.source.support_dir, specs)
        length = min(self.seq_len, pre.max_length) if pre.tokenizer is not None else self.seq_len
        if pre.tokenizer is not None:
            pre.max_length = length  # text is cut where the model cuts it
        return make_evalset(pre, Path(path), seq_len=length, label_names=None, embedder=True,
                            what="calibration file").samples

    def _fit_calibration(self, path: Path, samples: list[dict]) -> dict:
        """The samples as the fp32 model's feeds (layout, padding, types), the way the device feeds them."""
        details = _interpreter(self.fp32).get_signature_runner().get_input_details()
        fit = _feeds().fit
        layouts = {i["name"]: "NHWC" for i in self.signature["inputs"] if i.get("layout") == "NHWC"}
        feeds = []
        for number, sample in enumerate(samples, 1):
            try:
                feeds.append(fit(sample, details, layouts)[0])
            except ValueError as exc:
                raise UserError(f"{path}: calibration sample {number}: {exc}") from None
        if len(feeds) < MIN_CALIBRATION:
            self.notes.append(f"only {len(feeds)} calibration samples in {path}; full-integer int8 is calibrated "
                              f"better with {MIN_CALIBRATION} or more")
        return {"file": str(path), "samples": len(feeds), "feeds": feeds}

    def _conventions(self) -> dict:
        found = {"inputs": [{k: v for k, v in i.items() if k != "index"} for i in self.signature["inputs"]]}
        if self.source.task in TEXT_TASKS:
            found["sequence_length"] = self.signature["seq_len"]
            found["padding"] = "token ids padded with zeros to the sequence length, attention_mask 0 there"
        preprocessor = self.source.support_dir / "preprocessor_config.json" if self.source.support_dir else None
        if preprocessor and preprocessor.is_file():
            found["preprocessing"] = json.loads(preprocessor.read_text())
        return found

    def _write_io(self) -> Path:
        path = self.dir / IO_FILE
        path.write_text(json.dumps(self.io, indent=2) + "\n")
        return path


# ------------------------------------------------------------------------------------------- conversion

def _torch_source(source: SourceModel) -> SourceModel:
    """litert-torch converts PyTorch modules: an ONNX file converts through the Hugging Face folder beside it."""
    if source.kind != "onnx":
        return source
    folder = source.support_dir
    if folder and (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return load_source(str(folder))
    raise UserError(f"the android target converts PyTorch models and {source.path.name} has no Hugging Face "
                    "folder (config.json, *.safetensors) beside it; give the Hugging Face folder or a PyTorch "
                    "entry point package.module:factory")


def fp32_tflite(source: SourceModel, layout: str, seq_len: int) -> Path:
    """Folder with the fp32 model.tflite and signature.json (which inputs were made channels-last)."""
    key = {"source": source.sha256, "kind": source.kind, "task": source.task, "layout": layout, "seq_len": seq_len,
           "recipe": RECIPE, **installed_versions(("torch", "transformers", "litert-torch"))}
    return cached("tflite-fp32", key, lambda work: _convert(source, layout, seq_len, work))


def _convert(source: SourceModel, layout: str, seq_len: int, work: Path) -> None:
    with captured():  # importing litert-torch logs about optional CUDA kernels and deprecations
        import litert_torch

    module, names, args, outputs = _module(source, seq_len)
    images = [i for i, a in enumerate(args) if a.is_floating_point() and a.ndim == 4] if layout == "nhwc" else []
    if images:
        module = litert_torch.to_channel_last_io(module, args=images)
    kwargs = {n: (a.permute(0, 2, 3, 1) if i in images else a) for i, (n, a) in enumerate(zip(names, args))}
    try:
        with captured():
            converted = litert_torch.convert(_Named(module, names, outputs).eval(), sample_kwargs=kwargs)
            converted.export(str(work / FP32))
    except Exception as exc:  # litert-torch raises plain RuntimeErrors and assertions
        raise UserError(f"{source.spec} cannot be converted for android: {_why(exc)}") from None
    inputs = [{"name": n, "source_shape": list(a.shape), "layout": ("NHWC" if i in images else "NCHW")
               if a.is_floating_point() and a.ndim == 4 else None} for i, (n, a) in enumerate(zip(names, args))]
    length = next((a.shape[1] for a in args if not a.is_floating_point() and a.ndim == 2), None)
    (work / SIGNATURE).write_text(json.dumps({"inputs": inputs, "outputs": outputs, "seq_len": length}))


def _why(exc: BaseException) -> str:
    """The op LiteRT cannot express, when litert-torch says which; else its first line."""
    text = str(exc)
    missing = re.search(r"Lowering not found: (\S+)", text)
    if missing:
        return f"LiteRT has no lowering for op {missing.group(1)} (litert-torch); replace it in the model"
    executing = re.search(r"target=torch\.ops\.(\S+?)\]", text)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if executing:
        return f"op {executing.group(1)} failed to convert ({first[:200]})"
    return f"{type(exc).__name__}: {first[:300]}"


def _module(source: SourceModel, seq_len: int):
    """(positional module, input names, example tensors, output names) for the source."""
    from PIL import Image

    if source.kind == "torch":
        module, args, names = source.torch_module()
        with torch.no_grad():
            out = module(*args)
        return module, names, list(args), torch_output_names(len(out) if isinstance(out, (tuple, list)) else 1)
    model = load_hf_model(source)
    pre = Preprocessor(source.task, source.support_dir, None)
    if pre.tokenizer is not None:
        example = pre.text("edge-pack converts this sentence", seq_len)
    else:
        example = pre.image(Image.new("RGB", (224, 224)))
    output = primary_output(source.task)
    names = list(example)
    return _HFOutput(model, names, output), names, [torch.from_numpy(example[n]) for n in names], [output]


class _HFOutput(torch.nn.Module):
    """A Hugging Face model as positional inputs → its primary output (what the reference compares)."""

    def __init__(self, model, names: list[str], output: str):
        super().__init__()
        self.model, self.names, self.output = model, names, output

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args)))[self.output]


class _Named(torch.nn.Module):
    """Named inputs and outputs, so that the .tflite signature speaks the source's names."""

    def __init__(self, module, names: list[str], outputs: list[str]):
        super().__init__()
        self.module, self.names, self.outputs = module, names, outputs

    def forward(self, **inputs):
        out = self.module(*[inputs[n] for n in self.names])
        return dict(zip(self.outputs, out if isinstance(out, (tuple, list)) else (out,)))


# --------------------------------------------------------------------------------------------- reading

def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path))


def _feeds():
    """harness/litert/feeds.py: the same sample fitting the device runs, used here for calibration."""
    spec = importlib.util.spec_from_file_location("edge_pack_litert_feeds", harness_dir() / "litert" / "feeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(path: Path):
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    return tfl_flatbuffer_utils.read_model(str(path))


def _names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _tensor_types(path: Path) -> set[str]:
    from ai_edge_litert import schema_py_generated as schema

    names = _names(schema.TensorType)
    return {names[t.type] for g in _model(path).subgraphs for t in g.tensors}


COMPUTE_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "TRANSPOSE_CONV")


def _float_compute(path: Path) -> list[str]:
    """Compute-heavy ops whose inputs or outputs are still float: a full-integer model has none."""
    from ai_edge_litert import schema_py_generated as schema

    ops, types = _names(schema.BuiltinOperator), _names(schema.TensorType)
    model = _model(path)
    found = set()
    for graph in model.subgraphs:
        for op in graph.operators:
            name = ops[model.operatorCodes[op.opcodeIndex].builtinCode]
            tensors = [graph.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
            if name in COMPUTE_OPS and any(types[t.type].startswith("FLOAT") for t in tensors):
                found.add(name)
    return sorted(found)


def _float_ops(path: Path) -> list[str]:
    """Op types that still compute in float (their output is float; DEQUANTIZE, which makes float inputs for
    the model's float outputs, and CAST aside)."""
    from ai_edge_litert import schema_py_generated as schema

    ops, types = _names(schema.BuiltinOperator), _names(schema.TensorType)
    model = _model(path)
    return sorted({ops[model.operatorCodes[op.opcodeIndex].builtinCode] for graph in model.subgraphs
                   for op in graph.operators if types[graph.tensors[op.outputs[0]].type].startswith("FLOAT")}
                  - {"DEQUANTIZE", "CAST"})


def describe_io(path: Path, signature: dict) -> dict:
    """What an app needs to feed the file: per input and output its name, type, shape, layout and
    quantization (real = (q - zero_point) * scale)."""
    runner = _interpreter(path).get_signature_runner()
    layouts = {i["name"]: i.get("layout") for i in signature["inputs"]}

    def entry(name: str, detail: dict, layout: str | None) -> dict:
        scale, zero_point = detail["quantization"]
        found = {"name": name, "dtype": np.dtype(detail["dtype"]).name, "shape": [int(d) for d in detail["shape"]]}
        if layout:
            found["layout"] = layout
        if scale:
            found["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
        return found

    return {"inputs": [entry(n, d, layouts.get(n)) for n, d in runner.get_input_details().items()],
            "outputs": [entry(n, d, None) for n, d in runner.get_output_details().items()]}


def runtime_versions(path: Path) -> dict:
    """The oldest LiteRT/TensorFlow Lite runtime the file needs. ai-edge-quantizer keeps the float graph's op
    versions and min_runtime_version, so the quantized graph is re-versioned by the LiteRT exporter (read
    only; the shipped file is the quantizer's own)."""
    declared = _min_runtime(_model(path))
    found = {"file_declares": declared, "checked_on": f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"}
    try:
        import litert_converter.converter_api_ext as converter_api
        import litert_converter.model_utils_ext as model_utils
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils
        from litert_converter.mlir import ir

        context = ir.Context()
        converter_api.prepare_mlir_context(context)
        module = model_utils.flatbuffer_to_mlir(path.read_bytes(), context)
        versioned = _min_runtime(tfl_flatbuffer_utils.read_model(bytearray(
            converter_api.export_flatbuffer_to_bytes(module.operation))))
    except Exception:  # noqa: BLE001 - a graph the exporter cannot re-read keeps the declared version
        versioned = None
    candidates = [v for v in (declared, versioned) if v]
    found["min_runtime_version"] = max(candidates, key=_version_key) if candidates else None
    return found


def _min_runtime(model) -> str | None:
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == "min_runtime_version":
            return bytes(model.buffers[entry.buffer].data).rstrip(b"\0").decode()
    return None


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
