"""The pi target layer by layer: each weight tensor of the GGUF baseline at its own ggml type, through the
per-tensor overrides of llama.cpp's quantizer (llama_model_quantize_params.tt_overrides in llama-cpp-python
0.3.36: an array of {pattern, type} ended by an empty pattern; the pattern is a regular expression on the
tensor name, what llama-quantize --tensor-type sets).

A tensor's type at a precision is the one llama.cpp itself stores it in at that uniform precision (read
back from the uniform file: q4_k_m keeps some tensors at Q6_K, and a tensor whose rows do not fit a
k-quant's 256-weight blocks falls back to a legacy type), so every layer low is exactly the uniform low
candidate and every layer high the uniform high one; the types are recorded and the written file is
checked against them.

A decoder with many tensors is set block by block (every tensor of blk.N together, the embedding and output
on their own): a sensitivity build per tensor would be ~212 builds for SmolLM2-135M, per block 31."""
from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

from ..contracts import Layer
from ..errors import ConversionError

PER_TENSOR_LIMIT = 64  # more weight tensors than this: one layer per transformer block


def stored_types(path: Path) -> dict[str, str]:
    """The ggml type of every weight tensor (2-D and up) in a GGUF file, by tensor name."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors if len(t.shape) >= 2}


def _group(tensor: str, per_block: bool) -> str:
    found = re.match(r"blk\.\d+\.", tensor) if per_block else None
    return found.group(0)[:-1] if found else tensor


def _stored(kind: str, count: int) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]]
    return count // block * size


def layers(baseline: Path, kinds: dict[str, dict[str, str]]) -> list[Layer]:
    """The weight tensors (2-D and up) of the baseline GGUF, or its blocks when there are many tensors, with
    their bytes as float and at each precision (`kinds`: precision -> tensor -> ggml type)."""
    from gguf import GGUFReader

    tensors = [t for t in GGUFReader(str(baseline)).tensors if len(t.shape) >= 2]  # norms and biases stay float
    per_block = len(tensors) > PER_TENSOR_LIMIT
    found: dict[str, dict] = {}
    for tensor in tensors:
        count = int(tensor.n_elements)
        name = _group(tensor.name, per_block)
        entry = found.setdefault(name, {"kind": "embedding" if name.startswith("token_embd") else
                                        "block" if name != tensor.name else "matmul", "weights": 0,
                                        "bytes": {"float": 0, **{p: 0 for p in kinds}}})
        entry["weights"] += count
        entry["bytes"]["float"] += 4 * count
        for precision, types in kinds.items():
            entry["bytes"][precision] += _stored(types[tensor.name], count)
    return [Layer(name, e["kind"], e["weights"], e["bytes"]) for name, e in found.items()]


def quantize_layers(baseline: Path, levels: dict[str, str], kinds: dict[str, dict[str, str]], ftype: str,
                    out: Path, imatrix=None) -> dict:
    """Quantize `baseline` to `out` with every weight tensor at an explicit type: a tensor whose layer (the
    tensor, or its block) is named at its precision's type, every other one as float (F32). Returns the recipe."""
    import llama_cpp

    tensors = stored_types(baseline)
    per_block = len(tensors) > PER_TENSOR_LIMIT
    unknown = sorted(set(levels) - {_group(n, per_block) for n in tensors})
    if unknown:
        raise ValueError(f"no such layer: {unknown}")
    chosen = {}
    for name in tensors:
        level = levels.get(_group(name, per_block))
        chosen[name] = kinds[level][name] if level else "F32"
    overrides = (llama_cpp.llama_model_tensor_override * (len(chosen) + 1))()  # ends with an empty pattern
    patterns = []
    for entry, (name, kind) in zip(overrides, sorted(chosen.items())):
        patterns.append(f"^{re.escape(name)}$".encode())
        entry.pattern, entry.type = patterns[-1], getattr(llama_cpp, f"GGML_TYPE_{kind}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{ftype}")
    params.nthread = os.cpu_count() or 1
    if imatrix is not None:  # the importance matrix the uniform candidates were quantized with
        params.imatrix = imatrix
    params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    code = llama_cpp.llama_model_quantize(str(baseline).encode(), str(out).encode(), ctypes.byref(params))
    if code != 0 or not out.is_file():
        raise ConversionError(f"llama_model_quantize with per-tensor types returned {code}")
    held = stored_types(out)
    wrong = {n: (chosen[n], held.get(n)) for n in chosen if held.get(n) != chosen[n]}
    if wrong:
        name, (wanted, got) = next(iter(wrong.items()))
        raise ConversionError(f"llama.cpp stored {len(wrong)} tensors in other types than asked, e.g. {name}: "
                              f"{got} instead of {wanted}")
    counts = {}
    for kind in chosen.values():
        counts[kind] = counts.get(kind, 0) + 1
    return {"method": "llama_cpp.llama_model_quantize with tt_overrides (one per weight tensor), each tensor at "
                      "the type llama.cpp stores it in at its layer's uniform precision",
            "llama_cpp_python": llama_cpp.__version__, "tensor_types": counts,
            "unit": "block" if per_block else "tensor"}
