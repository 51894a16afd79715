"""The pi target layer by layer: each weight tensor of the GGUF baseline at its own ggml type, through the
per-tensor overrides of llama.cpp's quantizer (llama_model_quantize_params.tt_overrides in llama-cpp-python
0.3.36: an array of {pattern, type} ended by an empty pattern; the pattern is a regular expression on the
tensor name, what llama-quantize --tensor-type sets). Every weight tensor gets an explicit type that its row
length allows (k-quants need rows of a multiple of 256, the legacy types of 32), chosen here and recorded,
instead of llama.cpp's own silent fallback; what the file holds is read back and checked."""
from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

from ..contracts import Layer
from ..errors import ConversionError

# When a tensor's rows do not fit a type's blocks: the nearest type at least as precise whose blocks fit.
FALLBACK = {"Q4_K": "Q4_0", "Q5_K": "Q5_0", "Q6_K": "Q8_0", "Q4_0": "Q8_0", "Q5_0": "Q8_0", "Q8_0": "F16"}


def tensor_type(ftype: str) -> str:
    """The ggml type a llama.cpp file type stores its main tensors in: MOSTLY_Q4_K_M -> Q4_K, MOSTLY_Q8_0 -> Q8_0."""
    name = ftype.removeprefix("MOSTLY_").removeprefix("ALL_")
    return re.sub(r"(_K)_[SML]$", r"\1", name)


def _sizes(kind: str) -> tuple[int, int]:
    import gguf

    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]]  # (weights per block, bytes per block)


def fitting(kind: str, row: int) -> str:
    """`kind`, or the nearest type at least as precise whose blocks divide a row of `row` weights."""
    while _sizes(kind)[0] > 1 and row % _sizes(kind)[0]:
        kind = FALLBACK[kind]
    return kind


def _stored(kind: str, count: int) -> int:
    block, size = _sizes(kind)
    return count // block * size


def layers(baseline: Path, kinds: dict[str, str]) -> list[Layer]:
    """The weight tensors (2-D and up) of the baseline GGUF, with their bytes as float and at each
    precision's type (`kinds`: precision -> ggml type), the type fitted to the tensor's rows."""
    from gguf import GGUFReader

    found = []
    for tensor in GGUFReader(str(baseline)).tensors:
        if len(tensor.shape) < 2:
            continue  # norms and biases stay float, as llama.cpp keeps them
        row, count = int(tensor.shape[0]), int(tensor.n_elements)
        kind = "embedding" if tensor.name.startswith("token_embd") else "matmul"
        sizes = {name: _stored(fitting(k, row), count) for name, k in kinds.items()}
        found.append(Layer(tensor.name, kind, count, {"float": 4 * count, **sizes}))
    return found


def quantize_layers(baseline: Path, levels: dict[str, str], kinds: dict[str, str], ftype: str, out: Path) -> dict:
    """Quantize `baseline` to `out` with every weight tensor at an explicit type: a named tensor at its
    precision's type (fitted to its rows), every other one as float (F32). Returns the recipe."""
    import llama_cpp
    from gguf import GGUFReader

    tensors = {t.name: t for t in GGUFReader(str(baseline)).tensors if len(t.shape) >= 2}
    chosen = {name: fitting(kinds[levels[name]], int(t.shape[0])) if name in levels else "F32"
              for name, t in tensors.items()}
    overrides = (llama_cpp.llama_model_tensor_override * (len(chosen) + 1))()  # ends with an empty pattern
    patterns = []
    for entry, (name, kind) in zip(overrides, sorted(chosen.items())):
        patterns.append(f"^{re.escape(name)}$".encode())
        entry.pattern, entry.type = patterns[-1], getattr(llama_cpp, f"GGML_TYPE_{kind}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{ftype}")
    params.nthread = os.cpu_count() or 1
    params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    code = llama_cpp.llama_model_quantize(str(baseline).encode(), str(out).encode(), ctypes.byref(params))
    if code != 0 or not out.is_file():
        raise ConversionError(f"llama_model_quantize with per-tensor types returned {code}")
    held = {t.name: t.tensor_type.name for t in GGUFReader(str(out)).tensors if t.name in chosen}
    wrong = {n: (chosen[n], held.get(n)) for n in chosen if held.get(n) != chosen[n]}
    if wrong:
        name, (wanted, got) = next(iter(wrong.items()))
        raise ConversionError(f"llama.cpp stored {len(wrong)} tensors in other types than asked, e.g. {name}: "
                              f"{got} instead of {wanted}")
    fitted = {n: k for n, k in chosen.items() if n in levels and k != kinds[levels[n]]}
    counts = {}
    for kind in chosen.values():
        counts[kind] = counts.get(kind, 0) + 1
    return {"method": "llama_cpp.llama_model_quantize with tt_overrides (one per weight tensor)",
            "llama_cpp_python": llama_cpp.__version__, "tensor_types": counts,
            **({"fitted_to_rows": fitted} if fitted else {})}
