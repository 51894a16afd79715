"""The fp32 ONNX intermediate every ONNX-based precision starts from, exported once per source content."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..cache import cached
from ..errors import ConversionError, UserError
from ..quiet import captured
from ..source import SourceModel, torch_output_names
from ..targets import installed_versions

RECIPE = 1  # bump when the export recipe changes, so cached exports are redone
MODEL = "model.onnx"


def fp32_onnx(source: SourceModel) -> Path:
    """Folder holding model.onnx (+ external data) and, for a Hugging Face source, the config and
    tokenizer files the exporter wrote beside it."""
    key = {"source": source.sha256, "kind": source.kind, "task": source.task, "recipe": RECIPE, **installed_versions(("torch", "transformers", "optimum-onnx", "onnx"))}
    return cached("onnx-fp32", key, lambda work: _export(source, work))


def _export(source: SourceModel, work: Path) -> None:
    if source.kind == "onnx":
        folder = source.path.parent
        shutil.copy2(source.path, work / MODEL)
        for data in _data_files(source.path):
            shutil.copy2(data, work / data.relative_to(folder))
        return
    try:
        with captured():
            if source.kind == "hf":
                _export_hf(source, work)
            else:
                _export_torch(source, work)
    except UserError:
        raise
    except Exception as exc:
        notes = "\n".join(getattr(exc, "__notes__", []))
        raise UserError(f"exporting {source.spec} to ONNX failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        + (f"\n{notes}" if notes else "")) from None


def _data_files(path: Path) -> list[Path]:
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    names = {next(e.value for e in t.external_data if e.key == "location")
             for t in _get_all_tensors(model) if uses_external_data(t)}
    return [path.parent / n for n in sorted(names)]


def _export_hf(source: SourceModel, work: Path) -> None:
    from optimum.exporters.onnx import main_export

    # library_name="transformers": last_hidden_state for embedders, the layout Transformers.js expects
    # (optimum's sentence-transformers export would name the outputs differently).
    main_export(str(source.path), output=work, task=source.task, library_name="transformers",
                do_validation=False, trust_remote_code=source.trust_remote_code, local_files_only=True)
    if not (work / MODEL).is_file():
        raise ConversionError(f"the exporter wrote no {MODEL}")


def _export_torch(source: SourceModel, work: Path) -> None:
    import torch

    module, args, names = source.torch_module()
    with torch.no_grad():
        out = module(*args)
    count = len(out) if isinstance(out, (tuple, list)) else 1
    # Shapes stay those of the example inputs: edge runtimes run fixed shapes best, and the example
    # is what the user said the model takes.
    torch.onnx.export(module, args, str(work / MODEL), input_names=names, output_names=torch_output_names(count),
                      dynamo=True, verbose=False, external_data=False)
