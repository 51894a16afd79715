"""iOS: Core ML ML programs (.mlpackage) converted from the PyTorch model with coremltools, their weights
compressed afterwards (int8/int4 linear quantization, k-means palettization) as coremltools recommends.

Compression is deliberate: the weights of linear, conv and matmul ops are compressed; folded constants
(rotary tables, masks) never are; embedding tables only where the precision's quantize_embeddings says so
(int8, where it costs nothing) or with --quantize-embeddings, because at 4 bits they cost accuracy
(DESIGN.md: BERT int4 cosine 0.990 with them, 0.9994 without).
"""
from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import numpy as np
import torch

from .. import contracts
from ..contracts import BuildOptions, Built
from ..errors import ConversionError, NotApplicable, UserError
from ..files import copy_into, safe_stem
from ..evalset import Preprocessor, TEXT_TASKS, make_evalset
from ..quiet import captured
from ..source import SourceModel, input_specs, load_hf_model, primary_output, torch_output_names
from ..targets import Target

FP16_MAX = 65504.0
WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller tensors (norms, biases) stay float
# Where a const is a weight: (op type, input name).
WEIGHT_USES = {("linear", "weight"), ("conv", "weight"), ("matmul", "x"), ("matmul", "y")}
EMBEDDING_USES = {("gather", "x")}


class Converter(contracts.Converter):
    DECODER = "edge_pack.converters.coreml_decoder:DecoderConverter"  # KV cache as Core ML state
    # A precision is made from its table: compute (the ML program's float type), and optionally compress
    # (a coremltools compression recipe), quantize_embeddings and min_ios (the oldest iOS that runs it).
    RECIPE = ("compute",)
    SETTINGS = ("compress", "quantize_embeddings", "min_ios")
    PER_LAYER = True  # ios_layers.py: each weight const at its own compression (op_name_configs)

    def __init__(self, source: SourceModel, target: Target, folder: Path, options: BuildOptions):
        super().__init__(source, target, folder, options)
        self.min_ios = target.option("min_ios", options.target_options)
        self.quantize_embeddings = target.option("quantize_embeddings", options.target_options)
        self._models: dict[str, object] = {}  # compute type -> converted MLModel, shared by its precisions
        self._traced = None

    def support_files(self) -> list[Path]:
        """The tokenizer / image processor and config files, copied beside the packages."""
        return copy_into(self.source.support_files, self.dir)

    @classmethod
    def check(cls, source: SourceModel, target: Target, precisions: list[str], options: BuildOptions) -> None:
        """Refuse, before any work, a deployment target we do not offer or a precision it cannot run."""
        min_ios = target.option("min_ios", options.target_options)
        if source.task == "text-generation":
            from .coreml_decoder import check_min_ios

            check_min_ios(options.target_options.get("min_ios"))
            return
        for name in precisions:
            needs = target.precision(name).settings.get("min_ios", target.options["min_ios"].default)
            if needs > min_ios:
                raise UserError(f"ios precision {name} needs iOS {needs} or newer, but the deployment target is "
                                f"iOS {min_ios}; pass --min-ios {needs}, or choose another precision")

    def _mixed_settings(self) -> dict[str, dict]:
        """The TOML tables of the two precisions a mix combines (check() has refused an iOS too old for them)."""
        return {p: self.target.precision(p).settings for p in (self.target.mixed.low, self.target.mixed.high)}

    def layers(self) -> list[contracts.Layer]:
        from .ios_layers import layers

        model = self._converted("fp16")
        return layers(model, select_weights(model, self.quantize_embeddings),
                      {p: self.target.precision(p) for p in self._mixed_settings()})

    def convert_layers(self, levels: dict[str, str], out: Path | None = None) -> Built:
        from .ios_layers import compress_layers

        shipped = out is None
        out = self.dir / self.target.mixed_precision().file.format(name=safe_stem(self.source.name, "_")) \
            if shipped else out
        with captured():
            model, counts = compress_layers(self._converted("fp16"), levels, self._mixed_settings(), WEIGHT_THRESHOLD)
            model.save(str(out))
        recipe = {"tool": f"coremltools {importlib.metadata.version('coremltools')}", "min_ios": self.min_ios,
                  "compute": "fp16", "method": "per op: OptimizationConfig(op_name_configs) with each precision's "
                  "compress recipe", "layers": counts, **(describe_package(out) if shipped else {})}
        return Built(sorted(p for p in out.rglob("*") if p.is_file()), recipe)

    def convert(self, precision: str) -> Built:
        if self.source.kind not in ("hf", "torch"):
            raise NotApplicable("coremltools converts PyTorch models; give the Hugging Face folder or a PyTorch "
                                "entry point instead of an ONNX file")
        spec = self.target.precision(precision)
        settings = spec.settings
        needs = settings.get("min_ios", self.target.options["min_ios"].default)
        if needs > self.min_ios:  # reached by a sweep; a precision asked for by name was refused by check()
            raise NotApplicable(f"needs iOS {needs} or newer (the deployment target is iOS {self.min_ios}: "
                                f"--min-ios {needs} builds it)")
        out = self.dir / spec.file.format(name=safe_stem(self.source.name, "_"))
        try:
            with captured():
                model = self._converted(settings["compute"])
                recipe = {"compute": settings["compute"]}
                if settings.get("compress"):
                    embeddings = self.quantize_embeddings or bool(settings.get("quantize_embeddings"))
                    model, compressed = self._compress(model, settings["compress"], embeddings)
                    recipe.update(compress=settings["compress"], compressed=compressed)
                model.save(str(out))
        except (NotApplicable, UserError):
            raise
        except Exception as exc:
            shutil.rmtree(out, ignore_errors=True)
            raise ConversionError(f"coremltools failed: {_first_line(exc)}") from exc
        recipe = {"tool": f"coremltools {importlib.metadata.version('coremltools')}", "min_ios": self.min_ios,
                  "capture": self._trace()[1], **recipe, **describe_package(out)}
        return Built(sorted(p for p in out.rglob("*") if p.is_file()), recipe)

    # ------------------------------------------------------------------------------------------ conversion

    def _converted(self, compute: str):
        """The ML program with float type `compute` (fp32 or fp16), converted once per build."""
        if compute not in self._models:
            import coremltools as ct

            captured_model, _, inputs, outputs = self._trace()
            self._models[compute] = ct.convert(
                captured_model, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                minimum_deployment_target=getattr(ct.target, f"iOS{self.min_ios}"),
                compute_precision=ct.precision.FLOAT32 if compute == "fp32" else
                ct.transform.FP16ComputePrecision(op_selector=fits_fp16),
                skip_model_load=True)  # loading compiles for this Mac; Linux cannot, and the runner loads anyway
        return self._models[compute]

    def _trace(self):
        """The model captured for coremltools, how it was captured, and the Core ML input and output types:
        int32 token ids with a flexible sequence length for text models, fixed shapes otherwise.

        TorchScript tracing first (flexible shapes work best there); a model it cannot capture (recent
        transformers build causal masks with vmap, which tracing rejects) goes through torch.export with
        the core ATen decompositions, at the example's fixed shapes."""
        if self._traced is None:
            import coremltools as ct

            module, example, output_names, seq_max = self._module()
            args = tuple(torch.from_numpy(v) for v in example.values())
            wrapped = _Traceable(module, list(example), hugging_face=self.source.kind == "hf").eval()
            try:
                with torch.no_grad():
                    captured_model, how = torch.jit.trace(wrapped, args, strict=False), "torch.jit.trace"
            except Exception:  # noqa: BLE001 - any tracing failure: try the other capture
                _register_missing_torch_ops()
                captured_model = torch.export.export(wrapped, args).run_decompositions()
                how, seq_max = "torch.export + run_decompositions()", None
            inputs = []
            for name, value in example.items():
                shape = list(value.shape)
                if seq_max:  # text: any length up to what the model takes
                    shape[1] = ct.RangeDim(lower_bound=1, upper_bound=seq_max, default=min(128, seq_max))
                inputs.append(ct.TensorType(name=name, shape=ct.Shape(shape), dtype=_core_ml_dtype(value.dtype)))
            self._traced = captured_model, how, inputs, [ct.TensorType(name=n) for n in output_names]
        return self._traced

    def _module(self):
        """(torch module, example inputs by name, output names, longest sequence or None)."""
        if self.source.kind == "torch":
            module, args, names = self.source.torch_module()
            with torch.no_grad():
                out = module(*args)
            count = len(out) if isinstance(out, (tuple, list)) else 1
            return module, {n: a.numpy() for n, a in zip(names, args)}, torch_output_names(count), None
        model = load_hf_model(self.source)
        pre = Preprocessor(self.source.task, self.source.support_dir, input_specs(self.source))
        example = make_evalset(pre, None, seq_len=16, label_names=None, embedder=False).samples[0]
        return model, example, [primary_output(self.source.task)], pre.max_length if self.source.task in TEXT_TASKS else None

    # ------------------------------------------------------------------------------------------ compression

    def _compress(self, model, recipe: dict, embeddings: bool):
        """Compress the chosen weights of `model` with coremltools; returns the model and what was chosen. A
        uniform precision is every chosen weight at one level of ios_layers.compress_layers, the mix's own path
        (so both get its per-block fix-up)."""
        from .ios_layers import compress_layers

        if recipe.get("method") not in ("linear", "palettize"):
            raise ConversionError(f"unknown compression method {recipe.get('method')!r} in targets/ios.toml")
        chosen = select_weights(model, embeddings)
        if not chosen:
            raise NotApplicable("the model has no linear/conv weights large enough to compress")
        model, _ = compress_layers(model, dict.fromkeys(chosen, "uniform"), {"uniform": {"compress": recipe}},
                                   WEIGHT_THRESHOLD)
        kinds: dict[str, int] = {}
        for kind in chosen.values():
            kinds[kind] = kinds.get(kind, 0) + 1
        return model, {"weights": kinds, "embeddings": embeddings}


def _register_missing_torch_ops() -> None:
    """Teach coremltools the ATen ops torch.export emits that coremltools 9.0 does not translate yet (with its
    own registration API): aten.alias, a no-op view. (transformers' masks also emit new_ones and diff, which
    run_decompositions() rewrites into ops coremltools knows.)"""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    if "alias" not in _TORCH_OPS_REGISTRY:
        def alias(context, node):
            context.add(mb.identity(x=_get_inputs(context, node, expected=1)[0], name=node.name))

        register_torch_op(alias)


def fits_fp16(op) -> bool:
    """Whether an op may run in fp16: not when a constant it takes is beyond fp16's range. Such constants are
    float32-min fills (Hugging Face's attention mask is (1 - mask) * float32.min): coremltools would store
    them as -inf, and 0 × -inf is NaN on the device, so those few ops keep fp32."""
    for var in op.get_flattened_inputs():
        value = var.val if var.op is not None and var.op.op_type == "const" else None
        if isinstance(value, (np.ndarray, np.floating, float)) and np.asarray(value).dtype.kind == "f":
            finite = np.abs(np.asarray(value, dtype=np.float64))
            if np.any(finite[np.isfinite(finite)] > FP16_MAX):
                return False
    return True


class _Traceable(torch.nn.Module):
    """The model as a function of positional tensors (what tracing feeds). A Hugging Face model takes them
    by name and gives its first output (last_hidden_state or logits); an entry point's module is called as is."""

    def __init__(self, module, names: list[str], hugging_face: bool):
        super().__init__()
        self.module, self.names, self.hugging_face = module, names, hugging_face

    def forward(self, *args):
        if self.hugging_face:
            return self.module(**dict(zip(self.names, args)), return_dict=False)[0]
        return self.module(*args)


def select_weights(model, embeddings: bool) -> dict[str, str]:
    """The float consts to compress, by op name, with what they are: the weights of linear/conv/matmul ops,
    and (if asked) embedding tables read by gather. Everything else stays float."""
    from coremltools.models.utils import _apply_graph_pass
    from coremltools.converters.mil.mil import types

    program = _apply_graph_pass(model, [], return_pymil_prog=True)
    chosen = {}
    for const in program.functions["main"].operations:
        if const.op_type != "const":
            continue
        var = const.outputs[0]
        if not types.is_tensor(var.sym_type) or not types.is_float(var.dtype) or var.val.size <= WEIGHT_THRESHOLD:
            continue
        uses = {(child.op_type, key) for child in var.child_ops for key, value in child.inputs.items()
                if value is var}
        if uses and uses <= WEIGHT_USES:
            chosen[const.name] = sorted(uses)[0][0]
        elif embeddings and uses and uses <= WEIGHT_USES | EMBEDDING_USES:
            chosen[const.name] = "embedding"
    return chosen


# ------------------------------------------------------------------------------------------------ describing

def describe_package(path: Path) -> dict:
    """What an app developer needs from a package: its inputs (name, type, shape, flexible ranges), its
    outputs, and how its weights are stored (read back from the saved file, not from what was asked)."""
    import coremltools as ct

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    return {"inputs": [_feature(f) for f in spec.description.input],
            "outputs": [_feature(f) for f in spec.description.output],
            "spec_version": spec.specificationVersion, "weights": weight_storage(model)}


def _feature(feature) -> dict:
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    array = feature.type.multiArrayType
    entry = {"name": feature.name, "dtype": ArrayFeatureType.ArrayDataType.Name(array.dataType).lower(),
             "shape": list(array.shape)}
    ranges = array.shapeRange.sizeRanges
    flexible = {str(i): [r.lowerBound, r.upperBound] for i, r in enumerate(ranges) if r.lowerBound != r.upperBound}
    if flexible:
        entry["flexible"] = flexible  # axis -> [min, max]; "shape" is the default
    return entry



def weight_storage(model) -> dict:
    """How many weight values the package stores in each form: float types for plain consts, and
    "int8" / "int4" / "lut6"… for compressed ones (the constexpr ops Core ML expands at load time)."""
    from coremltools.models.utils import _apply_graph_pass
    from coremltools.converters.mil.mil import types

    program = _apply_graph_pass(model, [], return_pymil_prog=True)
    storage: dict[str, int] = {}
    for operation in program.functions["main"].operations:
        output = operation.outputs[0]
        if operation.op_type == "const":
            parts_of_compressed = all(c.op_type.startswith("constexpr_") for c in output.child_ops)
            if (types.is_tensor(output.sym_type) and types.is_float(output.dtype) and output.val.size > 1
                    and not parts_of_compressed):  # scales and look-up tables belong to their weight
                key = types.builtin_to_string(output.dtype)
            else:
                continue
        elif operation.op_type.startswith("constexpr_"):
            key = _compressed_form(operation)
            if key is None:
                continue
        else:
            continue
        storage[key] = storage.get(key, 0) + int(np.prod(output.shape))
    return storage


def _compressed_form(operation) -> str | None:
    from coremltools.converters.mil.mil import types

    inputs = operation.inputs
    if operation.op_type == "constexpr_affine_dequantize":
        return types.builtin_to_string(inputs["quantized_data"].dtype)
    if operation.op_type == "constexpr_blockwise_shift_scale":
        return types.builtin_to_string(inputs["data"].dtype)
    if operation.op_type == "constexpr_lut_to_dense":
        lut = inputs["lut"].val
        size = lut.shape[-1] if lut.ndim == 1 else lut.shape[-2]
        return f"lut{int(np.log2(size))}"
    return operation.op_type


def _core_ml_dtype(dtype: np.dtype):
    # Core ML has no 64-bit integer inputs: token ids go in as int32 (the runner casts them).
    if dtype.kind in "iu":
        return np.int32
    return np.float16 if dtype == np.float16 else np.float32


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
